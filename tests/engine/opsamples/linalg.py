"""Samples for engine.linalg and the top-level linear-algebra ops (tensordot, addmm, kron, ...).

Inputs are well conditioned: SPD matrices A A^T + n I, general matrices with a diagonal shift,
and matrices built as U diag(s) V^T with well-separated singular values.

Two kinds of op need a ``wrap`` (the same composition on the engine and the torch side):
- eigh, eigvalsh, cholesky, pinv(hermitian) read one triangle of their input but return torch's
  symmetric gradient, which finite differences over single entries cannot see; wrapped in
  ``sym(A) = (A + A^T) / 2`` the FD and the gradient describe the same function. A raw sample
  (fd=False) still compares the raw gradient with torch's.
- eigh and svd return vectors up to sign (LAPACK builds differ, and numpy's signs are not
  torch's); the wrap flips each vector so its first component is positive, which makes the
  outputs, gradients and second derivatives comparable.
"""

from __future__ import annotations

import numpy as np

from . import add, away, distinct, pos, randn, rng


def _square(shape: tuple) -> tuple:
    return (shape[0], shape[0]) if len(shape) == 1 else shape


def well(*shape: int, seed: int = 0) -> np.ndarray:
    """A general square matrix (``well(n)``) or batch (``well(b, n, n)``) kept well away from
    singular by a diagonal shift."""
    shape = _square(shape)
    return randn(*shape, seed=seed) + 3.0 * np.eye(shape[-1])


def spd(*shape: int, seed: int = 0) -> np.ndarray:
    """A symmetric positive-definite matrix A A^T + n I (``spd(n)`` or ``spd(b, n, n)``)."""
    shape = _square(shape)
    a = randn(*shape, seed=seed)
    return a @ np.swapaxes(a, -1, -2) + shape[-1] * np.eye(shape[-1])


def sv(m: int, n: int, seed: int = 0, batch: tuple = ()) -> np.ndarray:
    """U diag(s) V^T with singular values 3, 2, 1.3, ... (well separated, none near 0)."""
    r = rng(seed)
    k = min(m, n)
    u = np.linalg.qr(r.standard_normal(batch + (m, m)))[0][..., :k]
    v = np.linalg.qr(r.standard_normal(batch + (n, n)))[0][..., :k]
    s = np.array([3.0, 2.0, 1.3, 0.8, 0.5][:k])
    return (u * s) @ np.swapaxes(v, -1, -2)


def lower(*shape: int, seed: int = 0) -> np.ndarray:
    shape = _square(shape)
    return np.tril(randn(*shape, seed=seed)) + 2.5 * np.eye(shape[-1])


def _sym(A):
    return (A + A.transpose(-2, -1)) * 0.5


def _signs(V):
    """+-1 per column making each column's first entry positive (a constant: no gradient)."""
    return V[..., :1, :].sign().detach()


def eigh_fixed(op, A, *args, **kw):
    L, V = op(_sym(A), *args, **kw)
    return L, V * _signs(V)


def svd_fixed(op, A, *args, **kw):
    U, S, Vh = op(A, *args, **kw)
    k = S.shape[-1]
    U, Vh = U[..., :k], Vh[..., :k, :]  # full_matrices: the extra columns are an arbitrary basis
    s = _signs(U)
    return U * s, S, Vh * s.transpose(-2, -1)


def on_sym(op, A, *args, **kw):
    return op(_sym(A), *args, **kw)


SYM = "wrapped in sym(A): the op reads one triangle but returns torch's symmetric gradient"
RAW_SYM = ("raw input: torch's gradient is symmetric while FD over single entries sees only the "
           "triangle read, so FD is checked by the sym-wrapped samples; parity checks the raw gradient")
GAUGE = "vectors sign-fixed (first entry positive) on both sides: their signs are arbitrary"


def det3(A):
    """torch oracle for det at singular matrices: the cofactor expansion, whose gradient is the
    adjugate. torch.linalg.det's own first-order backward (no create_graph) returns zeros at exactly
    singular inputs (pytorch#104675), although its create_graph path returns the adjugate."""
    a = lambda i, j: A[..., i, j]  # noqa: E731
    return (a(0, 0) * (a(1, 1) * a(2, 2) - a(1, 2) * a(2, 1))
            - a(0, 1) * (a(1, 0) * a(2, 2) - a(1, 2) * a(2, 0))
            + a(0, 2) * (a(1, 0) * a(2, 1) - a(1, 1) * a(2, 0)))


SINGULAR = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 0.0, 1.0]])  # rank 2

# ---------------------------------------------------------------- inverse and determinants
add("linalg.inv", well(3))
add("linalg.inv", well(2, 3, 3, seed=1), opts={"note": "batched"})
add("linalg.det", well(3))
add("linalg.det", well(2, 3, 3, seed=1), opts={"note": "batched"})
add("linalg.det", randn(3, 3, seed=2) - 3 * np.eye(3), opts={"note": "negative determinant"})
add("linalg.det", SINGULAR.copy(), opts={
    "torch_fn": det3, "note": "singular: the SVD adjugate path; " + det3.__doc__.split(":")[0]})
add("linalg.det", np.stack([SINGULAR, well(3, seed=3)]), opts={
    "torch_fn": det3, "note": "batch mixing a singular and a regular matrix (masked formula)"})
add("linalg.slogdet", well(3))
add("linalg.slogdet", randn(3, 3, seed=2) - 3 * np.eye(3), opts={"note": "sign -1"})
add("linalg.slogdet", well(2, 3, 3, seed=1), opts={"note": "batched"})
add("logdet", spd(3))
add("logdet", spd(2, 3, 3, seed=1), opts={"note": "batched"})

# ---------------------------------------------------------------- solvers
add("linalg.solve", well(3), randn(3, 2, seed=1))
add("linalg.solve", well(3), randn(3, seed=1), opts={"note": "vector right-hand side"})
add("linalg.solve", well(2, 3, 3), randn(3, 2, seed=1), opts={"note": "batch broadcast of B"})
add("linalg.solve", well(3), randn(2, 3, 2, seed=1), opts={"note": "batch broadcast of A"})
add("linalg.solve", well(2, 3, 3), randn(2, 3, seed=1), opts={"note": "batch of vectors"})
add("linalg.solve", well(3), randn(2, 3, seed=1), left=False, opts={"note": "X A = B"})
add("linalg.solve_triangular", lower(3).T.copy(), randn(3, 2, seed=1), upper=True)
add("linalg.solve_triangular", lower(3), randn(2, 3, seed=1), upper=False, left=False)
add("linalg.solve_triangular", randn(3, 3, seed=2), randn(3, 2, seed=1), upper=False,
    unitriangular=True, opts={"note": "unit diagonal: the diagonal gets no gradient"})
add("linalg.solve_triangular", lower(2, 3, 3), randn(3, 1, seed=1), upper=False,
    opts={"note": "batched A, broadcast B"})
add("cholesky_solve", randn(3, 2, seed=1), np.linalg.cholesky(spd(3)),
    opts={"wrap": lambda op, b, u, **kw: op(b, u.tril(), **kw),
          "note": "factor wrapped in tril: the op reads that triangle, torch's gradient is full"})
add("cholesky_solve", randn(2, 3, 2, seed=1), np.swapaxes(np.linalg.cholesky(spd(2, 3, 3)), -1, -2),
    True, opts={"wrap": lambda op, b, u, upper: op(b, u.triu(), upper),
                "note": "upper factor, batched; wrapped in triu"})

# ---------------------------------------------------------------- factorizations
add("linalg.cholesky", spd(3), opts={"fd": False, "note": RAW_SYM})
add("linalg.cholesky", spd(3), opts={"wrap": on_sym, "note": SYM})
add("linalg.cholesky", spd(2, 3, 3, seed=1), upper=True, opts={"wrap": on_sym, "note": SYM})
add("linalg.qr", randn(4, 3))
add("linalg.qr", randn(3, 4, seed=1), opts={"note": "wide: m < n"})
add("linalg.qr", well(3, seed=2))
add("linalg.qr", randn(3, 4, seed=3), "complete", opts={"note": "complete, m < n"})
add("linalg.qr", randn(2, 4, 3, seed=4), opts={"note": "batched"})
add("linalg.eigh", spd(3), opts={"wrap": eigh_fixed, "note": f"{SYM}; {GAUGE}"})
add("linalg.eigh", spd(2, 3, 3, seed=1), "U", opts={"wrap": eigh_fixed, "note": "UPLO='U', batched"})
add("linalg.eigvalsh", spd(3), opts={"fd": False, "note": RAW_SYM})
add("linalg.eigvalsh", randn(2, 3, 3, seed=1), UPLO="U", opts={"wrap": on_sym, "note": SYM})
for shape, seed in (((3, 3), 0), ((4, 3), 1), ((3, 4), 2)):
    for full in (False, True):
        add("linalg.svd", sv(*shape, seed=seed), full_matrices=full,
            opts={"wrap": svd_fixed, "note": GAUGE})
add("linalg.svd", sv(4, 3, seed=3, batch=(2,)), False, opts={"wrap": svd_fixed, "note": "batched"})
add("linalg.svdvals", sv(4, 3))
add("linalg.svdvals", sv(3, 4, seed=1))
add("linalg.svdvals", sv(3, 3, seed=2, batch=(2,)), opts={"note": "batched"})
add("linalg.pinv", sv(4, 3))
add("linalg.pinv", sv(3, 4, seed=1))
add("linalg.pinv", well(3, seed=2))
add("linalg.pinv", spd(3, seed=3), hermitian=True, opts={"wrap": on_sym, "note": SYM})

# ---------------------------------------------------------------- products
add("linalg.matrix_power", well(3) / 3, 3)
add("linalg.matrix_power", well(3) / 3, -2)
add("linalg.matrix_power", well(3), 0, opts={"note": "identity, zero gradient"})
add("linalg.matrix_power", well(3), 1)
add("linalg.matrix_power", randn(2, 3, 3), 4, opts={"note": "batched"})
add("linalg.cross", randn(4, 3), randn(4, 3, seed=1))
add("linalg.cross", randn(1, 3), randn(4, 3, seed=1), opts={"note": "broadcast"})
add("linalg.cross", randn(3, 2), randn(3, 2, seed=1), dim=0)
add("cross", randn(2, 3), randn(2, 3, seed=1), opts={"note": "dim=None: first dim of size 3"})
add("cross", randn(3, 3), randn(3, 3, seed=1), 0)
add("linalg.multi_dot", [randn(3), randn(3, 4, seed=1), randn(4, seed=2)])
add("linalg.multi_dot", [randn(2, 3), randn(3, 4, seed=1), randn(4, 2, seed=2), randn(2, 3, seed=3)])
add("linalg.multi_dot", [randn(2, 3), randn(3, seed=1)])
add("tensordot", randn(2, 3, 4), randn(3, 4, 2, seed=1))
add("tensordot", randn(2, 3), randn(3, 4, seed=1), 1)
add("tensordot", randn(2, 3, 4), randn(4, 2, 3, seed=1), ([1, 2], [2, 0]))
add("tensordot", randn(2), randn(3, seed=1), 0, opts={"note": "outer product"})
add("inner", randn(4), randn(4, seed=1))
add("inner", randn(2, 3), randn(4, 3, seed=1))
add("inner", randn(2, 2, 3), randn(3, seed=1), opts={"note": "N-D with 1-D"})
add("inner", randn(), randn(2, 3, seed=1), opts={"note": "0-D: elementwise product"})
add("addmm", randn(2, 4), randn(2, 3, seed=1), randn(3, 4, seed=2))
add("addmm", randn(4), randn(2, 3, seed=1), randn(3, 4, seed=2), beta=0.5, alpha=-2.0,
    opts={"note": "broadcast input, scaled"})
add("addmm", randn(2, 4), randn(2, 3, seed=1), randn(3, 4, seed=2), beta=0,
    opts={"note": "beta=0: input ignored, zero gradient"})
add("addmv", randn(2), randn(2, 3, seed=1), randn(3, seed=2), beta=2.0, alpha=0.5)
add("addbmm", randn(2, 4), randn(3, 2, 5, seed=1), randn(3, 5, 4, seed=2), alpha=0.5)
add("baddbmm", randn(3, 2, 4), randn(3, 2, 5, seed=1), randn(3, 5, 4, seed=2), beta=-1.0)
add("baddbmm", randn(1, 4), randn(3, 2, 5, seed=1), randn(3, 5, 4, seed=2),
    opts={"note": "broadcast input"})
add("kron", randn(2, 3), randn(3, 2, seed=1))
add("kron", randn(3), randn(2, 2, seed=1), opts={"note": "different ndim"})

# ---------------------------------------------------------------- norms and distances
NO_CDIST_2ND = "torch has no double backward for _cdist_backward (p != 2, or at most 25 rows)"
add("cdist", randn(3, 4), randn(5, 4, seed=1), opts={"second_order": False, "note": NO_CDIST_2ND})
add("cdist", randn(2, 3, 4), randn(2, 2, 4, seed=1), 1.5,
    opts={"second_order": False, "note": NO_CDIST_2ND})
add("cdist", away(3, 2), away(2, 2, seed=1) + 0.05, 1.0,
    opts={"second_order": False, "note": NO_CDIST_2ND})
add("cdist", distinct(3, 3), distinct(2, 3, seed=1) + 0.01, float("inf"),
    opts={"second_order": False, "note": NO_CDIST_2ND})
add("cdist", randn(26, 2), randn(3, 2, seed=1),
    opts={"note": "26 rows: torch's matrix-product path, which has a double backward"})
for o in (2, 1, 3, 0.5, float("inf"), -float("inf"), 0, -1.5):
    x = distinct(3, 4) + 0.01 if o in (float("inf"), -float("inf")) else away(3, 4)
    add("linalg.vector_norm", x, o, 1)
add("linalg.vector_norm", randn(2, 3, 4), dim=(0, 2), keepdim=True)
for o in ("fro", "nuc", 2, -2, 1, -1, float("inf"), -float("inf")):
    x = sv(3, 4, seed=1, batch=(2,)) if o in ("nuc", 2, -2) else distinct(2, 3, 4)
    add("linalg.matrix_norm", x, o)
add("linalg.matrix_norm", sv(3, 4, seed=2, batch=(2,)).transpose(1, 0, 2), "nuc", (0, 2), True,
    opts={"note": "other dims, keepdim"})
add("linalg.matrix_norm", distinct(3, 2, 4), 1, (2, 0), opts={"note": "dims reversed"})
add("linalg.norm", randn(3, 4))
add("linalg.norm", sv(3, 3), 2, opts={"note": "2-D input with ord: matrix 2-norm"})
add("linalg.norm", pos(5), 3)
add("linalg.norm", randn(2, 3, 4), None, 1)
add("linalg.norm", sv(3, 3, seed=1, batch=(2,)), "nuc", (1, 2))
add("linalg.norm", distinct(2, 3), 1, (0, 1), opts={"note": "ord with two dims: matrix 1-norm"})
