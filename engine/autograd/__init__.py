"""``engine.autograd``: torch.autograd's entry points."""

from __future__ import annotations

from .._autograd import (
    backward,
    enable_grad,
    grad,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)
from . import forward_ad, function, functional
from .function import Function, FunctionCtx, once_differentiable

__all__ = ["grad", "backward", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled",
           "Function", "FunctionCtx", "forward_ad", "function", "functional", "once_differentiable"]
