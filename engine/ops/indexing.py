"""Indexed writes: index_put, item assignment, scatter, scatter_add, scatter_reduce,
index_add/copy/fill, take_along_dim.

These are torch's out-of-place forms (``torch.scatter``, ``torch.index_put``); the in-place
methods (``scatter_``, ``index_put_``, ``__setitem__``) are these plus a rebind of the
destination (engine._mutation). Index tensors are never differentiated.
"""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np

from .._autograd import donated, linear_jvp, primitive, transpose_jvp
from .._meta import _bound, _fresh, elementwise_shape
from ..tensor import Size, Tensor
from ._registry import as_tensor_arg, op
from .elementwise import type_name, where
from .shape import (
    _gather,
    _index,
    _index_backward,
    _is_basic,
    _normalize_key,
    _scatter_add_zeros,
    expand,
    getitem,
    norm_dim,
    reshape,
)


# ---------------------------------------------------------------- the write primitive
@primitive()
def _put(x, v, key):
    out = x.copy()
    out[key] = v
    return out


# The overwritten entries of x get no gradient; v gets the gradient read back at the key (summed
# over broadcasting and duplicates centrally).
_put.defvjp(lambda ctx, g, key: (_put(g, 0.0, key=key) if ctx.edges[0] is not None else None,
                                 _index(g, key=key) if ctx.edges[1] is not None else None))
_put.defjvp(linear_jvp)


@_put.defshape
def _same_as_x(prim: Any, arrays: list, params: dict) -> Any:
    x = _bound(prim, arrays, params)["x"]
    return _fresh(x.shape, x.dtype)
# ---------------------------------------------------------------- index_put: x with x[key] = v
@primitive()
def _index_put(x, v, key, accumulate):
    out = x if donated(x) else x.copy()
    if accumulate:
        np.add.at(out, key, v)  # duplicate indices accumulate
    else:
        out[key] = v
    return out


@_index_put.defvjp
def _index_put_vjp(ctx, g, key, accumulate):
    # Overwritten entries of x get no gradient (accumulate: all of x's entries survive); v gets
    # the gradient read back at the key, summed over broadcasting and duplicates centrally.
    gx = gv = None
    if ctx.edges[0] is not None:
        gx = g if accumulate else _index_put(g, 0.0, key=key, accumulate=False)
    if ctx.edges[1] is not None:
        gv = _index(g, key=key)
    return gx, gv


_index_put.defjvp(linear_jvp)
_index_put.defshape(_same_as_x)


@_index_put.defbatch
def _index_put_batch(prim, a, f, key, accumulate):
    # One write per batch element into one batched copy: exact for any key (numpy would move the
    # dims of separated array indices in front of a leading batch slice).
    x, v = a
    n = x.shape[0] if f[0] else v.shape[0]
    out = np.array(x if f[0] else np.broadcast_to(x, (n, *np.shape(x))))
    for i in range(n):
        vi = v[i] if f[1] else v
        if accumulate:
            np.add.at(out[i], key, vi)
        else:
            out[i][key] = vi
    return out


def _value_shape_check(x: np.ndarray, key: tuple, v: np.ndarray | None) -> None:
    """torch's error for a value that does not broadcast to the indexed shape."""
    if v is None or type(x) is not np.ndarray or type(v) is not np.ndarray:
        return
    target = np.broadcast_to(np.zeros((), np.int8), x.shape)[key].shape
    try:
        np.broadcast_shapes(v.shape, target)
        ok = len(v.shape) <= len(target) or all(k == 1 for k in v.shape[:len(v.shape) - len(target)])
    except ValueError:
        ok = False
    if not ok:
        raise RuntimeError(f"shape mismatch: value tensor of shape {list(v.shape)} cannot be broadcast "
                           f"to indexing result of shape {list(target)}")


@op(differentiable=("input", "values"), method=True)
def index_put(input, indices, values, accumulate=False):
    """``input`` with ``input[indices] = values`` (``accumulate``: ``+=``, duplicates summing);
    ``indices`` is a tuple of long or bool tensors, one per leading dim.

    >>> engine.index_put(engine.zeros(3), (engine.tensor([0, 2]),), engine.tensor([1.0, 2.0]))
    tensor([1., 0., 2.])
    """
    if isinstance(indices, Tensor) or not isinstance(indices, (tuple, list)):
        raise TypeError(f"index_put(): argument 'indices' (position 2) must be tuple of Tensors, not "
                        f"{type(indices).__name__}")
    if not isinstance(values, Tensor):
        raise TypeError(f"index_put(): argument 'values' (position 3) must be Tensor, not "
                        f"{type(values).__name__}")
    key = []
    for i, t in enumerate(indices):
        if not isinstance(t, Tensor):
            raise TypeError(f"expected Tensor as element {i} in argument 1, but got {type(t).__name__}")
        if t._data.dtype.kind not in "iub":
            raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
        key.append(t._data.astype(np.bool_) if t._data.dtype == np.uint8 else t._data)
    if values._data.dtype != input._data.dtype:
        raise RuntimeError(f"Index put requires the source and destination dtypes match, got "
                           f"{type_name(input._data.dtype)} for the destination and "
                           f"{type_name(values._data.dtype)} for the source.")
    return _put_at(input, tuple(key), values, accumulate)


def _put_at(input: Tensor, key: tuple, value: Tensor | float, accumulate: bool = False) -> Tensor:
    """The checked write primitive: torch's errors for too many / out-of-range indices and for a
    value that does not broadcast to ``input[key]``."""
    _check_put(input, key, value)
    return _index_put(input, value, key=key, accumulate=bool(accumulate))


def _check_put(input: Tensor, key: tuple, value: Tensor | float) -> None:
    x = input._data
    dims = builtins.sum(k.ndim if isinstance(k, np.ndarray) and k.dtype == np.bool_ else
                        0 if k is None or k is Ellipsis else 1 for k in key)
    if dims > x.ndim:
        raise IndexError(f"too many indices for tensor of dimension {x.ndim} (got {dims})")
    try:
        _value_shape_check(x, key, value._data if isinstance(value, Tensor) else None)
    except IndexError as e:  # numpy says "axis" where torch says "dimension"
        raise IndexError(str(e).replace(" for axis ", " for dimension ")) from None


def setitem(input: Tensor, key: object, value: object) -> Tensor:
    """The functional item assignment: a new tensor, ``input`` with ``input[key] = value``.

    ``key`` is any ``__getitem__`` key (ints, slices, None, Ellipsis, bool masks, integer
    arrays/tensors); ``value`` a number or a tensor broadcasting to ``input[key]``'s shape, cast to
    ``input``'s dtype. Differentiable in both: ``input`` gets the gradient with zeros at the
    written positions, ``value`` the gradient at them summed back to its shape.

    >>> setitem(engine.zeros(2, 2), (0, slice(None)), engine.tensor(3.0))
    tensor([[3., 3.],
            [0., 0.]])
    """
    key, value = setitem_operands(input, key, value)
    try:
        return _index_put(input, value, key=key, accumulate=False)
    except IndexError as e:
        raise item_index_error(e) from None


def setitem_operands(input: Tensor, key: object, value: object) -> tuple[tuple, Tensor | float]:
    """``input[key] = value``'s checked operands: the normalized key, and the value as a tensor of
    ``input``'s dtype (broadcast where torch's copy_ would) or a Python number. Raises torch's
    errors for a bad key or value.

    >>> setitem_operands(engine.zeros(2, 2), 0, 1)
    ((0,), 1.0)
    """
    key = _normalize_key(key)
    if isinstance(value, Tensor):
        if value._data.dtype != input._data.dtype:
            _check_put_dtype(input, key, value)
            value = value.to(input.dtype)
        lead = 0  # as torch, leading size-1 dims of the value are dropped
        while lead < value._data.ndim - 1 and value._data.shape[lead] == 1:
            lead += 1
        if lead:
            value = reshape(value, value._data.shape[lead:])
        if _is_basic(key):  # torch copies into the view: copy_'s broadcasting rule and message
            target = Size(np.broadcast_to(np.zeros((), np.int8), input._data.shape)[key].shape) \
                if type(input._data) is np.ndarray else None
            if target is not None and value._data.shape != target:
                value = expand(value, target)
    elif not isinstance(value, (int, float, bool, np.number)):
        value = as_tensor_arg(value).to(input.dtype)
    else:  # a Python number stays one: a constant, with no tangent in forward mode
        value = value.item() if isinstance(value, np.number) else value
        if input._data.dtype.kind == "f":
            value = float(value)
    try:
        _check_put(input, key, value)
    except IndexError as e:
        raise item_index_error(e) from None
    return key, value


def _check_put_dtype(input: Tensor, key: tuple, value: Tensor) -> None:
    """torch casts the value of an item assignment only where it copies (basic keys, 0-d integer
    tensors among them) or fills (one bool mask, one value); index_put refuses other dtypes."""
    arrays = [k for k in key if isinstance(k, np.ndarray) and not (k.ndim == 0 and k.dtype.kind in "iu")]
    if not arrays:
        return
    if len(arrays) == 1 and arrays[0].dtype in (np.bool_, np.uint8) and value._data.size == 1:
        return
    raise RuntimeError(f"Index put requires the source and destination dtypes match, got "
                       f"{type_name(input._data.dtype)} for the destination and "
                       f"{type_name(value._data.dtype)} for the source.")


def item_index_error(e: IndexError) -> IndexError:
    """numpy's IndexError from an item assignment, in torch's words (torch says "dimension" where
    numpy says "axis", and does not count the indices)."""
    msg = str(e).replace(" for axis ", " for dimension ")
    return IndexError(msg.partition(" (got ")[0] if msg.startswith("too many") else msg)


@primitive()
def _delayed_error(x, msg):
    return x


@_delayed_error.defvjp
def _delayed_error_vjp(ctx, g, msg):
    raise RuntimeError(msg)


_delayed_error.defjvp(lambda ctx, ts, x, msg: _delayed_error_vjp(ctx, None, msg))  # as unsupported
_delayed_error.defbatch(lambda prim, a, f, msg: a[0])
_delayed_error.defshape(elementwise_shape)


# ---------------------------------------------------------------- argument checks
def _index_array(index: object) -> np.ndarray:
    idx = np.asarray(index._data if isinstance(index, Tensor) else index)
    if idx.dtype.kind not in "iu":
        raise RuntimeError("scatter(): Expected dtype int32/int64 for index")
    return idx


def _along_key(idx: np.ndarray, dim: int) -> tuple:
    """The fancy-index key addressing ``out[..., idx[i, j, ...], ...]`` along ``dim``."""
    grids = list(np.indices(idx.shape, sparse=True))
    grids[dim] = idx
    return tuple(grids)


def _check_scatter(input: Tensor, dim: int, idx: np.ndarray, src: Tensor | None, fn: str) -> int:
    x = input._data
    d = norm_dim(dim, x.ndim)
    if idx.ndim != x.ndim and not (idx.ndim <= 1 and x.ndim <= 1):
        raise RuntimeError("Index tensor must have the same number of dimensions as self tensor")
    if src is not None and src._data.ndim != idx.ndim and not (idx.ndim <= 1 and src._data.ndim <= 1):
        raise RuntimeError("Index tensor must have the same number of dimensions as src tensor")
    xs = x.shape if x.ndim else (1,)
    ss = (src._data.shape if src._data.ndim else (1,)) if src is not None else None
    ids = idx.shape if idx.ndim else (1,)
    if any((k != d and n > xs[k]) or (ss is not None and n > ss[k]) for k, n in enumerate(ids)):
        tail = f" and to be no larger size than src {list(ss)}" if ss is not None else ""
        raise RuntimeError(f"Expected index {list(ids)} to be no larger than self {list(xs)} apart "
                           f"from dimension {d}{tail}")
    if idx.size and (idx.min() < 0 or idx.max() >= xs[d]):
        bad = idx.max() if idx.max() >= xs[d] else idx.min()
        raise RuntimeError(f"index {bad} is out of bounds for dimension {d} with size {xs[d]}")
    if src is not None and src._data.dtype != x.dtype:
        raise RuntimeError(f"{fn}(): Expected self.dtype to be equal to src.dtype")
    return d


def _src_for(src: Tensor, idx: np.ndarray) -> Tensor:
    """``src`` cut to the index's shape: entries beyond it are not scattered."""
    if src._data.shape == idx.shape:
        return src
    if src._data.ndim == 0:
        return reshape(src, idx.shape)
    return getitem(src, tuple(slice(0, n) for n in idx.shape))


def _flat1(t: Tensor) -> Tensor:
    return reshape(t, (1,)) if t._data.ndim == 0 else t


# ---------------------------------------------------------------- scatter family
@op(differentiable=("input", "src"), method=True)
def scatter(input, dim, index, src=None, *, value=None, reduce=None):
    """``out[index[i][j]][j] = src[i][j]`` along ``dim`` (or ``value``); the overwritten entries of
    ``input`` get no gradient, ``src`` gets the gradient gathered at ``index``."""
    if src is not None and not isinstance(src, Tensor):
        src, value = None, src
    if src is None and value is None:
        raise TypeError("scatter() missing required argument 'src' or 'value'")
    if reduce is not None:
        modes = {"add": "sum", "multiply": "prod"}
        if reduce not in modes:
            raise RuntimeError(f"reduce argument must be either add or multiply, got {reduce}")
        s = src if src is not None else Tensor._make(np.full(np.shape(index), value, input._data.dtype))
        return scatter_reduce(input, dim, index, s, modes[reduce])
    idx = _index_array(index)
    d = _check_scatter(input, dim, idx, src, "scatter")
    shape = input._data.shape
    x, idx1 = _flat1(input), idx.reshape(idx.shape or (1,))
    key = _along_key(idx1, d)
    v = _src_for(_flat1(src), idx1) if src is not None else value
    return reshape(_put(x, v, key=key), shape)


@op(differentiable=("input", "src"), method=True)
def scatter_add(input, dim, index, src):
    """``input`` plus ``src`` summed into the positions ``index`` along ``dim``."""
    idx = _index_array(index)
    d = _check_scatter(input, dim, idx, src, "scatter")
    shape = input._data.shape
    idx1 = idx.reshape(idx.shape or (1,))
    added = _scatter_add_zeros(_src_for(_flat1(src), idx1), idx=idx1, dim=d,
                               shape=shape or (1,))
    return input + reshape(added, shape)


_IDENTITY = {"sum": 0, "mean": 0, "prod": 1}


@primitive(save=(0, 1, -1))
def _scatter_reduce(x, src, idx, dim, reduce, include_self):
    key = _along_key(idx, dim)
    out = x.copy()
    if not include_self:
        if reduce in _IDENTITY:
            out[key] = _IDENTITY[reduce]
        elif x.dtype.kind == "f":
            out[key] = -np.inf if reduce == "amax" else np.inf
        else:
            info = np.iinfo(x.dtype) if x.dtype.kind in "iu" else None
            out[key] = (info.min if reduce == "amax" else info.max) if info else reduce == "amin"
    ufunc = {"sum": np.add, "mean": np.add, "prod": np.multiply, "amax": np.maximum,
             "amin": np.minimum}[reduce]
    ufunc.at(out, key, src)
    if reduce == "mean":
        count = _counts(x.shape, key, include_self, x.dtype)
        out = out / count if x.dtype.kind == "f" else np.floor_divide(out, count)
    return out


def _counts(shape: tuple, key: tuple, include_self: bool, dtype: np.dtype) -> np.ndarray:
    """How many values were averaged into each output entry (at least 1)."""
    n = np.full(shape, 1 if include_self else 0, dtype)
    np.add.at(n, key, 1)
    n[n == 0] = 1
    return n


@_scatter_reduce.defvjp
def _scatter_reduce_vjp(ctx, g, x, src, out, idx, dim, reduce, include_self):
    # torch's scatter_reduce_backward, term by term
    key = _along_key(idx, dim)

    def gather(t: Tensor) -> Tensor:
        return _gather(t, idx=idx, dim=dim)

    gx = gs = None
    dt = g._data.dtype
    if reduce == "sum":
        gx, gs = g, gather(g)
    elif reduce == "mean":
        n = Tensor._make(_counts(x._data.shape, key, include_self, dt))
        gx = g / n
        gs = gather(g) / _gather(n, idx=idx, dim=dim)
    elif reduce == "prod":
        masked_x = where(x == 0, 1.0, x)
        gx = g * _scatter_reduce(masked_x, src, idx=idx, dim=dim, reduce=reduce,
                                 include_self=include_self) / masked_x
        if ctx.edges[1] is not None:
            s = src._data
            zero = s == 0
            zeros_at = np.zeros(x._data.shape, np.int64)
            np.add.at(zeros_at, key, zero.astype(np.int64))
            n_zero = np.take_along_axis(zeros_at, idx, axis=dim)
            single = Tensor._make(zero & (n_zero == 1))
            masked_src = where(single, 1.0, src)
            masked_result = _scatter_reduce(x, masked_src, idx=idx, dim=dim, reduce=reduce,
                                            include_self=include_self)
            gs = where(single, gather(g * masked_result),
                       gather(g * out) / where(Tensor._make(zero), 1.0, src))
            if (n_zero > 1).any():
                gs = _delayed_error(gs, msg=(
                    "scatter_reduce(): Double backward is unsupported for src when >1 zeros in src "
                    "are scattered to the same position. This may also be unsupported for source "
                    "values that are not 0 but scattered to the same position as >1 zeros"))
    else:  # amax, amin: ties share the gradient evenly
        value = gather(out)._data
        x_is = (x._data == out._data).astype(dt)
        s_is = (src._data == value).astype(dt)
        n = x_is.copy()
        np.add.at(n, key, s_is)
        g_even = g / Tensor._make(n)
        gx = g_even * Tensor._make(x_is)
        gs = gather(g_even) * Tensor._make(s_is)
    if not include_self and gx is not None:
        gx = _put(gx, 0.0, key=key)
    return (gx if ctx.edges[0] is not None else None), (gs if ctx.edges[1] is not None else None)


_scatter_reduce.defjvp(transpose_jvp)
_scatter_reduce.defshape(_same_as_x)


@op(differentiable=("input", "src"), method=True)
def scatter_reduce(input, dim, index, src, reduce, *, include_self=True):
    """Reduce ``src`` into ``input`` at ``index`` along ``dim`` with ``reduce`` in 'sum', 'prod',
    'mean', 'amax', 'amin' (``include_self``: whether ``input``'s entries take part)."""
    if reduce not in ("sum", "prod", "mean", "amax", "amin"):
        raise RuntimeError(f"reduce argument must be either sum, prod, mean, amax or amin, got {reduce}")
    idx = _index_array(index)
    d = _check_scatter(input, dim, idx, src, "scatter_reduce")
    shape = input._data.shape
    idx1 = idx.reshape(idx.shape or (1,))
    out = _scatter_reduce(_flat1(input), _src_for(_flat1(src), idx1), idx=idx1, dim=d,
                          reduce=reduce, include_self=include_self)
    return reshape(out, shape)


# ---------------------------------------------------------------- index_add / copy / fill
_INDEX_DTYPE_ERRORS = {
    "index_add": (RuntimeError, "index_add_(): Expected dtype int32/int64 for index but got: {}"),
    "index_copy": (RuntimeError, "index_copy_(): Expected a long tensor for index, but got {}"),
    "index_fill": (IndexError, "index_fill_(): Expected dtype int64 for index."),
}


def _index_key(input: Tensor, dim: int, index: object, fn: str) -> tuple[int, np.ndarray]:
    d = norm_dim(dim, input._data.ndim)
    idx = np.asarray(index._data if isinstance(index, Tensor) else index)
    if idx.dtype.kind not in "iu":
        exc, msg = _INDEX_DTYPE_ERRORS[fn]
        raise exc(msg.format(type_name(idx.dtype)))
    if idx.ndim > 1:
        raise IndexError(f"{fn}_(): Index is supposed to be a vector")
    idx = idx.reshape(-1)
    n = input._data.shape[d] if input._data.ndim else 1
    lo = -n if fn == "index_fill" else 0  # only index_fill wraps negative indices
    if idx.size and (idx.min() < lo or idx.max() >= n):
        if fn == "index_copy":
            bad = idx.max() if idx.max() >= n else idx.min()
            raise IndexError(f"index_copy_(): index {bad} is out of bounds for dimension {d} with "
                             f"size {n}")
        raise IndexError("index out of range in self")
    return d, idx % builtins.max(n, 1)


def _source_shape(input: Tensor, d: int, n_idx: int, source: Tensor, fn: str, sep: str) -> Tensor:
    want = list(input._data.shape or (1,))
    src_n = source._data.shape[d] if source._data.ndim else 1
    if src_n != n_idx:
        raise (IndexError if fn == "index_copy_" else RuntimeError)(
            f"{fn}(): Number of indices ({n_idx}) should be equal to source.size(dim){sep} ({src_n})"
            + (f", for dim: {d}" if fn == "index_add_" else ""))
    want[d] = n_idx
    if source._data.ndim == 0:
        return reshape(source, tuple(want))
    if list(source._data.shape) != want:
        raise RuntimeError(f"{fn}(): source tensor shape {list(source._data.shape)} must match self "
                           f"shape {list(input._data.shape)} apart from dimension {d}")
    return source


@op(differentiable=("input", "source"), method=True)
def index_add(input, dim, index, source, *, alpha=1):
    """``input`` plus ``alpha * source`` added at the positions ``index`` of ``dim`` (duplicates
    accumulate)."""
    d, idx = _index_key(input, dim, index, "index_add")
    source = _source_shape(input, d, idx.size, as_tensor_arg(source), "index_add_", ":")
    if source._data.dtype != input._data.dtype:
        raise RuntimeError(f"index_add_(): self ({type_name(input._data.dtype)}) and source "
                           f"({type_name(source._data.dtype)}) must have the same scalar type")
    if alpha != 1:
        source = source * alpha
    key = (slice(None),) * d + (idx,)
    added = _index_backward(source, key=key, shape=input._data.shape or (1,))
    return input + reshape(added, input._data.shape)


@op(differentiable=("input", "source"), method=True)
def index_copy(input, dim, index, source):
    """``input`` with the slices ``index`` of ``dim`` replaced by ``source``."""
    d, idx = _index_key(input, dim, index, "index_copy")
    source = _source_shape(input, d, idx.size, as_tensor_arg(source), "index_copy_", "")
    if source._data.dtype != input._data.dtype:
        raise RuntimeError(f"index_copy_(): self and source expected to have the same dtype, but got "
                           f"(self) {type_name(input._data.dtype)} and (source) "
                           f"{type_name(source._data.dtype)}")
    key = (slice(None),) * d + (idx,)
    return reshape(_put(_flat1(input), source, key=key), input._data.shape)


@op(differentiable=("input", "value"), method=True)
def index_fill(input, dim, index, value):
    """``input`` with the slices ``index`` of ``dim`` set to ``value`` (a number or a 0-d tensor,
    whose gradient is the sum over the filled entries)."""
    d, idx = _index_key(input, dim, index, "index_fill")
    if isinstance(value, Tensor):
        if value._data.ndim:
            raise RuntimeError(f"index_fill_ only supports a 0-dimensional value tensor, but got tensor "
                               f"with {value._data.ndim} dimension(s).")
        if value._data.dtype != input._data.dtype:
            value = value.to(input._data.dtype)
    key = (slice(None),) * d + (np.unique(idx),)  # filling twice is filling once
    return reshape(_put(_flat1(input), value, key=key), input._data.shape)


# ---------------------------------------------------------------- take_along_dim
@op(method=True)
def take_along_dim(input, indices, dim=None):
    """``input`` gathered at ``indices`` along ``dim`` (the flattened input when ``dim`` is None);
    the other dims broadcast."""
    idx = np.asarray(indices._data if isinstance(indices, Tensor) else indices)
    if idx.dtype != np.int64:
        raise RuntimeError(f"torch.take_along_dim(): dtype of indices should be Long but got "
                           f"{type_name(idx.dtype)}")
    if dim is None:
        flat = reshape(input, (-1,))
        n, flat_idx = flat._data.shape[0], idx.reshape(-1)
        if flat_idx.size and (flat_idx.min() < 0 or flat_idx.max() >= n):  # no wrapping here (torch)
            bad = flat_idx.max() if flat_idx.max() >= n else flat_idx.min()
            raise RuntimeError(f"index {bad} is out of bounds for dimension 0 with size {n}")
        return _gather(flat, idx=flat_idx, dim=0)
    x = input._data
    if idx.ndim != x.ndim:
        raise RuntimeError(f"torch.take_along_dim(): input and indices should have the same number of "
                           f"dimensions, but got {x.ndim} dimensions for input, and {idx.ndim} "
                           f"dimensions for indices")
    d = norm_dim(dim, x.ndim)
    try:
        rest = np.broadcast_shapes(x.shape[:d] + (1,) + x.shape[d + 1:],
                                   idx.shape[:d] + (1,) + idx.shape[d + 1:])
    except ValueError:
        raise RuntimeError(f"shape mismatch: objects cannot be broadcast to a single shape "
                           f"{list(x.shape)} and {list(idx.shape)}") from None
    xs = rest[:d] + (x.shape[d],) + rest[d + 1:]
    ids = rest[:d] + (idx.shape[d],) + rest[d + 1:]
    return _gather(expand(input, Size(xs)), idx=_wrap(np.broadcast_to(idx, ids), x.shape[d], d), dim=d)


def _wrap(idx: np.ndarray, n: int, d: int) -> np.ndarray:
    """Negative indices count from the end (take_along_dim with a dim allows them, unlike gather)."""
    if idx.size and (idx.min() < -n or idx.max() >= n):
        bad = idx.max() if idx.max() >= n else idx.min()
        raise RuntimeError(f"index {bad} is out of bounds for dimension {d} with size {n}")
    return idx % n if n else idx

