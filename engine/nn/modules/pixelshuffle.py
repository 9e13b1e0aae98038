"""PixelShuffle and PixelUnshuffle (torch.nn.modules.pixelshuffle's)."""

from __future__ import annotations

from ...tensor import Tensor
from .. import functional as F
from .module import Module

__all__ = ["PixelShuffle", "PixelUnshuffle"]


class PixelShuffle(Module):
    """``(*, C r², H, W)`` to ``(*, C, H r, W r)``.

    >>> tuple(engine.nn.PixelShuffle(3)(engine.randn(1, 9, 4, 4)).shape)
    (1, 1, 12, 12)
    """

    __constants__ = ["upscale_factor"]

    def __init__(self, upscale_factor: int) -> None:
        super().__init__()
        self.upscale_factor = upscale_factor

    def forward(self, input: Tensor) -> Tensor:
        return F.pixel_shuffle(input, self.upscale_factor)

    def extra_repr(self) -> str:
        return f"upscale_factor={self.upscale_factor}"


class PixelUnshuffle(Module):
    """``(*, C, H r, W r)`` to ``(*, C r², H, W)``, PixelShuffle's inverse.

    >>> tuple(engine.nn.PixelUnshuffle(3)(engine.randn(1, 1, 12, 12)).shape)
    (1, 9, 4, 4)
    """

    __constants__ = ["downscale_factor"]

    def __init__(self, downscale_factor: int) -> None:
        super().__init__()
        self.downscale_factor = downscale_factor

    def forward(self, input: Tensor) -> Tensor:
        return F.pixel_unshuffle(input, self.downscale_factor)

    def extra_repr(self) -> str:
        return f"downscale_factor={self.downscale_factor}"
