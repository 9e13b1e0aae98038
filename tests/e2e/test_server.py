"""A real uvicorn process on a loopback port: the wire format end to end, checked against torch."""

from __future__ import annotations

import shutil
import subprocess
import sys

import httpx
import numpy as np
import pytest
import torch

from tests.service.helpers import (
    binary_body,
    read_tensor,
    seed_request,
    seed_torch,
    split_binary_response,
    wire_tensor,
)


@pytest.fixture(scope="module")
def http(server_url: str):
    with httpx.Client(base_url=server_url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(42).random(100).astype(np.float32)


def check_seed(grads, x, loss=None):
    gw, gb, loss_t = seed_torch(x)
    np.testing.assert_allclose(grads[0], gw, rtol=1e-6)
    np.testing.assert_allclose(grads[1], gb, rtol=1e-6)
    if loss is not None:
        np.testing.assert_allclose(loss, loss_t, rtol=1e-6)


@pytest.mark.parametrize("form", ["nodes", "source"])
def test_seed_example_and_value_and_grad(http, x, form):
    r = http.post("/v1/grad", json=seed_request(x, form=form, **{"return": ["loss"]}))
    assert r.status_code == 200, r.text
    out = r.json()
    check_seed([read_tensor(g) for g in out["grads"]], x, read_tensor(out["values"]["loss"]))


@pytest.mark.parametrize("form", ["nodes", "source"])
def test_create_graph_second_derivative(http, form):
    # d/dx of sum(d/dx sum(x^2 * exp(x))) = sum of second derivatives; plus the first derivative
    xs = np.array([0.1, -0.7, 1.3])
    graph = {"inputs": [wire_tensor("x", xs, requires_grad=True)]}
    if form == "source":
        graph["source"] = "f = sum(x * x * exp(x))\ng, = grad(f, [x], create_graph=True)\ngs = sum(g)\n"
    else:
        graph["nodes"] = [
            {"op": "mul", "inputs": ["x", "x"], "outputs": ["x2"]},
            {"op": "exp", "inputs": ["x"], "outputs": ["ex"]},
            {"op": "mul", "inputs": ["x2", "ex"], "outputs": ["p"]},
            {"op": "sum", "inputs": ["p"], "outputs": ["f"]},
            {"op": "grad", "attributes": {"outputs": ["f"], "inputs": ["x"], "create_graph": True},
             "outputs": ["g"]},
            {"op": "sum", "inputs": ["g"], "outputs": ["gs"]},
        ]
    r = http.post("/v1/grad", json={"graph": graph, "outputs": ["gs"], "inputs": ["x"], "return": ["g", "f"]})
    assert r.status_code == 200, r.text
    out = r.json()
    xt = torch.tensor(xs, requires_grad=True)
    f = (xt * xt * torch.exp(xt)).sum()
    g, = torch.autograd.grad(f, xt, create_graph=True)
    h, = torch.autograd.grad(g.sum(), xt)
    np.testing.assert_allclose(read_tensor(out["grads"][0]), h.numpy(), rtol=1e-12)
    np.testing.assert_allclose(read_tensor(out["values"]["g"]), g.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(read_tensor(out["values"]["f"]), f.item(), rtol=1e-12)


def test_b64_both_directions(http, x):
    r = http.post("/v1/grad", json=seed_request(x, encoding="b64", response_encoding="b64",
                                                 **{"return": ["loss"]}))
    assert r.status_code == 200, r.text
    out = r.json()
    assert all("b64" in g for g in out["grads"]) and "b64" in out["values"]["loss"]
    check_seed([read_tensor(g) for g in out["grads"]], x, read_tensor(out["values"]["loss"]))


def test_binary_both_directions(http, x):
    req = seed_request(x, encoding="binary", **{"return": ["loss"]})
    body, headers = binary_body(req, [np.array([0.5], np.float32), np.array([0.9], np.float32), x])
    r = http.post("/v1/grad", content=body, headers={**headers, "accept": "application/octet-stream"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    header, blobs = split_binary_response(r.content, int(r.headers["inference-header-content-length"]))
    check_seed([read_tensor(g, blobs[i]) for i, g in enumerate(header["grads"])], x,
               read_tensor(header["values"]["loss"], blobs[2]))


def test_big_binary_round_trip(http):
    a = np.random.default_rng(7).normal(size=(512, 1024)).astype(np.float32)  # 2 MiB each way
    req = {"graph": {"inputs": [wire_tensor("a", a, encoding="binary", requires_grad=True)],
                     "source": "l = sum(a * a)"}, "outputs": "l", "inputs": "a"}
    body, headers = binary_body(req, [a])
    r = http.post("/v1/grad", content=body, headers={**headers, "accept": "application/octet-stream"})
    assert r.status_code == 200, r.text
    header, blobs = split_binary_response(r.content, int(r.headers["inference-header-content-length"]))
    np.testing.assert_array_equal(read_tensor(header["grads"][0], blobs[0]), 2 * a)


def test_errors_over_the_wire_then_still_serving(http, x):
    r = http.post("/v1/grad", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    r = http.post("/v1/grad", content=b"{}", headers={"content-type": "text/csv"})
    assert r.status_code == 415
    bad = seed_request(x, inputs=["w", "x"])
    r = http.post("/v1/grad", json=bad)
    assert r.status_code == 422
    assert r.json()["exception"] == "RuntimeError"
    assert r.json()["detail"] == "One of the differentiated Tensors does not require grad"
    r = http.post("/v1/grad", json=seed_request(x))
    assert r.status_code == 200
    check_seed([read_tensor(g) for g in r.json()["grads"]], x)


def test_ops_health_and_docs(http):
    assert http.get("/health/live").json() == {"status": "ok"}
    assert http.get("/health/ready").status_code == 200
    ops = http.get("/v1/ops").json()
    assert ops["count"] == len(ops["ops"]) and any(o["name"] == "mul" for o in ops["ops"])
    assert http.get("/docs").status_code == 200


def test_api_keys_and_workers(make_server, x):
    srv = make_server(env={"GRADSERVE_API_KEYS": "s3cret,other"}, args=["--workers", "2"])
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        r = c.post("/v1/grad", json=seed_request(x))
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        assert "s3cret" not in r.text
        assert c.get("/health/ready").status_code == 200
        for _ in range(4):  # several requests, whichever worker takes them
            r = c.post("/v1/grad", json=seed_request(x), headers={"authorization": "Bearer s3cret"})
            assert r.status_code == 200, r.text
            check_seed([read_tensor(g) for g in r.json()["grads"]], x)
    assert "s3cret" not in srv.output()


def test_cli_entry_points():
    out = subprocess.run([sys.executable, "-m", "service", "serve", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--workers" in out.stdout and "127.0.0.1" in out.stdout
    exe = shutil.which("gradserve")  # the console script `pip install -e .` installs
    assert exe is not None, "the gradserve console script is not installed"
    out = subprocess.run([exe, "serve", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--port" in out.stdout
