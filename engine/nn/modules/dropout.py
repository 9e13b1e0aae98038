"""Dropout layers (torch.nn.modules.dropout's): random in training, the identity in eval."""

from __future__ import annotations

from ...tensor import Tensor
from .. import functional as F
from .module import Module

__all__ = ["Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout"]


class _DropoutNd(Module):
    __constants__ = ["p", "inplace"]

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if p < 0 or p > 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Zeroes each element with probability ``p`` in training, scaling the rest by ``1/(1-p)``.

    >>> engine.nn.Dropout(0.2).eval()(engine.ones(3))
    tensor([1., 1., 1.])
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, self.training, self.inplace)


class Dropout1d(_DropoutNd):
    """Zeroes whole channels of ``(N, C, L)`` (or ``(C, L)``) input with probability ``p``.

    >>> tuple(engine.nn.Dropout1d(0.2)(engine.ones(2, 4, 3)).shape)
    (2, 4, 3)
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout1d(input, self.p, self.training, self.inplace)


class Dropout2d(_DropoutNd):
    """Zeroes whole channels of ``(N, C, H, W)`` input with probability ``p``.

    >>> tuple(engine.nn.Dropout2d(0.2)(engine.ones(2, 4, 3, 3)).shape)
    (2, 4, 3, 3)
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout2d(input, self.p, self.training, self.inplace)


class Dropout3d(_DropoutNd):
    """Zeroes whole channels of ``(N, C, D, H, W)`` input with probability ``p``.

    >>> tuple(engine.nn.Dropout3d(0.2)(engine.ones(2, 4, 2, 3, 3)).shape)
    (2, 4, 2, 3, 3)
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout3d(input, self.p, self.training, self.inplace)


class AlphaDropout(_DropoutNd):
    """Dropout that keeps SELU's self-normalising mean and variance.

    >>> tuple(engine.nn.AlphaDropout(0.2)(engine.randn(20, 16)).shape)
    (20, 16)
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.alpha_dropout(input, self.p, self.training)


class FeatureAlphaDropout(_DropoutNd):
    """Alpha dropout of whole channels.

    >>> tuple(engine.nn.FeatureAlphaDropout(0.2)(engine.randn(2, 4, 3, 3)).shape)
    (2, 4, 3, 3)
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.feature_alpha_dropout(input, self.p, self.training)
