"""Fold and Unfold (torch.nn.modules.fold's): sliding blocks to columns and back."""

from __future__ import annotations

from typing import Any

from ...tensor import Tensor
from .. import functional as F
from .module import Module

__all__ = ["Fold", "Unfold"]


class Fold(Module):
    """Sums columns of sliding blocks ``(N, C·∏k, L)`` back into ``(N, C, *output_size)``.

    >>> tuple(engine.nn.Fold(output_size=(4, 5), kernel_size=(2, 2))(engine.randn(1, 12, 12)).shape)
    (1, 3, 4, 5)
    """

    __constants__ = ["output_size", "kernel_size", "dilation", "padding", "stride"]

    def __init__(self, output_size: Any, kernel_size: Any, dilation: Any = 1, padding: Any = 0,
                 stride: Any = 1) -> None:
        super().__init__()
        self.output_size = output_size
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.padding = padding
        self.stride = stride

    def forward(self, input: Tensor) -> Tensor:
        return F.fold(input, self.output_size, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self) -> str:
        return ("output_size={output_size}, kernel_size={kernel_size}, dilation={dilation}, "
                "padding={padding}, "
                "stride={stride}").format(**self.__dict__)


class Unfold(Module):
    """Extracts sliding blocks of ``(N, C, H, W)`` input as columns ``(N, C·∏k, L)``.

    >>> tuple(engine.nn.Unfold(kernel_size=(2, 3))(engine.randn(2, 5, 3, 4)).shape)
    (2, 30, 4)
    """

    __constants__ = ["kernel_size", "dilation", "padding", "stride"]

    def __init__(self, kernel_size: Any, dilation: Any = 1, padding: Any = 0, stride: Any = 1) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.padding = padding
        self.stride = stride

    def forward(self, input: Tensor) -> Tensor:
        return F.unfold(input, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self) -> str:
        return "kernel_size={kernel_size}, dilation={dilation}, padding={padding}, stride={stride}".format(
            **self.__dict__)
