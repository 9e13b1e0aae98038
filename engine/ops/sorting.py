"""Sorting and selection: sort, argsort, topk, kthvalue, median, mode, quantile.

Values are gathered from the input at numpy-computed indices, so their gradient goes to the
selected entries (torch's ``value_selecting_reduction_backward``); indices are not differentiable.
NaN sorts above every number, as in torch. Among equal values the earliest index is chosen (torch's
choice there is an implementation detail of its kernels and may differ), except in ``mode``, which
replays torch's CPU kernel to return its index.
"""

from __future__ import annotations

import math
from collections import namedtuple
from collections.abc import Sequence
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
_mode_result = namedtuple("mode", ["values", "indices"])


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


# ---------------------------------------------------------------- mode
# torch's CPU mode sorts each row's (value, index) pairs with std::sort on ``value <`` and takes the
# last pair of the first longest run. std::sort is not stable, so which index of the mode comes out
# (and, with NaN, which value: NaN breaks the ordering) depends on libstdc++'s introsort; the
# helpers below replay it step by step so the engine returns the same pair.
_STD_THRESHOLD = 16  # libstdc++'s _S_threshold: introsort leaves runs this short to insertion sort


def _std_linear_insert(v: list, idx: list, i: int, lo: int) -> None:
    # __unguarded_linear_insert; ``lo`` keeps a NaN-broken ordering from running off the start
    val, vi = v[i], idx[i]
    j = i - 1
    while j >= lo and val < v[j]:
        v[j + 1], idx[j + 1] = v[j], idx[j]
        j -= 1
    v[j + 1], idx[j + 1] = val, vi


def _std_insertion_sort(v: list, idx: list, first: int, last: int) -> None:
    for i in range(first + 1, last):
        if v[i] < v[first]:
            val, vi = v[i], idx[i]
            v[first + 1:i + 1], idx[first + 1:i + 1] = v[first:i], idx[first:i]
            v[first], idx[first] = val, vi
        else:
            _std_linear_insert(v, idx, i, first)


def _std_adjust_heap(v: list, idx: list, first: int, hole: int, n: int, val: Any, vi: int) -> None:
    top, child = hole, hole
    while child < (n - 1) // 2:
        child = 2 * (child + 1)
        if v[first + child] < v[first + child - 1]:
            child -= 1
        v[first + hole], idx[first + hole] = v[first + child], idx[first + child]
        hole = child
    if n % 2 == 0 and child == (n - 2) // 2:
        child = 2 * (child + 1)
        v[first + hole], idx[first + hole] = v[first + child - 1], idx[first + child - 1]
        hole = child - 1
    parent = (hole - 1) // 2
    while hole > top and v[first + parent] < val:
        v[first + hole], idx[first + hole] = v[first + parent], idx[first + parent]
        hole = parent
        parent = (hole - 1) // 2
    v[first + hole], idx[first + hole] = val, vi


def _std_heap_sort(v: list, idx: list, first: int, last: int) -> None:
    # __partial_sort(first, last, last): make_heap then sort_heap, when introsort runs too deep
    n = last - first
    if n >= 2:
        for parent in range((n - 2) // 2, -1, -1):
            _std_adjust_heap(v, idx, first, parent, n, v[first + parent], idx[first + parent])
    while last - first > 1:
        last -= 1
        val, vi = v[last], idx[last]
        v[last], idx[last] = v[first], idx[first]
        _std_adjust_heap(v, idx, first, 0, last - first, val, vi)


def _std_partition_pivot(v: list, idx: list, first: int, last: int) -> int:
    a, b, c = first + 1, first + (last - first) // 2, last - 1
    # __move_median_to_first
    if v[a] < v[b]:
        m = b if v[b] < v[c] else c if v[a] < v[c] else a
    else:
        m = a if v[a] < v[c] else c if v[b] < v[c] else b
    v[first], v[m], idx[first], idx[m] = v[m], v[first], idx[m], idx[first]
    pivot, lo, hi = v[first], first + 1, last
    while True:  # __unguarded_partition
        while v[lo] < pivot:
            lo += 1
        hi -= 1
        while pivot < v[hi]:
            hi -= 1
        if lo >= hi:
            return lo
        v[lo], v[hi], idx[lo], idx[hi] = v[hi], v[lo], idx[hi], idx[lo]
        lo += 1


def _std_introsort(v: list, idx: list, first: int, last: int, depth: int) -> None:
    while last - first > _STD_THRESHOLD:
        if depth == 0:
            _std_heap_sort(v, idx, first, last)
            return
        depth -= 1
        cut = _std_partition_pivot(v, idx, first, last)
        _std_introsort(v, idx, cut, last, depth)
        last = cut


def _std_sort_order(values: list) -> tuple[list, list]:
    """``values`` and their indices as libstdc++'s ``std::sort`` on ``value <`` leaves them."""
    v, idx, n = list(values), list(range(len(values))), len(values)
    if n > 1:
        _std_introsort(v, idx, 0, n, 2 * (n.bit_length() - 1))
        if n > _STD_THRESHOLD:
            _std_insertion_sort(v, idx, 0, _STD_THRESHOLD)
            for i in range(_STD_THRESHOLD, n):
                _std_linear_insert(v, idx, i, 0)
        else:
            _std_insertion_sort(v, idx, 0, n)
    return v, idx


def _mode_row(row: np.ndarray) -> int:
    """The index torch's CPU kernel returns for the mode of one row: the last pair of the first
    longest run once std::sort has run."""
    v, idx = _std_sort_order(row.tolist())
    best_i, best_f, run = 0, 0, 0
    for i in range(len(v)):
        run += 1
        if i == len(v) - 1 or v[i] != v[i + 1]:
            if run > best_f:
                best_i, best_f = idx[i], run
            run = 0
    return best_i


def _mode_short_rows(rows: np.ndarray) -> np.ndarray:
    """Rows of at most 16 elements without NaN: there std::sort is insertion sort (stable), so the
    index is the last occurrence of the smallest most frequent value; vectorized over rows."""
    n = rows.shape[1]
    eq = rows[:, :, None] == rows[:, None, :]
    counts = eq.sum(-1)
    rank = (rows[:, None, :] < rows[:, :, None]).sum(-1)       # entries below each: orders values
    top = counts == counts.max(1, keepdims=True)
    col = np.argmin(np.where(top, rank, n), axis=1)
    hits = eq[np.arange(rows.shape[0]), col]                     # where the chosen value sits
    return n - 1 - np.argmax(hits[:, ::-1], axis=1)


def _mode_indices(rows: np.ndarray) -> np.ndarray:
    out = np.empty(rows.shape[0], np.int64)
    slow = np.ones(rows.shape[0], bool)
    if rows.shape[1] <= _STD_THRESHOLD:
        slow = np.isnan(rows).any(1) if rows.dtype.kind == "f" else ~slow
        for lo in range(0, rows.shape[0], 1 << 14):              # bounds the (rows, n, n) temporaries
            chunk = slice(lo, lo + (1 << 14))
            part = ~slow[chunk]
            if part.any():
                out[chunk][part] = _mode_short_rows(rows[chunk][part])
    for i in np.flatnonzero(slow):
        out[i] = _mode_row(rows[i])
    return out


@primitive()
def _mode_index(x, dim):
    """The index of each row's mode along ``dim`` (kept as a size-1 dim), as torch's CPU kernel."""
    moved = np.moveaxis(x, dim, -1)
    rows = moved.reshape(-1, moved.shape[-1])
    return np.expand_dims(_mode_indices(rows).reshape(moved.shape[:-1]), dim)


_mode_index.defjvp(zeros_jvp)  # integer results: no tangent
_mode_index.defbatch(lambda prim, a, f, dim: prim.fwd(a[0], dim=dim + 1) if f[0] else prim.fwd(a[0], dim=dim))


def _mode_work(prim: Any, arrays: Sequence, params: dict, outs: tuple) -> float:
    # Rows past 16 (and rows with NaN, which the static check cannot see) replay std::sort in
    # Python: measured 550-2000 ns an element, growing with log2 of the row (17 to 100,000
    # elements), 110-330 ns on short rows. The service's limits and its inline bound count in
    # units of ~1 ns, so the bound is set above those figures.
    shape = np.shape(arrays[0])
    n = int(np.prod(shape))
    row = shape[params["dim"]] if shape else 1
    per = 400 if row <= 16 else 500 + 150 * math.ceil(math.log2(row))
    return n * per


@_mode_index.defshape(work=_mode_work)
def _mode_index_shape(prim: Any, arrays: list, params: dict) -> Any:
    shape = list(np.shape(arrays[0]))
    shape[params["dim"]] = 1
    return _fresh(tuple(shape), np.dtype(np.int64))


@op(method=True, n_outputs=2)
def mode(input, dim=-1, keepdim=False, *, out=None):
    """The most frequent value along ``dim`` (the smallest on ties) and an index of it, chosen as
    torch's CPU kernel chooses; the gradient goes to that index.

    >>> engine.mode(engine.tensor([1.0, 2.0, 2.0, 1.0, 3.0])).indices
    tensor(3)
    """
    if out is not None:
        raise TypeError("mode(): out= is not supported")
    x = input._data
    d = norm_dim(dim, x.ndim)
    if x.ndim == 0:
        values, indices = mode(reshape(input, (1,)), 0)
        return _mode_result(values, indices)
    if x.shape[d] == 0:
        raise IndexError(f"mode(): Expected reduction dim {d} to have non-zero size.")
    idx = _mode_index(input.detach(), dim=d)
    values = gather(input, d, idx)
    if not keepdim:
        values, idx = squeeze(values, d), squeeze(idx, d)
    return _mode_result(values, idx)


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
