"""Sorting and selection: sort, argsort, topk, kthvalue, median, quantile.

Values are gathered from the input at numpy-computed indices, so their gradient goes to the
selected entries (torch's ``value_selecting_reduction_backward``); indices are not differentiable.
NaN sorts above every number, as in torch. Among equal values the earliest index is chosen (torch's
choice there is an implementation detail of its kernels and may differ).
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import numpy as np

from .._autograd import primitive, transpose_jvp, zeros_jvp
from .._meta import _fresh, _probe_dtype
from ..tensor import Tensor
from ._registry import as_tensor_arg, op, promote
from .elementwise import lerp, where
from .shape import gather, movedim, norm_dim, reshape, squeeze, unsqueeze

_sort_result = namedtuple("sort", ["values", "indices"])
_topk_result = namedtuple("topk", ["values", "indices"])
_kthvalue_result = namedtuple("kthvalue", ["values", "indices"])
_median_result = namedtuple("median", ["values", "indices"])


def _argsort(x: np.ndarray, d: int, descending: bool) -> np.ndarray:
    """Stable argsort along ``d``, NaN last (first when descending); ties keep their order."""
    if not descending:
        return np.argsort(x, axis=d, kind="stable")
    # sorting the reversed array and reversing back keeps equal values in their original order
    n = x.shape[d]
    return n - 1 - np.flip(np.argsort(np.flip(x, d), axis=d, kind="stable"), d)


def _select(input: Tensor, d: int, idx: np.ndarray) -> Tensor:
    return gather(input, d, Tensor._make(idx.astype(np.int64, copy=False)))


# ---------------------------------------------------------------- sort and top-k
@op(method=True, n_outputs=2)
def sort(input, dim=-1, descending=False, stable=False):
    """Sorted values along ``dim`` and their indices; stable (ties keep their order)."""
    x = input._data
    if x.ndim == 0:
        norm_dim(dim, 0)
        return _sort_result(input, Tensor._make(np.zeros((), np.int64)))
    d = norm_dim(dim, x.ndim)
    idx = _argsort(x, d, descending)
    return _sort_result(_select(input, d, idx), Tensor._make(idx.astype(np.int64)))


@op(differentiable=(), method=True)
def argsort(input, dim=-1, descending=False, stable=False):
    """Indices that sort ``input`` along ``dim``. Not differentiable."""
    return sort(input, dim, descending, stable).indices


@op(method=True, n_outputs=2)
def topk(input, k, dim=-1, largest=True, sorted=True):
    """The ``k`` largest (or smallest) values along ``dim`` and their indices."""
    x = input._data
    d = norm_dim(dim, x.ndim)
    n = x.shape[d] if x.ndim else 1
    if not 0 <= k <= n:
        raise RuntimeError("selected index k out of range")
    if x.ndim == 0:
        return _topk_result(input, Tensor._make(np.zeros((), np.int64)))
    idx = np.take(_argsort(x, d, largest), np.arange(k), axis=d)
    return _topk_result(_select(input, d, idx), Tensor._make(idx.astype(np.int64)))


# ---------------------------------------------------------------- order statistics
def _kth(input: Tensor, k: int, dim: int, keepdim: bool, result: type) -> tuple:
    """The k-th smallest (0-based) along ``dim`` with its index; NaN rows give the first NaN."""
    x = input._data
    if x.ndim == 0:
        return result(input, Tensor._make(np.zeros((), np.int64)))
    d = norm_dim(dim, x.ndim)
    idx = np.take(np.argsort(x, axis=d, kind="stable"), [k], axis=d)
    if x.dtype.kind == "f":
        nan = np.isnan(x)
        has = nan.any(axis=d, keepdims=True)
        if has.any():
            idx = np.where(has, np.argmax(nan, axis=d, keepdims=True), idx)
    values = _select(input, d, idx)
    idx_t = Tensor._make(idx.astype(np.int64))
    if not keepdim:
        values, idx_t = squeeze(values, d), squeeze(idx_t, d)
    return result(values, idx_t)


@op(method=True, n_outputs=2)
def kthvalue(input, k, dim=-1, keepdim=False):
    """The ``k``-th smallest value (1-based) along ``dim`` and its index."""
    x = input._data
    d = norm_dim(dim, x.ndim)
    n = x.shape[d] if x.ndim else 1
    if not 1 <= k <= n:
        raise RuntimeError(f"kthvalue(): selected number k out of range for dimension {d}")
    return _kth(input, k - 1, d, keepdim, _kthvalue_result)


@primitive(save=(0, -1))
def _median_all(x):
    flat = x.reshape(-1)
    if flat.size == 0 or (x.dtype.kind == "f" and np.isnan(flat).any()):
        return np.asarray(np.nan, x.dtype)
    return np.asarray(np.partition(flat, (flat.size - 1) // 2)[(flat.size - 1) // 2])


@_median_all.defvjp
def _median_all_vjp(ctx, g, x, out):
    # torch's evenly_distribute_backward: entries equal to the median share the gradient
    v = out._data
    mask = np.isnan(x._data) if np.isnan(v) else x._data == v
    return Tensor._make(mask.astype(g._data.dtype)) * (g / max(int(mask.sum()), 1))


_median_all.defjvp(transpose_jvp)


@_median_all.defshape
def _median_all_shape(prim: Any, arrays: list, params: dict) -> Any:
    return _fresh((), _probe_dtype(prim, arrays, params))


@op(method=True, n_outputs=None)
def median(input, dim=None, keepdim=False):
    """The lower median of all elements (ties share the gradient), or ``(values, indices)`` along
    ``dim`` (the gradient goes to the index)."""
    if dim is None:
        return _median_all(input)
    x = input._data
    d = norm_dim(dim, x.ndim)
    n = x.shape[d] if x.ndim else 1
    if n == 0:
        raise IndexError(f"median(): Expected reduction dim {d} to have non-zero size.")
    return _kth(input, (n - 1) // 2, d, keepdim, _median_result)


# ---------------------------------------------------------------- quantiles
_INTERPOLATIONS = ("linear", "lower", "higher", "midpoint", "nearest")


@op(method=True)
def quantile(input, q, dim=None, keepdim=False, *, interpolation="linear"):
    """The ``q``-quantiles (a number or a 1-D tensor) of all elements or along ``dim``, by sorting
    and interpolating between neighbours as torch does."""
    x = input._data
    if x.dtype.kind != "f":
        raise RuntimeError("quantile() input tensor must be either float or double dtype")
    if isinstance(q, Tensor):
        if q._data.dtype != x.dtype:
            raise RuntimeError("quantile() q tensor must be same dtype as the input tensor")
        if q._data.ndim > 1:
            raise RuntimeError("quantile() q must be a scalar or 1D tensor")
        qs, q_dim = q._data.astype(np.float64).reshape(-1), q._data.ndim == 1
    else:
        if not 0 <= q <= 1:
            raise RuntimeError(f"quantile() q must be in the range [0, 1] but got {q}")
        qs, q_dim = np.asarray([q], np.float64), False
    if ((qs < 0) | (qs > 1)).any():
        raise RuntimeError("quantile() q values must be in the range [0, 1]")
    if interpolation not in _INTERPOLATIONS:
        raise RuntimeError(f"quantile() interpolation must be one of linear, lower, higher, midpoint "
                           f"or nearest, but got {interpolation}")
    if dim is None:
        src, d = reshape(input, (-1,)), 0
    else:
        d = norm_dim(dim, x.ndim)
        src = reshape(input, (1,)) if x.ndim == 0 else input
    n = src._data.shape[d]
    if n == 0:
        raise IndexError("quantile() input tensor must be non-empty")
    srt = movedim(sort(src, d).values, d, -1)                       # (..., n)
    ranks = np.broadcast_to(qs * (n - 1), srt._data.shape[:-1] + (qs.size,))
    has_nan = np.isnan(srt._data).any(axis=-1, keepdims=True)
    ranks = np.where(has_nan, n - 1, ranks)                          # NaN rows pick the NaN
    if interpolation == "lower":
        ranks = np.floor(ranks)
    elif interpolation == "higher":
        ranks = np.ceil(ranks)
    elif interpolation == "nearest":
        ranks = np.round(ranks)
    below = ranks.astype(np.int64)
    out = gather(srt, -1, Tensor._make(below))                       # (..., Q)
    if interpolation in ("linear", "midpoint"):
        w = np.full(ranks.shape, 0.5) if interpolation == "midpoint" else ranks - below
        weight = Tensor._make(w.astype(x.dtype))
        if interpolation == "linear" and isinstance(q, Tensor) and q.requires_grad:
            # As torch: the weight is q * (n - 1) - floor(...), so the result is differentiable in q
            # (a NaN row's weight stays constant).
            wq = reshape(q, (-1,)) * (n - 1) - Tensor._make(below.astype(x.dtype))
            weight = where(Tensor._make(has_nan), weight, wq)
        above = gather(srt, -1, Tensor._make(np.ceil(ranks).astype(np.int64)))
        out = lerp(out, above, weight)
    out = movedim(out, -1, 0)                                        # (Q, ...)
    if keepdim:
        if dim is None:
            out = reshape(out, (qs.size,) + (1,) * x.ndim)
        elif x.ndim:
            out = unsqueeze(out, d + 1)
    return out if q_dim else squeeze(out, 0)


# ---------------------------------------------------------------- row groups (unique along a dim)
@primitive()
def _row_groups(rows):
    """Each row's group among the distinct rows of a 2-d array, the groups numbered in the rows'
    lexicographic order (``np.unique(rows, axis=0, return_inverse=True)``'s inverse)."""
    if rows.shape[0] == 0:
        return np.zeros(0, np.int64)
    return np.unique(rows, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)


_row_groups.defjvp(zeros_jvp)  # integer results: no tangent
_row_groups.defbatch(lambda prim, a, f: np.stack([prim.fwd(x) for x in a[0]]))


@_row_groups.defshape
def _row_groups_shape(prim: Any, arrays: list, params: dict) -> Any:
    # the values (group numbers) are unknown in meta mode: what is built from them is bounded
    return _fresh((np.shape(arrays[0])[0],), np.dtype(np.int64))


# ---------------------------------------------------------------- searchsorted / bucketize
@primitive()
def _searchsorted(seq, values, right, out_dtype):
    """Insertion points of ``values`` into the sorted last dim of ``seq`` (1-d: one sequence for
    all; else one per leading index, those dims matching ``values``')."""
    side = "right" if right else "left"
    if np.size(values) == 0:
        return np.zeros(np.shape(values), out_dtype)
    if seq.ndim == 1:
        out = np.searchsorted(seq, values, side=side)
    else:
        s2 = seq.reshape(-1, seq.shape[-1])
        v2 = values.reshape(s2.shape[0], -1)
        out = np.stack([np.searchsorted(s, v, side=side) for s, v in zip(s2, v2)]).reshape(values.shape)
    return np.asarray(out, dtype=out_dtype)


_searchsorted.defjvp(zeros_jvp)  # integer results: no tangent


@_searchsorted.defbatch
def _searchsorted_batch(prim: Any, a: list, f: list, right: bool, out_dtype: str) -> np.ndarray:
    n = next(x.shape[0] for x, fl in zip(a, f) if fl)
    seqs = a[0] if f[0] else [a[0]] * n
    vals = a[1] if f[1] else [a[1]] * n
    return np.stack([prim.fwd(s, v, right=right, out_dtype=out_dtype) for s, v in zip(seqs, vals)])


@_searchsorted.defshape
def _searchsorted_shape(prim: Any, arrays: list, params: dict) -> Any:
    return _fresh(np.shape(arrays[1]), np.dtype(params["out_dtype"]))


def _dims(t: Tensor) -> str:
    return str(list(t._data.shape))


@op(differentiable=())
def searchsorted(sorted_sequence, input, *, out_int32=False, right=False, side=None, out=None,
                 sorter=None):
    """Where each of ``input`` would go in ``sorted_sequence``'s last dim to keep it sorted:
    the first such place, or the last with ``right=True`` / ``side="right"``.

    >>> engine.searchsorted(engine.tensor([1.0, 3.0, 5.0]), engine.tensor([3.0, 6.0]))
    tensor([1, 3])
    """
    if out is not None:
        raise TypeError("searchsorted(): out= is not supported")
    if side is not None:
        if side not in ("left", "right"):
            raise RuntimeError(f"torch.searchsorted(): side can only be 'left' or 'right' but got {side}")
        if right and side == "left":
            raise RuntimeError("torch.searchsorted(): side and right can't be set to opposites, got side "
                               "of left while right was True")
        right = side == "right"
    seq = as_tensor_arg(sorted_sequence).detach()
    scalar = not isinstance(input, Tensor)
    v = as_tensor_arg(input).detach()
    if sorter is not None:
        seq = gather(seq, -1, as_tensor_arg(sorter).long())
    if seq._data.ndim == 0:
        raise RuntimeError("torch.searchsorted(): boundaries tensor should have positive dimension, but "
                           "got 0 dimension")
    if seq._data.ndim > 1:
        if scalar or v._data.ndim == 0:
            raise RuntimeError(f"torch.searchsorted(): input value can be a scalar only when boundaries "
                               f"tensor dimension is 1, but we got boundaries tensor dim("
                               f"{seq._data.ndim}) and input value's dim({v._data.ndim}) numel("
                               f"{v._data.size})")
        if seq._data.shape[:-1] != v._data.shape[:-1]:
            raise RuntimeError(f"torch.searchsorted(): boundaries tensor should be 1 dimension or the "
                               f"first N-1 dimensions of boundaries tensor and input value tensor must "
                               f"match, but we got boundaries tensor {_dims(seq)} and input value tensor "
                               f"{_dims(v)}")
    if seq._data.dtype != v._data.dtype:
        dt = promote(seq, v) if not scalar else seq._data.dtype
        seq, v = seq.to(dt), v.to(dt)
    return _searchsorted(seq, v, right=bool(right), out_dtype="int32" if out_int32 else "int64")


@op(differentiable=())
def bucketize(input, boundaries, *, out_int32=False, right=False, out=None):
    """The bucket of each entry among the sorted 1-d ``boundaries``: ``i`` with
    ``boundaries[i-1] < x <= boundaries[i]`` (``right=True``: ``boundaries[i-1] <= x < boundaries[i]``).

    >>> engine.bucketize(engine.tensor([2.0, 6.0]), engine.tensor([1.0, 3.0, 5.0]))
    tensor([1, 3])
    """
    b = as_tensor_arg(boundaries)
    if b._data.ndim != 1:
        raise RuntimeError(f"boundaries tensor must be 1 dimension, but got dim({b._data.ndim})")
    return searchsorted(b, input, out_int32=out_int32, right=right, out=out)
