"""Dropout with an explicit, reproducible random source.

The mask is drawn from ``generator``: None means the engine's global generator (seeded by
``engine.manual_seed``), an int is a seed (the same seed gives the same mask on every call, so a
graph sent twice, or a finite-difference check, sees one mask), and a ``numpy.random.Generator``
is used as is. Kept entries are scaled by ``1/(1-p)``, as in torch; torch's own random stream is
not reproduced, so masks differ from torch's for the same seed.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ...ops import creation
from ...ops._registry import as_tensor_arg, op
from ...tensor import Tensor
from ._activation import inplace_variant


def _rng(generator: object) -> np.random.Generator:
    if generator is None:
        return creation._generator()
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return np.random.default_rng(int(generator))
    if isinstance(generator, np.random.Generator):
        return generator
    raise TypeError(f"generator must be None, an int seed or a numpy.random.Generator, not "
                    f"{type(generator).__name__}")


def _check_p(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _masked(x: Tensor, p: float, mask_shape: tuple, generator: object) -> Tensor:
    """``x`` times a keep-mask of ``mask_shape`` (broadcast over ``x``) scaled by 1/(1-p)."""
    if p == 1.0:
        scale = np.zeros(mask_shape, x._data.dtype)
    else:
        keep = _rng(generator).random(mask_shape) >= p
        scale = (keep * (1.0 / (1.0 - p))).astype(x._data.dtype)
    return x * Tensor._make(scale)


@op()
@inplace_variant
def dropout(input, p=0.5, training=True, inplace=False, *, generator=None):
    """Zero each entry with probability ``p`` and scale the rest by ``1/(1-p)`` (when ``training``).

    ``generator``: None (the global generator, see ``engine.manual_seed``), an int seed, or a
    ``numpy.random.Generator``.

    >>> F.dropout(engine.ones(2, 3), 0.5, generator=0)
    tensor([[2., 0., 0.],
            [0., 2., 2.]])
    """
    _check_p(p)
    x = as_tensor_arg(input)
    if not training or p == 0.0 or x._data.size == 0:
        return x
    return _masked(x, p, x._data.shape, generator)


def _feature_dropout(input, p, training, inplace, generator, nd: int, name: str) -> Tensor:
    _check_p(p)
    x = as_tensor_arg(input)
    n = x._data.ndim
    if nd == 1 and n not in (2, 3):
        raise RuntimeError(f"dropout1d: Expected 2D or 3D input, but received a {n}D input. Note that "
                           "dropout1d exists to provide channel-wise dropout on inputs with 1 spatial "
                           "dimension, a channel dimension, and an optional batch dimension (i.e. 2D "
                           "or 3D inputs).")
    if nd > 1 and n not in (nd + 1, nd + 2):
        warnings.warn(f"{name}: Received a {n}-D input to {name}, which is deprecated and will result "
                      f"in an error in a future release.", stacklevel=3)
    if not training or p == 0.0 or x._data.size == 0:
        return x
    shape = x._data.shape if n == nd + 2 else (1,) + x._data.shape  # unbatched: one sample
    mask = shape[:2] + (1,) * (len(shape) - 2)
    return _masked(x, p, mask if n == nd + 2 else mask[1:], generator)


@op()
@inplace_variant
def dropout1d(input, p=0.5, training=True, inplace=False, *, generator=None):
    """Zero whole channels of (N, C, L) or (C, L) with probability ``p``.

    >>> F.dropout1d(engine.ones(1, 2, 3), 0.5, generator=1).shape
    torch.Size([1, 2, 3])
    """
    return _feature_dropout(input, p, training, inplace, generator, 1, "dropout1d")


@op()
@inplace_variant
def dropout2d(input, p=0.5, training=True, inplace=False, *, generator=None):
    """Zero whole channels of (N, C, H, W) or (C, H, W) with probability ``p``.

    >>> F.dropout2d(engine.ones(1, 2, 3, 3), 0.5, generator=1).shape
    torch.Size([1, 2, 3, 3])
    """
    return _feature_dropout(input, p, training, inplace, generator, 2, "dropout2d")


@op()
@inplace_variant
def dropout3d(input, p=0.5, training=True, inplace=False, *, generator=None):
    """Zero whole channels of (N, C, D, H, W) or (C, D, H, W) with probability ``p``.

    >>> F.dropout3d(engine.ones(1, 2, 2, 2, 2), 0.5, generator=1).shape
    torch.Size([1, 2, 2, 2, 2])
    """
    return _feature_dropout(input, p, training, inplace, generator, 3, "dropout3d")


# ---------------------------------------------------------------- alpha dropout (for SELU networks)
_ALPHA = 1.7580993408473766  # -SELU's negative saturation value, as torch's kernel has it


def _alpha(x: Tensor, p: float, mask_shape: tuple, generator: object) -> Tensor:
    """torch's alpha dropout: dropped entries go to SELU's saturation, then an affine map keeps
    the mean and variance: ``x * (keep * a) + (keep - 1) * alpha * a + alpha * a * p``."""
    a = 1.0 / math.sqrt((_ALPHA * _ALPHA * p + 1) * (1 - p)) if p < 1 else 0.0
    keep = (_rng(generator).random(mask_shape) >= p).astype(np.float64)
    mul = (keep * a).astype(x._data.dtype)
    add = ((keep - 1.0) * _ALPHA * a + _ALPHA * a * p).astype(x._data.dtype)
    return x * Tensor._make(mul) + Tensor._make(add)


@op()
@inplace_variant
def alpha_dropout(input, p=0.5, training=False, inplace=False, *, generator=None):
    """Dropout that keeps SELU's self-normalizing mean and variance (note: ``training=False`` by
    default, as in torch).

    >>> F.alpha_dropout(engine.zeros(2, 3), 0.5, True, generator=0).shape
    torch.Size([2, 3])
    """
    _check_p(p)
    x = as_tensor_arg(input)
    if not training or p == 0.0 or x._data.size == 0:
        return x
    return _alpha(x, p, x._data.shape, generator)


@op()
@inplace_variant
def feature_alpha_dropout(input, p=0.5, training=False, inplace=False, *, generator=None):
    """Alpha dropout of whole channels of (N, C, *).

    >>> F.feature_alpha_dropout(engine.zeros(2, 3, 4), 0.5, True, generator=0).shape
    torch.Size([2, 3, 4])
    """
    _check_p(p)
    x = as_tensor_arg(input)
    if not training or p == 0.0 or x._data.size == 0:
        return x
    s = x._data.shape
    return _alpha(x, p, s[:2] + (1,) * (len(s) - 2), generator)
