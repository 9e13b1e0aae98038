"""Resampling: ``interpolate`` (nearest, nearest-exact, (bi/tri)linear, bicubic, area), the
deprecated ``upsample*`` spellings, and the pixel/channel shuffles (pure reshapes).

Every mode is separable, so the op works one spatial dim at a time: nearest modes gather source
indices (``take``), the others multiply by a constant (out, in) weight matrix built here from
torch's source-index formulas (``along``, a matmul). Both are linear with engine-op VJPs, so
double backward works.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ...ops._registry import as_tensor_arg, op
from ...ops.shape import permute, reshape, transpose
from ._pooling import _avg_matrix, along
from ._windows import size_str, take, type_name

_MODES = ("nearest", "linear", "bilinear", "bicubic", "trilinear", "area", "nearest-exact")
_LINEAR = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}
_DIM_LETTERS = {1: ("W",), 2: ("H", "W"), 3: ("D", "H", "W")}


def _kernel_scale(i: int, o: int, scale: float | None, align_corners: bool) -> float:
    """torch's area_pixel_compute_scale."""
    if align_corners:
        return (i - 1) / (o - 1) if o > 1 else 0.0
    return 1.0 / scale if scale is not None and scale > 0 else i / o


def _nearest_index(i: int, o: int, scale: float | None, exact: bool) -> np.ndarray:
    dst = np.arange(o)
    if not exact:
        if o == i:
            return dst
        if o == 2 * i:
            return dst >> 1
    s = np.float32(1.0 / scale if scale is not None and scale > 0 else i / o)
    src = (dst.astype(np.float32) + np.float32(0.5 if exact else 0.0)) * s  # torch: float math
    return np.minimum(np.floor(src).astype(np.int64), i - 1)


def _linear_matrix(i: int, o: int, scale: float | None, align_corners: bool) -> np.ndarray:
    m = np.zeros((o, i))
    rows = np.arange(o)
    if o == i:
        m[rows, rows] = 1.0
        return m
    s = _kernel_scale(i, o, scale, align_corners)
    src = s * rows if align_corners else np.maximum(s * (rows + 0.5) - 0.5, 0.0)
    i0 = src.astype(np.int64)
    i1 = i0 + (i0 < i - 1)
    lam1 = np.clip(src - i0, 0.0, 1.0)
    np.add.at(m, (rows, i0), 1.0 - lam1)  # small constant matrix: clarity over speed
    np.add.at(m, (rows, i1), lam1)
    return m


def cubic_weights(t: Any) -> list:
    """torch's cubic convolution weights (coefficient -0.75) of the taps -1, 0, 1, 2 at fraction
    ``t``: numpy arrays or engine tensors alike (bicubic ``interpolate`` and ``grid_sample``)."""
    a = -0.75

    def near(x: Any) -> Any:   # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: Any) -> Any:    # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _cubic_matrix(i: int, o: int, scale: float | None, align_corners: bool) -> np.ndarray:
    rows = np.arange(o)
    s = _kernel_scale(i, o, scale, align_corners)
    src = s * rows if align_corners else s * (rows + 0.5) - 0.5
    f = np.floor(src)
    t = src - f
    m = np.zeros((o, i))
    for off, w in zip((-1, 0, 1, 2), cubic_weights(t)):
        np.add.at(m, (rows, np.clip(f.astype(np.int64) + off, 0, i - 1)), w)
    return m


def _aa_matrix(i: int, o: int, scale: float | None, align_corners: bool, cubic: bool) -> np.ndarray:
    """torch's antialiased weights (PIL's): the kernel widens by the scale when downsampling,
    and each row is normalised to sum 1."""
    s = _kernel_scale(i, o, scale, align_corners)
    size = 4 if cubic else 2
    support = size * 0.5 * s if s >= 1.0 else size * 0.5
    inv = 1.0 / s if s >= 1.0 else 1.0
    m = np.zeros((o, i))
    for r in range(o):
        center = s * (r + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), i)
        x = np.abs((np.arange(lo, hi) - center + 0.5) * inv)
        if cubic:  # Keys' cubic with a = -0.5
            a = -0.5
            w = np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                         np.where(x < 2, ((a * x - 5 * a) * x + 8 * a) * x - 4 * a, 0.0))
        else:
            w = np.maximum(0.0, 1.0 - x)
        total = w.sum()
        m[r, lo:hi] = w / total if total != 0 else w
    return m


@op()
def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resample the spatial dims of (N, C, *spatial) to ``size`` or by ``scale_factor``.

    >>> F.interpolate(engine.tensor([[[1.0, 2.0]]]), scale_factor=2, mode="linear")
    tensor([[[1.0000, 1.2500, 1.7500, 2.0000]]])
    """
    x = as_tensor_arg(input)
    nd = x._data.ndim - 2
    if mode not in _MODES or nd not in (1, 2, 3):
        raise NotImplementedError(f"Input Error: Only 3D, 4D and 5D input Tensors supported (got "
                                  f"{x._data.ndim}D) for the modes: nearest | linear | bilinear | "
                                  f"bicubic | trilinear | lanczos | area | nearest-exact (got {mode})")
    if align_corners is not None and mode not in _LINEAR:
        raise ValueError("align_corners option can only be set with the interpolating modes: linear | "
                         "bilinear | bicubic | trilinear")
    align = bool(align_corners)
    if antialias and not (mode in ("bilinear", "bicubic") and nd == 2):
        raise ValueError("Anti-alias option is restricted to bilinear, bicubic, and lanczos modes and "
                         "requires a 4-D tensor as input")
    sp = x._data.shape[2:]
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is not None:
        out = (int(size),) * nd if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
        if len(out) != nd:
            raise ValueError(f"Input and output must have the same number of spatial dimensions, but "
                             f"got input with spatial dimensions of {list(sp)} and output size of "
                             f"{tuple(size)}. Please provide input tensor in (N, C, d1, d2, ...,dK) "
                             "format and output size in (o1, o2, ...,oK) format.")
        scales: tuple = (None,) * nd
    elif scale_factor is not None:
        sf = (float(scale_factor),) * nd if isinstance(scale_factor, (int, float)) \
            else tuple(float(s) for s in scale_factor)
        if len(sf) != nd:
            raise ValueError(f"Input and scale_factor must have the same number of spatial dimensions, "
                             f"but got input with spatial dimensions of {list(sp)} and scale_factor of "
                             f"shape {tuple(scale_factor)}. Please provide input tensor in (N, C, d1, "
                             "d2, ...,dK) format and scale_factor in (s1, s2, ...,sK) format.")
        out = tuple(int(math.floor(float(i) * s)) for i, s in zip(sp, sf))
        scales = (None,) * nd if recompute_scale_factor else sf
    else:
        raise ValueError("either size or scale_factor should be defined")
    if mode in _LINEAR and _LINEAR[mode] != nd:
        raise NotImplementedError(f"Got {nd + 2}D input, but {mode} mode needs {_LINEAR[mode] + 2}D "
                                  "input")
    if any(v <= 0 for v in out):
        letters = _DIM_LETTERS[nd]
        ins = ", ".join(f"{a}: {v}" for a, v in zip(letters, sp))
        outs = ", ".join(f"{a}: {v}" for a, v in zip(letters, out))
        sep = " and " if nd == 1 else " "
        raise RuntimeError(f"Input and output sizes should be greater than 0, but got input ({ins})"
                           f"{sep}output ({outs})")
    if x._data.dtype.kind != "f":
        kernel = "compute_indices_weights_nearest" if "nearest" in mode else \
            "compute_indices_weights_linear"
        raise NotImplementedError(f"\"{kernel}\" not implemented for '{type_name(x)}'")
    dt = x._data.dtype
    for j in range(nd):  # last dim first
        d = nd - 1 - j
        i, o, s = sp[d], out[d], scales[d]
        if mode in ("nearest", "nearest-exact"):
            if o != i:
                x = take(x, _nearest_index(i, o, s, mode == "nearest-exact"), 2 + d)
        elif mode == "area":
            if o != i:
                x = along(x, _avg_matrix(i, o, dt), j + 1)
        elif antialias:
            x = along(x, _aa_matrix(i, o, s, align, mode == "bicubic").astype(dt), j + 1)
        else:
            build = _cubic_matrix if mode == "bicubic" else _linear_matrix
            if o != i or mode == "bicubic" or align:
                x = along(x, build(i, o, s, align).astype(dt), j + 1)
    return x


def _deprecated(name: str) -> None:
    warnings.warn(f"`nn.functional.{name}` is deprecated. Use `nn.functional.interpolate` instead.",
                  stacklevel=3)


@op()
def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """Deprecated spelling of :func:`interpolate` (warns, as torch does).

    >>> F.upsample(engine.ones(1, 1, 2), scale_factor=2).shape  # doctest: +SKIP
    torch.Size([1, 1, 4])
    """
    _deprecated("upsample")
    return interpolate(input, size, scale_factor, mode, align_corners)


@op()
def upsample_nearest(input, size=None, scale_factor=None):
    """Deprecated: ``interpolate(input, size, scale_factor, mode='nearest')``."""
    _deprecated("upsample_nearest")
    return interpolate(input, size, scale_factor, mode="nearest")


@op()
def upsample_bilinear(input, size=None, scale_factor=None):
    """Deprecated: ``interpolate(..., mode='bilinear', align_corners=True)``."""
    _deprecated("upsample_bilinear")
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)


# ---------------------------------------------------------------- shuffles (reshape + permute)
@op()
def pixel_shuffle(input, upscale_factor):
    """(*, C*r*r, H, W) -> (*, C, H*r, W*r).

    >>> F.pixel_shuffle(engine.arange(4.0).reshape(1, 4, 1, 1), 2)
    tensor([[[[0., 1.],
              [2., 3.]]]])
    """
    x, r = as_tensor_arg(input), int(upscale_factor)
    s = x._data.shape
    if len(s) < 3:
        raise RuntimeError(f"pixel_shuffle expects input to have at least 3 dimensions, but got input "
                           f"with {len(s)} dimension(s)")
    if r <= 0:
        raise RuntimeError(f"pixel_shuffle expects a positive upscale_factor, but got {r}")
    if s[-3] % (r * r):
        raise RuntimeError(f"pixel_shuffle expects its input's 'channel' dimension to be divisible by "
                           f"the square of upscale_factor, but input.size(-3)={s[-3]} is not "
                           f"divisible by {r * r}")
    lead, c, h, w = s[:-3], s[-3] // (r * r), s[-2], s[-1]
    n = len(lead)
    y = reshape(x, lead + (c, r, r, h, w))
    y = permute(y, tuple(range(n)) + (n, n + 3, n + 1, n + 4, n + 2))
    return reshape(y, lead + (c, h * r, w * r))


@op()
def pixel_unshuffle(input, downscale_factor):
    """(*, C, H*r, W*r) -> (*, C*r*r, H, W), the inverse of :func:`pixel_shuffle`.

    >>> F.pixel_unshuffle(engine.arange(4.0).reshape(1, 1, 2, 2), 2).flatten()
    tensor([0., 1., 2., 3.])
    """
    x, r = as_tensor_arg(input), int(downscale_factor)
    s = x._data.shape
    if len(s) < 3:
        raise RuntimeError(f"pixel_unshuffle expects input to have at least 3 dimensions, but got "
                           f"input with {len(s)} dimension(s)")
    if r <= 0:
        raise RuntimeError(f"pixel_unshuffle expects a positive downscale_factor, but got {r}")
    for name, d in (("height", -2), ("width", -1)):
        if s[d] % r:
            raise RuntimeError(f"pixel_unshuffle expects {name} to be divisible by downscale_factor, "
                               f"but input.size({d})={s[d]} is not divisible by {r}")
    lead, c, h, w = s[:-3], s[-3], s[-2] // r, s[-1] // r
    n = len(lead)
    y = reshape(x, lead + (c, h, r, w, r))
    y = permute(y, tuple(range(n)) + (n, n + 2, n + 4, n + 1, n + 3))
    return reshape(y, lead + (c * r * r, h, w))


@op()
def channel_shuffle(input, groups):
    """Interleave ``groups`` channel groups of (N, C, *): (N, g, C/g, *) -> (N, C/g, g, *).

    >>> F.channel_shuffle(engine.arange(4.0).reshape(1, 4, 1), 2).flatten()
    tensor([0., 2., 1., 3.])
    """
    x, g = as_tensor_arg(input), int(groups)
    s = x._data.shape
    if g <= 0:
        raise RuntimeError(f"Number of groups to divide channels in must be positive. Value of "
                           f"groups:{g}")
    if len(s) <= 2:
        raise RuntimeError(f"channel_shuffle expects input with > 2 dims, but got input with sizes "
                           f"{size_str(s)}")
    if s[1] % g:
        raise RuntimeError(f"Number of channels must be divisible by groups. Got {s[1]} channels and "
                           f"{g} groups.")
    y = transpose(reshape(x, (s[0], g, s[1] // g) + s[2:]), 1, 2)
    return reshape(y, s)
