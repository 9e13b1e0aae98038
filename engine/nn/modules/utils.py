"""Argument helpers shared by the layers (torch.nn.modules.utils's)."""

from __future__ import annotations

import collections.abc
from collections.abc import Callable
from itertools import repeat
from typing import Any

from ... import empty as _engine_empty
from ...tensor import Tensor

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
