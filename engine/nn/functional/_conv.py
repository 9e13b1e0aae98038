"""Convolutions (1-, 2- and 3-d, plain and transposed) and unfold/fold, as im2col + matmul.

The input's windows (a strided view) are copied into ``(N, C*K, L)`` columns and multiplied by
the weight as ``(O, C*K) @ (N, C*K, L)``, which leaves the output contiguous in torch's layout
(a layout with the batch next to the spatial dims allows one single GEMM, but its output and
gradients are strided views that cost more downstream than they save). ``_conv_gemm`` is the one
convolution primitive: its VJP, in engine ops, is col2im of ``W^T g`` for the input and
``g @ im2col(x)^T`` for the weight, recomputing the columns instead of saving them (K times the
input's memory), so every derivative, double backward included, goes through engine ops.
Transposed convolution is matmul + col2im directly.
"""

from __future__ import annotations

import math

import numpy as np

from ..._autograd import primitive
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
# others (written in engine ops: double backward and beyond come free). Their numpy forwards
# walk the batch in chunks whose columns fit in cache (~0.5 MiB): the (N, C*K, L) columns are
# never materialized whole, padding happens per chunk, and no array K times the input's size is
# allocated, forward or backward.
_CHUNK_BYTES = 1 << 19


def _chunk(n: int, per_sample: int) -> int:
    return max(1, min(n, _CHUNK_BYTES // max(per_sample, 1)))


def _padded(size: tuple, pads: tuple) -> tuple:
    return tuple(s + a + b for s, (a, b) in zip(size, pads))


def _columns(x: np.ndarray, pads: tuple, kernel: tuple, stride: tuple, dilation: tuple, out: tuple,
             dt: np.dtype):
    """Yield ``(start, cols)`` over batch chunks of ``x`` (N, C, *sp); ``cols`` (b, C, *kernel,
    *out) are the chunk's (zero-padded) windows, in one buffer reused by every chunk."""
    n, c = x.shape[:2]
    step = _chunk(n, c * math.prod(kernel) * math.prod(out) * dt.itemsize)
    buf = np.empty((min(step, n), c) + kernel + out, dt)
    pbuf = None
    if any(a or b for a, b in pads):  # the borders stay zero, only the interior is rewritten
        pbuf = np.zeros((min(step, n), c) + _padded(x.shape[2:], pads), dt)
        inner = (slice(None), slice(None)) + tuple(slice(a, a + s) for s, (a, _) in
                                                   zip(x.shape[2:], pads))
    for s0 in range(0, n, step):
        xc = x[s0:s0 + step]
        b = len(xc)
        if pbuf is not None:
            pbuf[:b][inner] = xc
            xc = pbuf[:b]
        np.copyto(buf[:b], _windows.fwd(xc, kernel, stride, dilation, out))
        yield s0, buf[:b]


@primitive(save=(0, 1))
def _conv_gemm(x, w, b, pads, kernel, stride, dilation, out, groups):
    """``x`` (N, C, *sp), ``w`` (O, C/groups, *kernel), bias ``b`` (O,) or None -> (N, O, *out),
    ``x`` zero-padded by ``pads``: im2col + GEMM, a chunk of the batch at a time."""
    n, c = x.shape[:2]
    o = w.shape[0]
    kk, length, cg = math.prod(kernel), math.prod(out), c // groups
    dt = np.result_type(x, w)
    y = np.empty((n, groups, o // groups, length), dt)
    wm = w.reshape(groups, o // groups, cg * kk).astype(dt, copy=False)
    for s0, cols in _columns(x, pads, kernel, stride, dilation, out, dt):
        m = len(cols)
        np.matmul(wm, cols.reshape(m, groups, cg * kk, length), out=y[s0:s0 + m])
    y = y.reshape((n, o) + out)
    if b is not None:
        y += b.reshape((o,) + (1,) * len(out))
    return y


@primitive(save=(0, 1))
def _conv_wgrad(x, g, pads, kernel, stride, dilation, groups):
    """The weight gradient of :func:`_conv_gemm` for output gradient ``g`` (N, O, *out):
    ``sum over the batch of g @ im2col(x)^T``, shape (O, C/groups, *kernel)."""
    n, c = x.shape[:2]
    o, out = g.shape[1], g.shape[2:]
    kk, length, cg = math.prod(kernel), math.prod(out), c // groups
    dt = np.result_type(x, g)
    gw = np.zeros((groups, o // groups, cg * kk), dt)
    g4 = g.reshape(n, groups, o // groups, length)
    for s0, cols in _columns(x, pads, kernel, stride, dilation, out, dt):
        m = len(cols)
        part = np.matmul(g4[s0:s0 + m], cols.reshape(m, groups, cg * kk, length).swapaxes(2, 3))
        gw += part.sum(0)
    return gw.reshape((o, cg) + kernel)


@primitive(save=(0, 1))
def _conv_xgrad(g, w, pads, kernel, stride, dilation, size, groups):
    """The input gradient of :func:`_conv_gemm` (and the transposed convolution): col2im of
    ``W^T g``, cropped to the unpadded ``size``; shape (N, C, *size)."""
    n, o = g.shape[:2]
    out = g.shape[2:]
    cg = w.shape[1]
    c, kk, length = cg * groups, math.prod(kernel), math.prod(out)
    dt = np.result_type(g, w)
    gx = np.empty((n, c) + size, dt)
    wt = w.reshape(groups, o // groups, cg * kk).swapaxes(1, 2).astype(dt, copy=False)
    g4 = g.reshape(n, groups, o // groups, length)
    padded = _padded(size, pads)
    inner = (Ellipsis,) + tuple(slice(a, a + s) for s, (a, _) in zip(size, pads))
    step = _chunk(n, c * kk * length * dt.itemsize)
    buf = np.empty((min(step, n), groups, cg * kk, length), dt)
    for s0 in range(0, n, step):
        gc = g4[s0:s0 + step]
        m = len(gc)
        cols = np.matmul(wt, gc, out=buf[:m]).reshape((m, c) + kernel + out)
        gx[s0:s0 + m] = _fold_windows.fwd(cols, kernel, stride, dilation, padded)[inner]
    return gx


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


@_conv_wgrad.defvjp
def _conv_wgrad_vjp(ctx, h, x, g, pads, kernel, stride, dilation, groups):
    p = _shared(pads, kernel, stride, dilation, groups)
    e = ctx.edges
    gx = _conv_xgrad(g, h, size=tuple(x._data.shape[2:]), **p) if e[0] is not None else None
    gg = _conv_gemm(x, h, None, out=tuple(g._data.shape[2:]), **p) if e[1] is not None else None
    return gx, gg


@_conv_xgrad.defvjp
def _conv_xgrad_vjp(ctx, z, g, w, pads, kernel, stride, dilation, size, groups):
    p = _shared(pads, kernel, stride, dilation, groups)
    e = ctx.edges
    gg = _conv_gemm(z, w, None, out=tuple(g._data.shape[2:]), **p) if e[0] is not None else None
    gw = _conv_wgrad(z, g, **p) if e[1] is not None else None
    return gg, gw


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
    _check_types(x, w, b)
    unbatched = x._data.ndim == nd + 1
    if unbatched:
        x = unsqueeze(x, 0)
    o, cg = w._data.shape[:2]
    if o % groups:
        raise RuntimeError(f"Given groups={groups}, expected weight to be divisible by {groups} at "
                           f"dimension 0, but got weight of size [{size_str(w._data.shape)}] instead")
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
    _check_types(x, w, b)
    unbatched = x._data.ndim == nd + 1
    if unbatched:
        x = unsqueeze(x, 0)
    cin, og = w._data.shape[:2]
    if cin % groups:
        raise RuntimeError(f"Given groups={groups}, expected weight to be divisible by {groups} at "
                           f"dimension 0, but got weight of size [{size_str(w._data.shape)}] instead")
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
