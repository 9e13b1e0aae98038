"""Tensor transports: JSON data, b64 and the Triton binary body, in both directions."""

from __future__ import annotations

import base64
import struct

import numpy as np
import pytest

from .helpers import binary_body, read_tensor, seed_request, seed_torch, split_binary_response, wire_tensor


def test_b64_request_and_b64_response(client, x100):
    req = seed_request(x100, encoding="b64", response_encoding="b64", **{"return": ["loss", "x"]})
    r = client.post("/v1/grad", json=req)
    assert r.status_code == 200, r.text
    out = r.json()
    gw, gb, loss = seed_torch(x100)
    for g in out["grads"]:
        assert set(g) == {"name", "datatype", "shape", "b64"}
    np.testing.assert_allclose(read_tensor(out["grads"][0]), gw, rtol=1e-6)
    np.testing.assert_allclose(read_tensor(out["grads"][1]), gb, rtol=1e-6)
    np.testing.assert_allclose(read_tensor(out["values"]["loss"]), loss, rtol=1e-6)
    # b64 is exact: the input comes back bit for bit
    assert base64.b64decode(out["values"]["x"]["b64"]) == x100.tobytes()


def test_b64_is_little_endian_row_major():
    # an explicit byte layout: [[1, 2], [3, 4]] as little-endian float64, row-major
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    raw = struct.pack("<4d", 1.0, 2.0, 3.0, 4.0)
    t = wire_tensor("a", a, encoding="b64")
    assert base64.b64decode(t["b64"]) == raw  # the helper itself is right
    from service.core import evaluate
    out = evaluate({"graph": {"inputs": [t], "source": "b = a * 1.0"}, "return": ["b"],
                    "response_encoding": "b64"})
    assert base64.b64decode(out["values"]["b"]["b64"]) == raw


@pytest.mark.parametrize("accept_binary", [True, False])
def test_binary_request(client, x100, accept_binary):
    req = seed_request(x100, encoding="binary", **{"return": ["loss"]})
    arrays = [np.array([0.5], np.float32), np.array([0.9], np.float32), x100]
    body, headers = binary_body(req, arrays)
    if accept_binary:
        headers["accept"] = "application/octet-stream"
    r = client.post("/v1/grad", content=body, headers=headers)
    assert r.status_code == 200, r.text
    gw, gb, loss = seed_torch(x100)
    if accept_binary:
        assert r.headers["content-type"] == "application/octet-stream"
        header, blobs = split_binary_response(r.content, int(r.headers["inference-header-content-length"]))
        grads = [read_tensor(t, blobs[i]) for i, t in enumerate(header["grads"])]
        loss_got = read_tensor(header["values"]["loss"], blobs[2])
    else:
        out = r.json()
        grads = [read_tensor(t) for t in out["grads"]]
        loss_got = read_tensor(out["values"]["loss"])
    np.testing.assert_allclose(grads[0], gw, rtol=1e-6)
    np.testing.assert_allclose(grads[1], gb, rtol=1e-6)
    np.testing.assert_allclose(loss_got, loss, rtol=1e-6)


def test_json_request_with_binary_response_and_large_tensor(client):
    x = np.random.default_rng(5).normal(size=(256, 1024)).astype(np.float32)  # 1 MiB
    req = {"graph": {"inputs": [wire_tensor("x", x, encoding="b64", requires_grad=True)],
                     "source": "l = sum(x * x)"}, "outputs": ["l"], "inputs": ["x"]}
    r = client.post("/v1/grad", json=req, headers={"accept": "application/octet-stream"})
    assert r.status_code == 200, r.text
    header, blobs = split_binary_response(r.content, int(r.headers["inference-header-content-length"]))
    assert header["grads"][0]["parameters"]["binary_data_size"] == x.nbytes
    np.testing.assert_array_equal(read_tensor(header["grads"][0], blobs[0]), 2 * x)


def test_mixed_transports_and_binary_grad_outputs(client):
    a = np.array([1.0, 2.0, 3.0])
    go = np.array([0.5, -1.0, 2.0])
    req = {"graph": {"inputs": [wire_tensor("a", a, encoding="binary", requires_grad=True),
                                wire_tensor("c", np.array([2.0, 2.0, 2.0]), encoding="b64")],
                     "source": "y = a * a * c"},
           "outputs": ["y"], "inputs": ["a"], "grad_outputs": [wire_tensor("go", go, encoding="binary")]}
    body, headers = binary_body(req, [a, go])
    r = client.post("/v1/grad", content=body, headers=headers)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(read_tensor(r.json()["grads"][0]), 4 * a * go)


def test_bool_and_int_binary_inputs(client):
    m = np.array([True, False, True])
    i = np.array([2, 0], np.int64)
    a = np.array([1.0, 2.0, 3.0], np.float32)
    req = {"graph": {"inputs": [wire_tensor("m", m, encoding="binary"),
                                wire_tensor("i", i, encoding="binary"),
                                wire_tensor("a", a, encoding="binary", requires_grad=True)],
                     "source": "w = where(m, a, 0.0)\nl = sum(index_select(w, 0, i) * 3.0)\n"},
           "outputs": "l", "inputs": "a"}
    body, headers = binary_body(req, [m, i, a])
    r = client.post("/v1/grad", content=body, headers=headers)
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(read_tensor(r.json()["grads"][0]), np.array([3.0, 0.0, 3.0], np.float32))
