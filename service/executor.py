"""Validate a v1 request against the engine (a :class:`Plan`), and the runner that executes it.

:func:`build_plan` checks everything that can be checked without tensors: op names (resolved
only through ``engine.OPS``, so new ops appear by themselves), references, duplicate names,
cycles, arity and keyword names (bound against each op's ``inspect.Signature``), limits.
:class:`_Runner` runs the nodes in a stable topological order (the listed order whenever it is
valid), then the final ``autograd_grad`` (:func:`service.run.run_plan` decodes the inputs, checks
the plan statically and drives it); engine exceptions become
:class:`~service.errors.EngineError` / :class:`~service.errors.AutogradError` carrying torch's
type name and message.

>>> from service.wire import GradRequest
>>> req = GradRequest.model_validate({"graph": {
...     "inputs": [{"name": "x", "datatype": "FP64", "shape": [], "data": 3.0, "requires_grad": True}],
...     "source": "y = x * x"}, "outputs": "y", "inputs": "x"})
>>> from service.run import run_plan
>>> run_plan(build_plan(req)).grads
[array(6.)]
"""

from __future__ import annotations

import difflib
import heapq
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

import engine
from engine._functional_inplace import FUNCTIONAL_INPLACE, wire_op
from engine.tensor import VmapFallback

from . import codec
from .errors import (
    AutogradError,
    EngineError,
    GradserveError,
    InvalidGraph,
    InvalidRequest,
    PayloadTooLarge,
    RequestTimeout,
)
from .expr import SourcePos, compile_source
from .settings import Settings
from .wire import (
    DATATYPES,
    FuncGradNode,
    FuncHessianNode,
    FuncJacfwdNode,
    FuncJacrevNode,
    FuncProductNode,
    GradNode,
    GradRequest,
    Graph,
    HessianNode,
    JacobianNode,
    Node,
    OpNode,
    ProductNode,
    Ref,
    TensorIn,
    VmapNode,
)

__all__ = ["GraphPlan", "Plan", "Step", "Result", "compile_graph", "build_plan", "numel", "check_dims",
           "user_facing",
           "check_finite_output", "binary_tensors", "request_tensors"]

Loc = tuple[str | int, ...]
_NODE_ADAPTER: TypeAdapter = TypeAdapter(Node)


def numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


# ---------------------------------------------------------------- argument templates
@dataclass(frozen=True, slots=True)
class _Ref:
    """A reference to a named value inside a node's arguments."""

    name: str
    loc: Loc  # full location, starting ("graph", "nodes", i, ...)


@dataclass(frozen=True, slots=True)
class _Seq:
    """A list (or index tuple) holding at least one reference."""

    items: tuple
    is_tuple: bool


INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def _int_literal(v: int, loc: Loc) -> int:
    """An integer argument within int64, as torch's are (a 400-digit exponent is refused here,
    not run as 1300 squarings)."""
    if not INT64_MIN <= v <= INT64_MAX:
        digits = len(str(abs(v)))
        raise InvalidGraph(f"the integer argument ({digits} digits) is outside int64 "
                           f"[{INT64_MIN}, {INT64_MAX}]", loc=loc)
    return v


def _checked_literal(v: Any, loc: Loc) -> Any:
    """A ``{"literal": ...}`` value with every integer in it within int64."""
    if isinstance(v, int) and not isinstance(v, bool):
        return _int_literal(v, loc)
    if isinstance(v, list):
        for i, x in enumerate(v):
            _checked_literal(x, (*loc, i))
    return v


def _template(v: Any, loc: Loc, *, in_inputs: bool, refs: list[_Ref]) -> Any:
    """Turn a JSON argument into a template: literals stay as they are, names become _Ref."""
    if isinstance(v, str):
        if in_inputs:
            r = _Ref(v, loc)
            refs.append(r)
            return r
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return _int_literal(v, loc)
    if v is None or isinstance(v, (bool, float)):
        return v
    if isinstance(v, list):
        items = [_template(x, (*loc, i), in_inputs=in_inputs, refs=refs) for i, x in enumerate(v)]
        if any(isinstance(x, (_Ref, _Seq)) or x is Ellipsis or isinstance(x, slice) for x in items):
            return _Seq(tuple(items), False)
        return items
    if isinstance(v, dict):
        if len(v) != 1:
            raise InvalidGraph(_OBJ_HELP, loc=loc)
        (key, val), = v.items()
        if key == "ref":
            if not isinstance(val, str):
                raise InvalidGraph("{\"ref\": ...} takes a value name (a string)", loc=(*loc, "ref"))
            r = _Ref(val, (*loc, "ref"))
            refs.append(r)
            return r
        if key == "literal":
            return _checked_literal(val, (*loc, "literal"))
        if key == "ellipsis":
            return Ellipsis
        if key == "slice":
            if not (isinstance(val, list) and 1 <= len(val) <= 3
                    and all(x is None or (type(x) is int) for x in val)):
                raise InvalidGraph("{\"slice\": [start, stop, step]} takes up to 3 integers or nulls",
                                   loc=(*loc, "slice"))
            for i, x in enumerate(val):
                if x is not None:
                    _int_literal(x, (*loc, "slice", i))
            return slice(*val)
        if key == "tuple":
            if not isinstance(val, list):
                raise InvalidGraph("{\"tuple\": [...]} takes a list", loc=(*loc, "tuple"))
            items = [_template(x, (*loc, "tuple", i), in_inputs=True, refs=refs) for i, x in enumerate(val)]
            return _Seq(tuple(items), True)
        raise InvalidGraph(_OBJ_HELP, loc=loc)
    raise InvalidGraph(f"unsupported argument of type {type(v).__name__}", loc=loc)


_OBJ_HELP = ('an argument object must be one of {"ref": name}, {"literal": value}, '
             '{"slice": [start, stop, step]}, {"tuple": [...]}, {"ellipsis": true}')


def _resolve(t: Any, env: dict[str, Any]) -> Any:
    if type(t) is _Ref:
        return env[t.name]
    if type(t) is _Seq:
        items = [_resolve(x, env) for x in t.items]
        return tuple(items) if t.is_tuple else items
    return t


def _dtype_attr(v: Any, loc: Loc) -> Any:
    if not isinstance(v, str):
        return v
    try:
        return engine._dtype.to_dtype(DATATYPES.get(v, v))
    except TypeError:
        raise InvalidGraph(f"unknown dtype {v!r}", loc=loc) from None


# ---------------------------------------------------------------- plan
@dataclass(slots=True)
class Step:
    """One node, validated: what to call and which names its results get."""

    index: int
    op: engine.OpInfo | None          # None for a grad node
    args: list
    kwargs: dict
    outputs: list[str]
    loc: Loc
    pos: SourcePos | None             # (line, col, statement's name) when compiled from source
    refs: list[_Ref]
    grad: dict[str, Any] | None = None  # grad node: resolved attribute templates
    functional: dict[str, Any] | None = None  # jacobian/hessian/vjp/jvp/hvp/vhp, func.* or vmap node
    deps: set[int] = field(default_factory=set)

    @property
    def label(self) -> str:
        op = self.functional["kind"] if self.functional else "grad" if self.op is None else self.op.name
        if self.pos is None:
            return f"node {self.index} ({op} -> {', '.join(self.outputs)})"
        where = f"line {self.pos[0]}, col {self.pos[1]}"
        if all(o.isidentifier() for o in self.outputs):
            return f"{where} ({op} -> {', '.join(self.outputs)})"
        return f"{where} ({op}, assigning {self.pos.name})"  # an intermediate value of the statement


@dataclass(slots=True)
class GraphPlan:
    """A compiled graph: validated steps in execution order. It depends only on the graph's nodes
    (or source) and input names, never on tensor values or the top-level call, so one GraphPlan
    serves every request with the same graph (see :mod:`service.plan_cache`). Read-only once
    built: several engine threads may run it at once."""

    steps: list[Step]                 # in execution order
    input_names: list[str]
    known: frozenset[str]             # graph inputs and node outputs
    positions: list[SourcePos] | None  # (line, col, statement's name) per node index, for graph.source
    # values every run starts from besides the inputs: name -> (array, requires_grad); an ONNX
    # model's initializers and folded constants (service.onnx_graph)
    constants: dict[str, tuple[np.ndarray, bool]] = field(default_factory=dict)
    # the steps a functional node re-runs, by (node index, inputs, outputs): Runner.subgraph
    subgraphs: dict[tuple, list[Step]] = field(default_factory=dict)
    # graph.source: a re-assigned graph input's name -> the wire name of its last binding, and
    # the internal wire names of earlier bindings -> the user's names (service.expr)
    aliases: dict[str, str] = field(default_factory=dict)
    user_names: dict[str, str] = field(default_factory=dict)

    def value(self, name: str) -> str:
        """The wire name of the value the top level's ``outputs``, ``grad_outputs`` and ``return``
        mean by ``name``: a re-assigned input's last binding (``inputs`` mean the input as sent)."""
        return self.aliases.get(name, name)


@dataclass(slots=True)
class Plan:
    """One request's plan: its compiled graph plus the request's own top-level call and tensors."""

    request: GradRequest
    graph: GraphPlan

    @property
    def steps(self) -> list[Step]:
        return self.graph.steps

    @property
    def input_names(self) -> list[str]:
        return self.graph.input_names


class _Locator:
    """Builds errors that name the node and field, for JSON nodes and for compiled source."""

    def __init__(self, positions: list[SourcePos] | None, user_names: dict[str, str] | None = None) -> None:
        self.positions = positions
        self.user_names = user_names or {}

    def user_text(self, msg: str) -> str:
        """``msg`` with internal names (``'h'1'``) quoted as the user wrote them (``'h'``)."""
        for wire, user in self.user_names.items():
            if wire in msg:
                msg = msg.replace(repr(wire), repr(user)).replace(wire, user)
        return msg

    def loc(self, index: int, field_loc: Loc = ()) -> Loc:
        if self.positions is not None:
            return ("graph", "source")
        return ("graph", "nodes", index, *field_loc)

    def item(self, index: int, msg: str, field_loc: Loc = (), node: str | None = None) -> dict[str, Any]:
        msg = self.user_text(msg)
        it: dict[str, Any] = {"loc": list(self.loc(index, field_loc)), "msg": msg}
        if self.positions is not None:
            pos = self.positions[index]
            line, col = pos[0], pos[1]
            where = f"line {line}, col {col}"
            if not msg.startswith(where):  # a step's label already names it
                it["msg"] = f"{where}: {msg}"
            it["line"], it["col"] = line, col
            name = getattr(pos, "name", "")
            if name and (node is None or not node.isidentifier()):  # an intermediate value: name
                node = name  # what the user's statement assigns instead
        if node is not None:
            it["node"] = node
        return it

    def graph_error(self, index: int, msg: str, field_loc: Loc = (), node: str | None = None,
                    cls: type[InvalidGraph] = InvalidGraph) -> InvalidGraph:
        it = self.item(index, msg, field_loc, node)
        return cls(it["msg"], errors=[it])


def user_facing(e: GradserveError, graph: GraphPlan) -> GradserveError:
    """``e`` with the internal names of re-assigned values (``h'1``) written as the user's names,
    in its detail and its error items (message, node, operand shapes)."""
    if not graph.user_names:
        return e
    where = _Locator(None, graph.user_names)
    e.detail = where.user_text(e.detail)
    e.args = (e.detail,)
    for it in e.errors:
        if isinstance(it.get("msg"), str):
            it["msg"] = where.user_text(it["msg"])
        if it.get("node") in graph.user_names:
            it["node"] = graph.user_names[it["node"]]
        if isinstance(it.get("shapes"), dict):
            it["shapes"] = {graph.user_names.get(k, k): v for k, v in it["shapes"].items()}
    return e


def _close(name: str, pool: Any) -> str:
    m = difflib.get_close_matches(name, list(pool), n=3)
    return f"; did you mean {', '.join(repr(x) for x in m)}?" if m else ""


def _bind_field(msg: str) -> Loc:
    if "keyword" in msg or "multiple values" in msg:
        m = re.search(r"argument '(\w+)'", msg)
        return ("attributes", m.group(1)) if m else ("attributes",)
    return ("inputs",)


def compile_graph(g: Graph, settings: Settings | None = None) -> GraphPlan:
    """Check a graph's nodes (or source) without running anything (raises InvalidGraph & co.)."""
    s = settings or Settings()
    if g.hash is not None:
        raise InvalidGraph("a graph given by hash has no nodes to compile", loc=("graph", "hash"))
    positions: list[SourcePos] | None = None
    aliases: dict[str, str] = {}
    user_names: dict[str, str] = {}
    if g.source is not None:
        if len(g.source) > s.max_source_chars:
            raise PayloadTooLarge(f"graph.source has {len(g.source)} characters; the limit "
                                  f"max_source_chars is {s.max_source_chars}",
                                  limit="max_source_chars", loc=("graph", "source"))
        compiled = compile_source(g.source, [t.name for t in g.inputs])
        positions, aliases, user_names = compiled.positions, compiled.aliases, compiled.user_names
        if len(compiled.nodes) > s.max_nodes:
            raise PayloadTooLarge(f"the source compiles to {len(compiled.nodes)} nodes; the limit "
                                  f"max_nodes is {s.max_nodes}", limit="max_nodes", loc=("graph", "source"))
        nodes: list[OpNode | GradNode] = []
        for i, n in enumerate(compiled.nodes):
            try:
                nodes.append(_NODE_ADAPTER.validate_python(n))
            except ValidationError as e:  # the compiler should never produce these
                raise _Locator(positions).graph_error(i, e.errors()[0]["msg"]) from None
    else:
        nodes = list(g.nodes or [])
        if len(nodes) > s.max_nodes:
            raise PayloadTooLarge(f"the graph has {len(nodes)} nodes; the limit max_nodes is {s.max_nodes}",
                                  limit="max_nodes", loc=("graph", "nodes"))
    where = _Locator(positions, user_names)

    # -- names: graph inputs, then node outputs; each defined exactly once
    inputs: dict[str, int] = {}
    for i, t in enumerate(g.inputs):
        if t.name in inputs:
            raise InvalidGraph(f"duplicate name {t.name!r}: graph inputs {inputs[t.name]} and {i}",
                               loc=("graph", "inputs", i, "name"))
        inputs[t.name] = i
    producer: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for j, name in enumerate(n.outputs):
            if not name:
                raise where.graph_error(i, "output names must be non-empty", ("outputs", j))
            if name in inputs:
                raise where.graph_error(i, f"duplicate name {name!r}: it is already a graph input",
                                        ("outputs", j), name)
            if name in producer:
                raise where.graph_error(i, f"duplicate name {name!r}: node {producer[name]} already "
                                        "produces it", ("outputs", j), name)
            producer[name] = i

    # -- nodes: resolve ops, build templates, bind signatures
    steps: list[Step] = []
    for i, n in enumerate(nodes):
        try:
            steps.append(_make_step(i, n, where, positions))
        except RecursionError:
            raise where.graph_error(i, "arguments are nested too deeply") from None

    # -- references and dependencies
    for st in steps:
        for r in st.refs:
            if r.name in inputs:
                continue
            p = producer.get(r.name)
            if p is None:
                raise where.graph_error(st.index, f"unknown name {r.name!r}: not a graph input or a "
                                        f"node output{_close(r.name, [*inputs, *producer])}",
                                        r.loc[3:], st.outputs[0])
            if p == st.index:
                raise where.graph_error(st.index, f"cycle: the node uses its own output {r.name!r}",
                                        r.loc[3:], st.outputs[0])
            st.deps.add(p)
    order = _toposort(steps, where)
    return GraphPlan([steps[k] for k in order], list(inputs), frozenset(inputs) | frozenset(producer),
                     positions, aliases=aliases, user_names=user_names)


def check_dims(shape: Sequence[int], what: str, loc: Loc, s: Settings) -> None:
    """422 for a dimension over ``max_tensor_elements``, even when another is 0: no tensor that
    could hold data is that long, and numpy cannot lay out such a shape at all. (A shape over
    the limit in elements gets the element limit's 413 instead.)"""
    if numel(shape) > s.max_tensor_elements:
        return
    for d, n in enumerate(shape):
        if n > s.max_tensor_elements:
            raise InvalidRequest(f"{what} has dimension {d} of size {n} (shape {list(shape)}); the limit "
                                 f"max_tensor_elements is {s.max_tensor_elements}, for every dimension too",
                                 loc=(*loc, d))


def build_plan(req: GradRequest, settings: Settings | None = None, graph: GraphPlan | None = None) -> Plan:
    """Check the request without running anything (raises InvalidGraph & co.).

    ``graph`` is the request's graph already compiled (a plan-cache hit); by default it is
    compiled here. The top-level call and the tensor limits are checked per request.
    """
    s = settings or Settings()
    if graph is None:
        graph = compile_graph(req.graph, s)
    names = [t.name for t in req.graph.inputs]
    if names != graph.input_names:  # only possible for a graph given by hash
        raise InvalidRequest(f"graph.inputs are named {names} but the graph {req.graph.hash} was built "
                             f"with inputs {graph.input_names}", loc=("graph", "inputs"))
    for t, loc in request_tensors(req):
        if t.shape is not None:  # graph.onnx is a tensor-like of bytes, without a shape
            check_dims(t.shape, f"{t.name!r}" if t.name else "the tensor", (*loc, "shape"), s)
    for i, t in enumerate(req.graph.inputs):
        if numel(t.shape) > s.max_tensor_elements:
            raise PayloadTooLarge(f"graph input {t.name!r} has {numel(t.shape)} elements; the limit "
                                  f"max_tensor_elements is {s.max_tensor_elements}",
                                  limit="max_tensor_elements", loc=("graph", "inputs", i, "shape"))

    # -- top-level references
    known = graph.known

    def check(name: str, loc: Loc) -> None:
        if name not in known:
            raise InvalidGraph(f"unknown name {name!r}: not a graph input or a node output"
                               f"{_close(name, known)}", loc=loc)

    if (req.outputs is None) != (req.inputs is None):
        missing = "outputs" if req.outputs is None else "inputs"
        raise InvalidRequest(f"{missing} is missing: outputs and inputs go together (leave both out "
                             "to compute values only)", loc=(missing,))
    for key in ("outputs", "inputs"):
        v = getattr(req, key)
        for i, name in enumerate([v] if isinstance(v, str) else v or []):
            check(name, (key,) if isinstance(v, str) else (key, i))
    if req.inputs is not None:  # an internal name (h'1) is not the user's to name
        for i, name in enumerate([req.inputs] if isinstance(req.inputs, str) else req.inputs):
            if name in graph.user_names:
                raise InvalidGraph(f"unknown name {name!r}: not a graph input or a node output",
                                   loc=("inputs",) if isinstance(req.inputs, str) else ("inputs", i))
    go = req.grad_outputs
    for i, x in enumerate([go] if isinstance(go, str) else go or []):
        if isinstance(x, str):
            check(x, ("grad_outputs",) if isinstance(go, str) else ("grad_outputs", i))
        elif isinstance(x, TensorIn) and numel(x.shape) > s.max_tensor_elements:
            raise PayloadTooLarge(f"grad_outputs[{i}] has {numel(x.shape)} elements; the limit "
                                  f"max_tensor_elements is {s.max_tensor_elements}",
                                  limit="max_tensor_elements", loc=("grad_outputs", i, "shape"))
    for i, name in enumerate(req.return_):
        check(name, ("return", i))
    return Plan(req, graph)


def _make_step(i: int, n: OpNode | GradNode | _FunctionalNode, where: _Locator, positions: Any) -> Step:
    refs: list[_Ref] = []
    pos = positions[i] if positions is not None else None
    base: Loc = ("graph", "nodes", i)
    if isinstance(n, _FUNCTIONAL_NODES):
        return _functional_step(i, n, where, pos)
    if isinstance(n, GradNode):
        a = n.attributes
        grad: dict[str, Any] = {}
        for key in ("outputs", "inputs", "grad_outputs"):
            v = getattr(a, key)
            if v is None:
                grad[key] = None
                continue
            many = isinstance(v, list)
            items = []
            for j, x in enumerate(v if many else [v]):
                if x is None:
                    items.append(None)
                    continue
                loc = (*base, "attributes", key, *((j,) if many else ()))
                r = _Ref(x.ref if isinstance(x, Ref) else x, loc)
                refs.append(r)
                items.append(r)
            grad[key] = items
        grad.update(retain_graph=a.retain_graph, create_graph=a.create_graph, allow_unused=a.allow_unused,
                    materialize_grads=a.materialize_grads, is_grads_batched=a.is_grads_batched)
        if len(n.outputs) != len(grad["inputs"]):
            k = len(grad["inputs"])
            raise where.graph_error(i, f"a grad node returns one gradient per input: {k} input"
                                    f"{'s' * (k != 1)} but {len(n.outputs)} output names", ("outputs",),
                                    n.outputs[0])
        return Step(i, None, [], {}, list(n.outputs), base, pos, refs, grad)

    info = wire_op(n.op)  # an in-place name (add_) is its functional twin: the node's output is
    if info is None:      # the mutated value, and no value already bound ever changes
        pool = [*engine.OPS, *FUNCTIONAL_INPLACE, "setitem"]
        raise where.graph_error(i, f"unknown op {n.op!r}{_close(n.op, pool)} (GET /v1/ops lists "
                                "them)", ("op",), n.outputs[0])
    try:
        args = [_template(x, (*base, "inputs", j), in_inputs=True, refs=refs) for j, x in enumerate(n.inputs)]
        kwargs = {k: _template(v, (*base, "attributes", k), in_inputs=False, refs=refs)
                  for k, v in n.attributes.items()}
        if "dtype" in kwargs:
            kwargs["dtype"] = _dtype_attr(kwargs["dtype"], (*base, "attributes", "dtype"))
    except InvalidGraph as e:
        loc = tuple(e.errors[0]["loc"][3:]) if e.errors else ()
        raise where.graph_error(i, e.detail, loc, n.outputs[0]) from None
    try:
        info.signature.bind(*args, **kwargs)
    except TypeError as e:
        hint = ""
        m = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if m:
            hint = _close(m.group(1), [p.name for p in info.signature.parameters.values()
                                       if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)])
        raise where.graph_error(i, f"{info.name}(): {e}{hint}", _bind_field(str(e)), n.outputs[0]) from None
    return Step(i, info, args, kwargs, list(n.outputs), base, pos, refs)


_FunctionalNode = (JacobianNode | HessianNode | ProductNode | FuncGradNode | FuncJacrevNode | FuncJacfwdNode
                   | FuncHessianNode | FuncProductNode | VmapNode)
_FUNCTIONAL_NODES = (JacobianNode, HessianNode, ProductNode, FuncGradNode, FuncJacrevNode, FuncJacfwdNode,
                     FuncHessianNode, FuncProductNode, VmapNode)
_OPERANDS = ("outputs", "inputs", "v", "args")  # attributes of a functional node that name values


def _functional_step(i: int, n: _FunctionalNode, where: _Locator, pos: Any) -> Step:
    """A functional node: references for the function's outputs, inputs and ``v``; checks that
    it names one result per block (jacobian, hessian) or per vector (the products)."""
    base: Loc = ("graph", "nodes", i)
    refs: list[_Ref] = []
    a = n.attributes
    kind = "vmap" if n.op == "func.vmap" else n.op
    fn: dict[str, Any] = {"kind": kind}
    for key in _OPERANDS:
        v = getattr(a, key, None)
        if v is None:
            fn[key] = None
            continue
        many = isinstance(v, list)
        items = []
        for j, x in enumerate(v if many else [v]):
            r = _Ref(x.ref if isinstance(x, Ref) else x, (*base, "attributes", key, *((j,) if many else ())))
            refs.append(r)
            items.append(r)
        if not items:
            raise where.graph_error(i, f"{n.op}: {key} must name at least one value", ("attributes", key),
                                    n.outputs[0])
        fn[key] = (items, many)
    fn["flags"] = a.model_dump(exclude=set(_OPERANDS))
    n_out, n_in = len(fn["outputs"][0]), len(fn["inputs"][0])
    if kind.startswith("func.") or kind == "vmap":
        expected, per = _func_counts(i, n, fn, n_out, n_in, where)
    else:
        expected, per = {
            "jacobian": (n_out * n_in, f"one block per (output, input) pair, row-major: {n_out} x {n_in}"),
            "hessian": (n_in * n_in, f"one block per (input, input) pair, row-major: {n_in} x {n_in}"),
            "jvp": (n_out, "one product per function output"),
        }.get(n.op, (n_in, "one product per function input"))
    if len(n.outputs) != expected:
        raise where.graph_error(i, f"a {n.op} node returns {per}, so it needs {expected} output name"
                                f"{'s' * (expected != 1)}, got {len(n.outputs)}", ("outputs",), n.outputs[0])
    return Step(i, None, [], {}, list(n.outputs), base, pos, refs, functional=fn)


def _func_counts(i: int, n: _FunctionalNode, fn: dict[str, Any], n_out: int, n_in: int,
                 where: _Locator) -> tuple[int, str]:
    """How many results a torch.func node has, and how they are laid out; ``argnums`` and
    ``has_aux`` checked statically, with torch's words."""
    flags = fn["flags"]
    node = n.outputs[0]
    n_aux = 0
    if flags.get("has_aux"):
        if n_out < 2 or not fn["outputs"][1]:
            raise where.graph_error(i, f"{n.op}: with has_aux, outputs names the function's output, then its "
                                    "aux value(s)", ("attributes", "outputs"), node)
        n_aux, n_out = n_out - 1, 1
    aux = f", then {n_aux} aux value{'s' * (n_aux != 1)}" if n_aux else ""
    if n.op == "vmap" or n.op == "func.vmap":
        n_args = len(fn["args"][0])
        if n_args != n_in or fn["args"][1] != fn["inputs"][1]:
            raise where.graph_error(i, f"{n.op}: args gives the function's {n_in} input"
                                    f"{'s' * (n_in != 1)} (a name for a single input, a list for several, as "
                                    f"inputs does), got {n_args}", ("attributes", "args"), node)
        return n_out, "one result per function output"
    if n.op in ("func.vjp", "func.jvp"):  # the output and aux are graph values already
        if n.op == "func.vjp":
            return n_in, "one product per function input"
        return n_out, "one product per function output"
    argnums = flags["argnums"]
    nums = [argnums] if isinstance(argnums, int) else argnums
    if not nums:
        raise where.graph_error(i, "argnums must be non-empty", ("attributes", "argnums"), node)
    seen = set()
    for k, a in enumerate(nums):
        if not -n_in <= a < n_in:
            at = () if isinstance(argnums, int) else (k,)
            raise where.graph_error(i, f"Got argnum={a}, but only {n_in} positional inputs",
                                    ("attributes", "argnums", *at), node)
        if a % n_in in seen:
            raise where.graph_error(i, f"argnums elements must be unique, got {tuple(nums)}",
                                    ("attributes", "argnums"), node)
        seen.add(a % n_in)
    k = len(nums)
    if n.op == "func.grad":
        return k + n_aux, f"one gradient per argnums position{aux}"
    if n.op == "func.grad_and_value":
        return k + 1 + n_aux, f"one gradient per argnums position, then the value{aux}"
    if n.op == "func.hessian":
        return n_out * k * k, (f"one block per (output, position, position), row-major: {n_out} x {k} x {k}")
    return n_out * k + n_aux, f"one block per (output, argnums position) pair, row-major: {n_out} x {k}{aux}"


def _toposort(steps: list[Step], where: _Locator) -> list[int]:
    """Stable topological order (lowest index first among ready nodes); InvalidGraph on a cycle."""
    users: dict[int, list[int]] = {st.index: [] for st in steps}
    waiting = {st.index: len(st.deps) for st in steps}
    for st in steps:
        for d in st.deps:
            users[d].append(st.index)
    ready = [i for i, w in waiting.items() if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) == len(steps):
        return order
    # A cycle among the rest: walk dependencies from a blocked node until one repeats.
    blocked = {i for i, w in waiting.items() if w > 0}
    path: list[int] = []
    seen: dict[int, int] = {}
    i = min(blocked)
    while i not in seen:
        seen[i] = len(path)
        path.append(i)
        i = min(d for d in steps[i].deps if d in blocked)
    cycle = path[seen[i]:] + [i]
    names = " -> ".join(f"{steps[k].outputs[0]!r} (node {k})" for k in cycle)
    first = cycle[0]
    raise where.graph_error(first, f"cycle: {names}", (), steps[first].outputs[0])


# ---------------------------------------------------------------- running
@dataclass(slots=True)
class Result:
    """Gradients (one per top-level input, None where unused) and the requested values."""

    grads: list[np.ndarray | None]
    values: dict[str, np.ndarray | None]
    report: Any = None  # the static check's preflight.Report (work, value-dependent shapes)


def _decode(t: TensorIn, blob: Any, loc: Loc) -> np.ndarray:
    """``t``'s array; ``blob`` holds its bytes (binary) or, for b64, its base64 text when that
    was cut out of the JSON body (service.core)."""
    try:
        if t.source == "data":
            return codec.decode_data(t.data, t.datatype, t.shape)
        if t.source == "b64":
            return codec.decode_b64((t.b64 or "") if blob is None else blob, t.datatype, t.shape)
        return codec.decode_bytes(blob, t.datatype, t.shape)
    except codec.TensorDecodeError as e:
        field = {"data": "data", "b64": "b64"}.get(t.source, "parameters")
        raise InvalidRequest(str(e), loc=(*loc, field)) from None


def _leaf(t: TensorIn, arr: np.ndarray, loc: Loc) -> Any:
    x = engine.from_numpy(arr)
    if t.requires_grad:
        try:
            x.requires_grad_()
        except Exception as e:
            raise EngineError.from_exception(e, loc=(*loc, "requires_grad")) from None
    return x


def request_tensors(req: GradRequest) -> list[tuple[TensorIn, Loc]]:
    """The request's tensors with their locations: graph inputs, then those among grad_outputs."""
    out: list[tuple[Any, Loc]] = []
    if req.graph.onnx is not None and req.graph.onnx.source != "hash":  # the model's bytes come first
        out.append((req.graph.onnx, ("graph", "onnx")))
    out += [(t, ("graph", "inputs", i)) for i, t in enumerate(req.graph.inputs)]
    if isinstance(req.grad_outputs, list):
        out += [(t, ("grad_outputs", i)) for i, t in enumerate(req.grad_outputs) if isinstance(t, TensorIn)]
    return out


def binary_tensors(req: GradRequest) -> list[tuple[TensorIn, Loc]]:
    """Tensors whose bytes travel in the binary body, in body order."""
    return [(t, loc) for t, loc in request_tensors(req) if t.source == "binary"]


_AUTOGRAD_LOCS: tuple[tuple[re.Pattern, Callable[[re.Match], Loc]], ...] = (
    (re.compile(r"differentiated Tensor at index (\d+)"), lambda m: ("inputs", int(m.group(1)))),
    (re.compile(r"^element (\d+) of tensors"), lambda m: ("outputs", int(m.group(1)))),
    (re.compile(r"grad_output\[(\d+)\]"), lambda m: ("grad_outputs", int(m.group(1)))),
    (re.compile(r"gradients|implicitly created|grad_output"), lambda m: ("grad_outputs",)),
    (re.compile(r"differentiated Tensors|`inputs`|allow_unused"), lambda m: ("inputs",)),
    (re.compile(r"output"), lambda m: ("outputs",)),
)


def _field_of(msg: str, table: tuple) -> Loc:
    """The request field an engine message points at: the first pattern of ``table`` it matches."""
    for pat, f in table:
        m = pat.search(msg)
        if m:
            return f(m)
    return ()


def _autograd_field(msg: str) -> Loc:
    return _field_of(msg, _AUTOGRAD_LOCS)


class _Runner:
    def __init__(self, plan: Plan, settings: Settings, deadline: float | None) -> None:
        self.plan, self.s, self.deadline = plan, settings, deadline
        self.where = _Locator(plan.graph.positions, plan.graph.user_names)
        self.env: dict[str, Any] = {}
        self.limit = settings.max_tensor_elements
        self.check_finite = bool(plan.request.check_finite)

    def bind_constants(self) -> None:
        """The graph's constants (an ONNX model's initializers) that no input overrides."""
        env = self.env
        for name, (arr, rg) in self.plan.graph.constants.items():
            if name not in env:
                c = engine.from_numpy(arr)
                env[name] = c.requires_grad_() if rg else c

    def check_deadline(self, what: str | Step) -> None:
        """RequestTimeout past the deadline; ``what`` (a step's label is built only then) is
        what would have run next."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            label = what.label if isinstance(what, Step) else what
            raise RequestTimeout(f"the request ran past request_timeout_s={self.s.request_timeout_s:g} "
                                 f"(stopped before {label}); its work was stopped")

    def run_step(self, st: Step) -> None:
        env = self.env
        if st.functional is not None:
            self.run_functional(st)
            return
        if st.op is None:
            self.run_grad(st)
            return
        # names and literals inline: most arguments are one or the other
        args = [env[a.name] if type(a) is _Ref else _resolve(a, env) if type(a) is _Seq else a
                for a in st.args]
        kwargs = {k: _resolve(v, env) for k, v in st.kwargs.items()} if st.kwargs else {}
        try:
            if st.op.name == "getitem" and isinstance(args[0], (tuple, list)):
                res = args[0][args[1]]  # picking one result of a multi-output op
            else:
                res = st.op.fn(*args, **kwargs)
        except MemoryError:
            raise PayloadTooLarge(f"out of memory running {st.label}", limit="memory",
                                  loc=st.loc) from None
        except VmapFallback:
            raise  # inside vmap: the op read batched values (or drew random ones); vmap decides
        except Exception as e:
            item = self.where.item(st.index, f"{st.op.name}: {e or type(e).__name__}", (), st.outputs[0])
            err = EngineError.from_exception(e)
            err.errors = [item]
            raise err from None
        self.bind(st, res)

    def bind(self, st: Step, res: Any) -> None:
        outs = st.outputs
        if isinstance(res, tuple) and len(outs) > 1:
            if len(res) != len(outs):
                raise self.where.graph_error(
                    st.index, f"{st.op.name if st.op else 'grad'} returned {len(res)} results but the "
                    f"node names {len(outs)} outputs", ("outputs",), outs[0])
            for name, v in zip(outs, res):
                self.env[name] = self.checked(st, name, v)
        elif len(outs) > 1:
            raise self.where.graph_error(st.index, f"{st.op.name if st.op else 'grad'} returned one result "
                                         f"but the node names {len(outs)} outputs", ("outputs",), outs[0])
        else:
            self.env[outs[0]] = self.checked(st, outs[0], res)

    def checked(self, st: Step, name: str, v: Any) -> Any:
        if isinstance(v, engine.Tensor) and v.numel() > self.limit:
            raise PayloadTooLarge(f"{st.label} produced {name!r} with {v.numel()} elements; the limit "
                                  f"max_tensor_elements is {self.s.max_tensor_elements}",
                                  limit="max_tensor_elements", loc=st.loc)
        if self.check_finite:
            check_finite_output(st, name, v, self.where)
        return v

    def run_grad(self, st: Step) -> None:
        a = st.grad or {}
        env = self.env
        outs = [env[r.name] for r in a["outputs"]]
        ins = [env[r.name] for r in a["inputs"]]
        gos = None if a["grad_outputs"] is None else [None if r is None else env[r.name]
                                                      for r in a["grad_outputs"]]
        try:
            res = engine.autograd_grad(outs, ins, gos, retain_graph=a["retain_graph"],
                                       create_graph=a["create_graph"], allow_unused=a["allow_unused"],
                                       is_grads_batched=a["is_grads_batched"],
                                       materialize_grads=a["materialize_grads"])
        except MemoryError:
            raise PayloadTooLarge(f"out of memory running {st.label}", limit="memory", loc=st.loc) from None
        except VmapFallback:
            raise
        except Exception as e:
            field = _autograd_field(str(e))
            item = self.where.item(st.index, f"grad: {e or type(e).__name__}",
                                   ("attributes", *field), st.outputs[0])
            err = AutogradError.from_exception(e)
            err.errors = [item]
            raise err from None
        for name, v in zip(st.outputs, res):  # one output name per input, checked in the plan
            self.env[name] = self.checked(st, name, v)

    # ------------------------------------------------------------ functional nodes
    def run_functional(self, st: Step) -> None:
        """``engine.autograd.functional.<kind>`` (or ``engine.func``'s transform, for ``func.*``
        and ``vmap``) of the sub-graph from the node's inputs to its outputs; the results are
        bound, in row-major order, to the node's output names."""
        fn = st.functional or {}
        kind = fn["kind"]
        out_refs, out_many = fn["outputs"]
        in_refs, in_many = fn["inputs"]
        xs = tuple(self.tensor_ref(st, r) for r in in_refs)
        outs = [self.tensor_ref(st, r) for r in out_refs]
        self.check_result_size(st, kind, outs, xs)
        steps = self.subgraph(st, [r.name for r in in_refs], [r.name for r in out_refs])
        aux = bool(fn["flags"].get("has_aux"))

        def func(*new: Any) -> Any:
            saved = self.env
            self.env = {**saved, **{r.name: x for r, x in zip(in_refs, new)}}
            try:
                for s in steps:
                    self.check_deadline(s.label)
                    self.run_step(s)
                res = tuple(self.env[r.name] for r in out_refs)
            finally:
                self.env = saved
            if aux:  # (output, aux): aux a tuple when several are named
                return res[0], res[1] if len(res) == 2 else res[1:]
            return res if out_many else res[0]

        try:
            flat = self.transform(st, kind, func, xs, in_many)
        except (GradserveError, VmapFallback):
            raise  # raised by a node of the function itself, which it names (or for an outer vmap)
        except MemoryError:
            raise PayloadTooLarge(f"out of memory running {st.label}", limit="memory", loc=st.loc) from None
        except Exception as e:
            item = self.where.item(st.index, f"{kind}: {e or type(e).__name__}",
                                   ("attributes", *_functional_field(str(e))), st.outputs[0])
            err = AutogradError.from_exception(e)
            err.errors = [item]
            raise err from None
        for name, t in zip(st.outputs, flat):  # the counts were checked in the plan
            self.env[name] = self.checked(st, name, t)

    def transform(self, st: Step, kind: str, func: Callable, xs: tuple, in_many: bool) -> list[Any]:
        """The node's transform of ``func`` at ``xs``: its results, flattened row-major."""
        fn = st.functional or {}
        flags = dict(fn["flags"])
        if kind in ("jacobian", "hessian"):
            return _flatten_results(getattr(engine.autograd.functional, kind)(
                func, xs if in_many else xs[0], **flags))
        v = fn["v"]
        vs = None if v is None else tuple(self.tensor_ref(st, r) for r in v[0])
        if not kind.startswith("func.") and kind != "vmap":
            res = getattr(engine.autograd.functional, kind)(
                func, xs if in_many else xs[0], None if vs is None else vs if v[1] else vs[0], **flags)
            return _flatten_results(res[1])
        tf = engine.func
        if kind == "vmap":
            args = tuple(self.tensor_ref(st, r) for r in fn["args"][0])
            dims = flags.pop("in_dims")
            res = tf.vmap(func, in_dims=tuple(dims) if isinstance(dims, list) else dims,
                          out_dims=_dims(flags.pop("out_dims")), **flags)(*args)
            return _flatten_results(res)
        has_aux = flags.get("has_aux", False)
        if "argnums" in flags and isinstance(flags["argnums"], list):
            flags["argnums"] = tuple(flags["argnums"])
        if kind in ("func.grad", "func.grad_and_value", "func.jacrev", "func.jacfwd", "func.hessian"):
            res = getattr(tf, kind[5:])(func, **flags)(*xs)
            if kind == "func.grad_and_value" and has_aux:  # (grads, (value, aux))
                return _flatten_results((res[0], res[1][0], res[1][1]))
            return _flatten_results(res)
        tangents = vs if v[1] else vs[0]  # type: ignore[index]
        if kind == "func.vjp":
            return _flatten_results(tf.vjp(func, *xs, has_aux=has_aux)[1](tangents))
        return _flatten_results(tf.jvp(func, xs, tangents if v[1] else (tangents,), has_aux=has_aux)[1])

    def tensor_ref(self, st: Step, r: _Ref) -> Any:
        v = self.env[r.name]
        if not isinstance(v, engine.Tensor):
            raise self.where.graph_error(st.index, f"{r.name!r} is not a tensor", r.loc[3:], st.outputs[0])
        return v

    def check_result_size(self, st: Step, kind: str, outs: list[Any], xs: tuple) -> None:
        """Jacobian and Hessian blocks are products of sizes: refuse them before computing."""
        flags = (st.functional or {}).get("flags", {})
        if kind in ("func.jacrev", "func.jacfwd", "func.hessian"):
            a = flags["argnums"]
            xs = tuple(xs[k] for k in ([a] if isinstance(a, int) else a))
            outs = outs[:1] if flags.get("has_aux") else outs
        if kind in ("jacobian", "func.jacrev", "func.jacfwd"):
            pairs = [(o, x, 1) for o in outs for x in xs]
        elif kind == "hessian":
            pairs = [(x, y, 1) for x in xs for y in xs]
        elif kind == "func.hessian":
            pairs = [(x, y, o.numel()) for o in outs for x in xs for y in xs]
        else:
            return
        for a, b, k in pairs:
            n = a.numel() * b.numel() * k
            if n > self.s.max_tensor_elements:
                limit = self.s.max_tensor_elements
                sizes = " x ".join(str(x) for x in (*((k,) if k != 1 else ()), a.numel(), b.numel()))
                raise PayloadTooLarge(f"{st.label} would produce a block of {sizes} = {n} "
                                      f"elements; the limit max_tensor_elements is {limit}",
                                      limit="max_tensor_elements", loc=st.loc)

    def subgraph(self, st: Step, inputs: list[str], outputs: list[str]) -> list[Step]:
        """The steps to re-run at new input values: those before ``st`` that depend on an input
        and that an output depends on. A step producing an input is never re-run. Computed once
        per compiled graph (several requests, threads even, may ask: they get the same list)."""
        key = (st.index, tuple(inputs), tuple(outputs))
        hit = self.plan.graph.subgraphs.get(key)
        if hit is not None:
            return hit
        tainted = set(inputs)
        rerun = []
        for s in self.plan.steps:
            if s is st:
                break
            if any(o in inputs for o in s.outputs):
                continue
            if any(r.name in tainted for r in s.refs):
                rerun.append(s)
                tainted.update(s.outputs)
        needed = set(outputs)
        keep = []
        for s in reversed(rerun):
            if any(o in needed for o in s.outputs):
                keep.append(s)
                # a functional step re-runs its own function: its outputs' steps are not needed
                # for it (their values only size its blocks), so vmap(grad(f)) runs f once
                needed.update(r.name for r in s.refs
                              if not (s.functional and r.loc[3:5] == ("attributes", "outputs")))
        self.plan.graph.subgraphs[key] = keep[::-1]
        return keep[::-1]

    def final_grad(self, blobs: dict[int, Any], arrays: bool = True) -> list[Any]:
        """The top-level ``autograd_grad``: arrays (tensors with ``arrays=False``), None where unused."""
        req = self.plan.request
        if req.outputs is None:
            return []
        env, value = self.env, self.plan.graph.value
        outs = [env[value(n)] for n in ([req.outputs] if isinstance(req.outputs, str) else req.outputs)]
        ins = [env[n] for n in ([req.inputs] if isinstance(req.inputs, str) else req.inputs or [])]
        gos = None
        go = req.grad_outputs
        if go is not None:
            gos = []
            for i, x in enumerate([go] if isinstance(go, str) else go):
                if isinstance(x, TensorIn):
                    loc = ("grad_outputs", i)
                    gos.append(engine.from_numpy(_decode(x, blobs.get(id(x)), loc)))
                else:
                    gos.append(None if x is None else env[value(x)])
        self.check_deadline("the final autograd_grad")
        try:
            res = engine.autograd_grad(outs, ins, gos, retain_graph=req.retain_graph,
                                       create_graph=req.create_graph, allow_unused=req.allow_unused,
                                       is_grads_batched=req.is_grads_batched,
                                       materialize_grads=req.materialize_grads)
        except MemoryError:
            raise PayloadTooLarge("out of memory in the final autograd_grad", limit="memory") from None
        except Exception as e:
            msg = str(e) or type(e).__name__
            raise AutogradError.from_exception(e, loc=_autograd_field(msg) or ("inputs",)) from None
        if not arrays:
            return list(res)
        return [None if g is None else _array(g, f"grads[{i}]") for i, g in enumerate(res)]


_FUNCTIONAL_LOCS: tuple[tuple[re.Pattern, Callable[[re.Match], Loc]], ...] = (
    (re.compile(r"in_dim"), lambda m: ("in_dims",)),
    (re.compile(r"out_dim|Dimension out of range|must only return Tensors"), lambda m: ("out_dims",)),
    (re.compile(r"size in the mapped dimension|nothing to map over"), lambda m: ("args",)),
    (re.compile(r"randomness|random operation"), lambda m: ("randomness",)),
    (re.compile(r"argnum"), lambda m: ("argnums",)),
    (re.compile(r"has_aux|\(output, aux\)"), lambda m: ("has_aux",)),
    (re.compile(r"cotangents|tangents"), lambda m: ("v",)),
    (re.compile(r"\bv\b|vector v"), lambda m: ("v",)),
    (re.compile(r"^Output \d+ of the user-provided function is independent of input (\d+)"),
     lambda m: ("inputs", int(m.group(1)))),
    (re.compile(r"^Output \d+|returned by the function|function given to"), lambda m: ("outputs",)),
    (re.compile(r"input (\d+)"), lambda m: ("inputs", int(m.group(1)))),
    (re.compile(r"strategy|forward-mode"), lambda m: ("strategy",)),
    (re.compile(r"vectoriz"), lambda m: ("vectorize",)),
)


def _dims(d: Any) -> Any:
    """Wire dims (an int, null, or a list) as torch takes them (a list is a tuple)."""
    return tuple(d) if isinstance(d, list) else d


def _functional_field(msg: str) -> Loc:
    return _field_of(msg, _FUNCTIONAL_LOCS)


def _flatten_results(res: Any) -> list[Any]:
    """Nested tuples (or lists: torch's forward-mode jacobian) of tensors, row-major."""
    if isinstance(res, (tuple, list)):
        return [t for r in res for t in _flatten_results(r)]
    return [res]


def _array(v: Any, name: str) -> np.ndarray | None:
    if v is None:
        return None
    if isinstance(v, engine.Tensor):
        return v.detach().numpy()
    if isinstance(v, (bool, int, float)) or (isinstance(v, tuple) and all(isinstance(x, int) for x in v)):
        for x in v if isinstance(v, tuple) else (v,):
            if isinstance(x, int) and not INT64_MIN <= x <= INT64_MAX:
                raise InvalidGraph(f"value {name!r} is an integer ({len(str(abs(x)))} digits) outside int64, "
                                   "which no response datatype holds", loc=("return",))
        return np.asarray(v)
    if isinstance(v, (tuple, list)):
        raise InvalidGraph(f"value {name!r} holds {len(v)} results; name them in the node's outputs "
                           "(or index it) to return them", loc=("return",))
    raise InvalidGraph(f"value {name!r} is not a tensor", loc=("return",))


def check_finite_output(st: Step, name: str, v: Any, where: _Locator) -> None:
    """With ``check_finite``: refuse the first node whose result holds NaN or infinity."""
    d = getattr(v, "_data", None)
    # (a batched tensor inside vmap holds a shadow, no values: the vmap node's results are checked)
    if not isinstance(d, np.ndarray) or d.dtype.kind != "f" or np.isfinite(d).all():
        return
    what = "NaN" if np.isnan(d).any() else "infinity"
    detail = f"{st.label} produced {what} in {name!r} (check_finite)"
    err = EngineError(detail, exception="RuntimeError", loc=st.loc)
    err.errors = [where.item(st.index, f"{name!r} holds {what} (check_finite)", (), name)]
    raise err
