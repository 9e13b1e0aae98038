"""Pooling: max, average and adaptive, over 1-, 2- and 3-d windows; vectorized, no pixel loops.

- max pooling is one primitive returning each window's maximum and argmax (its kernel offset);
  its VJP scatters the gradient into the windows at the argmax, whose VJP gathers from them (and
  vice versa), so double backward matches torch's. See the section below for its fast paths.
- adaptive max pooling finds each window's argmax in numpy, then *gathers* the input at those
  flat indices with the ``take`` primitive (VJP ``take_add``, whose VJP is the gather again).
- average pooling sums the window view (``windows``, whose adjoint is ``fold_windows``) and divides
  by torch's per-window divisor (a constant).
- adaptive average pooling is separable: one constant averaging matrix per spatial dim, applied
  with matmul.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from ..._autograd import dims_batch, primitive
from ..._meta import _bound, _fresh
from ..._threads import run_parts
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
# One primitive computes each window's maximum and its argmax (the flat kernel offset, uint8 for
# kernels of up to 255 entries) in one pass and returns both: the argmax is a second, integer
# output rather than ``aux`` data, so that vmap's batching rules, forward mode (the JVP reads it
# from ``ctx.out``), meta mode and the compiler carry it like any output. The VJP scatters the
# gradient into the windows at their argmax (``_max_pool_scatter``), whose VJP gathers from the
# windows (``_max_pool_gather``) and vice versa: both are linear, so any order of derivative is
# these two primitives. No flat indices are built unless ``return_indices`` asks for them.
#
# Paths, from fastest:
# - 2x2 windows with stride 2 over 1-, 2- or 4-byte dtypes (max_pool2d(2) on float32): each row
#   pair is copied out once (rows as opaque ``void`` items), the two halves of each window row
#   are split by casting the pairs, read as one unsigned integer of twice the width, to the
#   narrow type (the first element is the low half) — contiguous numpy loops only, no short
#   strided rows. Backward shifts the gradient's bits into the right half of each pair.
# - other windows: a running comparison over strided window views (padding, dilation, ceil_mode,
#   1-d and 3-d). Backward: where windows do not overlap (stride >= span) each input entry is in
#   one window at most, so small kernels write each kernel offset's slots once (the gradient's
#   bits times the hit mask: no adds, no NaN from 0 * inf) and larger ones assign at flat
#   indices; overlapping windows sum at flat indices with one bincount.
# Large inputs are split by planes (the leading dims) across the engine's threads; every plane is
# computed as the serial loop computes it, so results do not depend on the thread count.
_PAIR = {1: (np.uint8, np.uint16), 2: (np.uint16, np.uint32), 4: (np.uint32, np.uint64)}
# Input elements from which the planes are split across threads. A split hands each part to
# another thread and waits for it: on a loaded machine that wait is the scheduler's (ms), so the
# parts must be long. The CNN step's pools (512K and 256K elements, ~0.3 ms a call) ran 5x slower
# in wall time with 2 threads on a shared, loaded 2-core machine: they stay on one thread.
_THREAD_MIN = 1 << 21


def _low(dtype: np.dtype):
    """The padding value: the dtype's lowest (padding positions never win anyway, see _validity)."""
    if dtype.kind == "f":
        return -np.inf
    if dtype.kind == "b":
        return False
    return np.iinfo(dtype).min


_SECOND_ON_TIES: dict = {}


def _later_first(dtype: np.dtype) -> bool:
    """Whether ``np.maximum(later, earlier)`` gives torch's value: the earlier of two equal entries
    (+0.0 and -0.0 compare equal) and the later of two NaNs. numpy returns its second operand on
    ties for float32/float64 and its first for float16 (probed once per dtype, contiguous and
    strided); where it returns the first, ``np.maximum(earlier, later)`` keeps the earlier zero,
    and a window of only NaNs gives its first NaN rather than its last."""
    ok = _SECOND_ON_TIES.get(dtype)
    if ok is None:
        if dtype.kind != "f":
            ok = True
        else:
            neg, pos = np.full(67, -0.0, dtype), np.full(67, 0.0, dtype)
            ok = all(bool(np.signbit(np.maximum(pos[k], neg[k])).all()) for k in
                     (slice(None), slice(None, None, 2), slice(0, 1)))
        _SECOND_ON_TIES[dtype] = ok
    return ok


def _max(later: np.ndarray, earlier: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Elementwise maximum keeping the earlier entry on ties (see :func:`_later_first`)."""
    if _later_first(earlier.dtype):
        return np.maximum(later, earlier, out=out)
    return np.maximum(earlier, later, out=out)


def _am_dtype(kernel: tuple) -> type:
    return np.uint8 if math.prod(kernel) <= 255 else np.intp


def _need(kernel: tuple, stride: tuple, dilation: tuple, out: tuple) -> tuple:
    """Per dim, the padded extent the windows cover; the tiled paths round up to ``out*stride``."""
    span = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
    tiled = all(s >= sn for s, sn in zip(stride, span))
    if tiled:
        return tuple(o * s for o, s in zip(out, stride)), True
    return tuple((o - 1) * s + sn for o, s, sn in zip(out, stride, span)), False


def _padded(a: np.ndarray, nd: int, padding: tuple, need: tuple, fill) -> np.ndarray:
    """``a``'s spatial dims padded on the left by ``padding`` and to ``need`` on the right with
    ``fill`` (cropped where ``need`` is shorter): a view when no padding is needed."""
    sp = a.shape[-nd:]
    if not any(padding) and all(n <= i for n, i in zip(need, sp)):
        return a[(Ellipsis,) + tuple(slice(0, n) for n in need)]
    res = np.full(a.shape[:-nd] + tuple(need), fill, a.dtype)
    src = tuple(slice(0, min(i, n - p)) for i, n, p in zip(sp, need, padding))
    dst = tuple(slice(p, p + min(i, n - p)) for i, n, p in zip(sp, need, padding))
    res[(Ellipsis,) + dst] = a[(Ellipsis,) + src]
    return res


def _offset_views(a: np.ndarray, nd: int, kernel: tuple, stride: tuple, dilation: tuple,
                  out: tuple):
    """(flat kernel offset, view of ``a``'s (padded) spatial dims at that offset of every window),
    views shaped ``(..., *out)``."""
    for t, offs in enumerate(itertools.product(*(range(k) for k in kernel))):
        key = tuple(slice(o * d, o * d + (n - 1) * s + 1, s)
                    for o, d, s, n in zip(offs, dilation, stride, out))
        yield t, a[(Ellipsis,) + key]


def _validity(size: tuple, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple,
              out: tuple) -> list | None:
    """Per flat kernel offset, a mask over the windows (broadcastable to ``out``) of the windows
    whose element at that offset lies inside the input; None when every one does."""
    per_dim = []
    for i, k, s, p, d, o in zip(size, kernel, stride, padding, dilation, out):
        pos = np.arange(o)[:, None] * s - p + np.arange(k)[None, :] * d
        per_dim.append((pos >= 0) & (pos < i))
    if all(m.all() for m in per_dim):
        return None
    nd = len(size)
    masks = []
    for offs in itertools.product(*(range(k) for k in kernel)):
        m = np.ones((1,) * nd, np.bool_)
        for j, o in enumerate(offs):
            m = m & per_dim[j][:, o].reshape((1,) * j + (-1,) + (1,) * (nd - 1 - j))
        masks.append(m)
    return masks


def _running_max(a: np.ndarray, nd: int, kernel: tuple, stride: tuple, dilation: tuple,
                 out: tuple, valid: list | None, nan: bool) -> tuple[np.ndarray, np.ndarray]:
    """Window maxima and argmax over strided views of the padded input ``a``, with torch's rule:
    a later entry wins if it is greater or NaN (ties keep the first maximum, a window holding NaN
    picks its last NaN; ``nan``: the input may hold one), and an entry outside the input
    (``valid``) never wins over one inside."""
    best = idx = win = step = bv = None
    it = _am_dtype(kernel)
    for t, cur in _offset_views(a, nd, kernel, stride, dilation, out):
        if best is None:
            best, idx = cur.copy(), np.zeros(cur.shape, it)
            win, step = np.empty(cur.shape, np.bool_), np.empty(cur.shape, it)
            if valid is not None:
                bv = np.broadcast_to(valid[0], cur.shape).copy()
            continue
        np.greater(cur, best, out=win)
        if nan:
            win |= np.isnan(cur)
        if valid is not None:
            vt = valid[t]
            win |= vt & ~bv  # the first entry inside the input beats any outside it
            win &= vt
            bv |= vt
        if nan or valid is not None:
            np.copyto(best, cur, where=win)
        else:
            _max(cur, best, out=best)
        # idx = t where win: t exceeds every index so far, so a maximum does it
        np.maximum(idx, np.multiply(win, it(t), out=step), out=idx)
    return best, idx


def _pair_forward(x3: np.ndarray, y: np.ndarray, am: np.ndarray) -> None:
    """max_pool2d(2) of the contiguous planes ``x3`` (M, H, W), W even, 1-, 2- or 4-byte dtype,
    into ``y`` and ``am`` (M, H//2, W//2)."""
    m, h, w = x3.shape
    ho, wo = h // 2, w // 2
    nt, wt = _PAIR[x3.dtype.itemsize]
    row = np.dtype((np.void, w * x3.dtype.itemsize))
    rows = x3.reshape(m, h, w).view(row).reshape(m, h)[:, :2 * ho].reshape(m, ho, 2)
    n = m * ho * wo
    halves = []
    for i in (0, 1):  # the window's top and bottom rows, as contiguous pairs
        pairs = np.empty(n, wt)
        np.copyto(pairs.view(row).reshape(m, ho), rows[:, :, i])
        narrow = pairs.view(nt)
        first = np.empty(n, nt)
        np.copyto(first, pairs, casting="unsafe")  # the low half: the pair's first element
        second = np.empty(n, nt)
        # the high halves: the pairs read one element later (an unaligned view), low halves again
        np.copyto(second[:-1], narrow[1:-1].view(wt), casting="unsafe")
        second[-1:] = narrow[-1:]
        halves.append((first.view(x3.dtype), second.view(x3.dtype)))
    (a, b), (c, d) = halves
    nan = x3.dtype.kind == "f"
    ab = _max(b, a)
    jab = np.greater(b, a)
    cd = _max(d, c)
    jcd = np.greater(d, c)
    yf = y.reshape(-1)
    _max(cd, ab, out=yf)
    vi = np.greater(cd, ab)
    if nan and np.isnan(yf.max()):  # (max propagates NaN) a NaN wins over anything before it
        jab |= np.isnan(b)
        jcd |= np.isnan(d)
        vi |= np.isnan(cd)
    # am = 2*vi + (vi ? jcd : jab), in byte arithmetic
    sel = np.bitwise_xor(jab, jcd)
    sel &= vi
    sel ^= jab
    amf = am.reshape(-1)
    v8 = vi.view(np.uint8)
    np.add(v8, v8, out=amf)
    amf |= sel.view(np.uint8)


def _pair_backward(g: np.ndarray, am: np.ndarray, dx: np.ndarray) -> None:
    """The adjoint of :func:`_pair_forward`: ``g`` (M, Ho, Wo) into ``dx`` (M, H, W), W even."""
    m, h, w = dx.shape
    ho = h // 2
    nt, wt = _PAIR[g.dtype.itemsize]
    bits = 8 * g.dtype.itemsize
    row = np.dtype((np.void, w * g.dtype.itemsize))
    # each gradient as the low half of a pair, shifted into the high half where the argmax is the
    # second column, and out of the pair (a shift by the pair's width or more gives 0 in numpy)
    # where the argmax is in the other row: am = 2*row + column, so the shift is am*bits for the
    # top row and (am ^ 2)*bits for the bottom one
    wide = np.empty(g.size, wt)
    np.copyto(wide, np.ascontiguousarray(g).reshape(-1).view(nt))
    shift = np.empty(g.size, wt)
    np.copyto(shift, np.multiply(am.reshape(-1), np.uint8(bits)))  # (at most 3 * 32: a byte)
    dxr = dx.reshape(m, h, w).view(row).reshape(m, h)
    if h % 2:
        dxr[:, -1:] = np.zeros(1, row)
    dxr = dxr[:, :2 * ho].reshape(m, ho, 2)
    part = np.empty(g.size, wt)
    for i in (0, 1):
        np.left_shift(wide, shift, out=part)
        np.copyto(dxr[:, :, i], part.view(row).reshape(m, ho))
        shift ^= wt(2 * bits)


def _planes(fn, m: int, size: int) -> None:
    """``fn(start, stop)`` over the ``m`` planes, split across the engine's threads when large."""
    if size >= _THREAD_MIN and m > 1:
        run_parts(lambda r: fn(r.start, r.stop), range(m), blas=False)
    else:
        fn(0, m)


def _pair_ok(x: np.ndarray, nd: int, kernel: tuple, stride: tuple, padding: tuple,
             dilation: tuple, out: tuple, size: tuple) -> bool:
    """The 2x2 stride-2 path applies (no padding, no window past the input's end)."""
    return (nd == 2 and kernel == (2, 2) and stride == (2, 2) and not any(padding)
            and dilation == (1, 1) and x.dtype.itemsize in _PAIR and x.dtype.kind in "fiu"
            and np.little_endian and all(2 * o <= i for o, i in zip(out, size)))


@primitive(save=(-2,), n_out=2, name="max_pool")
def _max_pool_prim(x, kernel, stride, padding, dilation, out):
    """``(maxima, argmax)`` over the windows of the last ``len(kernel)`` dims: the argmax is each
    window's flat kernel offset (uint8 for kernels of up to 255 entries)."""
    nd = len(kernel)
    lead = x.shape[:-nd]
    m = math.prod(lead)
    y = np.empty(lead + tuple(out), x.dtype)
    am = np.empty(lead + tuple(out), _am_dtype(kernel))
    if m == 0:
        return y, am
    if _pair_ok(x, nd, kernel, stride, padding, dilation, out, x.shape[-nd:]):
        h, w = x.shape[-2:]
        x3 = x.reshape((m, h, w))
        if w % 2 or not x3.flags.c_contiguous:
            x3 = np.ascontiguousarray(x3[:, :, :2 * out[1]])
        y3, am3 = y.reshape((m,) + tuple(out)), am.reshape((m,) + tuple(out))
        _planes(lambda a, b: _pair_forward(x3[a:b], y3[a:b], am3[a:b]), m, x.size)
        return y, am
    sp = x.shape[-nd:]
    need, tiled = _need(kernel, stride, dilation, out)
    low = _low(x.dtype)
    valid = _validity(sp, kernel, stride, padding, dilation, out)
    nan = x.dtype.kind == "f" and bool(np.isnan(x).any())
    xm = x.reshape((m,) + sp)
    ym, amm = y.reshape((m,) + tuple(out)), am.reshape((m,) + tuple(out))

    def part(a: int, b: int) -> None:
        xp = _padded(xm[a:b], nd, padding, need, low)
        best, idx = _running_max(xp, nd, kernel, stride, dilation, out, None, nan)
        if valid is not None and bool((best == low).any()):
            # padding holds the lowest value: it may have tied with a window's maximum only
            # where that maximum is the lowest value
            best, idx = _running_max(xp, nd, kernel, stride, dilation, out, valid, nan)
        ym[a:b], amm[a:b] = best, idx

    _planes(part, m, x.size)
    return y, am


@primitive(save=(1,))
def _max_pool_scatter(g, am, kernel, stride, padding, dilation, size):
    """The adjoint of taking each window's argmax entry: ``g`` (``(..., *out)``) added into a
    zero ``(..., *size)`` array at each window's argmax ``am``."""
    nd = len(kernel)
    out = g.shape[-nd:]
    lead = g.shape[:-nd]
    if am.shape[:-nd] != lead:  # (vmap's batching rule may batch only one of them)
        lead = np.broadcast_shapes(lead, am.shape[:-nd])
        g, am = np.broadcast_to(g, lead + out), np.broadcast_to(am, lead + out)
    dx = np.empty(lead + tuple(size), g.dtype)
    scatter_into(dx, g, am, kernel, stride, padding, dilation)
    return dx


def scatter_into(dx: np.ndarray, g: np.ndarray, am: np.ndarray, kernel: tuple, stride: tuple,
                 padding: tuple, dilation: tuple) -> None:
    """:func:`_max_pool_scatter`'s work, into the C-contiguous ``dx`` (``g``'s leading dims,
    then the input's size): every entry of it written (``_fusions`` scatters a thread's samples
    into their rows of a whole gradient)."""
    nd = len(kernel)
    out = g.shape[-nd:]
    lead = g.shape[:-nd]
    size = dx.shape[-nd:]
    m = math.prod(lead)
    if m == 0:
        return
    if _pair_ok(g, nd, kernel, stride, padding, dilation, out, size):
        h, w = size
        w2 = 2 * out[1]
        full = w2 == w
        d3 = dx.reshape((m, h, w)) if full else np.empty((m, h, w2), g.dtype)
        g3, a3 = g.reshape((m,) + out), am.reshape((m,) + out)
        _planes(lambda a, b: _pair_backward(g3[a:b], a3[a:b], d3[a:b]), m, dx.size)
        if not full:
            dm = dx.reshape((m, h, w))
            dm[:, :, :w2] = d3
            dm[:, :, w2:] = 0
        return
    need, tiled = _need(kernel, stride, dilation, out)
    ext = tuple(max(n, p + i) for n, p, i in zip(need, padding, size))
    gm, amm = g.reshape((m,) + out), am.reshape((m,) + out)
    dm = dx.reshape((m,) + tuple(size))
    direct = ext == tuple(size) and not any(padding)  # no margin: write into dx itself
    cover = direct and tiled and need == tuple(size) and all(
        s == k and d == 1 for s, k, d in zip(stride, kernel, dilation))  # every entry in a window
    crop = (Ellipsis,) + tuple(slice(p, p + i) for p, i in zip(padding, size))
    # tiled: the gradient's bits times the hit mask, g where hit, +0.0 elsewhere (no 0 * inf)
    bits = np.dtype(f"u{g.dtype.itemsize}") if g.dtype.kind == "f" else g.dtype
    few = math.prod(kernel) <= 4

    def part(a: int, b: int) -> None:
        res = dm[a:b] if direct else np.empty((b - a,) + ext, g.dtype)
        if not (cover and tiled and few):  # the per-offset writes alone reach every entry
            res.fill(0)
        if tiled and few:  # each slot belongs to one window: written once, per kernel offset
            ga, aa = gm[a:b].view(bits), amm[a:b]
            for t, view in _offset_views(res, nd, kernel, stride, dilation, out):
                np.multiply(ga, aa == t, out=view.view(bits))
        else:  # larger kernels: one pass over flat indices rather than one per offset
            flat = _flat_indices(amm[a:b], ext, kernel, stride, (0,) * nd, dilation, out)
            flat += np.arange(b - a, dtype=np.int64).reshape((-1,) + (1,) * nd) * math.prod(ext)
            if tiled:  # no duplicates: an assignment
                res.reshape(-1)[flat.reshape(-1)] = gm[a:b].reshape(-1)
            else:  # overlapping windows add up: a bincount, summing in float64, rounded once
                res[...] = np.bincount(flat.reshape(-1), weights=gm[a:b].reshape(-1),
                                       minlength=res.size).reshape(res.shape)
        if not direct:
            dm[a:b] = res[crop]

    _planes(part, m, dx.size)


@primitive(save=(1,))
def _max_pool_gather(t, am, kernel, stride, padding, dilation, out):
    """Each window's entry at its argmax ``am``: ``t`` (``(..., *size)``) -> ``(..., *out)``."""
    nd = len(kernel)
    lead = t.shape[:-nd]
    if am.shape[:-nd] != lead:
        lead = np.broadcast_shapes(lead, am.shape[:-nd])
        t, am = np.broadcast_to(t, lead + t.shape[-nd:]), np.broadcast_to(am, lead + tuple(out))
    need, _ = _need(kernel, stride, dilation, out)
    tp = _padded(t, nd, padding, need, 0)
    res = np.zeros(lead + tuple(out), t.dtype)
    for k, view in _offset_views(tp, nd, kernel, stride, dilation, out):
        np.copyto(res, view, where=am == k)
    return res


_max_pool_prim.defvjp(lambda ctx, g, am, kernel, stride, padding, dilation, out: _max_pool_scatter(
    g[0], am, kernel=kernel, stride=stride, padding=padding, dilation=dilation,
    size=ctx.in_meta[0][0][-len(kernel):]))
_max_pool_prim.defjvp(lambda ctx, ts, x, kernel, stride, padding, dilation, out: (_max_pool_gather(
    ts[0], ctx.out[1], kernel=kernel, stride=stride, padding=padding, dilation=dilation, out=out),
    None))
_max_pool_prim.defbatch(dims_batch())


def _adjoints(prim: Any, adjoint: Any, sized_by: str) -> None:
    """The rules of the scatter and the gather, each the other's adjoint: linear in their first
    operand (``am`` is an index, not differentiated), so a JVP is the primitive itself and a VJP
    the adjoint, given ``prim``'s input size as its ``sized_by`` parameter; the shape rule
    broadcasts the operands' leading dims."""
    def vjp(ctx, g, am, *, kernel, stride, padding, dilation, **_):
        geometry = {"kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation}
        return adjoint(g, am, **geometry, **{sized_by: ctx.in_meta[0][0][-len(kernel):]}), None

    own = "size" if sized_by == "out" else "out"  # the parameter that sizes prim's own output

    def shape(prim: Any, arrays: list, params: dict) -> Any:
        a = _bound(prim, arrays, params)
        first, am = arrays[0], a["am"]
        nd = len(a["kernel"])
        lead = np.broadcast_shapes(first.shape[:-nd], am.shape[:-nd])
        return _fresh(lead + tuple(a[own]), first.dtype)

    prim.defvjp(vjp)
    prim.defjvp(lambda ctx, ts, t, am, **params: None if ts[0] is None else prim(ts[0], am, **params))
    prim.defbatch(dims_batch())
    prim.defshape(shape)


_adjoints(_max_pool_scatter, _max_pool_gather, "out")
_adjoints(_max_pool_gather, _max_pool_scatter, "size")


@_max_pool_prim.defshape
def _max_pool_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    x, nd = a["x"], len(a["kernel"])
    shape = x.shape[:-nd] + tuple(a["out"])
    return _fresh(shape, x.dtype), _fresh(shape, _am_dtype(a["kernel"]))


def _flat_indices(am: np.ndarray, size: tuple, kernel: tuple, stride: tuple, padding: tuple,
                  dilation: tuple, out: tuple) -> np.ndarray:
    """torch's ``return_indices``: each argmax as a flat index into its plane of the input."""
    nd = len(kernel)
    # the input coordinate o*s - p + t*d is linear in the window position o and the kernel offset
    # t, so the flat index is base[o] + offset[t]: two small tables and one lookup
    plane = np.cumprod((1,) + tuple(size)[:0:-1])[::-1]
    base = np.zeros(out, np.int64)
    for j in range(nd):
        base = base + ((np.arange(out[j]) * stride[j] - padding[j]).reshape((-1,) + (1,) * (nd - 1 - j))
                       * plane[j])
    offset = (np.indices(kernel).reshape(nd, -1) * (np.array(dilation) * plane)[:, None]).sum(0)
    return base + np.take(offset.astype(np.int64), am)


def _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, nd, name):
    x = as_tensor_arg(input)
    k, s, p, d, out = _pool_args(x, kernel_size, stride, padding, dilation, ceil_mode, nd, name)
    if x._data.dtype.kind == "b":  # torch's kernel names (1-d without indices has its own)
        kernel = "max_pool1d_impl" if nd == 1 and not return_indices else f"max_pool{max(nd, 2)}d"
        raise NotImplementedError(f"\"{kernel}\" not implemented for 'Bool'")
    y, am = _max_pool_prim(x, kernel=k, stride=s, padding=p, dilation=d, out=out)
    if not return_indices:
        return y
    idx = _flat_indices(np.asarray(am._data), x._data.shape[-nd:], k, s, p, d, out)
    return y, Tensor._make(idx)


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
