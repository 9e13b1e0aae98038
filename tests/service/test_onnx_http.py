"""POST /v1/grad with "graph": {"onnx": ...}: a torch-exported CNN and MLP over JSON, base64 and
binary bodies, by-hash reuse, model values named at the top level, nodes after the model, and
refusals (unsupported operators, malformed protobufs, sizes) as 4xx problems. Gradients are
compared with torch on the original module."""

from __future__ import annotations

import base64
import hashlib

import numpy as np
import orjson
import pytest
import torch
from onnx import TensorProto, helper

from tests.engine import onnx_models as om

from .helpers import binary_body, read_tensor, split_binary_response, wire_tensor


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def model_hash(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def torch_grads(name: str, wrt: list[str]) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """d/dx and d/d(named parameters) of sum(y * y) on the torch module, and y."""
    tm, x = om.make(name)
    xt = x.clone().requires_grad_()
    y = tm(xt)
    named = dict(tm.named_parameters())
    gs = torch.autograd.grad((y * y).sum(), [xt, *(named[k] for k in wrt)])
    return gs[0].numpy(), [g.numpy() for g in gs[1:]], y.detach().numpy()


def cnn_request(model: dict, x_encoding: str = "data", **top) -> dict:
    _, x = om.make("cnn")
    return {"graph": {"onnx": model,
                      "inputs": [wire_tensor("x", x.numpy(), requires_grad=True, encoding=x_encoding)],
                      "nodes": [{"op": "mul", "inputs": ["y", "y"], "outputs": ["yy"]},
                                {"op": "sum", "inputs": ["yy"], "outputs": ["loss"]}]},
            "outputs": "loss", "inputs": ["x", "conv.weight", "fc.bias"], **top}


def check_cnn(out: dict, blobs: list[bytes] | None = None) -> None:
    gx, (gw, gb), _ = torch_grads("cnn", ["conv.weight", "fc.bias"])
    got = [read_tensor(g, blobs[i] if blobs else None) for i, g in enumerate(out["grads"])]
    for a, b in zip(got, [gx, gw, gb]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max())


def test_json_body_with_the_model_in_base64(client):
    data = om.exported("cnn")
    r = client.post("/v1/grad", json=cnn_request({"b64": b64(data)}))
    assert r.status_code == 200, r.text
    check_cnn(r.json())
    assert r.headers["gradserve-graph-hash"] == model_hash(data)


def test_base64_tensors_and_response(client):
    data = om.exported("cnn")
    r = client.post("/v1/grad", json=cnn_request({"b64": b64(data)}, "b64", response_encoding="b64"))
    assert r.status_code == 200, r.text
    assert "b64" in r.json()["grads"][0]
    check_cnn(r.json())


def test_binary_body_carries_the_model_first(client):
    data = om.exported("cnn")
    _, x = om.make("cnn")
    header = cnn_request({"parameters": {"binary_data_size": len(data)}}, "binary")
    body, headers = binary_body(header, [np.frombuffer(data, np.uint8), x.numpy()])
    headers["accept"] = "application/octet-stream"
    r = client.post("/v1/grad", content=body, headers=headers)
    assert r.status_code == 200, r.text
    out, blobs = split_binary_response(r.content, int(r.headers["inference-header-content-length"]))
    check_cnn(out, blobs)


def test_the_model_is_reused_by_hash(client):
    data = om.exported("cnn")
    h = model_hash(data)
    first = client.post("/v1/grad", json=cnn_request({"b64": b64(data), "hash": h}))
    assert first.status_code == 200, first.text
    again = client.post("/v1/grad", json=cnn_request({"hash": h}))
    assert again.status_code == 200, again.text
    check_cnn(again.json())
    # the whole graph by hash: the model's inputs, and top-level names only
    _, x = om.make("cnn")
    gx, _, y = torch_grads("cnn", [])
    req = {"graph": {"hash": h, "inputs": [wire_tensor("x", x.numpy(), requires_grad=True)]},
           "outputs": "y", "inputs": "x", "grad_outputs": [wire_tensor("gy", 2 * y)], "return": ["y"]}
    r = client.post("/v1/grad", json=req)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(read_tensor(r.json()["grads"][0]), gx, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(read_tensor(r.json()["values"]["y"]), y, rtol=1e-5, atol=1e-6)


def test_an_unknown_hash_is_409_and_a_wrong_one_422(make_client):
    c = make_client()
    data = om.exported("mlp")
    r = c.post("/v1/grad", json=cnn_request({"hash": model_hash(data)}))
    assert r.status_code == 409 and r.json()["type"].endswith("plan-not-cached"), r.text
    r = c.post("/v1/grad", json=cnn_request({"b64": b64(data), "hash": "sha256:" + "0" * 64}))
    assert r.status_code == 422 and "hash to" in r.json()["detail"], r.text


def test_intermediate_values_and_parameters_by_name(client):
    """Top-level outputs name any model value; inputs name the initializers; return sends them."""
    data = om.exported("mlp")
    tm, x = om.make("mlp")
    import engine.onnx as eo
    m = eo.load(data)
    hidden = next(n for n in m.value_names if "tanh" in n.lower())
    req = {"graph": {"onnx": {"b64": b64(data)}, "inputs": [wire_tensor("x", x.numpy())]},
           "outputs": [hidden], "inputs": ["fc1.weight", "fc1.bias"], "return": [hidden, "fc2.bias"],
           "grad_outputs": [wire_tensor("ones", np.ones((4, 8), np.float32))]}
    r = client.post("/v1/grad", json=req)
    assert r.status_code == 200, r.text
    out = r.json()
    h = torch.tanh(tm.fc1(x))
    gw, gb = torch.autograd.grad(h.sum(), [tm.fc1.weight, tm.fc1.bias])
    np.testing.assert_allclose(read_tensor(out["grads"][0]), gw.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(read_tensor(out["grads"][1]), gb.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(read_tensor(out["values"][hidden]), h.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(read_tensor(out["values"]["fc2.bias"]), tm.fc2.bias.detach().numpy())


def test_second_order_over_http(client):
    """A grad node with create_graph after the model, then the final gradient: d/dx |dL/dx|^2."""
    data = om.exported("mlp")
    tm, x = om.make("mlp")
    req = {"graph": {"onnx": {"b64": b64(data)}, "inputs": [wire_tensor("x", x.numpy(), requires_grad=True)],
                     "source": None, "nodes": [
                         {"op": "mul", "inputs": ["y", "y"], "outputs": ["yy"]},
                         {"op": "sum", "inputs": ["yy"], "outputs": ["l"]},
                         {"op": "grad", "attributes": {"outputs": "l", "inputs": "x", "create_graph": True},
                          "outputs": ["gx"]},
                         {"op": "mul", "inputs": ["gx", "gx"], "outputs": ["gg"]},
                         {"op": "sum", "inputs": ["gg"], "outputs": ["n"]}]},
           "outputs": "n", "inputs": ["x", "fc2.weight"]}
    del req["graph"]["source"]
    r = client.post("/v1/grad", json=req)
    assert r.status_code == 200, r.text
    xt = x.clone().requires_grad_()
    (gx,) = torch.autograd.grad((tm(xt) ** 2).sum(), [xt], create_graph=True)
    hx, hw = torch.autograd.grad((gx * gx).sum(), [xt, tm.fc2.weight])
    np.testing.assert_allclose(read_tensor(r.json()["grads"][0]), hx.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(read_tensor(r.json()["grads"][1]), hw.numpy(), rtol=1e-4, atol=1e-6)


def _one_node(op: str, **attrs) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    g = helper.make_graph([helper.make_node(op, ["x"], ["y"], name="the_node", **attrs)], "g", [x], [y])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9).SerializeToString()


def _x_request(data: bytes) -> dict:
    return {"graph": {"onnx": {"b64": b64(data)}, "inputs": [wire_tensor("x", np.ones(2, np.float32))]},
            "return": ["y"]}


def test_unsupported_operator_is_422_naming_node_and_operator(client):
    r = client.post("/v1/grad", json=_x_request(_one_node("Hardmax")))
    assert r.status_code == 422, r.text
    p = r.json()
    assert r.headers["content-type"] == "application/problem+json"
    assert "node 'the_node' (Hardmax): operator not supported" in p["detail"]
    assert p["errors"][0]["node"] == "the_node" and p["errors"][0]["op_type"] == "Hardmax"


@pytest.mark.parametrize("data", [b"\x08\x07garbage\xff\xff", b"", b"\x00" * 50])
def test_malformed_protobuf_is_4xx(client, data):
    r = client.post("/v1/grad", json=_x_request(data))
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"] == "application/problem+json"


def test_bad_base64_and_sizes_are_4xx(make_client):
    c = make_client(max_onnx_bytes=100)
    req = _x_request(b"")
    req["graph"]["onnx"] = {"b64": "!!notbase64"}
    assert c.post("/v1/grad", json=req).status_code == 400
    r = c.post("/v1/grad", json=_x_request(om.exported("mlp")))
    assert r.status_code == 413 and r.json()["limit"] == "max_onnx_bytes", r.text
    body, headers = binary_body({**_x_request(b""), "graph": {
        "onnx": {"parameters": {"binary_data_size": 10}},
        "inputs": [wire_tensor("x", np.ones(2, np.float32))]}}, [np.zeros(3, np.uint8)])
    assert c.post("/v1/grad", content=body, headers=headers).status_code == 400


def test_limits_apply_to_the_model(make_client):
    data = om.exported("cnn")
    r = make_client(max_nodes=3).post("/v1/grad", json=cnn_request({"b64": b64(data)}))
    assert r.status_code == 413 and r.json()["limit"] == "max_nodes", r.text
    # a binary body: its JSON header stays under max_json_body_bytes (max_memory_bytes / 40 at most)
    _, x = om.make("cnn")
    header = cnn_request({"parameters": {"binary_data_size": len(data)}}, "binary")
    body, headers = binary_body(header, [np.frombuffer(data, np.uint8), x.numpy()])
    r = make_client(max_memory_bytes=10_000).post("/v1/grad", content=body, headers=headers)
    assert r.status_code == 413 and r.json()["limit"] == "max_memory_bytes", r.text


def test_wrong_input_shape_and_missing_input_are_422(client):
    data = om.exported("mlp")
    req = {"graph": {"onnx": {"b64": b64(data)}, "inputs": [wire_tensor("x", np.ones((4, 5), np.float32))]},
           "return": ["y"]}
    r = client.post("/v1/grad", json=req)
    assert r.status_code == 422 and "input 'x' has shape [4, 5]" in r.json()["detail"], r.text
    req["graph"]["inputs"] = []
    r = client.post("/v1/grad", json=req)
    assert r.status_code == 422 and "missing model input" in r.json()["detail"], r.text


def test_a_node_may_not_redefine_a_model_value(client):
    data = om.exported("mlp")
    _, x = om.make("mlp")
    req = {"graph": {"onnx": {"b64": b64(data)}, "inputs": [wire_tensor("x", x.numpy())],
                     "nodes": [{"op": "neg", "inputs": ["y"], "outputs": ["fc1.bias"]}]}, "return": ["y"]}
    r = client.post("/v1/grad", json=req)
    assert r.status_code == 422 and "duplicate name 'fc1.bias'" in r.json()["detail"], r.text


def test_graph_with_onnx_and_source_is_refused(client):
    req = _x_request(b"x")
    req["graph"]["source"] = "z = x"
    r = client.post("/v1/grad", json=req)
    assert r.status_code == 422, r.text


def test_json_body_is_parsed_once_for_a_big_model(client):
    """A model of more than 1 MiB of base64 is decoded where it lies in the body (excision)."""
    w = np.random.default_rng(0).standard_normal((600, 600)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 600])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 600])
    from onnx import numpy_helper
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y],
                          initializer=[numpy_helper.from_array(w, "w")])
    data = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9).SerializeToString()
    assert len(data) > 1 << 20
    req = {"graph": {"onnx": {"b64": b64(data)}, "inputs": [wire_tensor("x", np.ones((1, 600), np.float32))]},
           "outputs": "y", "inputs": "w", "grad_outputs": [wire_tensor("g", np.ones((1, 600), np.float32))]}
    r = client.post("/v1/grad", content=orjson.dumps(req), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(read_tensor(r.json()["grads"][0]), np.ones((600, 600), np.float32))


def test_folded_constants_count_against_the_element_limit(make_client):
    """A model whose constants would be huge (ConstantOfShape, Expand of a constant) is 413,
    found while lowering it, before anything is allocated."""
    from onnx import numpy_helper
    shape = numpy_helper.from_array(np.array([1000, 1000, 1000], np.int64), "shape")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1000, 1000, 1000])
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"], name="zeros",
                              value=numpy_helper.from_array(np.array([1.0], np.float32))),
             helper.make_node("Add", ["big", "x"], ["y"], name="add")]
    g = helper.make_graph(nodes, "g", [x], [y], initializer=[shape])
    data = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9).SerializeToString()
    r = make_client(max_tensor_elements=1000).post("/v1/grad", json=_x_request(data))
    assert r.status_code == 413 and r.json()["limit"] == "max_tensor_elements", r.text
    assert r.json()["errors"][0]["node"] == "zeros"
    one = numpy_helper.from_array(np.ones(1, np.float32), "one")
    nodes = [helper.make_node("Expand", ["one", "shape"], ["big"], name="expand"),
             helper.make_node("Add", ["big", "x"], ["y"], name="add")]
    g = helper.make_graph(nodes, "g", [x], [y], initializer=[shape, one])
    data = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9).SerializeToString()
    r = make_client(max_tensor_elements=1000).post("/v1/grad", json=_x_request(data))
    assert r.status_code == 413 and r.json()["limit"] == "max_tensor_elements", r.text


def test_corrupted_models_never_get_a_500(client):
    """Flipped bytes and truncations of a real model: each answer is 200 or a 4xx problem."""
    data = bytearray(om.exported("mlp"))
    _, x = om.make("mlp")
    rng = np.random.default_rng(0)
    for k in range(30):
        bad = bytearray(data)
        if k % 3 == 0:
            bad = bad[: int(rng.integers(1, len(bad)))]
        else:
            for i in rng.integers(0, len(bad), 1 + k % 4):
                bad[i] = int(rng.integers(0, 256))
        req = {"graph": {"onnx": {"b64": b64(bytes(bad))}, "inputs": [wire_tensor("x", x.numpy())]},
               "return": ["y"]}
        r = client.post("/v1/grad", json=req)
        assert r.status_code == 200 or 400 <= r.status_code < 500, (k, r.status_code, r.text[:300])


def test_functional_nodes_run_through_the_model(client):
    """A hessian node after the model re-runs the model's steps at fresh inputs, as torch's
    functional API calls the function."""
    data = om.exported("mlp")
    tm, x = om.make("mlp")
    req = {"graph": {"onnx": {"b64": b64(data)}, "inputs": [wire_tensor("x", x.numpy(), requires_grad=True)],
                     "nodes": [{"op": "sum", "inputs": ["y"], "outputs": ["s"]},
                               {"op": "hessian", "attributes": {"outputs": "s", "inputs": "x"},
                                "outputs": ["H"]}]},
           "return": ["H"]}
    r = client.post("/v1/grad", json=req)
    assert r.status_code == 200, r.text
    want = torch.autograd.functional.hessian(lambda z: tm(z).sum(), x).numpy()
    np.testing.assert_allclose(read_tensor(r.json()["values"]["H"]), want, rtol=1e-4, atol=1e-6)


def test_cached_models_are_bounded_in_bytes(make_client):
    """Two models over the byte budget: loading the second drops the first (409 by hash after),
    whatever room the plan cache has in entries."""
    mlp, cnn = om.exported("mlp"), om.exported("cnn")
    c = make_client(max_onnx_cache_bytes=len(mlp) + len(cnn) - 1, plan_cache_size=100)
    _, x = om.make("mlp")
    first = {"graph": {"onnx": {"b64": b64(mlp)}, "inputs": [wire_tensor("x", x.numpy())]}, "return": ["y"]}
    assert c.post("/v1/grad", json=first).status_code == 200
    by_hash = {**first, "graph": {**first["graph"], "onnx": {"hash": model_hash(mlp)}}}
    assert c.post("/v1/grad", json=by_hash).status_code == 200
    assert c.post("/v1/grad", json=cnn_request({"b64": b64(cnn)})).status_code == 200
    r = c.post("/v1/grad", json=by_hash)
    assert r.status_code == 409, r.text
    assert c.post("/v1/grad", json=cnn_request({"hash": model_hash(cnn)})).status_code == 200
