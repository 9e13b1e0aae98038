"""The LAPACK primitives behind :mod:`engine.linalg`: inverse, determinants, solvers, Cholesky,
QR, eigh, SVD and the pseudo-inverse, one record each (numpy forward, VJP, JVP, batching and
shape rule), with the argument checks the namespace and :mod:`engine.ops.matrix` share.

The VJPs are written in engine ops, so gradients of any order come free, and are torch's
formulas, degenerate cases included:

- ``det`` at (near-)singular matrices: the adjugate from the SVD instead of ``det * A^-T``;
- ``eigh``/``svd`` divide by eigen/singular-value gaps (inf/nan when they repeat, as in torch);
  when only eigenvalues/singular values are used (``eigvalsh``, ``svdvals``, norms) the gradient
  is ``V diag(g) V^T`` / ``U diag(g) Vh``, finite for repeated values too;
- ``svd(full_matrices=True)`` ignores the extra columns of U and rows of Vh (arbitrary bases);
- ``qr`` raises in backward for ``mode='r'`` and for ``mode='complete'`` with more rows than columns;
- ``eigh``, ``cholesky`` read one triangle but return symmetric gradients, as torch does.

Singular or indefinite inputs raise :class:`LinAlgError` (a RuntimeError) with torch's message.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg

from .._autograd import leading_batch, no_grad, primitive, transpose_jvp
from .._meta import (
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
from ..tensor import Tensor
from .elementwise import type_name, where
from .linalg_prims import matmul, tril, triu
from .shape import cat, narrow, squeeze, transpose, unsqueeze


class LinAlgError(RuntimeError):
    """A matrix is singular or not positive-definite (``torch.linalg.LinAlgError``)."""

# ---------------------------------------------------------------- checks and small helpers
def _tname(x: Tensor) -> str:
    return type_name(x._data.dtype)


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
