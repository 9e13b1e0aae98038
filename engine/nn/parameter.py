"""``engine.nn.Parameter`` and ``engine.nn.Buffer``: tensors a :class:`~engine.nn.Module` registers
when they are assigned to one of its attributes."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..tensor import Tensor

__all__ = ["Parameter", "Buffer"]


class Parameter(Tensor):
    """A leaf tensor that a module registers as one of its parameters (``torch.nn.Parameter``).
    It shares ``data``'s values; ops on it give plain tensors.

    >>> p = engine.nn.Parameter(engine.ones(2))
    >>> p.requires_grad, p.is_leaf
    (True, True)
    """

    __slots__ = ()

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True) -> Parameter:
        if data is None:
            arr = np.empty((0,), np.float32)
        elif isinstance(data, Tensor):
            arr = data._data
        else:
            raise TypeError(f"Parameter(): argument 'data' must be Tensor, not {type(data).__name__}")
        p = cls._make(arr)
        if requires_grad:
            p.requires_grad_()
        return p

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True) -> None:
        pass  # (made whole by __new__: Tensor.__init__ is the legacy constructor)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __reduce_ex__(self, protocol: Any) -> tuple:
        # a copy (deepcopy, pickle) is a Parameter again, with its own values
        return (Parameter, (Tensor._make(self._data.copy()), self.requires_grad))

    def __deepcopy__(self, memo: dict) -> Parameter:
        if id(self) not in memo:
            p = Parameter(Tensor._make(self._data.copy()), self.requires_grad)
            if self.grad is not None:
                p.grad = Tensor._make(self.grad._data.copy())
            memo[id(self)] = p
        return memo[id(self)]


class Buffer(Tensor):
    """A tensor that a module registers as a buffer when assigned to one of its attributes
    (``torch.nn.Buffer``): saved in ``state_dict`` unless ``persistent=False``, never trained.

    >>> m = engine.nn.Module(); m.steps = engine.nn.Buffer(engine.zeros(()))
    >>> list(m.buffers())
    [tensor(0.)]
    """

    __slots__ = ("persistent",)

    def __new__(cls, data: Tensor, *, persistent: bool = True) -> Buffer:
        if not isinstance(data, Tensor):
            raise TypeError(f"Buffer(): argument 'data' must be Tensor, not {type(data).__name__}")
        b = cls._make(data._data)
        b.persistent = persistent
        return b

    def __init__(self, data: Tensor, *, persistent: bool = True) -> None:
        pass
