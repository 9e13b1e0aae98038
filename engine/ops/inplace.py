"""Mutation with torch's semantics: in-place ops, views and version counters.

The design is functionalization. An in-place op ``x.op_(*args)`` runs the out-of-place op
through ``apply`` (so its VJP, JVP, batching rule and meta shape rule are those of the
out-of-place primitive), checks that the result can be written into ``x`` as torch does (same
shape, a dtype castable to ``x``'s), then ``x`` takes the result over: its values (written into
``x``'s existing numpy buffer, so that views see them), its ``grad_fn``, its tangents and its
batch. Tensors saved for backward keep their identity, so the version counter tells backward
they changed: every node records the versions of the tensors it saved (once any mutation has
happened in the process) and backward raises torch's error on a mismatch.

Views (basic indexing, ``view``/``reshape`` when no copy is needed, ``transpose``, ``permute``,
``select``, ``narrow``, ``expand``, ``squeeze``/``unsqueeze``, ``diagonal``, ``T``/``mT``, the
pieces of ``split``/``chunk``/``unbind``, ...) are real numpy views of their base's buffer and
share its version counter (``_base``, ``_is_view()``, ``_version``). A view remembers how it was
made: the chain of view ops from its base. An in-place op on a view rewrites the base's history
as torch's ``CopySlices`` does: the base becomes ``copy_slices(base, new_view_values)`` (a
primitive: the base with the region the chain selects replaced), and every live view of the base
re-derives its ``grad_fn`` from the new base history (torch's ``AsStridedBackward0``: the
primitive ``view_replay``), as torch regenerates a view whose version changed.

The out-of-place op would copy the whole destination for a write of one region, so a write
costs what the region costs, as in torch, two ways. Item assignment that nothing records (no
gradient, tangent or batch on either side, or no_grad) writes straight into the buffer, with the
same checks, casts, versions and view refreshes (``_writes_through``). Where autograd records
the write, the destination's buffer is *donated* to the primitive that makes the new values
(``index_put``, ``copy_slices``; ``engine._autograd.donated``): its forward writes into that
buffer, which commit would have overwritten with its result anyway. Only forwards that save
nothing take a donation, so no saved value changes early.

Under meta mode and vmap no buffer is written: the destination is rebound to the result's (meta
or batched) data and the base's views are re-derived. ``engine.compile`` does not trace
mutation: a function that mutates runs eagerly, with the one-time CompileWarning.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _autograd as _ag
from .._autograd import Primitive, linear_jvp, primitive, zeros_jvp
from .._meta import _bound, _broadcast, _free, _fresh
from ..tensor import Tensor
from . import elementwise as _E
from . import indexing as _I
from . import shape as _S
from ._registry import OPS, OpInfo
from .elementwise import type_name

__all__ = ["inplace", "commit"]


# ---------------------------------------------------------------- view chains
class Chain:
    """How a view is derived from its base: view ops applied in order (``step(t) -> t``)."""

    __slots__ = ("steps",)

    def __init__(self, steps: tuple) -> None:
        self.steps = steps

    def __call__(self, t: Tensor) -> Tensor:
        for fn, args, kwargs, idx in self.steps:
            t = fn(t, *args, **kwargs)
            if idx is not None:
                t = t[idx] if type(t) is not tuple else t[idx]
        return t

    def numpy(self, arr: np.ndarray) -> np.ndarray:
        """The view of a plain array (the primitives' numpy forwards, nothing recorded)."""
        with _Plain():
            return self(Tensor._make(arr))._data

    def meta(self, arr: np.ndarray) -> np.ndarray:
        """The view of a meta array, by the shape rules (for the meta rule of view_replay)."""
        with _ag.no_grad():
            return self(Tensor._make(arr))._data

    def __repr__(self) -> str:
        return "Chain(" + ", ".join(getattr(s[0], "__name__", "?") for s in self.steps) + ")"


class _Plain:
    """Run engine ops as plain numpy: no grad, no dual levels, no vmap, no meta or trace hook."""

    def __enter__(self) -> None:
        st, hk = _ag._state, _ag._hooks
        self.saved = (st.enabled, st.fw, st.vm, st.ext, hk.meta, hk.trace)
        st.enabled, st.fw, st.vm, st.ext, hk.meta, hk.trace = False, (), None, False, None, None

    def __exit__(self, *exc: object) -> None:
        st, hk = _ag._state, _ag._hooks
        st.enabled, st.fw, st.vm, st.ext, hk.meta, hk.trace = self.saved


def chain_of(t: Tensor) -> Chain:
    steps = []
    while True:
        info = getattr(t, "_vinfo", None)
        if info is None:
            break
        parent, step = info[0], info[1]
        steps.append(step)
        t = parent
    return Chain(tuple(reversed(steps)))


def _like_x_shape(prim: Any, arrays: list, params: dict) -> Any:
    """The shape rule of a write: the result has the destination's shape and dtype."""
    x = _bound(prim, arrays, params)["x"]
    return _fresh(x.shape, x.dtype)


# ---------------------------------------------------------------- copy_slices and view_replay
@primitive()
def _copy_slices(x, v, chain):
    out = x if _ag.donated(x) else x.copy()
    region = chain.numpy(out)
    region[...] = v
    return out


@_copy_slices.defvjp
def _copy_slices_vjp(ctx, g, chain):
    gx = _copy_slices(g, 0.0, chain=chain) if ctx.edges[0] is not None else None
    gv = chain(g) if ctx.edges[1] is not None else None
    return gx, gv


_copy_slices.defjvp(linear_jvp)
_copy_slices.defshape(_like_x_shape)


@_copy_slices.defbatch
def _copy_slices_batch(prim, a, f, chain):
    x, v = a
    n = x.shape[0] if f[0] else v.shape[0]
    out = np.array(x if f[0] else np.broadcast_to(x, (n, *np.shape(x))))
    for i in range(n):
        chain.numpy(out[i])[...] = v[i] if f[1] else v
    return out


@primitive()
def _view_replay(x, chain):
    return chain.numpy(x)


@_view_replay.defvjp
def _view_replay_vjp(ctx, g, chain):
    shape, dt = ctx.in_meta[0]
    return _copy_slices(Tensor._make(np.zeros(shape, dt)), g, chain=chain)


_view_replay.defjvp(linear_jvp)
_view_replay.defbatch(lambda prim, a, f, chain: np.stack([chain.numpy(e) for e in a[0]]))


@_view_replay.defshape(work=_free)
def _view_replay_shape(prim: Any, arrays: list, params: dict) -> Any:
    return params["chain"].meta(arrays[0])  # the view chain, by the view ops' own shape rules


def _alias(prim: Primitive, name: str) -> Primitive:
    """``prim``'s record (forward, VJP, JVP, batching rule) under another name: the node name
    torch gives the same computation in another place."""
    twin = Primitive(name, prim.fwd, prim.save, prim.n_out, prim.aux, prim.save_if)
    twin.bwd, twin.jvp, twin.batch = prim.bwd, prim.jvp, prim.batch
    twin.defshape(prim.shape_rule, work=prim.work_rule, scratch=prim.scratch_rule)
    return twin


# Item assignment through a key with a basic part is CopySlices in torch, a pure advanced key
# IndexPutBackward0: the same write, under torch's two names.
_setitem_slices = _alias(_I._index_put, "setitem_slices")
_setitem_slices.defshape(_like_x_shape)


# ---------------------------------------------------------------- zero_, fill_, copy_
@primitive()
def _zero(x):
    return np.zeros_like(x)


_zero.defvjp(lambda ctx, g: _zero(g))  # torch's zeros (not "unused") for the overwritten input
_zero.defjvp(zeros_jvp)
_zero.defbatch(lambda prim, a, f: np.zeros_like(a[0]))
_zero.defshape(_like_x_shape)


@primitive()
def _fill(x, value):
    return np.full_like(x, value)


_fill.defvjp(lambda ctx, g, value: _zero(g))
_fill.defjvp(zeros_jvp)
_fill.defbatch(lambda prim, a, f, value: np.full_like(a[0], value))
_fill.defshape(_like_x_shape)


@primitive()
def _copy(x, src):
    return np.broadcast_to(src, x.shape).astype(x.dtype)


_copy.defvjp(lambda ctx, g: (_zero(g) if ctx.edges[0] is not None else None,
                              g if ctx.edges[1] is not None else None))
_copy.defjvp(linear_jvp)


@_copy.defshape
def _copy_shape(prim: Any, arrays: list, params: dict) -> Any:
    x = _bound(prim, arrays, params)["x"]
    _broadcast([np.shape(arrays[1]), x.shape])  # torch's broadcast error for a source that does not fit
    return _fresh(x.shape, x.dtype)


@_copy.defbatch
def _copy_batch(prim, a, f):
    x, src = _ag._align(list(a), list(f), max(_ag._ndim(e, k) for e, k in zip(a, f)))
    n = x.shape[0] if f[0] else src.shape[0]
    shape = (n, *(x.shape[1:] if f[0] else x.shape))
    return np.broadcast_to(src, shape).astype(x.dtype)


# fill_ with a 0-d tensor is copy_ of it (FillBackward3 in torch's words)
_fill_tensor = _alias(_copy, "fill_tensor")


_ag.NODE_NAMES.update({
    "copy_slices": "torch::autograd::CopySlices", "setitem_slices": "torch::autograd::CopySlices",
    "view_replay": "AsStridedBackward0", "copy": "torch::autograd::CopyBackwards",
    "fill": "FillBackward2", "fill_tensor": "FillBackward3",
})


# ---------------------------------------------------------------- marking views
def _mark(out: Tensor, src: Tensor, step: tuple) -> None:
    if out is src or not isinstance(out, Tensor):
        return
    d, s = out._data, src._data
    if type(d) is np.ndarray and type(s) is np.ndarray and not np.may_share_memory(d, s):
        return  # the op had to copy (a reshape of a non-contiguous tensor): not a view, as torch
    root = getattr(src, "_vbase", None)
    if root is None:
        root = src
    out._vbase = root
    out._vinfo = (src, step, _ag._state.enabled)
    views = getattr(root, "_views", None)
    if views is None:
        views = root._views = _Views()
    views.add(out)
    vc = getattr(root, "_vc", None)
    if vc is not None:
        out._vc = vc


class _Views:
    """A base's live views (weak references), pruned as they die."""

    __slots__ = ("refs", "limit")

    def __init__(self) -> None:
        self.refs: list = []
        self.limit = 8

    def add(self, t: Tensor) -> None:
        self.refs.append(weakref.ref(t))
        if len(self.refs) > self.limit:
            self.refs = [r for r in self.refs if r() is not None]
            self.limit = max(8, 2 * len(self.refs))

    def live(self) -> list[Tensor]:
        out = [r() for r in self.refs]
        return [t for t in out if t is not None]


def _view_op(fn: Callable) -> Callable:
    def view(input, *args, **kwargs):
        out = fn(input, *args, **kwargs)
        if isinstance(input, Tensor):
            if out is input and type(out._data) is np.ndarray:  # a no-op view is a new tensor in torch
                out = _S._reshape(input, shape=input._data.shape)
            _mark(out, input, (fn, args, kwargs, None))
        return out

    view.__name__, view.__qualname__, view.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
    view.__wrapped__ = fn
    return view


def _strict_view(self, *shape):
    """``Tensor.view``: as reshape, but torch's error where the strides would need a copy
    (``view(dtype)`` reads the same bytes as another dtype)."""
    out = _S._view(self, *shape)
    d, s = out._data, self._data
    if out is not self and type(d) is np.ndarray and type(s) is np.ndarray and d.size and d.dtype == s.dtype \
            and not np.may_share_memory(d, s):
        raise RuntimeError("view size is not compatible with input tensor's size and stride (at least one "
                           "dimension spans across two contiguous subspaces). Use .reshape(...) instead.")
    return out


def _multi_view_op(fn: Callable, node: str) -> Callable:
    def views(input, *args, **kwargs):
        outs = fn(input, *args, **kwargs)
        if isinstance(input, Tensor):
            for i, o in enumerate(outs):
                _mark(o, input, (fn, args, kwargs, i))
                if getattr(o, "_vinfo", None) is not None:
                    o._vinfo = (*o._vinfo, node)
        return outs

    views.__name__, views.__qualname__, views.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
    views.__wrapped__ = fn
    return views


# torch's view ops among the engine's (reshape-like ones are views only when no copy is needed:
# _mark checks the memory). Multi-output ones carry torch's node name for the error message.
_VIEWS = ("getitem", "reshape", "view", "view_as", "flatten", "unflatten", "squeeze", "unsqueeze",
          "expand", "expand_as", "broadcast_to", "permute", "transpose", "t", "movedim", "narrow",
          "select", "diagonal", "adjoint")
_MULTI = {"split": "Split", "chunk": "Split", "unbind": "Unbind"}


def _install_views() -> None:
    done: dict[int, Callable] = {}
    for name, info in list(OPS.items()):
        base = info.name
        if base not in _VIEWS and base not in _MULTI:
            continue
        new = done.get(id(info.fn))
        if new is None:
            new = done[id(info.fn)] = (_multi_view_op(info.fn, _MULTI[base]) if base in _MULTI
                                       else _view_op(info.fn))
        OPS[name] = OpInfo(info.name, new, info.differentiable, info.signature, info.n_outputs)
    for attr in dir(Tensor):
        fn = Tensor.__dict__.get(attr)
        if fn is not None and id(fn) in done:
            setattr(Tensor, attr, done[id(fn)])
    Tensor.__getitem__ = done[id(_S.getitem)]
    Tensor.view = _view_op(_strict_view)
    for attr in ("T", "mT", "mH", "H"):
        prop = Tensor.__dict__.get(attr)
        if isinstance(prop, property):
            setattr(Tensor, attr, property(_view_op(prop.fget)))


# ---------------------------------------------------------------- the in-place protocol
_LEAF_MSG = "a leaf Variable that requires grad is being used in an in-place operation."
_VIEW_LEAF_MSG = "a view of a leaf Variable that requires grad is being used in an in-place operation."
_NO_GRAD_VIEW_MSG = (
    "A view was created in no_grad mode and is being modified inplace with grad mode enabled. Given "
    "that this use case is ambiguous and error-prone, it is forbidden. You can clarify your code by "
    "moving both the view and the inplace either both inside the no_grad block (if you don't want the "
    "inplace to be tracked) or both outside (if you want the inplace to be tracked).")


def _check(t: Tensor) -> None:
    """torch's refusals, before anything is computed."""
    _not_traced()
    if not _ag._state.enabled:
        return  # under no_grad anything goes (optimizers update parameters so)
    base = getattr(t, "_vbase", None)
    if base is None:
        if t._rg and t.grad_fn is None:
            raise RuntimeError(_LEAF_MSG)
        return
    info = t._vinfo
    if base._rg:
        if not info[2]:
            raise RuntimeError(_NO_GRAD_VIEW_MSG)
        if len(info) > 3:
            raise RuntimeError(
                f"Output {info[1][3]} of {info[3]} is a view and is being modified inplace. "
                "This view is the output of a function that returns multiple views. Such functions do "
                "not allow the output views to be modified inplace. You should replace the inplace "
                "operation by an out-of-place one.")
        if base.grad_fn is None:
            raise RuntimeError(_VIEW_LEAF_MSG)


def _not_traced() -> None:
    """engine.compile does not trace mutation: the function runs eagerly instead."""
    if _tracer() is not None:
        from .._compile import _Untraceable
        raise _Untraceable("an in-place operation (mutation is not traced)")


def _tracer() -> Any:
    comp = _compile_module()
    return comp._tracer() if comp is not None else None


def _compile_module() -> Any:
    import sys
    return sys.modules.get("engine._compile")


def _can_cast(src: np.dtype, dst: np.dtype) -> bool:
    """torch's canCast: no float to integral, no non-bool to bool."""
    if src.kind == "f" and dst.kind in "iub":
        return False
    return not (dst.kind == "b" and src.kind != "b")


def inplace(t: Tensor, compute: Callable[[Tensor], Tensor], cast: bool = False) -> Tensor:
    """Run ``compute(t)`` (an out-of-place op) and write its result into ``t``, as torch's
    in-place op would; returns ``t``. ``cast``: any dtype is written (``copy_``)."""
    _check(t)
    seq0 = next(_ag._seq)
    return commit(t, compute(t), cast, seq0)


def commit(t: Tensor, res: Tensor, cast: bool = False, seq0: int | None = None, bump: bool = True,
           setitem: bool = False) -> Tensor:
    """``t`` takes over ``res``: values, history, tangents, batch (see the module docstring).
    ``bump=False``: the version stays (torch's batch_norm kernel writes its running statistics so)."""
    d, r = t._data, res._data
    if type(d) is np.ndarray and _overlaps_itself(d) and not _is_meta(d):
        raise RuntimeError(_OVERLAP_MSG)
    if r.shape != d.shape:
        raise RuntimeError(f"output with shape {list(d.shape)} doesn't match the broadcast shape "
                           f"{list(r.shape)}")
    if r.dtype != d.dtype:
        if not cast and not _can_cast(r.dtype, d.dtype):
            raise RuntimeError(f"result type {type_name(r.dtype)} can't be cast to the desired output "
                               f"type {type_name(d.dtype)}")
        res = _S.to(res, d.dtype)
    _not_traced()  # (batch_norm's running statistics come here without _check)
    if _ag._state.vm is not None:
        _check_vmap(t, res, setitem)
    _ag.mutation_seen = True
    if res is t:  # the op returned its input (a no-op cast): only the version moves
        _ag.version_counter(t)[0] += 1
        return t
    _snapshot_saved_self(t, res, seq0)
    enabled = _ag._state.enabled
    base = getattr(t, "_vbase", None)
    # the counter exists before the history changes: an output saved by the current grad_fn
    # links to it (version_counter), and sees the bump below
    _ag.version_counter(t if base is None else base)
    if base is None:
        _write(t, res)
        _take_history(t, res, enabled)
        vc = _ag.version_counter(t)
        vc[0] += bump
        _ag.link_saved_output(t)
        if getattr(t, "_views", None) is not None:
            _refresh_views(t, enabled)
        return t
    chain = chain_of(t)
    physical = _physical(t) and _physical(base)
    record = enabled and (base._rg or res._rg)
    if record or not physical or _ag._state.ext:
        with _ag.set_grad_enabled(enabled), _ag.donating(_donatable(base) if physical else None):
            new_base = _copy_slices(base, res, chain=chain)
        if physical:
            t._data[...] = res._data
        else:
            base._data = new_base._data
        _take_history(base, new_base, record)
    else:
        t._data[...] = res._data
    vc = _ag.version_counter(base)
    t._vc = vc
    vc[0] += bump
    _ag.link_saved_output(base)
    _link_result(res, vc)  # an output the op saved (exp_) is the view's values from now on
    _refresh_views(base, enabled, rebind=not physical)
    return t


def _batched(t: Tensor) -> bool:
    bat = getattr(t, "_bat", None)
    return bat is not None and bat[0] == _ag._state.vm


def _check_vmap(t: Tensor, res: Tensor, setitem: bool) -> None:
    """torch's errors for a batched result written into a tensor that is not batched."""
    if not _batched(res) or _batched(t):
        return
    if setitem:
        raise RuntimeError(
            "vmap: inplace arithmetic(self, *extra_args) is not possible because there exists a Tensor "
            "`other` in extra_args that has more elements than `self`. This happened due to `other` being "
            "vmapped over but `self` not being vmapped over in a vmap. Please try to use out-of-place "
            "operators instead of inplace arithmetic. If said operator is being called inside the PyTorch "
            "framework, please file a bug report instead.")
    shape = list(t._data.shape)
    raise RuntimeError(f"output with shape {shape} doesn't match the broadcast shape "
                       f"{[res._bat[1].shape[0], *shape]}")


def _snapshot_saved_self(t: Tensor, res: Tensor, seq0: int | None) -> None:
    """Nodes made by the op (those after ``seq0``; else the result's own) that saved ``t``
    itself, whose values are about to change, keep a copy of the original instead, with the
    original history (torch saves ``original_self`` so)."""
    node = res.grad_fn
    if node is None:
        return
    stack, seen, snap = [node], set(), None
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if n.saved and any(s is t for s in n.saved):
            if snap is None:
                d = t._data
                snap = Tensor._make(d.copy() if type(d) is np.ndarray else d, t.grad_fn, t._out, t._rg)
                for slot in ("_fw", "_bat"):
                    v = getattr(t, slot, None)
                    if v is not None:
                        setattr(snap, slot, dict(v) if slot == "_fw" else v)
            n.saved = tuple(snap if s is t else s for s in n.saved)
            n.versions = _ag._versions(n.saved)
        if seq0 is not None:
            stack.extend(e[0] for e in n.edges
                         if e is not None and type(e[0]) is _ag.Node and e[0].seq > seq0)


def _link_result(res: Tensor, vc: list) -> None:
    node = res.grad_fn
    if node is not None and node.prim.saves_output and node.saved:
        for s in node.saved:
            if type(s) is _ag._SavedOutput and s.idx == res._out:
                s.vc, s.ver = vc, vc[0]


def _physical(t: Tensor) -> bool:
    """Values can be written into the buffer (not under meta mode or vmap)."""
    d = t._data
    return type(d) is np.ndarray and d.flags.writeable and not _is_meta(d)


def _is_meta(d: np.ndarray) -> bool:
    m = _meta_module()
    return m is not None and _ag._hooks.meta is not None and m.is_meta(d)


def _meta_module() -> Any:
    import sys
    return sys.modules.get("engine._meta")


def _donatable(t: Tensor) -> np.ndarray | None:
    """``t``'s buffer, where an in-place op may compute its result straight into it."""
    d = t._data
    if type(d) is not np.ndarray or _ag._state.ext or not _physical(t) or _overlaps_itself(d):
        return None
    return d


def _write(t: Tensor, res: Tensor) -> None:
    if res._data is t._data:  # computed in place (a donated buffer)
        return
    if _physical(t) and type(res._data) is np.ndarray and not _ag._state.ext:
        if not _overlaps_itself(t._data):
            np.copyto(t._data, res._data)
            return
        raise RuntimeError(_OVERLAP_MSG)
    t._data = res._data


_OVERLAP_MSG = ("unsupported operation: more than one element of the written-to tensor refers to a "
                "single memory location. Please clone() the tensor before performing the operation.")


def _overlaps_itself(a: np.ndarray) -> bool:
    return any(s == 0 and n > 1 for s, n in zip(a.strides, a.shape))


def _take_history(t: Tensor, res: Tensor, grad: bool = True) -> None:
    if grad:
        t.grad_fn, t._out, t._rg = res.grad_fn, res._out, res._rg
    fw = getattr(res, "_fw", None)
    if fw is not None or getattr(t, "_fw", None) is not None:
        t._fw = {}
        for lev, tan in (fw or {}).items():
            _ag._set_tangent(t, lev, tan)
    bat = getattr(res, "_bat", None)
    if bat is not None:
        t._bat = bat
        t._data = res._data


def _refresh_views(base: Tensor, enabled: bool, rebind: bool = False) -> None:
    """Every live view of ``base`` re-derives its history (and, when no buffer is shared, its
    values) from the base's new state: torch regenerates a view whose version changed."""
    views = base._views.live()
    if not views:
        return
    history = enabled and (base._rg or _ag._state.ext)
    for w in views:
        w._vc = base._vc
        if w._data.dtype.kind != "f" and not rebind:
            continue
        chain = chain_of(w)
        if rebind or _ag._state.ext:
            with _ag.no_grad():
                r = chain(base)
            w._data = r._data
            bat = getattr(r, "_bat", None)
            if bat is not None:
                w._bat = bat
        if history:
            with _ag.enable_grad():
                r = _view_replay(base, chain=chain)
            _take_history(w, r)


# ---------------------------------------------------------------- the in-place methods
def _zero_(self):
    """Fill with zeros, in place."""
    return inplace(self, _zero)


def _fill_(self, value):
    """Fill with ``value`` (a number or a 0-d tensor), in place."""
    if isinstance(value, Tensor):
        if value._data.ndim:
            raise RuntimeError(f"fill_ only supports 0-dimension value tensor but got tensor with "
                               f"{value._data.ndim} dimensions.")
        return inplace(self, lambda s: _fill_tensor(s, value), cast=True)
    return inplace(self, lambda s: _fill(s, value=value), cast=True)


def _copy_(self, src, non_blocking=False):
    """Copy ``src`` (broadcast, any dtype) into this tensor."""
    if not isinstance(src, Tensor):
        raise TypeError(f"copy_(): argument 'src' (position 1) must be Tensor, not {type(src).__name__}")
    if src._data.ndim > self._data.ndim or any(
            a != b and a != 1 for a, b in zip(reversed(src._data.shape), reversed(self._data.shape))):
        shape = np.broadcast_shapes(src._data.shape, self._data.shape) \
            if _broadcasts(src._data.shape, self._data.shape) else None
        if shape is not None:
            raise RuntimeError(f"output with shape {list(self._data.shape)} doesn't match the broadcast "
                               f"shape {list(shape)}")
    return inplace(self, lambda s: _copy(s, src), cast=True)


def _broadcasts(a: tuple, b: tuple) -> bool:
    try:
        np.broadcast_shapes(a, b)
        return True
    except ValueError:
        return False


def _setitem(self, key, value):
    """``self[key] = value``, in place (torch's CopySlices / IndexPutBackward0)."""
    if _has_basic_part(_S._normalize_key(key)) and _ag._state.enabled and self._rg and self.grad_fn is None \
            and getattr(self, "_vbase", None) is None:
        raise RuntimeError(_VIEW_LEAF_MSG)  # torch writes through the view self[key]
    _check(self)
    seq0 = next(_ag._seq)
    key, value = _I.setitem_operands(self, key, value)
    if _writes_through(self, value):
        return _write_item(self, key, value)
    try:
        # the write itself: into self's buffer, which commit would overwrite with the result
        with _ag.donating(_donatable(self)):
            res = _I._index_put(self, value, key=key, accumulate=False)
    except IndexError as e:
        raise _I.item_index_error(e) from None
    node = res.grad_fn
    if node is not None and node.prim is _I._index_put and _has_basic_part(_S._normalize_key(key)):
        node.prim = _setitem_slices
    commit(self, res, seq0=seq0, setitem=True)


def _writes_through(t: Tensor, value: Tensor | float) -> bool:
    """Whether ``t[key] = value`` may write straight into ``t``'s buffer: nothing records it
    (no gradient, tangent or batch on either side) and the buffer is real. Then the write costs
    what the region costs, as torch's; through the functional path it costs a copy of the
    whole tensor (``x[i] += 1`` on a million entries: 339 us, torch 10)."""
    if _ag._state.vm is not None or _ag._state.ext or _ag._state.fw or not _physical(t):
        return False
    base = getattr(t, "_vbase", None)
    if base is not None and not _physical(base):
        return False
    if isinstance(value, Tensor):
        if type(value._data) is not np.ndarray or getattr(value, "_fw", None) or \
                getattr(value, "_bat", None) is not None:
            return False
        if value._rg and _ag._state.enabled:
            return False
    if getattr(t, "_fw", None) or getattr(t, "_bat", None) is not None:
        return False
    return not (_ag._state.enabled and (t._rg or (base is not None and base._rg)))


def _write_item(t: Tensor, key: tuple, value: Tensor | float) -> None:
    """``t[key] = value`` in place, with commit's bookkeeping (versions, views) and no history."""
    d = t._data
    if _overlaps_itself(d):
        raise RuntimeError(_OVERLAP_MSG)
    _ag.mutation_seen = True
    base = getattr(t, "_vbase", None)
    owner = t if base is None else base
    vc = _ag.version_counter(owner)
    try:
        d[key] = value._data if isinstance(value, Tensor) else value
    except IndexError as e:
        raise _I.item_index_error(e) from None
    vc[0] += 1
    if base is not None:
        t._vc = vc
    _ag.link_saved_output(owner)
    if getattr(owner, "_views", None) is not None:
        _refresh_views(owner, _ag._state.enabled)


def _has_basic_part(key: tuple) -> bool:
    return any(k is None or isinstance(k, (int, np.integer)) or
               (isinstance(k, slice) and k != slice(None)) for k in key)


def _index_put_(self, indices, values, accumulate=False):
    """``self[indices] = values`` (``accumulate``: ``+=``), in place."""
    def compute(s: Tensor) -> Tensor:
        with _ag.donating(_donatable(s)):  # the write itself, into self's buffer (see _setitem)
            return _I.index_put(s, indices, values, accumulate)

    return inplace(self, compute)


def _detach_(self):
    """Cut this tensor from the graph, in place (it becomes a leaf that does not require grad)."""
    if getattr(self, "_vbase", None) is not None and self._vinfo is not None and self._rg:
        raise RuntimeError(
            "Can't detach views in-place. Use detach() instead. If you are using DistributedDataParallel "
            "(DDP) for training, and gradient_as_bucket_view is set as True, gradients are views of DDP "
            "buckets, and hence detach_() cannot be called on these gradients. To fix this error, please "
            "refer to the Optimizer.zero_grad() function in torch/optim/optimizer.py as the solution.")
    self.grad_fn, self._out, self._rg = None, 0, False
    return self


# Random fills: the draw runs in the primitive's forward (so meta mode draws nothing); the
# overwritten values get a zero gradient, as in torch.
_DRAWS: dict[str, Callable] = {
    "uniform": lambda rng, shape, a=0.0, b=1.0: rng.uniform(a, b, shape),
    "normal": lambda rng, shape, mean=0.0, std=1.0: rng.normal(mean, std, shape),
    "bernoulli": lambda rng, shape, p=0.5: rng.random(shape) < p,
    "exponential": lambda rng, shape, lambd=1.0: rng.exponential(1.0 / lambd, shape),
    "log_normal": lambda rng, shape, mean=1.0, std=2.0: rng.lognormal(mean, std, shape),
    "cauchy": lambda rng, shape, median=0.0, sigma=1.0: median + sigma * rng.standard_cauchy(shape),
    "geometric": lambda rng, shape, p: rng.geometric(p, shape),
}


def _random_fill(kind: str) -> Callable:
    draw = _DRAWS[kind]
    def fwd(x, rng, args):
        return np.asarray(draw(rng, x.shape, *args)).astype(x.dtype)

    prim = Primitive(f"{kind}_fill", fwd)
    prim.defvjp(lambda ctx, g, rng, args: _zero(g))
    prim.defjvp(zeros_jvp)
    # under vmap only randomness="same" reaches here (engine.ops.creation._generator): one draw
    prim.defbatch(lambda prim, a, f, rng, args: np.ascontiguousarray(
        np.broadcast_to(fwd(a[0][0], rng, args), a[0].shape)))
    prim.defshape(_like_x_shape)

    def method(self, *args, generator=None):
        from .creation import _generator
        rng = _generator(generator)
        return inplace(self, lambda s: prim(s, rng=rng, args=args))

    method.__name__ = method.__qualname__ = kind + "_"
    method.__doc__ = f"Fill with {kind} samples, in place (``generator``: as engine.rand's)."
    _ag.NODE_NAMES[prim.name] = "".join(p.capitalize() for p in kind.split("_")) + (
        "Backward2" if kind == "bernoulli" else "Backward0")  # (torch's overload for a float p)
    return method


def _shape_inplace(fn: Callable, name: str) -> Callable:
    """``t_``, ``transpose_``, ``squeeze_``, ...: the tensor becomes the view ``fn`` gives of
    itself (same storage, new shape; its history is the view op's; the version moves)."""
    def method(self, *args, **kwargs):
        _check(self)
        views = getattr(self, "_views", None)
        if getattr(self, "_vbase", None) is not None or (views is not None and views.live()):
            raise NotImplementedError(f"{name}() on a view, or on a tensor that has views, is not supported: "
                                      f"use the out-of-place {name[:-1]}()")
        res = fn(self, *args, **kwargs)
        _ag.mutation_seen = True
        vc = _ag.version_counter(self)
        if res is not self:
            self._data = res._data
            _take_history(self, res, _ag._state.enabled)
        vc[0] += 1
        return self

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"In-place ``{name[:-1]}``: this tensor takes the new shape (the storage stays)."
    return method


def _method_inplace(fn: Callable, name: str) -> Callable:
    def method(self, *args, **kwargs):
        return inplace(self, lambda s: fn(s, *args, **kwargs))

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"In-place ``{name[:-1]}``: the result is written into this tensor."
    return method


# torch's in-place methods whose out-of-place op the engine has under the same name (the list is
# torch's; those the engine lacks are skipped). Random fills, shape changes (t_, squeeze_, ...)
# and resize_ are not value ops and are not here.
_TORCH_INPLACE = (
    "abs", "absolute", "acos", "acosh", "add", "addbmm", "addcdiv", "addcmul", "addmm", "addmv", "addr",
    "arccos", "arccosh", "arcsin", "arcsinh", "arctan2", "arctan", "arctanh", "asin", "asinh", "atan2",
    "atan", "atanh", "baddbmm", "bitwise_and", "bitwise_left_shift", "bitwise_not", "bitwise_or",
    "bitwise_right_shift", "bitwise_xor", "ceil", "clamp", "clamp_max", "clamp_min", "clip", "copysign",
    "conj_physical", "cos", "cosh", "cumprod", "cumsum", "deg2rad", "digamma", "div", "divide", "eq",
    "erf", "erfc",
    "erfinv", "exp2", "exp", "expm1", "fill_diagonal", "fix", "float_power", "floor", "floor_divide",
    "fmod", "frac", "gcd", "ge", "greater", "greater_equal", "gt", "heaviside", "hypot", "i0", "igamma",
    "igammac", "index_add", "index_copy", "index_fill", "index_reduce", "lcm", "ldexp", "le", "lerp",
    "less", "less_equal", "lgamma", "log10", "log1p", "log2", "log", "logical_and", "logical_not",
    "logical_or", "logical_xor", "logit", "lt", "masked_fill", "masked_scatter", "mul", "multiply",
    "mvlgamma", "nan_to_num", "ne", "neg", "negative", "nextafter", "not_equal", "polygamma", "pow",
    "put", "rad2deg", "reciprocal", "relu", "remainder", "renorm", "round", "rsqrt", "scatter",
    "scatter_add", "scatter_reduce", "sgn", "sigmoid", "sign", "sin", "sinc", "sinh", "sqrt", "square",
    "sub", "subtract", "tan", "tanh", "tril", "triu", "true_divide", "trunc", "xlogy",
)


def _install_methods() -> None:
    for name in _TORCH_INPLACE:
        fn = Tensor.__dict__.get(name)
        if fn is None:
            info = OPS.get(name)
            fn = info.fn if info is not None else None
        if fn is None or hasattr(Tensor, name + "_"):
            continue
        setattr(Tensor, name + "_", _method_inplace(fn, name + "_"))
    for name in ("t", "transpose", "squeeze", "unsqueeze", "swapaxes", "swapdims"):
        fn = getattr(Tensor, name)
        setattr(Tensor, name + "_", _shape_inplace(getattr(fn, "__wrapped__", fn), name + "_"))
    for kind in _DRAWS:
        setattr(Tensor, kind + "_", _random_fill(kind))
    Tensor.zero_ = _zero_
    Tensor.fill_ = _fill_
    Tensor.copy_ = _copy_
    Tensor.__setitem__ = _setitem
    Tensor.index_put_ = _index_put_
    Tensor.detach_ = _detach_
    # Python's augmented operators are torch's in-place methods (there is no in-place @=)
    for op, meth in (("iadd", "add_"), ("isub", "sub_"), ("imul", "mul_"), ("itruediv", "div_"),
                     ("ipow", "pow_"), ("imod", "remainder_"), ("iand", "bitwise_and_"),
                     ("ior", "bitwise_or_"), ("ixor", "bitwise_xor_")):
        m = getattr(Tensor, meth, None)
        if m is not None:
            setattr(Tensor, f"__{op}__", m)
    Tensor.__ifloordiv__ = lambda self, other: inplace(
        self, lambda s: _E.div(s, other, rounding_mode="floor"))


_install_views()
_install_methods()
