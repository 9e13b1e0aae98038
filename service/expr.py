"""The expression form of a graph (``graph.source``): a tiny language compiled to wire nodes.

The source is parsed with :mod:`ast` and walked against a whitelist; nothing is ever evaluated.
Allowed: assignments (with tuple unpacking), ``+ - * / // % ** @``, unary ``-``/``+``/``~``,
``& | ^``, single comparisons, calls of op names (``mean(x)``, ``nn.functional.relu(x)``,
``x.sum(1)``), keyword arguments, indexing with ints/slices/None/Ellipsis/tensors, number,
string and None literals, lists, and ``grad(...)`` with ``torch.autograd.grad``'s signature.
Anything else (attribute reads, imports, lambdas, comprehensions, dunder names, ...) raises
:class:`~service.errors.ExpressionError` with its line and column.

>>> nodes = compile_source("y = 2 * x + 1\\nloss = mean((y - w * x) ** 2)", ["x", "w"]).nodes
>>> [n["op"] for n in nodes]
['mul', 'add', 'mul', 'sub', 'pow', 'mean']
>>> nodes[1]["outputs"]
['y']
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass, field
from typing import Any

from .errors import ExpressionError

__all__ = ["compile_source", "CompiledSource"]

_BINOPS: dict[type, str] = {
    ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow",
    ast.MatMult: "matmul", ast.Mod: "remainder", ast.BitAnd: "bitwise_and", ast.BitOr: "bitwise_or",
    ast.BitXor: "bitwise_xor",
}
_CMPOPS: dict[type, str] = {ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge", ast.Eq: "eq",
                            ast.NotEq: "ne"}
_FORBIDDEN: dict[type, str] = {
    ast.Lambda: "lambda", ast.ListComp: "comprehensions", ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions", ast.GeneratorExp: "generator expressions",
    ast.IfExp: "conditional expressions", ast.BoolOp: "`and`/`or`", ast.Dict: "dict literals",
    ast.Set: "set literals", ast.JoinedStr: "f-strings", ast.NamedExpr: "`:=`",
    ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield", ast.Starred: "`*` unpacking",
    ast.Import: "imports", ast.ImportFrom: "imports", ast.FunctionDef: "function definitions",
    ast.AsyncFunctionDef: "function definitions", ast.ClassDef: "class definitions",
}
# Prefixes users paste from torch code; ``F`` is the usual torch.nn.functional alias.
_PREFIXES = {"torch.": "", "engine.": "", "F.": "nn.functional."}


def _grad_signature(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
                    only_inputs=True, allow_unused=None, is_grads_batched=False,
                    materialize_grads=False):  # pragma: no cover - signature only
    """torch.autograd.grad's signature, used to bind ``grad(...)`` calls."""


_GRAD_SIG = inspect.signature(_grad_signature)


# ---------------------------------------------------------------- operands
@dataclass(frozen=True)
class _Val:
    """A named value (graph input or node output)."""

    name: str


@dataclass(frozen=True)
class _Lit:
    """A literal: number, bool, None, str, Ellipsis or slice."""

    value: Any


@dataclass(frozen=True)
class _Seq:
    items: tuple
    is_tuple: bool = False  # an index tuple (x[1, :]), as opposed to a list


_Operand = _Val | _Lit | _Seq


def _to_input(o: _Operand) -> Any:
    """Wire form in ``inputs`` (positional): strings there are names, so literals get wrapped."""
    if isinstance(o, _Val):
        return o.name
    if isinstance(o, _Seq):
        items = [_to_input(i) for i in o.items]
        return {"tuple": items} if o.is_tuple else items
    return _literal(o.value, in_inputs=True)


def _to_attr(o: _Operand) -> Any:
    """Wire form in ``attributes`` (keywords): strings are literals, values are ``{"ref"}``."""
    if isinstance(o, _Val):
        return {"ref": o.name}
    if isinstance(o, _Seq):
        items = [_to_attr(i) for i in o.items]
        return {"tuple": items} if o.is_tuple else items
    return _literal(o.value, in_inputs=False)


def _literal(v: Any, *, in_inputs: bool) -> Any:
    if v is Ellipsis:
        return {"ellipsis": True}
    if isinstance(v, slice):
        return {"slice": [v.start, v.stop, v.step]}
    if isinstance(v, str) and in_inputs:
        return {"literal": v}
    return v


@dataclass
class CompiledSource:
    """Wire nodes compiled from source, with each node's 1-based (line, col)."""

    nodes: list[dict[str, Any]] = field(default_factory=list)
    positions: list[tuple[int, int]] = field(default_factory=list)


# ---------------------------------------------------------------- compiler
class _Compiler:
    def __init__(self, input_names: set[str]) -> None:
        self.values: set[str] = set(input_names)
        self.inputs = set(input_names)
        self.consts: dict[str, _Operand] = {}
        self.aliases: dict[str, str] = {}
        self.out = CompiledSource()
        self.n_tmp = 0

    # -- helpers
    @staticmethod
    def error(node: ast.AST, msg: str) -> ExpressionError:
        return ExpressionError(msg, line=getattr(node, "lineno", 1), col=getattr(node, "col_offset", 0) + 1)

    def check_name(self, node: ast.AST, name: str) -> None:
        if name.startswith("__") or name.endswith("__"):
            raise self.error(node, f"dunder names are not allowed ({name!r})")

    def tmp(self) -> str:
        self.n_tmp += 1
        return f"%{self.n_tmp}"

    def emit(self, node: ast.AST, op: str, inputs: list, attributes: dict | None = None,
             outputs: list[str] | None = None) -> list[str]:
        outs = outputs or [self.tmp()]
        wire: dict[str, Any] = {"op": op, "inputs": [_to_input(i) for i in inputs], "outputs": outs}
        if attributes:
            wire["attributes"] = {k: _to_attr(v) for k, v in attributes.items()}
        self.out.nodes.append(wire)
        self.out.positions.append((node.lineno, node.col_offset + 1))
        self.values.update(outs)
        return outs

    # -- statements
    def statement(self, stmt: ast.stmt) -> None:
        if not isinstance(stmt, ast.Assign):
            what = _FORBIDDEN.get(type(stmt), f"`{type(stmt).__name__}` statements")
            raise self.error(stmt, f"only assignments are allowed, not {what}")
        if len(stmt.targets) != 1:
            raise self.error(stmt, "chained assignment (a = b = ...) is not allowed")
        target, value = stmt.targets[0], stmt.value
        if isinstance(target, ast.Name):
            name = self.target(target)
            if self.is_grad(value):
                raise self.error(value, "grad() returns a tuple: unpack it (`g, = grad(...)`) "
                                        "or index it (`grad(...)[0]`)")
            self.bind(name, self.expr(value))
        elif isinstance(target, (ast.Tuple, ast.List)):
            names = [self.target(t) for t in target.elts]
            if len(set(names)) != len(names):
                raise self.error(target, "a name appears twice in the unpacking")
            if not isinstance(value, ast.Call):
                raise self.error(value, "only the result of a call can be unpacked")
            if self.is_grad(value):
                self.grad(value, names)
            elif len(names) == 1:  # `v, = split(...)`: the tuple's single element, as in Python
                whole = self.call(value)
                self.emit(value, "getitem", [whole, _Lit(0)], outputs=names)
            else:
                self.call(value, names)
        else:
            raise self.error(target, "only names and tuples of names can be assigned")

    def target(self, t: ast.expr) -> str:
        if not isinstance(t, ast.Name):
            raise self.error(t, "only plain names can be assigned (no attributes, subscripts or *)")
        self.check_name(t, t.id)
        if t.id in self.inputs:
            raise self.error(t, f"name {t.id!r} is a graph input and cannot be reassigned")
        if t.id in self.values or t.id in self.consts or t.id in self.aliases:
            raise self.error(t, f"name {t.id!r} is assigned twice")
        return t.id

    def bind(self, name: str, o: _Operand) -> None:
        last = self.out.nodes[-1] if self.out.nodes else None
        fresh = isinstance(o, _Val) and o.name.startswith("%")
        if fresh and last is not None and last["outputs"] == [o.name]:
            self.values.discard(o.name)
            last["outputs"] = [name]  # the expression's own node gets the user's name
            self.values.add(name)
        elif isinstance(o, _Val):
            self.aliases[name] = o.name
        else:
            self.consts[name] = o

    # -- expressions
    def expr(self, e: ast.expr) -> _Operand:
        if isinstance(e, ast.Constant):
            if isinstance(e.value, (bool, int, float, str)) or e.value is None or e.value is Ellipsis:
                return _Lit(e.value)
            raise self.error(e, f"{type(e.value).__name__} literals are not allowed")
        if isinstance(e, ast.Name):
            self.check_name(e, e.id)
            if e.id in self.consts:
                return self.consts[e.id]
            if e.id in self.aliases:
                return _Val(self.aliases[e.id])
            if e.id in self.values:
                return _Val(e.id)
            raise self.error(e, f"name {e.id!r} is not defined")
        if isinstance(e, ast.UnaryOp):
            if isinstance(e.op, ast.USub) and isinstance(e.operand, ast.Constant) \
                    and type(e.operand.value) in (int, float):
                return _Lit(-e.operand.value)
            if isinstance(e.op, ast.UAdd):
                return self.expr(e.operand)
            if isinstance(e.op, ast.Not):
                raise self.error(e, "`not` is not allowed; use logical_not(x)")
            op = "neg" if isinstance(e.op, ast.USub) else "bitwise_not"
            return _Val(self.emit(e, op, [self.expr(e.operand)])[0])
        if isinstance(e, ast.BinOp):
            left, right = self.expr(e.left), self.expr(e.right)
            if isinstance(e.op, ast.FloorDiv):
                return _Val(self.emit(e, "div", [left, right], {"rounding_mode": _Lit("floor")})[0])
            op = _BINOPS.get(type(e.op))
            if op is None:
                raise self.error(e, f"operator {type(e.op).__name__} is not allowed")
            return _Val(self.emit(e, op, [left, right])[0])
        if isinstance(e, ast.Compare):
            if len(e.ops) != 1:
                raise self.error(e, "chained comparisons are not allowed")
            op = _CMPOPS.get(type(e.ops[0]))
            if op is None:
                raise self.error(e, f"comparison {type(e.ops[0]).__name__} is not allowed")
            return _Val(self.emit(e, op, [self.expr(e.left), self.expr(e.comparators[0])])[0])
        if isinstance(e, ast.Call):
            if self.is_grad(e):
                raise self.error(e, "grad() returns a tuple: unpack it (`g, = grad(...)`) "
                                    "or index it (`grad(...)[0]`)")
            return self.call(e)
        if isinstance(e, ast.Subscript):
            return self.subscript(e)
        if isinstance(e, (ast.List, ast.Tuple)):
            return _Seq(tuple(self.expr(x) for x in e.elts))
        if isinstance(e, ast.Attribute):
            self.check_name(e, e.attr)
            raise self.error(e, f"attribute access is not allowed ({ast.unparse(e)[:60]!r}); "
                                "only op names can be called")
        what = _FORBIDDEN.get(type(e), f"`{type(e).__name__}` expressions")
        raise self.error(e, f"not allowed in an expression: {what}")

    def is_grad(self, e: ast.expr) -> bool:
        return isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id == "grad"

    def op_name(self, func: ast.expr) -> tuple[str, _Operand | None]:
        """The op a call names, and the tensor a method call is made on (or None)."""
        if isinstance(func, ast.Name):
            self.check_name(func, func.id)
            return func.id, None
        if not isinstance(func, ast.Attribute):
            what = _FORBIDDEN.get(type(func))
            raise self.error(func, f"not allowed in an expression: {what}" if what
                             else "only op names can be called")
        self.check_name(func, func.attr)
        parts, base = [func.attr], func.value
        while isinstance(base, ast.Attribute):
            self.check_name(base, base.attr)
            parts.append(base.attr)
            base = base.value
        if isinstance(base, ast.Name) and not self.is_value(base.id):
            self.check_name(base, base.id)
            dotted = ".".join([base.id, *reversed(parts)])
            for prefix, repl in _PREFIXES.items():
                if dotted.startswith(prefix):
                    dotted = repl + dotted[len(prefix):]
                    break
            return dotted, None
        if isinstance(func.value, ast.Attribute):  # x.shape.foo(...)
            raise self.error(func.value,
                             f"attribute access is not allowed ({ast.unparse(func.value)[:60]!r})")
        recv = self.expr(func.value)  # a method call: x.sum(1) is sum(x, 1)
        if not isinstance(recv, _Val):
            raise self.error(func, "methods can only be called on tensors")
        return func.attr, recv

    def is_value(self, name: str) -> bool:
        return name in self.values or name in self.aliases or name in self.consts

    def call(self, e: ast.Call, outputs: list[str] | None = None) -> _Val:
        op, recv = self.op_name(e.func)
        args: list[_Operand] = [] if recv is None else [recv]
        for a in e.args:
            if isinstance(a, ast.Starred):
                raise self.error(a, "`*` unpacking is not allowed")
            args.append(self.expr(a))
        kwargs: dict[str, _Operand] = {}
        for kw in e.keywords:
            if kw.arg is None:
                raise self.error(kw, "`**` unpacking is not allowed")
            self.check_name(kw, kw.arg)
            kwargs[kw.arg] = self.expr(kw.value)
        return _Val(self.emit(e, op, args, kwargs, outputs)[0])

    def subscript(self, e: ast.Subscript) -> _Operand:
        if self.is_grad(e.value):
            k = self.expr(e.slice)
            if not (isinstance(k, _Lit) and type(k.value) is int):
                raise self.error(e.slice, "index grad(...) with an integer literal")
            names = self.grad(e.value, None)
            try:
                return _Val(names[k.value])
            except IndexError:
                raise self.error(e.slice, f"grad(...) returns {len(names)} gradients; "
                                          f"index {k.value} is out of range") from None
        base = self.expr(e.value)
        if not isinstance(base, _Val):
            raise self.error(e.value, "only tensors can be indexed")
        return _Val(self.emit(e, "getitem", [base, self.key(e.slice)])[0])

    def key(self, k: ast.expr) -> _Operand:
        if isinstance(k, ast.Slice):
            parts = []
            for p in (k.lower, k.upper, k.step):
                v = None if p is None else self.expr(p)
                if v is not None and not (isinstance(v, _Lit) and (type(v.value) is int or v.value is None)):
                    raise self.error(p, "slice bounds must be integer literals")
                parts.append(None if v is None else v.value)
            return _Lit(slice(*parts))
        if isinstance(k, ast.Tuple):
            return _Seq(tuple(self.key(x) for x in k.elts), is_tuple=True)
        return self.expr(k)

    def grad(self, e: ast.Call, outputs: list[str] | None) -> list[str]:
        for a in e.args:
            if isinstance(a, ast.Starred):
                raise self.error(a, "`*` unpacking is not allowed")
        if any(kw.arg is None for kw in e.keywords):
            raise self.error(e, "`**` unpacking is not allowed")
        try:
            bound = _GRAD_SIG.bind(*e.args, **{kw.arg: kw.value for kw in e.keywords})
        except TypeError as err:
            raise self.error(e, f"grad(): {err}") from None
        args = bound.arguments
        outs = self.names(args["outputs"], "outputs")
        ins = self.names(args["inputs"], "inputs")
        attrs: dict[str, Any] = {"outputs": outs, "inputs": ins}
        if "grad_outputs" in args:
            go = self.expr(args["grad_outputs"])
            attrs["grad_outputs"] = self.grad_outputs(args["grad_outputs"], go)
        for flag in ("retain_graph", "create_graph", "allow_unused", "is_grads_batched",
                     "materialize_grads"):
            if flag in args:
                v = self.expr(args[flag])
                if not (isinstance(v, _Lit) and (isinstance(v.value, bool) or v.value is None)):
                    raise self.error(args[flag], f"grad(): {flag} must be True, False or None")
                attrs[flag] = v.value
        n = len(ins)
        if outputs is None:
            outputs = [self.tmp() for _ in range(n)]
        elif len(outputs) != n:
            raise self.error(e, f"grad() returns {n} gradient{'s' * (n != 1)} "
                                f"but {len(outputs)} name{'s' * (len(outputs) != 1)} are unpacked")
        self.out.nodes.append({"op": "grad", "attributes": attrs, "outputs": outputs})
        self.out.positions.append((e.lineno, e.col_offset + 1))
        self.values.update(outputs)
        return outputs

    def names(self, node: ast.expr, what: str) -> list[str]:
        o = self.expr(node)
        items = o.items if isinstance(o, _Seq) else (o,)
        out = []
        for it in items:
            if not isinstance(it, _Val):
                raise self.error(node, f"grad(): {what} must be tensors")
            out.append(it.name)
        return out

    def grad_outputs(self, node: ast.expr, o: _Operand) -> Any:
        if isinstance(o, _Lit) and o.value is None:
            return None
        items = o.items if isinstance(o, _Seq) else (o,)
        out: list[str | None] = []
        for it in items:
            if isinstance(it, _Val):
                out.append(it.name)
            elif isinstance(it, _Lit) and it.value is None:
                out.append(None)
            else:
                raise self.error(node, "grad(): grad_outputs must be tensors or None")
        return out


def compile_source(source: str, input_names: list[str] | set[str]) -> CompiledSource:
    """Compile ``source`` over the graph inputs ``input_names`` into wire-format nodes."""
    try:
        tree = ast.parse(source, mode="exec")
    except SyntaxError as e:
        raise ExpressionError(f"syntax error: {e.msg}", line=e.lineno or 1, col=e.offset or 1) from None
    except (ValueError, RecursionError, MemoryError) as e:
        raise ExpressionError(f"cannot parse the source: {e}", line=1, col=1) from None
    c = _Compiler(set(input_names))
    for stmt in tree.body:
        try:
            c.statement(stmt)
        except RecursionError:
            raise ExpressionError("the expression is nested too deeply", line=stmt.lineno,
                                  col=stmt.col_offset + 1) from None
    return c.out
