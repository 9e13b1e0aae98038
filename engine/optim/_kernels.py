"""In-place updates that round as torch's CPU kernels do.

torch's float32 ``add(other, alpha)``, ``addcmul`` and ``lerp`` use a fused multiply-add (one
rounding of ``self + alpha * other``), and ``addcdiv`` computes ``(value * t1) / t2``. The
engine's ops round the product first, which moves the last bit of about one update in ten; over
many optimizer steps (and through RMSprop's centered variance) that grows past 1e-6. For float32
the product is exact in float64, so computing there and rounding once reproduces torch's bits
(double rounding aside, ~2**-29 of cases). Each helper writes its result with one in-place op, so
the tensor's version counter advances once, as with torch's in-place method.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._dtype import float32, float64
from ..tensor import Tensor


def _f32(x: Any) -> float:
    # torch casts a Python scalar to the kernel's compute type (float for float32 tensors)
    return float(np.float32(x))


def _is_scalar(x: Any) -> bool:
    return not isinstance(x, Tensor)


def _scalar(x: Any) -> Any:
    """A one-element tensor hyper-parameter (a tensor lr) as torch's kernels take it: a number."""
    if isinstance(x, Tensor) and not x.requires_grad and x.numel() == 1:
        return x.item()
    return x


def add(t: Tensor, other: Tensor, alpha: Any = 1) -> Tensor:
    """``t + alpha * other`` as a new tensor."""
    alpha = _scalar(alpha)
    if t.dtype == float32 and other.dtype == float32 and _is_scalar(alpha) and alpha != 1:
        return t.to(float64).add(other.to(float64).mul(_f32(alpha))).to(float32)
    return t.add(other, alpha=alpha)


def add_(t: Tensor, other: Tensor, alpha: Any = 1) -> Tensor:
    """``t += alpha * other``."""
    alpha = _scalar(alpha)
    if t.dtype == float32 and other.dtype == float32 and _is_scalar(alpha) and alpha != 1:
        return t.copy_(t.to(float64).add(other.to(float64).mul(_f32(alpha))))
    return t.add_(other, alpha=alpha)


def _addcmul64(t: Tensor, t1: Tensor, t2: Tensor, value: Any) -> Tensor:
    prod = t1 if value == 1 else t1.mul(value)  # float32 product, as torch's kernel rounds it
    return t.to(float64).add(prod.to(float64).mul(t2.to(float64)))


def addcmul(t: Tensor, t1: Tensor, t2: Tensor, value: Any = 1) -> Tensor:
    """``t + value * t1 * t2`` as a new tensor."""
    value = _scalar(value)
    if t.dtype == float32 and _is_scalar(value):
        return _addcmul64(t, t1, t2, value).to(float32)
    return t.addcmul(t1, t2, value=value)


def addcmul_(t: Tensor, t1: Tensor, t2: Tensor, value: Any = 1) -> Tensor:
    """``t += value * t1 * t2``."""
    value = _scalar(value)
    if t.dtype == float32 and _is_scalar(value):
        return t.copy_(_addcmul64(t, t1, t2, value))
    return t.addcmul_(t1, t2, value=value)


def addcdiv_(t: Tensor, t1: Tensor, t2: Tensor, value: Any = 1) -> Tensor:
    """``t += (value * t1) / t2``, torch's order (the engine's addcdiv divides first)."""
    value = _scalar(value)
    if _is_scalar(value):
        return t.add_((t1 if value == 1 else t1.mul(value)).div(t2))
    return t.addcdiv_(t1, t2, value=value)


def lerp_(t: Tensor, end: Tensor, weight: Any) -> Tensor:
    """``t += weight * (end - t)`` (from ``end`` when ``weight >= 0.5``, as torch's kernel)."""
    weight = _scalar(weight)
    if t.dtype == float32 and end.dtype == float32 and _is_scalar(weight):
        w = _f32(weight)
        diff = end.sub(t).to(float64)
        if abs(w) < 0.5:
            return t.copy_(t.to(float64).add(diff.mul(w)))
        return t.copy_(end.to(float64).sub(diff.mul(1.0 - w)))
    return t.lerp_(end, weight)
