"""torch's convenience ops, each a composition of other ops (no primitive of its own): stacking
and splitting variants, clamp_min/max, rsub, float_power, var_mean/std_mean, nanmean, dist,
trapezoid, take, masked_select and the identities of real tensors (conj, positive, ...).

Their gradients, meta shapes and create_graph behaviour come from the ops they are made of.
"""

from __future__ import annotations

import builtins
import math
from collections import namedtuple

import numpy as np

from .._autograd import elementwise_batch, primitive, zeros_jvp
from .._meta import _fresh, elementwise_shape
from ..tensor import Tensor
from ._registry import as_tensor_arg, op
from .creation import arange
from .elementwise import clamp, float_only, isnan, mul, pow, sign, sub, type_name, where
from .indexing import index_put
from .linalg_prims import diag, diagonal, dot, outer
from .reduction import amax, amin, cumsum, mean, nansum, norm, std, sum, var
from .shape import (
    broadcast_tensors,
    cat,
    chunk,
    expand,
    flip,
    getitem,
    index_select,
    movedim,
    narrow,
    norm_dim,
    permute,
    reshape,
    split,
    stack,
    transpose,
)
from .sorting import _row_groups, sort

_aminmax = namedtuple("aminmax", ["min", "max"])


# ---------------------------------------------------------------- elementwise conveniences
@op(method=True)
def clamp_min(input, min):  # noqa: A002
    """``clamp(input, min=min)``."""
    return clamp(input, min=min)


@op(method=True)
def clamp_max(input, max):  # noqa: A002
    """``clamp(input, max=max)``."""
    return clamp(input, max=max)


@op(differentiable=("input", "other"))
def rsub(input, other, *, alpha=1):
    """``other - alpha * input`` (subtraction, reversed).

    >>> engine.rsub(engine.tensor([1.0]), 5.0)
    tensor([4.])
    """
    return sub(other, input, alpha=alpha)


@op(differentiable=("input", "exponent"), method=True)
def float_power(input, exponent):
    """``pow`` computed in float64, whatever the operands' dtypes (torch.float_power)."""
    a = input.to(np.float64) if isinstance(input, Tensor) else float(input)
    b = exponent.to(np.float64) if isinstance(exponent, Tensor) else float(exponent)
    return pow(a, b)


@op(differentiable=("input", "other"), method=True)
def ldexp(input, other):
    """``input * 2 ** other``."""
    e = other.to(np.float64) if other._data.dtype.kind != "f" else other
    out = mul(input, pow(2.0, e))
    return out if input._data.dtype.kind != "f" else out.to(input.dtype)


@op(method=True)
def sgn(input):
    """The sign (for real tensors, ``sign``)."""
    return sign(input)


def _identity(name: str, doc: str) -> None:
    def fn(input):
        return input

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    op(method=True)(fn)


for _n in ("positive", "conj", "resolve_conj", "resolve_neg"):
    _identity(_n, f"``{_n}``: the input itself for real tensors.")


@op(method=True)
def conj_physical(input):
    """A copy (conjugation is the identity for real tensors)."""
    return input.clone()


# ---------------------------------------------------------------- shapes
def _tensor_args(tensors: tuple) -> tuple[list, bool]:
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        return list(tensors[0]), True
    return list(tensors), len(tensors) > 1


def _atleast(nd: int, tensors: tuple) -> object:
    ts, many = _tensor_args(tensors)
    out = []
    for t in ts:
        n = t._data.ndim
        if n < nd:
            shape = t._data.shape
            if nd == 3 and n == 2:
                shape = shape + (1,)
            elif nd == 3 and n == 1:
                shape = (1,) + shape + (1,)
            else:
                shape = (1,) * (nd - n) + shape
            t = reshape(t, shape)
        out.append(t)
    return tuple(out) if many else out[0]


@op(differentiable=("tensors",), n_outputs=None)
def atleast_1d(*tensors):
    """Each tensor viewed with at least one dim (a tuple for several tensors)."""
    return _atleast(1, tensors)


@op(differentiable=("tensors",), n_outputs=None)
def atleast_2d(*tensors):
    """Each tensor viewed with at least two dims."""
    return _atleast(2, tensors)


@op(differentiable=("tensors",), n_outputs=None)
def atleast_3d(*tensors):
    """Each tensor viewed with at least three dims (a matrix gains a last dim)."""
    return _atleast(3, tensors)


@op(differentiable=("tensors",))
def hstack(tensors):
    """Concatenate column-wise (along dim 0 for 1-D tensors)."""
    ts = list(_atleast(1, (list(tensors),)))
    return cat(ts, 0 if ts[0]._data.ndim == 1 else 1)


@op(differentiable=("tensors",))
def vstack(tensors):
    """Concatenate row-wise, 1-D tensors as rows."""
    return cat(list(_atleast(2, (list(tensors),))), 0)


@op(differentiable=("tensors",))
def dstack(tensors):
    """Concatenate along the third dim."""
    return cat(list(_atleast(3, (list(tensors),))), 2)


@op(differentiable=("tensors",))
def column_stack(tensors):
    """Stack 0-D and 1-D tensors as columns, concatenate the others along dim 1."""
    ts = [reshape(t, (t._data.size, 1)) if t._data.ndim <= 1 else t for t in tensors]
    return cat(ts, 1)


@op(method=True)
def ravel(input):
    """The elements as a 1-D tensor."""
    return reshape(input, (-1,))


@op(method=True)
def flipud(input):
    """Reverse dim 0."""
    if input._data.ndim < 1:
        raise RuntimeError("Input must be >= 1-d.")
    return flip(input, (0,))


@op(method=True)
def fliplr(input):
    """Reverse dim 1."""
    if input._data.ndim < 2:
        raise RuntimeError("Input must be >= 2-d.")
    return flip(input, (1,))


@op(method=True)
def rot90(input, k=1, dims=(0, 1)):
    """Rotate by 90 degrees ``k`` times in the plane of ``dims`` (from the first towards the
    second)."""
    if len(dims) != 2:
        raise RuntimeError(f"expected total rotation dims == 2, but got dims = {len(dims)}")
    if input._data.ndim < 2:
        raise RuntimeError(f"expected total dims >= 2, but got total dims = {input._data.ndim}")
    d0, d1 = (norm_dim(d, input._data.ndim) for d in dims)
    if d0 == d1:
        raise RuntimeError(f"expected rotation dims to be different, but got dim0 = {d0} and dim1 = {d1}")
    k %= 4
    if k == 1:
        return transpose(flip(input, (d1,)), d0, d1)
    if k == 2:
        return flip(input, (d0, d1))
    if k == 3:
        return transpose(flip(input, (d0,)), d0, d1)
    return input.clone()


@op(n_outputs=None, method=True)
def split_with_sizes(input, split_sizes, dim=0):
    """Split into pieces of the given sizes along ``dim``."""
    return split(input, list(split_sizes), dim)


@op(n_outputs=None, method=True)
def unsafe_split(input, split_size, dim=0):
    """``split`` (torch's unsafe variant is the same out of place)."""
    return split(input, split_size, dim)


@op(n_outputs=None, method=True)
def unsafe_chunk(input, chunks, dim=0):
    """``chunk``."""
    return chunk(input, chunks, dim)


@op(n_outputs=None, method=True)
def tensor_split(input, indices_or_sections, dim=0):
    """Split into ``n`` near-equal pieces (the first ``size % n`` one longer) or at indices."""
    d = norm_dim(dim, input._data.ndim)
    size = input._data.shape[d]
    ios = indices_or_sections
    if isinstance(ios, Tensor):
        ios = ios.tolist()
    if isinstance(ios, (int, np.integer)):
        n = int(ios)
        if n <= 0:
            raise RuntimeError(f"number of sections must be larger than 0, got {n}")
        q, r = divmod(size, n)
        bounds = np.cumsum([0] + [q + 1] * r + [q] * (n - r))
    else:
        idx = [builtins.min(builtins.max(int(i) + (size if i < 0 else 0), 0), size) for i in ios]
        bounds = [0, *idx, size]
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        a = builtins.min(int(a), size)
        out.append(narrow(input, d, a, builtins.max(int(b) - a, 0)))
    return tuple(out)


def _section_split(name: str, input: Tensor, ios: object, dim: int, min_dims: int) -> tuple:
    if input._data.ndim < min_dims:
        raise RuntimeError(f"torch.{name} requires a tensor with at least {min_dims} dimension, but got "
                           f"a tensor with {input._data.ndim} dimensions!")
    if isinstance(ios, (int, np.integer)) and input._data.shape[dim] % ios:
        raise RuntimeError(f"torch.{name} attempted to split along dimension {dim}, but the size of the "
                           f"dimension {input._data.shape[dim]} is not divisible by the split_size {ios}!")
    return tensor_split(input, ios, dim)


@op(n_outputs=None, method=True)
def vsplit(input, indices_or_sections):
    """``tensor_split`` along dim 0 (equal sections only)."""
    return _section_split("vsplit", input, indices_or_sections, 0, 2)


@op(n_outputs=None, method=True)
def hsplit(input, indices_or_sections):
    """``tensor_split`` along dim 1 (dim 0 for 1-D tensors)."""
    return _section_split("hsplit", input, indices_or_sections, 1 if input._data.ndim > 1 else 0, 1)


@op(n_outputs=None, method=True)
def dsplit(input, indices_or_sections):
    """``tensor_split`` along dim 2."""
    return _section_split("dsplit", input, indices_or_sections, 2, 3)


@op(method=True)
def narrow_copy(input, dim, start, length):
    """A copy of ``narrow(input, dim, start, length)``."""
    return narrow(input, dim, start, length).clone()


@op()
def expand_copy(input, size, *, implicit=False):
    """A copy of ``expand(input, size)``."""
    return expand(input, tuple(size)).clone()


@op()
def permute_copy(input, dims):
    """A copy of ``permute(input, dims)``."""
    return permute(input, tuple(dims)).clone()


# ---------------------------------------------------------------- statistics
@op(n_outputs=2)
def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """``(var, mean)`` over ``dim`` (var's spellings)."""
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    v = var(input, dim, unbiased, keepdim, correction=correction)
    return v, mean(input, dim, keepdim)


@op(n_outputs=2)
def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """``(std, mean)`` over ``dim``."""
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    s = std(input, dim, unbiased, keepdim, correction=correction)
    return s, mean(input, dim, keepdim)


@op(method=True)
def nanmean(input, dim=None, keepdim=False, *, dtype=None):
    """Mean of the non-NaN elements."""
    if dtype is not None:
        input = input.to(dtype)
    if input._data.dtype.kind != "f":
        raise RuntimeError("nanmean(): expected input to have floating point or complex dtype but got "
                           f"{input.dtype.name.capitalize()}")
    count = sum((~isnan(input)).to(input.dtype), dim, keepdim)
    return nansum(input, dim, keepdim) / count


@op(n_outputs=2, method=True)
def aminmax(input, *, dim=None, keepdim=False):
    """``(min, max)`` over ``dim`` (all elements by default)."""
    d = () if dim is None else dim
    return _aminmax(amin(input, d, keepdim), amax(input, d, keepdim))


@op(differentiable=(), method=True)
def count_nonzero(input, dim=None):
    """The number of non-zero elements (over ``dim``)."""
    return sum((input != 0).to(np.int64), dim)


@op(differentiable=("input", "other"), method=True)
def dist(input, other, p=2):
    """``norm(input - other, p)`` over all elements."""
    a, b = broadcast_tensors(as_tensor_arg(input), as_tensor_arg(other))
    return norm(a - b, p)


@op(method=True)
def msort(input):
    """Sorted along dim 0."""
    return sort(input, 0).values


@op(differentiable=("y", "x"))
def trapezoid(y, x=None, *, dx=None, dim=-1):
    """The trapezoidal rule along ``dim``: spacing ``x`` (a tensor) or ``dx`` (default 1)."""
    d = norm_dim(dim, y._data.ndim)
    n = y._data.shape[d]
    if n == 0:
        return sum(y, d)
    avg = (narrow(y, d, 1, n - 1) + narrow(y, d, 0, n - 1)) / 2
    return sum(avg * _spacing(x, dx, d, y), d)


@op(differentiable=("y", "x"))
def trapz(y, x=None, *, dx=None, dim=-1):
    """``trapezoid``'s older name."""
    return trapezoid(y, x, dx=dx, dim=dim)


@op(differentiable=("y", "x"))
def cumulative_trapezoid(y, x=None, *, dx=None, dim=-1):
    """The running trapezoidal rule along ``dim`` (one element shorter)."""
    d = norm_dim(dim, y._data.ndim)
    n = y._data.shape[d]
    if n == 0:
        return y
    avg = (narrow(y, d, 1, n - 1) + narrow(y, d, 0, n - 1)) / 2
    return cumsum(avg * _spacing(x, dx, d, y), d)


def _spacing(x: Tensor | None, dx: object, d: int, y: Tensor) -> object:
    if x is None:
        return 1.0 if dx is None else dx
    if not isinstance(x, Tensor):  # torch.trapz(y, dx) positional
        return x
    if x._data.ndim == 1:
        dxs = narrow(x, 0, 1, x._data.shape[0] - 1) - narrow(x, 0, 0, x._data.shape[0] - 1)
        shape = [1] * y._data.ndim
        shape[d] = dxs._data.shape[0]
        return reshape(dxs, tuple(shape))
    xd = norm_dim(d - y._data.ndim, x._data.ndim)
    m = x._data.shape[xd]
    return narrow(x, xd, 1, m - 1) - narrow(x, xd, 0, m - 1)


# ---------------------------------------------------------------- linear algebra
@op(differentiable=("input", "other"), method=True)
def vdot(input, other):
    """``dot`` (the conjugation is the identity for real tensors)."""
    return dot(input, other)


@op(differentiable=("input", "vec1", "vec2"), method=True)
def addr(input, vec1, vec2, *, beta=1, alpha=1):
    """``beta * input + alpha * outer(vec1, vec2)`` (``input`` ignored when ``beta`` is 0)."""
    o = outer(vec1, vec2)
    if alpha != 1:
        o = o * alpha
    if beta == 0:  # torch ignores input's values then (NaN included): only its shape counts
        return expand(o, tuple(np.broadcast_shapes(input._data.shape, o._data.shape)))
    return input * beta + o if beta != 1 else input + o


# ---------------------------------------------------------------- indexing
@op(method=True)
def take(input, index):
    """Elements of the flattened input at ``index`` (any shape)."""
    idx = np.asarray(index._data if isinstance(index, Tensor) else index)
    n = input._data.size
    if idx.size and (idx.max() >= n or idx.min() < -n):
        raise IndexError(f"out of range: tried to access index {int(idx.max())} on a tensor of {n} elements.")
    return getitem(reshape(input, (-1,)), idx)


@op(method=True)
def masked_select(input, mask):
    """The elements where ``mask`` (broadcast with ``input``) is true, as a 1-D tensor."""
    x, m = broadcast_tensors(as_tensor_arg(input), as_tensor_arg(mask))
    if m._data.dtype != np.bool_:
        raise RuntimeError(f"masked_select: expected BoolTensor for mask, but got {m.dtype.name}")
    return getitem(x, m._data)


# ---------------------------------------------------------------- NaN-ignoring extrema, covariance
@op(differentiable=("input", "other"), method=True)
def fmax(input, other):
    """Elementwise maximum ignoring NaN (NaN only where both are NaN); the gradient goes to
    ``input`` where ``input >= other`` or ``other`` is NaN, as torch's."""
    a, b = as_tensor_arg(input), as_tensor_arg(other)
    return where((a >= b) | isnan(b), a, b)


@op(differentiable=("input", "other"), method=True)
def fmin(input, other):
    """Elementwise minimum ignoring NaN."""
    a, b = as_tensor_arg(input), as_tensor_arg(other)
    return where((a <= b) | isnan(b), a, b)


@op(differentiable=("input", "aweights"), method=True)
def cov(input, *, correction=1, fweights=None, aweights=None):
    """Covariance of the rows (variables) over the columns (observations), optionally weighted.

    >>> engine.cov(engine.tensor([[0.0, 2.0], [1.0, 1.0]]))
    tensor([[ 2.,  0.],
            [ 0.,  0.]])
    """
    if input._data.ndim > 2:
        raise RuntimeError(f"cov(): expected input to have two or fewer dimensions but got an input "
                           f"with {input._data.ndim} dimensions")
    x = reshape(input, (1, -1)) if input._data.ndim < 2 else input
    if x._data.dtype.kind != "f":
        x = x.to(np.float32)
    n = x._data.shape[1]
    w = None
    if fweights is not None:
        w = fweights.to(x.dtype)
    if aweights is not None:
        w = aweights if w is None else w * aweights
    if w is None:
        avg = mean(x, 1, True)
        factor = float(n - correction)
    else:
        w_sum = sum(w)
        avg = sum(x * w, 1, True) / w_sum
        factor = w_sum - correction if aweights is None else \
            w_sum - correction * sum(w * aweights) / w_sum
    xm = x - avg
    c = (xm * w if w is not None else xm) @ transpose(xm, 0, 1)
    if isinstance(factor, float):
        factor = builtins.max(factor, 0.0)
    else:
        factor = where(factor <= 0, 0.0, factor)
    out = c / factor
    return reshape(out, tuple(d for d in out._data.shape if d != 1))  # torch squeezes the result


@op(method=True)
def corrcoef(input):
    """Pearson correlation coefficients of the rows, clipped to [-1, 1]."""
    c = cov(input)
    if c._data.ndim == 0:
        return c / c
    s = diagonal(c).sqrt()
    c = c / reshape(s, (-1, 1)) / reshape(s, (1, -1))
    return clamp(c, -1.0, 1.0)


# ---------------------------------------------------------------- small ones
@op(method=True)
def exp2(input):
    """``2 ** input``."""
    x = input if input._data.dtype.kind == "f" else input.to(np.float32)
    return pow(2.0, x)


def _flag(name: str, fn: object, doc: str) -> None:
    def f(input):
        return Tensor._make(np.asarray(fn(input._data), np.bool_))

    f.__name__ = f.__qualname__ = name
    f.__doc__ = doc
    op(differentiable=(), method=True)(f)


_flag("signbit", np.signbit, "True where the sign bit is set (-0.0 and NaN with the bit included).")
_flag("isposinf", np.isposinf, "True at +inf.")
_flag("isneginf", np.isneginf, "True at -inf.")
_flag("isreal", lambda a: np.ones(a.shape, bool), "True everywhere (real dtypes only).")


@op(method=True)
def diagflat(input, offset=0):
    """The flattened input on the ``offset`` diagonal of a square matrix."""
    return diag(reshape(input, (-1,)), offset)


def _new(name: str, make: object, doc: str) -> None:
    def f(input, *args, dtype=None, device=None, requires_grad=False, layout=None, pin_memory=False):
        t = make(input, args, dtype if dtype is not None else input.dtype)
        if requires_grad:
            t.requires_grad_()
        return t

    f.__name__ = f.__qualname__ = name
    f.__doc__ = doc
    op(differentiable=(), method=True)(f)


def _size(args: tuple) -> tuple:
    size = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
    return tuple(int(s) for s in size)


def _make_full(value: float, args: tuple, dt: object) -> Tensor:
    from .._dtype import to_dtype
    return Tensor._make(np.full(_size(args), value, to_dtype(dt).np))


_new("new_ones", lambda x, a, dt: _make_full(1, a, dt), "Ones of the given size, with the input's dtype.")
_new("new_zeros", lambda x, a, dt: _make_full(0, a, dt), "Zeros of the given size, with the input's dtype.")
_new("new_full", lambda x, a, dt: _make_full(a[1], a[:1], dt),
     "``fill_value`` in the given size, with the input's dtype: ``x.new_full(size, fill_value)``.")
_new("new_empty", lambda x, a, dt: _make_full(0, a, dt),
     "A tensor of the given size with the input's dtype (zeros: the engine never hands out "
     "uninitialized memory).")


def _new_tensor(input, data, *, dtype=None, device=None, requires_grad=False, layout=None,
                pin_memory=False):
    """``data`` as a new tensor, with the input's dtype unless ``dtype`` is given.

    >>> engine.ones(2).new_tensor([1, 2])
    tensor([1., 2.])
    """
    from ..tensor import tensor
    if isinstance(data, Tensor):
        data = data.detach()._data
    return tensor(data, dtype=dtype if dtype is not None else input.dtype, requires_grad=requires_grad)


_new_tensor.__name__ = _new_tensor.__qualname__ = "new_tensor"
op(differentiable=(), method=True)(_new_tensor)


@op(differentiable=("input", "src"), method=True)
def select_scatter(input, src, dim, index):
    """``input`` with ``input.select(dim, index)`` replaced by ``src``."""
    d = norm_dim(dim, input._data.ndim)
    n = input._data.shape[d]
    i = index + n if index < 0 else index
    if not 0 <= i < n:
        raise IndexError(f"select(): index {index} out of range for tensor of size "
                         f"{list(input._data.shape)} at dimension {d}")
    shape = [1] * input._data.ndim
    shape[d] = n
    mask = Tensor._make((np.arange(n) == i).reshape(shape))
    return where(mask, src.unsqueeze(d), input)


# ---------------------------------------------------------------- where, which values, how close
# Built from the engine's primitives (mask indexing, sort), the masks included: meta mode then
# knows it does not know their values and bounds what a mask selects by its size, the input's
# (a comparison outside primitives would compute on placeholder values).
@primitive()
def _nonzero_mask(x):
    return x != 0


_nonzero_mask.defjvp(zeros_jvp)
_nonzero_mask.defbatch(elementwise_batch)
_nonzero_mask.defshape(elementwise_shape)


@primitive()
def _run_starts(v):
    """Where each run of equal values of the sorted 1-d ``v`` starts (each NaN its own run)."""
    out = np.ones(v.shape, np.bool_)
    np.not_equal(v[1:], v[:-1], out=out[1:])
    return out


_run_starts.defjvp(zeros_jvp)
_run_starts.defbatch(lambda prim, a, f: np.stack([prim.fwd(v) for v in a[0]]))
_run_starts.defshape(lambda prim, arrays, params: _fresh(np.shape(arrays[0]), np.dtype(np.bool_)))


@primitive()
def _isclose(a, b, rtol, atol, equal_nan):
    close = np.equal(a, b)
    if equal_nan:
        close |= np.isnan(a) & np.isnan(b)
    if a.dtype.kind == "f" and not (rtol == 0 and atol == 0):
        with np.errstate(invalid="ignore", over="ignore"):
            near = np.abs(a - b) <= atol + rtol * np.abs(b)
        close |= near & np.isfinite(a) & np.isfinite(b)
    return close


_isclose.defjvp(zeros_jvp)
_isclose.defbatch(elementwise_batch)
_isclose.defshape(elementwise_shape)


def _refuse_dynamic_vmap(t: object, name: str) -> None:
    """torch's vmap error for an op whose output size depends on each element's values."""
    from .. import _autograd
    level = _autograd._state.vm
    bat = getattr(t, "_bat", None)
    if level is not None and bat is not None and bat[0] == level:
        raise RuntimeError(f"vmap: We do not support batching operators that can output dynamic shape. "
                           f"Attempted to vmap over aten::{name}. Please file an issue at "
                           f"https://github.com/pytorch/pytorch/issues if you need this feature.")


def _index_grids(shape: tuple) -> list[Tensor]:
    """Each dim's coordinate of every entry of a tensor of ``shape`` (broadcast views)."""
    nd = len(shape)
    return [expand(reshape(arange(n), (1,) * d + (n,) + (1,) * (nd - d - 1)), shape)
            for d, n in enumerate(shape)]


@op(differentiable=(), method=True)
def nonzero(input, *, out=None, as_tuple=False):
    """The coordinates of the nonzero entries, one row each (``as_tuple``: one tensor per dim),
    in row-major order.

    >>> engine.nonzero(engine.tensor([[0, 1], [2, 0]]))
    tensor([[0, 1],
            [1, 0]])
    """
    if out is not None:
        raise TypeError("nonzero(): out= is not supported")
    _refuse_dynamic_vmap(input, "nonzero")
    x = as_tensor_arg(input).detach()
    shape = tuple(x._data.shape)
    mask = _nonzero_mask(x)
    if not shape:  # a 0-d tensor counts as one entry (torch)
        found = reshape(mask, (1,))
        if as_tuple:
            return (getitem(_index_grids((1,))[0], found),)
        return _no_coordinates(found)
    coords = [getitem(g, mask) for g in _index_grids(shape)]
    return tuple(coords) if as_tuple else stack(coords, dim=1)


def _no_coordinates(found: Tensor) -> Tensor:
    # a 0-d input: one row of no coordinates where it is nonzero, none where it is zero
    rows = int(found._data.sum()) if type(found._data) is np.ndarray else 1
    return Tensor._make(np.zeros((rows, 0), np.int64))


@op(differentiable=(), method=True)
def argwhere(input):
    """``nonzero(input)``: one row of coordinates per nonzero entry.

    >>> engine.argwhere(engine.tensor([0.0, 3.0, 0.0, 1.0]))
    tensor([[1],
            [3]])
    """
    return nonzero(input)


@op(differentiable=(), method=True)
def unique(input, sorted=True, return_inverse=False, return_counts=False, dim=None):  # noqa: A002
    """The distinct values, in ascending order (``sorted=False`` sorts too, as torch on CPU); each
    NaN is distinct. With ``dim``, the distinct slices along it, in lexicographic order.
    ``return_inverse``: where each entry's (slice's) value is in them; ``return_counts``: how
    often each occurs. The values do not require grad (torch's have no derivative).

    >>> engine.unique(engine.tensor([3, 1, 3]), return_counts=True)
    (tensor([1, 3]), tensor([1, 2]))
    """
    _refuse_dynamic_vmap(input, "_unique2")
    x = as_tensor_arg(input).detach()
    if dim is not None:  # distinct slices along dim, in lexicographic order
        if x._data.ndim == 0:
            raise IndexError(f"Dimension specified as {dim} but tensor has no dimensions")
        d = norm_dim(dim, x._data.ndim)
        rows = reshape(movedim(x, d, 0), (x._data.shape[d], -1)) if x._data.shape[d] else None
        n = x._data.shape[d]
        keys = _row_groups(rows) if rows is not None else Tensor._make(np.zeros(0, np.int64))
        shape = (n,)
    else:
        keys = reshape(x, (-1,))
        n = keys._data.shape[0]
        shape = x._data.shape
    vals, order = sort(keys, stable=True)
    first = _run_starts(vals)
    if dim is None:
        out = [getitem(vals, first)]
    else:
        out = [index_select(x, d, getitem(order, first))]
    if return_inverse:
        group = cumsum(first.long(), 0) - 1  # each sorted entry's group
        inv = index_put(Tensor._make(np.zeros(n, np.int64)), (order,), group)
        out.append(reshape(inv, shape))
    if return_counts:
        starts = getitem(arange(n), first)
        ends = cat([starts[1:], Tensor._make(np.array([n], np.int64))])
        out.append(ends - starts)
    return out[0] if len(out) == 1 else tuple(out)


@op(differentiable=(), method=True)
def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """Elementwise ``|input - other| <= atol + rtol * |other|``, infinities equal only to
    themselves; NaN equal to NaN only with ``equal_nan``.

    >>> engine.isclose(engine.tensor([1.0, 2.0]), engine.tensor([1.0 + 1e-9, 2.1]))
    tensor([ True, False])
    """
    a, b = as_tensor_arg(input).detach(), as_tensor_arg(other).detach()
    if a._data.dtype != b._data.dtype:
        raise RuntimeError(f"{type_name(a._data.dtype)} did not match {type_name(b._data.dtype)}")
    if rtol < 0:
        raise RuntimeError(f"rtol must be greater than or equal to zero, but got {rtol:g}")
    if atol < 0:
        raise RuntimeError(f"atol must be greater than or equal to zero, but got {atol:g}")
    return _isclose(a, b, rtol=float(rtol), atol=float(atol), equal_nan=bool(equal_nan))


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
    """Whether every entry is close (:func:`isclose`, broadcast).

    >>> engine.allclose(engine.tensor([1.0, 2.0]), engine.tensor([1.0, 2.0 + 1e-9]))
    True
    """
    return bool(isclose(input, other, rtol, atol, equal_nan).all().item())


def equal(input, other) -> bool:
    """Whether the two tensors have the same size and the same values (NaN is not equal to NaN).

    >>> engine.equal(engine.tensor([1, 2]), engine.tensor([1.0, 2.0]))
    True
    """
    a, b = as_tensor_arg(input), as_tensor_arg(other)
    if a._data.shape != b._data.shape:
        return False
    return bool(np.array_equal(a._data, b._data))


Tensor.allclose = allclose
Tensor.equal = equal


# ---------------------------------------------------------------- histograms and counts
def _nan_str(v: float) -> str:
    if math.isnan(v):
        return "-nan" if math.copysign(1.0, v) < 0 else "nan"
    return f"{v:g}"


@primitive()
def _histc(x, bins, lo, hi):
    x = x.reshape(-1)
    if lo == hi and x.size:
        lo, hi = float(np.min(x)), float(np.max(x))
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise RuntimeError(f"torch.histc: range of [{_nan_str(lo)}, {_nan_str(hi)}] is not finite")
    edges = np.linspace(lo, hi, bins + 1).astype(x.dtype)
    counts, _ = np.histogram(x[(x >= edges[0]) & (x <= edges[-1])], bins=edges)
    return counts.astype(x.dtype)


_histc.defjvp(zeros_jvp)
_histc.defbatch(lambda prim, a, f, **p: np.stack([prim.fwd(v, **p) for v in a[0]]))
_histc.defshape(lambda prim, arrays, params: _fresh((params["bins"],), np.asarray(arrays[0]).dtype))


@op(differentiable=(), method=True)
def histc(input, bins=100, min=0, max=0, *, out=None):  # noqa: A002 (torch's names)
    """A histogram of ``bins`` equal bins over ``[min, max]`` (the data's range where ``min ==
    max``); entries outside it and NaN are not counted.

    >>> engine.histc(engine.tensor([1.0, 2.0, 1.0]), bins=4, min=0, max=3)
    tensor([0., 2., 1., 0.])
    """
    x = as_tensor_arg(input).detach()
    float_only("histogram_cpu", x._data.dtype)
    if bins <= 0:
        raise RuntimeError(f"torch.histogram(): bins must be > 0, but got {bins} for dimension 0")
    if min > max:
        raise RuntimeError("torch.histc: max must be larger than min")
    return _histc(x, bins=int(bins), lo=float(min), hi=float(max))


@primitive()
def _bincount(x, w, minlength):
    out = np.bincount(x, None if w is None else w, minlength=minlength)
    return out if w is None else out.astype(w.dtype if w.dtype.kind == "f" else np.float64)


def _bincount_shape(prim, arrays, params):
    from .._meta import Unknown
    raise Unknown("bincount: the result's size is the largest value counted")


_bincount.defjvp(zeros_jvp)
_bincount.defshape(_bincount_shape)


@_bincount.defbatch
def _bincount_batch(prim, a, f, minlength):
    n = next(v.shape[0] for v, fl in zip(a, f) if fl)
    outs = [prim.fwd(*[v[i] if fl else v for v, fl in zip(a, f)], minlength=minlength) for i in range(n)]
    return np.stack(outs)  # (counts of different lengths do not stack: as torch's vmap)


@op(differentiable=(), method=True)
def bincount(input, weights=None, minlength=0):
    """How often each of ``0 .. max(input)`` occurs in the 1-d non-negative integer ``input``
    (summing ``weights`` instead of counting ones); at least ``minlength`` entries.

    >>> engine.bincount(engine.tensor([0, 1, 1, 3]))
    tensor([1, 2, 0, 1])
    """
    x = as_tensor_arg(input).detach()
    if x._data.dtype.kind not in "iub" or x._data.dtype.kind == "b":
        raise NotImplementedError(f"\"bincount_cpu\" not implemented for '{type_name(x._data.dtype)}'")
    if x._data.ndim != 1 or (x._data.size and int(x._data.min()) < 0):
        raise RuntimeError("bincount only supports 1-d non-negative integral inputs.")
    if minlength < 0:
        raise RuntimeError("minlength should be >= 0")
    w = None if weights is None else as_tensor_arg(weights).detach()
    if w is not None and w._data.shape != x._data.shape:
        raise RuntimeError("weights should be 1-d and have the same length as input")
    return _bincount(x, w, minlength=int(minlength))
