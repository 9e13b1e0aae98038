"""Padding layers (torch.nn.modules.padding's): zero, constant, reflection, replication, circular."""

from __future__ import annotations

from typing import Any

from ...tensor import Tensor
from .. import functional as F
from .module import Module
from .utils import _ntuple, _pair, _quadruple

__all__ = ["CircularPad1d", "CircularPad2d", "CircularPad3d", "ConstantPad1d", "ConstantPad2d",
           "ConstantPad3d",
           "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d", "ReplicationPad2d",
           "ReplicationPad3d", "ZeroPad1d", "ZeroPad2d", "ZeroPad3d"]

_TUPLES = {1: _pair, 2: _quadruple, 3: _ntuple(6)}


class _PadNd(Module):
    """``padding`` as F.pad takes it: (left, right[, top, bottom[, front, back]])."""

    __constants__ = ["padding"]
    _nd: int
    _mode: str

    def __init__(self, padding: Any) -> None:
        super().__init__()
        self.padding = _TUPLES[self._nd](padding)

    def forward(self, input: Tensor) -> Tensor:
        return F.pad(input, self.padding, self._mode)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class _CircularPadNd(_PadNd):
    _mode = "circular"

    def forward(self, input: Tensor) -> Tensor:
        n = self._nd + 1
        if input.dim() != n and input.dim() != n + 1:
            raise ValueError(f"expected {n}D or {n + 1}D input (got {input.dim()}D input)")
        return F.pad(input, self.padding, "circular")


class CircularPad1d(_CircularPadNd):
    """Pads the last dimension by wrapping around.

    >>> engine.nn.CircularPad1d(2)(engine.arange(4.0).reshape(1, 1, 4))
    tensor([[[2., 3., 0., 1., 2., 3., 0., 1.]]])
    """

    _nd = 1


class CircularPad2d(_CircularPadNd):
    """Pads the last two dimensions by wrapping around.

    >>> tuple(engine.nn.CircularPad2d((1, 1, 2, 0))(engine.ones(1, 1, 3, 3)).shape)
    (1, 1, 5, 5)
    """

    _nd = 2


class CircularPad3d(_CircularPadNd):
    """Pads the last three dimensions by wrapping around.

    >>> tuple(engine.nn.CircularPad3d(1)(engine.ones(1, 1, 2, 2, 2)).shape)
    (1, 1, 4, 4, 4)
    """

    _nd = 3


class _ConstantPadNd(_PadNd):
    __constants__ = ["padding", "value"]

    def __init__(self, padding: Any, value: float) -> None:
        super().__init__(padding)
        self.value = value

    def forward(self, input: Tensor) -> Tensor:
        return F.pad(input, self.padding, "constant", self.value)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"


class ConstantPad1d(_ConstantPadNd):
    """Pads the last dimension with ``value``.

    >>> engine.nn.ConstantPad1d(1, 3.5)(engine.zeros(1, 2))
    tensor([[3.5000, 0.0000, 0.0000, 3.5000]])
    """

    _nd = 1


class ConstantPad2d(_ConstantPadNd):
    """Pads the last two dimensions with ``value``.

    >>> tuple(engine.nn.ConstantPad2d((1, 0, 2, 1), 3.5)(engine.zeros(1, 2, 2)).shape)
    (1, 5, 3)
    """

    _nd = 2


class ConstantPad3d(_ConstantPadNd):
    """Pads the last three dimensions with ``value``.

    >>> tuple(engine.nn.ConstantPad3d(1, 3.5)(engine.zeros(1, 1, 2, 2, 2)).shape)
    (1, 1, 4, 4, 4)
    """

    _nd = 3


class _ZeroPadNd(_ConstantPadNd):
    def __init__(self, padding: Any) -> None:
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class ZeroPad1d(_ZeroPadNd):
    """Pads the last dimension with zeros.

    >>> engine.nn.ZeroPad1d((1, 2))(engine.ones(1, 2))
    tensor([[0., 1., 1., 0., 0.]])
    """

    _nd = 1


class ZeroPad2d(_ZeroPadNd):
    """Pads the last two dimensions with zeros.

    >>> tuple(engine.nn.ZeroPad2d(2)(engine.ones(1, 1, 3, 3)).shape)
    (1, 1, 7, 7)
    """

    _nd = 2


class ZeroPad3d(_ZeroPadNd):
    """Pads the last three dimensions with zeros.

    >>> tuple(engine.nn.ZeroPad3d(1)(engine.ones(1, 1, 2, 2, 2)).shape)
    (1, 1, 4, 4, 4)
    """

    _nd = 3


class _ReflectionPadNd(_PadNd):
    _mode = "reflect"


class ReflectionPad1d(_ReflectionPadNd):
    """Pads the last dimension with its reflection (the edge not repeated).

    >>> engine.nn.ReflectionPad1d(2)(engine.arange(4.0).reshape(1, 1, 4))
    tensor([[[2., 1., 0., 1., 2., 3., 2., 1.]]])
    """

    _nd = 1


class ReflectionPad2d(_ReflectionPadNd):
    """Pads the last two dimensions with their reflection.

    >>> tuple(engine.nn.ReflectionPad2d(1)(engine.ones(1, 1, 3, 3)).shape)
    (1, 1, 5, 5)
    """

    _nd = 2


class ReflectionPad3d(_ReflectionPadNd):
    """Pads the last three dimensions with their reflection.

    >>> tuple(engine.nn.ReflectionPad3d(1)(engine.ones(1, 1, 2, 2, 2)).shape)
    (1, 1, 4, 4, 4)
    """

    _nd = 3


class _ReplicationPadNd(_PadNd):
    _mode = "replicate"


class ReplicationPad1d(_ReplicationPadNd):
    """Pads the last dimension by repeating its edge values.

    >>> engine.nn.ReplicationPad1d(2)(engine.arange(4.0).reshape(1, 1, 4))
    tensor([[[0., 0., 0., 1., 2., 3., 3., 3.]]])
    """

    _nd = 1


class ReplicationPad2d(_ReplicationPadNd):
    """Pads the last two dimensions by repeating their edges.

    >>> tuple(engine.nn.ReplicationPad2d(1)(engine.ones(1, 1, 3, 3)).shape)
    (1, 1, 5, 5)
    """

    _nd = 2


class ReplicationPad3d(_ReplicationPadNd):
    """Pads the last three dimensions by repeating their edges.

    >>> tuple(engine.nn.ReplicationPad3d(1)(engine.ones(1, 1, 2, 2, 2)).shape)
    (1, 1, 4, 4, 4)
    """

    _nd = 3
