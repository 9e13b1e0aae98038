"""End-to-end models on the engine against torch: a small CNN and a transformer block.

The models live in ``tests/models.py`` and are written once for both libraries. Every parameter's
gradient (``autograd_grad``) must match torch's: to float32 tolerance in float32, tightly in
float64; and a Hessian-vector product through ``create_graph`` must match too.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

import engine
from tests import models as M

F32 = {"rtol": 2e-4, "atol": 2e-6}
F64 = {"rtol": 1e-9, "atol": 1e-12}


def _grad(lib):
    return engine.autograd_grad if lib is engine else torch.autograd.grad


def _np(t) -> np.ndarray:
    return t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t.detach()._data)


def _loss_and_grads(lib, loss_fn: Callable, setup: tuple, create_graph: bool = False):
    p, batch = setup
    params = M.to_lib(lib, p, requires_grad=True)
    with sdpa_kernel(SDPBackend.MATH):  # torch's math reference: double backward exists
        loss = loss_fn(lib, params, *M.to_lib(lib, batch))
        grads = _grad(lib)(loss, list(params.values()), create_graph=create_graph)
    return params, loss, dict(zip(params, grads))


def _assert_grads_match(loss_fn: Callable, setup: tuple, tol: dict) -> None:
    _, e_loss, e_g = _loss_and_grads(engine, loss_fn, setup)
    _, t_loss, t_g = _loss_and_grads(torch, loss_fn, setup)
    np.testing.assert_allclose(_np(e_loss), _np(t_loss), **tol, err_msg="loss")
    assert list(e_g) == list(t_g)
    for name in e_g:
        e, t = _np(e_g[name]), _np(t_g[name])
        assert e.dtype == t.dtype == setup[0][name].dtype, name
        scale = np.abs(t).max()
        assert scale > 1e-6, f"{name}: torch's gradient is ~0: the comparison would be vacuous"
        np.testing.assert_allclose(e, t, rtol=tol["rtol"], atol=tol["atol"] * max(scale, 1.0),
                                   err_msg=f"d loss / d {name}")


@pytest.mark.parametrize("dtype,tol", [(np.float32, F32), (np.float64, F64)], ids=["float32", "float64"])
def test_cnn_parameter_gradients_match_torch(dtype, tol) -> None:
    _assert_grads_match(M.cnn_loss, M.cnn_setup(dtype), tol)


@pytest.mark.parametrize("dtype,tol", [(np.float32, F32), (np.float64, F64)], ids=["float32", "float64"])
def test_transformer_parameter_gradients_match_torch(dtype, tol) -> None:
    _assert_grads_match(M.transformer_loss, M.transformer_setup(dtype), tol)


def _hvp(lib, loss_fn: Callable, setup: tuple, v: dict) -> dict:
    params, _, g = _loss_and_grads(lib, loss_fn, setup, create_graph=True)
    dot = sum((g[k] * lib.tensor(v[k])).sum() for k in g)
    with sdpa_kernel(SDPBackend.MATH):
        hv = _grad(lib)(dot, list(params.values()))
    return dict(zip(params, hv))


@pytest.mark.parametrize("model", ["cnn", "transformer"])
def test_hessian_vector_product_matches_torch(model: str) -> None:
    loss_fn, setup = {"cnn": (M.cnn_loss, M.cnn_setup(np.float64)),
                      "transformer": (M.transformer_loss, M.transformer_setup(np.float64))}[model]
    rng = np.random.default_rng(5)
    v = {k: rng.standard_normal(a.shape) for k, a in setup[0].items()}
    e, t = _hvp(engine, loss_fn, setup, v), _hvp(torch, loss_fn, setup, v)
    for name in e:
        assert np.abs(_np(t[name])).max() > 1e-6, name
        np.testing.assert_allclose(_np(e[name]), _np(t[name]), rtol=1e-8, atol=1e-11,
                                   err_msg=f"HVP block {name}")


def test_cnn_hvp_is_symmetric() -> None:
    # <u, H v> == <v, H u>: a check of the engine's second derivatives that needs no oracle
    setup = M.cnn_setup(np.float64, batch=4)
    rng = np.random.default_rng(9)
    u = {k: rng.standard_normal(a.shape) for k, a in setup[0].items()}
    v = {k: rng.standard_normal(a.shape) for k, a in setup[0].items()}
    hu, hv = _hvp(engine, M.cnn_loss, setup, u), _hvp(engine, M.cnn_loss, setup, v)
    uhv = sum(float((u[k] * _np(hv[k])).sum()) for k in u)
    vhu = sum(float((v[k] * _np(hu[k])).sum()) for k in v)
    assert uhv == pytest.approx(vhu, rel=1e-9)
