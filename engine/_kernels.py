"""numpy kernels of the hot elementwise and reduction forwards, faster than their plain spelling
and cut across the engine's threads when large (:func:`engine._threads.elementwise`).

Each computes, element for element, what its plain numpy spelling computes (``relu`` is
``np.maximum(x, 0)``, the binary ops their ufunc), so the results do not depend on the thread
count or on which path ran (``tests/engine/test_threads.py``). :func:`sum_plan` is the one that
sums in another order than ``np.sum``; it is deterministic and used by eager and compiled runs
alike (``engine._compile`` lowers ``sum`` through it too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import _threads
from ._threads import elementwise, get_num_threads, splits_cleanly

__all__ = ["threaded_ufunc", "relu", "relu_into", "relu_backward", "where", "sum_plan", "sum_fast"]

_ND = np.ndarray


# ---------------------------------------------------------------- binary ufuncs
def threaded_ufunc(ufunc: np.ufunc) -> Callable[[Any, Any], Any]:
    """``ufunc(a, b)``, cut across the engine's threads when an operand is large and the operands
    are one shape and C-contiguous (or Python scalars / 0-d arrays). The plain ufunc is kept as
    ``.ufunc`` (the compiled runner calls it directly, with ``out=``).

    >>> threaded_ufunc(np.add)(np.ones(3), 1.0)
    array([2., 2., 2.])
    """
    def fwd(a: Any, b: Any) -> Any:
        if ((type(a) is _ND and a.size >= _threads.PARALLEL_MIN)
                or (type(b) is _ND and b.size >= _threads.PARALLEL_MIN)) \
                and get_num_threads() > 1 and splits_cleanly(a, b):
            big = a if type(a) is _ND and a.ndim else b
            # the dtype numpy picks for these operands (scalars are weak, as in the whole call)
            dt = ufunc(*[x.reshape(-1)[:0] if type(x) is _ND and x.ndim else x for x in (a, b)]).dtype
            return elementwise(lambda o, x, y: ufunc(x, y, out=o), np.empty(big.shape, dt), a, b)
        return ufunc(a, b)

    fwd.__name__ = fwd.__qualname__ = ufunc.__name__
    fwd.ufunc = ufunc  # type: ignore[attr-defined]
    return fwd


def where(cond: Any, a: Any, b: Any) -> Any:
    """``np.where(cond, a, b)``, cut across threads as :func:`threaded_ufunc`."""
    if type(cond) is _ND and cond.size >= _threads.PARALLEL_MIN and get_num_threads() > 1 \
            and splits_cleanly(cond, a, b):
        dt = np.where(*[x.reshape(-1)[:0] if type(x) is _ND and x.ndim else x for x in (cond, a, b)]).dtype
        return elementwise(_where_into, np.empty(cond.shape, dt), cond, a, b)
    return np.where(cond, a, b)


def _where_into(out: np.ndarray, cond: Any, a: Any, b: Any) -> None:
    out[...] = np.where(cond, a, b)


# ---------------------------------------------------------------- relu and its backward
_BLOCK = 1 << 16  # elements of zeros held per float dtype for relu (256 KiB in float32)
_SMALL = 1 << 12  # below this, the block loop's Python costs more than it saves
_zeros: dict[np.dtype, np.ndarray] = {}


def relu(x: np.ndarray) -> np.ndarray:
    """``np.maximum(0, x)`` in ``x``'s dtype: torch's relu, where NaN stays NaN and -0.0 stays
    -0.0 (numpy's maximum returns its first operand when the two compare equal, so zero goes
    first; ``np.maximum(x, 0)`` would turn -0.0 into +0.0).

    numpy's maximum against a broadcast scalar takes a loop ~2.5x slower than against an array
    (AVX-512 numpy 2.4, float32), so a float array is compared with a block of zeros, block by
    block: the same comparison per element.

    >>> relu(np.array([-1.0, 2.0]))
    array([0., 2.])
    """
    dt = x.dtype
    if dt.kind != "f":
        return np.maximum(0, x).astype(dt, copy=False)
    if not _keeps_sign(dt):
        return _relu_bits(x)
    if x.size < _SMALL or not x.flags.c_contiguous:
        return np.maximum(np.zeros((), dt), x)
    return elementwise(_relu_into, np.empty_like(x), x)


def relu_into(out: np.ndarray, x: np.ndarray) -> None:
    """``out[...] = relu(x)``, the same bits, with no temporary where :func:`relu` makes none
    (``out`` may be ``x``; same shape and dtype).

    >>> a = np.array([-1.0, 2.0]); relu_into(a, a); a
    array([0., 2.])
    """
    if x.dtype.kind == "f" and _keeps_sign(x.dtype) and x.flags.c_contiguous and out.flags.c_contiguous:
        _relu_into(out, x)
    else:
        out[...] = relu(x)


_SIGNS: dict[np.dtype, bool] = {}


def _keeps_sign(dt: np.dtype) -> bool:
    """Whether numpy's maximum(0, -0.0) is -0.0 for ``dt`` in every loop relu calls. Its SIMD
    loops return the second operand of an equal pair on x86 (AVX2, AVX-512), but its scalar loop
    and some platforms' instructions (ARM's fmax) give +0.0: float16 here, for one. Probed once
    per dtype, in the forms relu uses."""
    ok = _SIGNS.get(dt)
    if ok is None:
        neg = np.full(2 * _SMALL + 3, -0.0, dt)
        zero = np.zeros((), dt)
        got = [np.maximum(zero, neg[:n]) for n in (1, 3, 17, 67)] + [np.maximum(zero, neg[::2])]
        block = np.empty_like(neg)
        np.maximum(np.zeros(neg.size, dt), neg, out=block)
        ok = _SIGNS[dt] = all(np.signbit(a).all() for a in got + [block])
    return ok


def _relu_bits(x: np.ndarray) -> np.ndarray:
    # x AND a mask of all ones (keep: x >= 0, -0.0 or NaN) or zeros (x < 0 gives +0.0)
    it = _BITS[x.dtype.itemsize]
    xc = x if x.flags.c_contiguous else x.copy()
    drop = np.less(xc, 0, out=np.empty(xc.shape, bool))
    keep = np.subtract(drop.view(np.int8), np.int8(1), out=np.empty(xc.shape, it), casting="unsafe")
    out = np.empty(xc.shape, x.dtype)
    np.bitwise_and(xc.view(it), keep, out=out.view(it))
    return out


def _relu_into(out: np.ndarray, x: np.ndarray) -> None:
    z = _zeros.get(x.dtype)
    if z is None:
        z = _zeros[x.dtype] = np.zeros(_BLOCK, x.dtype)
    out, x = out.reshape(-1), x.reshape(-1)
    n = x.size
    if n <= _BLOCK:
        np.maximum(z[:n], x, out=out)
        return
    for lo in range(0, n, _BLOCK):
        hi = min(n, lo + _BLOCK)
        np.maximum(z[:hi - lo], x[lo:hi], out=out[lo:hi])


def relu_backward(g: np.ndarray, y: np.ndarray) -> np.ndarray:
    """relu's VJP, torch's threshold_backward: where the result ``y`` is <= 0 the gradient is
    +0 whatever ``g`` holds (inf and NaN included), else ``g`` (a NaN result passes ``g``).

    >>> relu_backward(np.array([3.0, np.inf]), np.array([1.0, 0.0]))
    array([3., 0.])
    """
    if type(g) is _ND and g.dtype.kind == "f" and g.dtype.itemsize in _BITS:
        if g.size >= _SMALL and splits_cleanly(g, y):
            return elementwise(_relu_backward_into, np.empty_like(g), g, y)
        out = np.empty(np.broadcast_shapes(g.shape, y.shape), g.dtype)
        _relu_backward_into(out, np.broadcast_to(g, out.shape), y)
        return out
    return np.where(y <= 0, np.zeros((), g.dtype), g)


_BITS = {2: np.int16, 4: np.int32, 8: np.int64}


def _relu_backward_into(out: np.ndarray, g: np.ndarray, y: np.ndarray) -> None:
    # g AND a mask of all ones (keep) or zeros (drop): torch's "y <= 0 ? 0 : g" exactly, as
    # fast as g * mask (which makes NaN of inf * 0 and -0 of -g * 0) and 6x faster than
    # np.where, whose masked loops stall on a mask of random bits
    it = _BITS[out.dtype.itemsize]
    drop = np.less_equal(y, 0)
    mask = np.subtract(drop.view(np.int8), np.int8(1), out=np.empty(drop.shape, it), casting="unsafe")
    np.bitwise_and(g.view(it), mask, out=out.view(it))


# ---------------------------------------------------------------- sums over trailing rows
SUM_ROWS_MIN = 1 << 16  # elements: below, einsum's set-up costs more than the sum
SUM_ROW_MAX = 4096  # elements per row: einsum adds a row in a few running sums, in order


def sum_plan(shape: tuple[int, ...], dtype: np.dtype, dims: tuple[int, ...] | None,
             keepdim: bool) -> Callable[..., Any] | None:
    """A faster sum of a C-contiguous float array of ``shape`` over ``dims``, or None where
    ``np.sum`` serves.

    It applies where ``dims`` are a trailing block of axes (the last axis at least) and at most
    one more block before it, with kept axes between them (and maybe before), as the bias
    gradient of a convolution (sum over (0, 2, 3) of NCHW; under vmap (1, 3, 4)). ``np.sum``
    walks such a reduction with a scalar loop; here each row of the trailing block (at most
    :data:`SUM_ROW_MAX` elements) is added up by ``np.einsum``'s SIMD loop, and the row sums over
    the other block by ``np.add.reduce``, in order: ~3-5x faster, with an error of the same order
    as ``np.sum``'s (both add rows of at most a few thousand elements in a handful of running
    sums, then the rows one after another). Kept leading axes (a vmap batch) only repeat the same
    row sums, so a batched sum is bitwise the per-sample sums.

    >>> x = np.ones((32, 16, 32, 32), np.float32)
    >>> sum_plan(x.shape, x.dtype, (0, 2, 3), False)(x)[0]
    np.float32(32768.0)
    """
    if dims is None or dtype.kind != "f" or dtype.itemsize < 4 or len(set(dims)) != len(dims):
        return None
    nd = len(shape)
    red = sorted(dims)
    if not nd or red[0] < 0 or red[-1] != nd - 1 or len(red) == nd:
        return None
    first = nd - 1  # the trailing block of reduced axes: [first, nd)
    while first - 1 in dims:
        first -= 1
    other = red[:len(red) - (nd - first)]  # the rest must be one block [a0, a1)
    a0, a1 = (other[0], other[-1] + 1) if other else (first, first)
    if other != list(range(a0, a1)):
        return None  # reduced axes around kept ones more than once
    size = b = a = c = k = 1
    for i, s in enumerate(shape):
        size *= s
        if i < a0:
            b *= s
        elif i < a1:
            a *= s
        elif i < first:
            c *= s
        else:
            k *= s
    if size < SUM_ROWS_MIN or k > SUM_ROW_MAX:
        return None
    all_dims, keep = tuple(dims), keepdim
    out_shape = tuple(1 if i in dims else s for i, s in enumerate(shape)) if keepdim else \
        shape[:a0] + shape[a1:first]

    def run(x: np.ndarray, dims: Any = None, keepdim: Any = None) -> Any:  # (called as _sum is)
        if type(x) is not _ND or not x.flags.c_contiguous or x.shape != shape or x.dtype != dtype:
            return np.add.reduce(x, all_dims, None, None, keep)
        rows = np.einsum("back->bac", x.reshape(b, a, c, k))
        return (np.add.reduce(rows, 1) if a > 1 else rows).reshape(out_shape)

    return run


_plans: dict[tuple, Callable | None] = {}


def sum_fast(x: np.ndarray, dims: tuple[int, ...] | None, keepdim: bool) -> Any:
    """``np.sum(x, dims, keepdims=keepdim)``, through :func:`sum_plan` where one applies."""
    if type(x) is _ND and x.size >= SUM_ROWS_MIN and x.flags.c_contiguous and type(dims) is tuple:
        key = (x.shape, x.dtype, dims, keepdim)
        plan = _plans.get(key, False)
        if plan is False:
            if len(_plans) > 256:
                _plans.clear()
            plan = _plans[key] = sum_plan(*key)
        if plan is not None:
            return plan(x)
    return np.sum(x, axis=dims, keepdims=keepdim)
