"""Batch normalisation (torch.nn.modules.batchnorm's): BatchNorm1d/2d/3d and their shared base."""

from __future__ import annotations

from typing import Any

from ... import int64, ones, tensor, zeros
from ..._autograd import no_grad
from ...tensor import Tensor
from .. import functional as F
from .. import init
from .module import Module
from .utils import _parameter, _reset_affine

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d"]


class _NormBase(Module):
    """Per-feature affine parameters and (with ``track_running_stats``) the running statistics."""

    _version = 2
    __constants__ = ["track_running_stats", "momentum", "eps", "num_features", "affine"]

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True,
                 track_running_stats: bool = True, device: Any = None, dtype: Any = None, *,
                 bias: bool = True) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        _parameter(self, "weight", num_features if affine else None, device=device, dtype=dtype)
        _parameter(self, "bias", num_features if affine and bias else None, device=device, dtype=dtype)
        if self.track_running_stats:
            self.register_buffer("running_mean", zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", tensor(0, dtype=int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            init.zeros_(self.running_mean)
            init.ones_(self.running_var)
            init.zeros_(self.num_batches_tracked)

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        _reset_affine(self.weight, self.bias)

    def _check_input_dim(self, input: Tensor) -> None:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return ("{num_features}, eps={eps}, momentum={momentum}, affine={affine}, bias={use_bias}, "
                "track_running_stats={track_running_stats}").format(**self.__dict__,
                                                                    use_bias=self.bias is not None)


class _BatchNorm(_NormBase):
    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        exponential_average_factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            with no_grad():
                self.num_batches_tracked.add_(1)
            # momentum=None: the running statistics are the plain average over all batches
            if self.momentum is None:
                exponential_average_factor = 1.0 / float(self.num_batches_tracked)
        # eval without running statistics normalises by the batch's own
        bn_training = True if self.training else self.running_mean is None and self.running_var is None
        use_running = not self.training or self.track_running_stats
        return F.batch_norm(input, self.running_mean if use_running else None,
                            self.running_var if use_running else None, self.weight, self.bias, bn_training,
                            exponential_average_factor, self.eps)


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over ``(N, C)`` or ``(N, C, L)`` input: batch statistics in training
    (updating the running ones), running statistics in eval.

    >>> tuple(engine.nn.BatchNorm1d(100, affine=False)(engine.randn(20, 100)).shape)
    (20, 100)
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() != 2 and input.dim() != 3:
            raise ValueError(f"expected 2D or 3D input (got {input.dim()}D input)")


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over ``(N, C, H, W)`` input, per channel.

    >>> bn = engine.nn.BatchNorm2d(3)
    >>> tuple(bn(engine.randn(4, 3, 5, 5)).shape), int(bn.num_batches_tracked)
    ((4, 3, 5, 5), 1)
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() != 4:
            raise ValueError(f"expected 4D input (got {input.dim()}D input)")


class BatchNorm3d(_BatchNorm):
    """Batch normalisation over ``(N, C, D, H, W)`` input, per channel.

    >>> tuple(engine.nn.BatchNorm3d(2)(engine.randn(2, 2, 3, 3, 3)).shape)
    (2, 2, 3, 3, 3)
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() != 5:
            raise ValueError(f"expected 5D input (got {input.dim()}D input)")
