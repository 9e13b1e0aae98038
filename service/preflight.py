"""Everything checked before a request computes anything, and the guards while it runs.

:func:`check` runs the whole plan in the engine's meta mode (:mod:`engine._meta`): tensors carry
shapes and dtypes but no values, so every node, ``grad`` node and the final ``autograd_grad``
is checked (references, arity, attribute types, broadcasting, matmul dims, dtypes that cannot
require grad, the element limit on every intermediate) with the errors a real run would raise,
before a single tensor is allocated. The meta run also simulates memory: the peak of live
tensors (node outputs, what backward saves, gradient buffers, ``create_graph`` graphs) plus the
decoded inputs and the encoded response must fit ``max_memory_bytes`` (413 otherwise).

Graph-level limits come first: ``max_graph_depth`` (the longest chain of nodes) and
``max_grad_nodes`` (nested differentiation). Non-finite input values are refused (422) unless the
request says ``"allow_non_finite": true``.

Shapes that depend on values (a boolean mask of computed values, ``repeat_interleave`` with
computed counts, ops from outside the engine) are checked conservatively: an upper bound where
one exists, otherwise the node and what depends on it are left to the checks of the real run
(the element limit after each node, the deadline).

:func:`guard` installs the engine's backward hook for the real run: the deadline is checked
between backward nodes too, and with ``"check_finite": true`` the first backward function that
returns NaN or infinity is named, as torch's anomaly mode does.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import engine
from engine import _autograd, _meta

from . import codec
from .errors import AutogradError, EngineError, InvalidRequest, PayloadTooLarge, RequestTimeout
from .executor import (
    Plan,
    Step,
    TensorIn,
    _autograd_field,
    _decode,
    _dims,
    _leaf,
    _Locator,
    _resolve,
    _Runner,
)
from .settings import Settings

__all__ = ["Report", "check", "check_values", "recheck", "guard", "graph_depth", "signature",
           "DeadlineExceeded"]

# What a response costs per element beyond the array itself: JSON numbers are up to ~24 bytes.
_JSON_BYTES_PER_ELEMENT = 24


@dataclass
class Report:
    """What the static check found: the memory estimate and what it could not check."""

    memory_bytes: int = 0
    peak_bytes: int = 0
    work: float = 0.0                                   # units of work, forward and backward
    value_dependent: bool = False                       # a shape was sized by values
    unchecked: set[str] = field(default_factory=set)   # values whose shapes were not inferred
    bounded: set[str] = field(default_factory=set)     # values whose shapes are upper bounds
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    dtypes: dict[str, np.dtype] = field(default_factory=dict)   # of the values in ``shapes``
    requires_grad: set[str] = field(default_factory=set)        # values that require grad


class DeadlineExceeded(BaseException):
    """Raised by the backward hook past the deadline; a BaseException so that no ``except
    Exception`` between it and :func:`guard` turns it into an engine error."""


# ---------------------------------------------------------------- graph limits
def graph_depth(steps: Sequence[Step]) -> tuple[int, Step | None]:
    """The longest chain of nodes (inputs are depth 0) and the node at its end."""
    depth: dict[int, int] = {}
    deepest, where = 0, None
    for st in steps:  # in execution order: dependencies first
        d = 1 + max((depth[p] for p in st.deps if p in depth), default=0)
        depth[st.index] = d
        if d > deepest:
            deepest, where = d, st
    return deepest, where


def _locator(plan: Plan) -> _Locator:
    positions = None
    if plan.request.graph.source is not None:
        positions = [st.pos for st in sorted(plan.steps, key=lambda st: st.index)]
    return _Locator(positions, plan.graph.user_names)


def _too_big(plan: Plan, st: Step, detail: str, limit: str) -> PayloadTooLarge:
    """PayloadTooLarge naming the node as graph errors do (node index, or source line/col)."""
    e = PayloadTooLarge(detail, limit=limit, loc=st.loc)
    e.errors = [_locator(plan).item(st.index, detail, (), st.outputs[0])]
    return e


def _check_graph_limits(plan: Plan, s: Settings) -> None:
    grads = [st for st in plan.steps if st.op is None]
    if len(grads) > s.max_grad_nodes:
        raise _too_big(plan, grads[s.max_grad_nodes], f"the graph has {len(grads)} grad (and functional) "
                       f"nodes; the limit max_grad_nodes is {s.max_grad_nodes}", "max_grad_nodes")
    depth, st = graph_depth(plan.steps)
    if depth > s.max_graph_depth and st is not None:
        raise _too_big(plan, st, f"the graph is {depth} nodes deep (at {st.label}); the limit "
                       f"max_graph_depth is {s.max_graph_depth}", "max_graph_depth")


# ---------------------------------------------------------------- inputs
def _check_input_values(plan: Plan, inputs: dict[str, np.ndarray]) -> None:
    if plan.request.allow_non_finite:
        return
    for i, t in enumerate(plan.request.graph.inputs):
        arr = inputs[t.name]
        if arr.dtype.kind == "f" and arr.size and not codec.all_finite(arr):
            flat = np.flatnonzero(~np.isfinite(arr.reshape(-1)))
            k = int(flat[0])
            where = np.unravel_index(k, arr.shape) if arr.ndim else ()
            first = arr.reshape(-1)[k]
            raise InvalidRequest(
                f"graph input {t.name!r} holds {len(flat)} non-finite value(s), the first {first} at index "
                f"{[int(x) for x in where]}; set \"allow_non_finite\": true to send NaN or infinity on "
                "purpose", loc=("graph", "inputs", i, "data" if t.source == "data" else t.source))


def check_values(plan: Plan, inputs: dict[str, np.ndarray], blobs: dict[int, Any]) -> None:
    """The per-request half of :func:`check`: non-finite inputs and grad_outputs are refused
    (unless ``allow_non_finite``). A plan whose shapes and costs were checked before with these
    shapes and dtypes needs only this."""
    _check_input_values(plan, inputs)
    _check_grad_output_values(plan, blobs)


def _check_grad_output_values(plan: Plan, blobs: dict[int, Any]) -> None:
    req = plan.request
    if req.allow_non_finite or not isinstance(req.grad_outputs, list):
        return
    for i, g in enumerate(req.grad_outputs):
        if isinstance(g, TensorIn) and codec.np_dtype(g.datatype).kind == "f":
            arr = _decode(g, blobs.get(id(g)), ("grad_outputs", i))
            if arr.size and not codec.all_finite(arr):
                raise InvalidRequest(f"grad_outputs[{i}] holds non-finite values; set \"allow_non_finite\": "
                                     "true to send NaN or infinity on purpose", loc=("grad_outputs", i))


# ---------------------------------------------------------------- the meta run
def _opaque(st: Step) -> bool:
    """Ops defined outside the engine (plugins, tests) are not run statically: their Python is
    unknown, and running it could have effects."""
    return st.op is not None and not getattr(st.op.fn, "__module__", "").startswith("engine")


def _shapes_of(st: Step, env: dict[str, Any]) -> dict[str, list[int]]:
    out = {}
    for r in st.refs:
        v = env.get(r.name)
        if isinstance(v, engine.Tensor):
            out[r.name] = list(v.shape)
    return out


class _MetaRunner(_Runner):
    """The executor's runner, with op overrides for meta mode and outputs turned into meta
    arrays (op code that computes outside primitives returns real ones)."""

    session: _meta.MetaSession

    def run_step(self, st: Step) -> None:
        if st.op is None or st.op.name not in _meta.OP_RULES:
            super().run_step(st)
            return
        args = [_resolve(a, self.env) for a in st.args]
        kwargs = {k: _resolve(v, self.env) for k, v in st.kwargs.items()}
        try:
            res = _meta.run_op(st.op.name, st.op.fn, *args, **kwargs)
        except MemoryError:
            raise PayloadTooLarge(f"out of memory checking {st.label}", limit="memory", loc=st.loc) from None
        except Exception as e:  # as _Runner.run_step words it
            item = self.where.item(st.index, f"{st.op.name}: {e or type(e).__name__}", (), st.outputs[0])
            err = EngineError.from_exception(e)
            err.errors = [item]
            raise err from None
        self.bind(st, res)

    leaves: set[int] = set()  # ids of the graph-input tensors (an op may return one as it is)

    def checked(self, st: Step, name: str, v: Any) -> Any:
        v = super().checked(st, name, v)
        if isinstance(v, engine.Tensor) and not _meta.is_meta(v._data) and id(v) not in self.leaves:
            meta = self.session.adopt(v._data)  # computed outright by op code: count it from now on
            t = engine.Tensor._make(meta, v.grad_fn, v._out, v.requires_grad)
            v = t if v.grad_fn is not None or not v.requires_grad else t.requires_grad_()
        return v


    def transform(self, st: Step, kind: str, func: Any, xs: tuple, in_many: bool) -> list[Any]:
        if kind == "vmap":
            return self.vmap(st, func)
        return super().transform(st, kind, func, xs, in_many)

    def vmap(self, st: Step, func: Any) -> list[Any]:
        """A vmap node statically: the function runs once, on one element, and its work and
        memory count batch size times (the vectorized run holds a chunk's intermediates at
        once); the results get the batched shapes. ``in_dims`` and ``out_dims`` are checked as
        ``torch.func.vmap`` checks them, in its words."""
        fn = st.functional or {}
        flags = fn["flags"]
        args = tuple(self.tensor_ref(st, r) for r in fn["args"][0])
        in_dims = _dims(flags["in_dims"])
        api = f"vmap(func, in_dims={in_dims}, ...)(<inputs>)"
        if not (isinstance(in_dims, (int, tuple)) and not isinstance(in_dims, bool)):
            raise ValueError(f"{api}: expected `in_dims` to be int or a (potentially nested) tuple matching "
                             f"the structure of inputs, got: {type(in_dims)}.")
        dims = engine.func._dims_for(in_dims, args, f"{api}: in_dims is not compatible with the structure of "
                                     "`inputs`.", "in_dims", "inputs")
        n = engine.func.mapped_size([tuple(x.shape) for x in args], dims, api)
        m = self.session
        samples = []
        for x, d in zip(args, dims):
            if d is None:
                samples.append(x)
            elif n:
                samples.append(x.select(d, 0))
            else:  # no element: the engine runs the function on zeros of one element's shape
                shape = list(x.shape)
                del shape[d]
                samples.append(engine.from_numpy(m.array(shape, x._data.dtype)))
        work0, live0, peak0, large0 = m.work, m.live_bytes, m.peak_bytes, m.largest_bytes
        m.peak_bytes, m.largest_bytes = live0, 0
        try:
            out = func(*samples)
        finally:
            at_once = max(1, min(n, flags["chunk_size"] or n))
            m.peak_bytes = max(peak0, live0 + (m.peak_bytes - live0) * at_once)
            m.largest_bytes = max(large0, m.largest_bytes * at_once)
        if n > 1:
            m.add_work((m.work - work0) * (n - 1))
        flat = list(out) if isinstance(out, tuple) else [out]
        out_dims = _dims(flags["out_dims"])
        if isinstance(out_dims, tuple) and len(out_dims) == 1 and not isinstance(out, tuple):
            out_dims = out_dims[0]  # torch accepts (d,) for a single output
        msg = (f"vmap(func, ..., out_dims={out_dims})(<inputs>): out_dims is not compatible with the "
               "structure of `outputs`.")
        odims = engine.func._dims_for(out_dims, out, msg, "out_dims", "outputs")
        mapped = [r.name for r, d in zip(fn["inputs"][0], dims) if d is not None]
        batched = set(mapped)
        for s in self.subgraph(st, mapped, [r.name for r in fn["outputs"][0]]):
            batched.update(s.outputs)
        res = []
        for o, d, r in zip(flat, odims, fn["outputs"][0]):
            if d is None:
                if r.name in batched:
                    raise ValueError("vmap(func, ...): `func` can not return a BatchedTensor when out_dim is "
                                     "None")
                res.append(o)
                continue
            nd = o.ndim + 1
            if not -nd <= d < nd:
                raise IndexError(f"Dimension out of range (expected to be in range of [{-nd}, {nd - 1}], but "
                                 f"got {d})")
            shape = list(o.shape)
            shape.insert(d % nd, n)
            res.append(engine.clone(o.unsqueeze(d % nd).expand(*shape)))  # counted as the real stack is
        return res


def _too_large(e: _meta.TooLarge, plan: Plan, st: Step | None, s: Settings) -> PayloadTooLarge:
    where = (f"{st.label}: computing {', '.join(repr(o) for o in st.outputs)}" if st is not None
             else "the final autograd_grad")
    if e.dim is not None:
        detail = (f"{where}, {e.what} would have dimension {e.dim} of size {e.shape[e.dim]} (shape "
                  f"{list(e.shape)}); the limit max_tensor_elements is {s.max_tensor_elements}, for "
                  "every dimension too")
    else:
        detail = (f"{where}, {e.what} would have {e.numel} elements (shape {list(e.shape)}); the limit "
                  f"max_tensor_elements is {s.max_tensor_elements}")
    if st is None:
        return PayloadTooLarge(detail, limit="max_tensor_elements", loc=("outputs",))
    return _too_big(plan, st, detail, "max_tensor_elements")


def _response_bytes(arrays: Sequence[Any], encoding: str) -> int:
    total = 0
    for v in arrays:
        if isinstance(v, engine.Tensor):
            n, item = v.numel(), v._data.dtype.itemsize
            total += n * _JSON_BYTES_PER_ELEMENT if encoding == "json" else n * item * 3
    return total


def check(plan: Plan, inputs: dict[str, np.ndarray], settings: Settings | None = None,
          deadline: float | None = None, blobs: dict[int, Any] | None = None) -> Report:
    """Check ``plan`` entirely before it runs; ``inputs`` are the decoded graph inputs.

    Raises what the real run would raise (InvalidGraph, EngineError, AutogradError with torch's
    messages, PayloadTooLarge for the element limit), plus PayloadTooLarge for
    ``max_memory_bytes``, ``max_graph_depth`` and ``max_grad_nodes``.
    """
    s = settings or Settings()
    _check_input_values(plan, inputs)
    _check_grad_output_values(plan, blobs or {})
    key = _cache_key(plan, inputs, s)
    if key is not None:
        hit = _CACHE.get(key)
        if hit is not None and hit[0] is plan.graph:  # type: ignore[attr-defined]
            return hit[1]
    rep = _check(plan, inputs, s, deadline)
    if key is not None:
        with _CACHE_LOCK:
            _CACHE[key] = (plan.graph, rep)  # type: ignore[attr-defined]
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    return rep


# A request whose graph (the same compiled plan, from service.plan_cache), input shapes, dtypes,
# integer values and top-level call were checked before passes again without a meta run.
_CACHE: OrderedDict[tuple, tuple[Any, Report]] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 1024
_HASHED_VALUES = 4096  # integer/bool inputs up to this many elements are part of the key


def _cache_key(plan: Plan, inputs: dict[str, np.ndarray], s: Settings) -> tuple | None:
    graph = getattr(plan, "graph", None)
    sig = signature(plan, inputs) if graph is not None else None
    return None if sig is None else (id(graph), id(s), *sig)


def signature(plan: Plan, inputs: dict[str, np.ndarray]) -> tuple | None:
    """What a run of ``plan``'s graph depends on besides the graph: the inputs' shapes, dtypes,
    ``requires_grad`` flags and integer values (they may size results), and the top-level call;
    None when integer inputs are too big to key by value."""
    req = plan.request
    ins: list[tuple] = []
    for t in req.graph.inputs:
        a = inputs[t.name]
        k: tuple = (a.shape, a.dtype.str, t.requires_grad)
        if a.dtype.kind in "iub":  # their values can decide shapes and errors (indices, masks)
            if a.size > _HASHED_VALUES:
                return None
            k += (np.ascontiguousarray(a).tobytes(),)
        ins.append(k)
    go = req.grad_outputs
    gos = go if go is None or isinstance(go, str) else tuple(
        (tuple(x.shape), x.datatype) if isinstance(x, TensorIn) else x for x in go)
    top = (_key_names(req.outputs), _key_names(req.inputs), gos, req.retain_graph, req.create_graph,
           req.allow_unused, req.materialize_grads, req.is_grads_batched, tuple(req.return_),
           req.response_encoding)
    return tuple(ins), top


def _key_names(v: Any) -> Any:
    return v if v is None or isinstance(v, str) else tuple(v)


def _check(plan: Plan, inputs: dict[str, np.ndarray], s: Settings, deadline: float | None) -> Report:
    _check_graph_limits(plan, s)
    rep = Report()
    try:
        return _meta_run(plan, inputs, s, deadline, rep)
    except _meta.TooMuchWork as e:
        raise PayloadTooLarge(
            f"the request needs at least {e.work:.3g} units of work (forward and backward; stopped "
            f"counting at {e.what}); the limit max_work is {s.max_work:.3g}", limit="max_work",
            loc=("graph",)) from None


def _meta_run(plan: Plan, inputs: dict[str, np.ndarray], s: Settings, deadline: float | None,
              rep: Report) -> Report:
    req = plan.request
    r = _MetaRunner(plan, s, deadline)
    unknown = rep.unchecked
    bounded = rep.bounded
    real_bytes = 0
    with _meta.meta_mode(s.max_tensor_elements, s.max_work) as m, engine.enable_grad(), \
            _monitor(s, deadline, False):
        r.session = m
        for i, t in enumerate(req.graph.inputs):
            arr = inputs[t.name]
            if arr.dtype.kind in "iub":
                real_bytes += arr.nbytes  # integer and bool inputs keep their values (indices, masks)
            else:
                arr = m.array(arr.shape, arr.dtype)
            r.env[t.name] = _leaf(t, arr, ("graph", "inputs", i))
        for name, (arr, rg) in plan.graph.constants.items():  # an ONNX model's (service.onnx_graph)
            if name in r.env:
                continue
            if arr.dtype.kind in "iub":
                real_bytes += arr.nbytes
            else:
                arr = m.array(arr.shape, arr.dtype)
            c = engine.from_numpy(arr)
            r.env[name] = c.requires_grad_() if rg else c
        r.leaves = {id(v) for v in r.env.values()}
        derived: set[str] = set()  # gradients and what is computed from them
        deferred = False           # an error was left to the real run
        for st in plan.steps:
            r.check_deadline(st.label)
            names = {ref.name for ref in st.refs}
            if _opaque(st) or names & unknown:
                unknown.update(st.outputs)
                continue
            if st.op is None or names & derived:
                derived.update(st.outputs)
            m.inexact = m.rule_raised = False
            try:
                r.run_step(st)
            except (EngineError, InvalidRequest) as e:
                if deferred or not _trusted(st, names, e, m, bounded, derived):
                    # placeholders may have misled it: the real run decides, and as it may well
                    # stop here, later errors are its to report too (limits are still checked)
                    deferred = True
                    unknown.update(st.outputs)
                    continue
                _with_shapes(e, st, r.env)
                raise
            except _meta.Unknown:
                unknown.update(st.outputs)
                continue
            except _meta.TooLarge as e:
                raise _too_large(e, plan, st, s) from None
            if m.inexact or names & bounded:
                bounded.update(st.outputs)
            for name in st.outputs:
                v = r.env.get(name)
                if isinstance(v, engine.Tensor):
                    rep.shapes[name] = tuple(v.shape)
                    rep.dtypes[name] = v._data.dtype
                    if v.requires_grad:
                        rep.requires_grad.add(name)
            _check_memory(plan, m, real_bytes, s, st)
        values = [r.env.get(plan.graph.value(n)) for n in req.return_]
        grads: list[Any] = []
        involved = {plan.graph.value(n) for n in _names(req.outputs)} | set(_names(req.inputs)) | \
            {plan.graph.value(g) for g in (req.grad_outputs if isinstance(req.grad_outputs, list)
                                           else [req.grad_outputs]) if isinstance(g, str)}
        if req.outputs is not None and not deferred and not involved & (unknown | bounded):
            m.rule_raised = False
            try:
                grads = _final_grad(r, m)
            except _meta.Unknown:
                grads = []
            except AutogradError as e:
                if _trusted(None, involved, e, m, bounded, derived):
                    raise
                grads = []
            except _meta.TooLarge as e:
                raise _too_large(e, plan, None, s) from None
        rep.peak_bytes = m.peak_bytes
        rep.work = m.work
        rep.value_dependent = m.value_dependent or bool(unknown or bounded)
        resp = _response_bytes([*values, *grads], "json" if req.response_encoding == "json" else "b64")
        rep.memory_bytes = m.peak_bytes + m.largest_bytes + real_bytes + resp
        if rep.memory_bytes > s.max_memory_bytes:
            raise PayloadTooLarge(
                f"the request would need about {rep.memory_bytes} bytes of memory (live tensors at the "
                f"peak of forward and backward, the inputs and the response); the limit "
                f"max_memory_bytes is {s.max_memory_bytes}", limit="max_memory_bytes", loc=("graph",))
    return rep


_FLAG_ERRORS = re.compile(r"does not require grad|does not have a grad_fn|appears to not have been used")


def _trusted(st: Step | None, names: set[str], e: Exception, m: _meta.MetaSession, bounded: set[str],
             derived: set[str]) -> bool:
    """Whether an error of the meta run is the real run's error too.

    Errors of shape rules are (shapes and dtypes are exact), and so are those of op code checking
    its arguments. Not trusted: anything involving an upper-bound shape, and a grad (functional,
    final) call over gradients saying that something does not require grad or was not used:
    backward code may branch on values (a singular matrix, say), which meta tensors only have
    placeholders for, and so get wrong whether a gradient requires grad.
    """
    if names & bounded or "tensor(" in str(e):  # a message showing values would show placeholders
        return False
    if m.rule_raised:
        return True
    return not ((st is None or st.op is None) and names & derived and _FLAG_ERRORS.search(str(e)))


def _names(v: Any) -> list[str]:
    return [v] if isinstance(v, str) else list(v or [])


def _check_memory(plan: Plan, m: _meta.MetaSession, real_bytes: int, s: Settings, st: Step) -> None:
    need = m.peak_bytes + real_bytes
    if need > s.max_memory_bytes:
        raise _too_big(plan, st, f"{st.label}: the request would hold about {need} bytes of tensors at "
                       f"this point; the limit max_memory_bytes is {s.max_memory_bytes}", "max_memory_bytes")


def _with_shapes(e: Exception, st: Step, env: dict[str, Any]) -> None:
    """Name the shapes of the node's operands in its error item (broadcasting, matmul, ...)."""
    shapes = _shapes_of(st, env)
    errors = getattr(e, "errors", None)
    if shapes and errors:
        item = errors[0]
        item["shapes"] = shapes
        listed = ", ".join(f"{k} {v}" for k, v in shapes.items())
        item["msg"] = f"{item['msg']} (operand shapes: {listed})"


def _final_grad(r: _MetaRunner, m: _meta.MetaSession) -> list[Any]:
    """The top-level autograd_grad in meta mode, with the executor's error mapping."""
    req = r.plan.request
    env = r.env
    outs = [env[r.plan.graph.value(n)] for n in _names(req.outputs)]
    ins = [env[n] for n in _names(req.inputs)]
    gos = None
    go = req.grad_outputs
    if go is not None:
        gos = []
        for x in [go] if isinstance(go, str) else go:
            if isinstance(x, TensorIn):
                gos.append(engine.from_numpy(m.array(x.shape, codec.np_dtype(x.datatype).newbyteorder("="))))
            else:
                gos.append(None if x is None else env[r.plan.graph.value(x)])
    try:
        res = engine.autograd_grad(outs, ins, gos, retain_graph=req.retain_graph,
                                   create_graph=req.create_graph, allow_unused=req.allow_unused,
                                   is_grads_batched=req.is_grads_batched,
                                   materialize_grads=req.materialize_grads)
    except Exception as e:
        msg = str(e) or type(e).__name__
        raise AutogradError.from_exception(e, loc=_autograd_field(msg) or ("inputs",)) from None
    return list(res)


# ---------------------------------------------------------------- at run time
def _live_bytes(env: dict[str, Any]) -> int:
    """Bytes of the distinct arrays the run's values hold now."""
    seen: dict[int, int] = {}
    for v in env.values():
        d = getattr(v, "_data", None)
        if isinstance(d, np.ndarray):
            base = d
            while isinstance(base.base, np.ndarray):
                base = base.base
            seen[id(base)] = base.nbytes
    return sum(seen.values())


def recheck(r: _Runner, st: Step, s: Settings, spent: float) -> float:
    """Check ``st`` on the real operands before it runs, as the static check does on meta ones:
    the element limit on every result, ``max_work`` (``spent`` is the work counted so far) and
    ``max_memory_bytes`` (the live values plus the node's peak). Integer and bool operands keep
    their values, so counts, masks and class indices size results exactly before anything is
    allocated. Returns the node's work (tripled when it will be differentiated: its backward).

    For nodes after a value-dependent shape, which the static check could not size."""
    if st.op is None or _opaque(st):  # grad, functional and outside ops: the limits after the node
        return 0.0
    env = r.env
    live = _live_bytes(env)
    budget = s.max_work - spent
    grad = False
    with _meta.meta_mode(s.max_tensor_elements, max(budget, 0.0)) as m, engine.no_grad():
        twins: dict[str, Any] = {}
        for ref in st.refs:
            v = env.get(ref.name)
            if isinstance(v, engine.Tensor) and v._data.dtype.kind not in "iub":
                grad = grad or v.requires_grad
                twins[ref.name] = engine.Tensor._make(m.array(v.shape, v._data.dtype))
        args = [_resolve(a, {**env, **twins}) for a in st.args]
        kwargs = {k: _resolve(v, {**env, **twins}) for k, v in st.kwargs.items()}
        try:
            _meta.run_op(st.op.name, st.op.fn, *args, **kwargs)
        except _meta.TooLarge as e:
            raise _too_large(e, r.plan, st, s) from None
        except _meta.TooMuchWork:
            raise _too_big(r.plan, st, f"{st.label}: the request needs more than max_work={s.max_work:.3g} "
                           f"units of work with the shapes its values gave ({spent:.3g} before this node)",
                           "max_work") from None
        except (_meta.MetaAbort, Exception):
            return 0.0  # the real run raises its own error, or sizes what no rule can
        need = live + m.peak_bytes
        if need > s.max_memory_bytes:
            raise _too_big(r.plan, st, f"{st.label}: the request would hold about {need} bytes with the "
                           f"shapes its values gave; the limit max_memory_bytes is {s.max_memory_bytes}",
                           "max_memory_bytes")
        work = m.work * (3 if grad else 1)
    if spent + work > s.max_work:
        raise _too_big(r.plan, st, f"{st.label}: the request needs about {spent + work:.3g} units of work "
                       f"with the shapes its values gave; the limit max_work is {s.max_work:.3g}", "max_work")
    return work


# ---------------------------------------------------------------- guards for the real run
@contextmanager
def _monitor(s: Settings, deadline: float | None, check_finite: bool) -> Iterator[None]:
    """The engine's backward hook: the deadline every few nodes, and the anomaly check."""
    if deadline is None and not check_finite:
        yield
        return
    count = 0

    def monitor(node: Any, grads: Sequence[Any]) -> None:
        nonlocal count
        count += 1
        if deadline is not None and not count & 15 and time.monotonic() > deadline:
            raise DeadlineExceeded(node.name())
        if check_finite:
            for i, g in enumerate(grads):
                d = getattr(g, "_data", None)
                if d is not None and d.dtype.kind == "f" and not np.isfinite(d).all():
                    what = "nan" if np.isnan(d).any() else "inf"
                    raise RuntimeError(f"Function '{node.name()}' returned {what} values in its {i}th "
                                       "output.")

    prev = _autograd._hooks.backward
    _autograd._hooks.backward = monitor
    try:
        yield
    except DeadlineExceeded as e:
        raise RequestTimeout(f"the request ran past request_timeout_s={s.request_timeout_s:g} (stopped in "
                             f"backward, at {e.args[0]}); its work was stopped") from None
    finally:
        _autograd._hooks.backward = prev


@contextmanager
def guard(plan: Plan, settings: Settings | None = None, deadline: float | None = None) -> Iterator[None]:
    """Around the real run: the deadline inside backward passes, and ``check_finite``'s anomaly
    check (the first backward function returning NaN or infinity is named)."""
    s = settings or Settings()
    with _monitor(s, deadline, bool(plan.request.check_finite)):
        yield
