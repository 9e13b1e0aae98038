"""Mutation over real HTTP (uvicorn on a loopback port): graph.source with re-assignment, item
and augmented assignment, in-place JSON nodes, and errors located at the user's line and name.
torch runs the same program with real mutation and is the oracle."""

from __future__ import annotations

import re

import httpx
import numpy as np
import torch

X = np.array([0.25, -1.0, 2.0])
W = np.array([[0.5, -0.25, 1.0], [0.1, 0.2, -0.3], [1.5, 0.0, 0.7]])


def _tensor(name: str, a: np.ndarray, rg: bool = True) -> dict:
    return {"name": name, "datatype": "FP64", "shape": list(a.shape), "data": a.ravel().tolist(),
            "requires_grad": rg}


def test_source_with_mutation_over_http(server_url: str) -> None:
    # sin saves its input, not its output, so torch may change its output in place afterwards
    src = ("h = sin(x @ w)\n"
           "h = sin(h @ w)\n"
           "h[0] = 2 * x[1]\n"
           "h[1:] *= x[:2]\n"
           "h += 1\n"
           "loss = (h * h).sum()")
    req = {"graph": {"inputs": [_tensor("x", X), _tensor("w", W)], "source": src},
           "outputs": "loss", "inputs": ["x", "w"], "return": ["h", "loss"]}
    r = httpx.post(f"{server_url}/v1/grad", json=req, timeout=30)
    assert r.status_code == 200, r.text
    b = r.json()
    x, w = torch.tensor(X, requires_grad=True), torch.tensor(W, requires_grad=True)
    h = torch.sin(x @ w)
    h = torch.sin(h @ w)
    h[0] = 2 * x[1]
    h[1:] *= x[:2]
    h += 1
    loss = (h * h).sum()
    gx, gw = torch.autograd.grad(loss, [x, w])
    np.testing.assert_allclose(b["values"]["h"]["data"], h.detach().numpy().ravel(), rtol=1e-12)
    np.testing.assert_allclose(b["grads"][0]["data"], gx.numpy().ravel(), rtol=1e-12)
    np.testing.assert_allclose(b["grads"][1]["data"], gw.numpy().ravel(), rtol=1e-12)


def test_in_place_json_node_and_located_error_over_http(server_url: str) -> None:
    nodes = [{"op": "mul", "inputs": ["x", 3.0], "outputs": ["y"]},
             {"op": "exp_", "inputs": ["y"], "outputs": ["y2"]},
             {"op": "sum", "inputs": ["y2"], "outputs": ["loss"]}]
    req = {"graph": {"inputs": [_tensor("x", X)], "nodes": nodes}, "outputs": "loss", "inputs": "x"}
    r = httpx.post(f"{server_url}/v1/grad", json=req, timeout=30)
    assert r.status_code == 200, r.text
    x = torch.tensor(X, requires_grad=True)
    y = x * 3.0
    y.exp_()
    (g,) = torch.autograd.grad(y.sum(), x)
    np.testing.assert_allclose(r.json()["grads"][0]["data"], g.numpy(), rtol=1e-12)

    # a shape error in the third binding of h names line 3 and h, never an internal name
    src = "h = x * 2\nh = h.exp()\nh = h @ v\nloss = h.sum()"
    req = {"graph": {"inputs": [_tensor("x", X), _tensor("v", np.ones((2, 2)))], "source": src},
           "outputs": "loss", "inputs": "x"}
    r = httpx.post(f"{server_url}/v1/grad", json=req, timeout=30)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    b = r.json()
    try:
        (torch.tensor(X) * 2).exp() @ torch.ones(2, 2)
    except RuntimeError as e:
        assert str(e) in b["detail"]
    err = b["errors"][0]
    assert (err["line"], err["col"], err["node"]) == (3, 5, "h")
    assert not re.search(r"h'\d", r.text)


def test_a_saved_value_changed_in_place_is_refused_as_torch_over_http(server_url: str) -> None:
    # tanh saves its output; changing it afterwards makes the backward fail, as in torch
    src = "h = tanh(x @ w)\nh[0] = 2 * x[1]\nh += 1\nloss = (h * h).sum()"
    req = {"graph": {"inputs": [_tensor("x", X), _tensor("w", W)], "source": src},
           "outputs": "loss", "inputs": ["x", "w"]}
    r = httpx.post(f"{server_url}/v1/grad", json=req, timeout=30)
    x, w = torch.tensor(X, requires_grad=True), torch.tensor(W, requires_grad=True)
    h = torch.tanh(x @ w)
    h[0] = 2 * x[1]
    h += 1
    try:
        torch.autograd.grad((h * h).sum(), [x, w])
    except RuntimeError as e:
        want = str(e)
    assert "modified by an inplace operation" in want
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == want and r.json()["exception"] == "RuntimeError"
