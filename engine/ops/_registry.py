"""The public op table: every op the engine exposes, by its torch name.

Ops are registered with :func:`op`; the service resolves wire op names here, ``GET /v1/ops``
lists this table, and the gradient-check tests iterate it so that no op can skip them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .._dtype import result_type
from ..tensor import Tensor

__all__ = ["OpInfo", "OPS", "op", "lookup", "top_level", "as_tensor_arg", "promote"]


@dataclass(frozen=True)
class OpInfo:
    """An op's public name, function, signature and which arguments are differentiable."""

    name: str
    fn: Callable
    differentiable: tuple[str, ...]
    signature: inspect.Signature = field(compare=False)
    n_outputs: int | None = 1  # None: a variable number (split, unbind, ...)

    @property
    def is_differentiable(self) -> bool:
        return bool(self.differentiable)


OPS: dict[str, OpInfo] = {}

_NAMESPACES = {"engine.nn.functional": "nn.functional.", "engine.linalg": "linalg.",
               "engine.special": "special.", "engine.fft": "fft."}


def op(name: str | None = None, *, differentiable: tuple[str, ...] | None = None,
       method: bool | str = False, aliases: tuple[str, ...] = (),
       n_outputs: int | None = 1) -> Callable[[Callable], Callable]:
    """Register a public op. ``differentiable`` defaults to the first parameter.

    ``method=True`` also makes it a Tensor method of the same name (or the given name).
    """

    def deco(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        diff = differentiable
        if diff is None:
            diff = (next(iter(sig.parameters)),)
        full = name if name and "." in name else _namespace(fn.__module__) + (name or fn.__name__)
        info = OpInfo(full, fn, tuple(diff), sig, n_outputs)
        for n in (full, *aliases):
            if n in OPS:
                raise ValueError(f"op {n!r} registered twice")
            OPS[n] = info
        if method:
            setattr(Tensor, method if isinstance(method, str) else fn.__name__, fn)
        return fn

    return deco


def _namespace(module: str) -> str:
    # engine.nn.functional and its private submodules (engine.nn.functional._loss, ...) share one prefix
    for mod, prefix in _NAMESPACES.items():
        if module == mod or module.startswith(mod + "."):
            return prefix
    return ""


def lookup(name: str) -> OpInfo:
    """The op registered under ``name``; KeyError if none."""
    return OPS[name]


def top_level() -> dict[str, Callable]:
    """The ops registered without a namespace prefix, by name: the ``engine.*`` functions.

    >>> top_level()["add"] is OPS["add"].fn
    True
    """
    return {name: info.fn for name, info in OPS.items() if "." not in name}


def as_tensor_arg(x: object) -> Tensor:
    """Wrap a number or array argument as a constant tensor."""
    if isinstance(x, Tensor):
        return x
    from ..tensor import tensor
    return tensor(x)


def promote(*args: object) -> np.dtype:
    """The numpy dtype torch's promotion gives for these tensors and scalars."""
    return result_type(*args).np
