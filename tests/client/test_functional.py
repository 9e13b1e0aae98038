"""The client's functional API (jacobian, hessian, vjp, jvp, hvp, vhp) against
``torch.autograd.functional``: embedded and remote (a real server), sync and async."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
import torch.autograd.functional as TAF

from client import AsyncClient, AutogradError, Client
from tests.e2e.conftest import Server

from ._scenarios import Harness

rng = np.random.default_rng(11)
X = rng.normal(size=(4, 3)).astype(np.float32)
W = rng.normal(size=(3, 2)).astype(np.float32)
B = rng.normal(size=2).astype(np.float32)
VW = rng.normal(size=(3, 2)).astype(np.float32)
VB = rng.normal(size=2).astype(np.float32)
VY = rng.normal(size=(4, 2)).astype(np.float32)


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    s = Server()
    yield s.url
    s.stop()


@pytest.fixture(params=["embedded-sync", "embedded-async", "remote-sync", "remote-async"])
def h(request: pytest.FixtureRequest) -> Iterator[Harness]:
    where, mode = request.param.split("-")
    url = request.getfixturevalue("server_url") if where == "remote" else None
    harness = Harness((Client if mode == "sync" else AsyncClient)(url))
    assert harness.c.embedded == (where == "embedded")
    yield harness
    harness.close()


def model(lib: Any, x: Any) -> tuple[Any, Any]:
    """(vector output, scalar loss) of (w, b)."""
    def out(w, b):
        return lib.tanh(x @ w + b)

    def loss(w, b):
        return (out(w, b) ** 2).mean()

    return out, loss


def torch_model() -> tuple[Any, Any]:
    return model(torch, torch.tensor(X))


def same(ours: Any, theirs: Any, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Same nesting (tuple vs array) and values; arrays are float32 as the inputs are."""
    if isinstance(theirs, (tuple, list)):
        assert isinstance(ours, tuple) and len(ours) == len(theirs), (type(ours), ours)
        for a, b in zip(ours, theirs):
            same(a, b, rtol, atol)
        return
    t = theirs.detach().numpy()
    assert isinstance(ours, np.ndarray), type(ours)
    assert ours.shape == t.shape and ours.dtype == t.dtype, (ours.shape, ours.dtype, t.shape, t.dtype)
    np.testing.assert_allclose(ours, t, rtol=rtol, atol=atol)


def leaves(c: Any) -> tuple[Any, Any, Any]:
    return c.tensor(X), c.tensor(W), c.tensor(B)


def test_jacobian_and_hessian(h: Harness) -> None:
    x, w, b = leaves(h.c)
    out, loss = model(h.c, x)
    t_out, t_loss = torch_model()
    tw, tb = torch.tensor(W), torch.tensor(B)
    same(h.run(h.c.jacobian(out, (w, b))), TAF.jacobian(t_out, (tw, tb)))
    same(h.run(h.c.jacobian(lambda b_: out(w, b_), b, vectorize=True)),
         TAF.jacobian(lambda b_: t_out(tw, b_), tb))
    fwd = {"vectorize": True, "strategy": "forward-mode"}
    same(h.run(h.c.jacobian(lambda w_: (out(w_, b), loss(w_, b)), w, **fwd)),
         TAF.jacobian(lambda w_: (t_out(w_, tb), t_loss(w_, tb)), tw, **fwd))
    same(h.run(h.c.hessian(loss, (w, b))), TAF.hessian(t_loss, (tw, tb)))
    same(h.run(h.c.hessian(lambda w_: loss(w_, b), w)), TAF.hessian(lambda w_: t_loss(w_, tb), tw))
    assert h.requests == 5  # one request per call


@pytest.mark.parametrize("api", ["vjp", "jvp", "hvp", "vhp"])
def test_vector_products(h: Harness, api: str) -> None:
    x, w, b = leaves(h.c)
    out, loss = model(h.c, x)
    t_out, t_loss = torch_model()
    tw, tb = torch.tensor(W), torch.tensor(B)
    f, tf = (out, t_out) if api in ("vjp", "jvp") else (loss, t_loss)
    if api == "vjp":
        v, tv = VY, torch.tensor(VY)                                   # numpy v: sent as a constant
    else:
        v, tv = (h.c.tensor(VW), h.c.tensor(VB)), (torch.tensor(VW), torch.tensor(VB))
    ours = h.run(getattr(h.c, api)(f, (w, b), v))
    same(ours, getattr(TAF, api)(tf, (tw, tb), tv))
    assert h.requests == 1  # the function's value comes in the same round trip


def test_create_graph_results_are_client_tensors(h: Harness) -> None:
    x, _, _ = leaves(h.c)
    w, b = h.c.tensor(W, requires_grad=True), h.c.tensor(B, requires_grad=True)
    out, loss = model(h.c, x)
    J = h.run(h.c.jacobian(lambda b_: out(w, b_), b, create_graph=True))
    assert J.shape == (4, 2, 2) and J.requires_grad  # shape known locally, before any request
    value, hv = h.run(h.c.hvp(lambda b_: loss(w, b_), b, h.c.tensor(VB), create_graph=True))
    gw, gb = h.grad((J ** 2).sum() + hv.sum(), [w, b])

    tw, tb = torch.tensor(W, requires_grad=True), torch.tensor(B, requires_grad=True)
    t_out, t_loss = torch_model()
    tJ = TAF.jacobian(lambda b_: t_out(tw, b_), tb, create_graph=True)
    _, thv = TAF.hvp(lambda b_: t_loss(tw, b_), tb, torch.tensor(VB), create_graph=True)
    tgw, tgb = torch.autograd.grad((tJ ** 2).sum() + thv.sum(), [tw, tb])
    same((gw, gb), (tgw, tgb), rtol=1e-4, atol=1e-5)
    assert h.requests == 1


def test_errors_like_torch(h: Harness) -> None:
    x, w, b = leaves(h.c)
    out, _ = model(h.c, x)
    t_out, _ = torch_model()
    tw, tb = torch.tensor(W), torch.tensor(B)
    with pytest.raises(RuntimeError) as te:
        TAF.jacobian(lambda w_, b_: t_out(w_, tb), (tw, tb), strict=True)
    with pytest.raises(AutogradError) as oe:
        h.run(h.c.jacobian(lambda w_, b_: out(w_, b), (w, b), strict=True))
    assert isinstance(oe.value, RuntimeError) and oe.value.exception == "RuntimeError"
    assert str(te.value) in str(oe.value)
    with pytest.raises(RuntimeError) as te:
        TAF.hessian(lambda b_: t_out(tw, b_), tb)
    with pytest.raises(AutogradError) as oe:
        h.run(h.c.hessian(lambda b_: out(w, b_), b))
    assert str(te.value) in str(oe.value)
    # argument checks happen here, before anything is sent, with torch's type and words
    with pytest.raises(TypeError) as te2:
        TAF.jacobian(lambda b_: b_, B)
    with pytest.raises(TypeError) as oe2:
        h.run(h.c.jacobian(lambda b_: b_, B))
    assert str(oe2.value) == str(te2.value)
