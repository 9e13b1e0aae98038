"""Convolutions (1-, 2- and 3-d, plain and transposed) and unfold/fold, as im2col + GEMM.

Three primitives do all the work: ``_conv_gemm`` (the convolution, padding and bias included),
``_conv_wgrad`` (its weight gradient) and ``_conv_xgrad`` (its input gradient, col2im of
``W^T g``, which is also the transposed convolution). Each one's VJP is two of the others, in
engine ops, so every derivative, double backward included, goes through them. Backward
recomputes the columns instead of saving them (K times the input's memory).

Layout (see :class:`_Layout`). The batch is cut into chunks of whole samples, about
``_CHUNK_BYTES`` (1 MB) of columns each. With unit strides a chunk is one tall zero-padded image
per channel, its samples one after the other, rows and samples sharing their padding where the
kernel reaches over it; its columns are every position of that image. A kernel offset's columns
are then the image shifted by a fixed start, so im2col is one flat copy and col2im one flat add
per kernel offset (and group), the rows ordered (offset, channel). The GEMMs compute junk
positions too (a 3x3 kernel with padding 1 on a 16x16 sample: 17x17 positions, 256 valid), which
the crop drops and the gradients zero. Measured with ``python -m bench.conv --threads 1`` (the
bench's CNN shapes: batch 32, 3->16 on 32x32 and 16->32 on 16x16, 3x3, padding 1; process CPU
time, medians, calls interleaved with the previous code's) on a loaded 2-core AVX-512 EPYC with
OpenBLAS 0.3.31, against the previous layout (each sample's columns a separate run of
out_rows x padded_row positions, 16x18), one step's primitives (two forwards, two weight
gradients, one input gradient) went from 6.83-7.0 to 6.26-6.58 ms (back to back, each
primitive alone: 6.6 -> 6.1 ms):

- col2im: numpy runs an add over non-contiguous 2-/3-d operands through its buffered loop, ~4x
  slower per element than over flat ones (a (16, 1296) strided add 8.5 us, flat 2.2 us); the
  16->32 input gradient went from 1.81 to 1.41 ms. Forwards and weight gradients are as fast as
  before (the extra junk row costs what the shared padding column saves).
- chunk size: a chunk costs a few dozen numpy calls (~25 us), but its columns and products
  should stay in a core's L2 (1 MB): with calls interleaved as in a step, 1 MB chunks (4 for
  the 3->16 layer, 6 for the 16->32 one) ran the 3->16 forward in 0.86-0.89 ms against
  1.05-1.23 with 2 MB ones, the 16->32 layer alike; back to back 2 MB ones were ~10 % faster.
- GEMM shape: where a group's rows (C/groups * K) are fewer than ``_SPLIT_ROWS`` (64), each
  sample is its own GEMM: for the 3->16 layer (27 rows) OpenBLAS takes 0.32 ms per batch as
  (16, 27) @ (27, ~1100) per sample against 0.44 as one GEMM per 8-sample chunk, and 0.35
  against 0.71 for the weight gradient (a long inner dimension); with 144 rows one GEMM per
  chunk is 3-8 % faster than one per sample.
- threads: the chunks are fixed by the shapes alone (a weight gradient sums per-chunk
  products, whose rounding depends on where chunks begin), their count made even and the
  samples spread evenly over them, so two threads get equal halves (the previous 5 chunks of
  the 16->32 layer ran 3 + 2); bias is added in the threads, on a chunk still in cache.

Other strides gather the window view, prod(out) columns per sample and no junk.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..._autograd import multilinear_jvp, primitive
from ..._meta import BLAS_FLOP, _bound, _fresh, _passes
from ..._threads import run_parts
from ...ops._registry import as_tensor_arg, op
from ...ops.reduction import sum as sum_
from ...ops.shape import getitem, reshape, squeeze, unsqueeze
from ...tensor import Tensor
from ._windows import _fold_windows, _windows, fold_windows, ntuple, pad_constant, size_str, windows

_DIM_NAMES = {1: ("width",), 2: ("height", "width"), 3: ("depth", "height", "width")}


# ---------------------------------------------------------------- checks shared by the convolutions
def _check_input(x: Tensor, nd: int, name: str) -> None:
    if x._data.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"Expected {nd + 1}D (unbatched) or {nd + 2}D (batched) input to {name}, "
                           f"but got input of size: {size_str(x._data.shape)}")


def _check_weight(w: Tensor, nd: int, stride: object) -> None:
    if w._data.ndim != nd + 2:
        s = list(ntuple(stride, nd, "stride"))
        raise RuntimeError(f"expected stride to be a single integer value or a list of "
                           f"{w._data.ndim - 2} values to match the convolution dimensions, but got "
                           f"stride={s}")


def _batched_input(x: Tensor, w: Tensor, b: Tensor | None, nd: int, groups: int
                   ) -> tuple[Tensor, bool, int, int]:
    """Checks shared by conv and conv_transpose; ``x`` with a batch dim, whether it had none,
    and the weight's first two sizes."""
    _check_types(x, w, b)
    unbatched = x._data.ndim == nd + 1
    if unbatched:
        x = unsqueeze(x, 0)
    w0, w1 = w._data.shape[:2]
    if w0 % groups:
        raise RuntimeError(f"Given groups={groups}, expected weight to be divisible by {groups} at "
                           f"dimension 0, but got weight of size [{size_str(w._data.shape)}] instead")
    return x, unbatched, w0, w1


def _check_types(x: Tensor, w: Tensor, b: Tensor | None) -> None:
    tn = {"float32": "Float", "float64": "Double", "int64": "Long", "int32": "Int"}
    if x._data.dtype != w._data.dtype:
        xt, wt = (tn.get(t._data.dtype.name, t._data.dtype.name) for t in (x, w))
        raise RuntimeError(f"Input type (torch.{xt}Tensor) and weight type (torch.{wt}Tensor) should "
                           "be the same or input should be a MKLDNN tensor and weight is a dense "
                           "tensor")
    if b is not None and b._data.dtype != x._data.dtype:
        raise RuntimeError(f"Input type ({_c_name(x)}) and bias type ({_c_name(b)}) should be the "
                           "same")


def _c_name(t: Tensor) -> str:
    return {"float32": "float", "float64": "double", "int64": "long int"}.get(t._data.dtype.name,
                                                                                t._data.dtype.name)


def _check_params(stride: tuple, dilation: tuple, groups: int) -> None:
    if any(s <= 0 for s in stride):
        raise RuntimeError("non-positive stride is not supported")
    if any(d <= 0 for d in dilation):
        raise RuntimeError("non-positive dilation is not supported")
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")


def _check_bias(b: Tensor | None, w: Tensor, n_out: int, transposed: bool) -> None:
    if b is not None and (b._data.ndim != 1 or b._data.shape[0] != n_out):
        pre = "Given transposed=1, weight" if transposed else "Given weight"
        raise RuntimeError(f"{pre} of size {size_str(w._data.shape)}, expected bias to be "
                           f"1-dimensional with {n_out} elements, but got bias of size "
                           f"{size_str(b._data.shape)} instead")


def _sizes(t: tuple) -> str:
    return " x ".join(str(v) for v in t)


# ---------------------------------------------------------------- the convolution core
# Three primitives, each the others' adjoint: for T(x, w, g) = <g, conv(x, w)>, conv_wgrad is
# dT/dw and conv_xgrad is dT/dx, and all three are bilinear, so each one's VJP is two of the
# others (written in engine ops: double backward and beyond come free). See the module
# docstring for the layout of their columns and how the batch is cut into chunks.
_CHUNK_BYTES = 1 << 20
_SPLIT_ROWS = 64


def _padded(size: tuple, pads: tuple) -> tuple:
    return tuple(s + a + b for s, (a, b) in zip(size, pads))


def _view(a: np.ndarray, shape: tuple) -> np.ndarray:
    """``a`` reshaped without a copy (results are written through these views)."""
    return a.reshape(shape, copy=False)


def _first(buf: np.ndarray, shape: tuple) -> np.ndarray:
    """The first ``prod(shape)`` elements of the flat buffer ``buf``, contiguous, as ``shape``."""
    return buf[:math.prod(shape)].reshape(shape)


def _by_sample(a: np.ndarray, m: int) -> np.ndarray:
    """A chunk's (G, R, m * pitch) columns as (m, G, R, pitch): one GEMM per sample."""
    g, r, s = a.shape
    return _view(a, (g, r, m, s // m)).transpose(2, 0, 1, 3)


def _bounds(n: int, step: int) -> list[tuple[int, int]]:
    """``(start, samples)`` of the chunks of a batch of ``n``, at most ``step`` samples each: an
    even number of chunks (two threads take equal halves), the longer ones spread evenly among
    the shorter (three threads stay near-even too)."""
    k = -(-n // max(step, 1))
    if 1 < k < n and k % 2:
        k += 1
    q, r = divmod(n, max(k, 1))
    out, s0 = [], 0
    for i in range(k):
        m = q + (i + 1) * r // k - i * r // k
        out.append((s0, m))
        s0 += m
    return out


class _Layout:
    """The columns of a chunk of m samples of an input with ``c`` channels in ``groups``, for
    spatial ``size`` and ``out`` windows: a (groups, K, C/groups, row) buffer (kernel offset
    before channel), of which each row's first ``m * pitch`` entries are the columns.

    With unit strides ("pitched") a chunk is one tall image per channel, its m zero-padded
    samples one after the other in a row, each a ``grid`` block of ``pitch`` entries; every column
    is a position of that image, the valid windows (``crop`` of a block) plus junk positions
    past each row's last window and between two samples (the GEMM computes them, the output
    crop drops them, the gradients zero them, so they never reach a result). A kernel offset's
    columns are then the image shifted by a fixed ``start``: for all the channels of a group at
    once, one flat copy (im2col) or one flat add (col2im); the ``reach`` past a row's columns
    takes what a shift carries over. Other strides gather the window view, ``pitch`` = prod(out)
    columns per sample and no junk.
    """

    def __init__(self, c: int, groups: int, size: tuple, pads: tuple, kernel: tuple, stride: tuple,
                 dilation: tuple, out: tuple) -> None:
        self.c, self.groups, self.cg = c, groups, c // groups
        self.size, self.pads, self.kernel, self.stride, self.dilation, self.out = \
            size, pads, kernel, stride, dilation, out
        self.padded = _padded(size, pads)
        self.kk = math.prod(kernel)
        self.rows = self.kk * self.cg  # a group's GEMM rows
        self.pitched = all(s == 1 for s in stride)
        self.junk = []
        self.crop = (Ellipsis,) + tuple(slice(0, o) for o in out)
        self.inner = (Ellipsis,) + tuple(slice(a, a + s) for s, (a, _) in zip(size, pads))
        if self.pitched:
            # Each dim of a sample's block: ``top`` zero entries, then its own. Where a window's
            # far padding fits in its reach (hi <= (k-1) * d, as with padding k // 2), the next
            # row's (or sample's) zeros serve as that padding: fewer junk positions.
            grid, crop, inner = [], [], []
            for (lo, hi), s, k, d, o in zip(pads, size, kernel, dilation, out):
                top, bottom = (max(lo, hi), 0) if hi <= (k - 1) * d else (lo, hi)
                grid.append(top + s + bottom)
                crop.append(slice(top - lo, top - lo + o))  # the windows
                inner.append(slice(top, top + s))           # the sample's own entries
            self.grid = tuple(grid)
            self.crop, self.inner = (Ellipsis,) + tuple(crop), (Ellipsis,) + tuple(inner)
            self.pitch = math.prod(grid)
            pitch = [math.prod(grid[j + 1:]) for j in range(len(kernel))]
            self.starts = [sum(o * d * p for o, d, p in zip(offs, dilation, pitch))
                           for offs in itertools.product(*(range(k) for k in kernel))]
            self.reach = self.starts[-1]
            for j, (key, full) in enumerate(zip(crop, grid)):
                after = (slice(None),) * (len(out) - 1 - j)
                if key.start > 0:
                    self.junk.append((Ellipsis, slice(0, key.start)) + after)
                if key.stop < full:
                    self.junk.append((Ellipsis, slice(key.stop, None)) + after)
        else:
            self.pitch, self.reach, self.grid = math.prod(out), 0, out

    def step(self, n: int, c: int, dt: np.dtype) -> int:
        """Samples per chunk at most (``c`` input channels)."""
        per = max(c * self.kk * self.pitch * dt.itemsize, 1)
        return max(1, min(n, _CHUNK_BYTES // per))

    def bounds(self, n: int, dt: np.dtype) -> list[tuple[int, int]]:
        return _bounds(n, self.step(n, self.c, dt))

    def row(self, run: Sequence[tuple[int, int]]) -> int:
        """The row length of the buffers of a thread's ``run`` of chunks."""
        return -(-(max(m for _, m in run) * self.pitch + self.reach) // 16) * 16

    def grid_view(self, buf: np.ndarray, m: int) -> np.ndarray:
        """The (rows, m, *grid) view of the columns of the (..., row) buffer ``buf``."""
        flat = _view(buf, (-1, buf.shape[-1]))
        return _view(flat[:, :m * self.pitch], (flat.shape[0], m) + self.grid)

    def gemm_view(self, buf: np.ndarray, m: int) -> np.ndarray:
        """The (groups, rows, m * pitch) columns of the (groups, ..., row) buffer ``buf``."""
        return _view(buf, (self.groups, -1, buf.shape[-1]))[:, :, :m * self.pitch]

    def junk_matters(self, factor: np.ndarray) -> bool:
        """Whether the junk positions must be zeroed: ``factor``, the operand that multiplies the
        zero gradient there, is not all finite (0 * inf is NaN)."""
        return bool(self.junk) and factor.dtype.kind in "fc" and not np.isfinite(factor).all()

    def zero_junk(self, buf: np.ndarray, m: int) -> None:
        v = self.grid_view(buf, m)
        for key in self.junk:
            v[key] = 0

    def columns(self, x: np.ndarray, dt: np.dtype, run: Sequence[tuple[int, int]]):
        """Yield ``(start, m, buf)`` over the chunks ``run`` of ``x`` (N, C, *size): ``buf``
        (groups, K, C/groups, row), reused by every chunk, holds the chunk's zero-padded windows."""
        c, g, cg, kk, row = self.c, self.groups, self.cg, self.kk, self.row(run)
        m0 = max(m for _, m in run)
        buf = np.empty((g, kk, cg, row), dt)
        padded = any(a or b for a, b in self.pads)
        if self.pitched:  # the borders (and the reach) stay zero, only the interior is rewritten
            flat = np.zeros(c * row + self.reach, dt)
            img = _view(_view(flat[:c * row], (c, row))[:, :m0 * self.pitch],
                        (c, m0) + self.grid)[self.inner]
            n = cg * row  # a kernel offset's columns for a group: its image shifted by a start
            shifts = [(_view(buf[gi, t], (n,)), flat[gi * n + st:(gi + 1) * n + st])
                      for gi in range(g) for t, st in enumerate(self.starts)]
        elif padded:
            pbuf = np.zeros((m0, c) + self.padded, dt)
            img = pbuf[self.inner]
        nd = len(self.kernel)
        for s0, m in run:
            xc = x[s0:s0 + m]
            if self.pitched:
                img[:, :m] = xc.swapaxes(0, 1)
                for dst, src in shifts:
                    np.copyto(dst, src)
            else:
                if padded:
                    img[:m] = xc
                    xc = pbuf[:m]
                win = _windows.fwd(xc, self.kernel, self.stride, self.dilation, self.out)
                win = win.reshape((m, g, cg) + win.shape[2:])  # (m, G, C/G, *kernel, *out)
                dst = _view(self.grid_view(buf, m), (g,) + self.kernel + (cg, m) + self.out)
                np.copyto(dst, win.transpose((1,) + tuple(range(3, 3 + nd)) + (2, 0) +
                                             tuple(range(3 + nd, 3 + 2 * nd))))
            yield s0, m, buf

    def spread(self, gr: np.ndarray, dt: np.dtype, run: Sequence[tuple[int, int]]):
        """Yield ``(start, m, buf)`` over the chunks ``run`` of ``gr`` (N, O, *out): ``buf`` (O,
        row) holds the chunk laid out as columns, zero at the junk positions."""
        buf = np.zeros((gr.shape[1], self.row(run)), dt)  # junk sits at the same offsets always
        views: dict[int, np.ndarray] = {}
        for s0, m in run:
            if m not in views:
                views[m] = self.grid_view(buf, m)[self.crop]
            views[m][...] = gr[s0:s0 + m].swapaxes(0, 1)
            yield s0, m, buf


@functools.lru_cache(maxsize=256)
def _cached_layout(*key) -> _Layout:
    return _Layout(*key)


def _layout(c: int, groups: int, size: Sequence[int], pads: Sequence, kernel: Sequence[int],
            stride: Sequence[int], dilation: Sequence[int], out: Sequence[int]) -> _Layout:
    """The (cached: the same shapes come back every step) layout of a convolution."""
    t = tuple
    return _cached_layout(c, groups, t(size), t(t(p) for p in pads), t(kernel), t(stride),
                          t(dilation), t(out))


def _chunked(body, lay: _Layout, n: int, dt: np.dtype) -> list:
    """``body(run)`` over runs of the chunks of a batch of ``n``, one run per engine thread
    (:func:`engine._threads.run_parts`, each with its own buffers); nothing for an empty batch."""
    bounds = lay.bounds(n, dt)
    return run_parts(body, bounds) if bounds else []


def _operands(a: np.ndarray, r: np.ndarray, m: int, split: bool) -> tuple:
    """The GEMM operand and result views of a chunk of ``m`` samples: one GEMM per sample
    where ``split``."""
    return (_by_sample(a, m), _by_sample(r, m)) if split and m > 1 else (a, r)


@primitive(save=(0, 1))
def _conv_gemm(x, w, b, pads, kernel, stride, dilation, out, groups):
    """``x`` (N, C, *sp), ``w`` (O, C/groups, *kernel), bias ``b`` (O,) or None -> (N, O, *out),
    ``x`` zero-padded by ``pads``: im2col + GEMM, a chunk of the batch at a time."""
    y = np.empty((x.shape[0], w.shape[0]) + tuple(out), np.result_type(x, w))
    conv_into(y, x, w, b, pads, kernel, stride, dilation, out, groups)
    return y


def conv_into(y, x, w, b, pads, kernel, stride, dilation, out, groups, then=None) -> None:
    """:func:`_conv_gemm`'s work, into ``y``; ``then(start, stop)``, where given, runs in each
    engine thread once its samples ``start:stop`` of ``y`` are written, while they are still in
    that core's cache (``_fusions`` does relu and max_pool there)."""
    n, c = x.shape[:2]
    o = w.shape[0]
    dt = np.result_type(x, w)
    lay = _layout(c, groups, x.shape[2:], pads, kernel, stride, dilation, out)
    og = o // groups
    split = lay.rows < _SPLIT_ROWS
    # rows in the columns' order, (offset, channel)
    wm = w.reshape(groups, og, lay.cg, lay.kk).swapaxes(2, 3).reshape(groups, og, lay.rows)
    wm = wm.astype(dt, copy=False)
    bias = None if b is None else b.reshape(groups, og, 1)

    def convolve(run: Sequence[tuple[int, int]]) -> None:
        res = np.empty(o * max(m for _, m in run) * lay.pitch, dt)
        views: dict[int, tuple] = {}  # per chunk length: the buffers are the same every chunk
        for s0, m, buf in lay.columns(x, dt, run):
            if m not in views:
                a = lay.gemm_view(buf, m)
                r = _first(res, (groups, og, a.shape[2]))
                views[m] = _operands(a, r, m, split) + (r, lay.grid_view(r, m)[lay.crop].swapaxes(0, 1))
            a, rr, r, valid = views[m]
            np.matmul(wm, a, out=rr)
            if bias is not None:  # here, in the threads, on a chunk still in cache
                r += bias
            y[s0:s0 + m] = valid

    def chunks(run: Sequence[tuple[int, int]]) -> None:
        convolve(run)
        if then is not None:  # (once the chunks' buffers are freed: peak memory as eager's)
            then(run[0][0], run[-1][0] + run[-1][1])

    _chunked(chunks, lay, n, dt)


@primitive(save=(0, 1))
def _conv_wgrad(x, g, pads, kernel, stride, dilation, groups):
    """The weight gradient of :func:`_conv_gemm` for output gradient ``g`` (N, O, *out):
    ``sum over the batch of g @ im2col(x)^T``, shape (O, C/groups, *kernel)."""
    wg = _WGrad(x, g, pads, kernel, stride, dilation, groups)

    def chunks(run: Sequence[tuple[int, int]]) -> list:
        chunk, parts = wg.run(run)
        for _, m, gbuf in wg.lay.spread(g, wg.dt, run):
            chunk(m, gbuf)
        return parts

    return wg.total(_chunked(chunks, wg.lay, x.shape[0], wg.dt))


class _WGrad:
    """:func:`_conv_wgrad`'s work, a chunk at a time: ``run(chunks)`` gives a function of a
    chunk's spread gradient (``_Layout.spread``) and the list its products go to; ``total`` sums
    every run's products in chunk order (whatever the threads) into the weight gradient."""

    def __init__(self, x, g, pads, kernel, stride, dilation, groups) -> None:
        c = x.shape[1]
        self.x, self.o, self.groups, self.kernel = x, g.shape[1], groups, tuple(kernel)
        self.dt = np.result_type(x, g)
        self.lay = _layout(c, groups, x.shape[2:], pads, kernel, stride, dilation, g.shape[2:])
        self.split = self.lay.rows < _SPLIT_ROWS
        self.junk = self.lay.junk_matters(x)

    def run(self, run: Sequence[tuple[int, int]]) -> tuple:
        lay, split, junk = self.lay, self.split, self.junk
        cols = lay.columns(self.x, self.dt, run)
        parts: list = []  # one product per chunk
        views: dict[int, tuple] = {}

        def chunk(m: int, gbuf: np.ndarray) -> None:
            _, _, buf = next(cols)
            if junk:
                lay.zero_junk(buf, m)
            if m not in views:
                a, gt = _operands(lay.gemm_view(buf, m), lay.gemm_view(gbuf, m), m, split)
                # computed transposed, cols (K*C, span) @ g^T (span, O): ~1.4x faster than
                # g @ cols^T here
                views[m] = a, gt.swapaxes(-1, -2)
            p = np.matmul(*views[m])
            parts.append(p.sum(0) if p.ndim == 4 else p)  # (summing the samples' GEMMs)
        return chunk, parts

    def total(self, runs: list) -> np.ndarray:
        lay, og = self.lay, self.o // self.groups
        gwt = np.zeros((self.groups, lay.rows, og), self.dt)
        for parts in runs:
            for p in parts:
                gwt += p
        gw = gwt.reshape(self.groups, lay.kk, lay.cg, og).transpose(0, 3, 2, 1)
        return np.ascontiguousarray(gw).reshape((self.o, lay.cg) + self.kernel)


@primitive(save=(0, 1))
def _conv_xgrad(g, w, pads, kernel, stride, dilation, size, groups):
    """The input gradient of :func:`_conv_gemm` (and the transposed convolution): col2im of
    ``W^T g``, cropped to the unpadded ``size``; shape (N, C, *size)."""
    xg = _XGrad(g, w, pads, kernel, stride, dilation, size, groups)

    def chunks(run: Sequence[tuple[int, int]]) -> None:
        chunk = xg.run(run)
        for s0, m, gbuf in xg.lay.spread(g, xg.dt, run):
            chunk(s0, m, gbuf)

    _chunked(chunks, xg.lay, g.shape[0], xg.dt)
    return xg.gx


class _XGrad:
    """:func:`_conv_xgrad`'s work, a chunk at a time: ``run(chunks)`` gives a function of a
    chunk's spread gradient that writes the chunk's samples of ``gx``."""

    def __init__(self, g, w, pads, kernel, stride, dilation, size, groups) -> None:
        n, o = g.shape[:2]
        cg = w.shape[1]
        self.c, self.cg, self.groups = cg * groups, cg, groups
        self.kernel, self.stride, self.dilation = tuple(kernel), stride, dilation
        og = o // groups
        self.dt = dt = np.result_type(g, w)
        self.lay = lay = _layout(self.c, groups, size, pads, kernel, stride, dilation, g.shape[2:])
        self.split = lay.rows < _SPLIT_ROWS
        self.gx = np.empty((n, self.c) + tuple(size), dt)
        wt = w.reshape(groups, og, cg, lay.kk).transpose(0, 3, 2, 1).reshape(groups, lay.rows, og)
        self.wt = wt.astype(dt, copy=False)
        self.junk = lay.junk_matters(w)

    def run(self, run: Sequence[tuple[int, int]]):
        lay, groups, cg, c, dt, split, junk, wt, gx = (self.lay, self.groups, self.cg, self.c, self.dt,
                                                       self.split, self.junk, self.wt, self.gx)
        kernel, nd = self.kernel, len(self.kernel)
        row = lay.row(run)
        buf = np.empty((groups, lay.kk, cg, row), dt)
        if lay.pitched:  # col2im: a group's image is the sum of its offsets' columns, shifted
            acc = np.empty((c, row), dt)
            flat, k = _view(acc, (-1,)), cg * row
            shifted = [(flat[gi * k + st:(gi + 1) * k], _view(buf[gi, t], (k,))[:k - st])
                       for gi in range(groups) for t, st in enumerate(lay.starts)]
        views: dict[int, tuple] = {}

        def chunk(s0: int, m: int, gbuf: np.ndarray) -> None:
            if m not in views:
                img = lay.grid_view(acc, m)[lay.inner].swapaxes(0, 1) if lay.pitched else None
                views[m] = _operands(lay.gemm_view(gbuf, m), lay.gemm_view(buf, m), m, split) + (img,)
            a, r, img = views[m]
            np.matmul(wt, a, out=r)
            if lay.pitched:
                if junk:
                    lay.zero_junk(buf, m)
                buf[..., m * lay.pitch:] = 0  # carried over by the shifts: must add nothing
                for t, (dst, src) in enumerate(shifted):
                    if t % lay.kk == 0:  # starts[0] == 0: the first offset is copied
                        np.copyto(dst, src)
                    else:
                        np.add(dst, src, out=dst)
                gx[s0:s0 + m] = img
            else:
                cols = lay.grid_view(buf, m).reshape((groups,) + kernel + (cg, m) + lay.out)
                cols = cols.transpose((1 + nd + 1, 0, 1 + nd) + tuple(range(1, 1 + nd)) +
                                      tuple(range(3 + nd, 3 + 2 * nd))).reshape((m, c) + kernel + lay.out)
                gx[s0:s0 + m] = _fold_windows.fwd(cols, kernel, self.stride, self.dilation,
                                                  lay.padded)[lay.inner]
        return chunk


def conv_grads(x, g, w, pads, kernel, stride, dilation, groups, before=None) -> tuple:
    """``(_conv_xgrad(g, w, ..., size=x's), _conv_wgrad(x, g, ...))`` in one pass over the
    chunks: each chunk's gradient is spread into columns once for both products, and the two
    run in the same parallel region. The same bits as the two primitives (the same chunks and
    the same numpy calls on each). With ``w`` None, the weight gradient alone (``(None, gw)``).
    ``before(start, stop)``, where given, runs in each engine thread before its chunks, for the
    samples ``start:stop`` (``_fusions`` writes them into ``g`` there)."""
    wg = _WGrad(x, g, pads, kernel, stride, dilation, groups)
    xg = None if w is None else _XGrad(g, w, pads, kernel, stride, dilation, x.shape[2:], groups)

    def chunks(run: Sequence[tuple[int, int]]) -> list:
        if before is not None:
            before(run[0][0], run[-1][0] + run[-1][1])
        xchunk = None if xg is None else xg.run(run)
        wchunk, parts = wg.run(run)
        for s0, m, gbuf in wg.lay.spread(g, wg.dt, run):
            if xchunk is not None:
                xchunk(s0, m, gbuf)
            wchunk(m, gbuf)
        return parts

    gw = wg.total(_chunked(chunks, wg.lay, g.shape[0], wg.dt))
    return (None if xg is None else xg.gx), gw


def _shared(pads, kernel, stride, dilation, groups) -> dict:
    return {"pads": pads, "kernel": kernel, "stride": stride, "dilation": dilation, "groups": groups}


@_conv_gemm.defvjp
def _conv_gemm_vjp(ctx, g, x, w, pads, kernel, stride, dilation, out, groups):
    p = _shared(pads, kernel, stride, dilation, groups)
    e = ctx.edges
    gx = _conv_xgrad(g, w, size=tuple(x._data.shape[2:]), **p) if e[0] is not None else None
    gw = _conv_wgrad(x, g, **p) if e[1] is not None else None
    gb = sum_(g, (0,) + tuple(range(2, g._data.ndim))) if e[2] is not None else None
    return gx, gw, gb


def _fold_batch(prim, arrays, flags, **params):
    # A batch of images is more images: with only the first operand batched, vmap's batch folds
    # into the sample dim N and back. Batched weights run once per batch element.
    if not flags[0] or any(flags[1:]):
        from ..._autograd import _loop_batch
        return _loop_batch(prim, arrays, flags, params)
    x = arrays[0]
    y = prim.fwd(x.reshape((-1,) + x.shape[2:]), *arrays[1:], **params)
    return y.reshape(x.shape[:2] + y.shape[1:])


_conv_gemm.defbatch(_fold_batch)


@_conv_gemm.defjvp
def _conv_gemm_jvp(ctx, ts, x, w, b, **p):
    # bilinear in (x, w), plus the bias' tangent along the channel dim
    tx, tw, tb = ts
    out = _conv_gemm(tx, w, None, **p) if tx is not None else None
    if tw is not None:
        term = _conv_gemm(x, tw, None, **p)
        out = term if out is None else out + term
    if tb is not None:
        term = reshape(tb, (-1,) + (1,) * len(p["out"]))
        out = term if out is None else out + term
    return out


def _conv_work(prim: Any, arrays: Sequence, params: dict, outs: tuple) -> float:
    """2 FLOPs per (output element, weight it multiplies); for the weight gradient, per
    (weight, position of the output gradient it sums over)."""
    a = _bound(prim, arrays, params)
    w, g = a.get("w"), a.get("g")
    if w is not None and g is None:     # conv_gemm: w is (out channels, in channels / groups, *kernel)
        n, per = outs[0].size, w.size // max(w.shape[0], 1)
    elif w is not None:                 # conv_xgrad: every output gradient meets w[:, ...]
        n, per = g.size, w.size // max(w.shape[0], 1)
    else:                               # conv_wgrad
        n, per = outs[0].size, g.size // max(g.shape[1], 1)
    return 2 * n * per * BLAS_FLOP + _passes(prim, arrays, params, outs)


@_conv_gemm.defshape(work=_conv_work)
def _conv_gemm_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    x, w = a["x"], a["w"]
    return _fresh((x.shape[0], w.shape[0]) + tuple(a["out"]), np.result_type(x.dtype, w.dtype))


@_conv_wgrad.defvjp
def _conv_wgrad_vjp(ctx, h, x, g, pads, kernel, stride, dilation, groups):
    p = _shared(pads, kernel, stride, dilation, groups)
    e = ctx.edges
    gx = _conv_xgrad(g, h, size=tuple(x._data.shape[2:]), **p) if e[0] is not None else None
    gg = _conv_gemm(x, h, None, out=tuple(g._data.shape[2:]), **p) if e[1] is not None else None
    return gx, gg


_conv_wgrad.defjvp(multilinear_jvp)


@_conv_wgrad.defshape(work=_conv_work)
def _conv_wgrad_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    x, g = a["x"], a["g"]
    return _fresh((g.shape[1], x.shape[1] // a["groups"]) + tuple(a["kernel"]),
                  np.result_type(x.dtype, g.dtype))


@_conv_xgrad.defvjp
def _conv_xgrad_vjp(ctx, z, g, w, pads, kernel, stride, dilation, size, groups):
    p = _shared(pads, kernel, stride, dilation, groups)
    e = ctx.edges
    gg = _conv_gemm(z, w, None, out=tuple(g._data.shape[2:]), **p) if e[0] is not None else None
    gw = _conv_wgrad(z, g, **p) if e[1] is not None else None
    return gg, gw


_conv_xgrad.defjvp(multilinear_jvp)
_conv_xgrad.defbatch(_fold_batch)


@_conv_xgrad.defshape(work=_conv_work)
def _conv_xgrad_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    g, w = a["g"], a["w"]
    return _fresh((g.shape[0], w.shape[1] * a["groups"]) + tuple(a["size"]),
                  np.result_type(g.dtype, w.dtype))


def _conv_core(x: Tensor, w: Tensor, b: Tensor | None, stride: tuple, pads: list, dilation: tuple,
               groups: int) -> Tensor:
    """Batched ``x`` (N, C, *sp), weight (O, C/groups, *k): the convolution, (N, O, *out)."""
    k = tuple(w._data.shape[2:])
    pads = tuple((int(a), int(bb)) for a, bb in pads)
    psp = _padded(x._data.shape[2:], pads)
    out = tuple((p - d * (kk - 1) - 1) // s + 1 for p, d, kk, s in zip(psp, dilation, k, stride))
    return _conv_gemm(x, w, b, out=out, **_shared(pads, k, tuple(stride), tuple(dilation), groups))


def _conv(input, weight, bias, stride, padding, dilation, groups, nd: int, name: str) -> Tensor:
    x, w = as_tensor_arg(input), as_tensor_arg(weight)
    b = as_tensor_arg(bias) if bias is not None else None
    _check_input(x, nd, name)
    _check_weight(w, nd, stride)
    stride = ntuple(stride, nd, "stride")
    dilation = ntuple(dilation, nd, "dilation")
    k = w._data.shape[2:]
    if isinstance(padding, str):
        if padding == "valid":
            pads = [(0, 0)] * nd
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise RuntimeError("padding='same' is not supported for strided convolutions")
            pads = []
            for d, kk in zip(dilation, k):
                total = d * (kk - 1)
                pads.append((total // 2, total - total // 2))
        else:
            raise RuntimeError(f"Invalid padding string: '{padding}'")
    else:
        p = ntuple(padding, nd, "padding")
        if any(v < 0 for v in p):
            raise RuntimeError("negative padding is not supported")
        pads = [(v, v) for v in p]
    _check_params(stride, dilation, groups)
    x, unbatched, o, cg = _batched_input(x, w, b, nd, groups)
    if x._data.shape[1] != cg * groups:
        raise RuntimeError(f"Given groups={groups}, weight of size {size_str(w._data.shape)}, expected "
                           f"input{size_str(x._data.shape)} to have {cg * groups} channels, but got "
                           f"{x._data.shape[1]} channels instead")
    _check_bias(b, w, o, False)
    padded = tuple(s + a + bb for s, (a, bb) in zip(x._data.shape[2:], pads))
    span = tuple(d * (kk - 1) + 1 for d, kk in zip(dilation, k))
    if any(p < sp for p, sp in zip(padded, span)):
        raise RuntimeError(f"Calculated padded input size per channel: ({_sizes(padded)}). Kernel "
                           f"size: ({_sizes(span)}). Kernel size can't be greater than actual input "
                           "size")
    y = _conv_core(x, w, b, stride, pads, dilation, groups)
    return squeeze(y, 0) if unbatched else y


@op(differentiable=("input", "weight", "bias"))
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-d convolution of ``input`` (N, C, L) with ``weight`` (O, C/groups, k).

    ``padding`` is an int, a 1-tuple, ``'valid'`` or ``'same'``.

    >>> F.conv1d(engine.ones(1, 2, 5), engine.ones(3, 2, 3)).shape
    torch.Size([1, 3, 3])
    """
    return _conv(input, weight, bias, stride, padding, dilation, groups, 1, "conv1d")


@op(differentiable=("input", "weight", "bias"))
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-d convolution of ``input`` (N, C, H, W) with ``weight`` (O, C/groups, kh, kw).

    ``padding`` is an int, a pair, ``'valid'`` or ``'same'`` (stride 1; extra padding goes on the
    right/bottom as in torch).

    >>> F.conv2d(engine.ones(1, 3, 5, 5), engine.ones(4, 3, 3, 3), padding=1).shape
    torch.Size([1, 4, 5, 5])
    """
    return _conv(input, weight, bias, stride, padding, dilation, groups, 2, "conv2d")


@op(differentiable=("input", "weight", "bias"))
def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """3-d convolution of ``input`` (N, C, D, H, W) with ``weight`` (O, C/groups, kd, kh, kw).

    >>> F.conv3d(engine.ones(1, 1, 3, 3, 3), engine.ones(2, 1, 2, 2, 2)).shape
    torch.Size([1, 2, 2, 2, 2])
    """
    return _conv(input, weight, bias, stride, padding, dilation, groups, 3, "conv3d")


# ---------------------------------------------------------------- transposed convolutions
def _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation,
                    nd: int, name: str) -> Tensor:
    x, w = as_tensor_arg(input), as_tensor_arg(weight)
    b = as_tensor_arg(bias) if bias is not None else None
    _check_input(x, nd, name)
    _check_weight(w, nd, stride)
    if isinstance(padding, str):
        raise TypeError(f"{name}(): argument 'padding' must be tuple of ints, not str")
    stride = ntuple(stride, nd, "stride")
    dilation = ntuple(dilation, nd, "dilation")
    pad = ntuple(padding, nd, "padding")
    opad = ntuple(output_padding, nd, "output_padding")
    _check_params(stride, dilation, groups)
    if any(v < 0 for v in pad):
        raise RuntimeError("negative padding is not supported")
    if any(v < 0 for v in opad):
        raise RuntimeError("negative output_padding is not supported")
    if any(op_ >= s and op_ >= d for op_, s, d in zip(opad, stride, dilation)):
        # torch lifts 1-d to 2-d (height 1) before this check, and words it per named dim
        names = _DIM_NAMES[max(nd, 2)]
        lift = (lambda t: (0,) + t) if nd == 1 else (lambda t: t)
        lift1 = (lambda t: (1,) + t) if nd == 1 else (lambda t: t)
        parts = [f"output_padding_{n}: {v}" for n, v in zip(names, lift(opad))]
        parts += [f"stride_{n}: {v}" for n, v in zip(names, lift1(stride))]
        parts += [f"dilation_{n}: {v}" for n, v in zip(names, lift1(dilation))]
        raise RuntimeError("output padding must be smaller than either stride or dilation, but got "
                           + " ".join(parts))
    x, unbatched, cin, og = _batched_input(x, w, b, nd, groups)
    if x._data.shape[1] != cin:
        raise RuntimeError(f"Given transposed=1, weight of size {size_str(w._data.shape)}, expected "
                           f"input{size_str(x._data.shape)} to have {cin} channels, but got "
                           f"{x._data.shape[1]} channels instead")
    o = og * groups
    _check_bias(b, w, o, True)
    k = w._data.shape[2:]
    sp = x._data.shape[2:]
    full = tuple((i - 1) * s + d * (kk - 1) + 1 + op_
                 for i, s, d, kk, op_ in zip(sp, stride, dilation, k, opad))
    out = tuple(f - 2 * p for f, p in zip(full, pad))
    if any(v <= 0 for v in out):
        raise RuntimeError(f"Given input size per channel: ({_sizes(sp)}). Calculated output size per "
                           f"channel: ({_sizes(out)}). Output size is too small")
    # the input gradient of the convolution with this weight: col2im of W^T x, cropped by pad
    y = _conv_xgrad(x, w, size=out, **_shared(tuple((p, p) for p in pad), tuple(k), tuple(stride),
                                               tuple(dilation), groups))
    if b is not None:
        y = y + reshape(b, (o,) + (1,) * nd)
    return squeeze(y, 0) if unbatched else y


@op(differentiable=("input", "weight", "bias"))
def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed 1-d convolution (the input gradient of conv1d); ``weight`` is (C, O/groups, k).

    >>> F.conv_transpose1d(engine.ones(1, 2, 4), engine.ones(2, 3, 3), stride=2).shape
    torch.Size([1, 3, 9])
    """
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, 1,
                           "conv_transpose1d")


@op(differentiable=("input", "weight", "bias"))
def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed 2-d convolution; ``weight`` is (C, O/groups, kh, kw).

    >>> F.conv_transpose2d(engine.ones(1, 2, 3, 3), engine.ones(2, 4, 3, 3), stride=2,
    ...                    output_padding=1).shape
    torch.Size([1, 4, 8, 8])
    """
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, 2,
                           "conv_transpose2d")


@op(differentiable=("input", "weight", "bias"))
def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed 3-d convolution; ``weight`` is (C, O/groups, kd, kh, kw).

    >>> F.conv_transpose3d(engine.ones(1, 1, 2, 2, 2), engine.ones(1, 1, 2, 2, 2)).shape
    torch.Size([1, 1, 3, 3, 3])
    """
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, 3,
                           "conv_transpose3d")


# ---------------------------------------------------------------- unfold (im2col) and fold (col2im)
def _block_args(kernel_size, dilation, padding, stride) -> tuple:
    for name, v in (("kernel_size", kernel_size), ("dilation", dilation), ("padding", padding),
                    ("stride", stride)):
        if not isinstance(v, int) and len(tuple(v)) != 2:
            raise RuntimeError(f"It is expected {name} equals to 2, but got size {len(tuple(v))}")
    k = ntuple(kernel_size, 2, "kernel_size")
    d, p, s = (ntuple(v, 2, n) for v, n in ((dilation, "dilation"), (padding, "padding"),
                                            (stride, "stride")))
    for name, vals, lo in (("kernel", k, 1), ("dilation", d, 1), ("padding", p, 0), ("stride", s, 1)):
        if any(v < lo for v in vals):
            rel = "greater than zero" if lo else "non-negative"
            raise RuntimeError(f"{name} should be {rel}, but got {name}_height: {vals[0]} "
                               f"{name}_width: {vals[1]}")
    return k, d, p, s


def _blocks(sp: tuple, k: tuple, d: tuple, p: tuple, s: tuple) -> tuple:
    return tuple((i + 2 * pp - dd * (kk - 1) - 1) // ss + 1 for i, kk, dd, pp, ss in zip(sp, k, d, p, s))


@op()
def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """Sliding local blocks (im2col): (N, C, H, W) -> (N, C*kh*kw, L).

    >>> F.unfold(engine.ones(1, 2, 3, 3), 2).shape
    torch.Size([1, 8, 4])
    """
    x = as_tensor_arg(input)
    nd = x._data.ndim
    if nd not in (3, 4):
        raise IndexError(f"Dimension out of range (expected to be in range of [{-nd}, {nd - 1}], but "
                         f"got {nd})")
    k, d, p, s = _block_args(kernel_size, dilation, padding, stride)
    if x._data.dtype.kind != "f":
        raise NotImplementedError(f"\"im2col_out_cpu\" not implemented for '{_tname(x)}'")
    unbatched = nd == 3
    if unbatched:
        x = unsqueeze(x, 0)
    n, c = x._data.shape[:2]
    sp = x._data.shape[2:]
    out = _blocks(sp, k, d, p, s)
    if any(v < 1 for v in out):
        raise RuntimeError(f"Given input with spatial size ({sp[0]}, {sp[1]}), kernel_size=({k[0]}, "
                           f"{k[1]}), dilation=({d[0]}, {d[1]}), padding=({p[0]}, {p[1]}), calculated "
                           f"shape of the array of sliding blocks as ({out[0]}, {out[1]}), but its "
                           "components must be at least one.")
    if any(p):
        x = pad_constant(x, [(0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])])
    cols = reshape(windows(x, k, s, d, out), (n, c * k[0] * k[1], out[0] * out[1]))
    return squeeze(cols, 0) if unbatched else cols


def _tname(x: Tensor) -> str:
    from ._windows import type_name
    return type_name(x)


@op()
def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """Sum sliding local blocks back into an image (col2im): (N, C*kh*kw, L) -> (N, C, H, W).

    >>> F.fold(engine.ones(1, 8, 4), (3, 3), 2).shape
    torch.Size([1, 2, 3, 3])
    """
    x = as_tensor_arg(input)
    nd = x._data.ndim
    if nd not in (2, 3):
        raise RuntimeError(f"Expected 2D or 3D (batch mode) input tensor with possibly 0 batch size "
                           f"and non-zero dimensions for input, but got: {size_str(x._data.shape)}")
    size = ntuple(output_size, 2, "output_size")
    k, d, p, s = _block_args(kernel_size, dilation, padding, stride)
    unbatched = nd == 2
    if unbatched:
        x = unsqueeze(x, 0)
    n, ck, length = x._data.shape
    kk = k[0] * k[1]
    if ck % kk:
        raise RuntimeError(f"Expected size of input's dimension 1 to be divisible by the product of "
                           f"kernel_size, but got input.size(1)={ck} and kernel_size=({k[0]}, {k[1]})")
    blocks = _blocks(size, k, d, p, s)
    if blocks[0] * blocks[1] != length:
        raise RuntimeError(
            f"Given output_size=({size[0]}, {size[1]}), kernel_size=({k[0]}, {k[1]}), dilation=({d[0]}, "
            f"{d[1]}), padding=({p[0]}, {p[1]}), stride=({s[0]}, {s[1]}), expected size of input's "
            f"dimension 2 to match the calculated number of sliding blocks {blocks[0]} * {blocks[1]} = "
            f"{blocks[0] * blocks[1]}, but got input.size(2)={length}.")
    c = ck // kk
    cols = reshape(x, (n, c) + k + blocks)
    padded = (size[0] + 2 * p[0], size[1] + 2 * p[1])
    y = fold_windows(cols, k, s, d, padded)
    if any(p):
        y = getitem(y, (slice(None), slice(None), slice(p[0], p[0] + size[0]),
                        slice(p[1], p[1] + size[1])))
    return squeeze(y, 0) if unbatched else y
