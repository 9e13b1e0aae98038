"""engine.nn.functional against torch.nn.functional: errors, warnings, dtypes and options that the
registry-driven gradient checks (test_gradcheck.py) do not cover."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import engine
import engine.nn.functional as EF

from .opsamples import AUTO, SAMPLES

r = np.random.default_rng(0)
X = r.standard_normal((3, 4))
P = r.uniform(0.1, 0.9, (3, 4))
T3 = np.array([0, 1, 2])


def _conv(lib: object, x: object, grad: bool) -> object:
    if isinstance(x, np.ndarray):
        t = lib.tensor(x)
        return t.requires_grad_() if grad and x.dtype.kind == "f" else t
    if isinstance(x, (list, tuple)):
        return type(x)(_conv(lib, v, grad) for v in x)
    return x


def _call(lib: object, F: object, name: str, args: tuple, kwargs: dict, grad: tuple) -> object:
    a = [_conv(lib, v, i in grad) for i, v in enumerate(args)]
    k = {n: _conv(lib, v, n in grad) for n, v in kwargs.items()}
    return getattr(F, name)(*a, **k)


# ---------------------------------------------------------------- errors: same type, same message
ERRORS = [
    # (op, args, kwargs, args that require grad)
    ("nll_loss", (X, T3.astype(np.float64)), {}, ()),
    ("nll_loss", (X, T3.astype(np.int32)), {}, ()),
    ("nll_loss", (X, np.array([0, 1, 4])), {}, ()),
    ("nll_loss", (X, np.array([0, -1, 2])), {}, ()),
    ("nll_loss", (X, np.array([0, 1])), {}, ()),
    ("nll_loss", (X, np.zeros((3, 1), np.int64)), {}, ()),
    ("nll_loss", (X[0], np.array([2, 1])), {}, ()),
    ("nll_loss", (np.array(X[0, 0]), np.array(2)), {}, ()),
    ("nll_loss", (r.standard_normal((2, 3, 4)), np.zeros((2, 5), np.int64)), {}, ()),
    ("nll_loss", (r.standard_normal((2, 3, 4, 5)), np.zeros((2, 4, 4), np.int64)), {}, ()),
    ("nll_loss", (r.standard_normal((2, 3, 4, 5)), np.zeros((2, 4, 5))), {}, ()),
    ("nll_loss", (X, T3), {"weight": np.ones(3)}, ()),
    ("nll_loss", (X, T3), {"weight": np.ones((2, 2))}, ()),
    ("nll_loss", (X, T3), {"weight": np.ones(4, np.float32)}, ()),
    ("nll_loss", (X, T3), {"weight": np.ones(4)}, (0, "weight")),
    ("nll_loss", (X, T3), {"reduction": "avg"}, ()),
    ("cross_entropy", (X, r.uniform(size=(3, 3))), {}, ()),
    ("cross_entropy", (X, np.zeros((3, 4), np.int64)), {}, ()),
    ("cross_entropy", (X, P), {"ignore_index": 1}, ()),
    ("cross_entropy", (X, T3), {"label_smoothing": 1.5}, ()),
    ("cross_entropy", (X, P), {"label_smoothing": 1.5}, ()),
    ("cross_entropy", (X, P), {"weight": np.ones(3)}, ()),
    ("cross_entropy", (X, T3), {"weight": np.ones(3), "label_smoothing": 0.1}, ()),
    ("cross_entropy", (X, T3), {"weight": np.ones(4)}, (0, "weight")),
    ("cross_entropy", (X, np.array([0, 1, 9])), {}, ()),
    ("mse_loss", (X, X), {"weight": np.ones(4)}, ()),
    ("mse_loss", (X, X), {"reduction": "avg"}, ()),
    ("mse_loss", (X, X), {"reduction": "avg", "weight": np.ones((3, 4))}, ()),
    ("mse_loss", (T3, T3), {}, ()),
    ("mse_loss", (X, r.standard_normal(3)), {}, ()),
    ("l1_loss", (X, r.standard_normal((2, 4))), {}, ()),
    ("l1_loss", (X, X), {"reduction": "avg"}, ()),
    ("huber_loss", (X, X), {"reduction": "avg"}, ()),
    ("huber_loss", (X, X), {"delta": 0.0}, ()),
    ("smooth_l1_loss", (X, X), {"beta": -1.0}, ()),
    ("binary_cross_entropy", (X, P), {}, ()),
    ("binary_cross_entropy", (P, P[0]), {}, ()),
    ("binary_cross_entropy", (P, np.ones((3, 4), np.int64)), {}, ()),
    ("binary_cross_entropy", (P, P.astype(np.float32)), {}, ()),
    ("binary_cross_entropy", (P, P), {"weight": np.ones(4)}, (0, "weight")),
    ("binary_cross_entropy_with_logits", (X, P[0]), {}, ()),
    ("binary_cross_entropy_with_logits", (X, P), {"pos_weight": np.ones(4)}, (0, "pos_weight")),
    ("binary_cross_entropy_with_logits", (X, P), {"weight": np.ones(4)}, (0, "weight")),
    ("binary_cross_entropy_with_logits", (X, P), {"pos_weight": np.ones(3)}, ()),
    ("kl_div", (T3, T3), {"reduction": "sum"}, ()),
    ("kl_div", (X, P), {"reduction": "avg"}, ()),
    ("glu", (r.standard_normal((3, 3)),), {}, ()),
    ("glu", (np.array(1.0),), {}, ()),
    ("glu", (X,), {"dim": 2}, ()),
    ("prelu", (r.standard_normal((2, 3, 4)), np.ones(4)), {}, ()),
    ("prelu", (r.standard_normal((2, 3, 4)), np.ones((3, 1))), {}, ()),
    ("prelu", (X[0], np.ones(3)), {}, ()),
    ("prelu", (X, np.ones(1, np.float32)), {}, ()),
    ("prelu", (T3, np.array([1])), {}, ()),
    ("gelu", (X,), {"approximate": "fast"}, ()),
    ("celu", (X,), {"alpha": 0.0}, ()),
    ("hardtanh", (X, 1.0, -1.0), {}, ()),
    ("softshrink", (X, -1.0), {}, ()),
    ("leaky_relu", (T3,), {}, ()),
    ("elu", (T3,), {}, ()),
    ("selu", (T3,), {}, ()),
    ("softplus", (T3,), {}, ()),
    ("gelu", (T3,), {}, ()),
    ("hardsigmoid", (T3,), {}, ()),
    ("hardswish", (T3,), {}, ()),
    ("logsigmoid", (T3,), {}, ()),
    ("silu", (T3,), {}, ()),
    ("mish", (T3,), {}, ()),
    ("hardshrink", (T3,), {}, ()),
    ("cosine_similarity", (X, r.standard_normal((3, 3))), {}, ()),
    ("cosine_similarity", (T3, T3), {"dim": 0}, ()),
    ("pairwise_distance", (X, r.standard_normal((3, 3))), {}, ()),
    ("cosine_embedding_loss", (X, X, np.ones((3, 1))), {}, ()),
    ("cosine_embedding_loss", (X, X, np.ones(())), {}, ()),
    ("cosine_embedding_loss", (X[0], X[1], np.ones(3)), {}, ()),
    ("margin_ranking_loss", (X, X, np.ones(3)), {}, ()),
    ("multi_margin_loss", (X, T3), {"p": 3}, ()),
    ("multi_margin_loss", (X, np.array([0, 1, 4])), {}, ()),
    ("multi_margin_loss", (X, np.array([0, 1])), {}, ()),
    ("multi_margin_loss", (X, T3.astype(np.float64)), {}, ()),
    ("multi_margin_loss", (X, T3), {"weight": np.ones(3)}, ()),
    ("multi_margin_loss", (X, T3), {"weight": np.ones((4, 1))}, ()),
    ("multi_margin_loss", (X, T3), {"weight": np.ones(4)}, (0, "weight")),
    ("multi_margin_loss", (r.standard_normal((2, 3, 4)), T3), {}, ()),
    ("gaussian_nll_loss", (X, X, -np.ones((3, 4))), {}, ()),
    ("gaussian_nll_loss", (X, X, np.ones((4, 4))), {}, ()),
    ("gaussian_nll_loss", (X, X, -1.0), {}, ()),
    ("gaussian_nll_loss", (X, X, np.ones((3, 4))), {"reduction": "avg"}, ()),
    ("poisson_nll_loss", (X, X), {"reduction": "avg"}, ()),
    ("multilabel_soft_margin_loss", (X, P), {"reduction": "avg"}, ()),
    ("triplet_margin_loss", (X, X, X), {"margin": 0.0}, ()),
    ("triplet_margin_loss", (X, X[0], X), {}, ()),
    ("soft_margin_loss", (X, np.sign(X)), {}, (0, 1)),
]


@pytest.mark.parametrize("case", ERRORS, ids=lambda c: c[0])
def test_error_matches_torch(case: tuple) -> None:
    name, args, kwargs, grad = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as t_err:
            _call(torch, TF, name, args, kwargs, grad)
        with pytest.raises(Exception) as e_err:
            _call(engine, EF, name, args, kwargs, grad)
    assert type(e_err.value) is type(t_err.value), (e_err.value, t_err.value)
    assert str(e_err.value) == str(t_err.value)


# ---------------------------------------------------------------- warnings
WARNINGS = [
    ("mse_loss", (X, X[0]), {}),
    ("l1_loss", (X, X[0]), {}),
    ("smooth_l1_loss", (X, X[0]), {}),
    ("huber_loss", (X, X[0]), {}),
    ("mse_loss", (X, X), {"size_average": False}),
    ("nll_loss", (X, T3), {"reduce": False}),
    ("multilabel_soft_margin_loss", (X, P), {"size_average": True}),
    ("kl_div", (X, P), {}),
    ("kl_div", (X, P), {"reduce": True}),
    ("softmax", (X,), {}),
    ("log_softmax", (X,), {}),
    ("softmin", (X,), {}),
    ("cross_entropy", (X, T3), {"reduction": "elementwise_mean"}),
]


@pytest.mark.parametrize("case", WARNINGS, ids=lambda c: c[0])
def test_warning_and_value_match_torch(case: tuple) -> None:
    name, args, kwargs = case
    with warnings.catch_warnings(record=True) as tw:
        warnings.simplefilter("always")
        t_out = _call(torch, TF, name, args, kwargs, ())
    with warnings.catch_warnings(record=True) as ew:
        warnings.simplefilter("always")
        e_out = _call(engine, EF, name, args, kwargs, ())
    assert [str(w.message) for w in ew] == [str(w.message) for w in tw]
    assert all(w.filename == __file__ for w in ew), [w.filename for w in ew]  # points at the caller
    np.testing.assert_allclose(e_out.numpy(), t_out.numpy(), rtol=1e-12)


# ---------------------------------------------------------------- float32 in, float32 out
def _f32(x: object) -> object:
    if isinstance(x, np.ndarray) and x.dtype == np.float64:
        return x.astype(np.float32)
    if isinstance(x, (list, tuple)):
        return type(x)(_f32(v) for v in x)
    return x


F_CASES = [(n, i) for n in sorted(SAMPLES) if n.startswith("nn.functional.") for i in range(len(SAMPLES[n]))]


@pytest.mark.parametrize("case", F_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_float32_samples_keep_dtype_and_match_torch(case: tuple) -> None:
    name, i = case
    s = SAMPLES[name][i]
    short = name.removeprefix("nn.functional.")
    args, kwargs = _f32(s.args), {k: _f32(v) for k, v in s.kwargs.items()}
    # the sample's own torch oracle where it has one (seeded dropout masks, sdpa's math backend)
    tf = TF if s.torch_fn == AUTO else SimpleNamespace(**{short: s.torch_fn})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_out = _call(torch, tf, short, args, kwargs, ())
        e_out = _call(engine, EF, short, args, kwargs, ())
    t_all, e_all = (o if isinstance(o, tuple) else (o,) for o in (t_out, e_out))  # (values, indices)
    assert len(e_all) == len(t_all)
    for e, t in zip(e_all, t_all):
        assert e.dtype.name == str(t.dtype).removeprefix("torch.")
        np.testing.assert_allclose(e.numpy(), t.numpy(), rtol=2e-5, atol=2e-6)


# ---------------------------------------------------------------- options outside the samples
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "softmin"])
def test_softmax_dtype_option(name: str) -> None:
    x = X.astype(np.float32)
    e = getattr(EF, name)(engine.tensor(x), dim=1, dtype=engine.float64)
    t = getattr(TF, name)(torch.tensor(x), dim=1, dtype=torch.float64)
    assert e.dtype == engine.float64
    np.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-12)


@pytest.mark.parametrize("name", ["relu", "relu6", "hardtanh", "threshold"])
def test_integer_inputs_keep_their_dtype(name: str) -> None:
    args = (np.array([-2, 0, 1, 3, 7]),) + ((0.5, 7.5) if name == "threshold" else ())
    e = _call(engine, EF, name, args, {}, ())
    t = _call(torch, TF, name, args, {}, ())
    assert e.dtype.name == str(t.dtype).removeprefix("torch.")
    np.testing.assert_array_equal(e.numpy(), t.numpy())


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu", "hardtanh", "silu", "threshold", "relu6",
                                  "selu", "celu", "hardsigmoid", "hardswish", "mish"])
def test_inplace_writes_into_the_input_as_torch(name: str) -> None:
    extra = (0.1, 0.0) if name == "threshold" else ()
    out = {}
    for lib, F in ((engine, EF), (torch, TF)):
        w = lib.tensor(X, requires_grad=True)
        b = w * 1.0
        r = getattr(F, name)(b, *extra, inplace=True)
        (b * b).sum().backward()
        leaf = lib.tensor(X, requires_grad=True)
        try:
            getattr(F, name)(leaf, *extra, inplace=True)
            err = None
        except RuntimeError as e:
            err = str(e)
        out[lib.__name__] = (r is b, b._version, np.asarray(b.detach()), np.asarray(w.grad), err)
    e, t = out["engine"], out["torch"]
    assert e[:2] == t[:2] and e[4] == t[4]
    np.testing.assert_allclose(e[2], t[2], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(e[3], t[3], rtol=1e-6, atol=1e-7)


def test_nn_functional_is_reachable_from_engine() -> None:
    assert engine.nn.functional.cross_entropy is EF.cross_entropy
    assert engine.OPS["nn.functional.relu"].fn is EF.relu
    names = {n.removeprefix("nn.functional.") for n in engine.OPS if n.startswith("nn.functional.")}
    assert names == set(EF.__all__)


def test_cross_entropy_hessian_vector_product_matches_torch() -> None:
    # create_graph through log_softmax + nll with weights, ignore_index and label smoothing
    x, v = r.standard_normal((4, 5)), r.standard_normal((4, 5))
    tgt, w = np.array([1, 4, 2, 4]), r.uniform(0.5, 2.0, 5)
    out = []
    for lib, F in ((engine, EF), (torch, TF)):
        xt = lib.tensor(x, requires_grad=True)
        loss = F.cross_entropy(xt, lib.tensor(tgt), weight=lib.tensor(w), ignore_index=4, label_smoothing=0.1)
        (g,) = lib.autograd.grad(loss, xt, create_graph=True)
        (h,) = lib.autograd.grad((g * lib.tensor(v)).sum(), xt)
        out.append(h.detach().numpy())
    np.testing.assert_allclose(out[0], out[1], rtol=1e-10, atol=1e-12)


def test_binary_cross_entropy_saturated_probabilities_match_torch() -> None:
    # A sigmoid saturates to exactly 0 or 1 in float32: torch clamps the logs at -100 and the
    # gradient's denominator at 1e-12, so loss and input gradient stay finite.
    x, t = np.array([0.0, 1.0, 0.5, 1.0]), np.array([0.3, 0.6, 1.0, 1.0])
    out = []
    for lib, F in ((engine, EF), (torch, TF)):
        xt = lib.tensor(x, requires_grad=True)
        loss = F.binary_cross_entropy(xt, lib.tensor(t), reduction="none")
        (g,) = lib.autograd.grad(loss.sum(), xt)
        out.append((loss.detach().numpy(), g.numpy()))
    np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-12)
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-12)
    assert np.isfinite(out[0][1]).all()


# ---------------------------------------------------------------- float32 gelu (its own erf)
def _ulps(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Distance of float32 results from float64 references, in float32 ulps of the reference."""
    return np.abs(got.astype(np.float64) - ref) / np.spacing(np.abs(ref).astype(np.float32))


@pytest.mark.parametrize("scale", [0.4, 3.0], ids=["few-tails", "mostly-tails"])
def test_float32_gelu_and_its_derivative_are_within_a_few_ulps(scale: float) -> None:
    import scipy.special

    # both evaluation paths of the float32 erf: few |x / sqrt 2| >= 1 (gathered) and most of them
    x = (np.random.default_rng(5).standard_normal(200_000) * scale).astype(np.float32)
    x = np.concatenate([x, np.linspace(-9, 9, 100_001, dtype=np.float32)])
    x64 = x.astype(np.float64)
    cdf = 0.5 * (1 + scipy.special.erf(x64 / np.sqrt(2)))
    y_ref, d_ref = x64 * cdf, cdf + x64 * np.exp(-0.5 * x64 * x64) / np.sqrt(2 * np.pi)
    t = engine.tensor(x, requires_grad=True)
    y = EF.gelu(t)
    (d,) = engine.autograd_grad(y.sum(), t)
    assert y.dtype == engine.float32 and d.dtype == engine.float32
    # relative to the result, plus an absolute floor where gelu's value cancels to ~0 (x << 0)
    for got, ref in ((y.detach().numpy(), y_ref), (d.numpy(), d_ref)):
        err = np.abs(got - ref)
        assert np.all((err <= 8 * np.spacing(np.abs(ref).astype(np.float32))) | (err <= 1e-7)), \
            float(_ulps(got, ref).max())


def test_float32_gelu_special_values_match_torch() -> None:
    # (not +inf: torch's vectorized kernel gives nan there, its formula and ours inf)
    x = np.array([0.0, -0.0, -np.inf, np.nan, 1e30, -1e30, 1e-40, 1.4142135, -1.4142135,
                  5.656854, -5.656854], np.float32)
    with np.errstate(invalid="ignore"):  # -inf * Phi(-inf) = -inf * 0, as torch
        e, t = EF.gelu(engine.tensor(x)).numpy(), TF.gelu(torch.tensor(x)).numpy()
    np.testing.assert_array_equal(np.isnan(e), np.isnan(t))
    np.testing.assert_allclose(e, t, rtol=1e-6, atol=1e-30)
    assert np.signbit(e[1]) == np.signbit(t[1])


ACTIVATIONS = ["relu", "relu6", "hardtanh", "leaky_relu", "hardsigmoid", "hardswish", "elu", "selu",
               "celu", "gelu", "silu", "mish", "softplus", "hardshrink", "softshrink", "logsigmoid"]


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_gradient_with_infinite_and_nan_upstream_gradients_matches_torch(name: str) -> None:
    # torch forms each activation's local slope and multiplies the upstream gradient once, or
    # selects 0 by the input's range: an infinite upstream gradient gives +-inf or 0, never the
    # NaN of inf - inf that two product-rule paths would make
    x = np.array([-4.0, -3.0, -2.0, -0.5, 0.0, 0.5, 2.0, 3.0, 7.0, np.nan])
    g = np.array([np.inf, np.nan, -np.inf, np.inf, np.inf, -np.inf, np.inf, np.inf, 1.0, 1.0])
    tx, ex = torch.tensor(x, requires_grad=True), engine.tensor(x, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (want,) = torch.autograd.grad(getattr(TF, name)(tx), tx, torch.tensor(g))
        (got,) = engine.autograd_grad(getattr(EF, name)(ex), (ex,), engine.tensor(g))
    # infinities and NaNs where torch's are, finite values to rounding
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_keeps_the_inputs_shape(dtype) -> None:
    # a 0-d input stays 0-d (np.ascontiguousarray made it [1]); one of several blocks too
    rng = np.random.default_rng(3)
    for shape in ((), (1,), (0,), (2, 3), (300_001,)):
        a = rng.standard_normal(shape).astype(dtype)
        t = engine.tensor(a, requires_grad=True)
        y = EF.gelu(t)
        (d,) = engine.autograd_grad(y.sum(), t)
        assert tuple(y.shape) == tuple(d.shape) == tuple(TF.gelu(torch.tensor(a)).shape)
