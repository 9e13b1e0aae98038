"""Pooling: max, average and adaptive, over 1-, 2- and 3-d windows; vectorized, no pixel loops.

- max pooling finds each window's argmax in numpy (a strided window view), then *gathers* the
  input at those flat indices with the ``take`` primitive: its VJP scatters the gradient back to
  the argmax (``take_add``), whose VJP is the gather again, so double backward matches torch's.
- average pooling sums the window view (``windows``, whose adjoint is ``fold_windows``) and divides
  by torch's per-window divisor (a constant).
- adaptive average pooling is separable: one constant averaging matrix per spatial dim, applied
  with matmul.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ...ops._registry import as_tensor_arg, op
from ...ops.linalg_prims import matmul
from ...ops.shape import reshape
from ...tensor import Tensor
from ._windows import ntuple, pad_constant, size_str, take, type_name, windows


# ---------------------------------------------------------------- shapes and checks
def _out_size(i: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    """torch's pooling_output_shape."""
    if s == 0:
        raise RuntimeError("stride should not be zero")
    if p < 0:
        raise RuntimeError(f"pad must be non-negative, but got pad: {p}")
    if p > ((k - 1) * d + 1) // 2:
        raise RuntimeError(f"pad should be at most half of effective kernel size, but got pad={p}, "
                           f"kernel_size={k} and dilation={d}")
    o = (i + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
    if ceil and (o - 1) * s >= i + p:
        o -= 1
    return o


def _check_dims(x: Tensor, nd: int, name: str) -> None:
    n = x._data.ndim
    if n in (nd + 1, nd + 2) and all(s > 0 for s in x._data.shape[-nd - 1:]):
        return
    if nd == 1:
        raise RuntimeError(f"Expected 2 to 3 dimensions, but got {n}-dimensional tensor for argument "
                           f"#1 'self' (while checking arguments for {name})")
    raise RuntimeError(f"non-empty {nd + 1}D or {nd + 2}D (batch mode) tensor expected for input")


def _pool_args(x: Tensor, kernel_size, stride, padding, dilation, ceil_mode: bool, nd: int,
               name: str) -> tuple:
    _check_dims(x, nd, name)
    k = ntuple(kernel_size, nd, "kernel_size", name)
    s = k if stride is None or (not isinstance(stride, int) and len(tuple(stride)) == 0) \
        else ntuple(stride, nd, "stride", name)
    p = ntuple(padding, nd, "padding", name)
    d = ntuple(dilation, nd, "dilation", name)
    sp = x._data.shape[-nd:]
    out = tuple(_out_size(i, kk, ss, pp, dd, ceil_mode) for i, kk, ss, pp, dd in zip(sp, k, s, p, d))
    if any(v <= 0 for v in k):
        raise RuntimeError("kernel size should be greater than zero, but got " + _named("k", k, nd))
    if any(v <= 0 for v in s):
        raise RuntimeError("stride should be greater than zero, but got " + _named("d", s, nd))
    if any(v <= 0 for v in d):
        raise RuntimeError("dilation should be greater than zero, but got " + _named("dilation", d, nd))
    if any(v < 1 for v in out):
        c = x._data.shape[-nd - 1]
        lift = (1,) if nd == 1 else ()  # torch words 1-d pools as 2-d ones of height 1
        raise RuntimeError(f"Given input size: ({'x'.join(map(str, (c,) + lift + sp))}). Calculated "
                           f"output size: ({'x'.join(map(str, (c,) + lift + out))}). Output size is "
                           "too small")
    return k, s, p, d, out


def _named(prefix: str, vals: tuple, nd: int) -> str:
    names = {1: ("W",), 2: ("H", "W"), 3: ("T", "H", "W")}[nd]
    return " ".join(f"{prefix}{n}: {v}" for n, v in zip(names, vals))


# ---------------------------------------------------------------- max pooling
def _argmax(v: np.ndarray, kernel: tuple, source: np.ndarray) -> np.ndarray:
    """Flat kernel index of each window's maximum; ``v`` is ``(lead, *out, *kernel)``, a view of
    (or gathered from) ``source``.

    A running comparison over the kernel offsets (a few passes over the output, no window copy),
    with torch's rule: a later entry wins if it is greater or NaN, so ties keep the first maximum
    and a window holding NaN picks its last NaN.
    """
    nan = v.dtype.kind == "f" and bool(np.isnan(source).any())
    kk = math.prod(kernel)
    it = np.uint8 if kk <= 255 else np.intp  # a narrow index: less memory traffic
    best = idx = win = step = None
    for t, offs in enumerate(itertools.product(*(range(k) for k in kernel))):
        cur = v[(Ellipsis,) + offs]
        if best is None:
            best, idx = cur.copy(), np.zeros(cur.shape, it)
            win, step = np.empty(cur.shape, np.bool_), np.empty(cur.shape, it)
            continue
        np.greater(cur, best, out=win)
        if nan:
            win |= np.isnan(cur)
            np.copyto(best, cur, where=win)
        else:
            np.maximum(best, cur, out=best)
        # idx = t where win: t exceeds every index so far, so a maximum does it (a masked
        # copyto is ~10x slower)
        np.maximum(idx, np.multiply(win, it(t), out=step), out=idx)
    return idx


def _gather_at(x: Tensor, flat: np.ndarray, nd: int, unique: bool, return_indices: bool):
    """Gather ``x`` at ``flat`` (per-plane flat spatial indices, shape ``(lead, *out)``)."""
    sp = x._data.shape[-nd:]
    lead = x._data.shape[:-nd]
    n = x._data.size
    dt = np.int32 if n < 2**31 else np.intp  # the gather node keeps these until backward
    rows = np.arange(math.prod(lead), dtype=dt).reshape(lead + (1,) * nd) * dt(math.prod(sp))
    y = take(reshape(x, (-1,)), rows + flat.astype(dt, copy=False), 0, unique=unique)
    return (y, Tensor._make(flat.astype(np.int64, copy=False))) if return_indices else y


def _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, nd, name):
    x = as_tensor_arg(input)
    k, s, p, d, out = _pool_args(x, kernel_size, stride, padding, dilation, ceil_mode, nd, name)
    xd = x._data
    sp = xd.shape[-nd:]
    span = tuple((kk - 1) * dd + 1 for kk, dd in zip(k, d))
    need = tuple((o - 1) * ss + sn for o, ss, sn in zip(out, s, span))
    right = tuple(max(n - i - pp, 0) for n, i, pp in zip(need, sp, p))
    if any(p) or any(right):  # pad with the lowest value: padding never wins
        low = -np.inf if xd.dtype.kind == "f" else np.iinfo(xd.dtype).min
        xp = np.full(xd.shape[:-nd] + tuple(i + pp + r for i, pp, r in zip(sp, p, right)), low,
                     xd.dtype)
        xp[(Ellipsis,) + tuple(slice(pp, pp + i) for pp, i in zip(p, sp))] = xd
    else:
        xp = xd
    v = sliding_window_view(xp, span, axis=tuple(range(xp.ndim - nd, xp.ndim)))
    v = v[(Ellipsis,) + tuple(slice(0, (o - 1) * ss + 1, ss) for o, ss in zip(out, s))
          + tuple(slice(None, None, dd) for dd in d)]
    am = _argmax(v, k, xd)
    # The input coordinate o*s - p + t*d is linear in the window position o and the kernel offset
    # t, so the flat index is base[o] + offset[t]: two small tables and one lookup.
    plane = np.cumprod((1,) + sp[:0:-1])[::-1]                    # row-major strides of sp
    base = np.zeros(out, np.intp)
    for j in range(nd):
        base = base + (np.arange(out[j]) * s[j] - p[j]).reshape((-1,) + (1,) * (nd - 1 - j)) * plane[j]
    offset = (np.indices(k).reshape(nd, -1) * (np.array(d) * plane)[:, None]).sum(0)
    unique = all(ss >= sn for ss, sn in zip(s, span))  # windows don't overlap
    dt = np.int32 if math.prod(sp) < 2**31 else np.intp
    flat = base.astype(dt) + np.take(offset.astype(dt), am)
    return _gather_at(x, flat, nd, unique, return_indices)


@op(n_outputs=None)
def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max over 1-d windows of (N, C, L) or (C, L); ``return_indices`` adds the argmax positions.

    >>> F.max_pool1d(engine.tensor([[[1.0, 3.0, 2.0, 0.0]]]), 2)
    tensor([[[3., 2.]]])
    """
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 1,
                     "max_pool1d")


@op(n_outputs=None)
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max over 2-d windows of (N, C, H, W) or (C, H, W); the gradient goes to the first maximum.

    >>> F.max_pool2d(engine.arange(16.0).reshape(1, 1, 4, 4), 2)
    tensor([[[[ 5.,  7.],
              [13., 15.]]]])
    """
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 2,
                     "max_pool2d")


@op(n_outputs=None)
def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max over 3-d windows of (N, C, D, H, W) or (C, D, H, W).

    >>> F.max_pool3d(engine.ones(1, 1, 2, 2, 2), 2).shape
    torch.Size([1, 1, 1, 1, 1])
    """
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 3,
                     "max_pool3d")


# ---------------------------------------------------------------- average pooling
def _avg_divisor(i: int, k: int, s: int, p: int, out: int, include_pad: bool) -> np.ndarray:
    """torch's per-window element count along one dim."""
    start = np.arange(out) * s - p
    end = np.minimum(start + k, i + p)
    if include_pad:
        return end - start
    return np.minimum(end, i) - np.maximum(start, 0)


def _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
              nd, name):
    x = as_tensor_arg(input)
    k, s, p, _, out = _pool_args(x, kernel_size, stride, padding, 1, ceil_mode, nd, name)
    if divisor_override is not None and divisor_override == 0:
        raise RuntimeError("divisor must be not zero")
    sp = x._data.shape[-nd:]
    need = tuple((o - 1) * ss + kk for o, ss, kk in zip(out, s, k))
    pads = [(0, 0)] * (x._data.ndim - nd) + [(pp, max(n - i - pp, 0)) for n, i, pp in zip(need, sp, p)]
    xp = pad_constant(x, pads)
    lead = x._data.ndim - nd
    total = windows(xp, k, s, (1,) * nd, out).sum(dim=tuple(range(lead, lead + nd)))
    if divisor_override is not None:
        return _divide(total, float(divisor_override))
    div = np.ones((), np.float64)
    for j in range(nd):
        dj = _avg_divisor(sp[j], k[j], s[j], p[j], out[j], count_include_pad)
        div = np.multiply.outer(div, dj)
    return _divide(total, div)


def _divide(total: Tensor, div: np.ndarray | float) -> Tensor:
    if total._data.dtype.kind != "f":  # integer pooling truncates, as torch's does
        return Tensor._make((total._data / div).astype(total._data.dtype))
    return total / Tensor._make(np.asarray(div, total._data.dtype))


@op()
def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Mean over 1-d windows of (N, C, L) or (C, L).

    >>> F.avg_pool1d(engine.tensor([[[1.0, 3.0, 2.0, 0.0]]]), 2)
    tensor([[[2., 1.]]])
    """
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, None, 1,
                     "avg_pool1d")


@op()
def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over 2-d windows; ``count_include_pad`` counts the zero padding in the divisor,
    ``divisor_override`` replaces the divisor.

    >>> F.avg_pool2d(engine.ones(1, 1, 4, 4), 2, padding=1, count_include_pad=False)[0, 0, 0]
    tensor([1., 1., 1.])
    """
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, 2, "avg_pool2d")


@op()
def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over 3-d windows of (N, C, D, H, W) or (C, D, H, W).

    >>> F.avg_pool3d(engine.ones(1, 1, 2, 2, 2), 2).shape
    torch.Size([1, 1, 1, 1, 1])
    """
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, 3, "avg_pool3d")


# ---------------------------------------------------------------- adaptive pooling
def _adaptive_out(x: Tensor, output_size, nd: int, name: str) -> tuple:
    n = x._data.ndim
    if n not in (nd + 1, nd + 2):
        if nd == 1:
            raise RuntimeError(f"Expected 2 to 3 dimensions, but got {n}-dimensional tensor for "
                               f"argument #1 'self' (while checking arguments for {name})")
        raise RuntimeError(f"{name}(): Expected {nd + 1}D or {nd + 2}D tensor, but got"
                           f"{':' if 'max' in name else ''} {size_str(x._data.shape)}")
    if isinstance(output_size, (int, np.integer)) or output_size is None:
        output_size = (output_size,) * nd
    output_size = tuple(output_size)
    if len(output_size) != nd:
        raise RuntimeError(f"{name}: output_size must be {nd}")
    sp = x._data.shape[-nd:]
    return tuple(i if o is None else int(o) for i, o in zip(sp, output_size))


def _bounds(i: int, o: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's adaptive windows along one dim: [floor(j*i/o), ceil((j+1)*i/o))."""
    j = np.arange(o)
    return (j * i) // o, -((-(j + 1) * i) // o)


def _avg_matrix(i: int, o: int, dtype: np.dtype) -> np.ndarray:
    start, end = _bounds(i, o)
    cols = np.arange(i)
    inside = (cols >= start[:, None]) & (cols < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


def along(x: Tensor, m: np.ndarray, dim_from_end: int) -> Tensor:
    """Apply the constant matrix ``m`` (out, in) along spatial dim ``-dim_from_end`` of ``x``."""
    mt = Tensor._make(m)
    if dim_from_end == 1:
        return matmul(x, Tensor._make(np.ascontiguousarray(m.T)))
    shape = x._data.shape
    d = x._data.ndim - dim_from_end
    rest = math.prod(shape[d + 1:])
    y = matmul(mt, reshape(x, shape[:d] + (shape[d], rest)))
    return reshape(y, shape[:d] + (m.shape[0],) + shape[d + 1:])


def _adaptive_avg(input, output_size, nd: int, name: str) -> Tensor:
    x = as_tensor_arg(input)
    out = _adaptive_out(x, output_size, nd, name)
    if x._data.dtype.kind != "f":
        raise NotImplementedError(f"\"{name}\" not implemented for '{type_name(x)}'")
    sp = x._data.shape[-nd:]
    for j in range(nd):  # last dim first: each step shrinks what the next one touches
        if sp[-1 - j] != out[-1 - j]:
            x = along(x, _avg_matrix(sp[-1 - j], out[-1 - j], x._data.dtype), j + 1)
    return x


@op()
def adaptive_avg_pool1d(input, output_size):
    """Mean over ``output_size`` adaptive windows of the last dim of (N, C, L) or (C, L).

    >>> F.adaptive_avg_pool1d(engine.tensor([[[1.0, 3.0, 2.0, 0.0]]]), 2)
    tensor([[[2., 1.]]])
    """
    return _adaptive_avg(input, output_size, 1, "adaptive_avg_pool1d")


@op()
def adaptive_avg_pool2d(input, output_size):
    """Mean over adaptive windows giving an ``output_size`` (an int, a pair; None keeps a dim).

    >>> F.adaptive_avg_pool2d(engine.ones(1, 2, 5, 7), 1).shape
    torch.Size([1, 2, 1, 1])
    """
    return _adaptive_avg(input, output_size, 2, "adaptive_avg_pool2d")


@op()
def adaptive_avg_pool3d(input, output_size):
    """Mean over adaptive 3-d windows of (N, C, D, H, W) or (C, D, H, W).

    >>> F.adaptive_avg_pool3d(engine.ones(1, 1, 3, 4, 5), 2).shape
    torch.Size([1, 1, 2, 2, 2])
    """
    return _adaptive_avg(input, output_size, 3, "adaptive_avg_pool3d")


def _adaptive_max(input, output_size, return_indices, nd: int, name: str):
    x = as_tensor_arg(input)
    out = _adaptive_out(x, output_size, nd, name)
    xd = x._data
    sp = xd.shape[-nd:]
    bounds = [_bounds(i, o) for i, o in zip(sp, out)]
    kmax = tuple(int((e - s).max()) if len(s) else 1 for s, e in bounds)
    # candidate coordinates per dim, (out_j, kmax_j); short windows repeat their last entry, which
    # never changes the first maximum
    pos = [np.minimum(s[:, None] + np.arange(km), e[:, None] - 1) for (s, e), km in zip(bounds, kmax)]
    grids = []
    for j, pj in enumerate(pos):  # broadcast to (*out, *kmax)
        shape = [1] * (2 * nd)
        shape[j], shape[nd + j] = pj.shape
        grids.append(pj.reshape(shape))
    vals = xd[(Ellipsis,) + tuple(grids)]
    t = np.unravel_index(_argmax(vals, kmax, xd), kmax)
    flat = np.zeros(t[0].shape, np.intp)
    for j, (s, e) in enumerate(bounds):
        o = np.arange(out[j]).reshape((-1,) + (1,) * (nd - 1 - j))
        flat = flat * sp[j] + np.minimum(s[o] + t[j], e[o] - 1)
    unique = all(bool((s[1:] >= e[:-1]).all()) for s, e in bounds)
    return _gather_at(x, flat, nd, unique, return_indices)


@op(n_outputs=None)
def adaptive_max_pool1d(input, output_size, return_indices=False):
    """Max over ``output_size`` adaptive windows of the last dim of (N, C, L) or (C, L).

    >>> F.adaptive_max_pool1d(engine.tensor([[[1.0, 3.0, 2.0, 0.0]]]), 2)
    tensor([[[3., 2.]]])
    """
    return _adaptive_max(input, output_size, return_indices, 1, "adaptive_max_pool1d")


@op(n_outputs=None)
def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Max over adaptive 2-d windows giving an ``output_size``.

    >>> F.adaptive_max_pool2d(engine.ones(1, 2, 5, 7), 1).shape
    torch.Size([1, 2, 1, 1])
    """
    return _adaptive_max(input, output_size, return_indices, 2, "adaptive_max_pool2d")


@op(n_outputs=None)
def adaptive_max_pool3d(input, output_size, return_indices=False):
    """Max over adaptive 3-d windows of (N, C, D, H, W) or (C, D, H, W).

    >>> F.adaptive_max_pool3d(engine.ones(1, 1, 3, 4, 5), 2).shape
    torch.Size([1, 1, 2, 2, 2])
    """
    return _adaptive_max(input, output_size, return_indices, 3, "adaptive_max_pool3d")


# ---------------------------------------------------------------- power-average pooling
def _lp_pool(input, norm_type, kernel_size, stride, ceil_mode, nd: int) -> Tensor:
    x = as_tensor_arg(input)
    k = ntuple(kernel_size, nd, "kernel_size")
    maxp = (max_pool1d, max_pool2d, max_pool3d)[nd - 1]
    avgp = (avg_pool1d, avg_pool2d, avg_pool3d)[nd - 1]
    if norm_type == math.inf:
        return maxp(x.abs(), kernel_size, stride, 0, 1, ceil_mode)
    if norm_type == -math.inf:
        return -maxp(-x.abs(), kernel_size, stride, 0, 1, ceil_mode)
    out = avgp(x ** norm_type, kernel_size, stride, 0, ceil_mode)
    # torch's form: sign(out) * relu(|out|) keeps a zero window's gradient at zero
    return ((out.sign() * out.abs().relu()) * math.prod(k)) ** (1.0 / norm_type)


@op()
def lp_pool1d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """``(sum over each window of input**p) ** (1/p)``; ``p = inf`` is max pooling of ``|input|``.

    >>> F.lp_pool1d(engine.tensor([[[3.0, 4.0]]]), 2, 2)
    tensor([[[5.]]])
    """
    return _lp_pool(input, norm_type, kernel_size, stride, ceil_mode, 1)


@op()
def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Power-average pooling over 2-d windows.

    >>> F.lp_pool2d(engine.ones(1, 1, 2, 2), 1, 2)
    tensor([[[[4.]]]])
    """
    return _lp_pool(input, norm_type, kernel_size, stride, ceil_mode, 2)


@op()
def lp_pool3d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Power-average pooling over 3-d windows.

    >>> F.lp_pool3d(engine.ones(1, 1, 2, 2, 2), 1, 2).flatten()
    tensor([8.])
    """
    return _lp_pool(input, norm_type, kernel_size, stride, ceil_mode, 3)
