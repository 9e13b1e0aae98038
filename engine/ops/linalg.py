"""Linear algebra core: matrix products and triangular/diagonal views."""

from __future__ import annotations

import numpy as np

from .._autograd import apply, primitive
from ..tensor import Tensor
from ._registry import op, promote
from .shape import reshape, squeeze, transpose, unsqueeze


# ---------------------------------------------------------------- matmul
@primitive(save=(0, 1))
def _matmul(a, b):
    return np.matmul(a, b)


@_matmul.defvjp
def _matmul_vjp(ctx, g, a, b):
    # Lift 1-D operands to matrices, differentiate, then drop the lifted dims again;
    # batch-broadcast dims are summed away centrally.
    a1, b1 = a._data.ndim == 1, b._data.ndim == 1
    a2 = unsqueeze(a, 0) if a1 else a
    b2 = unsqueeze(b, -1) if b1 else b
    g2 = g
    if a1 and b1:
        g2 = reshape(g, (1, 1))
    elif a1:
        g2 = unsqueeze(g, -2)
    elif b1:
        g2 = unsqueeze(g, -1)
    ga = gb = None
    if ctx.edges[0] is not None:
        ga = matmul(g2, transpose(b2, -1, -2))
        if a1:
            ga = squeeze(ga, -2)
    if ctx.edges[1] is not None:
        gb = matmul(transpose(a2, -1, -2), g2)
        if b1:
            gb = squeeze(gb, -1)
    return ga, gb


def _shape_str(s: tuple) -> str:
    return "x".join(str(d) for d in s)


@op(differentiable=("input", "other"), method=True)
def matmul(input, other):
    """Matrix product with numpy/torch broadcasting (1-D, 2-D and batched)."""
    a, b = input._data, other._data
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are "
                           f"{a.ndim}D and {b.ndim}D")
    ka = a.shape[-1]
    kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if ka != kb:
        if a.ndim <= 2 and b.ndim <= 2:
            if a.ndim == 1 and b.ndim == 1:
                raise RuntimeError(f"inconsistent tensor size, expected tensor [{ka}] and src "
                                   f"[{kb}] to have the same number of elements, but got {ka} and "
                                   f"{kb} elements respectively")
            sa = (1,) + a.shape if a.ndim == 1 else a.shape
            sb = b.shape + (1,) if b.ndim == 1 else b.shape
            raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied "
                               f"({_shape_str(sa)} and {_shape_str(sb)})")
        raise RuntimeError(f"Expected size for first two dimensions of batch2 tensor to be: "
                           f"[{kb}, {ka}] but got: {list(b.shape[-2:])}.")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise RuntimeError(f"The size of tensor a must match the size of tensor b at a "
                           f"non-singleton dimension: {list(a.shape)} and {list(b.shape)}") from None
    return apply(_matmul, (input, other), None, promote(input, other))


Tensor.__matmul__ = matmul
Tensor.__rmatmul__ = lambda self, other: matmul(other if isinstance(other, Tensor) else
                                                Tensor._make(np.asarray(other)), self)


@op(differentiable=("input", "mat2"), method=True)
def mm(input, mat2):
    """Product of two matrices."""
    if input._data.ndim != 2:
        raise RuntimeError("self must be a matrix")
    if mat2._data.ndim != 2:
        raise RuntimeError("mat2 must be a matrix")
    return matmul(input, mat2)


@op(differentiable=("input", "mat2"), method=True)
def bmm(input, mat2):
    """Batched product of two 3-D tensors with equal batch sizes."""
    if input._data.ndim != 3:
        raise RuntimeError("batch1 must be a 3D tensor")
    if mat2._data.ndim != 3:
        raise RuntimeError("batch2 must be a 3D tensor")
    if input._data.shape[0] != mat2._data.shape[0]:
        raise RuntimeError("batch1 and batch2 must have same number of batches, got "
                           f"{input._data.shape[0]} and {mat2._data.shape[0]}")
    return matmul(input, mat2)


@op(differentiable=("input", "vec"), method=True)
def mv(input, vec):
    """Matrix-vector product."""
    if input._data.ndim != 2 or vec._data.ndim != 1:
        raise RuntimeError(f"vector + matrix @ vector expected, got 1, {input._data.ndim}, "
                           f"{vec._data.ndim}")
    return matmul(input, vec)


@op(differentiable=("input", "other"), method=True, aliases=("inner",))
def dot(input, other):
    """Dot product of two 1-D tensors."""
    if input._data.ndim != 1 or other._data.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input._data.ndim}D and "
                           f"{other._data.ndim}D tensors")
    return matmul(input, other)


@op(differentiable=("input", "vec2"), method=True, aliases=("ger",))
def outer(input, vec2):
    """Outer product of two 1-D tensors."""
    return unsqueeze(input, -1) * unsqueeze(vec2, 0)


# ---------------------------------------------------------------- triangles
@primitive()
def _tril(x, diagonal):
    return np.tril(x, diagonal)


@primitive()
def _triu(x, diagonal):
    return np.triu(x, diagonal)


_tril.defvjp(lambda ctx, g, diagonal: _tril(g, diagonal=diagonal))
_triu.defvjp(lambda ctx, g, diagonal: _triu(g, diagonal=diagonal))


@op(method=True)
def tril(input, diagonal=0):
    """Lower triangle of the last two dims; the rest zero."""
    if input._data.ndim < 2:
        raise RuntimeError("tril: input tensor must have at least 2 dimensions")
    return _tril(input, diagonal=diagonal)


@op(method=True)
def triu(input, diagonal=0):
    """Upper triangle of the last two dims; the rest zero."""
    if input._data.ndim < 2:
        raise RuntimeError("triu: input tensor must have at least 2 dimensions")
    return _triu(input, diagonal=diagonal)
