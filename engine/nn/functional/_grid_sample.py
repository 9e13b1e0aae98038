"""Spatial transformers: ``affine_grid`` (a base grid times theta^T) and ``grid_sample``.

``grid_sample`` is composed from engine ops, so first and second order gradients in both
``input`` and ``grid`` come from their VJPs (and forward mode, vmap and meta shapes from their
rules). The source coordinates are engine ops on the grid (torch's unnormalize, clip and reflect,
rounded as its CPU kernels round them); which pixels each output reads (the floor or the nearest
integer of a coordinate) is decided in numpy on their values; the taps are then gathered in one
``take`` from a pixels-by-channels table and weighted by engine-op weights (``t`` and ``1 - t``
per dim, or the cubic convolution coefficients), so the gradient in the grid flows through the
weights alone, as in torch. Taps outside the input read an appended zero row rather than being
masked by a product: they contribute 0 even where the input holds inf or NaN.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np

from ...ops._registry import as_tensor_arg, op
from ...ops.elementwise import abs as abs_
from ...ops.elementwise import clamp, minimum, trunc, where
from ...ops.linalg_prims import matmul
from ...ops.reduction import sum as sum_
from ...ops.shape import reshape, select, stack, transpose, unsqueeze
from ...tensor import Tensor
from ._interpolate import cubic_weights
from ._windows import pad_constant, size_str, take, type_name

_MODES = ("bilinear", "nearest", "bicubic")
_PADDINGS = ("zeros", "border", "reflection")
_ALIGN_WARNING = ("Default grid_sample and affine_grid behavior has changed to align_corners=False since "
                  "1.3.0. Please specify align_corners=True if the old behavior is desired. See the "
                  "documentation of grid_sample for details.")


# ---------------------------------------------------------------- affine_grid
def _base_coords(n: int, align: bool, dt: np.dtype) -> np.ndarray:
    """torch's linspace_from_neg_one: its linspace in ``dt`` (halves from each end), scaled in by
    (n - 1) / n unless ``align``."""
    if n <= 1:
        return np.zeros(1, dt)
    i = np.arange(n)
    step = dt.type(2.0) / dt.type(n - 1)
    lo = dt.type(-1.0) + step * i.astype(dt)
    hi = dt.type(1.0) - step * (n - 1 - i).astype(dt)
    r = np.where(i < n // 2, lo, hi)
    return r if align else (r * dt.type(n - 1) / dt.type(n)).astype(dt)


@op()
def affine_grid(theta, size, align_corners=None):
    """The sampling grid of a batch of affine maps ``theta`` (N, 2, 3) or (N, 3, 4) over an output of
    ``size`` (N, C, H, W) or (N, C, D, H, W), in [-1, 1] coordinates, for :func:`grid_sample`.

    >>> F.affine_grid(engine.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]), (1, 1, 1, 2),
    ...               align_corners=False)
    tensor([[[[-0.5000,  0.0000],
              [ 0.5000,  0.0000]]]])
    """
    if align_corners is None:
        warnings.warn(_ALIGN_WARNING, stacklevel=2)
        align_corners = False
    th = as_tensor_arg(theta)
    if th._data.dtype.kind != "f":
        raise ValueError(f"Expected theta to have floating point type, but got torch.{th._data.dtype.name}")
    shape = th._data.shape
    if len(size) in (4, 5):
        nd = len(size) - 2
        if th._data.ndim != 3 or shape[-2] != nd or shape[-1] != nd + 1:
            raise ValueError(f"Expected a batch of {nd}D affine matrices of shape Nx{nd}x{nd + 1} for size "
                             f"{size}. Got {th.shape}.")
    else:
        raise NotImplementedError(f"affine_grid only supports 4D and 5D sizes, for 2D and 3D affine "
                                  f"transforms, respectively. Got size {size}.")
    sizes = tuple(int(s) for s in size)
    spatial = sizes[2:]
    if align_corners and min(spatial) == 1:
        warnings.warn("Since version 1.3.0, affine_grid behavior has changed for unit-size grids when "
                      "align_corners=True. This is not an intended use case of affine_grid. See the "
                      "documentation of affine_grid for details.", stacklevel=2)
    elif min(sizes) <= 0:
        raise ValueError(f"Expected non-zero, positive output size. Got {size}")
    n = sizes[0]
    if shape[0] != n:  # torch's bmm of the (N, ...) base grid with theta^T says it
        raise RuntimeError(f"Expected size for first two dimensions of batch2 tensor to be: [{n}, {nd + 1}] "
                           f"but got: [{shape[0]}, {nd + 1}].")
    dt = th._data.dtype
    # the base grid's last dim is (x, y[, z], 1): x runs along the last spatial dim
    axes = [_base_coords(s, bool(align_corners), dt) for s in spatial]
    base = np.empty(spatial + (nd + 1,), dt)
    for k in range(nd):
        base[..., k] = axes[nd - 1 - k].reshape((-1,) + (1,) * k)
    base[..., nd] = 1
    flat = Tensor._make(base.reshape(-1, nd + 1))
    return reshape(matmul(flat, transpose(th, 1, 2)), (n,) + spatial + (nd,))


# ---------------------------------------------------------------- source coordinates (engine ops)
def _unnormalize(c: Tensor, size: int, align: bool, nd: int) -> Tensor:
    """The grid coordinate in pixels, rounded as torch's CPU kernels round it: the 2-D one is
    vectorized, and its ``(c + 1) * size / 2 - 0.5`` is one fused multiply-add (float32 emulates
    it in float64, where the product and the sum are exact); the 3-D one is scalar code."""
    if align:
        return (c + 1.0) * ((size - 1) / 2)
    if nd == 3:
        return ((c + 1.0) * size - 1.0) / 2
    if c._data.dtype == np.float32:
        return ((c + 1.0).double() * (size / 2) - 0.5).float()
    return (c + 1.0) * (size / 2) - 0.5


def _reflect(c: Tensor, size: int, align: bool) -> Tensor:
    """Reflect into [low, low + span]: fold |c - low| by the period, then mirror the far half."""
    if align and size <= 1:
        return _zero_grad(np.zeros(c._data.shape, c._data.dtype), c)
    low = 0.0 if align else -0.5
    twice = 2.0 * (size - 1) if align else 2.0 * size
    a = abs_(c - low) if low else abs_(c)
    extra = a - trunc(a / twice) * twice
    r = minimum(extra, twice - extra)
    return r + low if low else r


def _pad(c: Tensor, size: int, padding: str, align: bool) -> Tensor:
    if padding == "zeros":
        return c
    r = clamp(_reflect(c, size, align) if padding == "reflection" else c, 0, size - 1)
    # torch's clip takes NaN (a NaN grid value, or an infinite one reflected) to 0
    return where(Tensor._make(np.isnan(r._data)), Tensor._make(np.zeros((), r._data.dtype)), r)


def _pad_taps(p: np.ndarray, size: int, padding: str, align: bool) -> np.ndarray:
    """Bicubic's integer tap positions through torch's compute_coordinates (numpy, no gradient)."""
    if padding == "border":
        return np.clip(p, 0, size - 1)
    if padding == "reflection":
        if align and size <= 1:
            return np.zeros_like(p)
        low = 0.0 if align else -0.5
        twice = 2.0 * (size - 1) if align else 2.0 * size
        a = np.abs(p - low)
        extra = a - np.trunc(a / twice) * twice
        return np.clip(np.minimum(extra, twice - extra) + low, 0, size - 1)
    return p


def _zero_grad(values: np.ndarray | Tensor, dep: Tensor) -> Tensor:
    """``values``, depending on ``dep`` with a zero gradient: where torch's grid gradient is zeros
    (not None), and the result requires grad when the grid does."""
    v = values if isinstance(values, Tensor) else Tensor._make(values)
    return where(Tensor._make(np.ones((1,), np.bool_)), v, dep)


# ---------------------------------------------------------------- grid_sample
def _check(x: Tensor, g: Tensor, mode: str) -> None:
    """torch's checks, in its order (check_grid_sampler_common, then _2d/_3d, then the kernel)."""
    xs, gs = x._data.shape, g._data.shape
    if not xs or not gs:
        raise IndexError("Dimension specified as 0 but tensor has no dimensions")
    if xs[0] != gs[0]:
        raise RuntimeError(f"grid_sampler(): expected grid and input to have same batch size, but got input "
                           f"with sizes {size_str(xs)} and grid with sizes {size_str(gs)}")
    if gs[-1] != len(xs) - 2:
        raise RuntimeError(f"grid_sampler(): expected grid to have size {len(xs) - 2} in last dimension, but "
                           f"got grid with sizes {size_str(gs)}")
    for i in range(2, len(xs)):
        if xs[i] <= 0:
            raise RuntimeError(f"grid_sampler(): expected input to have non-empty spatial dimensions, but "
                               f"input has sizes {size_str(xs)} with dimension {i} being empty")
    want = 4 if len(xs) == 4 else 5
    if len(xs) != want or len(gs) != want:
        raise RuntimeError(f"grid_sampler(): expected {want}D input and grid with same number of dimensions, "
                           f"but got input with sizes {size_str(xs)} and grid with sizes {size_str(gs)}")
    if want == 5 and mode == "bicubic":
        raise RuntimeError("grid_sampler(): bicubic interpolation only supports 4D input")
    if x._data.dtype.kind != "f":
        kernel = "grid_sampler_2d_cpu_kernel_impl" if want == 4 else "grid_sampler3d_cpu"
        raise NotImplementedError(f"\"{kernel}\" not implemented for '{type_name(x)}'")
    if g._data.dtype != x._data.dtype:
        raise RuntimeError(f"expected scalar type {type_name(x)} but found {type_name(g)}")


@op(differentiable=("input", "grid"))
def grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=None):
    """Sample ``input`` (N, C, H, W) or (N, C, D, H, W) at the points of ``grid`` (N, H', W', 2) or
    (N, D', H', W', 3), given as (x, y[, z]) in [-1, 1]; 'bilinear' on 5-D input is trilinear.

    >>> F.grid_sample(engine.tensor([[[[1.0, 2.0]]]]), engine.tensor([[[[0.0, 0.0]]]]),
    ...               align_corners=True)
    tensor([[[[1.5000]]]])
    """
    if mode not in _MODES:
        raise ValueError(f"nn.functional.grid_sample(): expected mode to be 'bilinear', 'nearest' or "
                         f"'bicubic', but got: '{mode}'")
    if padding_mode not in _PADDINGS:
        raise ValueError(f"nn.functional.grid_sample(): expected padding_mode to be 'zeros', 'border', or "
                         f"'reflection', but got: '{padding_mode}'")
    if align_corners is None:
        warnings.warn(_ALIGN_WARNING, stacklevel=2)
        align_corners = False
    align = bool(align_corners)
    x, g = as_tensor_arg(input), as_tensor_arg(grid)
    _check(x, g, mode)
    xs, gs = x._data.shape, g._data.shape
    nd = len(xs) - 2
    n, c, sp, out_sp = xs[0], xs[1], xs[2:], gs[1:-1]
    q, p = math.prod(out_sp), math.prod(sp)
    gf = reshape(g, (n, q, nd))
    # coords[d]: the source coordinate along spatial dim d, (N, Q); grid entry k is dim nd - 1 - k
    coords = []
    for d in range(nd):
        cd = _unnormalize(select(gf, 2, nd - 1 - d), sp[d], align, nd)
        coords.append(cd if mode == "bicubic" else _pad(cd, sp[d], padding_mode, align))

    # per dim: the tap positions (float, as torch computes them) and their weights
    taps, weights = [], []
    for d, cd in enumerate(coords):
        v = cd._data
        if mode == "nearest":
            taps.append([np.rint(v)])  # round half to even, as torch's nearbyint
            continue
        f = np.floor(v)
        t = cd - Tensor._make(f)
        if mode == "bilinear":
            taps.append([f, f + 1])
            weights.append([1.0 - t, t])
        else:
            taps.append([_pad_taps(f + k, sp[d], padding_mode, align) for k in (-1, 0, 1, 2)])
            weights.append(cubic_weights(t))

    # each tap's row in the (N * (P + 1), C) pixel table: row P of a sample is an appended zero.
    # (Pixels as rows, channels as columns: the index arrays are the grid's size, not C times it.)
    strides = [math.prod(sp[d + 1:]) for d in range(nd)]
    it = np.int32 if n * (p + 1) < 2**31 else np.int64  # the gather node keeps these
    first = (np.arange(n, dtype=it) * it(p + 1))[:, None]
    rows = []
    for combo in itertools.product(*taps):
        inside = np.ones((n, q), np.bool_)
        idx = np.zeros((n, q), it)
        for d, pos in enumerate(combo):
            ok = (pos >= 0) & (pos <= sp[d] - 1)  # False for NaN too
            inside &= ok
            idx += np.where(ok, pos, 0).astype(it) * it(strides[d])
        rows.append(first + np.where(inside, idx, it(p)))
    table = pad_constant(transpose(reshape(x, (n, c, p)), 1, 2), ((0, 0), (0, 1), (0, 0)))
    vals = take(reshape(table, (n * (p + 1), c)), np.stack(rows, axis=1), 0)  # (N, T, Q, C)

    if mode == "nearest":
        out = _zero_grad(select(vals, 1, 0), unsqueeze(coords[0], 2))
    else:
        # a tap's weight is the product of its per-dim weights, in itertools.product's order
        w = stack([math.prod(ws[1:], start=ws[0]) for ws in itertools.product(*weights)], 1)
        out = sum_(vals * unsqueeze(w, 3), 1)
    return reshape(transpose(out, 1, 2), (n, c) + tuple(out_sp))
