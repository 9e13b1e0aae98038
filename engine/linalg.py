"""Linear algebra, as ``torch.linalg``: factorizations, solvers, determinants and norms.

Each primitive pairs a numpy (LAPACK) forward with a VJP written in engine ops beside it, so
gradients of any order come free. The VJPs are torch's formulas, degenerate cases included:

- ``det`` at (near-)singular matrices: the adjugate from the SVD instead of ``det * A^-T``;
- ``eigh``/``svd`` divide by eigen/singular-value gaps (inf/nan when they repeat, as in torch);
  when only eigenvalues/singular values are used (``eigvalsh``, ``svdvals``, norms) the gradient
  is ``V diag(g) V^T`` / ``U diag(g) Vh``, finite for repeated values too;
- ``svd(full_matrices=True)`` ignores the extra columns of U and rows of Vh (arbitrary bases);
- ``qr`` raises in backward for ``mode='r'`` and for ``mode='complete'`` with more rows than columns;
- ``eigh``, ``cholesky`` read one triangle but return symmetric gradients, as torch does.

Singular or indefinite inputs raise :class:`LinAlgError` (a RuntimeError) with torch's message.

>>> A = engine.tensor([[2.0, 1.0], [1.0, 3.0]], requires_grad=True)
>>> engine.linalg.det(A)
tensor(5., grad_fn=<LinalgDetBackward0>)
"""

from __future__ import annotations

import math
from collections import namedtuple
from typing import Any

import numpy as np
import scipy.linalg
from numpy.lib.array_utils import normalize_axis_index

from ._autograd import apply, dims_batch, leading_batch, multilinear_jvp, no_grad, primitive, transpose_jvp
from ._meta import (
    _bound,
    _broadcast,
    _cubic,
    _float,
    _fresh,
    _solve_shape,
    _solve_work,
    _square,
    _tri_solve_work,
)
from .ops._registry import op
from .ops.elementwise import binary_dtype, where
from .ops.linalg_prims import _c_name, matmul, tril, triu
from .ops.reduction import _reduction_shape, amax, amin
from .ops.shape import cat, movedim, narrow, norm_dim, squeeze, transpose, unsqueeze
from .ops.shape import clone as _clone
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


class LinAlgError(RuntimeError):
    """A matrix is singular or not positive-definite (``torch.linalg.LinAlgError``)."""


# ---------------------------------------------------------------- checks and small helpers
_TORCH_NAMES = {"float16": "Half", "float32": "Float", "float64": "Double", "int64": "Long",
                "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool"}


def _tname(x: Tensor) -> str:
    return _TORCH_NAMES[x.dtype.name]


def _tensor(x: object, fname: str, arg: str = "A", pos: int = 1) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{fname}(): argument '{arg}' (position {pos}) must be Tensor, not "
                        f"{type(x).__name__}")
    return x


def _check_float(x: Tensor, fname: str) -> None:
    if x._data.dtype.kind != "f":
        raise RuntimeError(f"{fname}: Expected a floating point or complex tensor as input. "
                           f"Got {_tname(x)}")
    if x._data.dtype == np.float16:
        raise RuntimeError(f"{fname}: Low precision dtypes not supported. Got Half")


def _matrix(A: object, fname: str, square: bool = True, floating: bool = True) -> Tensor:
    A = _tensor(A, fname.replace(".", "_"))
    if A._data.ndim < 2:
        raise RuntimeError(f"{fname}: The input tensor A must have at least 2 dimensions.")
    if square and A._data.shape[-1] != A._data.shape[-2]:
        raise RuntimeError(f"{fname}: A must be batches of square matrices, but they are "
                           f"{A._data.shape[-2]} by {A._data.shape[-1]} matrices")
    if floating:
        _check_float(A, fname)
    return A


def _batch(a: np.ndarray, index: int) -> str:
    return "" if a.ndim == 2 else f"(Batch element {index}): "


def _first_zero_pivot(a: np.ndarray) -> tuple[int, int]:
    """(flat batch index, 1-based position) of the first exactly-zero pivot of LU with partial
    pivoting, as LAPACK's getrf reports it; only called once numpy has found one."""
    n = a.shape[-1]
    u = scipy.linalg.lu(a.reshape(-1, n, n), check_finite=False)[2]
    zero = np.diagonal(u, axis1=-2, axis2=-1) == 0
    rows = np.flatnonzero(zero.any(-1))
    if not rows.size:
        return 0, n
    return int(rows[0]), int(np.argmax(zero[rows[0]])) + 1


def _mT(x: Tensor) -> Tensor:
    return transpose(x, -1, -2)


def _eye(n: int, dtype: np.dtype) -> Tensor:
    return Tensor._make(np.eye(n, dtype=dtype))


def _diag_embed(v: Tensor) -> Tensor:
    return unsqueeze(v, -1) * _eye(v._data.shape[-1], v._data.dtype)


def _scalar_to_matrix(t: Tensor) -> Tensor:
    return unsqueeze(unsqueeze(t, -1), -1)


def _absent(g: Tensor) -> bool:
    """A cotangent the engine filled with zeros for an unused output (torch: undefined)."""
    return not g._rg and not g._data.any()


def _bcast_batch(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return (np.broadcast_to(a, batch + a.shape[-2:]), np.broadcast_to(b, batch + b.shape[-2:]))


def _prod_last(x: Tensor) -> Tensor:
    """Product over the last dim by pairwise halving: log2(n) engine multiplications, so every
    derivative is exact even where factors are zero."""
    while x._data.shape[-1] > 1:
        n = x._data.shape[-1]
        if n % 2:
            pad = Tensor._make(np.ones(x._data.shape[:-1] + (1,), x._data.dtype))
            x, n = cat([x, pad], -1), n + 1
        x = narrow(x, -1, 0, n // 2) * narrow(x, -1, n // 2, n // 2)
    return squeeze(x, -1)


# Cost rules of the LAPACK primitives (meta mode): FLOPs per m x n x min(m, n) and workspaces.
_LU_WORK, _LU_SCRATCH = _cubic(2.0, 2.0)          # inv, solve, det: a copy and the identity/rhs
_EIGH_WORK, _EIGH_SCRATCH = _cubic(9.0, 1.0, 2.0)  # syevd: 1 + 6n + 2n^2
_SVD_WORK, _SVD_SCRATCH = _cubic(22.0, 1.0, 7.0)   # gesdd: about 3k^2 + 4k^2 + 4k
_QR_WORK, _QR_SCRATCH = _cubic(2.0, 2.0)


# ---------------------------------------------------------------- inverse
@primitive(save=(-1,), name="linalg_inv_ex")
def _inv(a):
    try:
        return np.linalg.inv(a)
    except np.linalg.LinAlgError:
        b, i = _first_zero_pivot(a)
        raise LinAlgError(f"linalg.inv: {_batch(a, b)}The diagonal element {i} is zero, the inversion "
                          "could not be completed because the input matrix is singular.") from None


_inv.defvjp(lambda ctx, g, ainv: -matmul(matmul(_mT(ainv), g), _mT(ainv)))
_inv.defjvp(lambda ctx, ts, a: -matmul(matmul(ctx.out, ts[0]), ctx.out))
_inv.defbatch(leading_batch)


@_inv.defshape(work=_LU_WORK, scratch=_LU_SCRATCH)
def _same_square_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = arrays[0]
    _square(a)
    return _fresh(a.shape, _float(a))


@op(method="inverse", aliases=("inverse",))
def inv(A):
    """Inverse of a (batch of) square matrices; singular input raises LinAlgError.

    >>> engine.linalg.inv(engine.tensor([[2.0, 0.0], [0.0, 4.0]]))
    tensor([[0.5 , 0.  ],
            [0.  , 0.25]])
    """
    return _inv(_matrix(A, "linalg.inv"))


# ---------------------------------------------------------------- determinants
@primitive(save=(0, -1), name="linalg_det")
def _det(a):
    return np.asarray(np.linalg.det(a))


def _adjugate_T(a: Tensor, scale: Tensor) -> Tensor:
    """``scale * adj(A)^T`` from the SVD A = U S Vh: det(U) det(Vh) U diag(prod_{j!=i} S_j) Vh,
    a polynomial in A (no division), exact at singular matrices too."""
    U, S, Vh = _svd(a, full_matrices=False)
    sign = Tensor._make(np.linalg.det(U._data) * np.linalg.det(Vh._data))  # +-1, locally constant
    n = a._data.shape[-1]
    others = where(Tensor._make(np.eye(n, dtype=bool)), 1.0, unsqueeze(S, -2))  # row i: S_i -> 1
    return matmul(U * unsqueeze(_prod_last(others) * unsqueeze(scale * sign, -1), -2), Vh)


@_det.defvjp
def _det_vjp(ctx, g, a, det):
    # Jacobi: g * det * A^-T. Where |det| < 100 eps that loses all accuracy, torch (and we) use
    # the adjugate from the SVD instead.
    x = a._data
    if x.shape[-1] == 0:
        return Tensor._make(np.zeros_like(x))
    singular = np.abs(det._data) < 100 * np.finfo(x.dtype).eps
    if not singular.any():
        return _scalar_to_matrix(g * det) * _mT(_inv(a))
    if singular.all():
        return _adjugate_T(a, g)
    # Mixed batch: each formula sees harmless stand-ins for the other's matrices (distinct
    # singular values for the SVD, the identity for the inverse), as torch's masked_fmap does.
    n = x.shape[-1]
    mask = Tensor._make(singular[..., None, None])
    cof = _adjugate_T(where(mask, a, Tensor._make(np.diag(np.arange(1.0, n + 1)).astype(x.dtype))), g)
    regular = _scalar_to_matrix(g * det) * _mT(_inv(where(mask, _eye(n, x.dtype), a)))
    return where(mask, cof, regular)


_det.defjvp(transpose_jvp)
_det.defbatch(leading_batch)


@_det.defshape(work=_LU_WORK, scratch=_LU_SCRATCH)
def _det_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = arrays[0]
    _square(a)
    return _fresh(a.shape[:-2], _float(a))


@op(method="det", aliases=("det",))
def det(A):
    """Determinant of a (batch of) square matrices; differentiable at singular matrices too.

    >>> engine.linalg.det(engine.tensor([[1.0, 2.0], [3.0, 4.0]]))
    tensor(-2.)
    """
    return _det(_matrix(A, "linalg.det"))


@primitive(save=(0,), n_out=2, name="linalg_slogdet")
def _slogdet(a):
    sign, logabs = np.linalg.slogdet(a)
    return np.asarray(sign), np.asarray(logabs)


@_slogdet.defvjp
def _slogdet_vjp(ctx, g, a):
    # The sign is locally constant; d logabsdet = A^-T. At singular matrices the gradient is
    # infinite: adj(A)^T / det with det = +-0, as torch's LU solve gives it (a constant).
    glog = _scalar_to_matrix(g[1])
    x = a._data
    det = np.linalg.det(x)
    singular = det == 0
    if not singular.any():
        return glog * _mT(_inv(a))
    mask = singular[..., None, None]
    with no_grad(), np.errstate(divide="ignore", invalid="ignore"):
        inf = _adjugate_T(a, Tensor._make(np.ones_like(det)))._data / det[..., None, None]
    finite = _mT(_inv(Tensor._make(np.where(mask, np.eye(x.shape[-1], dtype=x.dtype), x))))
    return glog * where(Tensor._make(mask), Tensor._make(inf), finite)


_slogdet.defjvp(transpose_jvp)
_slogdet.defbatch(leading_batch)


@_slogdet.defshape(work=_LU_WORK, scratch=_LU_SCRATCH)
def _slogdet_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = arrays[0]
    _square(a)
    return _fresh(a.shape[:-2], _float(a)), _fresh(a.shape[:-2], _float(a))


@op(n_outputs=2, method="slogdet", aliases=("slogdet",))
def slogdet(A):
    """``(sign, log|det|)`` of square matrices, stable where ``det`` under/overflows.

    >>> engine.linalg.slogdet(engine.tensor([[-2.0, 0.0], [0.0, 3.0]])).logabsdet
    tensor(1.7918)
    """
    return _slogdet_result(*_slogdet(_matrix(A, "linalg.slogdet")))


# ---------------------------------------------------------------- solvers
@primitive(save=(0, -1), name="linalg_solve_ex")
def _solve(a, b):
    a, b = _bcast_batch(a, b)
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        idx, _ = _first_zero_pivot(a)
        raise LinAlgError(f"torch.linalg.solve: {_batch(a, idx)}The solver failed because the input "
                          "matrix is singular.") from None


@_solve.defvjp
def _solve_vjp(ctx, g, a, x):
    gb = _solve(_mT(a), g)
    return (-matmul(gb, _mT(x)) if ctx.edges[0] is not None else None), gb


_solve.defjvp(transpose_jvp)


@_solve.defshape(work=_solve_work, scratch=_LU_SCRATCH)
def _solve_ex_shape(prim: Any, arrays: list, params: dict) -> Any:
    a, b = arrays[0], arrays[1]
    _square(a)
    return _fresh(_solve_shape(a, b), np.result_type(a.dtype, b.dtype))


def _shape_error(fname: str, eq: str, A: Tensor, B: tuple) -> RuntimeError:
    n = A._data.shape[-1]
    return RuntimeError(f"{fname}: Incompatible shapes of A and B for the equation {eq} "
                        f"({n}x{n} and {B[-2]}x{B[-1]})")


def _batch_check(a: tuple, b: tuple) -> None:
    try:
        np.broadcast_shapes(a, b)
    except ValueError:
        for i in range(1, min(len(a), len(b)) + 1):
            if a[-i] != b[-i] and 1 not in (a[-i], b[-i]):
                raise RuntimeError(f"The size of tensor a ({a[-i]}) must match the size of tensor b "
                                   f"({b[-i]}) at non-singleton dimension "
                                   f"{max(len(a), len(b)) - i}") from None
        raise


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


def _trsm(t: np.ndarray, b: np.ndarray, upper: bool) -> np.ndarray:
    # Substitution row by row (vectorized over the batch): only for exactly singular triangles,
    # where numpy's LU refuses and LAPACK's trsm gives inf/nan.
    n = t.shape[-1]
    x = np.zeros(np.broadcast_shapes(t.shape[:-1] + (1,), b.shape), np.result_type(t, b))
    rows = range(n - 1, -1, -1) if upper else range(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in rows:
            known = slice(i + 1, n) if upper else slice(0, i)
            x[..., i, :] = (b[..., i, :] - np.einsum("...k,...kj->...j", t[..., i, known],
                                                     x[..., known, :])) / t[..., i, i:i + 1]
    return x


@primitive(save=(0, -1), name="linalg_solve_triangular")
def _solve_tri(a, b, upper, left=True, unitriangular=False):
    t = np.triu(a) if upper else np.tril(a)
    if unitriangular:
        n = t.shape[-1]
        t = t - t * np.eye(n, dtype=t.dtype) + np.eye(n, dtype=t.dtype)
    if not left:  # X T = B  <=>  T^T X^T = B^T
        t, b, upper = np.swapaxes(t, -1, -2), np.swapaxes(b, -1, -2), not upper
    t, b = _bcast_batch(t, b)
    try:
        x = np.linalg.solve(t, b)
    except np.linalg.LinAlgError:
        x = _trsm(t, b, upper)
    return x if left else np.swapaxes(x, -1, -2)


@_solve_tri.defvjp
def _solve_tri_vjp(ctx, g, a, x, upper, left=True, unitriangular=False):
    gb = _solve_tri(_mT(a), g, upper=not upper, left=left, unitriangular=unitriangular)
    if ctx.edges[0] is None:
        return None, gb
    ga = -matmul(gb, _mT(x)) if left else -matmul(_mT(x), gb)
    ga = triu(ga, int(unitriangular)) if upper else tril(ga, -int(unitriangular))
    return ga, gb


_solve_tri.defjvp(transpose_jvp)


@_solve_tri.defshape(work=_tri_solve_work)
def _solve_tri_shape(prim: Any, arrays: list, params: dict) -> Any:
    bd = _bound(prim, arrays, params)
    a, b = bd["a"], bd["b"]
    _square(a)
    if bd["left"]:
        shape = _solve_shape(a, b)
    else:  # X A = B is A^T X^T = B^T
        t = _solve_shape(a, np.swapaxes(b, -1, -2))
        shape = (*t[:-2], t[-1], t[-2])
    return _fresh(shape, np.result_type(a.dtype, b.dtype))


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


# ---------------------------------------------------------------- Cholesky
@primitive(save=(-1,), name="linalg_cholesky_ex")
def _cholesky(a, upper=False):
    # upper=True factors the upper triangle (A = U^T U), which is the lower one of A^T.
    src = np.swapaxes(a, -1, -2) if upper else a
    try:
        L = np.linalg.cholesky(src)
    except np.linalg.LinAlgError:
        raise _not_pd(src) from None
    return np.swapaxes(L, -1, -2) if upper else L


def _not_pd(a: np.ndarray) -> LinAlgError:
    n = a.shape[-1]
    flat = a.reshape(-1, n, n)
    potrf = scipy.linalg.get_lapack_funcs("potrf", (flat,))
    for idx in range(flat.shape[0]):  # error path only: find the batch element LAPACK rejects
        info = potrf(flat[idx], lower=True, clean=False)[1]
        if info > 0:
            return LinAlgError(f"linalg.cholesky: {_batch(a, idx)}The factorization could not be "
                               "completed because the input is not positive-definite (the leading "
                               f"minor of order {info} is not positive-definite).")
    return LinAlgError("linalg.cholesky: The factorization could not be completed because the input "
                       "is not positive-definite.")


@_cholesky.defvjp
def _cholesky_vjp(ctx, g, out, upper=False):
    # torch: gA = sym(L^-T Phi(L^T gL) L^-1), Phi = lower triangle with the diagonal halved.
    L, gL = (_mT(out), _mT(g)) if upper else (out, g)
    n = L._data.shape[-1]
    eye = _eye(n, L._data.dtype)
    phi = tril(matmul(_mT(L), gL))
    phi = phi - 0.5 * phi * eye
    Linv = _solve_tri(L, eye, upper=False)
    gA = matmul(matmul(_mT(Linv), phi), Linv)
    return 0.5 * (gA + _mT(gA))


_cholesky.defjvp(transpose_jvp)
_cholesky.defbatch(leading_batch)
_cholesky.defshape(_same_square_shape, work=_LU_WORK, scratch=_LU_SCRATCH)  # less, in fact


@op()
def cholesky(A, *, upper=False):
    """Cholesky factor L (A = L L^T) of symmetric positive-definite matrices, or U (A = U^T U)
    with ``upper=True``; raises LinAlgError when A is not positive-definite.

    >>> engine.linalg.cholesky(engine.tensor([[4.0, 2.0], [2.0, 5.0]]))
    tensor([[2., 0.],
            [1., 2.]])
    """
    return _cholesky(_matrix(A, "linalg.cholesky"), upper=bool(upper))


# ---------------------------------------------------------------- QR
@primitive(save=(-1, -2), n_out=2, name="linalg_qr")
def _qr(a, mode="reduced"):
    if mode == "r":
        return np.zeros((0,), a.dtype), np.linalg.qr(a, mode="r")
    return np.linalg.qr(a, mode=mode)


@_qr.defvjp
def _qr_vjp(ctx, g, Q, R, mode="reduced"):
    if mode == "r":
        raise RuntimeError("The derivative of linalg.qr depends on Q, which is not computed when "
                           "mode='r'. Please use linalg.qr(A, mode='reduced') if you are going to "
                           "differentiate through linalg.qr.")
    m, n = Q._data.shape[-2], R._data.shape[-1]
    if mode == "complete" and m > n:
        raise RuntimeError("The QR decomposition is not differentiable when mode='complete' and "
                           "nrows > ncols.")
    gQ, gR = g
    M = matmul(gR, _mT(R)) - matmul(_mT(Q), gQ)
    if m >= n:
        # gA = (Q syminvadj(triu(M)) + gQ) R^-T, syminvadj(X) = X + X^T - diag(X)
        T = triu(M)
        gA = matmul(Q, T + _mT(T) - T * _eye(n, T._data.dtype)) + gQ
        return _solve_tri(_mT(R), gA, upper=False, left=False)
    # m < n: gA = [Q tril(M^T - M) R1^-T, 0] + Q gR, R1 the leading m x m block of R
    gA = matmul(Q, tril(_mT(M) - M))
    gA = _solve_tri(_mT(narrow(R, -1, 0, m)), gA, upper=False, left=False)
    zeros = Tensor._make(np.zeros(gA._data.shape[:-1] + (n - m,), gA._data.dtype))
    return cat([gA, zeros], -1) + matmul(Q, gR)


_qr.defjvp(transpose_jvp)
_qr.defbatch(leading_batch)


@_qr.defshape(work=_QR_WORK, scratch=_QR_SCRATCH)
def _qr_shape(prim: Any, arrays: list, params: dict) -> Any:
    b = _bound(prim, arrays, params)
    a, mode = b["a"], b["mode"]
    *batch, m, n = a.shape
    k = min(m, n)
    dt = _float(a)
    if mode == "r":
        return _fresh((0,), dt), _fresh((*batch, k, n), dt)
    if mode == "complete":
        return _fresh((*batch, m, m), dt), _fresh((*batch, m, n), dt)
    return _fresh((*batch, m, k), dt), _fresh((*batch, k, n), dt)


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


# ---------------------------------------------------------------- symmetric eigendecomposition
@primitive(save=(-1, -2), n_out=2, name="linalg_eigh")
def _eigh(a, UPLO="L"):
    try:
        return np.linalg.eigh(a, UPLO=UPLO)
    except np.linalg.LinAlgError:
        raise LinAlgError("linalg.eigh: The algorithm failed to converge because the input matrix is "
                          "ill-conditioned or has too many repeated eigenvalues.") from None


@_eigh.defvjp
def _eigh_vjp(ctx, g, L, V, UPLO="L"):
    gL, gV = g
    if _absent(gV):  # eigenvalues only: finite even for repeated eigenvalues
        return matmul(V * unsqueeze(gL, -2), _mT(V))
    # gA = V (diag(gL) + skew(V^T gV) / E) V^T, E_ij = L_j - L_i (1 on the diagonal)
    VtgV = matmul(_mT(V), gV)
    n = L._data.shape[-1]
    diag = Tensor._make(np.eye(n, dtype=bool))
    E = where(diag, 1.0, unsqueeze(L, -2) - unsqueeze(L, -1))
    inner = 0.5 * (VtgV - _mT(VtgV)) / E + _diag_embed(gL)
    return matmul(V, matmul(inner, _mT(V)))


_eigh.defjvp(transpose_jvp)
_eigh.defbatch(leading_batch)


@_eigh.defshape(work=_EIGH_WORK, scratch=_EIGH_SCRATCH)
def _eigh_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = arrays[0]
    _square(a)
    return _fresh(a.shape[:-1], _float(a)), _fresh(a.shape, _float(a))


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


# ---------------------------------------------------------------- singular value decomposition
@primitive(save=(-1, -2, -3), n_out=3, name="linalg_svd")
def _svd(a, full_matrices=True):
    try:
        return np.linalg.svd(a, full_matrices=full_matrices)
    except np.linalg.LinAlgError:
        raise LinAlgError("linalg.svd: The algorithm failed to converge because the input matrix is "
                          "ill-conditioned or has too many repeated singular values.") from None


@_svd.defvjp
def _svd_vjp(ctx, g, U, S, Vh, full_matrices=True):
    gU, gS, gVh = g
    k = S._data.shape[-1]
    m, n = U._data.shape[-2], Vh._data.shape[-1]
    if full_matrices:  # the extra columns/rows are arbitrary bases: their gradients are ignored
        U, gU = narrow(U, -1, 0, k), narrow(gU, -1, 0, k)
        Vh, gVh = narrow(Vh, -2, 0, k), narrow(gVh, -2, 0, k)
    has_U, has_V = not _absent(gU), not _absent(gVh)
    if not has_U and not has_V:  # singular values only: U diag(gS) Vh
        return matmul(U, unsqueeze(gS, -1) * Vh) if m >= n else matmul(U * unsqueeze(gS, -2), Vh)
    # inner = (skew(U^T gU) S + S skew(Vh gVh^T)) / E + diag(gS), E_jk = S_k^2 - S_j^2 (1 on diag)
    S2 = S * S
    E = where(Tensor._make(np.eye(k, dtype=bool)), 1.0, unsqueeze(S2, -2) - unsqueeze(S2, -1))
    inner = 0.0
    if has_U:
        UtgU = matmul(_mT(U), gU)
        inner = (UtgU - _mT(UtgU)) * unsqueeze(S, -2)
    if has_V:
        VtgV = matmul(Vh, _mT(gVh))
        inner = inner + unsqueeze(S, -1) * (VtgV - _mT(VtgV))
    inner = inner / E + _diag_embed(gS)
    if m > n and has_U:  # + (I - U U^T) gU S^-1 Vh
        gUSinv = gU / unsqueeze(S, -2)
        gA = matmul(U, inner) + gUSinv - matmul(U, matmul(_mT(U), gUSinv))
        return matmul(gA, Vh)
    if m < n and has_V:  # + U S^-1 gVh (I - V Vh)
        SinvgVh = gVh / unsqueeze(S, -1)
        gA = matmul(inner, Vh) + SinvgVh - matmul(matmul(SinvgVh, _mT(Vh)), Vh)
        return matmul(U, gA)
    return matmul(matmul(U, inner), Vh)


_svd.defjvp(transpose_jvp)
_svd.defbatch(leading_batch)


@_svd.defshape(work=_SVD_WORK, scratch=_SVD_SCRATCH)
def _svd_shape(prim: Any, arrays: list, params: dict) -> Any:
    b = _bound(prim, arrays, params)
    a = b["a"]
    *batch, m, n = a.shape
    k = min(m, n)
    dt = _float(a)
    u, vh = ((m, m), (n, n)) if b["full_matrices"] else ((m, k), (k, n))
    return _fresh((*batch, *u), dt), _fresh((*batch, k), dt), _fresh((*batch, *vh), dt)


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
@primitive(save=(0, -1), name="linalg_pinv")
def _pinv(a, atol, rtol, hermitian):
    # pinv = V diag(1 / w) U^T over the kept singular (or eigen-) values
    if hermitian:
        w, U = np.linalg.eigh(a)
        s, V = np.abs(w), U
    else:
        U, s, Vh = np.linalg.svd(a, full_matrices=False)
        w, V = s, np.swapaxes(Vh, -1, -2)
    smax = s.max(-1, keepdims=True, initial=0.0)
    tol = np.maximum(atol[..., None], rtol[..., None] * smax)
    with np.errstate(divide="ignore"):
        winv = np.where(s > tol, 1.0 / np.where(s > tol, w, 1.0), 0.0).astype(a.dtype)
    return np.matmul(V * winv[..., None, :], np.swapaxes(U, -1, -2))


@_pinv.defvjp
def _pinv_vjp(ctx, g, a, p, atol, rtol, hermitian):
    # torch's pinv_backward (constant-rank derivative of the Moore-Penrose inverse)
    m, n = a._data.shape[-2:]
    pT, gT = _mT(p), _mT(g)
    if m <= n:
        K = matmul(gT, p)
        KpT = matmul(K, pT)
        return (-_mT(matmul(p, K)) + KpT - matmul(matmul(a, p), KpT)
                + matmul(matmul(pT, p), gT - matmul(K, a)))
    K = matmul(p, gT)
    pTK = matmul(pT, K)
    return (-_mT(matmul(K, p)) + matmul(matmul(gT - matmul(a, K), p), pT) + pTK
            - matmul(matmul(pTK, p), a))


_pinv.defjvp(transpose_jvp)


@_pinv.defshape(work=_SVD_WORK, scratch=_SVD_SCRATCH)
def _pinv_shape(prim: Any, arrays: list, params: dict) -> Any:
    b = _bound(prim, arrays, params)
    a = b["a"]
    tol = [np.shape(b[k]) for k in ("atol", "rtol") if isinstance(b[k], np.ndarray)]
    batch = _broadcast([a.shape[:-2], *tol])
    return _fresh((*batch, a.shape[-1], a.shape[-2]), a.dtype)


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


@primitive(save=(0, 1), name="linalg_cross")
def _cross(a, b, dim):
    a, b = np.broadcast_arrays(a, b)
    return np.cross(a, b, axis=dim)


_cross.defvjp(lambda ctx, g, a, b, dim: (_cross(b, g, dim=dim) if ctx.edges[0] is not None else None,
                                         _cross(g, a, dim=dim) if ctx.edges[1] is not None else None))
_cross.defjvp(multilinear_jvp)


@_cross.defshape
def _cross_shape(prim: Any, arrays: list, params: dict) -> Any:
    bd = _bound(prim, arrays, params)
    a, b = bd["a"], bd["b"]
    shape = _broadcast([a.shape, b.shape])
    ax = normalize_axis_index(bd["dim"], len(shape))
    if shape[ax] not in (2, 3):
        raise ValueError("incompatible dimensions for cross product\n(dimension must be 2 or 3)")
    return _fresh(shape, np.result_type(a.dtype, b.dtype))


def cross_product(input: Tensor, other: Tensor, dim: int) -> Tensor:
    """Shared by ``linalg.cross`` and top-level ``cross``: broadcast, check, then the primitive."""
    _batch_check(input._data.shape, other._data.shape)
    nd = len(np.broadcast_shapes(input._data.shape, other._data.shape))
    d = norm_dim(dim, nd) - nd  # negative: valid for both operands after broadcasting
    sa, sb = (t._data.shape[d] if t._data.ndim >= -d else 1 for t in (input, other))
    if sa != 3 or sb != 3:
        raise RuntimeError(f"linalg.cross: inputs dimension {dim} must have length 3. "
                           f"Got {sa} and {sb}")
    return apply(_cross, (input, other), {"dim": d}, binary_dtype(input, other))


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
def _dims(dim: object, ndim: int) -> tuple[int, ...]:
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    dims = tuple(sorted(norm_dim(d, ndim) for d in dims)) if dims else tuple(range(ndim))
    return dims if ndim else ()  # a 0-d tensor takes dim 0 or -1: its one element


@primitive(save=(0, -1), name="linalg_vector_norm")
def _vector_norm(x, ord, dims, keepdim):
    a = np.abs(x)
    if ord == math.inf:
        r = np.amax(a, axis=dims, keepdims=keepdim)
    elif ord == -math.inf:
        r = np.amin(a, axis=dims, keepdims=keepdim)
    elif ord == 0:
        r = np.sum(a != 0, axis=dims, keepdims=keepdim)
    elif ord == 1:
        r = np.sum(a, axis=dims, keepdims=keepdim)
    elif ord == 2:
        r = np.sqrt(np.sum(a * a, axis=dims, keepdims=keepdim))
    else:
        with np.errstate(divide="ignore"):
            r = np.sum(a ** ord, axis=dims, keepdims=keepdim) ** (1.0 / ord)
    return np.asarray(r, x.dtype)


@_vector_norm.defvjp
def _vector_norm_vjp(ctx, g, x, norm, ord, dims, keepdim):
    # torch's norm_backward: the gradient is 0 where the norm is 0 (and, for ord < 1, where an
    # entry is 0); ord=inf splits it evenly between tied extrema.
    if ord == 0:
        return None
    if not keepdim:
        for d in dims:
            g, norm = unsqueeze(g, d), unsqueeze(norm, d)
    sgn = x.sign()
    if ord == 1:
        return sgn * g
    zero = Tensor._make(norm._data == 0)
    safe_norm = where(zero, 1.0, norm)
    if ord == 2:
        return g * where(zero, 0.0, x / safe_norm)
    ax = x.abs()
    if math.isinf(ord):
        mask = ((ax._data == norm._data) | np.isnan(ax._data)).astype(x._data.dtype)
        count = mask.sum(axis=dims, keepdims=True)
        return sgn * (g / Tensor._make(count)) * Tensor._make(mask)
    if ord < 1:
        xz = Tensor._make(x._data == 0)
        return sgn * where(xz, 0.0, where(xz, 1.0, ax) ** (ord - 1)) * g * norm ** (1 - ord)
    scale = where(zero, 0.0, g / safe_norm ** (ord - 1))
    return (sgn * ax ** (ord - 1) if ord < 2 else x * ax ** (ord - 2)) * scale


_vector_norm.defjvp(transpose_jvp)
_vector_norm.defbatch(dims_batch("dims"))
_vector_norm.defshape(_reduction_shape)


@op()
def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):
    """Vector ``ord``-norm over ``dim`` (all elements by default); ord may be any real, inf, -inf
    or 0 (count of non-zeros). The gradient at a zero norm is 0, as in torch.

    >>> engine.linalg.vector_norm(engine.tensor([3.0, -4.0]))
    tensor(5.)
    """
    x = _tensor(x, "linalg_vector_norm", "x")
    if x._data.dtype.kind != "f":
        raise RuntimeError("linalg.vector_norm: Expected a floating point or complex tensor as input. "
                           f"Got {_tname(x)}")
    if dtype is not None:
        x = x.to(dtype)
    if isinstance(ord, str):
        raise RuntimeError(f"linalg.vector_norm: ord must be a number, got {ord!r}")
    dims = _dims(dim, x._data.ndim)
    if (ord < 0 or ord == math.inf) and any(x._data.shape[d] == 0 for d in dims):
        raise RuntimeError(f"linalg.vector_norm cannot compute the {ord} norm on an empty tensor "
                           "because the operation does not have an identity")
    return _vector_norm(x, ord=float(ord), dims=dims, keepdim=bool(keepdim))


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
