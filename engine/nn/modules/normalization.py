"""Normalisation layers (torch.nn.modules.normalization's): LayerNorm, GroupNorm, RMSNorm and
LocalResponseNorm."""

from __future__ import annotations

import numbers
from typing import Any

from ...tensor import Tensor
from .. import functional as F
from .module import Module
from .utils import _parameter, _reset_affine

__all__ = ["LocalResponseNorm", "LayerNorm", "GroupNorm", "RMSNorm"]


class LocalResponseNorm(Module):
    """Normalises each channel by its ``size`` neighbouring channels' energy.

    >>> tuple(engine.nn.LocalResponseNorm(2)(engine.randn(32, 5, 24, 24)).shape)
    (32, 5, 24, 24)
    """

    __constants__ = ["size", "alpha", "beta", "k"]

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.k = k

    def forward(self, input: Tensor) -> Tensor:
        return F.local_response_norm(input, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return "{size}, alpha={alpha}, beta={beta}, k={k}".format(**self.__dict__)


class LayerNorm(Module):
    """Normalises over the trailing ``normalized_shape`` dimensions, with an elementwise affine.

    >>> tuple(engine.nn.LayerNorm(10)(engine.randn(20, 5, 10)).shape)
    (20, 5, 10)
    """

    __constants__ = ["normalized_shape", "eps", "elementwise_affine"]

    def __init__(self, normalized_shape: Any, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        shape = self.normalized_shape if elementwise_affine else None
        _parameter(self, "weight", shape, device=device, dtype=dtype)
        _parameter(self, "bias", shape if bias else None, device=device, dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_affine(self.weight, self.bias)

    def forward(self, input: Tensor) -> Tensor:
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return ("{normalized_shape}, eps={eps}, elementwise_affine={elementwise_affine}, "
                "bias={use_bias}").format(
            **self.__dict__, use_bias=self.bias is not None)


class GroupNorm(Module):
    """Normalises each of ``num_groups`` channel groups per sample, with a per-channel affine.

    >>> tuple(engine.nn.GroupNorm(3, 6)(engine.randn(20, 6, 10, 10)).shape)
    (20, 6, 10, 10)
    """

    __constants__ = ["num_groups", "num_channels", "eps", "affine"]

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 device: Any = None, dtype: Any = None, *, bias: bool = True) -> None:
        super().__init__()
        if num_channels % num_groups != 0:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        _parameter(self, "weight", num_channels if affine else None, device=device, dtype=dtype)
        _parameter(self, "bias", num_channels if affine and bias else None, device=device, dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_affine(self.weight, self.bias)

    def forward(self, input: Tensor) -> Tensor:
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return "{num_groups}, {num_channels}, eps={eps}, affine={affine}, bias={use_bias}".format(
            **self.__dict__, use_bias=self.bias is not None)


class RMSNorm(Module):
    """Divides by the root mean square over the trailing ``normalized_shape`` dimensions.

    >>> tuple(engine.nn.RMSNorm([2, 3])(engine.randn(2, 2, 3)).shape)
    (2, 2, 3)
    """

    __constants__ = ["normalized_shape", "eps", "elementwise_affine"]

    def __init__(self, normalized_shape: Any, eps: float | None = None, elementwise_affine: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        _parameter(self, "weight", self.normalized_shape if elementwise_affine else None, device=device,
                   dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_affine(self.weight, None)

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return "{normalized_shape}, eps={eps}, elementwise_affine={elementwise_affine}".format(
            **self.__dict__)
