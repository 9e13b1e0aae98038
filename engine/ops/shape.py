"""Shape and indexing ops: views, joins, splits, gathers and casts."""

from __future__ import annotations

import builtins
import math
from typing import Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from .._autograd import apply, dims_batch, elementwise_batch, linear_jvp, primitive
from .._dtype import to_dtype, type_name
from .._meta import (
    _as_meta,
    _basic,
    _bound,
    _broadcast,
    _free,
    _fresh,
    _local,
    _root_of,
    elementwise_shape,
    index_shape,
    view_shape,
)
from ..tensor import Size, Tensor, contiguous_format, format_order, laid_out, preserve_format
from ._registry import as_tensor_arg, op, promote


def norm_dim(dim: int, ndim: int) -> int:
    """Wrap a negative dim; torch's IndexError when out of range."""
    lo, hi = (-1, 0) if ndim == 0 else (-ndim, ndim - 1)
    if not lo <= dim <= hi:
        raise IndexError(f"Dimension out of range (expected to be in range of [{lo}, {hi}], "
                         f"but got {dim})")
    return dim % builtins.max(ndim, 1)


def _shape_args(shape: tuple) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, Size)):
        return tuple(shape[0])
    return tuple(shape)


# ---------------------------------------------------------------- reshaping
@primitive()
def _reshape(x, shape):
    return np.reshape(x, shape)


_reshape.defvjp(lambda ctx, g, shape: reshape(g, ctx.in_meta[0][0]))
_reshape.defjvp(linear_jvp)
_reshape.defbatch(lambda prim, a, f, shape: a[0].reshape(a[0].shape[:1] + tuple(shape)))


@_reshape.defshape
def _reshape_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    x = a["x"]
    out = np.reshape(x, a["shape"])  # a view of a zero-strided array; numpy's errors
    root = _root_of(x)
    if root is not None and x.size > root.meta_numel and out.shape != x.shape:
        return _fresh(out.shape, out.dtype)  # reshaping a broadcast copies in a real run
    return _as_meta(out)


@op(method=True)
def reshape(input, *shape):
    """A tensor with the same values in ``shape`` (one entry may be -1)."""
    shape = _shape_args(shape)
    if tuple(shape) == input._data.shape:
        return input
    try:
        np.empty(0 if 0 in input._data.shape else input._data.size, np.int8).reshape(shape) \
            if -1 in shape else None
        if -1 not in shape and math.prod(shape) != input._data.size:
            raise ValueError
    except ValueError:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size "
                           f"{input._data.size}") from None
    return _reshape(input, shape=tuple(shape))


def _view(self, *shape):
    if len(shape) == 1 and not isinstance(shape[0], (int, tuple, list, Size)):
        return _view_dtype(self, shape[0])
    return reshape(self, *shape)


def _view_dtype(x: Tensor, dtype: Any) -> Tensor:
    """``x.view(dtype)``: the same bytes read as ``dtype`` (torch's bit reinterpretation; the last
    dim rescales where the element sizes differ). Not differentiable, as in torch."""
    dt = to_dtype(dtype).np
    d = x._data
    src = d.dtype
    if dt.itemsize != src.itemsize:
        names = f"view {type_name(src)} as {type_name(dt)} (different element sizes)"
        if d.ndim == 0:
            raise RuntimeError(f"self.dim() cannot be 0 to {names}")
        if d.shape[-1] != 1 and d.strides[-1] != src.itemsize:
            raise RuntimeError(f"self.stride(-1) must be 1 to {names}, but got "
                               f"{d.strides[-1] // src.itemsize}")
        if dt.itemsize > src.itemsize and (d.shape[-1] * src.itemsize) % dt.itemsize:
            raise RuntimeError(f"self.size(-1) must be divisible by {dt.itemsize // src.itemsize} to "
                               f"{names}, but got {d.shape[-1]}")
    return Tensor._make(d.view(dt))


op(name="view", differentiable=("input",))(lambda input, *shape: reshape(input, *shape))
Tensor.view = _view


@op(method=True)
def view_as(input, other):
    """Reshape to ``other``'s shape."""
    return reshape(input, other._data.shape)


Tensor.reshape_as = view_as


@op(method=True)
def flatten(input, start_dim=0, end_dim=-1):
    """Merge dims ``start_dim..end_dim`` into one."""
    shape = input._data.shape
    if not shape:
        return reshape(input, (1,))
    s, e = norm_dim(start_dim, len(shape)), norm_dim(end_dim, len(shape))
    if s > e:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    return reshape(input, shape[:s] + (math.prod(shape[s:e + 1]),) + shape[e + 1:])


@op(method=True)
def unflatten(input, dim, sizes):
    """Split dim ``dim`` into ``sizes``."""
    shape = input._data.shape
    d = norm_dim(dim, len(shape))
    return reshape(input, shape[:d] + tuple(sizes) + shape[d + 1:])


@op(method=True)
def squeeze(input, dim=None):
    """Drop size-1 dims (all, or those in ``dim``)."""
    shape = input._data.shape
    if dim is None:
        dims = {i for i, s in enumerate(shape) if s == 1}
    else:
        dims = {norm_dim(d, len(shape)) for d in ((dim,) if isinstance(dim, int) else dim)}
        dims = {d for d in dims if shape and shape[d] == 1}
    return reshape(input, tuple(s for i, s in enumerate(shape) if i not in dims))


@op(method=True)
def unsqueeze(input, dim):
    """Insert a size-1 dim at ``dim``."""
    shape = input._data.shape
    d = norm_dim(dim, len(shape) + 1)
    return reshape(input, shape[:d] + (1,) + shape[d:])


@primitive()
def _expand(x, shape):
    return np.broadcast_to(x, shape)


_expand.defvjp(lambda ctx, g, shape: sum_to_size(g, ctx.in_meta[0][0]))
_expand.defjvp(linear_jvp)


def _expand_batch(prim, a, f, shape):
    x = a[0]
    k = len(shape) - (x.ndim - 1)
    x = x.reshape(x.shape[:1] + (1,) * k + x.shape[1:])
    return np.broadcast_to(x, x.shape[:1] + tuple(shape))


_expand.defbatch(_expand_batch)
_expand.defshape(view_shape, work=_free)


@op(method=True)
def expand(input, *sizes):
    """Broadcast to ``sizes`` without copying (-1 keeps a dim)."""
    sizes = _shape_args(sizes)
    shape = input._data.shape
    lead = len(sizes) - len(shape)
    if lead < 0:
        raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater or "
                           f"equal to the number of dimensions in the tensor ({len(shape)})")
    full = tuple(shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(sizes))
    if full == shape:
        return input
    for i, s in enumerate(shape):
        if s != 1 and s != full[i + lead]:
            raise RuntimeError(
                f"The expanded size of the tensor ({full[i + lead]}) must match the existing size "
                f"({s}) at non-singleton dimension {i + lead}.  Target sizes: {list(sizes)}.  "
                f"Tensor sizes: {list(shape)}")
    return _expand(input, shape=full)


@op(method=True)
def expand_as(input, other):
    """Expand to ``other``'s shape."""
    return expand(input, other._data.shape)


@op()
def broadcast_to(input, size):
    """Broadcast ``input`` to ``size``."""
    return expand(input, tuple(size))


@op(differentiable=())
def broadcast_shapes(*shapes):
    """The shape that ``shapes`` broadcast to."""
    try:
        return Size(np.broadcast_shapes(*shapes))
    except ValueError as e:
        raise RuntimeError(f"Shape mismatch: objects cannot be broadcast to a single shape: {e}") \
            from None


@op(differentiable=("tensors",), n_outputs=None)
def broadcast_tensors(*tensors):
    """Expand all tensors to their common shape."""
    shape = tuple(np.broadcast_shapes(*(t._data.shape for t in tensors)))
    return tuple(expand(t, shape) for t in tensors)


@op(method=True)
def sum_to_size(input, *size):
    """Sum ``input`` down to ``size`` (the inverse of broadcasting)."""
    size = tuple(_shape_args(size))
    shape = input._data.shape
    lead = len(shape) - len(size)
    lead_dims = tuple(range(lead))
    kept = tuple(i + lead for i, s in enumerate(size) if s == 1 and shape[i + lead] != 1)
    if kept:  # size-1 dims of ``size`` are kept; reshape drops the leading ones
        return reshape(input.sum(dim=lead_dims + kept, keepdim=True), size)
    return reshape(input.sum(dim=lead_dims) if lead else input, size)


@primitive()
def _permute(x, dims):
    return np.transpose(x, dims)


_permute.defvjp(lambda ctx, g, dims: permute(g, tuple(np.argsort(dims))))
_permute.defjvp(linear_jvp)
_permute.defbatch(lambda prim, a, f, dims: a[0].transpose((0, *(d % (a[0].ndim - 1) + 1 for d in dims))))
_permute.defshape(view_shape, work=_free)


@op(method=True)
def permute(input, *dims):
    """Reorder dims."""
    dims = _shape_args(dims)
    n = input._data.ndim
    if len(dims) != n:
        raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input does not "
                           f"match the length of the desired ordering of dimensions i.e. input.dim() "
                           f"= {n} is not equal to len(dims) = {len(dims)}")
    dims = tuple(norm_dim(d, n) for d in dims)
    if len(set(dims)) != n:
        raise RuntimeError("permute(): duplicate dims are not allowed.")
    if dims == tuple(range(n)):
        return input
    return _permute(input, dims=dims)


@op(method=True, aliases=("swapaxes", "swapdims"))
def transpose(input, dim0, dim1):
    """Swap two dims."""
    n = input._data.ndim
    if n == 0:
        return input
    d0, d1 = norm_dim(dim0, n), norm_dim(dim1, n)
    if d0 == d1:
        return input
    dims = list(range(n))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return _permute(input, dims=tuple(dims))  # already a valid permutation: no re-checking


@op(method=True)
def t(input):
    """Transpose of a tensor with at most 2 dims."""
    if input._data.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is "
                           f"{input._data.ndim}D")
    return transpose(input, 0, 1) if input._data.ndim == 2 else input


Tensor.T = property(lambda self: permute(self, tuple(range(self._data.ndim))[::-1]))
Tensor.mT = property(lambda self: transpose(self, -2, -1))
Tensor.mH = Tensor.mT  # the conjugate transpose: real tensors only


@op(method=True, aliases=("moveaxis",))
def movedim(input, source, destination):
    """Move dims from ``source`` to ``destination``."""
    n = input._data.ndim
    src = [norm_dim(d, n) for d in ((source,) if isinstance(source, int) else source)]
    dst = [norm_dim(d, n) for d in ((destination,) if isinstance(destination, int) else destination)]
    order = [d for d in range(n) if d not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return permute(input, tuple(order))


# ---------------------------------------------------------------- joining and splitting
@primitive()
def _cat(*xs, dim, sizes):
    return np.concatenate(xs, axis=dim)


@_cat.defvjp
def _cat_vjp(ctx, g, dim, sizes):
    # ``sizes`` along dim of every input: inputs that need no gradient still take up room in g
    grads, start = [], 0
    for meta, n in zip(ctx.in_meta, sizes):
        grads.append(narrow(g, dim, start, n) if meta is not None else None)
        start += n
    return tuple(grads) if len(grads) > 1 else grads[0]  # a one-input node takes a bare gradient


_cat.defjvp(linear_jvp)


def _cat_batch(prim, a, f, dim, sizes):
    n = next(x.shape[0] for x, b in zip(a, f) if b)
    xs = [x if b else np.broadcast_to(x, (n,) + x.shape) for x, b in zip(a, f)]
    return np.concatenate(xs, axis=dim + 1 if dim >= 0 else dim)


_cat.defbatch(_cat_batch)


@_cat.defshape
def _cat_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    xs = [np.asarray(x) for x in a["xs"]]
    nd = xs[0].ndim
    for i, x in enumerate(xs):
        if x.ndim != nd:
            raise ValueError(f"all the input arrays must have same number of dimensions, but the array "
                             f"at index 0 has {nd} dimension(s) and the array at index {i} has "
                             f"{x.ndim} dimension(s)")
    ax = normalize_axis_index(a["dim"], nd)
    for i, x in enumerate(xs):
        for d in range(nd):
            if d != ax and x.shape[d] != xs[0].shape[d]:
                raise ValueError(f"all the input array dimensions except for the concatenation axis "
                                 f"must match exactly, but along dimension {d}, the array at index 0 "
                                 f"has size {xs[0].shape[d]} and the array at index {i} has size "
                                 f"{x.shape[d]}")
    shape = list(xs[0].shape)
    shape[ax] = sum(x.shape[ax] for x in xs)
    return _fresh(shape, np.result_type(*[x.dtype for x in xs]))


@op(differentiable=("tensors",), aliases=("concat", "concatenate"))
def cat(tensors, dim=0):
    """Join tensors along an existing dim (torch.cat)."""
    tensors = [as_tensor_arg(t) for t in tensors]
    if not tensors:
        raise RuntimeError("torch.cat(): expected a non-empty list of Tensors")
    ref = next((t for t in tensors if t._data.ndim), tensors[0])
    if ref._data.ndim > 1 or any(t._data.shape != (0,) for t in tensors):
        # torch's legacy rule: 1-D empty tensors are skipped whatever the others' shapes
        kept = [t for t in tensors if t._data.shape != (0,)]
        if kept and kept[0]._data.ndim:
            tensors, ref = kept, kept[0]
    if ref._data.ndim == 0:
        raise RuntimeError("zero-dimensional tensor (at position 0) cannot be concatenated")
    d = norm_dim(dim, ref._data.ndim)
    for i, t in enumerate(tensors):
        s = t._data.shape
        if len(s) != ref._data.ndim:
            raise RuntimeError(f"Tensors must have same number of dimensions: got {ref._data.ndim} "
                               f"and {len(s)}")
        for k in range(len(s)):
            if k != d and s[k] != ref._data.shape[k]:
                raise RuntimeError(
                    f"Sizes of tensors must match except in dimension {d}. Expected size "
                    f"{ref._data.shape[k]} but got size {s[k]} for tensor number {i} in the list.")
    return apply(_cat, tuple(tensors), {"dim": d, "sizes": tuple(t._data.shape[d] for t in tensors)},
                 promote(*tensors))


@op(differentiable=("tensors",))
def stack(tensors, dim=0):
    """Join tensors along a new dim."""
    tensors = [as_tensor_arg(t) for t in tensors]
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    shape = tensors[0]._data.shape
    for i, t in enumerate(tensors):
        if t._data.shape != shape:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(shape)} at "
                               f"entry 0 and {list(t._data.shape)} at entry {i}")
    d = norm_dim(dim, len(shape) + 1)
    return cat([unsqueeze(t, d) for t in tensors], d)


@op(method=True)
def narrow(input, dim, start, length):
    """The slice ``start:start+length`` of dim ``dim``."""
    d = norm_dim(dim, input._data.ndim)
    size = input._data.shape[d]
    if start < 0:
        start += size
    if not (0 <= start and start + length <= size and length >= 0):
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size ({size}).")
    key = (slice(None),) * d + (slice(start, start + length),)
    return getitem(input, key)


@op(method=True)
def select(input, dim, index):
    """Index ``index_`` of dim ``dim``, removing that dim."""
    d = norm_dim(dim, input._data.ndim)
    size = input._data.shape[d]
    if not -size <= index < size:
        raise IndexError(f"select(): index {index} out of range for tensor of size "
                         f"{list(input._data.shape)} at dimension {d}")
    return getitem(input, (slice(None),) * d + (index,))


@op(method=True, n_outputs=None)
def split(input, split_size_or_sections, dim=0):
    """Split into chunks of a size, or of the given sizes."""
    d = norm_dim(dim, input._data.ndim)
    size = input._data.shape[d]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        sizes = [builtins.min(step, size - s) for s in range(0, size, step)] or [0]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != size:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {size} "
                               f"(input tensor's size at dimension {d}), but got split_sizes={sizes}")
    out, start = [], 0
    for n in sizes:
        out.append(narrow(input, d, start, n))
        start += n
    return tuple(out)


@op(method=True, n_outputs=None)
def chunk(input, chunks, dim=0):
    """Split into ``chunks`` nearly equal pieces."""
    size = input._data.shape[norm_dim(dim, input._data.ndim)]
    return split(input, builtins.max(1, -(-size // chunks)), dim)


@op(method=True, n_outputs=None)
def unbind(input, dim=0):
    """All slices along ``dim``."""
    d = norm_dim(dim, input._data.ndim)
    return tuple(select(input, d, i) for i in range(input._data.shape[d]))


# ---------------------------------------------------------------- indexing
def _normalize_key(key: object) -> tuple:
    if not isinstance(key, tuple):
        key = (key,)
    out = []
    for k in key:
        if isinstance(k, (Tensor, list, np.ndarray)):
            k = k._data if isinstance(k, Tensor) else np.asarray(k)
            if k.dtype.kind == "f":
                raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
        elif type(k) is slice and isinstance(k.step, (int, np.integer)) and k.step < 0:
            raise ValueError("step must be greater than zero")  # torch has no negative strides
        out.append(k)
    return tuple(out)


def _is_basic(key: tuple) -> bool:
    return all(k is None or k is Ellipsis or isinstance(k, (int, slice, np.integer)) for k in key)


@primitive()
def _index(x, key):
    out = x[key]
    if type(out) is not np.ndarray and type(x) is np.ndarray:  # a numpy scalar: a 0-d view instead
        out = x[(*key, None)].reshape(())                       # (torch's x[i, j] is a view)
    return out


_index.defvjp(lambda ctx, g, key: _index_backward(g, key=key, shape=ctx.in_meta[0][0]))
_index.defjvp(linear_jvp)


def _index_batch(prim, a, f, key):
    # A leading full slice keeps the batch first, unless the key's array indices are apart (numpy
    # would then move their dims in front of the batch): those run once per element.
    arrays = [i for i, k in enumerate(key) if isinstance(k, np.ndarray)]
    if arrays and arrays[-1] - arrays[0] + 1 != len(arrays):
        from .._autograd import _loop_batch
        return _loop_batch(prim, a, f, {"key": key})
    return a[0][(slice(None), *key)]


_index.defbatch(_index_batch)


@_index.defshape
def _index_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    x, key = a["x"], a["key"]
    key = key if isinstance(key, tuple) else (key,)
    if _basic(key):
        return _as_meta(x[key])  # a view, with numpy's errors
    shape, upper = index_shape(x.shape, key)
    if upper and _local.session is not None:
        _local.session.inexact = True
    return _fresh(shape, x.dtype)


@primitive()
def _index_backward(g, key, shape):
    out = np.zeros(shape, g.dtype)
    if _is_basic(key) or all(not isinstance(k, np.ndarray) or k.dtype == np.bool_ for k in key):
        out[key] = g
    else:
        np.add.at(out, key, g)  # duplicate indices accumulate
    return out


_index_backward.defvjp(lambda ctx, g, key, shape: _index(g, key=key))
_index_backward.defjvp(linear_jvp)


def _index_backward_batch(prim, a, f, key, shape):
    arrays = [i for i, k in enumerate(key) if isinstance(k, np.ndarray)]
    if not f[0] or (arrays and arrays[-1] - arrays[0] + 1 != len(arrays)):
        from .._autograd import _loop_batch
        return _loop_batch(prim, a, f, {"key": key, "shape": shape})
    return prim.fwd(a[0], key=(slice(None), *key), shape=a[0].shape[:1] + tuple(shape))


_index_backward.defbatch(_index_backward_batch)


@_index_backward.defshape
def _zeros_of_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    return _fresh(a["shape"], a["g"].dtype)


@op(differentiable=("input",))
def getitem(input, key):
    """``input[key]`` with ints, slices, None, Ellipsis, bool masks and integer arrays."""
    key = _normalize_key(key)
    try:
        return _index(input, key=key)
    except IndexError as e:  # numpy says "axis" where torch says "dimension"
        raise IndexError(str(e).replace(" for axis ", " for dimension ")) from None


Tensor.__getitem__ = getitem


@op(method=True)
def index_select(input, dim, index):
    """Select entries ``index`` along ``dim``."""
    d = norm_dim(dim, input._data.ndim)
    idx = np.asarray(index._data if isinstance(index, Tensor) else index)
    if idx.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    if input._data.ndim == 0:  # torch: a 0-d input stays 0-d (the index must be [0])
        if idx.size != 1:
            raise RuntimeError("index_select(): Index to scalar can have only 1 value, got "
                             f"{idx.size} value(s)")
        if idx.reshape(-1)[0] not in (0, -1):
            raise IndexError("index out of range in self")
        return reshape(getitem(reshape(input, (1,)), idx.reshape(-1)), ())
    return getitem(input, (slice(None),) * d + (idx.reshape(-1),))


@primitive()
def _gather(x, idx, dim):
    if idx.ndim == x.ndim and all(i <= n for d, (i, n) in enumerate(zip(idx.shape, x.shape)) if d != dim):
        # torch's index may be smaller than the input in the other dims: only its extent is read
        x = x[tuple(slice(None) if d == dim else slice(0, n) for d, n in enumerate(idx.shape))]
    return np.take_along_axis(x, idx, axis=dim)


_gather.defvjp(lambda ctx, g, idx, dim: _scatter_add_zeros(g, idx=idx, dim=dim,
                                                           shape=ctx.in_meta[0][0]))
_gather.defjvp(linear_jvp)
# the indices (a parameter) are the same for every batch element: broadcast along the batch
_gather.defbatch(lambda prim, a, f, idx, dim: prim.fwd(
    a[0], idx=np.broadcast_to(idx, a[0].shape[:1] + idx.shape), dim=dim + 1 if dim >= 0 else dim))


@_gather.defshape
def _gather_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    x, idx = a["x"], np.asarray(a["idx"])
    if x.ndim != idx.ndim:
        raise ValueError("`indices` and `arr` must have the same number of dimensions")
    ax = normalize_axis_index(a["dim"], max(x.ndim, 1))
    if all(i <= n for d, (i, n) in enumerate(zip(idx.shape, x.shape)) if d != ax):
        return _fresh(idx.shape, x.dtype)  # torch's gather: the index's extent (engine.ops.shape._gather)
    base = tuple(1 if i == ax else d for i, d in enumerate(x.shape))
    return _fresh(_broadcast([idx.shape, base]), x.dtype)


@primitive()
def _scatter_add_zeros(g, idx, dim, shape):
    out = np.zeros(shape, g.dtype)
    grids = list(np.indices(idx.shape, sparse=True))
    grids[dim] = idx
    np.add.at(out, tuple(grids), g)
    return out


_scatter_add_zeros.defvjp(lambda ctx, g, idx, dim, shape: _gather(g, idx=idx, dim=dim))
_scatter_add_zeros.defjvp(linear_jvp)
_scatter_add_zeros.defbatch(lambda prim, a, f, idx, dim, shape: prim.fwd(
    a[0], idx=np.broadcast_to(idx, a[0].shape[:1] + idx.shape), dim=dim + 1 if dim >= 0 else dim,
    shape=a[0].shape[:1] + tuple(shape)))
_scatter_add_zeros.defshape(_zeros_of_shape)


@op(method=True)
def gather(input, dim, index):
    """``out[i][j] = input[index[i][j]][j]`` along ``dim`` (torch.gather)."""
    d = norm_dim(dim, input._data.ndim)
    idx = np.asarray(index._data if isinstance(index, Tensor) else index)
    if idx.dtype.kind not in "iu":
        raise RuntimeError("gather(): Expected dtype int64 for index")
    if idx.size == 0:  # torch checks nothing then: the result has the index's (empty) shape
        return getitem(reshape(input, (-1,)), np.zeros(idx.shape, np.int64))
    if input._data.ndim == 0 and idx.ndim <= 1:  # a 0-d input reads as 1-d
        return reshape(_gather(reshape(input, (1,)), idx=idx.reshape(-1), dim=0), idx.shape)
    if idx.ndim != input._data.ndim:
        raise RuntimeError("Index tensor must have the same number of dimensions as input tensor")
    return _gather(input, idx=idx, dim=d)


@op(method=True)
def masked_fill(input, mask, value):
    """``value`` where ``mask`` is true, else ``input``."""
    from .elementwise import where
    return where(mask, value, input)


@primitive()
def _flip(x, dims):
    return np.flip(x, dims).copy()  # a new tensor in torch: no alias that a mutation would reach


_flip.defvjp(lambda ctx, g, dims: _flip(g, dims=dims))
_flip.defjvp(linear_jvp)
_flip.defbatch(dims_batch("dims"))


@_flip.defshape
def _flip_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    out = np.flip(a["x"], a["dims"])  # a view of the meta array, with numpy's errors for bad dims
    return _fresh(out.shape, out.dtype)  # a copy, as torch's flip


@op(method=True)
def flip(input, dims):
    """Reverse the order along ``dims``."""
    n = input._data.ndim
    dims = tuple(norm_dim(d, n) for d in ((dims,) if isinstance(dims, int) else dims))
    return _flip(input, dims=dims if n else ())  # a 0-d tensor's dim 0 is itself: nothing to reverse


@op(method=True)
def repeat(input, *sizes):
    """Tile the tensor ``sizes`` times along each dim (Tensor.repeat)."""
    sizes = _shape_args(sizes)
    shape = input._data.shape
    if len(sizes) < len(shape):
        raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number of "
                           "dimensions of tensor")
    shape = (1,) * (len(sizes) - len(shape)) + shape
    x = reshape(input, shape)
    inter = tuple(v for s in shape for v in (1, s))
    big = tuple(v for r, s in zip(sizes, shape) for v in (r, s))
    return reshape(expand(reshape(x, inter), big), tuple(r * s for r, s in zip(sizes, shape)))


@op(method=True)
def tile(input, dims):
    """Repeat the tensor ``dims`` times along each dim; missing leading entries of ``dims`` are 1."""
    dims = tuple(dims)
    n = input._data.ndim
    return repeat(input, (1,) * (n - len(dims)) + dims)


@op(method=True)
def repeat_interleave(input, repeats=None, dim=None, *, output_size=None):
    """Repeat each element (of the flattened input, or along ``dim``) ``repeats`` times.

    With only a tensor of counts, returns the indices ``0..n-1`` each repeated that often.
    """
    if repeats is None:  # torch.repeat_interleave(repeats)
        r = np.asarray(input._data)
        if r.ndim > 1:
            raise RuntimeError("repeat_interleave only accept 1D vector as repeat")
        if (r < 0).any():
            raise RuntimeError("repeats can not be negative")
        return Tensor._make(np.repeat(np.arange(r.size, dtype=np.int64), r.reshape(-1)))
    if dim is None:
        input, d = reshape(input, (-1,)), 0
    else:
        d = norm_dim(dim, input._data.ndim)
    n = input._data.shape[d] if input._data.ndim else 1
    r = np.asarray(repeats._data if isinstance(repeats, Tensor) else repeats)
    if r.ndim > 1:
        raise RuntimeError("repeat_interleave only accept 1D vector as repeat")
    if r.size == 1:
        r = np.full(n, int(r.reshape(())))
    elif r.shape != (n,):
        raise RuntimeError(f"repeats must have the same size as input along dim, but got "
                           f"repeats.size(0) = {r.size} and input.size({d}) = {n}")
    if (r < 0).any():
        raise RuntimeError("repeats can not be negative")
    if input._data.ndim == 0:
        input = reshape(input, (1,))
    return getitem(input, (slice(None),) * d + (np.repeat(np.arange(n), r),))


def _roll1(x: Tensor, shift: int, d: int) -> Tensor:
    n = x._data.shape[d]
    s = shift % n if n else 0
    if s == 0:
        return x
    return cat([narrow(x, d, n - s, s), narrow(x, d, 0, n - s)], d)


@op(method=True)
def roll(input, shifts, dims=None):
    """Shift entries cyclically by ``shifts`` along ``dims`` (the flattened tensor if None)."""
    shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    if dims is None:
        if len(shifts) != 1:
            raise RuntimeError(f"shifts and dimensions must align. shifts: {len(shifts)}, dims:0")
        return reshape(_roll1(reshape(input, (-1,)), shifts[0], 0), input._data.shape)
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    if len(shifts) != len(dims):
        raise RuntimeError(f"shifts and dimensions must align. shifts: {len(shifts)}, dims:{len(dims)}")
    out = input
    for s, d in zip(shifts, dims):
        out = _roll1(out, s, norm_dim(d, input._data.ndim))
    return out


@op(differentiable=("tensors",), n_outputs=None)
def meshgrid(*tensors, indexing=None):
    """Coordinate grids from 0-/1-D tensors (``indexing`` 'ij', the default, or 'xy')."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing is None:
        import warnings
        warnings.warn("torch.meshgrid: in an upcoming release, it will be required to pass the "
                      "indexing argument.", UserWarning, stacklevel=2)
        indexing = "ij"
    if indexing not in ("ij", "xy"):
        raise RuntimeError(f"torch.meshgrid: indexing must be one of \"xy\" or \"ij\", but received: "
                           f"{indexing}")
    tensors = [as_tensor_arg(t) for t in tensors]
    for t in tensors:
        if t._data.ndim > 1:
            raise RuntimeError(f"torch.meshgrid: Expected 0D or 1D tensor in the tensor list but got: "
                               f"{t._data.ndim}D")
        if t._data.dtype != tensors[0]._data.dtype:
            raise RuntimeError("torch.meshgrid: Expected all tensors in the tensor list to have the "
                               "same dtype.")
    flat = [reshape(t, (-1,)) for t in tensors]
    swap = indexing == "xy" and len(flat) >= 2
    if swap:
        flat[0], flat[1] = flat[1], flat[0]
    shape = tuple(t._data.shape[0] for t in flat)
    k = len(flat)
    grids = [expand(reshape(t, (1,) * i + (-1,) + (1,) * (k - 1 - i)), shape) for i, t in enumerate(flat)]
    if swap:  # the grids of the swapped inputs go back to their places
        grids[0], grids[1] = grids[1], grids[0]
    return tuple(grids)


# ---------------------------------------------------------------- casts
@primitive()
def _to(x, dtype):
    return x.astype(dtype)


_to.defvjp(lambda ctx, g, dtype: g)  # cast back to the input's dtype happens centrally
_to.defjvp(linear_jvp)
_to.defbatch(elementwise_batch)
_to.defshape(elementwise_shape)


@op(name="to")
def to(self, *args, **kwargs):
    """Cast to a dtype (float-to-float casts are differentiable, as in torch)."""
    dt = kwargs.get("dtype")
    flags = []  # positional non_blocking, copy (after the dtype, device or tensor)
    for a in args:
        if isinstance(a, bool):
            flags.append(a)
        elif isinstance(a, Tensor):
            dt = a.dtype
        elif a is not None and not isinstance(a, str):
            dt = a
    copy = kwargs.get("copy", flags[1] if len(flags) > 1 else False)
    if dt is None or to_dtype(dt).np == self._data.dtype:
        if copy:  # a new tensor, still in the graph (torch's ToCopyBackward)
            return _to(self, dtype=self._data.dtype)
        return self
    return _to(self, dtype=to_dtype(dt).np)


def _type(self, dtype=None):
    if dtype is None:
        return "torch." + {"float32": "FloatTensor", "float64": "DoubleTensor", "int64": "LongTensor",
                           "int32": "IntTensor", "bool": "BoolTensor"}.get(self.dtype.name, "Tensor")
    return to(self, dtype)


Tensor.to = to
Tensor.type = _type
Tensor.float = lambda self: to(self, np.float32)
Tensor.double = lambda self: to(self, np.float64)
Tensor.half = lambda self: to(self, np.float16)
Tensor.long = lambda self: to(self, np.int64)
Tensor.int = lambda self: to(self, np.int32)
Tensor.bool = lambda self: to(self, np.bool_)
Tensor.type_as = lambda self, other: to(self, other.dtype)


def _contiguous(self, memory_format=contiguous_format):
    """The tensor itself if its values lie in C order (or ``memory_format``'s), else such a copy
    in the graph (``torch.Tensor.contiguous``: ``x.t().contiguous().view(-1)``)."""
    if memory_format is preserve_format:
        if self.is_contiguous():
            return self
        raise RuntimeError("preserve memory format is unsupported by the contiguous operator")
    order = format_order(memory_format, self._data.ndim)
    if laid_out(self._data, order):
        return self
    return clone(self, memory_format=memory_format)


Tensor.contiguous = _contiguous
Tensor.cpu = lambda self: self


@op(differentiable=())
def detach(input):
    """The same values, cut from the graph (never requires grad)."""
    return input.detach()


@primitive()
def _clone(x, perm):
    # a copy whose dims lie in memory in the order perm (outermost first)
    inv = tuple(np.argsort(perm)) if perm else ()
    out = np.empty(tuple(x.shape[d] for d in perm), x.dtype).transpose(inv)
    np.copyto(out, x)
    return out


_clone.defvjp(lambda ctx, g, perm: g)
_clone.defjvp(linear_jvp)
_clone.defbatch(lambda prim, a, f, perm: prim.fwd(a[0], perm=(0, *(d + 1 for d in perm))) if f[0]
                else prim.fwd(a[0], perm=perm))
_clone.defshape(elementwise_shape)


def _preserved_order(a: Any) -> tuple[int, ...]:
    """The dims of ``clone``'s preserve_format result, outermost first: torch keeps the strides
    of a dense, non-overlapping tensor; for others it orders the dims by stride, where a dim of
    stride 0 (expanded) keeps its place, and packs them densely."""
    nd = len(a.shape)
    if type(a) is not np.ndarray:
        return tuple(range(nd))
    st, sh = a.strides, a.shape
    perm = list(range(nd - 1, -1, -1))  # innermost first

    def swap(d0: int, d1: int) -> int:
        if st[d0] == 0 or st[d1] == 0:
            return 0
        if st[d0] != st[d1]:
            return 1 if st[d0] > st[d1] else -1
        return 1 if sh[d0] > sh[d1] else 0

    for i in range(1, nd):  # torch's stable insertion sort: stride-0 dims never move
        d1 = i
        for d0 in range(i - 1, -1, -1):
            c = swap(perm[d0], perm[d1])
            if c > 0:
                perm[d0], perm[d1] = perm[d1], perm[d0]
                d1 = d0
            elif c < 0:
                break
    return tuple(reversed(perm))


@op(method=True)
def clone(input, *, memory_format=None):
    """A copy that stays in the graph, laid out as ``input`` (``preserve_format``, the default)
    or in C order (``memory_format=engine.contiguous_format``).

    >>> engine.ones(2, 3).t().clone().is_contiguous()
    False
    """
    if memory_format is None or memory_format is preserve_format:
        return apply(_clone, (input,), {"perm": _preserved_order(input._data)})
    return apply(_clone, (input,), {"perm": format_order(memory_format, input._data.ndim)})
