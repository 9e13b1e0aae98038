"""The expression form of a graph (``graph.source``): a tiny language compiled to wire nodes.

The source is parsed with :mod:`ast` and walked against a whitelist; nothing is ever evaluated.
Allowed: assignments (with tuple unpacking; a name may be assigned again, ``h = tanh(h @ w)``),
item assignment (``y[0] = v``, compiled to the functional ``setitem`` op), augmented assignment
(``h += x`` is the functional in-place op ``add_``: the result keeps ``h``'s dtype and shape, as
torch's in-place ops do), ``+ - * / // % ** @``, unary ``-``/``+``/``~``,
``& | ^``, single comparisons, calls of op names (``mean(x)``, ``nn.functional.relu(x)``,
``x.sum(1)``), keyword arguments, indexing with ints/slices/None/Ellipsis/tensors, number,
string and None literals, lists, the tensor attributes ``x.T``, ``x.mT`` (``x.H``, ``x.mH``),
``grad(...)`` with ``torch.autograd.grad``'s signature, and ``jacobian(y, x)``, ``hessian``,
``vjp``/``jvp``/``hvp``/``vhp(y, x, v)``: torch.autograd.functional's with the function given by
the values it maps (``y``, computed from ``x`` in the graph), returning the products only; and
torch.func's transforms the same way: ``func.grad(y, (w, x), argnums=0)``, ``func.grad_and_value``,
``func.vjp``/``func.jvp(y, x, v)``, ``func.jacrev``, ``func.jacfwd``, ``func.hessian``, and
``vmap(y, x, xs, in_dims=0)`` (the function from ``x`` to ``y``, called on ``xs``).
Anything else (other attribute reads, imports, lambdas, comprehensions, dunder names, ...)
raises :class:`~service.errors.ExpressionError` with its line and column (and a hint).

>>> nodes = compile_source("y = 2 * x + 1\\nloss = mean((y - w * x) ** 2)", ["x", "w"]).nodes
>>> [n["op"] for n in nodes]
['mul', 'add', 'mul', 'sub', 'pow', 'mean']
>>> nodes[1]["outputs"]
['y']

Every binding of a name but the last gets an internal name (``h'1``: a quote, so no source text
and no user name can clash with it); the last keeps the user's name, so the top level names it as
written. A graph input that is assigned again keeps its name for the input as sent, and its last
binding is found through :attr:`CompiledSource.aliases`. Errors quote the user's names and lines.

>>> c = compile_source("h = tanh(h @ w)\nh = tanh(h @ w)", ["h", "w"])
>>> [n["outputs"] for n in c.nodes], c.aliases
([["h @ w"], ["h'1"], ["h @ w at 2:10"], ["h'2"]], {'h': "h'2"})
"""

from __future__ import annotations

import ast
import difflib
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .errors import ExpressionError

__all__ = ["compile_source", "CompiledSource", "SourcePos", "FUNCTIONAL_SIGNATURES", "SETITEM_OP"]

_BINOPS: dict[type, str] = {
    ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow",
    ast.MatMult: "matmul", ast.Mod: "remainder", ast.BitAnd: "bitwise_and", ast.BitOr: "bitwise_or",
    ast.BitXor: "bitwise_xor",
}
# `h += x` is h.add_(x) in torch: the functional in-place op (service.inplace) keeps h's dtype
# and shape, and refuses what torch refuses (an int tensor += 0.5, a broadcast that grows h).
_AUGOPS: dict[type, str] = {
    ast.Add: "add_", ast.Sub: "sub_", ast.Mult: "mul_", ast.Div: "div_", ast.Pow: "pow_",
    ast.Mod: "remainder_", ast.BitAnd: "bitwise_and_", ast.BitOr: "bitwise_or_", ast.BitXor: "bitwise_xor_",
}
# The functional item assignment: setitem(x, key, value) is a copy of x with x[key] = value.
SETITEM_OP = "setitem"
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


# torch.autograd.functional's signatures with the function replaced by the values it maps
# (``outputs``), as the JSON functional nodes take them (service.wire).
def _jacobian_signature(outputs, inputs, create_graph=False, strict=False, vectorize=False,
                        strategy="reverse-mode"):  # pragma: no cover - signature only
    """jacobian(y, x): the Jacobian blocks of ``outputs`` with respect to ``inputs``."""


def _hessian_signature(outputs, inputs, create_graph=False, strict=False, vectorize=False,
                       outer_jacobian_strategy="reverse-mode"):  # pragma: no cover - signature only
    """hessian(y, x): the Hessian blocks of the scalar ``outputs``."""


def _product_signature(outputs, inputs, v=None, create_graph=False, strict=False
                       ):  # pragma: no cover - signature only
    """vjp/jvp/hvp/vhp(y, x, v): the vector products (without torch's function value)."""


FUNCTIONAL_SIGNATURES: dict[str, inspect.Signature] = {
    "jacobian": inspect.signature(_jacobian_signature), "hessian": inspect.signature(_hessian_signature),
    **{k: inspect.signature(_product_signature) for k in ("vjp", "jvp", "hvp", "vhp")},
}
_DIFF_CALLS = ("grad", *FUNCTIONAL_SIGNATURES)


# torch.func's transforms, the function given by its values as above: ``inputs`` are its
# positional arguments (a tuple, or one value), ``outputs`` its result (``(y, aux)`` with has_aux).
def _func_grad_signature(outputs, inputs, argnums=0, has_aux=False):  # pragma: no cover - signature only
    """func.grad(y, (w, x)): the gradient of the scalar ``y`` with respect to argument ``argnums``."""


def _func_jacrev_signature(outputs, inputs, argnums=0, has_aux=False, chunk_size=None
                           ):  # pragma: no cover - signature only
    """func.jacrev(y, x): the Jacobian by reverse mode."""


def _func_jacfwd_signature(outputs, inputs, argnums=0, has_aux=False, randomness="error"
                           ):  # pragma: no cover - signature only
    """func.jacfwd(y, x): the Jacobian by forward mode."""


def _func_hessian_signature(outputs, inputs, argnums=0):  # pragma: no cover - signature only
    """func.hessian(y, x): the Hessian."""


def _func_product_signature(outputs, inputs, v, has_aux=False):  # pragma: no cover - signature only
    """func.vjp(y, x, cotangents), func.jvp(y, x, tangents): the products."""


def _vmap_signature(outputs, inputs, args, in_dims=0, out_dims=0, randomness="error", chunk_size=None
                    ):  # pragma: no cover - signature only
    """vmap(y, x, xs, in_dims=0): the function from ``x`` to ``y`` mapped over ``xs``."""


FUNC_SIGNATURES: dict[str, inspect.Signature] = {
    "func.grad": inspect.signature(_func_grad_signature),
    "func.grad_and_value": inspect.signature(_func_grad_signature),
    "func.jacrev": inspect.signature(_func_jacrev_signature),
    "func.jacfwd": inspect.signature(_func_jacfwd_signature),
    "func.hessian": inspect.signature(_func_hessian_signature),
    "func.vjp": inspect.signature(_func_product_signature),
    "func.jvp": inspect.signature(_func_product_signature),
    "vmap": inspect.signature(_vmap_signature), "func.vmap": inspect.signature(_vmap_signature),
}

# Tensor attributes read as ops: x.T is t(x) (torch's x.T on other than 2-D tensors is deprecated),
# x.mT swaps the last two dims; for real tensors x.H and x.mH are the same.
_ATTR_OPS: dict[str, tuple[str, tuple]] = {"T": ("t", ()), "H": ("t", ()), "mT": ("transpose", (-2, -1)),
                                           "mH": ("transpose", (-2, -1))}
# Attributes that depend on the input shapes, and what to use instead: a graph is compiled once
# for any input shapes (its plan is cached by graph hash), so shapes are not constants here.
_SHAPE_HINT = ("the graph is compiled once for any input shapes, so shapes are not known in "
               "graph.source: use -1 in reshape/view (x.reshape(-1, 2)), expand_as(x, y), view_as(x, y), "
               "flatten/unflatten, ones_like/zeros_like, or write the size as a number")
_ATTR_HINTS: dict[str, str] = {
    "shape": _SHAPE_HINT, "ndim": _SHAPE_HINT,
    "dtype": "cast with x.to(dtype='float64') (or x.double(), x.float())",
    "grad": "compute gradients with grad(y, x) (torch.autograd.grad's signature)",
    "data": "use x.detach()", "real": "the engine has real tensors only: use x itself",
}


def _did_you_mean(msg: str, sig: inspect.Signature) -> str:
    """A suggestion for the misspelt keyword a bind error names (``vectorise`` -> ``vectorize``)."""
    m = re.search(r"unexpected keyword argument '(\w+)'", msg)
    close = difflib.get_close_matches(m.group(1), list(sig.parameters), n=2) if m else []
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


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


class SourcePos(NamedTuple):
    """Where a compiled node comes from: 1-based line and column, and the name(s) its statement
    assigns (what errors call the node instead of an internal name)."""

    line: int
    col: int
    name: str


@dataclass
class CompiledSource:
    """Wire nodes compiled from source, with each node's :class:`SourcePos`.

    Intermediate values are named after their source text (``"x.expand(3, 2)"``), a name no
    statement can assign, so that error messages quote the user's own expression."""

    nodes: list[dict[str, Any]] = field(default_factory=list)
    positions: list[SourcePos] = field(default_factory=list)
    # a re-assigned graph input: its name -> the wire name of its last binding (the top level's
    # outputs/return/grad_outputs mean that one; its inputs mean the input as sent)
    aliases: dict[str, str] = field(default_factory=dict)
    # internal wire name of an earlier binding (or a re-assigned input's last) -> the user's name
    user_names: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- compiler
class _Compiler:
    def __init__(self, input_names: set[str], source: str, counts: dict[str, int]) -> None:
        self.values: set[str] = set(input_names)  # every wire name in use
        self.inputs = set(input_names)
        self.scope: dict[str, str] = {n: n for n in input_names}  # user name -> current wire name
        self.consts: dict[str, _Operand] = {}
        self.out = CompiledSource()
        self.lines = [ln.encode() for ln in source.splitlines()]  # ast columns are UTF-8 offsets
        self.temps: set[str] = set()
        self.stmt_name = ""  # the name(s) the statement being compiled assigns
        self.counts = counts  # how many times each name is bound in the whole source
        self.bound: dict[str, int] = {}  # how many bindings of each name are compiled so far

    # -- helpers
    def error(self, node: ast.AST, msg: str) -> ExpressionError:
        return ExpressionError(msg, line=getattr(node, "lineno", 1), col=getattr(node, "col_offset", 0) + 1,
                               node=self.stmt_name)

    def check_name(self, node: ast.AST, name: str) -> None:
        if name.startswith("__") or name.endswith("__"):
            raise self.error(node, f"dunder names are not allowed ({name!r})")

    def text(self, node: ast.AST) -> str | None:
        """The node's source text when it is one short line (columns are UTF-8 offsets)."""
        line, end = getattr(node, "lineno", 0), getattr(node, "end_lineno", None)
        start, stop = getattr(node, "col_offset", 0), getattr(node, "end_col_offset", None) or 0
        if line != end or not 0 < line <= len(self.lines) or stop - start > 40:
            return None  # (checked before slicing: a long line has many nodes)
        return self.lines[line - 1][start:stop].decode(errors="replace")

    def tmp(self, node: ast.AST, op: str, suffix: str = "") -> str:
        """A name for an intermediate value: its source text, made unique with its position."""
        text = self.text(node)
        where = f" at {node.lineno}:{node.col_offset + 1}"  # type: ignore[attr-defined]
        name = f"{text}{suffix}" if text is not None else f"{op}(...){suffix}{where}"
        if name in self.temps or name in self.values or self.is_value(name):
            name = f"{text}{suffix}{where}" if text is not None else name
        base, k = name, 1
        while name in self.temps or name in self.values or self.is_value(name):
            k += 1
            name = f"{base} #{k}"
        self.temps.add(name)
        return name

    def position(self, node: ast.AST) -> SourcePos:
        return SourcePos(node.lineno, node.col_offset + 1, self.stmt_name)  # type: ignore[attr-defined]

    def emit(self, node: ast.AST, op: str, inputs: list, attributes: dict | None = None,
             outputs: list[str] | None = None) -> list[str]:
        outs = outputs or [self.tmp(node, op)]
        wire: dict[str, Any] = {"op": op, "inputs": [_to_input(i) for i in inputs], "outputs": outs}
        if attributes:
            wire["attributes"] = {k: _to_attr(v) for k, v in attributes.items()}
        self.out.nodes.append(wire)
        self.out.positions.append(self.position(node))
        self.values.update(outs)
        return outs

    # -- statements
    def statement(self, stmt: ast.stmt) -> None:
        self.stmt_name = ""
        if isinstance(stmt, ast.AugAssign):
            self.augassign(stmt)
            return
        if not isinstance(stmt, ast.Assign):
            what = _FORBIDDEN.get(type(stmt), f"`{type(stmt).__name__}` statements")
            raise self.error(stmt, f"only assignments are allowed, not {what}")
        if len(stmt.targets) != 1:
            raise self.error(stmt, "chained assignment (a = b = ...) is not allowed")
        target, value = stmt.targets[0], stmt.value
        if isinstance(target, ast.Name):
            self.target(target)
            self.stmt_name = target.id
            wire = self.wire_name(target.id)  # the value is compiled first: it reads the old binding
            if self.is_diff(value):
                names, is_tuple = self.diff(value, None)
                if is_tuple:
                    raise self.error(value, self.tuple_msg(value))
                self.rename(names[0], wire)
                self.assign(target.id, wire)
                return
            self.bind(target.id, wire, self.expr(value), value)
        elif isinstance(target, (ast.Tuple, ast.List)):
            users = [self.target(t) for t in target.elts]
            self.stmt_name = ", ".join(users)
            if len(set(users)) != len(users):
                raise self.error(target, "a name appears twice in the unpacking")
            if not isinstance(value, ast.Call):
                raise self.error(value, "only the result of a call can be unpacked")
            names = [self.wire_name(u) for u in users]
            if self.is_diff(value):
                self.diff(value, names)
            elif len(names) == 1:  # `v, = split(...)`: the tuple's single element, as in Python
                whole = self.call(value)
                self.emit(value, "getitem", [whole, _Lit(0)], outputs=names)
            else:
                self.call(value, names)
            for u, w in zip(users, names):
                self.assign(u, w)
        elif isinstance(target, ast.Subscript):
            self.setitem(target, value)
        else:
            raise self.error(target, "only names, tuples of names and items (y[0] = ...) can be assigned")

    def setitem(self, target: ast.Subscript, value: ast.expr) -> None:
        """``y[key] = v``: y is bound to a copy of itself with the item replaced (functional)."""
        user = self.item_base(target)
        key = self.key(target.slice)
        v = self.expr(value)  # Python evaluates the value before the assignment's target
        wire = self.wire_name(user)
        self.emit(target, SETITEM_OP, [_Val(self.scope[user]), key, v], outputs=[wire])
        self.assign(user, wire)

    def item_base(self, target: ast.Subscript) -> str:
        """The name whose item is assigned; it must be a tensor already."""
        if not isinstance(target.value, ast.Name):
            raise self.error(target.value, "only items of named tensors can be assigned (y[0] = ..., "
                                           "not y.T[0] = ... or y[0][1] = ...: write y[0, 1] = ...)")
        user = target.value.id
        self.check_name(target.value, user)
        self.stmt_name = user
        if user not in self.scope:
            if user in self.consts:
                raise self.error(target.value, f"{user!r} is not a tensor: only tensors have items to assign")
            raise self.error(target.value, f"name {user!r} is not defined")
        return user

    def augassign(self, stmt: ast.AugAssign) -> None:
        """``h += x`` is torch's ``h.add_(x)``; ``y[0] *= 2`` reads the item, then assigns it."""
        op = _AUGOPS.get(type(stmt.op))
        attrs = None
        if isinstance(stmt.op, ast.FloorDiv):  # torch's x //= y is x.div_(y, rounding_mode="floor")
            op, attrs = "div_", {"rounding_mode": _Lit("floor")}
        if op is None:
            raise self.error(stmt, f"augmented assignment with {type(stmt.op).__name__} is not allowed")
        target = stmt.target
        if isinstance(target, ast.Name):
            user = target.id
            self.check_name(target, user)
            self.stmt_name = user
            if user not in self.scope:
                what = "is not a tensor" if user in self.consts else "is not defined"
                raise self.error(target, f"name {user!r} {what}: `{user} {_op_text(stmt)}= ...` "
                                         "changes a tensor in place")
            v = self.expr(stmt.value)
            wire = self.wire_name(user)
            self.emit(stmt, op, [_Val(self.scope[user]), v], attrs, outputs=[wire])
            self.assign(user, wire)
        elif isinstance(target, ast.Subscript):
            user = self.item_base(target)
            key = self.key(target.slice)
            item = self.emit(target, "getitem", [_Val(self.scope[user]), key])[0]
            v = self.expr(stmt.value)
            new = self.emit(stmt, op, [_Val(item), v], attrs)[0]
            wire = self.wire_name(user)
            self.emit(target, SETITEM_OP, [_Val(self.scope[user]), key, _Val(new)], outputs=[wire])
            self.assign(user, wire)
        else:
            raise self.error(target, "only names and items (y[0] += ...) can be assigned")

    def tuple_msg(self, e: ast.Call) -> str:
        f = self.diff_name(e)
        return (f"{f}() returns a tuple here: unpack it (`g, = {f}(...)`) or index it (`{f}(...)[0]`)")

    def target(self, t: ast.expr) -> str:
        if not isinstance(t, ast.Name):
            raise self.error(t, "only plain names can be unpacked into (no attributes, subscripts or *)")
        self.check_name(t, t.id)
        return t.id

    def wire_name(self, user: str) -> str:
        """The wire name of the next binding of ``user``: the user's own name for its last
        binding, an internal one (``h'1``) for the others and for a graph input's."""
        k = self.bound[user] = self.bound.get(user, 0) + 1
        if k >= self.counts.get(user, 1) and user not in self.inputs:
            return user
        name, j = f"{user}'{k}", k
        while name in self.values or name in self.temps:  # (cannot happen: no source text has ')
            j += 1
            name = f"{user}'{k}.{j}"
        self.out.user_names[name] = user
        return name

    def assign(self, user: str, wire: str) -> None:
        """Bind ``user`` to the value named ``wire`` from now on."""
        self.consts.pop(user, None)
        self.scope[user] = wire
        self.values.add(wire)
        if user in self.inputs:
            self.out.aliases[user] = wire

    def rename(self, tmp: str, name: str) -> None:
        """Give the last node's single intermediate output the user's name."""
        self.values.discard(tmp)
        self.temps.discard(tmp)
        self.out.nodes[-1]["outputs"] = [name]
        self.values.add(name)

    def bind(self, user: str, wire: str, o: _Operand, node: ast.expr) -> None:
        last = self.out.nodes[-1] if self.out.nodes else None
        fresh = isinstance(o, _Val) and o.name in self.temps
        if fresh and last is not None and last["outputs"] == [o.name]:
            self.rename(o.name, wire)  # the expression's own node gets the user's name
        elif isinstance(o, _Val):
            # `y = x`: y is x itself, as in Python (the same tensor: a gradient with respect to y
            # is one with respect to x), and a value the top level and `return` can name.
            # Picking the one item of a list gives the very object, not a copy.
            self.emit(node, "getitem", [_Seq((o,)), _Lit(0)], outputs=[wire])
        else:
            self.scope.pop(user, None)
            self.consts[user] = o
            self.out.aliases.pop(user, None)
            return
        self.assign(user, wire)

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
            if e.id in self.scope:
                return _Val(self.scope[e.id])
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
            if self.is_diff(e):
                names, is_tuple = self.diff(e, None)
                if is_tuple:
                    raise self.error(e, self.tuple_msg(e))
                return _Val(names[0])
            return self.call(e)
        if isinstance(e, ast.Subscript):
            return self.subscript(e)
        if isinstance(e, (ast.List, ast.Tuple)):
            return _Seq(tuple(self.expr(x) for x in e.elts))
        if isinstance(e, ast.Attribute):
            return self.attribute(e)
        what = _FORBIDDEN.get(type(e), f"`{type(e).__name__}` expressions")
        raise self.error(e, f"not allowed in an expression: {what}")

    def is_grad(self, e: ast.expr) -> bool:
        return isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id == "grad"

    def is_diff(self, e: ast.expr) -> bool:
        """``grad(...)``, a functional call (``jacobian(y, x)``, ...) or a torch.func transform
        (``func.grad(y, x)``, ``vmap(y, x, xs)``), unless a value has that name."""
        return self.diff_name(e) is not None

    def diff_name(self, e: ast.expr) -> str | None:
        """The kind of a differentiating call (``func.grad`` for ``torch.func.grad(...)``), or None."""
        if not isinstance(e, ast.Call):
            return None
        f = e.func
        if isinstance(f, ast.Name):
            ok = f.id in _DIFF_CALLS or f.id == "vmap"
            return f.id if ok and not self.is_value(f.id) else None
        parts = []
        while isinstance(f, ast.Attribute):
            parts.append(f.attr)
            f = f.value
        if not isinstance(f, ast.Name) or self.is_value(f.id):
            return None
        dotted = ".".join([f.id, *reversed(parts)])
        dotted = dotted[len("torch."):] if dotted.startswith("torch.") else dotted
        return dotted if dotted in FUNC_SIGNATURES else None

    def attribute(self, e: ast.Attribute) -> _Operand:
        """``x.T``, ``x.mT``, ``x.H``, ``x.mH``; any other attribute is refused with a hint."""
        self.check_name(e, e.attr)
        what = ast.unparse(e)[:60]
        if e.attr in _ATTR_OPS:
            base = self.expr(e.value)
            if not isinstance(base, _Val):
                raise self.error(e, f"{what!r}: .{e.attr} is a tensor attribute")
            op, extra = _ATTR_OPS[e.attr]
            return _Val(self.emit(e, op, [base, *(_Lit(d) for d in extra)])[0])
        hint = _ATTR_HINTS.get(e.attr)
        if hint is None:
            allowed = ", ".join(f".{a}" for a in _ATTR_OPS)
            hint = (f"tensor attributes are {allowed}; call ops by name "
                    f"(x.{e.attr}(...) or {e.attr}(x, ...) if it is an op)")
        raise self.error(e, f"attribute access is not allowed ({what!r}): {hint}")

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
        recv = self.expr(func.value)  # a method call: x.sum(1) is sum(x, 1); x.T.sum() reads x.T first
        if not isinstance(recv, _Val):
            raise self.error(func, "methods can only be called on tensors")
        return func.attr, recv

    def is_value(self, name: str) -> bool:
        """Whether a user name is bound (to a value or a literal)."""
        return name in self.scope or name in self.consts

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
        if self.is_diff(e.value):
            f = self.diff_name(e.value)
            k = self.expr(e.slice)
            if not (isinstance(k, _Lit) and type(k.value) is int):
                raise self.error(e.slice, f"index {f}(...) with an integer literal")
            names, is_tuple = self.diff(e.value, None)  # type: ignore[arg-type]
            if not is_tuple:  # a single tensor (jacobian(y, x)): index the tensor
                return _Val(self.emit(e, "getitem", [_Val(names[0]), self.key(e.slice)])[0])
            try:
                return _Val(names[k.value])
            except IndexError:
                raise self.error(e.slice, f"{f}(...) returns {len(names)} results; "
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

    def diff(self, e: ast.Call, outputs: list[str] | None) -> tuple[list[str], bool]:
        """The result names of a grad or functional call, and whether torch returns a tuple."""
        f = self.diff_name(e) or ""
        if f in FUNC_SIGNATURES:
            return self.func_transform(e, f, outputs)
        return (self.grad(e, outputs), True) if f == "grad" else self.functional(e, f, outputs)

    def bind_args(self, e: ast.Call, sig: inspect.Signature, f: str) -> dict[str, ast.expr]:
        for a in e.args:
            if isinstance(a, ast.Starred):
                raise self.error(a, "`*` unpacking is not allowed")
        if any(kw.arg is None for kw in e.keywords):
            raise self.error(e, "`**` unpacking is not allowed")
        try:
            return dict(sig.bind(*e.args, **{kw.arg: kw.value for kw in e.keywords}).arguments)
        except TypeError as err:
            raise self.error(e, f"{f}(): {err}{_did_you_mean(str(err), sig)}") from None

    def result_names(self, e: ast.Call, f: str, n: int, outputs: list[str] | None) -> list[str]:
        if outputs is None:
            text = self.text(e)
            return [self.tmp(e, f, f"[{k}]" if n > 1 or text is None else "") for k in range(n)]
        if len(outputs) != n:
            what = "gradient" if f == "grad" else "result"
            raise self.error(e, f"{f}() returns {n} {what}{'s' * (n != 1)} "
                                f"but {len(outputs)} name{'s' * (len(outputs) != 1)} are unpacked")
        return outputs

    def functional(self, e: ast.Call, f: str, outputs: list[str] | None) -> tuple[list[str], bool]:
        """``jacobian(y, x)``, ``hessian``, ``vjp``/``jvp``/``hvp``/``vhp(y, x, v)``: the functional
        node of the same kind, its results row-major (the products only, for the vector products:
        the function's value is ``y`` itself)."""
        args = self.bind_args(e, FUNCTIONAL_SIGNATURES[f], f)
        outs, out_many = self.names_or_one(args["outputs"], f, "outputs")
        ins, in_many = self.names_or_one(args["inputs"], f, "inputs")
        attrs: dict[str, Any] = {"outputs": outs if out_many else outs[0],
                                 "inputs": ins if in_many else ins[0]}
        if "v" in args:
            o = self.expr(args["v"])
            if not (isinstance(o, _Lit) and o.value is None):
                vs, v_many = self.names_or_one(args["v"], f, "v")
                attrs["v"] = vs if v_many else vs[0]
        for key in ("create_graph", "strict", "vectorize"):
            if key in args:
                v = self.expr(args[key])
                if not (isinstance(v, _Lit) and isinstance(v.value, bool)):
                    raise self.error(args[key], f"{f}(): {key} must be True or False")
                attrs[key] = v.value
        for key in ("strategy", "outer_jacobian_strategy"):
            if key in args:
                v = self.expr(args[key])
                if not (isinstance(v, _Lit) and isinstance(v.value, str)):
                    raise self.error(args[key], f"{f}(): {key} must be 'reverse-mode' or 'forward-mode'")
                attrs[key] = v.value
        n = {"jacobian": len(outs) * len(ins), "hessian": len(ins) ** 2, "jvp": len(outs)}.get(f, len(ins))
        # torch returns a tuple when the function's inputs (or, for jacobian and jvp, outputs) are
        is_tuple = in_many and f != "jvp" or out_many and f in ("jacobian", "jvp")
        names = self.result_names(e, f, n, outputs)
        self.out.nodes.append({"op": f, "attributes": attrs, "outputs": names})
        self.out.positions.append(self.position(e))
        self.values.update(names)
        return names, is_tuple

    def func_transform(self, e: ast.Call, f: str, outputs: list[str] | None) -> tuple[list[str], bool]:
        """A torch.func transform: the node of the same kind (``vmap`` for ``func.vmap``), its
        results row-major (gradients or blocks, then the value, then the aux values)."""
        args = self.bind_args(e, FUNC_SIGNATURES[f], f)
        kind = "vmap" if f == "func.vmap" else f
        outs, out_many = self.names_or_one(args["outputs"], f, "outputs")
        ins, _ = self.names_or_one(args["inputs"], f, "inputs")
        attrs: dict[str, Any] = {"outputs": outs if out_many else outs[0], "inputs": ins}
        for key in ("v", "args"):
            if key in args:
                vs, many = self.names_or_one(args[key], f, key)
                attrs[key] = vs if many else vs[0]
        if kind == "vmap" and not isinstance(self.expr(args["inputs"]), _Seq):
            attrs["inputs"] = ins[0]  # one input: args is one value too
        for key in ("argnums", "in_dims", "out_dims", "chunk_size"):
            if key in args:
                attrs[key] = self.int_literal(args[key], f, key, none_ok=key != "argnums")
        for key in ("has_aux",):
            if key in args:
                v = self.expr(args[key])
                if not (isinstance(v, _Lit) and isinstance(v.value, bool)):
                    raise self.error(args[key], f"{f}(): {key} must be True or False")
                attrs[key] = v.value
        if "randomness" in args:
            v = self.expr(args["randomness"])
            if not (isinstance(v, _Lit) and isinstance(v.value, str)):
                raise self.error(args["randomness"], f"{f}(): randomness must be 'error', 'different' or "
                                 "'same'")
            attrs["randomness"] = v.value
        has_aux = bool(attrs.get("has_aux"))
        if has_aux and (not out_many or len(outs) < 2):
            raise self.error(args["outputs"], f"{f}(): with has_aux=True, outputs is (output, aux)")
        n_aux = len(outs) - 1 if has_aux else 0
        n_main = 1 if has_aux else len(outs)
        argnums = attrs.get("argnums", 0)
        k = len(argnums) if isinstance(argnums, list) else 1
        n = {"func.grad": k, "func.grad_and_value": k + 1, "func.vjp": len(ins), "func.jvp": n_main,
             "func.hessian": n_main * k * k, "vmap": len(outs)}.get(kind, n_main * k)
        n += 0 if kind in ("func.vjp", "func.jvp") else n_aux  # (their aux is a graph value already)
        # torch returns a tuple where it nests results: several positions, outputs, or aux
        is_tuple = {"func.grad": isinstance(argnums, list) or has_aux, "func.grad_and_value": True,
                    "func.vjp": True, "func.jvp": out_many and not has_aux, "vmap": out_many}.get(
            kind, out_many or isinstance(argnums, list) or has_aux)
        names = self.result_names(e, f, n, outputs)
        self.out.nodes.append({"op": kind, "attributes": attrs, "outputs": names})
        self.out.positions.append(self.position(e))
        self.values.update(names)
        return names, is_tuple

    def int_literal(self, node: ast.expr, f: str, key: str, none_ok: bool) -> Any:
        """An int, None (if allowed), or a tuple/list of them, as a wire value."""
        o = self.expr(node)
        items = o.items if isinstance(o, _Seq) else (o,)
        out = []
        for it in items:
            if not (isinstance(it, _Lit) and (type(it.value) is int or (none_ok and it.value is None))):
                what = "integers or None" if none_ok else "integers"
                raise self.error(node, f"{f}(): {key} must be {what} (or a tuple of them)")
            out.append(it.value)
        return out if isinstance(o, _Seq) else out[0]

    def names_or_one(self, node: ast.expr, f: str, what: str) -> tuple[list[str], bool]:
        """The names a functional argument gives, and whether it is a tuple (as torch tells apart)."""
        o = self.expr(node)
        items = o.items if isinstance(o, _Seq) else (o,)
        out = []
        for it in items:
            if not isinstance(it, _Val):
                raise self.error(node, f"{f}(): {what} must be tensors")
            out.append(it.name)
        return out, isinstance(o, _Seq)

    def grad(self, e: ast.Call, outputs: list[str] | None) -> list[str]:
        args = self.bind_args(e, _GRAD_SIG, "grad")
        outs, _ = self.names_or_one(args["outputs"], "grad", "outputs")
        ins, _ = self.names_or_one(args["inputs"], "grad", "inputs")
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
        outputs = self.result_names(e, "grad", len(ins), outputs)
        self.out.nodes.append({"op": "grad", "attributes": attrs, "outputs": outputs})
        self.out.positions.append(self.position(e))
        self.values.update(outputs)
        return outputs

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


def _op_text(stmt: ast.AugAssign) -> str:
    return {v: k for k, v in _AUG_TEXT.items()}.get(type(stmt.op), "?")


_AUG_TEXT = {"+": ast.Add, "-": ast.Sub, "*": ast.Mult, "/": ast.Div, "**": ast.Pow, "%": ast.Mod,
             "&": ast.BitAnd, "|": ast.BitOr, "^": ast.BitXor, "@": ast.MatMult, "//": ast.FloorDiv,
             "<<": ast.LShift, ">>": ast.RShift}


def _binding_counts(tree: ast.Module) -> dict[str, int]:
    """How many times each name is bound by the top-level statements (``y[0] = v`` and ``y += v``
    bind ``y`` again), so that the last binding can keep the user's name."""
    counts: dict[str, int] = {}

    def bound(t: ast.expr) -> None:
        if isinstance(t, ast.Name):
            counts[t.id] = counts.get(t.id, 0) + 1
        elif isinstance(t, (ast.Tuple, ast.List)):
            for x in t.elts:
                bound(x)
        elif isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name):
            bound(t.value)

    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            for t in stmt.targets:
                bound(t)
        elif isinstance(stmt, ast.AugAssign):
            bound(stmt.target)
    return counts


def compile_source(source: str, input_names: list[str] | set[str]) -> CompiledSource:
    """Compile ``source`` over the graph inputs ``input_names`` into wire-format nodes."""
    try:
        tree = ast.parse(source, mode="exec")
    except SyntaxError as e:
        raise ExpressionError(f"syntax error: {e.msg}", line=e.lineno or 1, col=e.offset or 1) from None
    except (ValueError, RecursionError, MemoryError) as e:
        raise ExpressionError(f"cannot parse the source: {e}", line=1, col=1) from None
    c = _Compiler(set(input_names), source, _binding_counts(tree))
    for stmt in tree.body:
        try:
            c.statement(stmt)
        except RecursionError:
            raise ExpressionError("the expression is nested too deeply", line=stmt.lineno,
                                  col=stmt.col_offset + 1) from None
    return c.out
