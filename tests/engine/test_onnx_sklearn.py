"""scikit-learn models converted by skl2onnx: linear regression and classification (the
ai.onnx.ml operators) and MLPs (default-domain operators). Forward values against onnxruntime;
gradients with respect to the input against the closed form (linear models) or torch running
the fitted MLP's weights."""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest
import skl2onnx  # scikit-learn and skl2onnx are in the test extra
import torch
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neural_network import MLPClassifier, MLPRegressor

import engine
import engine.onnx as eo

R = np.random.default_rng(0)
X = R.standard_normal((30, 4)).astype(np.float32)
Y = X @ np.array([1.0, 2.0, -1.0, 0.5]) + 0.3


def convert(est) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return skl2onnx.to_onnx(est, X[:1], target_opset={"": 18, "ai.onnx.ml": 3},
                                options={id(est): {"zipmap": False}} if hasattr(est, "classes_") else None
                                ).SerializeToString()


def fit(est, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


def run_both(data: bytes, x: np.ndarray) -> tuple[list, list]:
    m = eo.load(data)
    xe = engine.from_numpy(x).requires_grad_()
    outs = m(**{m.input_names[0]: xe})
    outs = list(outs) if isinstance(outs, tuple) else [outs]
    refs = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {m.input_names[0]: x})
    for o, r in zip(outs, refs):
        np.testing.assert_allclose(o.detach().numpy(), r, rtol=1e-5, atol=1e-5)
    return outs, [xe]


def test_linear_regression() -> None:
    est = fit(LinearRegression(), np.stack([Y, -2 * Y], 1))
    (y,), (x,) = run_both(convert(est), X[:5])
    (g,) = engine.autograd_grad(y.sum(), [x])
    np.testing.assert_allclose(g.numpy(), np.tile(est.coef_.sum(0), (5, 1)), rtol=1e-5)


@pytest.mark.parametrize("classes", [2, 3])
def test_logistic_regression(classes: int) -> None:
    labels = np.digitize(Y, np.quantile(Y, np.linspace(0, 1, classes + 1)[1:-1]))
    est = fit(LogisticRegression(), labels)
    (label, prob), (x,) = run_both(convert(est), X[:6])
    # d/dx of the probability of the last class, in closed form
    p = est.predict_proba(X[:6])
    if classes == 2:
        want = (p[:, 1] * (1 - p[:, 1]))[:, None] * est.coef_[0]
    else:
        w = est.coef_
        want = p[:, -1:] * (w[-1] - p @ w)
    (g,) = engine.autograd_grad(prob[:, -1].sum(), [x])
    np.testing.assert_allclose(g.numpy(), want, rtol=1e-4, atol=1e-6)


def test_mlp_regressor() -> None:
    est = fit(MLPRegressor(hidden_layer_sizes=(6,), max_iter=200, random_state=0), Y)
    (y,), (x,) = run_both(convert(est), X[:5])
    (g,) = engine.autograd_grad(y.sum(), [x])
    xt = torch.from_numpy(X[:5]).requires_grad_()
    (gt,) = torch.autograd.grad(_mlp_loss(est, xt), [xt])
    np.testing.assert_allclose(g.numpy(), gt.numpy(), rtol=1e-4, atol=1e-6)


def _mlp_loss(est, xt: torch.Tensor) -> torch.Tensor:
    h = xt
    for i, (w, b) in enumerate(zip(est.coefs_, est.intercepts_)):
        h = h @ torch.from_numpy(w.astype(np.float32)) + torch.from_numpy(b.astype(np.float32))
        if i < len(est.coefs_) - 1:
            h = torch.relu(h)
    return h.sum()


def test_mlp_classifier() -> None:
    est = fit(MLPClassifier(hidden_layer_sizes=(6,), max_iter=200, random_state=0), (Y > 0).astype(np.int64))
    (label, prob), (x,) = run_both(convert(est), X[:5])
    (g,) = engine.autograd_grad(prob[:, 1].sum(), [x])
    xt = torch.from_numpy(X[:5]).requires_grad_()
    h = xt
    for i, (w, b) in enumerate(zip(est.coefs_, est.intercepts_)):
        h = h @ torch.from_numpy(w.astype(np.float32)) + torch.from_numpy(b.astype(np.float32))
        h = torch.relu(h) if i < len(est.coefs_) - 1 else torch.sigmoid(h)
    (gt,) = torch.autograd.grad(h.sum(), [xt])
    np.testing.assert_allclose(g.numpy(), gt.numpy(), rtol=1e-4, atol=1e-6)


def test_zipmap_is_refused_with_a_hint() -> None:
    est = fit(LogisticRegression(), (Y > 0).astype(np.int64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = skl2onnx.to_onnx(est, X[:1], target_opset={"": 18, "ai.onnx.ml": 3}).SerializeToString()
    with pytest.raises(eo.OnnxError, match="ZipMap.*'zipmap': False"):
        eo.load(data)
