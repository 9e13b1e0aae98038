"""Linear algebra, as ``torch.linalg``: factorizations, solvers, determinants and norms.

The public ops check their arguments as torch does, then apply the primitives of
:mod:`engine.ops.lapack_prims` (inverse, det, solvers, factorizations; their VJPs are torch's
formulas, degenerate cases included) and :mod:`engine.ops.linalg_prims` (matmul, cross, vector
norm), so gradients of any order come free. Singular or indefinite inputs raise
:class:`LinAlgError` (a RuntimeError) with torch's message.

>>> A = engine.tensor([[2.0, 1.0], [1.0, 3.0]], requires_grad=True)
>>> engine.linalg.det(A)
tensor(5., grad_fn=<LinalgDetBackward0>)
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from .ops._registry import op
from .ops.elementwise import where
from .ops.lapack_prims import (
    LinAlgError,
    _cholesky,
    _det,
    _eigh,
    _eye,
    _inv,
    _matrix,
    _mT,
    _pinv,
    _qr,
    _slogdet,
    _solve,
    _solve_tri,
    _svd,
    _tensor,
    _tname,
)
from .ops.linalg_prims import _batch_check, _c_name, cross_product, matmul, vector_norm_of
from .ops.reduction import amax, amin
from .ops.shape import clone as _clone
from .ops.shape import movedim, norm_dim, squeeze, unsqueeze
from .tensor import Tensor

__all__ = [
    "LinAlgError", "inv", "det", "slogdet", "solve", "solve_triangular", "cholesky", "qr", "eigh",
    "eigvalsh", "svd", "svdvals", "pinv", "matrix_power", "cross", "multi_dot", "norm",
    "vector_norm", "matrix_norm",
]

_slogdet_result = namedtuple("linalg_slogdet", ["sign", "logabsdet"])
_qr_result = namedtuple("linalg_qr", ["Q", "R"])
_eigh_result = namedtuple("linalg_eigh", ["eigenvalues", "eigenvectors"])
_svd_result = namedtuple("linalg_svd", ["U", "S", "Vh"])


# ---------------------------------------------------------------- inverse and determinants
@op(method="inverse", aliases=("inverse",))
def inv(A):
    """Inverse of a (batch of) square matrices; singular input raises LinAlgError.

    >>> engine.linalg.inv(engine.tensor([[2.0, 0.0], [0.0, 4.0]]))
    tensor([[0.5 , 0.  ],
            [0.  , 0.25]])
    """
    return _inv(_matrix(A, "linalg.inv"))


@op(method="det", aliases=("det",))
def det(A):
    """Determinant of a (batch of) square matrices; differentiable at singular matrices too.

    >>> engine.linalg.det(engine.tensor([[1.0, 2.0], [3.0, 4.0]]))
    tensor(-2.)
    """
    return _det(_matrix(A, "linalg.det"))


@op(n_outputs=2, method="slogdet", aliases=("slogdet",))
def slogdet(A):
    """``(sign, log|det|)`` of square matrices, stable where ``det`` under/overflows.

    >>> engine.linalg.slogdet(engine.tensor([[-2.0, 0.0], [0.0, 3.0]])).logabsdet
    tensor(1.7918)
    """
    return _slogdet_result(*_slogdet(_matrix(A, "linalg.slogdet")))


# ---------------------------------------------------------------- solvers
def _shape_error(fname: str, eq: str, A: Tensor, B: tuple) -> RuntimeError:
    n = A._data.shape[-1]
    return RuntimeError(f"{fname}: Incompatible shapes of A and B for the equation {eq} "
                        f"({n}x{n} and {B[-2]}x{B[-1]})")


@op(differentiable=("A", "B"))
def solve(A, B, *, left=True):
    """The solution X of ``A X = B`` (``X A = B`` with ``left=False``); B may be a (batch of)
    vector(s). Singular A raises LinAlgError.

    >>> engine.linalg.solve(engine.tensor([[2.0, 0.0], [0.0, 4.0]]), engine.tensor([2.0, 2.0]))
    tensor([1. , 0.5])
    """
    A = _matrix(A, "linalg.solve")
    B = _tensor(B, "linalg_solve", "B", 2)
    if A._data.dtype != B._data.dtype:
        raise RuntimeError(f"linalg.solve: Expected A and B to have the same dtype, but found A of "
                           f"type {_tname(A)} and B of type {_tname(B)} instead")
    n = A._data.shape[-1]
    vector = B._data.ndim == 1 or (B._data.ndim == A._data.ndim - 1
                                   and B._data.shape == A._data.shape[:-1])
    Bm = unsqueeze(B, -1) if vector else B
    if not left and not vector:
        Bm = _mT(Bm)
    if Bm._data.shape[-2] != n:
        shape = Bm._data.shape if left or vector else B._data.shape
        raise _shape_error("linalg.solve", "AX = B" if left else "XA = B", A, shape)
    _batch_check(A._data.shape[:-2], Bm._data.shape[:-2])
    X = _solve(A if left else _mT(A), Bm)
    if vector:
        return squeeze(X, -1)
    return X if left else _mT(X)


@op(differentiable=("A", "B"))
def solve_triangular(A, B, *, upper, left=True, unitriangular=False):
    """Solve ``A X = B`` (``X A = B`` with ``left=False``) for triangular A, reading only its
    ``upper`` (or lower) triangle; ``unitriangular`` assumes ones on the diagonal.

    >>> A = engine.tensor([[2.0, 1.0], [0.0, 1.0]])
    >>> engine.linalg.solve_triangular(A, engine.tensor([[3.0], [1.0]]), upper=True)
    tensor([[1.],
            [1.]])
    """
    A = _matrix(A, "linalg.solve_triangular")
    B = _tensor(B, "linalg_solve_triangular", "B", 2)
    if B._data.ndim < 2:
        raise RuntimeError("linalg.solve_triangular: The input tensor B must have at least 2 "
                           "dimensions.")
    if A._data.dtype != B._data.dtype:
        raise RuntimeError(f"linalg.solve_triangular: Expected A and B to have the same dtype, but "
                           f"found A of type {_tname(A)} and B of type {_tname(B)} instead")
    n = A._data.shape[-1]
    if (B._data.shape[-2] if left else B._data.shape[-1]) != n:
        raise _shape_error("linalg.solve_triangular", "AX = B" if left else "XA = B", A,
                           B._data.shape)
    _batch_check(A._data.shape[:-2], B._data.shape[:-2])
    return _solve_tri(A, B, upper=upper, left=left, unitriangular=unitriangular)


# ---------------------------------------------------------------- factorizations
@op()
def cholesky(A, *, upper=False):
    """Cholesky factor L (A = L L^T) of symmetric positive-definite matrices, or U (A = U^T U)
    with ``upper=True``; raises LinAlgError when A is not positive-definite.

    >>> engine.linalg.cholesky(engine.tensor([[4.0, 2.0], [2.0, 5.0]]))
    tensor([[2., 0.],
            [1., 2.]])
    """
    return _cholesky(_matrix(A, "linalg.cholesky"), upper=bool(upper))


@op(n_outputs=2)
def qr(A, mode="reduced"):
    """QR decomposition ``A = Q R``: ``mode`` 'reduced' (default), 'complete' or 'r' (Q empty).

    >>> Q, R = engine.linalg.qr(engine.tensor([[3.0, 1.0], [4.0, 2.0]]))
    >>> R
    tensor([[-5. , -2.2],
            [ 0. ,  0.4]])
    """
    if mode not in ("reduced", "complete", "r"):
        raise RuntimeError(f"qr received unrecognized mode '{mode}' but expected one of 'reduced' "
                           "(default), 'r', or 'complete'")
    return _qr_result(*_qr(_matrix(A, "linalg.qr", square=False), mode=mode))


def _uplo(UPLO: str) -> str:
    if UPLO not in ("L", "U"):
        raise RuntimeError(f"Expected UPLO argument to be 'L' or 'U', but got {UPLO}")
    return UPLO


@op(n_outputs=2)
def eigh(A, UPLO="L"):
    """Eigenvalues (ascending) and orthonormal eigenvectors of symmetric matrices, reading the
    ``UPLO`` triangle. Eigenvector signs are arbitrary (as in torch).

    >>> engine.linalg.eigh(engine.tensor([[2.0, 1.0], [1.0, 2.0]])).eigenvalues
    tensor([1., 3.])
    """
    return _eigh_result(*_eigh(_matrix(A, "linalg.eigh"), UPLO=_uplo(UPLO)))


@op()
def eigvalsh(A, UPLO="L"):
    """Eigenvalues (ascending) of symmetric matrices; the gradient is ``V diag(g) V^T``.

    >>> engine.linalg.eigvalsh(engine.tensor([[2.0, 1.0], [1.0, 2.0]]))
    tensor([1., 3.])
    """
    return _eigh(_matrix(A, "linalg.eigvalsh"), UPLO=_uplo(UPLO))[0]


@op(n_outputs=3)
def svd(A, full_matrices=True):
    """``A = U diag(S) Vh`` with singular values S descending. Singular vector signs are
    arbitrary (as in torch); gradients assume a loss invariant to them.

    >>> engine.linalg.svd(engine.tensor([[3.0, 0.0], [0.0, -2.0]])).S
    tensor([3., 2.])
    """
    return _svd_result(*_svd(_matrix(A, "linalg.svd", square=False),
                             full_matrices=bool(full_matrices)))


@op()
def svdvals(A):
    """Singular values, descending; the gradient is ``U diag(g) Vh``.

    >>> engine.linalg.svdvals(engine.tensor([[3.0, 0.0], [0.0, -2.0]]))
    tensor([3., 2.])
    """
    return _svd(_matrix(A, "linalg.svd", square=False), full_matrices=False)[1]


# ---------------------------------------------------------------- pseudo-inverse
def _tol(x: object, batch: tuple, dtype: np.dtype) -> np.ndarray:
    v = x._data if isinstance(x, Tensor) else np.asarray(0.0 if x is None else x)
    return np.broadcast_to(v.astype(dtype), batch)


@op()
def pinv(A, *, atol=None, rtol=None, hermitian=False):
    """Moore-Penrose pseudo-inverse; singular values at or below ``max(atol, rtol * max(S))``
    count as zero (default rtol: eps * max(m, n) when atol is not positive).

    >>> engine.linalg.pinv(engine.tensor([[2.0, 0.0], [0.0, 0.0]]))
    tensor([[0.5, 0. ],
            [0. , 0. ]])
    """
    A = _tensor(A, "linalg_pinv")
    if A._data.ndim < 2 or A._data.dtype.kind != "f":
        raise RuntimeError(f"linalg.pinv({_tname(A)}{{{list(A._data.shape)}}}): expected a tensor "
                           "with 2 or more dimensions of float, double, cfloat or cdouble types")
    if hermitian:
        A = _matrix(A, "linalg.pinv")
    dt, batch = A._data.dtype, A._data.shape[:-2]
    at = _tol(atol, batch, dt)
    if rtol is None:
        default = np.finfo(dt).eps * max(A._data.shape[-2:])
        rt = np.where(at > 0, 0.0, default).astype(dt)
    else:
        rt = _tol(rtol, batch, dt)
    return _pinv(A, atol=at, rtol=rt, hermitian=bool(hermitian))


# ---------------------------------------------------------------- products
@op(method=True, aliases=("matrix_power",))
def matrix_power(A, n):
    """``A`` to the integer power ``n`` (negative: of the inverse) by repeated squaring.

    >>> engine.linalg.matrix_power(engine.tensor([[1.0, 1.0], [0.0, 1.0]]), 3)
    tensor([[1., 3.],
            [0., 1.]])
    """
    A = _matrix(A, "linalg.matrix_power", floating=False)
    if n == 0:  # identity, still attached to A (zero gradient), as in torch
        return where(Tensor._make(np.True_), _eye(A._data.shape[-1], A._data.dtype), A)
    if n < 0:
        A, n = inv(A), -n
    if n == 1:
        return _clone(A)
    result = None
    z = A
    while n:
        if n & 1:
            result = z if result is None else matmul(result, z)
        n >>= 1
        if n:
            z = matmul(z, z)
    return result


@op(differentiable=("input", "other"))
def cross(input, other, *, dim=-1):
    """Cross product of 3-vectors along ``dim``, broadcasting the other dims.

    >>> engine.linalg.cross(engine.tensor([1.0, 0.0, 0.0]), engine.tensor([0.0, 1.0, 0.0]))
    tensor([0., 0., 1.])
    """
    return cross_product(_tensor(input, "linalg_cross", "input"),
                         _tensor(other, "linalg_cross", "other", 2), dim)


@op(differentiable=("tensors",))
def multi_dot(tensors):
    """The product of a chain of matrices; the first may be a row and the last a column vector.

    >>> engine.linalg.multi_dot([engine.ones(2), engine.ones(2, 3), engine.ones(3)])
    tensor(6.)
    """
    tensors = list(tensors)
    if len(tensors) < 2:
        raise RuntimeError(f"multi_dot(): expected at least 2 tensors but got {len(tensors)}")
    for i, t in enumerate(tensors):
        _tensor(t, "linalg_multi_dot", "tensors")
        nd = t._data.ndim
        if i == 0 and nd not in (1, 2):
            raise RuntimeError(f"multi_dot(): the first tensor must be 1D or 2D but got {nd}D")
        if i == len(tensors) - 1 and nd not in (1, 2):
            raise RuntimeError(f"multi_dot(): the last tensor must be 1D or 2D but got {nd}D")
        if 0 < i < len(tensors) - 1 and nd != 2:
            raise RuntimeError(f"multi_dot(): tensor {i} must be 2D but got {nd}D")
        if t._data.dtype != tensors[0]._data.dtype:
            # torch prints C++ names here ("float", "long int") and no second "is"
            raise RuntimeError(f"multi_dot(): all tensors must have be the same dtype but tensor 0 "
                               f"is {_c_name(tensors[0]._data.dtype)} and tensor {i} "
                               f"{_c_name(t._data.dtype)}")
    first_vec, last_vec = tensors[0]._data.ndim == 1, tensors[-1]._data.ndim == 1
    mats = list(tensors)
    if first_vec:
        mats[0] = unsqueeze(mats[0], 0)
    if last_vec:
        mats[-1] = unsqueeze(mats[-1], -1)
    for i in range(len(mats) - 1):
        if mats[i]._data.shape[1] != mats[i + 1]._data.shape[0]:
            raise RuntimeError(f"multi_dot(): tensors {i} and {i + 1} with shapes "
                               f"{list(mats[i]._data.shape)} and {list(mats[i + 1]._data.shape)} "
                               "cannot be multiplied")
    out = mats[0]
    for m in mats[1:]:
        out = matmul(out, m)
    if first_vec:
        out = squeeze(out, 0)
    if last_vec:
        out = squeeze(out, -1)
    return out


# ---------------------------------------------------------------- norms
@op()
def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):
    """Vector ``ord``-norm over ``dim`` (all elements by default); ord may be any real, inf, -inf
    or 0 (count of non-zeros). The gradient at a zero norm is 0, as in torch.

    >>> engine.linalg.vector_norm(engine.tensor([3.0, -4.0]))
    tensor(5.)
    """
    return vector_norm_of(_tensor(x, "linalg_vector_norm", "x"), ord, dim, keepdim, dtype)


@op()
def matrix_norm(A, ord="fro", dim=(-2, -1), keepdim=False, *, dtype=None):
    """Matrix norm over the two dims ``dim``: 'fro', 'nuc', 2 / -2 (largest / smallest singular
    value), 1 / -1 (max / min column sum), inf / -inf (max / min row sum).

    >>> engine.linalg.matrix_norm(engine.tensor([[1.0, -2.0], [3.0, 4.0]]), ord=1)
    tensor(6.)
    """
    A = _tensor(A, "linalg_matrix_norm")
    if A._data.ndim < 2:
        raise RuntimeError("linalg.matrix_norm: The input tensor A must have at least 2 dimensions.")
    if A._data.dtype.kind != "f":
        raise RuntimeError("linalg.matrix_norm: Expected a floating point or complex tensor as input. "
                           f"Got {_tname(A)}")
    if dtype is not None:
        A = A.to(dtype)
    if ord not in ("fro", "nuc", 2, -2, 1, -1, math.inf, -math.inf):
        raise RuntimeError(f"linalg.matrix_norm: Order {ord} not supported.")
    nd = A._data.ndim
    d0, d1 = (norm_dim(d, nd) for d in dim)
    if d0 == d1:
        raise RuntimeError(f"linalg.matrix_norm: dims must be different. Got ({dim[0]}, {dim[1]})")
    if ord == "fro":
        return vector_norm(A, 2, (d0, d1), keepdim)
    if ord in ("nuc", 2, -2):
        s = svdvals(movedim(A, (d0, d1), (-2, -1)))
        r = s.sum(-1) if ord == "nuc" else (amax if ord == 2 else amin)(s, -1)
        if keepdim:
            for d in sorted((d0, d1)):
                r = unsqueeze(r, d)
        return r
    # 1 / -1: extreme column sum (sum over d0, extremum over d1); inf / -inf: rows
    sum_dim, ext_dim = (d0, d1) if abs(ord) == 1 else (d1, d0)
    ext = amax if ord > 0 else amin
    r = ext(A.abs().sum(sum_dim, keepdim=True), ext_dim, keepdim=True)
    return r if keepdim else squeeze(squeeze(r, max(d0, d1)), min(d0, d1))


@op()
def norm(A, ord=None, dim=None, keepdim=False, *, dtype=None):
    """Vector or matrix norm: a matrix norm when ``ord`` is a string or ``dim`` names two dims (or
    A is 2-D with ``ord`` given and no ``dim``), else a vector norm (2-norm of all elements by
    default).

    >>> engine.linalg.norm(engine.tensor([[3.0, 0.0], [0.0, 4.0]]))
    tensor(5.)
    """
    A = _tensor(A, "linalg_norm")
    if dim is not None:
        dim = (dim,) if isinstance(dim, int) else tuple(dim)
    if ord is not None:
        if dim is None:
            if A._data.ndim not in (1, 2):
                raise RuntimeError("linalg.norm: If dim is not specified but ord is, the input must be "
                                   f"1D or 2D. Got {A._data.ndim}D.")
            dim = tuple(range(A._data.ndim))
        if isinstance(ord, str) or len(dim) == 2:
            return matrix_norm(A, ord, dim if len(dim) == 2 else (-2, -1), keepdim, dtype=dtype)
        return vector_norm(A, ord, dim, keepdim, dtype=dtype)
    return vector_norm(A, 2, dim, keepdim, dtype=dtype)
