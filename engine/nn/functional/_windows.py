"""The gather primitives the layers build on: sliding windows (im2col), their adjoint (col2im), an
indexed take along one axis and its adjoint, and constant padding.

Each pair is linear and each member's VJP is the other member, so convolution, pooling, padding,
unfold/fold, embedding and interpolation differentiate to any order through engine ops, with
numpy doing the heavy lifting:

- ``_windows`` is a strided *view* (``sliding_window_view``): no copy until a consumer needs one;
- ``_fold_windows`` accumulates by looping over the kernel offsets (``kh*kw`` slice additions),
  never over pixels and never through ``np.add.at``;
- ``_take_add`` sums duplicates with ``bincount``/``reduceat`` (again no ``np.add.at``).

No ops are registered here: this module only holds shared primitives and argument checks.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_index
from numpy.lib.stride_tricks import sliding_window_view

from ... import _dtype
from ..._autograd import dims_batch, linear_jvp, primitive
from ..._meta import _bound, _free, _fresh, view_shape
from ...ops.shape import getitem
from ...tensor import Tensor


# ---------------------------------------------------------------- sliding windows (im2col / col2im)
@primitive()
def _windows(x, kernel, stride, dilation, out):
    """Windows over the last ``len(kernel)`` dims, as a view in im2col layout:
    ``(..., *kernel, *out)``; ``out`` (the number of window positions per dim) crops the tail."""
    k = len(kernel)
    nd = x.ndim
    span = tuple((kk - 1) * d + 1 for kk, d in zip(kernel, dilation))
    v = sliding_window_view(x, span, axis=tuple(range(nd - k, nd)))  # (..., *positions, *span)
    key = (Ellipsis,) + tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out, stride)) \
        + tuple(slice(None, None, d) for d in dilation)
    v = v[key]
    lead = tuple(range(nd - k))
    return v.transpose(lead + tuple(range(nd, nd + k)) + tuple(range(nd - k, nd)))


@primitive()
def _fold_windows(g, kernel, stride, dilation, size):
    """The adjoint of :func:`_windows`: add every window back at its place in a ``size`` grid."""
    k = len(kernel)
    out_sp = g.shape[g.ndim - k:]
    lead = g.shape[:g.ndim - 2 * k]
    if all(s == 1 for s in stride) and k > 1:
        return _fold_unit_stride(g, kernel, dilation, size, lead, out_sp)
    res = np.zeros(lead + tuple(size), g.dtype)
    ell = (Ellipsis,)
    for offs in itertools.product(*(range(kk) for kk in kernel)):
        key = ell + tuple(slice(o * d, o * d + (n - 1) * s + 1, s)
                          for o, d, s, n in zip(offs, dilation, stride, out_sp))
        res[key] += g[ell + offs + (slice(None),) * k]
    return res


def _fold_unit_stride(g, kernel, dilation, size, lead, out_sp):
    """Stride 1: lay the windows out with the grid's row pitch (zeros past each row's end), so
    every kernel offset adds one long contiguous run instead of many short rows. The relaid
    windows go through a small buffer, a block of (sample, channel) planes at a time, so the
    transient memory stays bounded (~1 MiB)."""
    k = len(kernel)
    pitch = [math.prod(size[j + 1:]) for j in range(k)]
    run = out_sp[0] * pitch[0]
    slack = sum((kk - 1) * d * p for kk, d, p in zip(kernel[1:], dilation[1:], pitch[1:]))
    nk = math.prod(kernel)
    rows = math.prod(lead)
    starts = [sum(o * d * p for o, d, p in zip(offs, dilation, pitch))
              for offs in itertools.product(*(range(kk) for kk in kernel))]
    src = g.reshape((rows, nk) + tuple(out_sp))
    res = np.zeros((rows, math.prod(size) + slack), g.dtype)
    block = max(1, (1 << 18) // (nk * run))
    buf = np.zeros((min(block, rows), nk, out_sp[0]) + tuple(size[1:]), g.dtype)  # zero margins
    inner = (slice(None), slice(None), slice(None)) + tuple(slice(0, n) for n in out_sp[1:])
    for r0 in range(0, rows, block):
        r1 = min(r0 + block, rows)
        b = buf[:r1 - r0]
        b[inner] = src[r0:r1]
        flat = b.reshape(r1 - r0, nk, run)
        for t, start in enumerate(starts):
            res[r0:r1, start:start + run] += flat[:, t]
    return res[:, :math.prod(size)].reshape(lead + tuple(size))


_windows.defvjp(lambda ctx, g, kernel, stride, dilation, out: _fold_windows(
    g, kernel=kernel, stride=stride, dilation=dilation, size=ctx.in_meta[0][0][-len(kernel):]))
_windows.defjvp(linear_jvp)
_windows.defshape(view_shape, work=_free)
_fold_windows.defvjp(lambda ctx, g, kernel, stride, dilation, size: _windows(
    g, kernel=kernel, stride=stride, dilation=dilation, out=ctx.in_meta[0][0][-len(kernel):]))
_fold_windows.defjvp(linear_jvp)


@_fold_windows.defshape
def _fold_windows_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    g, k = a["g"], len(a["kernel"])
    return _fresh(g.shape[:g.ndim - 2 * k] + tuple(a["size"]), g.dtype)


def windows(x: Tensor, kernel: tuple, stride: tuple, dilation: tuple, out: tuple) -> Tensor:
    """``(..., *spatial)`` -> ``(..., *kernel, *out)``: the (already padded) input's windows."""
    return _windows(x, kernel=tuple(kernel), stride=tuple(stride), dilation=tuple(dilation),
                    out=tuple(out))


def fold_windows(cols: Tensor, kernel: tuple, stride: tuple, dilation: tuple, size: tuple) -> Tensor:
    """``(..., *kernel, *out)`` -> ``(..., *size)``: overlapping windows summed into place."""
    return _fold_windows(cols, kernel=tuple(kernel), stride=tuple(stride), dilation=tuple(dilation),
                         size=tuple(size))


# ---------------------------------------------------------------- take along an axis and its adjoint
@primitive()
def _take(x, idx, axis, unique):
    return np.take(x, idx, axis=axis)


@primitive()
def _take_add(g, idx, axis, n, unique):
    """``out[.., j, ..] = sum of g[.., i, ..] over the i with idx[i] == j`` (``n`` entries);
    ``unique``: the caller knows ``idx`` has no duplicates, so a plain assignment does."""
    pre = g.shape[:axis]
    post = g.shape[axis + idx.ndim:]
    p, q = math.prod(pre), math.prod(post)
    flat = idx.reshape(-1)
    res = np.zeros((p, n, q), g.dtype)
    if flat.size:
        g3 = g.reshape(p, flat.size, q)
        if unique:
            res[:, flat, :] = g3
        elif p * q == 1:
            res[0, :, 0] = np.bincount(flat, weights=g3[0, :, 0], minlength=n)
        else:
            order = np.argsort(flat, kind="stable")
            s = flat[order]
            starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
            res[:, s[starts], :] = np.add.reduceat(g3[:, order, :], starts, axis=1)
    return res.reshape(pre + (n,) + post)


_take.defvjp(lambda ctx, g, idx, axis, unique: _take_add(
    g, idx=idx, axis=axis, n=ctx.in_meta[0][0][axis], unique=unique))
_take.defjvp(linear_jvp)
_take.defbatch(dims_batch("axis"))  # (the indices are a parameter: one set for the whole batch)


@_take.defshape
def _take_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    x, idx = a["x"], np.asarray(a["idx"])
    ax = normalize_axis_index(a["axis"], max(x.ndim, 1))
    return _fresh(x.shape[:ax] + idx.shape + x.shape[ax + 1:], x.dtype)


_take_add.defvjp(lambda ctx, g, idx, axis, n, unique: _take(g, idx=idx, axis=axis, unique=unique))
_take_add.defjvp(linear_jvp)
_take_add.defbatch(dims_batch("axis"))


@_take_add.defshape
def _take_add_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    g, idx, ax = a["g"], np.asarray(a["idx"]), a["axis"]
    return _fresh(g.shape[:ax] + (a["n"],) + g.shape[ax + idx.ndim:], g.dtype)


def take(x: Tensor, idx: np.ndarray, axis: int, unique: bool = False) -> Tensor:
    """``np.take(x, idx, axis)`` for a non-negative integer array ``idx`` (any shape, any integer
    dtype: int32 halves what the node keeps for backward); ``unique=True`` promises no duplicate
    indices (a faster backward)."""
    idx = np.asarray(idx)
    if idx.dtype.kind not in "iu":
        idx = idx.astype(np.intp)
    return _take(x, idx=idx, axis=axis, unique=unique)


# ---------------------------------------------------------------- constant padding
@primitive()
def _pad_constant(x, pads, value):
    """Pad with ``value``; ``pads`` is one non-negative ``(before, after)`` pair per dim."""
    res = np.full(tuple(s + a + b for s, (a, b) in zip(x.shape, pads)), value, x.dtype)
    res[tuple(slice(a, a + s) for s, (a, _) in zip(x.shape, pads))] = x
    return res


_pad_constant.defvjp(lambda ctx, g, pads, value: getitem(
    g, tuple(slice(a, a + s) for s, (a, _) in zip(ctx.in_meta[0][0], pads))))
_pad_constant.defjvp(lambda ctx, ts, x, pads, value: _pad_constant(ts[0], pads=pads, value=0.0))
_pad_constant.defbatch(lambda prim, a, f, pads, value: prim.fwd(a[0], pads=((0, 0), *pads), value=value))


@_pad_constant.defshape
def _pad_constant_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    x = a["x"]
    return _fresh(tuple(s + lo + hi for s, (lo, hi) in zip(x.shape, a["pads"])), x.dtype)


def pad_constant(x: Tensor, pads: Sequence[tuple[int, int]], value: float = 0.0) -> Tensor:
    """``x`` padded per dim by ``pads`` (pairs, one per dim; negative entries crop)."""
    pads = [(int(a), int(b)) for a, b in pads]
    if any(a < 0 or b < 0 for a, b in pads):
        key = tuple(slice(-min(a, 0), s + min(b, 0)) for s, (a, b) in zip(x._data.shape, pads))
        x = getitem(x, key)
        pads = [(max(a, 0), max(b, 0)) for a, b in pads]
    if not any(a or b for a, b in pads):
        return x
    return _pad_constant(x, pads=tuple(pads), value=value)


# ---------------------------------------------------------------- argument helpers
def ntuple(value: object, n: int, name: str, op: str | None = None) -> tuple[int, ...]:
    """An int or a sequence of 1 or ``n`` ints as an ``n``-tuple (torch's expand_param_if_needed)."""
    if isinstance(value, Tensor):
        value = value.tolist()
    if isinstance(value, (int, np.integer)):
        return (int(value),) * n
    vals = tuple(int(v) for v in value)
    if len(vals) == 1:
        return vals * n
    if len(vals) != n:
        if op is not None:
            raise RuntimeError(f"{op}: {name} must either be a single int, or a tuple of {n} ints")
        raise RuntimeError(f"expected {name} to be a single integer value or a list of {n} values to "
                           f"match the convolution dimensions, but got {name}={list(vals)}")
    return vals


def type_name(t: Tensor) -> str:
    """torch's C++ scalar-type name (``Float``, ``Long``...), as its error messages say it."""
    return _dtype.type_name(t._data.dtype)


def size_str(shape: Sequence[int], sep: str = ", ") -> str:
    return "[" + sep.join(str(s) for s in shape) + "]"
