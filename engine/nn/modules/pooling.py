"""Pooling layers (torch.nn.modules.pooling's): max, average, power-average and adaptive."""

from __future__ import annotations

from typing import Any

from ...tensor import Tensor
from .. import functional as F
from .module import Module
from .utils import _single

__all__ = ["MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d", "LPPool1d",
           "LPPool2d",
           "LPPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d", "AdaptiveAvgPool1d",
           "AdaptiveAvgPool2d", "AdaptiveAvgPool3d"]


class _MaxPoolNd(Module):
    __constants__ = ["kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode"]
    _fn: Any

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, input: Tensor) -> Any:
        return type(self)._fn(input, self.kernel_size, self.stride, self.padding, self.dilation,
                              ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self) -> str:
        return ("kernel_size={kernel_size}, stride={stride}, padding={padding}, dilation={dilation}, "
                "ceil_mode={ceil_mode}").format(**self.__dict__)


class MaxPool1d(_MaxPoolNd):
    """Max over sliding windows of ``(N, C, L)`` input (indices too with ``return_indices``).

    >>> tuple(engine.nn.MaxPool1d(3, stride=2)(engine.randn(20, 16, 50)).shape)
    (20, 16, 24)
    """

    _fn = F.max_pool1d


class MaxPool2d(_MaxPoolNd):
    """Max over sliding windows of ``(N, C, H, W)`` input.

    >>> tuple(engine.nn.MaxPool2d(2)(engine.randn(1, 3, 4, 4)).shape)
    (1, 3, 2, 2)
    """

    _fn = F.max_pool2d


class MaxPool3d(_MaxPoolNd):
    """Max over sliding windows of ``(N, C, D, H, W)`` input.

    >>> tuple(engine.nn.MaxPool3d(2)(engine.randn(1, 3, 4, 4, 4)).shape)
    (1, 3, 2, 2, 2)
    """

    _fn = F.max_pool3d


class _AvgPoolNd(Module):
    __constants__ = ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"]

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool1d(_AvgPoolNd):
    """Mean over sliding windows of ``(N, C, L)`` input.

    >>> engine.nn.AvgPool1d(3, stride=2)
    AvgPool1d(kernel_size=(3,), stride=(2,), padding=(0,))
    """

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True) -> None:
        super().__init__()
        self.kernel_size = _single(kernel_size)
        self.stride = _single(stride if stride is not None else kernel_size)
        self.padding = _single(padding)
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad

    def forward(self, input: Tensor) -> Tensor:
        return F.avg_pool1d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)


class _AvgPool23(_AvgPoolNd):
    __constants__ = ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"]
    _fn: Any

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: int | None = None) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input: Tensor) -> Tensor:
        return type(self)._fn(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                              self.count_include_pad, self.divisor_override)


class AvgPool2d(_AvgPool23):
    """Mean over sliding windows of ``(N, C, H, W)`` input.

    >>> tuple(engine.nn.AvgPool2d(2)(engine.ones(1, 1, 4, 4)).shape)
    (1, 1, 2, 2)
    """

    _fn = F.avg_pool2d


class AvgPool3d(_AvgPool23):
    """Mean over sliding windows of ``(N, C, D, H, W)`` input.

    >>> tuple(engine.nn.AvgPool3d(2)(engine.ones(1, 1, 4, 4, 4)).shape)
    (1, 1, 2, 2, 2)
    """

    _fn = F.avg_pool3d


class _LPPoolNd(Module):
    __constants__ = ["norm_type", "kernel_size", "stride", "ceil_mode"]
    _fn: Any

    def __init__(self, norm_type: float, kernel_size: Any, stride: Any = None,
                 ceil_mode: bool = False) -> None:
        super().__init__()
        self.norm_type = norm_type
        self.kernel_size = kernel_size
        self.stride = stride
        self.ceil_mode = ceil_mode

    def forward(self, input: Tensor) -> Tensor:
        return type(self)._fn(input, float(self.norm_type), self.kernel_size, self.stride, self.ceil_mode)

    def extra_repr(self) -> str:
        return ("norm_type={norm_type}, kernel_size={kernel_size}, stride={stride}, "
                "ceil_mode={ceil_mode}").format(**self.__dict__)


class LPPool1d(_LPPoolNd):
    """Power-average pooling ``(sum x^p)^(1/p)`` over windows of ``(N, C, L)`` input.

    >>> tuple(engine.nn.LPPool1d(2, 3, stride=2)(engine.randn(2, 4, 9)).shape)
    (2, 4, 4)
    """

    _fn = F.lp_pool1d


class LPPool2d(_LPPoolNd):
    """Power-average pooling over windows of ``(N, C, H, W)`` input.

    >>> tuple(engine.nn.LPPool2d(2, 2)(engine.randn(1, 1, 4, 4)).shape)
    (1, 1, 2, 2)
    """

    _fn = F.lp_pool2d


class LPPool3d(_LPPoolNd):
    """Power-average pooling over windows of ``(N, C, D, H, W)`` input.

    >>> tuple(engine.nn.LPPool3d(2, 2)(engine.randn(1, 1, 4, 4, 4)).shape)
    (1, 1, 2, 2, 2)
    """

    _fn = F.lp_pool3d


class _AdaptiveMaxPoolNd(Module):
    __constants__ = ["output_size", "return_indices"]
    _fn: Any

    def __init__(self, output_size: Any, return_indices: bool = False) -> None:
        super().__init__()
        self.output_size = output_size
        self.return_indices = return_indices

    def forward(self, input: Tensor) -> Any:
        return type(self)._fn(input, self.output_size, self.return_indices)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    """Max pooling to a fixed output length.

    >>> tuple(engine.nn.AdaptiveMaxPool1d(5)(engine.randn(1, 64, 8)).shape)
    (1, 64, 5)
    """

    _fn = F.adaptive_max_pool1d


class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    """Max pooling to a fixed output size (None keeps that dimension).

    >>> tuple(engine.nn.AdaptiveMaxPool2d((None, 7))(engine.randn(1, 64, 10, 9)).shape)
    (1, 64, 10, 7)
    """

    _fn = F.adaptive_max_pool2d


class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    """Max pooling to a fixed output size.

    >>> tuple(engine.nn.AdaptiveMaxPool3d(2)(engine.randn(1, 2, 5, 5, 5)).shape)
    (1, 2, 2, 2, 2)
    """

    _fn = F.adaptive_max_pool3d


class _AdaptiveAvgPoolNd(Module):
    __constants__ = ["output_size"]
    _fn: Any

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, input: Tensor) -> Tensor:
        return type(self)._fn(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    """Average pooling to a fixed output length.

    >>> tuple(engine.nn.AdaptiveAvgPool1d(5)(engine.randn(1, 64, 8)).shape)
    (1, 64, 5)
    """

    _fn = F.adaptive_avg_pool1d


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    """Average pooling to a fixed output size (None keeps that dimension).

    >>> tuple(engine.nn.AdaptiveAvgPool2d(1)(engine.randn(2, 8, 5, 5)).shape)
    (2, 8, 1, 1)
    """

    _fn = F.adaptive_avg_pool2d


class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    """Average pooling to a fixed output size.

    >>> tuple(engine.nn.AdaptiveAvgPool3d(2)(engine.randn(1, 2, 5, 5, 5)).shape)
    (1, 2, 2, 2, 2)
    """

    _fn = F.adaptive_avg_pool3d
