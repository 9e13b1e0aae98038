"""engine.linalg / engine.special beyond the registry-driven gradient checks: torch's errors for
misuse, the degenerate cases torch defines (singular det, repeated eigenvalues, QR modes, values at
poles), third-order derivatives, float32 and integer inputs, Tensor methods and result fields."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import engine
from engine.linalg import LinAlgError

F64 = np.float64


def _pair(x: np.ndarray, requires_grad: bool = True) -> tuple:
    e = engine.tensor(x)
    t = torch.tensor(x)
    if requires_grad and x.dtype.kind == "f":
        e.requires_grad_()
        t.requires_grad_()
    return e, t


def _np(x: object) -> np.ndarray:
    if isinstance(x, engine.Tensor):
        return np.asarray(x.detach()._data)
    if isinstance(x, torch.Tensor):
        return x.detach().numpy()
    return np.asarray(x)


def _close(a: object, b: object, tol: float = 1e-10) -> None:
    np.testing.assert_allclose(_np(a), _np(b), rtol=tol, atol=tol)


def _resolve(lib: object, name: str) -> object:
    obj = lib
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


# ---------------------------------------------------------------- errors: type and message
E = np.eye(2)
ONES = np.ones((2, 2))
ERRORS = [
    ("linalg.inv", lambda: (np.ones((2, 3)),), {}),
    ("linalg.inv", lambda: (np.ones(3),), {}),
    ("linalg.inv", lambda: (np.ones((2, 2), dtype=np.int64),), {}),
    ("linalg.inv", lambda: (ONES,), {}),
    ("linalg.inv", lambda: (np.stack([E, ONES]),), {}),
    ("inverse", lambda: (np.ones((3, 3)),), {}),
    ("linalg.det", lambda: (np.ones((2, 3)),), {}),
    ("det", lambda: (np.ones(3),), {}),
    ("linalg.slogdet", lambda: (np.ones((2, 3)),), {}),
    ("linalg.solve", lambda: (ONES, np.ones(2)), {}),
    ("linalg.solve", lambda: (np.stack([E, ONES]), np.ones((2, 2))), {}),
    ("linalg.solve", lambda: (E, np.ones(3)), {}),
    ("linalg.solve", lambda: (E, np.ones((3, 4))), {"left": False}),
    ("linalg.solve", lambda: (np.ones((2, 3)), np.ones(2)), {}),
    ("linalg.solve_triangular", lambda: (E, np.ones(2)), {"upper": True}),
    ("linalg.cholesky", lambda: (-np.eye(3),), {}),
    ("linalg.cholesky", lambda: (np.stack([E, np.diag([1.0, -1.0])]),), {}),
    ("linalg.cholesky", lambda: (np.ones((2, 3)),), {}),
    ("linalg.qr", lambda: (np.ones(3),), {}),
    ("linalg.qr", lambda: (np.ones((3, 3)),), {"mode": "bad"}),
    ("linalg.eigh", lambda: (np.ones((2, 3)),), {}),
    ("linalg.eigh", lambda: (E,), {"UPLO": "X"}),
    ("linalg.svd", lambda: (np.ones(3),), {}),
    ("linalg.svdvals", lambda: (np.ones(3),), {}),
    ("linalg.pinv", lambda: (np.ones(3),), {}),
    ("linalg.matrix_power", lambda: (np.ones((2, 3)), 2), {}),
    ("linalg.matrix_power", lambda: (ONES, -1), {}),
    ("linalg.cross", lambda: (np.ones(2), np.ones(2)), {}),
    ("linalg.cross", lambda: (np.ones((2, 3)), np.ones((4, 3))), {}),
    ("cross", lambda: (np.ones(2), np.ones(2)), {}),
    ("linalg.multi_dot", lambda: ([E],), {}),
    ("linalg.multi_dot", lambda: ([E, np.ones((2, 2, 2))],), {}),
    ("linalg.multi_dot", lambda: ([np.ones((2, 3)), E],), {}),
    ("linalg.vector_norm", lambda: (np.ones(3, dtype=np.int64),), {}),
    ("linalg.matrix_norm", lambda: (np.ones((3, 3)),), {"ord": 3}),
    ("linalg.matrix_norm", lambda: (np.ones(3),), {}),
    ("linalg.norm", lambda: (np.ones((3, 3, 3)),), {"ord": 2}),
    ("linalg.norm", lambda: (np.ones(3),), {"ord": "fro"}),
    ("tensordot", lambda: (np.ones((2, 3)), np.ones((4, 2))), {"dims": 1}),
    ("tensordot", lambda: (np.ones(2), np.ones(3)), {"dims": -1}),
    ("cdist", lambda: (np.ones((2, 3)), np.ones((4, 2))), {}),
    ("cdist", lambda: (np.ones(3), np.ones((4, 3))), {}),
    ("cdist", lambda: (np.ones((2, 3)), np.ones((4, 3))), {"p": -1.0}),
    ("addmm", lambda: (E, np.ones(2), E), {}),
    ("addmm", lambda: (np.ones((3, 2)), E, E), {}),
    ("addmm", lambda: (E, np.ones((2, 3)), E), {}),
    ("addmv", lambda: (np.ones(3), E, np.ones(2)), {}),
    ("addbmm", lambda: (E, np.ones((3, 2, 4)), np.ones((3, 5, 2))), {}),
    ("baddbmm", lambda: (E, np.ones((3, 2, 4)), np.ones((3, 5, 2))), {}),
    ("polygamma", lambda: (-1, np.ones(2)), {}),
    ("mvlgamma", lambda: (np.ones(2) * 3, 0), {}),
]


@pytest.mark.parametrize("case", ERRORS, ids=[f"{c[0]}-{i}" for i, c in enumerate(ERRORS)])
def test_errors_match_torch(case: tuple) -> None:
    name, make, kwargs = case

    def run(lib: object) -> BaseException:
        conv = (lambda a: lib.tensor(a) if isinstance(a, np.ndarray) else
                [lib.tensor(x) for x in a] if isinstance(a, list) else a)
        with pytest.raises(Exception) as info:
            _resolve(lib, name)(*[conv(a) for a in make()], **kwargs)
        return info.value

    t_err, e_err = run(torch), run(engine)
    assert str(e_err) == str(t_err)
    assert isinstance(e_err, LinAlgError) == isinstance(t_err, torch.linalg.LinAlgError)
    for base in (RuntimeError, TypeError, ValueError, IndexError, NotImplementedError):
        assert isinstance(e_err, base) == isinstance(t_err, base), base


def test_linalg_error_is_a_runtime_error() -> None:
    assert issubclass(LinAlgError, RuntimeError)
    with pytest.raises(RuntimeError, match="singular"):
        engine.linalg.solve(engine.zeros(2, 2), engine.ones(2))


def test_low_precision_and_integer_inputs() -> None:
    with pytest.raises(RuntimeError, match="Low precision dtypes not supported. Got Half"):
        engine.linalg.inv(engine.eye(2, dtype=engine.float16))
    for fn in ("erf", "lgamma", "digamma", "i0", "logit", "erfinv"):
        e = getattr(engine, fn)(engine.tensor([1, 2]))
        assert e.dtype == engine.float32
    assert engine.xlogy(engine.tensor([1, 2]), 3).dtype == engine.float32
    assert engine.special.ndtr(engine.tensor([1, 2])).dtype == engine.float32


# ---------------------------------------------------------------- QR modes
def test_qr_mode_r_values_and_backward_error() -> None:
    x = np.random.default_rng(0).standard_normal((4, 3))
    e, t = _pair(x)
    (eq, er), (tq, tr) = engine.linalg.qr(e, mode="r"), torch.linalg.qr(t, mode="r")
    assert tuple(eq.shape) == tuple(tq.shape) == (0,)
    _close(er, tr)
    for lib, out, leaf in ((engine, er, e), (torch, tr, t)):
        with pytest.raises(RuntimeError, match="The derivative of linalg.qr depends on Q"):
            lib.autograd.grad(out.sum(), leaf)


def test_qr_complete_tall_is_not_differentiable() -> None:
    e, t = _pair(np.random.default_rng(1).standard_normal((4, 3)))
    msgs = []
    for lib, leaf in ((engine, e), (torch, t)):
        Q, R = lib.linalg.qr(leaf, mode="complete")
        with pytest.raises(RuntimeError) as info:
            lib.autograd.grad(R.sum(), leaf)
        msgs.append(str(info.value))
    assert msgs[0] == msgs[1] == ("The QR decomposition is not differentiable when mode='complete' "
                                  "and nrows > ncols.")


# ---------------------------------------------------------------- degenerate cases torch defines
SINGULAR = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 0.0, 1.0]])


def test_det_gradient_at_a_singular_matrix_is_the_adjugate() -> None:
    # torch.linalg.det returns the adjugate on its create_graph path; its plain path returns zeros
    # at exactly singular inputs (pytorch#104675). The engine returns the adjugate on both.
    e, t = _pair(SINGULAR)
    (te,) = torch.autograd.grad(torch.linalg.det(t), t, create_graph=True)
    for create in (False, True):
        (ge,) = engine.autograd.grad(engine.linalg.det(e), e, create_graph=create)
        _close(ge, te, 1e-9)
    adjT = np.array([[4.0, 4.0, -4.0], [-2.0, -2.0, 2.0], [0.0, 0.0, 0.0]])
    _close(engine.autograd.grad(engine.linalg.det(e), e)[0], adjT, 1e-9)


def test_det_second_order_in_a_batch_mixing_singular_and_repeated_singular_values() -> None:
    # The SVD formula must not see the regular matrices: the identity's repeated singular values
    # would turn its second derivative into NaN.
    x = np.stack([SINGULAR, np.eye(3)])
    w = np.arange(18.0).reshape(2, 3, 3)

    def run(lib: object, fn: object) -> tuple:
        t = lib.tensor(x, requires_grad=True)
        (g,) = lib.autograd.grad(fn(t).sum(), t, create_graph=True)
        (h,) = lib.autograd.grad((g * lib.tensor(w)).sum(), t)
        return g, h

    def cofactor_det(A):  # torch oracle: the cofactor expansion (see test above)
        a = lambda i, j: A[..., i, j]  # noqa: E731
        return (a(0, 0) * (a(1, 1) * a(2, 2) - a(1, 2) * a(2, 1))
                - a(0, 1) * (a(1, 0) * a(2, 2) - a(1, 2) * a(2, 0))
                + a(0, 2) * (a(1, 0) * a(2, 1) - a(1, 1) * a(2, 0)))

    for e, t in zip(run(engine, engine.linalg.det), run(torch, cofactor_det)):
        _close(e, t, 1e-9)


def test_slogdet_and_logdet_gradients_at_a_singular_matrix() -> None:
    e, t = _pair(np.ones((2, 2)))
    ge = engine.autograd.grad(engine.linalg.slogdet(e).logabsdet, e)[0]
    gt = torch.autograd.grad(torch.linalg.slogdet(t).logabsdet, t)[0]
    np.testing.assert_array_equal(_np(ge), _np(gt))
    assert engine.logdet(e).item() == -math.inf
    assert math.isnan(engine.logdet(-engine.eye(3, dtype=engine.float64)).item())


def test_eigenvalue_only_gradients_are_finite_at_repeated_values() -> None:
    w = np.array([1.0, 2.0, 3.0])
    e, t = _pair(np.eye(3))
    ge = engine.autograd.grad((engine.linalg.eigvalsh(e) * engine.tensor(w)).sum(), e)[0]
    gt = torch.autograd.grad((torch.linalg.eigvalsh(t) * torch.tensor(w)).sum(), t)[0]
    _close(ge, gt)
    # eigenvectors of a repeated eigenvalue: torch's gradient is NaN, and so is ours
    ge = engine.autograd.grad(engine.linalg.eigh(e).eigenvectors.sum(), e)[0]
    assert np.isnan(_np(ge)).all()
    z = np.zeros((3, 2))
    e, t = _pair(z)
    for fn in (lambda lib, x: lib.linalg.svdvals(x).sum(), lambda lib, x: lib.linalg.matrix_norm(x, 2),
               lambda lib, x: lib.linalg.matrix_norm(x, "nuc"), lambda lib, x: lib.linalg.pinv(x).sum()):
        _close(engine.autograd.grad(fn(engine, e), e)[0], torch.autograd.grad(fn(torch, t), t)[0])


@pytest.mark.parametrize("ord", [2, 3, 0.5, -1, 1, math.inf])
def test_vector_norm_gradient_at_zero(ord: float) -> None:
    e, t = _pair(np.array([[0.0, 0.0], [0.0, 1.5]]))
    _close(engine.autograd.grad(engine.linalg.vector_norm(e, ord, 1).sum(), e)[0],
           torch.autograd.grad(torch.linalg.vector_norm(t, ord, 1).sum(), t)[0])


def test_pinv_tolerances_cut_small_singular_values() -> None:
    x = np.diag([3.0, 1e-3, 1e-12]) @ np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    for kw in ({}, {"atol": 1e-2}, {"rtol": 1e-2}, {"atol": 1e-6, "rtol": 0.5}):
        _close(engine.linalg.pinv(engine.tensor(x), **kw), torch.linalg.pinv(torch.tensor(x), **kw),
               1e-6)


def test_eigh_reads_only_the_uplo_triangle() -> None:
    x = np.random.default_rng(2).standard_normal((3, 3))
    for uplo in ("L", "U"):
        L, V = engine.linalg.eigh(engine.tensor(x), UPLO=uplo)
        tL, tV = torch.linalg.eigh(torch.tensor(x), UPLO=uplo)
        _close(L, tL)
        _close((V * L.unsqueeze(-2)) @ V.mT, (tV * tL.unsqueeze(-2)) @ tV.mT)


def test_cholesky_upper_reads_the_upper_triangle() -> None:
    s = np.array([[4.0, 2.0], [2.0, 5.0]])
    x = np.triu(s) + np.tril(np.full((2, 2), 99.0), -1)  # garbage below the diagonal
    _close(engine.linalg.cholesky(engine.tensor(x), upper=True),
           torch.linalg.cholesky(torch.tensor(x), upper=True))


def test_matrix_power_zero_keeps_the_graph() -> None:
    e, t = _pair(np.random.default_rng(3).standard_normal((3, 3)))
    out = engine.linalg.matrix_power(e, 0)
    assert out.requires_grad == torch.linalg.matrix_power(t, 0).requires_grad
    _close(engine.autograd.grad(out.sum(), e)[0], np.zeros((3, 3)))


def test_zeta_has_no_gradient_in_its_first_argument() -> None:
    for lib in (engine, torch):
        x = lib.tensor([2.0, 3.0], dtype=lib.float64, requires_grad=True)
        out = lib.special.zeta(x, 1.5)
        with pytest.raises(NotImplementedError, match="the derivative for 'zeta' is not implemented"):
            lib.autograd.grad(out.sum(), x)


SPECIAL_EDGES = [
    ("erfinv", [1.0, -1.0, 0.0, 2.0]),
    ("digamma", [0.0, 1.0, 2.5]),
    ("lgamma", [0.0, -1.0, -0.5, 1.0]),
    ("logit", [0.0, 1.0, 0.5, -0.1]),
    ("special.ndtri", [0.0, 1.0, 0.5]),
    ("special.entr", [0.0, -1.0, 0.5]),
    ("special.log_ndtr", [-40.0, 0.5, 30.0]),
    ("special.erfcx", [-3.0, 0.0, 30.0]),
    ("special.i1", [0.0, 1e-20, 1.0]),
    ("special.i1e", [0.0, 1e-20, -1.0]),
    ("special.i0e", [0.0, 1.0, -1.0]),
]


@pytest.mark.parametrize("name,values", SPECIAL_EDGES, ids=[c[0] for c in SPECIAL_EDGES])
def test_special_values_and_gradients_at_edges(name: str, values: list) -> None:
    e, t = _pair(np.array(values))
    with np.errstate(all="ignore"):
        oe, ot = _resolve(engine, name)(e), _resolve(torch, name)(t)
        np.testing.assert_allclose(_np(oe), _np(ot), rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(_np(engine.autograd.grad(oe.sum(), e)[0]),
                                   _np(torch.autograd.grad(ot.sum(), t)[0]), rtol=1e-9)


@pytest.mark.parametrize("eps", [None, 0.2])
def test_logit_gradient_outside_its_domain(eps: float | None) -> None:
    e, t = _pair(np.array([-0.5, 0.1, 0.2, 0.5, 0.8, 0.9, 1.5]))
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(
            _np(engine.autograd.grad(engine.logit(e, eps).sum(), e)[0]),
            _np(torch.autograd.grad(torch.logit(t, eps).sum(), t)[0]), rtol=1e-12)


def test_xlogy_at_zero() -> None:
    x, y = np.array([0.0, 0.0, 0.0, 1.0]), np.array([0.0, np.nan, 2.0, 0.0])
    (ex, tx), (ey, ty) = _pair(x), _pair(y)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(_np(engine.xlogy(ex, ey)), _np(torch.xlogy(tx, ty)))
        for a, b in zip(engine.autograd.grad(engine.xlogy(ex, ey).sum(), [ex, ey]),
                        torch.autograd.grad(torch.xlogy(tx, ty).sum(), [tx, ty])):
            np.testing.assert_array_equal(_np(a), _np(b))


# ---------------------------------------------------------------- third order
def _third(lib: object, fn: object, x: np.ndarray) -> np.ndarray:
    t = lib.tensor(x, requires_grad=True)
    r = np.random.default_rng(5)
    u, v = (lib.tensor(r.standard_normal(x.shape)) for _ in range(2))
    (g,) = lib.autograd.grad(fn(lib, t), t, create_graph=True)
    (h,) = lib.autograd.grad((g * u).sum(), t, create_graph=True)
    (k,) = lib.autograd.grad((h * v).sum(), t)
    return _np(k)


def _spd(n: int = 3) -> np.ndarray:
    a = np.random.default_rng(4).standard_normal((n, n))
    return a @ a.T + n * np.eye(n)


THIRD = {
    "inv": lambda lib, x: lib.linalg.inv(x).sum(),
    "det": lambda lib, x: lib.linalg.det(x),
    "logdet": lambda lib, x: lib.logdet(x),
    "solve": lambda lib, x: lib.linalg.solve(x, lib.ones(3, dtype=lib.float64)).sum(),
    "cholesky": lambda lib, x: lib.linalg.cholesky((x + x.mT) / 2).sum(),
    "eigvalsh": lambda lib, x: (lib.linalg.eigvalsh((x + x.mT) / 2) ** 2).sum(),
    "svdvals": lambda lib, x: (lib.linalg.svdvals(x) ** 3).sum(),
    "pinv": lambda lib, x: lib.linalg.pinv(x).sum(),
    "qr": lambda lib, x: lib.linalg.qr(x).R.sum() + lib.linalg.qr(x).Q[0].sum(),
    "lgamma": lambda lib, x: lib.lgamma(x).sum(),
    "i1": lambda lib, x: lib.special.i1(x).sum(),
    "ndtri": lambda lib, x: lib.special.ndtri(x / 20).sum(),
}


@pytest.mark.parametrize("name", sorted(THIRD))
def test_third_order_matches_torch(name: str) -> None:
    x = _spd()
    np.testing.assert_allclose(_third(engine, THIRD[name], x), _third(torch, THIRD[name], x),
                               rtol=1e-7, atol=1e-9)


# ---------------------------------------------------------------- float32, methods, result fields
@pytest.mark.parametrize("name", ["linalg.inv", "linalg.det", "linalg.cholesky", "linalg.svdvals",
                                  "linalg.eigvalsh", "linalg.pinv", "logdet", "linalg.matrix_norm"])
def test_float32_stays_float32(name: str) -> None:
    x = _spd().astype(np.float32)
    e, t = _resolve(engine, name)(engine.tensor(x)), _resolve(torch, name)(torch.tensor(x))
    assert e.dtype.name == str(t.dtype).removeprefix("torch.")
    _close(e, t, 1e-4)


def test_tensor_methods_match_torch() -> None:
    r = np.random.default_rng(6)
    a, b = _spd(), r.standard_normal((3, 3))
    p = r.uniform(0.2, 0.8, 4)
    cases = [
        (a, lambda x: x.det()), (a, lambda x: x.inverse()), (a, lambda x: x.logdet()),
        (a, lambda x: x.slogdet()[1]), (a, lambda x: x.matrix_power(3)),
        (b, lambda x: x.cross(x.flip(0), dim=0)),
        (p, lambda x: x.erf()), (p, lambda x: x.erfinv()), (p, lambda x: x.lgamma()),
        (p, lambda x: x.digamma()), (p, lambda x: x.polygamma(2)), (p + 2, lambda x: x.mvlgamma(2)),
        (p, lambda x: x.logit()), (p, lambda x: x.i0()), (p, lambda x: x.xlogy(x + 1)),
        (a, lambda x: x.addmm(x, x, beta=0.5)), (a, lambda x: x.kron(x)),
        (np.linalg.cholesky(a), lambda x: x.mT.cholesky_solve(x)),
    ]
    for data, fn in cases:
        e, t = _pair(data, requires_grad=False)
        _close(fn(e), fn(t), 1e-9)


def test_result_fields() -> None:
    e = engine.tensor(_spd())
    assert engine.linalg.eigh(e).eigenvalues.shape == engine.linalg.eigh(e)[0].shape
    assert engine.linalg.eigh(e).eigenvectors.shape == (3, 3)
    usv = engine.linalg.svd(e)
    _close((usv.U * usv.S.unsqueeze(-2)) @ usv.Vh, e)
    qr = engine.linalg.qr(e)
    _close(qr.Q @ qr.R, e)
    s = engine.slogdet(e)
    assert s.sign.item() == 1.0 and s.logabsdet.item() == pytest.approx(math.log(np.linalg.det(_spd())))


def test_special_namespace_is_complete() -> None:
    for name in ("erf", "erfc", "erfinv", "erfcx", "gammaln", "digamma", "psi", "polygamma",
                 "multigammaln", "xlogy", "xlog1py", "i0", "i0e", "i1", "i1e", "ndtr", "log_ndtr",
                 "ndtri", "logit", "expit", "entr", "sinc", "zeta", "round", "log1p", "exp2",
                 "expm1", "logsumexp", "softmax", "log_softmax"):
        assert callable(getattr(engine.special, name)), name
        assert f"special.{name}" in engine.OPS, name
