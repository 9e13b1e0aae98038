"""The Open Inference Protocol routes, driven by the official ``tritonclient[http]`` against a real
server: sync (``tritonclient.http``) and async (``tritonclient.http.aio``), JSON and binary tensor
data, the seed example and an MLP's parameter gradients checked against torch.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest
import torch
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient
from tritonclient.utils import InferenceServerException

from tests.service.helpers import SEED_NODES, seed_torch

MODEL = "gradserve"


def _host(url: str) -> str:
    return url.removeprefix("http://")


def _graph_input(graph: dict, binary: bool) -> httpclient.InferInput:
    g = httpclient.InferInput("graph", [1], "BYTES")
    g.set_data_from_numpy(np.array([json.dumps(graph).encode()], dtype=np.object_), binary_data=binary)
    return g


def _inputs(graph: dict, arrays: dict[str, np.ndarray], binary: bool) -> list[httpclient.InferInput]:
    from tritonclient.utils import np_to_triton_dtype

    out = [_graph_input(graph, binary)]
    for name, a in arrays.items():
        t = httpclient.InferInput(name, list(a.shape), np_to_triton_dtype(a.dtype))
        t.set_data_from_numpy(a, binary_data=binary)
        out.append(t)
    return out


def _outputs(names: list[str], binary: bool) -> list[httpclient.InferRequestedOutput]:
    return [httpclient.InferRequestedOutput(n, binary_data=binary) for n in names]


def _infer(url: str, mode: str, inputs: list, outputs: list | None, **kw: Any) -> httpclient.InferResult:
    """One infer call through the sync or the asyncio client."""
    if mode == "sync":
        client = httpclient.InferenceServerClient(_host(url))
        try:
            return client.infer(MODEL, inputs, outputs=outputs, **kw)
        finally:
            client.close()

    async def run() -> httpclient.InferResult:
        async with aioclient.InferenceServerClient(_host(url)) as client:
            return await client.infer(MODEL, inputs, outputs=outputs, **kw)

    return asyncio.run(run())


MODES = [pytest.param(m, b, id=f"{m}-{'binary' if b else 'json'}")
         for m in ("sync", "aio") for b in (False, True)]


# ---------------------------------------------------------------- metadata and health
def test_health_and_metadata_sync(server_url):
    c = httpclient.InferenceServerClient(_host(server_url))
    try:
        assert c.is_server_live() and c.is_server_ready() and c.is_model_ready(MODEL)
        assert c.is_model_ready(MODEL, model_version="1")
        assert not c.is_model_ready("resnet50")
        meta = c.get_server_metadata()
        assert meta["name"] == MODEL and "binary_tensor_data" in meta["extensions"]
        model = c.get_model_metadata(MODEL)
        assert model["name"] == MODEL and model["versions"] == ["1"]
        assert model["inputs"] == [{"name": "graph", "datatype": "BYTES", "shape": [1]}]
    finally:
        c.close()


def test_health_and_metadata_async(server_url):
    async def run() -> None:
        async with aioclient.InferenceServerClient(_host(server_url)) as c:
            assert await c.is_server_live() and await c.is_server_ready()
            assert await c.is_model_ready(MODEL)
            assert "binary_tensor_data" in (await c.get_server_metadata())["extensions"]
            assert (await c.get_model_metadata(MODEL))["platform"] == "gradserve"

    asyncio.run(run())


# ---------------------------------------------------------------- the seed example
SEED_GRAPH = {"inputs": [{"name": "w", "requires_grad": True}, {"name": "b", "requires_grad": True},
                         {"name": "x"}], "nodes": SEED_NODES}


@pytest.mark.parametrize(("mode", "binary"), MODES)
def test_seed_example_matches_torch(server_url, mode, binary):
    x = np.random.default_rng(11).random(100).astype(np.float32)
    arrays = {"w": np.array([0.5], np.float32), "b": np.array([0.9], np.float32), "x": x}
    res = _infer(server_url, mode, _inputs(SEED_GRAPH, arrays, binary),
                 _outputs(["grad:w", "grad:b", "loss"], binary), parameters={"outputs": "loss"},
                 request_id="seed-1")
    gw, gb, loss = seed_torch(x)
    np.testing.assert_allclose(res.as_numpy("grad:w"), gw, rtol=1e-6)
    np.testing.assert_allclose(res.as_numpy("grad:b"), gb, rtol=1e-6)
    np.testing.assert_allclose(res.as_numpy("loss"), loss, rtol=1e-6)
    assert res.as_numpy("grad:w").dtype == np.float32
    out = res.get_response()
    assert out["id"] == "seed-1" and out["model_name"] == MODEL
    sizes = [("binary_data_size" in (o.get("parameters") or {})) for o in out["outputs"]]
    assert sizes == [binary] * 3  # the response honours each output's binary_data flag


# ---------------------------------------------------------------- an MLP
def _mlp(seed: int = 3) -> tuple[dict, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    arrays = {
        "x": rng.standard_normal((16, 20)).astype(np.float32),
        "W1": (rng.standard_normal((32, 20)) * 0.3).astype(np.float32),
        "b1": (rng.standard_normal(32) * 0.1).astype(np.float32),
        "W2": (rng.standard_normal((5, 32)) * 0.3).astype(np.float32),
        "b2": (rng.standard_normal(5) * 0.1).astype(np.float32),
        "target": rng.integers(0, 5, 16).astype(np.int64),
    }
    params = ["W1", "b1", "W2", "b2"]
    graph = {"inputs": [{"name": n, "requires_grad": n in params} for n in arrays], "nodes": [
        {"op": "nn.functional.linear", "inputs": ["x", "W1", "b1"], "outputs": ["z1"]},
        {"op": "tanh", "inputs": ["z1"], "outputs": ["h"]},
        {"op": "nn.functional.linear", "inputs": ["h", "W2", "b2"], "outputs": ["logits"]},
        {"op": "nn.functional.cross_entropy", "inputs": ["logits", "target"], "outputs": ["loss"]},
    ]}
    return graph, arrays


def _mlp_torch(arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
    t = {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}
    params = ["W1", "b1", "W2", "b2"]
    for p in params:
        t[p].requires_grad_(True)
    h = torch.tanh(torch.nn.functional.linear(t["x"], t["W1"], t["b1"]))
    loss = torch.nn.functional.cross_entropy(torch.nn.functional.linear(h, t["W2"], t["b2"]), t["target"])
    grads = torch.autograd.grad(loss, [t[p] for p in params])
    return {p: g.numpy() for p, g in zip(params, grads)}, loss.item()


@pytest.mark.parametrize(("mode", "binary"), MODES)
def test_mlp_gradients_match_torch(server_url, mode, binary):
    graph, arrays = _mlp()
    params = ["W1", "b1", "W2", "b2"]
    res = _infer(server_url, mode, _inputs(graph, arrays, binary),
                 _outputs([f"grad:{p}" for p in params] + ["loss"], binary), parameters={"outputs": "loss"})
    expected, loss = _mlp_torch(arrays)
    for p in params:
        got = res.as_numpy(f"grad:{p}")
        assert got.shape == arrays[p].shape and got.dtype == np.float32
        np.testing.assert_allclose(got, expected[p], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(res.as_numpy("loss"), loss, rtol=1e-5)


def test_all_outputs_binary_by_default(server_url):
    """With no requested outputs tritonclient asks for binary_data_output: every gradient of
    parameters.inputs comes back, binary, in their order; return values too."""
    graph, arrays = _mlp(5)
    res = _infer(server_url, "sync", _inputs(graph, arrays, True), None,
                 parameters={"outputs": "loss", "inputs": "W1,b1,W2,b2", "return": "loss"})
    names = [o["name"] for o in res.get_response()["outputs"]]
    assert names == ["grad:W1", "grad:b1", "grad:W2", "grad:b2", "loss"]
    assert all("binary_data_size" in o["parameters"] for o in res.get_response()["outputs"])
    expected, _ = _mlp_torch(arrays)
    np.testing.assert_allclose(res.as_numpy("grad:W2"), expected["W2"], rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- grad_outputs, flags, errors
@pytest.mark.parametrize(("mode", "binary"), MODES[::3])
def test_grad_outputs_and_create_graph(server_url, mode, binary):
    """A vector output with ``grad_output:y``; then a Hessian-vector product through a grad node
    (create_graph inside the graph), both against torch."""
    x = np.array([0.3, -1.2, 2.0], np.float64)
    v = np.array([1.0, 0.5, -2.0], np.float64)
    graph = {"inputs": [{"name": "x", "requires_grad": True}, {"name": "v"}],
             "source": "y = x * x * sin(x)\nf = sum(y)\ng, = grad(f, [x], create_graph=True)\n"
                       "gv = sum(g * v)\n"}
    res = _infer(server_url, mode, _inputs(graph, {"x": x, "v": v, "grad_output:y": v}, binary),
                 _outputs(["grad:x"], binary), parameters={"outputs": "y"})
    xt = torch.tensor(x, requires_grad=True)
    (vjp,) = torch.autograd.grad(xt * xt * torch.sin(xt), xt, torch.tensor(v))
    np.testing.assert_allclose(res.as_numpy("grad:x"), vjp.numpy(), rtol=1e-12)

    res = _infer(server_url, mode, _inputs(graph, {"x": x, "v": v}, binary),
                 _outputs(["grad:x", "g"], binary), parameters={"outputs": "gv", "retain_graph": True})
    xt = torch.tensor(x, requires_grad=True)
    (g,) = torch.autograd.grad((xt * xt * torch.sin(xt)).sum(), xt, create_graph=True)
    (hv,) = torch.autograd.grad((g * torch.tensor(v)).sum(), xt)
    np.testing.assert_allclose(res.as_numpy("grad:x"), hv.numpy(), rtol=1e-12)
    np.testing.assert_allclose(res.as_numpy("g"), g.detach().numpy(), rtol=1e-12)


def test_unused_input_gradient_is_none(server_url):
    graph = {"inputs": [{"name": "a", "requires_grad": True}, {"name": "b", "requires_grad": True}],
             "source": "y = sum(a * 3)"}
    arrays = {"a": np.ones(2, np.float32), "b": np.ones(2, np.float32)}
    res = _infer(server_url, "sync", _inputs(graph, arrays, False), _outputs(["grad:a", "grad:b"], False),
                 parameters={"outputs": "y", "allow_unused": True})
    np.testing.assert_allclose(res.as_numpy("grad:a"), [3.0, 3.0])
    assert res.as_numpy("grad:b") is None  # torch returns None for it too


@pytest.mark.parametrize("mode", ["sync", "aio"])
def test_errors_reach_the_client_with_status_and_message(server_url, mode):
    graph = {"inputs": [{"name": "a", "requires_grad": True}, {"name": "b", "requires_grad": True}],
             "source": "y = sum(a * 3)"}
    arrays = {"a": np.ones(2, np.float32), "b": np.ones(2, np.float32)}
    with pytest.raises(InferenceServerException) as e:  # torch's allow_unused error
        _infer(server_url, mode, _inputs(graph, arrays, True), _outputs(["grad:a", "grad:b"], True),
               parameters={"outputs": "y"})
    assert e.value.status() == "422"
    assert "appears to not have been used in the graph" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        _infer(server_url, mode, _inputs(graph, arrays, False)[1:], None, parameters={"outputs": "y"})
    assert e.value.status() == "422" and "'graph'" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        _infer(server_url, mode, _inputs(graph, arrays, False), None, parameters={"create_grpah": True})
    assert e.value.status() == "422" and "create_grpah" in e.value.message()


def test_unknown_model_is_404(server_url):
    c = httpclient.InferenceServerClient(_host(server_url))
    try:
        with pytest.raises(InferenceServerException) as e:
            c.infer("resnet50", [_graph_input({"inputs": [], "source": "y = 1"}, False)])
        assert e.value.status() == "404" and "unknown model 'resnet50'" in e.value.message()
        with pytest.raises(InferenceServerException) as e:
            c.get_model_metadata(MODEL, model_version="7")
        assert e.value.status() == "404"
    finally:
        c.close()


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
@pytest.mark.parametrize("mode", ["sync", "aio"])
def test_compressed_requests(server_url, algorithm, mode):
    x = np.random.default_rng(2).random(100).astype(np.float32)
    arrays = {"w": np.array([0.5], np.float32), "b": np.array([0.9], np.float32), "x": x}
    res = _infer(server_url, mode, _inputs(SEED_GRAPH, arrays, True), _outputs(["grad:w", "grad:b"], True),
                 parameters={"outputs": "loss"}, request_compression_algorithm=algorithm)
    gw, gb, _ = seed_torch(x)
    np.testing.assert_allclose(res.as_numpy("grad:w"), gw, rtol=1e-6)
    np.testing.assert_allclose(res.as_numpy("grad:b"), gb, rtol=1e-6)
