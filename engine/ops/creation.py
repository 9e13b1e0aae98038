"""Constructors and random numbers."""

from __future__ import annotations

import builtins

import numpy as np

from .._autograd import random_op
from .._dtype import float32, get_default_dtype, to_dtype, type_name
from ..tensor import Size, Tensor, tensor
from ._registry import op

_rng = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Seed the random constructors (``rand``, ``randn``, ...)."""
    global _rng
    _rng = np.random.default_rng(seed)
    return _rng


def _generator(generator: object = None) -> np.random.Generator:
    """The generator a random op draws from (under a vectorized vmap, it obeys ``randomness``)."""
    random_op()
    return generator if generator is not None else _rng


def _size(size: tuple) -> tuple:
    if len(size) == 1 and isinstance(size[0], (tuple, list, Size)):
        size = tuple(size[0])
    for s in size:
        if not isinstance(s, (int, np.integer)) or isinstance(s, bool):
            raise TypeError(f"size must be a tuple of ints, got {s!r}")
        if s < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension {s}: {list(size)}")
    return tuple(int(s) for s in size)


def _finish(arr: np.ndarray, requires_grad: bool) -> Tensor:
    t = Tensor._make(arr)
    if requires_grad:
        t.requires_grad_()
    return t


def _np_dtype(dtype: object, default: object = None) -> np.dtype:
    return to_dtype(dtype).np if dtype is not None else (default or get_default_dtype()).np


@op(differentiable=())
def zeros(*size, dtype=None, device=None, requires_grad=False):
    """A tensor of zeros."""
    return _finish(np.zeros(_size(size), _np_dtype(dtype)), requires_grad)


@op(differentiable=())
def ones(*size, dtype=None, device=None, requires_grad=False):
    """A tensor of ones."""
    return _finish(np.ones(_size(size), _np_dtype(dtype)), requires_grad)


@op(differentiable=())
def empty(*size, dtype=None, device=None, requires_grad=False):
    """An uninitialised tensor (zeros here: numpy memory is never shared between requests)."""
    return zeros(*size, dtype=dtype, requires_grad=requires_grad)


def _fill_dtype(fill_value: object) -> object:
    if isinstance(fill_value, bool):
        return to_dtype("bool")
    if isinstance(fill_value, int):
        return to_dtype("int64")
    return float32


@op(differentiable=())
def full(size, fill_value, *, dtype=None, device=None, requires_grad=False):
    """A tensor filled with ``fill_value`` (its dtype inferred from the value, as in torch)."""
    dt = _np_dtype(dtype, _fill_dtype(fill_value))
    return _finish(np.full(_size((size,)), fill_value, dt), requires_grad)


def _like(input: Tensor, dtype: object) -> np.dtype:
    return to_dtype(dtype).np if dtype is not None else input._data.dtype


@op(differentiable=())
def zeros_like(input, *, dtype=None, device=None, requires_grad=False):
    """Zeros with ``input``'s shape and dtype."""
    return _finish(np.zeros(input._data.shape, _like(input, dtype)), requires_grad)


@op(differentiable=())
def ones_like(input, *, dtype=None, device=None, requires_grad=False):
    """Ones with ``input``'s shape and dtype."""
    return _finish(np.ones(input._data.shape, _like(input, dtype)), requires_grad)


@op(differentiable=())
def full_like(input, fill_value, *, dtype=None, device=None, requires_grad=False):
    """``fill_value`` with ``input``'s shape and dtype."""
    return _finish(np.full(input._data.shape, fill_value, _like(input, dtype)), requires_grad)


@op(differentiable=())
def empty_like(input, *, dtype=None, device=None, requires_grad=False):
    """Zeros with ``input``'s shape and dtype."""
    return zeros_like(input, dtype=dtype, requires_grad=requires_grad)


@op(differentiable=())
def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False):
    """Values from ``start`` to ``end`` (exclusive) by ``step``."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise RuntimeError("step must be nonzero")
    if ((end - start) / step) < 0:
        raise RuntimeError("upper bound and larger bound inconsistent with step sign")
    ints = builtins.all(isinstance(v, (int, np.integer)) for v in (start, end, step))
    dt = _np_dtype(dtype, to_dtype("int64") if ints else float32)
    n = int(np.ceil((end - start) / step))
    return _finish((start + step * np.arange(n, dtype=np.float64)).astype(dt), requires_grad)


@op(differentiable=())
def linspace(start, end, steps, *, dtype=None, device=None, requires_grad=False):
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive."""
    if steps < 0:
        raise RuntimeError("number of steps must be non-negative")
    return _finish(np.linspace(_endpoint(start), _endpoint(end), steps).astype(_np_dtype(dtype)),
                   requires_grad)


def _endpoint(v: object) -> object:
    # a tensor endpoint as a Python float, in double, as torch reads it: numpy would compute in a
    # float32 endpoint's precision
    return float(v.item()) if isinstance(v, Tensor) else v


@op(differentiable=())
def logspace(start, end, steps, base=10.0, *, dtype=None, device=None, requires_grad=False):
    """``steps`` values from ``base ** start`` to ``base ** end``, evenly spaced in the exponent.

    >>> engine.logspace(0, 2, 3)
    tensor([  1.,  10., 100.])
    """
    if steps < 0:
        raise RuntimeError("number of steps must be non-negative")
    exps = np.linspace(_endpoint(start), _endpoint(end), steps)
    return _finish(np.power(float(base), exps).astype(_np_dtype(dtype)), requires_grad)


def _tri_indices(name: str, row: int, col: int, offset: int, dtype: object) -> Tensor:
    if row < 0:
        raise RuntimeError(f"row must be non-negative, got{row}")
    if col < 0:
        raise RuntimeError(f"col must be non-negative, got{col}")
    mask = np.tri(row, col, offset, dtype=np.bool_)
    if name == "triu":
        mask = ~np.tri(row, col, offset - 1, dtype=np.bool_)
    return _finish(np.stack(np.nonzero(mask)).astype(_np_dtype(dtype, to_dtype("int64"))).reshape(2, -1),
                   False)


@op(differentiable=())
def tril_indices(row, col, offset=0, *, dtype=None, device=None, layout=None):
    """The (row, column) coordinates of a ``row`` x ``col`` matrix's lower triangle (on and below
    diagonal ``offset``), as a 2 x N tensor in row-major order.

    >>> engine.tril_indices(2, 2)
    tensor([[0, 1, 1],
            [0, 0, 1]])
    """
    return _tri_indices("tril", row, col, offset, dtype)


@op(differentiable=())
def triu_indices(row, col, offset=0, *, dtype=None, device=None, layout=None):
    """The coordinates of the upper triangle (on and above diagonal ``offset``), 2 x N.

    >>> engine.triu_indices(2, 2)
    tensor([[0, 0, 1],
            [0, 1, 1]])
    """
    return _tri_indices("triu", row, col, offset, dtype)


@op(differentiable=())
def eye(n, m=None, *, dtype=None, device=None, requires_grad=False):
    """The identity matrix (``n`` x ``m``)."""
    return _finish(np.eye(n, n if m is None else m, dtype=_np_dtype(dtype)), requires_grad)


@op(differentiable=())
def rand(*size, generator=None, dtype=None, device=None, requires_grad=False):
    """Uniform samples on [0, 1)."""
    rng = _generator(generator)
    return _finish(rng.random(_size(size)).astype(_np_dtype(dtype)), requires_grad)


@op(differentiable=())
def randn(*size, generator=None, dtype=None, device=None, requires_grad=False):
    """Standard normal samples."""
    rng = _generator(generator)
    return _finish(rng.standard_normal(_size(size)).astype(_np_dtype(dtype)), requires_grad)


@op(differentiable=())
def randint(low, high=None, size=(), *, generator=None, dtype=None, device=None):
    """Integers uniform on ``[low, high)``."""
    if high is None:
        low, high = 0, low
    elif isinstance(high, (tuple, list)):  # randint(high, size)
        low, high, size = 0, low, high
    rng = _generator(generator)
    return Tensor._make(rng.integers(low, high, _size((size,))).astype(
        _np_dtype(dtype, to_dtype("int64"))))


@op(differentiable=())
def randperm(n, *, generator=None, dtype=None, device=None, requires_grad=False, layout=None,
             pin_memory=False):
    """A random permutation of ``0 .. n-1`` (int64 unless ``dtype`` says otherwise).

    >>> sorted(engine.randperm(4).tolist())
    [0, 1, 2, 3]
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise TypeError(f"randperm(): argument 'n' (position 1) must be int, not {type(n).__name__}")
    if n < 0:
        raise RuntimeError(f"Trying to create tensor with negative dimension {n}: [{n}]")
    rng = _generator(generator)
    return _finish(rng.permutation(int(n)).astype(_np_dtype(dtype, to_dtype("int64"))), requires_grad)


@op(differentiable=(), method=True)
def multinomial(input, num_samples, replacement=False, *, generator=None, out=None):
    """``num_samples`` category indices per row of ``input``'s (unnormalized) probabilities,
    without replacement (categories of probability 0 last, as in torch) unless ``replacement``.

    >>> engine.multinomial(engine.tensor([0.0, 1.0]), 1)
    tensor([1])
    """
    if out is not None:
        raise TypeError("multinomial(): out= is not supported")
    p = input._data
    if p.dtype.kind != "f":
        raise RuntimeError(f"multinomial only supports floating-point dtypes for input, got: "
                           f"{type_name(p.dtype)}")
    if p.ndim not in (1, 2):
        raise RuntimeError("prob_dist must be 1 or 2 dim")
    if not isinstance(num_samples, (int, np.integer)) or isinstance(num_samples, bool) or num_samples <= 0:
        raise RuntimeError("cannot sample n_sample <= 0 samples")
    n = p.shape[-1]
    if not replacement and num_samples > n:
        raise RuntimeError("cannot sample n_sample > prob_dist.size(-1) samples without replacement")
    rows = p.reshape(-1, n).astype(np.float64)
    if not np.isfinite(rows).all() or (rows < 0).any():
        raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
    if rows.shape[0] and (rows.sum(1) <= 0).any():
        raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
    rng = _generator(generator)
    if replacement:
        cdf = np.cumsum(rows, 1)
        cdf /= cdf[:, -1:]
        u = rng.random((rows.shape[0], int(num_samples)))
        idx = np.stack([np.searchsorted(c, v, side="right") for c, v in zip(cdf, u)]) if len(rows) else \
            np.zeros((0, int(num_samples)), np.int64)
        idx = np.minimum(idx, n - 1)
    else:  # the exponential race (torch's way): the largest p / E, E ~ Exp(1), win in order
        keys = rows / rng.exponential(size=rows.shape)
        idx = np.argsort(-keys, axis=1, kind="stable")[:, :int(num_samples)]
    return Tensor._make(idx.astype(np.int64).reshape(p.shape[:-1] + (int(num_samples),)))


@op(differentiable=())
def rand_like(input, *, dtype=None, layout=None, device=None, requires_grad=False, memory_format=None):
    """Uniform samples with ``input``'s shape."""
    return _finish(_generator().random(input._data.shape).astype(_like(input, dtype)), requires_grad)


@op(differentiable=())
def randn_like(input, *, dtype=None, layout=None, device=None, requires_grad=False, memory_format=None):
    """Normal samples with ``input``'s shape."""
    return _finish(_generator().standard_normal(input._data.shape).astype(_like(input, dtype)),
                   requires_grad)


__all__ = ["manual_seed", "tensor"]
