"""``"graph": {"onnx": ...}``: an ONNX model as the graph of ``POST /v1/grad``.

The model is parsed and checked once (:func:`engine.onnx.load`) and kept in the plan cache under
its hash, ``"sha256:<hex>"`` of its bytes: later requests send ``{"onnx": {"hash": ...}}`` (or
``"graph": {"hash": ...}``) instead of the bytes. For each set of input shapes the model is
lowered to engine-op steps (:meth:`engine.onnx.OnnxModule.program`), which become an ordinary
:class:`~service.executor.GraphPlan`: every ONNX value (inputs, initializers, node outputs) is a
graph value that top-level ``outputs``, ``inputs`` and ``return`` may name, the initializers are
leaves that require grad, and the meta-mode checks, limits and deadline apply as to any graph.
``nodes``, when given, run after the model and may use its values (the client's loss, say).

>>> plan(payload, settings, cache, None, None, {})  # doctest: +SKIP
(GradRequest(...), Plan(...), CachedPlan(...), 'sha256:...')
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pybase64

import engine

from .errors import BadRequest, InvalidGraph, PayloadTooLarge, PlanNotCached
from .executor import GraphPlan, Plan, Step, _Locator, _make_step, _Ref, _Seq, _toposort, build_plan, numel
from .plan_cache import CachedPlan, PlanCache
from .settings import Settings
from .wire import DATATYPES, GradRequest

__all__ = ["is_onnx", "plan", "OnnxEntry", "load_model"]


@dataclass(slots=True)
class OnnxStep(Step):
    """A step lowered from an ONNX node: its label names that node."""

    onnx_node: str = ""

    @property
    def label(self) -> str:
        op = self.op.name if self.op is not None else "?"
        return f"ONNX node {self.onnx_node} ({op} -> {', '.join(self.outputs)})"


class OnnxEntry:
    """What the plan cache keeps for a model: the loaded module and its specialised plans."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self._plans: OrderedDict[tuple, GraphPlan] = OrderedDict()
        self._lock = threading.Lock()

    def graph_plan(self, key: tuple, build: Any) -> GraphPlan:
        with self._lock:
            g = self._plans.get(key)
            if g is not None:
                self._plans.move_to_end(key)
                return g
        g = build()
        with self._lock:
            g = self._plans.setdefault(key, g)
            while len(self._plans) > 32:
                self._plans.popitem(last=False)
        return g


def _graph(payload: Any) -> Any:
    return payload.get("graph") if isinstance(payload, dict) else None


def is_onnx(payload: Any, cache: PlanCache | None) -> bool:
    """Whether a raw request's graph is an ONNX model (sent, or named by a cached model hash)."""
    g = _graph(payload)
    if not isinstance(g, dict):
        return False
    if "onnx" in g:
        return True
    h = g.get("hash")
    if cache is not None and isinstance(h, str):
        entry = cache.peek(h)
        return entry is not None and isinstance(entry.plan, OnnxEntry)
    return False


def load_model(data: bytes | memoryview, s: Settings) -> Any:
    """The engine module for a model's bytes (422 naming the node and operator if refused)."""
    import engine.onnx as eo
    if len(data) > s.max_onnx_bytes:
        raise PayloadTooLarge(f"the ONNX model has {len(data)} bytes; the limit max_onnx_bytes is "
                              f"{s.max_onnx_bytes}", limit="max_onnx_bytes", loc=("graph", "onnx"))
    try:
        return eo.load(bytes(data))
    except eo.OnnxError as e:
        raise _invalid(e) from None
    except ImportError as e:  # pragma: no cover - a server installed without the onnx package
        raise InvalidGraph(f"this server cannot read ONNX models: {e}", loc=("graph", "onnx")) from None


def _invalid(e: Any) -> InvalidGraph | PayloadTooLarge:
    if getattr(e, "too_large", False):
        big = PayloadTooLarge(f"{e}: the limit max_tensor_elements applies", limit="max_tensor_elements",
                              loc=("graph", "onnx"))
        big.errors = [{"loc": ["graph", "onnx"], "msg": str(e), "node": e.node, "op_type": e.op_type}]
        return big
    err = InvalidGraph(str(e), loc=("graph", "onnx"))
    item: dict[str, Any] = {"loc": ["graph", "onnx"], "msg": str(e)}
    if getattr(e, "node", None) is not None:
        item["node"], item["op_type"] = e.node, e.op_type
    err.errors = [item]
    return err


def _model_bytes(req: GradRequest, rest: memoryview | None, blobs: list | None,
                 excised: dict[str, memoryview]) -> bytes | memoryview | None:
    m = req.graph.onnx
    if m is None or m.source == "hash":
        return None
    if m.source == "b64":
        text = excised.get(m.b64 or "", m.b64)
        try:
            return pybase64.b64decode(text, validate=True)
        except ValueError:
            raise BadRequest("graph.onnx.b64 is not valid base64", loc=("graph", "onnx", "b64")) from None
    size = m.parameters.binary_data_size if m.parameters else 0
    if rest is not None:
        data = rest[:size]
    elif blobs:
        data = blobs[0]
    else:
        data = b""
    if len(data) != size:
        raise BadRequest(f"graph.onnx has binary_data_size {size} but {len(data)} bytes came",
                         loc=("graph", "onnx", "parameters", "binary_data_size"))
    return data


def plan(req: GradRequest, s: Settings, cache: PlanCache | None, rest: memoryview | None, blobs: list | None,
         excised: dict[str, memoryview]) -> tuple[GradRequest, Plan, CachedPlan | None, str]:
    """Plan a validated ONNX request; the model comes from the cache or is loaded and cached.
    Returns the request, its plan, the cache entry and the model's hash."""
    import engine.onnx as eo

    g = req.graph
    data = _model_bytes(req, rest, blobs, excised)
    if data is not None:
        if len(data) > s.max_onnx_bytes:
            raise PayloadTooLarge(f"the ONNX model has {len(data)} bytes; the limit max_onnx_bytes is "
                                  f"{s.max_onnx_bytes}", limit="max_onnx_bytes", loc=("graph", "onnx"))
        data = bytes(data)  # one copy, out of the request body
        h = eo.model_hash(data)
        if g.onnx is not None and g.onnx.hash is not None and g.onnx.hash != h:
            raise InvalidGraph(f"graph.onnx.hash is {g.onnx.hash} but the model's bytes hash to {h}",
                               loc=("graph", "onnx", "hash"))
    else:
        h = g.onnx.hash if g.onnx is not None else g.hash  # type: ignore[assignment]
    entry = cache.get(h) if cache is not None else None
    if entry is not None and not isinstance(entry.plan, OnnxEntry):
        entry = None
    if entry is None:
        if data is None:
            why = ("it is not (or no longer) in this server's plan cache" if cache is not None
                   and cache.maxsize > 0 else "this server keeps no plans (plan_cache_size is 0)")
            raise PlanNotCached(f"ONNX model {h}: {why}; send the model's bytes",
                                loc=("graph", "onnx" if g.onnx is not None else "hash"))
        oe = OnnxEntry(load_model(data, s))
        entry = cache.put(h, oe) if cache is not None else CachedPlan(oe)  # type: ignore[arg-type]
        if not isinstance(entry.plan, OnnxEntry):  # pragma: no cover - a hash collision
            entry = CachedPlan(oe)  # type: ignore[arg-type]
        elif cache is not None:
            _within_budget(cache, h, len(data), s.max_onnx_cache_bytes)
    elif cache is not None:
        _within_budget(cache, h, None, s.max_onnx_cache_bytes)
    oe = entry.plan  # type: ignore[assignment]
    graph = _specialise(req, oe, s)
    return req, build_plan(req, s, graph), entry, h


# The models each plan cache holds, least recently used first, with their sizes: the plan cache
# bounds how many plans it keeps, and this bounds the bytes of the models among them.
_MODELS: weakref.WeakKeyDictionary[PlanCache, OrderedDict[str, int]] = weakref.WeakKeyDictionary()
_MODELS_LOCK = threading.Lock()


def _within_budget(cache: PlanCache, h: str, size: int | None, budget: int) -> None:
    """Note that model ``h`` (``size`` bytes when just loaded) was used; drop the least recently
    used models of ``cache`` while their total exceeds ``budget`` (the one in use stays)."""
    with _MODELS_LOCK:
        sizes = _MODELS.setdefault(cache, OrderedDict())
        if size is not None:
            sizes[h] = size
        elif h not in sizes:
            return
        sizes.move_to_end(h)
        for k in list(sizes):
            if k not in cache:  # evicted by the plan cache's own LRU
                del sizes[k]
        while sum(sizes.values()) > budget and len(sizes) > 1:
            old, _ = sizes.popitem(last=False)
            cache.discard(old)


def _specialise(req: GradRequest, oe: OnnxEntry, s: Settings) -> GraphPlan:
    module = oe.module
    g = req.graph
    nodes = g.nodes or []
    if len(module._nodes) + len(nodes) > s.max_nodes:
        raise PayloadTooLarge(f"the graph has {len(module._nodes)} ONNX nodes and {len(nodes)} nodes; the "
                              f"limit max_nodes is {s.max_nodes}", limit="max_nodes", loc=("graph",))
    specs = {}
    for i, t in enumerate(g.inputs):
        if numel(t.shape) > s.max_tensor_elements:  # before lowering, which works on these shapes
            raise PayloadTooLarge(f"graph input {t.name!r} has {numel(t.shape)} elements; the limit "
                                  f"max_tensor_elements is {s.max_tensor_elements}",
                                  limit="max_tensor_elements", loc=("graph", "inputs", i, "shape"))
        if t.name in module.value_names and t.name not in module._input_types and \
                t.name not in module._params and t.name not in module._init_consts:
            raise InvalidGraph(f"graph input {t.name!r} has the name of a value the ONNX model computes",
                               loc=("graph", "inputs", i, "name"))
        if t.name in module._input_types:
            specs[t.name] = (tuple(t.shape), np.dtype(DATATYPES[t.datatype]))
        elif t.name in module._params or t.name in module._init_consts:
            want = (module._params.get(t.name) if t.name in module._params else module._init_consts[t.name])
            if list(want.shape) != list(t.shape) or np.dtype(DATATYPES[t.datatype]) != want.dtype:
                raise InvalidGraph(f"graph input {t.name!r} replaces an initializer of shape "
                                   f"{list(want.shape)} and dtype {want.dtype}; got {list(t.shape)}, "
                                   f"{DATATYPES[t.datatype]}", loc=("graph", "inputs", i))
    nodes_key = orjson.dumps([n.model_dump(mode="json", by_alias=True) for n in nodes]) if nodes else b""
    key = (tuple((n, specs[n][0], specs[n][1].str) for n in sorted(specs)),
           tuple(t.name for t in g.inputs), nodes_key, s.max_tensor_elements)
    return oe.graph_plan(key, lambda: _build(req, module, specs, s.max_tensor_elements))


def _template(v: Any, refs: list[_Ref], loc: tuple) -> Any:
    import engine.onnx as eo
    if type(v) is eo.Ref:
        r = _Ref(v.name, loc)
        refs.append(r)
        return r
    if type(v) in (list, tuple):
        items = [_template(x, refs, loc) for x in v]
        if any(type(x) in (_Ref, _Seq) for x in items):
            return _Seq(tuple(items), type(v) is tuple)
        return type(v)(items)
    if type(v) is dict:
        return {k: _template(x, refs, loc) for k, x in v.items()}
    return v


def _build(req: GradRequest, module: Any, specs: dict, max_elements: int) -> GraphPlan:
    import engine.onnx as eo
    try:
        prog = module.program(specs, max_elements)
    except eo.OnnxError as e:
        raise _invalid(e) from None
    g = req.graph
    nodes = list(g.nodes or [])
    n_extra = len(nodes)
    request_names = [t.name for t in g.inputs]
    constants: dict[str, tuple[np.ndarray, bool]] = {}
    for name, arr in prog.params.items():
        constants[name] = (arr, True)
    for name, arr in prog.constants.items():
        constants[name] = (arr, False)
    producer: dict[str, int] = {}
    steps: list[Step] = []
    loc = ("graph", "onnx")
    for k, st in enumerate(prog.steps):
        refs: list[_Ref] = []
        args = [_template(a, refs, loc) for a in st.args]
        kwargs = {key: _template(v, refs, loc) for key, v in st.kwargs.items()}
        outs = [r.name for r in st.outputs]
        step = OnnxStep(n_extra + k, engine.OPS[st.op], args, kwargs, outs, loc, None, refs,
                        onnx_node=prog.node_labels[st.node])
        step.deps = {producer[r.name] for r in refs if r.name in producer}
        for o in outs:
            producer[o] = step.index
        steps.append(step)
    for i, name in enumerate(request_names):  # an input may replace an initializer, nothing else
        if name in producer or (name in prog.constants and name not in module._init_consts):
            raise InvalidGraph(f"graph input {name!r} has the name of a value the ONNX model computes",
                               loc=("graph", "inputs", i, "name"))
    known = set(request_names) | set(constants) | set(producer)
    where = _Locator(None)
    extra: list[Step] = []
    for i, n in enumerate(nodes):
        for j, name in enumerate(n.outputs):
            if name in known:
                raise where.graph_error(i, f"duplicate name {name!r}: it is already a graph input or a "
                                        "value of the ONNX model", ("outputs", j), name)
            known.add(name)
        extra.append(_make_step(i, n, where, None))
    own = {o: st.index for st in extra for o in st.outputs}
    model_deps: dict[int, set[int]] = {}
    for st in extra:
        model_deps[st.index] = set()
        for r in st.refs:
            if r.name in own:
                if own[r.name] == st.index:
                    raise where.graph_error(st.index, f"cycle: the node uses its own output {r.name!r}",
                                            r.loc[3:], st.outputs[0])
                st.deps.add(own[r.name])
            elif r.name in producer:
                model_deps[st.index].add(producer[r.name])
            elif r.name not in known:
                raise where.graph_error(st.index, f"unknown name {r.name!r}: not a graph input, a node "
                                        "output or a value of the ONNX model", r.loc[3:], st.outputs[0])
    order = _toposort(extra, where) if extra else []
    for st in extra:  # after ordering the nodes among themselves: the model's steps all run first
        st.deps |= model_deps[st.index]
    by_index = {st.index: st for st in extra}
    return GraphPlan(steps + [by_index[i] for i in order], request_names, frozenset(known), None, constants)
