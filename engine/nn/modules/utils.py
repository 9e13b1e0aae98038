"""Argument helpers shared by the layers (torch.nn.modules.utils's)."""

from __future__ import annotations

import collections.abc
import math
from collections.abc import Callable
from itertools import repeat
from typing import Any

from ... import empty as _engine_empty
from ...tensor import Tensor
from .. import init
from ..parameter import Parameter

__all__: list[str] = []


def _ntuple(n: int, name: str = "parse") -> Callable[[Any], tuple]:
    def parse(x: Any) -> tuple:
        if isinstance(x, collections.abc.Iterable):
            return tuple(x)
        return tuple(repeat(x, n))

    parse.__name__ = name
    return parse


_single = _ntuple(1, "_single")
_pair = _ntuple(2, "_pair")
_triple = _ntuple(3, "_triple")
_quadruple = _ntuple(4, "_quadruple")


def _reverse_repeat_tuple(t: tuple, n: int) -> tuple:
    """``(1, 2)`` and 2 give ``(2, 2, 1, 1)``: a per-dimension padding in F.pad's order."""
    return tuple(x for x in reversed(t) for _ in range(n))


def _list_with_default(out_size: Any, defaults: list[int]) -> Any:
    if isinstance(out_size, int):
        return out_size
    if len(defaults) <= len(out_size):
        raise ValueError(f"Input dimension should be at least {len(out_size) + 1}")
    return [v if v is not None else d for v, d in zip(out_size, defaults[-len(out_size):])]


def _empty(*shape: int, device: Any = None, dtype: Any = None) -> Tensor:
    """``torch.empty(shape, device=, dtype=)`` for a layer's factory kwargs: only the CPU exists."""
    if device is not None and str(device).split(":")[0] != "cpu":
        raise RuntimeError(f"engine tensors live on the cpu only, not on {device!r}")
    return _engine_empty(*shape, dtype=dtype)


def _parameter(module: Any, name: str, shape: int | tuple | None, *, device: Any = None,
               dtype: Any = None) -> None:
    """Register ``module.<name>`` as an uninitialised Parameter of ``shape``, or as None (a layer
    built without it: ``bias=False``, ``affine=False``), as torch's layers do."""
    if shape is None:
        module.register_parameter(name, None)
        return
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    setattr(module, name, Parameter(_empty(*shape, device=device, dtype=dtype)))


def _reset_fan_in(weight: Tensor, bias: Tensor | None) -> None:
    """Linear's and the convolutions' default: weight kaiming_uniform_(a=sqrt(5)), that is
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the bias from the same range."""
    init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = init._calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        init.uniform_(bias, -bound, bound)


def _reset_affine(weight: Tensor | None, bias: Tensor | None) -> None:
    """The normalisation layers' affine: weight ones, bias zeros (each where there is one)."""
    if weight is not None:
        init.ones_(weight)
    if bias is not None:
        init.zeros_(bias)
