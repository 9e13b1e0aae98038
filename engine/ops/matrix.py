"""Top-level linear-algebra ops beyond matmul: tensordot, the add*mm family, kron, cross, cdist,
logdet and cholesky_solve, built on the primitives of ``linalg_prims`` and ``lapack_prims``.
(``det``, ``inverse``, ``slogdet`` and ``matrix_power`` are aliases registered by
:mod:`engine.linalg`, which stands above this package and is not imported here.)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._autograd import primitive, transpose_jvp
from .._meta import _fresh, _solve_shape, _square, _tri_solve_work
from ..tensor import Tensor
from ._registry import op
from .elementwise import type_name, where
from .lapack_prims import _bcast_batch, _matrix, _slogdet, _tname
from .linalg_prims import _c_name, cross_product, matmul, vector_norm_of
from .shape import norm_dim, permute, reshape, unsqueeze


def _T(x: Tensor) -> Tensor:
    return x.transpose(-1, -2)


# ---------------------------------------------------------------- contractions
@op(differentiable=("a", "b"))
def tensordot(a, b, dims=2, out=None):
    """Contract ``dims`` (an int: a's last and b's first dims; or two lists of dims).

    >>> engine.tensordot(engine.ones(2, 3), engine.ones(3, 4), dims=1).shape
    torch.Size([2, 4])
    """
    if isinstance(dims, Tensor):
        dims = dims.tolist()
    if isinstance(dims, int):
        if dims < 0:
            raise RuntimeError(f"tensordot expects dims >= 0, but got dims={dims}")
        if dims > a._data.ndim or dims > b._data.ndim:
            raise RuntimeError(f"tensordot expects dims < ndim_a or ndim_b, but got dims={dims}")
        da, db = list(range(-dims, 0)), list(range(dims))
    else:
        da, db = ([d] if isinstance(d, int) else list(d) for d in dims)
    if len(da) != len(db):
        raise RuntimeError("both dimension lists should have same length")
    if a._data.dtype != b._data.dtype:
        raise RuntimeError("both inputs should have same dtype")
    for x, y in zip(da, db):
        if a._data.shape[x] != b._data.shape[y]:
            raise RuntimeError(f"contracted dimensions need to match, but first has size "
                               f"{a._data.shape[x]} in dim {x} and second has size "
                               f"{b._data.shape[y]} in dim {y}")
    ca = [norm_dim(d, a._data.ndim) for d in da]
    cb = [norm_dim(d, b._data.ndim) for d in db]
    fa = [i for i in range(a._data.ndim) if i not in ca]
    fb = [i for i in range(b._data.ndim) if i not in cb]
    k = math.prod(a._data.shape[i] for i in ca)
    a2 = reshape(permute(a, fa + ca), (-1, k)) if fa or ca else reshape(a, (1, 1))
    b2 = reshape(permute(b, cb + fb), (k, -1)) if fb or cb else reshape(b, (1, 1))
    shape = tuple(a._data.shape[i] for i in fa) + tuple(b._data.shape[i] for i in fb)
    return reshape(matmul(a2, b2), shape)


@op(differentiable=("input", "other"), method=True)
def inner(input, other):
    """Contract the last dims (any ndim); a 0-D operand multiplies elementwise (promoting).

    >>> engine.inner(engine.ones(2, 3), engine.ones(4, 3)).shape
    torch.Size([2, 4])
    """
    if input._data.ndim == 0 or other._data.ndim == 0:
        return input * other
    if input._data.shape[-1] != other._data.shape[-1]:
        raise RuntimeError(f"inner() the last dimension must match on both input tensors but got "
                           f"shapes {list(input._data.shape)} and {list(other._data.shape)}")
    return tensordot(input, other, dims=([-1], [-1]))


def _affine(input: Tensor, product: Tensor, beta: object, alpha: object) -> Tensor:
    """``beta * input + alpha * product``; beta = 0 ignores input (NaNs too), as torch does."""
    _check_expand(input, product._data.shape)
    out = product if alpha == 1 else product * alpha
    if beta == 0:  # zero gradient for input, and none of its values leak in
        return out + where(Tensor._make(np.False_), input, 0)  # 0: keeps an integer dtype
    return out + (input if beta == 1 else input * beta)


def _check_expand(input: Tensor, shape: tuple) -> None:
    """torch's error when ``input`` does not broadcast to the product's ``shape``."""
    try:
        ok = np.broadcast_shapes(input._data.shape, shape) == shape
    except ValueError:
        ok = False
    if not ok:
        src = (1,) * (len(shape) - input._data.ndim) + input._data.shape
        i = next(i for i, (s, t) in enumerate(zip(src, shape)) if s not in (1, t))
        raise RuntimeError(f"The expanded size of the tensor ({shape[i]}) must match the existing "
                           f"size ({src[i]}) at non-singleton dimension {i}.  Target sizes: "
                           f"{list(shape)}.  Tensor sizes: {list(input._data.shape)}")


def _shape(t: Tensor) -> str:
    return "x".join(str(s) for s in t._data.shape)


def _addmm_dtypes(input: Tensor, mat1: Tensor, mat2: Tensor) -> None:
    """torch's addmm (and addbmm, and linear with a bias) never promotes: self, then mat1, is
    compared with mat2. Called only when some dtype differs."""
    d2 = mat2._data.dtype
    for name, x in (("self", input), ("mat1", mat1)):
        if x._data.dtype != d2:
            raise RuntimeError(f"{name} and mat2 must have the same dtype, but got "
                               f"{type_name(x._data.dtype)} and {type_name(d2)}")


@op(differentiable=("input", "mat1", "mat2"), method=True)
def addmm(input, mat1, mat2, *, beta=1, alpha=1):
    """``beta * input + alpha * (mat1 @ mat2)``.

    >>> engine.addmm(engine.zeros(2, 2), engine.ones(2, 3), engine.ones(3, 2), alpha=2)
    tensor([[6., 6.],
            [6., 6.]])
    """
    dt = mat2._data.dtype
    if input._data.dtype != dt or mat1._data.dtype != dt:  # torch checks dtypes before shapes
        _addmm_dtypes(input, mat1, mat2)
    for name, m in (("mat1", mat1), ("mat2", mat2)):
        if m._data.ndim != 2:
            raise RuntimeError(f"{name} must be a matrix, got {m._data.ndim}-D tensor")
    if mat1._data.shape[1] != mat2._data.shape[0]:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({_shape(mat1)} and "
                           f"{_shape(mat2)})")
    return _affine(input, matmul(mat1, mat2), beta, alpha)


@op(differentiable=("input", "mat", "vec"), method=True)
def addmv(input, mat, vec, *, beta=1, alpha=1):
    """``beta * input + alpha * (mat @ vec)``.

    >>> engine.addmv(engine.ones(2), engine.ones(2, 3), engine.ones(3))
    tensor([4., 4.])
    """
    if mat._data.ndim != 2 or vec._data.ndim != 1 or input._data.ndim > 1:
        raise RuntimeError(f"vector + matrix @ vector expected, got {input._data.ndim}, "
                           f"{mat._data.ndim}, {vec._data.ndim}")
    if mat._data.shape[1] != vec._data.shape[0] or input._data.shape not in (
            (), (1,), (mat._data.shape[0],)):
        raise RuntimeError(f"size mismatch, got input ({_shape(input)}), mat ({_shape(mat)}), "
                           f"vec ({_shape(vec)})")
    dt = mat._data.dtype
    if input._data.dtype != dt or vec._data.dtype != dt:
        raise RuntimeError(f"addmv input tensors must have the same dtype, but got "
                           f"{type_name(input._data.dtype)}, {type_name(dt)}, and "
                           f"{type_name(vec._data.dtype)}")
    return _affine(input, matmul(mat, vec), beta, alpha)


def _check_3d(batch1: Tensor, batch2: Tensor) -> None:
    for name, b in (("batch1", batch1), ("batch2", batch2)):
        if b._data.ndim != 3:
            raise RuntimeError(f"{name} must be a 3D tensor")


def _check_batches(batch1: Tensor, batch2: Tensor) -> None:
    _check_3d(batch1, batch2)
    if batch1._data.shape[0] != batch2._data.shape[0]:
        raise RuntimeError(f"batch1 and batch2 must have same number of batches, got "
                           f"{batch1._data.shape[0]} and {batch2._data.shape[0]}")


@op(differentiable=("input", "batch1", "batch2"), method=True)
def addbmm(input, batch1, batch2, *, beta=1, alpha=1):
    """``beta * input + alpha * sum_b(batch1[b] @ batch2[b])``.

    >>> engine.addbmm(engine.zeros(2, 2), engine.ones(3, 2, 4), engine.ones(3, 4, 2))
    tensor([[12., 12.],
            [12., 12.]])
    """
    _check_batches(batch1, batch2)
    if batch1._data.shape[2] != batch2._data.shape[1]:
        s1, s2 = batch1._data.shape[1:], batch2._data.shape[1:]
        raise RuntimeError(f"Incompatible matrix sizes for bmm ({s1[0]}x{s1[1]} and "
                           f"{s2[0]}x{s2[1]})")
    dt = batch2._data.dtype
    if (input._data.dtype != dt or batch1._data.dtype != dt) and batch1._data.shape[0]:
        # torch checks the dtypes after the shapes (no batches: no check, no product)
        _check_expand(input, (batch1._data.shape[1], batch2._data.shape[2]))
        _addmm_dtypes(input, batch1, batch2)
    return _affine(input, matmul(batch1, batch2).sum(0), beta, alpha)


@op(differentiable=("input", "batch1", "batch2"), method=True)
def baddbmm(input, batch1, batch2, *, beta=1, alpha=1):
    """``beta * input + alpha * (batch1 @ batch2)`` for 3-D batches.

    >>> engine.baddbmm(engine.zeros(3, 2, 2), engine.ones(3, 2, 4), engine.ones(3, 4, 2)).shape
    torch.Size([3, 2, 2])
    """
    dt = input._data.dtype
    if batch1._data.dtype != dt:
        # torch compares input with batch1 after broadcasting input, before the batch sizes
        # (batch2 is left to bmm's own check, matmul's)
        _check_3d(batch1, batch2)
        _check_expand(input, batch1._data.shape[:2] + batch2._data.shape[2:])
        raise RuntimeError(f"Input dtypes must be the same, got: input {_c_name(dt)}, batch1: "
                           f"{_c_name(batch1._data.dtype)}, batch2: {_c_name(batch2._data.dtype)}")
    _check_batches(batch1, batch2)
    b, _, k = batch1._data.shape
    if batch2._data.shape[1] != k:
        raise RuntimeError(f"Expected size for first two dimensions of batch2 tensor to be: "
                           f"[{b}, {k}] but got: [{b}, {batch2._data.shape[1]}].")
    return _affine(input, matmul(batch1, batch2), beta, alpha)


@op(differentiable=("input", "other"), method=True)
def kron(input, other):
    """Kronecker product: the blocks ``input[i] * other``, over every dim.

    >>> engine.kron(engine.eye(2), engine.ones(2, 2)).shape
    torch.Size([4, 4])
    """
    nd = max(input._data.ndim, other._data.ndim)
    sa = (1,) * (nd - input._data.ndim) + input._data.shape
    sb = (1,) * (nd - other._data.ndim) + other._data.shape
    a = reshape(input, tuple(v for s in sa for v in (s, 1)))
    b = reshape(other, tuple(v for s in sb for v in (1, s)))
    return reshape(a * b, tuple(x * y for x, y in zip(sa, sb)))


@op(differentiable=("input", "other"), method=True)
def cross(input, other, dim=None):
    """Cross product along ``dim`` (default: the first dim of size 3), as ``linalg.cross``.

    >>> engine.cross(engine.tensor([[1.0, 0.0, 0.0]]), engine.tensor([[0.0, 1.0, 0.0]]), dim=1)
    tensor([[0., 0., 1.]])
    """
    if dim is None:
        dim = next((i for i, s in enumerate(input._data.shape) if s == 3), None)
        if dim is None:
            raise RuntimeError("no dimension of size 3 in input")
    return cross_product(input, other, dim)


# ---------------------------------------------------------------- distances and determinants
@op(differentiable=("x1", "x2"))
def cdist(x1, x2, p=2.0, compute_mode="use_mm_for_euclid_dist_if_necessary"):
    """p-norm distances between the rows of ``x1`` (*, P, M) and ``x2`` (*, R, M): (*, P, R).
    The gradient at zero distance is 0, as in torch.

    >>> engine.cdist(engine.tensor([[0.0, 0.0]]), engine.tensor([[3.0, 4.0]]))
    tensor([[5.]])
    """
    for name, x in (("X1", x1), ("X2", x2)):
        if x._data.ndim < 2:
            raise RuntimeError(f"cdist only supports at least 2D tensors, {name} got: "
                               f"{x._data.ndim}D")
        if x._data.dtype.kind != "f":
            raise RuntimeError(f"cdist only supports floating-point dtypes, {name} got: "
                               f"{_tname(x)}")
    if x1._data.shape[-1] != x2._data.shape[-1]:
        raise RuntimeError(f"X1 and X2 must have the same number of columns. X1: "
                           f"{x1._data.shape[-1]} X2: {x2._data.shape[-1]}")
    if p < 0:
        raise RuntimeError("cdist only supports non-negative p values")
    return vector_norm_of(unsqueeze(x1, -2) - unsqueeze(x2, -3), p, -1, False)


@op(method=True)
def logdet(input):
    """``log(det(input))``: NaN for a negative determinant, -inf for a singular matrix.

    >>> engine.logdet(engine.tensor([[2.0, 0.0], [0.0, 3.0]]))
    tensor(1.7918)
    """
    sign, logabs = _slogdet(_matrix(input, "linalg.slogdet"))
    return where(sign == -1, math.nan, logabs)


@primitive(save=(1, -1), name="cholesky_solve")
def _cholesky_solve(b, u, upper):
    # A = L L^T (or U^T U): X = L^-T L^-1 B, reading only the factor's triangle.
    t = np.triu(u) if upper else np.tril(u)
    first, second = (np.swapaxes(t, -1, -2), t) if upper else (t, np.swapaxes(t, -1, -2))
    y = np.linalg.solve(*_bcast_batch(first, b))
    return np.linalg.solve(*_bcast_batch(second, y))


@_cholesky_solve.defvjp
def _cholesky_solve_vjp(ctx, g, u, x, upper):
    # torch: gB = cholesky_solve(g, u); gU = -(u C) if upper else -(C u), C = sym(gB X^T)
    gb = _cholesky_solve(g, u, upper=upper)
    if ctx.edges[1] is None:
        return gb, None
    c = matmul(gb, _T(x))
    c = c + _T(c)
    return gb, -(matmul(u, c) if upper else matmul(c, u))


_cholesky_solve.defjvp(transpose_jvp)


@_cholesky_solve.defshape(work=_tri_solve_work)
def _cholesky_solve_shape(prim: Any, arrays: list, params: dict) -> Any:
    b, u = arrays[0], arrays[1]
    _square(u)
    return _fresh(_solve_shape(u, b), np.result_type(b.dtype, u.dtype))


@op(differentiable=("input", "input2"), method=True)
def cholesky_solve(input, input2, upper=False):
    """Solve ``A X = input`` given A's Cholesky factor ``input2`` (lower, or upper with
    ``upper=True``).

    >>> L = engine.tensor([[2.0, 0.0], [1.0, 1.0]])
    >>> engine.cholesky_solve(engine.tensor([[4.0], [3.0]]), L)
    tensor([[0.5],
            [1. ]])
    """
    for name, t in (("b", input), ("u", input2)):
        if t._data.ndim < 2:
            raise RuntimeError(f"{name} should have at least 2 dimensions, but has "
                               f"{t._data.ndim} dimensions instead")
    if input._data.dtype != input2._data.dtype:
        raise RuntimeError(f"Expected b and A to have the same dtype, but found b of type "
                           f"{_tname(input)} and A of type {_tname(input2)} instead.")
    _matrix(input2, "cholesky_solve")
    if input._data.shape[-2] != input2._data.shape[-1]:
        raise RuntimeError(f"Incompatible matrix sizes for cholesky_solve: each A matrix is "
                           f"{input2._data.shape[-1]} by {input2._data.shape[-1]} but each b matrix "
                           f"is {input._data.shape[-2]} by {input._data.shape[-1]}")
    return _cholesky_solve(input, input2, upper=bool(upper))
