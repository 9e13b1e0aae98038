"""Reductions: sums, extrema, moments, norms, (log-)softmax and scans."""

from __future__ import annotations

import builtins
from collections import namedtuple
from typing import Any

import numpy as np

from .._autograd import dims_batch, linear_jvp, primitive, transpose_jvp
from .._kernels import sum_fast
from .._meta import _bound, _fresh, _probe_dtype, _reduced, elementwise_shape
from ..tensor import Tensor
from ._registry import OPS, op
from .elementwise import exp, float_only, log, sqrt, to_float, where
from .shape import cat, expand, flip, gather, movedim, narrow, norm_dim, reshape, squeeze, unsqueeze

_max_result = namedtuple("max", ["values", "indices"])
_min_result = namedtuple("min", ["values", "indices"])


def _dims(dim: object, ndim: int) -> tuple[int, ...] | None:
    if dim is None:
        return None
    if isinstance(dim, int):
        d = norm_dim(dim, ndim)
        return (d,) if ndim else None  # a 0-d tensor takes dim 0 or -1: the whole (one) element
    dims = tuple(norm_dim(d, ndim) for d in dim)
    return dims if dims and ndim else None


def _keep_shape(shape: tuple, dims: tuple | None) -> tuple:
    if dims is None:
        return (1,) * len(shape)
    return tuple(1 if i in dims else s for i, s in enumerate(shape))


def _expand_back(g: Tensor, shape: tuple, dims: tuple | None, keepdim: bool) -> Tensor:
    """Broadcast a reduced gradient back over the reduced dims."""
    if not keepdim:
        g = reshape(g, _keep_shape(shape, dims))
    return expand(g, shape)


# ---------------------------------------------------------------- sums
@primitive()
def _sum(x, dims, keepdim):
    return sum_fast(x, dims, keepdim)  # np.sum, rows added faster where it can (engine._kernels)


_sum.defvjp(lambda ctx, g, dims, keepdim: _expand_back(g, ctx.in_meta[0][0], dims, keepdim))
_sum.defjvp(linear_jvp)
_sum.defbatch(dims_batch("dims"))


@_sum.defshape
def _reduction_shape(prim: Any, arrays: list, params: dict) -> Any:
    dt = _probe_dtype(prim, arrays, params)  # bad axes, empty reductions without identity
    a = _bound(prim, arrays, params)
    dims = a["dims"] if "dims" in a else a["dim"]
    return _fresh(_reduced(np.shape(a["x"]), dims, bool(a.get("keepdim"))), dt)


@op(method=True)
def sum(input, dim=None, keepdim=False, *, dtype=None):  # noqa: A001
    """Sum over all elements, or over ``dim``."""
    if dtype is not None:
        input = input.to(dtype)
    elif input._data.dtype.kind in "bi" and input._data.dtype != np.int64:
        input = input.to(np.int64)
    return _sum(input, dims=_dims(dim, input._data.ndim), keepdim=keepdim)


@op(method=True)
def mean(input, dim=None, keepdim=False, *, dtype=None):
    """Arithmetic mean over all elements, or over ``dim``."""
    if dtype is not None:
        input = input.to(dtype)
    if input._data.dtype.kind != "f":
        raise RuntimeError(
            "mean(): could not infer output dtype. Input dtype must be either a floating point or "
            f"complex dtype. Got: {input.dtype.name.capitalize()}")
    dims = _dims(dim, input._data.ndim)
    if not _count(input._data.shape, dims):
        return sum(input, dims, keepdim) * float("nan")
    return _mean(input, dims=dims, keepdim=keepdim)


def _count(shape: tuple, dims: tuple | None) -> int:
    return int(np.prod([shape[d] for d in dims])) if dims is not None else int(np.prod(shape))


# A primitive of its own (not sum / n) because, as torch's MeanBackward, it saves no tensors:
# its graph may be run twice without retain_graph.
@primitive()
def _mean(x, dims, keepdim):
    return np.mean(x, axis=dims, keepdims=keepdim)


_mean.defvjp(lambda ctx, g, dims, keepdim: _expand_back(g, ctx.in_meta[0][0], dims, keepdim)
             / _count(ctx.in_meta[0][0], dims))
_mean.defjvp(linear_jvp)
_mean.defbatch(dims_batch("dims"))
_mean.defshape(_reduction_shape)


@op(method=True)
def nansum(input, dim=None, keepdim=False):
    """Sum treating NaN as zero."""
    return sum(where(input != input, 0.0, input), dim, keepdim)


@primitive()
def _cumsum(x, dim):
    return np.cumsum(x, axis=dim)


_cumsum.defvjp(lambda ctx, g, dim: flip(_cumsum(flip(g, dim), dim=dim), dim))
_cumsum.defjvp(linear_jvp)
_cumsum.defbatch(dims_batch("dim"))


@_cumsum.defshape
def _scan_shape(prim: Any, arrays: list, params: dict) -> Any:
    return _fresh(np.shape(arrays[0]), _probe_dtype(prim, arrays, params))


@op(method=True)
def cumsum(input, dim, *, dtype=None):
    """Running sum along ``dim``."""
    if dtype is not None:
        input = input.to(dtype)
    elif input._data.dtype.kind in "bi" and input._data.dtype != np.int64:
        input = input.to(np.int64)
    if input._data.ndim == 0:  # numpy's cumsum of a 0-d array has shape (1,)
        norm_dim(dim, 0)
        return reshape(_cumsum(reshape(input, (1,)), dim=0), ())
    return _cumsum(input, dim=norm_dim(dim, input._data.ndim))


# ---------------------------------------------------------------- products
def _int_to_long(input: Tensor, dtype: object) -> Tensor:
    if dtype is not None:
        return input.to(dtype)
    if input._data.dtype.kind in "bi" and input._data.dtype != np.int64:
        return input.to(np.int64)
    return input


@primitive(save=(0, -1))
def _prod(x, dim, keepdim):
    return np.prod(x, axis=dim, keepdims=keepdim)


@_prod.defvjp
def _prod_vjp(ctx, g, x, out, dim, keepdim):
    shape = ctx.in_meta[0][0]
    if not shape:
        return g
    if dim is None:  # as torch: the whole-tensor product is the product along dim 0 of the flat input
        x, g, out, dim = reshape(x, (-1,)), reshape(g, (1,)), reshape(out, (1,)), 0
    elif not keepdim:
        g, out = unsqueeze(g, dim), unsqueeze(out, dim)
    if not (x._data == 0).any():
        grad = g * (out / x)
    else:  # torch's zero-safe form: the product of all the other entries of the slice
        grad = g * _prod_of_others(x, dim)
    return reshape(grad, shape)


_prod.defjvp(transpose_jvp)
_prod.defbatch(dims_batch("dim"))
_prod.defshape(_reduction_shape)


def _prod_of_others(x: Tensor, dim: int) -> Tensor:
    """For each entry, the product of the other entries along ``dim``: exclusive cumulative
    products from the left times those from the right (no division, so zeros are fine)."""
    n = x._data.shape[dim]
    if n == 0:
        return x
    ones = Tensor._make(np.ones(_keep_shape(x._data.shape, (dim,)), x._data.dtype))
    left = cumprod(cat([ones, narrow(x, dim, 0, n - 1)], dim), dim)
    right = flip(cumprod(cat([ones, flip(narrow(x, dim, 1, n - 1), dim)], dim), dim), dim)
    return left * right


@op(method=True)
def prod(input, dim=None, keepdim=False, *, dtype=None):
    """Product of all elements, or along ``dim``; gradients are exact with zeros in the input."""
    input = _int_to_long(input, dtype)
    if dim is not None and not isinstance(dim, (int, np.integer)):
        raise TypeError("prod(): argument 'dim' must be int, not " + type(dim).__name__)
    if dim is None:
        return _prod(input, dim=None, keepdim=False)
    return _prod(input, dim=norm_dim(dim, input._data.ndim), keepdim=keepdim)


@primitive(save=(0, -1))
def _cumprod(x, dim):
    return np.cumprod(x, axis=dim)


@_cumprod.defvjp
def _cumprod_vjp(ctx, g, x, out, dim):
    n = x._data.shape[dim] if x._data.ndim else 1
    if n <= 1:
        return g
    if not (x._data == 0).any():
        return _rev_cumsum(out * g, dim) / x
    # With zeros: grad_i = sum_{k >= i} g_k prod_{j <= k, j != i} x_j. Row i of the (n, n) table
    # below is x with x_i replaced by 1, so its cumprod holds prod_{j <= k, j != i} x_j.
    xm = movedim(x, dim, -1)
    gm = movedim(g, dim, -1)
    eye = Tensor._make(np.eye(n, dtype=bool))
    table = cumprod(where(eye, 1.0, unsqueeze(xm, -2)), -1)
    upper = Tensor._make(np.triu(np.ones((n, n), x._data.dtype)))
    grad = sum(table * upper * unsqueeze(gm, -2), -1)
    return movedim(grad, -1, dim)


_cumprod.defjvp(transpose_jvp)
_cumprod.defbatch(dims_batch("dim"))
_cumprod.defshape(_scan_shape)


def _rev_cumsum(x: Tensor, dim: int) -> Tensor:
    return flip(cumsum(flip(x, dim), dim), dim)


@op(method=True)
def cumprod(input, dim, *, dtype=None):
    """Running product along ``dim``; gradients are exact with zeros in the input."""
    input = _int_to_long(input, dtype)
    if input._data.ndim == 0:
        norm_dim(dim, 0)
        return reshape(_cumprod(reshape(input, (1,)), dim=0), ())
    return _cumprod(input, dim=norm_dim(dim, input._data.ndim))


# ---------------------------------------------------------------- scans
_cummax_result = namedtuple("cummax", ["values", "indices"])
_cummin_result = namedtuple("cummin", ["values", "indices"])


def _cum_extremum(input: Tensor, dim: int, is_max: bool) -> tuple:
    x = input._data
    if x.ndim == 0:
        norm_dim(dim, 0)
        idx = np.zeros((), np.int64)
        return (_cummax_result if is_max else _cummin_result)(input, Tensor._make(idx))
    d = norm_dim(dim, x.ndim)
    run = (np.maximum if is_max else np.minimum).accumulate(x, axis=d)
    # torch's index is the latest position that set the running value: ties move it forward, and
    # every NaN (which propagates) does too.
    hit = x == run
    if x.dtype.kind == "f":
        hit |= np.isnan(x)
    pos = np.arange(x.shape[d]).reshape((-1,) + (1,) * (x.ndim - 1 - d))
    idx = np.maximum.accumulate(np.where(hit, pos, 0), axis=d).astype(np.int64)
    values = gather(input, d, Tensor._make(idx))
    return (_cummax_result if is_max else _cummin_result)(values, Tensor._make(idx))


@op(method=True, n_outputs=2)
def cummax(input, dim):
    """Running maximum along ``dim`` and the index where it was (last) attained."""
    return _cum_extremum(input, dim, True)


@op(method=True, n_outputs=2)
def cummin(input, dim):
    """Running minimum along ``dim`` and the index where it was (last) attained."""
    return _cum_extremum(input, dim, False)


@primitive(save=(0, -1))
def _logcumsumexp(x, dim):
    return np.logaddexp.accumulate(x, axis=dim)


@_logcumsumexp.defvjp
def _logcumsumexp_vjp(ctx, g, x, out, dim):
    # torch's stable form of grad_i = sum_{k >= i} g_k exp(x_i - out_k): the positive and
    # negative parts of g go through a reversed logcumsumexp separately.
    lowest = float(np.finfo(g._data.dtype).min)
    log_abs = log(g.abs())
    pos = where(g > 0, log_abs, lowest)
    neg = where(g < 0, log_abs, lowest)

    def rev(t: Tensor) -> Tensor:
        return flip(_logcumsumexp(flip(t, dim), dim=dim), dim)

    return exp(rev(pos - out) + x) - exp(rev(neg - out) + x)


_logcumsumexp.defjvp(transpose_jvp)
_logcumsumexp.defbatch(dims_batch("dim"))
_logcumsumexp.defshape(_scan_shape)


@op(method=True)
def logcumsumexp(input, dim):
    """``log(cumsum(exp(input), dim))``, computed stably."""
    float_only("logcumsumexp_out_cpu", input._data.dtype)
    if input._data.ndim == 0:
        norm_dim(dim, 0)
        return input
    return _logcumsumexp(input, dim=norm_dim(dim, input._data.ndim))


@op(method=True)
def diff(input, n=1, dim=-1, prepend=None, append=None):
    """``n``-th forward difference along ``dim`` (after joining ``prepend`` and ``append``)."""
    if n < 0:
        raise RuntimeError(f"order must be non-negative but got {n}")
    if input._data.ndim == 0:
        raise RuntimeError("diff expects input to be at least one-dimensional")
    d = norm_dim(dim, input._data.ndim)
    if n == 0:  # torch ignores prepend and append then
        return input
    parts = [t for t in (prepend, input, append) if t is not None]
    x = cat(parts, d) if len(parts) > 1 else input
    for _ in range(n):
        size = x._data.shape[d]
        if size == 0:
            break
        x = narrow(x, d, 1, size - 1) - narrow(x, d, 0, size - 1)
    return x


# ---------------------------------------------------------------- extrema
@primitive(save=(0, -1))
def _amax(x, dims, keepdim):
    return np.amax(x, axis=dims, keepdims=keepdim)


@primitive(save=(0, -1))
def _amin(x, dims, keepdim):
    return np.amin(x, axis=dims, keepdims=keepdim)


def _extremum_vjp(ctx, g, x, out, dims, keepdim):
    # Ties share the gradient evenly (torch's amax/amin convention).
    shape = ctx.in_meta[0][0]
    if not keepdim:
        out, g = reshape(out, _keep_shape(shape, dims)), reshape(g, _keep_shape(shape, dims))
    mask = Tensor._make(x._data == out._data).to(g.dtype)
    count = mask.sum(dim=dims, keepdim=True)
    return g * mask / count


_amax.defvjp(_extremum_vjp)
_amax.defjvp(transpose_jvp)
_amax.defbatch(dims_batch("dims"))
_amax.defshape(_reduction_shape)
_amin.defvjp(_extremum_vjp)
_amin.defjvp(transpose_jvp)
_amin.defbatch(dims_batch("dims"))
_amin.defshape(_reduction_shape)


def _check_nonempty(input: Tensor, name: str, dims: tuple | None) -> None:
    shape = input._data.shape
    if (dims is None and input._data.size == 0) or (dims and builtins.any(shape[d] == 0 for d in dims)):
        raise IndexError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0. "
                         "Specify the reduction dim with the 'dim' argument.")


@op(method=True)
def amax(input, dim=(), keepdim=False):
    """Maximum over ``dim`` (all dims when empty); ties share the gradient."""
    dims = _dims(dim, input._data.ndim)
    _check_nonempty(input, "amax", dims)
    return _amax(input, dims=dims, keepdim=keepdim)


@op(method=True)
def amin(input, dim=(), keepdim=False):
    """Minimum over ``dim`` (all dims when empty); ties share the gradient."""
    dims = _dims(dim, input._data.ndim)
    _check_nonempty(input, "amin", dims)
    return _amin(input, dims=dims, keepdim=keepdim)


def _truth(input: Tensor, dim: object, keepdim: bool, fn: object) -> Tensor:
    x = input._data
    dims = _dims(dim, x.ndim)
    r = fn(x, axis=dims, keepdims=keepdim)
    # torch: uint8 in, uint8 out; every other dtype gives bool
    return Tensor._make(np.asarray(r, np.uint8 if x.dtype == np.uint8 else np.bool_))


@op(differentiable=(), method="all", name="all")
def all_(input, dim=None, keepdim=False):
    """True where every element (over ``dim``, or all) is non-zero. Not differentiable.

    >>> engine.tensor([1.0, 0.0]).all()
    tensor(False)
    """
    return _truth(input, dim, keepdim, np.all)


@op(differentiable=(), method="any", name="any")
def any_(input, dim=None, keepdim=False):
    """True where some element (over ``dim``, or all) is non-zero. Not differentiable.

    >>> engine.tensor([1.0, 0.0]).any()
    tensor(True)
    """
    return _truth(input, dim, keepdim, np.any)


def _arg_extremum(input: Tensor, dim: int | None, keepdim: bool, fn: object) -> Tensor:
    x = input._data
    if dim is None:
        r = np.asarray(fn(x.reshape(-1)))
        return Tensor._make(r.reshape((1,) * x.ndim) if keepdim else r.astype(np.int64))
    d = norm_dim(dim, x.ndim)
    r = fn(x, axis=d, keepdims=keepdim) if x.ndim else np.asarray(fn(x))
    return Tensor._make(np.asarray(r, np.int64))


def _nan_first(fn: object, nanfn: object) -> object:
    # torch propagates NaN: a NaN is the extremum and its index is returned.
    def f(x, axis=None, keepdims=False):
        if x.dtype.kind == "f" and np.isnan(x).any():
            return np.argmax(np.isnan(x), axis=axis, keepdims=keepdims) if axis is not None \
                else np.argmax(np.isnan(x))
        return fn(x, axis=axis, keepdims=keepdims) if axis is not None else fn(x)
    return f


_argmax_np = _nan_first(np.argmax, None)
_argmin_np = _nan_first(np.argmin, None)


@op(differentiable=(), method=True)
def argmax(input, dim=None, keepdim=False):
    """Index of the maximum (first occurrence). Not differentiable."""
    return _arg_extremum(input, dim, keepdim, _argmax_np)


@op(differentiable=(), method=True)
def argmin(input, dim=None, keepdim=False):
    """Index of the minimum (first occurrence). Not differentiable."""
    return _arg_extremum(input, dim, keepdim, _argmin_np)


def _extremum_dim(input: Tensor, dim: object, keepdim: bool, is_max: bool) -> object:
    from .elementwise import maximum, minimum
    if isinstance(dim, Tensor):  # max(input, other)
        return (maximum if is_max else minimum)(input, dim)
    if dim is None:
        return amax(input) if is_max else amin(input)
    d = norm_dim(dim, input._data.ndim)
    name = "max" if is_max else "min"
    if input._data.ndim and input._data.shape[d] == 0:
        raise IndexError(f"{name}(): Expected reduction dim {d} to have non-zero size.")
    idx = (argmax if is_max else argmin)(input, d, True)
    values = gather(input, d, idx) if input._data.ndim else input
    if not keepdim and input._data.ndim:
        values, idx = squeeze(values, d), squeeze(idx, d)
    return (_max_result if is_max else _min_result)(values, idx)


@op(method=True, n_outputs=None)
def max(input, dim=None, keepdim=False):  # noqa: A001
    """Whole-tensor max (ties share the gradient), or ``(values, indices)`` along ``dim``, or
    ``maximum(input, other)`` when ``dim`` is a tensor."""
    return _extremum_dim(input, dim, keepdim, True)


@op(method=True, n_outputs=None)
def min(input, dim=None, keepdim=False):  # noqa: A001
    """Whole-tensor min, or ``(values, indices)`` along ``dim``."""
    return _extremum_dim(input, dim, keepdim, False)


# ---------------------------------------------------------------- moments and norms
def _correction(name: str, dim: object, unbiased: object, correction: object) -> tuple[object, float]:
    """torch's three spellings: ``var(x, unbiased)``, ``var(x, dim, unbiased, keepdim)`` and
    ``var(x, dim, correction=c)`` (``correction=None`` is 1)."""
    if isinstance(dim, bool):  # the old positional form var(input, unbiased)
        dim, unbiased = None, dim
    if unbiased is not None and correction is not None:
        raise TypeError(f"{name}() received an invalid combination of arguments: both unbiased and "
                        "correction")
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    return dim, correction


@op(method=True)
def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Variance with Bessel's ``correction`` (1 by default; ``unbiased=False`` is 0)."""
    dim, correction = _correction("var", dim, unbiased, correction)
    dims = _dims(dim, input._data.ndim)
    shape = input._data.shape
    n = int(np.prod([shape[d] for d in dims])) if dims is not None else input._data.size
    centered = input - mean(input, dims, keepdim=True)
    return sum(centered * centered, dims, keepdim) / builtins.max(n - correction, 0)


@op(method=True)
def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Standard deviation with Bessel's ``correction``."""
    dim, correction = _correction("std", dim, unbiased, correction)
    return sqrt(var(input, dim, correction=correction, keepdim=keepdim))


@op(method=True)
def norm(input, p="fro", dim=None, keepdim=False, dtype=None):
    """Vector p-norm over ``dim`` (Frobenius by default); the gradient at 0 is 0, as in torch."""
    if dtype is not None:
        input = input.to(dtype)
    x = to_float(input)
    if p == "nuc":  # through the registry: engine.linalg sits above this module
        return OPS["linalg.matrix_norm"].fn(x, "nuc", (-2, -1) if dim is None else dim, keepdim)
    if p in ("fro", 2, 2.0):
        sq = sum(x * x, dim, keepdim)
        safe = where(sq == 0, 1.0, sq)
        return where(sq == 0, 0.0, sqrt(safe))
    if p in (float("inf"), "inf"):
        return amax(x.abs(), () if dim is None else dim, keepdim)
    if p in (-float("inf"),):
        return amin(x.abs(), () if dim is None else dim, keepdim)
    if p == 1:
        return sum(x.abs(), dim, keepdim)
    if p == 0:
        return sum((x != 0).to(x.dtype), dim, keepdim)
    s = sum(x.abs() ** p, dim, keepdim)
    safe = where(s == 0, 1.0, s)
    return where(s == 0, 0.0, safe ** (1.0 / p))


# ---------------------------------------------------------------- softmax family
@op(method=True)
def logsumexp(input, dim, keepdim=False):
    """``log(sum(exp(input), dim))``, computed stably."""
    x = to_float(input)
    dims = _dims(dim, x._data.ndim)
    m = np.amax(x._data, axis=dims, keepdims=True) if x._data.size else np.zeros(
        _keep_shape(x._data.shape, dims), x._data.dtype)
    m = np.where(np.isfinite(m), m, 0).astype(x._data.dtype)
    shift = Tensor._make(m)
    out = log(sum(exp(x - shift), dims, True)) + shift
    return out if keepdim else reshape(out, tuple(s for i, s in enumerate(out._data.shape)
                                                  if i not in (dims or range(x._data.ndim))))


def _softmax_input(input: Tensor, dim: int | None, dtype: object) -> tuple[Tensor, int | None]:
    """softmax's and log_softmax's operand (cast, made float) and its normalised dim."""
    if dtype is not None:
        input = input.to(dtype)
    x = to_float(input)
    ndim = x._data.ndim
    if dim is None:  # torch's legacy implicit-dim rule
        dim = 0 if ndim in (0, 1, 3) else 1
    return x, norm_dim(dim, ndim) if ndim else None


@primitive(save=(-1,))
def _log_softmax(x, dim):
    if x.size == 0:
        return x.copy()
    # np.amax and np.sum's own reductions without their Python layers (the classifier's hot end)
    m = np.maximum.reduce(x, dim, None, None, True)
    if not np.isfinite(m).all():
        m = np.where(np.isfinite(m), m, 0)  # all -inf slices stay -inf - log(0) = nan
    shifted = x - m
    s = np.log(np.add.reduce(np.exp(shifted), dim, None, None, True))
    return np.subtract(shifted, s, out=shifted) if type(shifted) is np.ndarray else shifted - s


# torch's formula, in engine ops so that it differentiates again: g - softmax * sum(g).
_log_softmax.defvjp(lambda ctx, g, out, dim: g - exp(out) * sum(g, dim, keepdim=True))
_log_softmax.defjvp(lambda ctx, ts, x, dim: ts[0] - sum(ts[0] * exp(ctx.out), dim, keepdim=True))
_log_softmax.defbatch(dims_batch("dim"))
_log_softmax.defshape(_scan_shape)


@op(method=True)
def log_softmax(input, dim=None, dtype=None):
    """``input - logsumexp(input, dim)``, as one primitive (it is the hot end of every classifier).

    >>> engine.log_softmax(engine.tensor([0.0, 0.0]), dim=0)
    tensor([-0.6931, -0.6931])
    """
    x, dim = _softmax_input(input, dim, dtype)
    return _log_softmax(x, dim=dim)


@primitive(save=(-1,))
def _softmax(x, dim, mask=None):
    # ``mask`` (bool, broadcast to x; attention's): entries where it is False get probability 0,
    # as if they were -inf, without a masked copy of x of its own
    if x.size == 0:
        return x.copy()
    y = np.where(mask, x, -np.inf).astype(x.dtype, copy=False) if mask is not None else x.copy()
    m = np.amax(y, axis=dim, keepdims=True)
    y -= np.where(np.isfinite(m), m, 0)  # all -inf slices: 0/0 = nan, as torch
    np.exp(y, out=y)
    with np.errstate(invalid="ignore"):
        y /= np.sum(y, axis=dim, keepdims=True)
    return y


@primitive(save=(0, 1))
def _softmax_backward(g, y, dim):
    # y (g - sum(g y)) in one buffer; masked entries have y = 0, so they get no gradient
    d = np.multiply(g, y, out=np.empty(y.shape, np.result_type(g, y)))  # out=: 0-d stays an array
    s = np.sum(d, axis=dim, keepdims=True)
    np.subtract(g, s, out=d)
    d *= y
    return d


@_softmax_backward.defvjp
def _softmax_backward_vjp(ctx, h, g, y, dim):
    # linear in g (the same map again); in y: h (g - sum(g y)) - g sum(h y)
    hg = _softmax_backward(h, y, dim=dim) if ctx.edges[0] is not None else None
    hy = None
    if ctx.edges[1] is not None:
        hy = h * (g - sum(g * y, dim, keepdim=True)) - g * sum(h * y, dim, keepdim=True)
    return hg, hy


_softmax_backward.defjvp(transpose_jvp)
_softmax_backward.defbatch(dims_batch("dim"))
_softmax_backward.defshape(elementwise_shape)


_softmax.defvjp(lambda ctx, g, y, dim, mask=None: _softmax_backward(g, y, dim=dim))
_softmax.defjvp(lambda ctx, ts, x, dim, mask=None: _softmax_backward(ts[0], ctx.out, dim=dim))
_softmax.defbatch(dims_batch("dim"))
_softmax.defshape(_scan_shape)


@op(method=True)
def softmax(input, dim=None, dtype=None):
    """``exp(input) / sum(exp(input), dim)``, as one primitive (attention's hot spot).

    >>> engine.softmax(engine.tensor([0.0, 0.0]), dim=0)
    tensor([0.5, 0.5])
    """
    x, dim = _softmax_input(input, dim, dtype)
    return _softmax(x, dim=dim)
