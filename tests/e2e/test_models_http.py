"""The reference models of ``tests/models.py`` end to end against a real server (``server_url``).

A small CNN (conv2d -> batch_norm -> relu -> max_pool2d -> ... -> linear -> cross_entropy) and a
pre-norm transformer block (layer_norm -> causal attention -> MLP with gelu, mse loss) are run
- through the client (sync and async; JSON, b64 and binary transports), and
- as raw wire-format v1 requests (nodes form, taken from the client's ``to_json``) posted with
  httpx, as JSON and as a binary body, decoded here without the client's parsing code.

torch, run in this test on the same float32 arrays, is the oracle: the loss and every parameter's
gradient must match it to float32 tolerance. A Hessian-vector product of the CNN loss through
``create_graph`` (one request with a ``grad`` node) must match torch's too.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from client import AsyncClient, Client
from tests import models as M

F32 = {"rtol": 2e-4, "atol": 2e-6}  # atol is scaled by the gradient's largest magnitude
MODELS: dict[str, tuple[Callable, Callable]] = {
    "cnn": (M.cnn_loss, M.cnn_setup),
    "transformer": (M.transformer_loss, M.transformer_setup),
}
# The ops each model must put on the wire: a graph missing one would not test what it claims.
MODEL_OPS = {
    "cnn": {"nn.functional.conv2d", "nn.functional.batch_norm", "nn.functional.relu",
            "nn.functional.max_pool2d", "nn.functional.linear", "nn.functional.cross_entropy"},
    "transformer": {"nn.functional.layer_norm", "nn.functional.linear",
                    "nn.functional.scaled_dot_product_attention", "nn.functional.gelu",
                    "nn.functional.mse_loss"},
}
_DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64}
BINARY = "application/octet-stream"
HEADER_LENGTH = "Inference-Header-Content-Length"


# ---------------------------------------------------------------- the torch oracle
@functools.cache
def torch_reference(model: str, dtype: type = np.float32) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """torch's loss and parameter gradients on the model's seeded arrays (cached: read only)."""
    loss_fn, setup = MODELS[model]
    p, batch = setup(dtype)
    params = M.to_lib(torch, p, requires_grad=True)
    with sdpa_kernel(SDPBackend.MATH):  # torch's reference attention kernel
        loss = loss_fn(torch, params, *M.to_lib(torch, batch))
        grads = torch.autograd.grad(loss, list(params.values()))
    return loss.detach().numpy(), {k: g.numpy() for k, g in zip(params, grads, strict=True)}


def assert_matches_torch(model: str, loss: np.ndarray, grads: dict[str, np.ndarray | None]) -> None:
    t_loss, t_grads = torch_reference(model)
    params = MODELS[model][1](np.float32)[0]
    np.testing.assert_allclose(np.asarray(loss), t_loss, **F32, err_msg=f"{model} loss")
    assert list(grads) == list(t_grads), "one gradient per parameter, in order"
    for name, want in t_grads.items():
        got = grads[name]
        assert got is not None, name
        assert got.dtype == want.dtype == params[name].dtype == np.float32, name
        assert got.shape == want.shape, name
        scale = float(np.abs(want).max())
        assert scale > 1e-6, f"{name}: torch's gradient is ~0: the comparison would be vacuous"
        np.testing.assert_allclose(got, want, rtol=F32["rtol"], atol=F32["atol"] * max(scale, 1.0),
                                   err_msg=f"{model}: d loss / d {name}")


# ---------------------------------------------------------------- through the client
def _record(c: Client | AsyncClient, model: str, dtype: type = np.float32) -> tuple[dict, Any]:
    loss_fn, setup = MODELS[model]
    p, batch = setup(dtype)
    params = M.to_lib(c, p, requires_grad=True)
    return params, loss_fn(c, params, *M.to_lib(c, batch))


@pytest.mark.parametrize("encoding", ["json", "b64", "binary"])
@pytest.mark.parametrize("model", list(MODELS))
def test_model_gradients_via_client(server_url: str, model: str, encoding: str) -> None:
    seen: list[tuple[str, str]] = []
    with Client(server_url, tensor_encoding=encoding, response_encoding=encoding) as c:
        c._http.event_hooks["response"].append(  # type: ignore[union-attr]
            lambda r: seen.append((r.request.headers["content-type"], r.headers["content-type"])))
        params, loss = _record(c, model)
        grads, (loss_v,) = c.autograd_grad(loss, list(params.values()), return_values=[loss])
    # one round trip, over the transport asked for, both ways
    want = BINARY if encoding == "binary" else "application/json"
    assert len(seen) == 1 and seen[0][0] == want and seen[0][1].startswith(want), seen
    assert_matches_torch(model, loss_v, dict(zip(params, grads, strict=True)))


@pytest.mark.parametrize("model", list(MODELS))
def test_model_gradients_via_async_client(server_url: str, model: str) -> None:
    async def run() -> tuple[dict, tuple, tuple]:
        async with AsyncClient(server_url) as c:
            params, loss = _record(c, model)
            grads, values = await c.autograd_grad(loss, list(params.values()), return_values=[loss])
            return params, grads, values

    params, grads, (loss_v,) = asyncio.run(run())
    assert_matches_torch(model, loss_v, dict(zip(params, grads, strict=True)))


# ---------------------------------------------------------------- raw wire requests
def wire_request(model: str) -> tuple[dict[str, Any], list[str]]:
    """The model's v1 request in nodes form (JSON ``data`` tensors), and the parameter names in
    the order of its ``inputs``. Recorded by an embedded client; nothing is sent."""
    c = Client()
    params, loss = _record(c, model)
    body = json.loads(c.to_json(loss, list(params.values()), return_values=[loss], indent=None))
    graph = body["graph"]
    assert "source" not in graph and MODEL_OPS[model] <= {n["op"] for n in graph["nodes"]}
    assert all("data" in t for t in graph["inputs"])
    assert body["inputs"] == [params[k].name for k in params] and body["return"] == body["outputs"]
    return body, list(params)


def _decode(obj: dict[str, Any], blob: bytes | None = None) -> np.ndarray:
    dt = np.dtype(_DTYPES[obj["datatype"]])
    if blob is not None:
        arr = np.frombuffer(blob, dtype=dt.newbyteorder("<")).astype(dt)
    else:
        arr = np.asarray(obj["data"], dtype=dt)
    return arr.reshape(obj["shape"])


def _check_response(model: str, body: dict[str, Any], names: list[str], decode: Callable) -> None:
    assert set(body) == {"grads", "values"}, body.keys()
    assert len(body["grads"]) == len(names)
    assert all(g["datatype"] == "FP32" for g in body["grads"])
    grads = {n: decode(g) for n, g in zip(names, body["grads"], strict=True)}
    (loss,) = (decode(v) for v in body["values"].values())
    assert_matches_torch(model, loss, grads)


@pytest.mark.parametrize("model", list(MODELS))
def test_model_gradients_raw_json_request(server_url: str, model: str) -> None:
    body, names = wire_request(model)
    r = httpx.post(f"{server_url}/v1/grad", content=json.dumps(body),
                   headers={"Content-Type": "application/json"}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    _check_response(model, r.json(), names, _decode)


@pytest.mark.parametrize("model", list(MODELS))
def test_model_gradients_raw_binary_request(server_url: str, model: str) -> None:
    # Triton's binary tensor extension, both ways: JSON header, then each tensor's raw bytes
    body, names = wire_request(model)
    blobs = []
    for t in body["graph"]["inputs"]:
        arr = _decode(t)
        blobs.append(arr.astype(arr.dtype.newbyteorder("<")).tobytes())
        del t["data"]
        t["parameters"] = {"binary_data_size": len(blobs[-1])}
    header = json.dumps(body).encode()
    r = httpx.post(f"{server_url}/v1/grad", content=header + b"".join(blobs), timeout=60,
                   headers={"Content-Type": BINARY, HEADER_LENGTH: str(len(header)), "Accept": BINARY})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == BINARY
    n = int(r.headers[HEADER_LENGTH])
    head = json.loads(r.content[:n])
    rest, pos = r.content[n:], 0
    chunks: dict[int, bytes] = {}
    for obj in [*head["grads"], *head["values"].values()]:  # the order of the binary chunks
        assert "data" not in obj and "b64" not in obj
        size = obj["parameters"]["binary_data_size"]
        chunks[id(obj)] = rest[pos:pos + size]
        pos += size
    assert pos == len(rest), "the body holds exactly the bytes its header announces"
    _check_response(model, head, names, lambda obj: _decode(obj, chunks[id(obj)]))


# ---------------------------------------------------------------- second order
def test_cnn_hessian_vector_product_over_http(server_url: str) -> None:
    # float64: the HVP goes through batch_norm's and max_pool's second derivatives, which float32
    # rounding would blur; the comparison is tight instead.
    setup = M.cnn_setup(np.float64, batch=4)
    rng = np.random.default_rng(5)
    v = {k: rng.standard_normal(a.shape) for k, a in setup[0].items()}

    def hvp(lib: Any, grad: Callable, **kw: Any) -> dict[str, np.ndarray]:
        params = M.to_lib(lib, setup[0], requires_grad=True)
        loss = M.cnn_loss(lib, params, *M.to_lib(lib, setup[1]))
        g = grad(loss, list(params.values()), create_graph=True)
        dot = sum((gk * lib.tensor(v[k])).sum() for k, gk in zip(params, g, strict=True))
        return dict(zip(params, grad(dot, list(params.values()), **kw), strict=True))

    with Client(server_url) as c:
        got = hvp(c, c.autograd_grad, return_values=None)
    want = {k: t.numpy() for k, t in hvp(torch, torch.autograd.grad).items()}
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == np.float64, name
        assert np.abs(want[name]).max() > 1e-6, name
        np.testing.assert_allclose(got[name], want[name], rtol=1e-8, atol=1e-11,
                                   err_msg=f"HVP block {name}")


# ---------------------------------------------------------------- the catalogue
def test_server_lists_the_ops_the_models_use(server_url: str) -> None:
    r = httpx.get(f"{server_url}/v1/ops", timeout=30)
    assert r.status_code == 200
    ops = {o["name"]: o for o in r.json()["ops"]}
    assert len({o["canonical"] for o in ops.values()}) >= 200
    for model in MODELS:
        used = {n["op"] for n in wire_request(model)[0]["graph"]["nodes"]}
        assert used <= set(ops), used - set(ops)
        assert all(ops[name]["differentiable"] for name in MODEL_OPS[model]), model
