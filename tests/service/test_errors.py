"""Every error status: the status code and the problem+json body (type, title, detail, loc)."""

from __future__ import annotations

import copy

import numpy as np
import orjson
import pytest
import torch

from .helpers import binary_body, read_tensor, seed_request, seed_torch, wire_tensor

PROBLEM_KEYS = {"type", "title", "status", "detail", "errors"}


def problem(r, status: int, type_suffix: str | None = None) -> dict:
    """Check a problem+json response and return its body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert PROBLEM_KEYS <= set(body), body
    assert body["status"] == status and body["title"] and body["detail"]
    if type_suffix is not None:
        assert body["type"] == f"urn:gradserve:problem:{type_suffix}", body["type"]
    for e in body["errors"]:
        assert isinstance(e["loc"], list) and e["msg"]
    return body


def locs(body: dict) -> list[list]:
    return [e["loc"] for e in body["errors"]]


def assert_still_serving(client, x):
    """After bad requests the app answers a good one correctly."""
    r = client.post("/v1/grad", json=seed_request(x))
    assert r.status_code == 200, r.text
    gw, gb, _ = seed_torch(x)
    np.testing.assert_allclose(read_tensor(r.json()["grads"][0]), gw, rtol=1e-6)
    np.testing.assert_allclose(read_tensor(r.json()["grads"][1]), gb, rtol=1e-6)


def torch_error(fn) -> tuple[str, str]:
    try:
        fn()
    except Exception as e:  # the oracle's exception type and message
        return type(e).__name__, str(e)
    raise AssertionError("torch raised nothing")


def with_nodes(req: dict, nodes: list, **top) -> dict:
    req = copy.deepcopy(req)
    req["graph"]["nodes"] = nodes
    req.update(top)
    return req


# ---------------------------------------------------------------- 400
@pytest.mark.parametrize("body", [b"{bad json", b"", b'{"graph": ', b"[1, 2]", b"\xff\xfe", b"NaN",
                                  b"[" * 5000 + b"]" * 5000])
def test_400_malformed_json(client, x100, body):
    r = client.post("/v1/grad", content=body, headers={"content-type": "application/json"})
    b = problem(r, 400, "malformed-request")
    assert locs(b) == [["body"]]
    assert_still_serving(client, x100)


def test_400_binary_body_layout(client, x100):
    req = seed_request(x100, encoding="binary")
    arrays = [np.array([0.5], np.float32), np.array([0.9], np.float32), x100]
    body, headers = binary_body(req, arrays)
    # missing header length
    r = client.post("/v1/grad", content=body, headers={"content-type": "application/octet-stream"})
    assert locs(problem(r, 400))[0] == ["headers", "Inference-Header-Content-Length"]
    # header length beyond the body, or not a number
    for bad in (str(len(body) + 1), "-3", "abc"):
        r = client.post("/v1/grad", content=body, headers={**headers, "inference-header-content-length": bad})
        problem(r, 400)
    # blobs shorter / longer than the header says
    for cut in (body[:-4], body + b"\0\0\0\0"):
        r = client.post("/v1/grad", content=cut, headers=headers)
        b = problem(r, 400)
        assert "binary" in b["detail"]
    # a header length that cuts the JSON
    r = client.post("/v1/grad", content=body, headers={**headers, "inference-header-content-length": "10"})
    problem(r, 400)
    assert_still_serving(client, x100)


# ---------------------------------------------------------------- 401
def test_401_api_keys(make_client, x100):
    c = make_client(api_keys=["k-one", "k-two"])
    req = seed_request(x100)
    for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": "Basic k-one"},
                    {"authorization": "Bearer "}, {"authorization": "k-one"}):
        r = c.post("/v1/grad", json=req, headers=headers)
        b = problem(r, 401, "unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "k-one" not in r.text and "k-two" not in r.text
        assert locs(b) == [["headers", "Authorization"]]
    problem(c.get("/v1/ops"), 401)
    assert c.get("/health/live").status_code == 200
    assert c.get("/health/ready").status_code == 200
    for key in ("k-one", "k-two"):
        r = c.post("/v1/grad", json=req, headers={"authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
    assert c.get("/v1/ops", headers={"authorization": "Bearer k-two"}).status_code == 200


def test_api_keys_from_environment(monkeypatch):
    from service.settings import Settings
    monkeypatch.setenv("GRADSERVE_API_KEYS", "a1, b2")
    monkeypatch.setenv("GRADSERVE_MAX_NODES", "7")
    s = Settings()
    assert [k.get_secret_value() for k in s.api_keys] == ["a1", "b2"] and s.max_nodes == 7
    assert "a1" not in repr(s)
    monkeypatch.setenv("GRADSERVE_API_KEYS", '["x", "y"]')
    assert [k.get_secret_value() for k in Settings().api_keys] == ["x", "y"]


# ---------------------------------------------------------------- 413
def test_413_limits(make_client, x100):
    c = make_client(max_body_bytes=2000, max_nodes=5, max_tensor_elements=50, max_source_chars=40)
    r = c.post("/v1/grad", json=seed_request(x100))  # ~2 kB of JSON
    b = problem(r, 413, "payload-too-large")
    assert b["limit"] == "max_body_bytes" and "max_body_bytes" in b["detail"]
    small = np.arange(10, dtype=np.float32) / 10
    r = c.post("/v1/grad", json=seed_request(small))  # 7 nodes
    b = problem(r, 413)
    assert b["limit"] == "max_nodes" and locs(b) == [["graph", "nodes"]]
    req = {"graph": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [60], "b64": "AAAA"}],
                     "source": "y = x"}, "return": ["x"]}
    b = problem(c.post("/v1/grad", json=req), 413)
    assert b["limit"] == "max_tensor_elements" and locs(b) == [["graph", "inputs", 0, "shape"]]
    req = {"graph": {"inputs": [wire_tensor("x", small)], "source": "y = expand(x, 10, 10)"}, "return": ["y"]}
    b = problem(c.post("/v1/grad", json=req), 413)
    assert b["limit"] == "max_tensor_elements" and "'y'" in b["detail"]
    long_source = "y = x * 2 + 1 - x * 3 + 4 * x - x + 9 * x - x * 7"  # 50 characters
    req = {"graph": {"inputs": [wire_tensor("x", small)], "source": long_source}, "return": ["y"]}
    b = problem(c.post("/v1/grad", json=req), 413)
    assert b["limit"] == "max_source_chars" and locs(b) == [["graph", "source"]]
    assert_still_serving(make_client(), x100)


def test_413_streamed_body_without_content_length(make_client):
    c = make_client(max_body_bytes=1000)

    def chunks():
        for _ in range(10):
            yield b" " * 500

    r = c.post("/v1/grad", content=chunks(), headers={"content-type": "application/json"})
    assert problem(r, 413)["limit"] == "max_body_bytes"


# ---------------------------------------------------------------- 415
@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data"])
def test_415_content_type(client, x100, ctype):
    headers = {} if ctype is None else {"content-type": ctype}
    r = client.post("/v1/grad", content=orjson.dumps(seed_request(x100)), headers=headers)
    b = problem(r, 415, "unsupported-media-type")
    assert locs(b) == [["headers", "Content-Type"]]
    ok = client.post("/v1/grad", content=orjson.dumps(seed_request(x100)),
                     headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


# ---------------------------------------------------------------- 422: graph errors
def test_422_unknown_op(client, x100):
    nodes = copy.deepcopy(seed_request(x100)["graph"]["nodes"])
    nodes[2]["op"] = "mull"
    b = problem(client.post("/v1/grad", json=with_nodes(seed_request(x100), nodes)), 422, "invalid-graph")
    assert locs(b) == [["graph", "nodes", 2, "op"]] and b["errors"][0]["node"] == "p"
    assert "'mull'" in b["detail"] and "'mul'" in b["detail"]  # with a suggestion
    assert_still_serving(client, x100)


def test_422_bad_reference(client, x100):
    nodes = copy.deepcopy(seed_request(x100)["graph"]["nodes"])
    nodes[4]["inputs"] = ["y", "qq"]
    b = problem(client.post("/v1/grad", json=with_nodes(seed_request(x100), nodes)), 422, "invalid-graph")
    assert locs(b) == [["graph", "nodes", 4, "inputs", 1]] and b["errors"][0]["node"] == "r"
    assert "unknown name 'qq'" in b["detail"]
    # top-level references are checked too
    b = problem(client.post("/v1/grad", json=seed_request(x100, inputs=["w", "bb"])), 422)
    assert locs(b) == [["inputs", 1]]
    b = problem(client.post("/v1/grad", json=seed_request(x100, **{"return": ["nope"]})), 422)
    assert locs(b) == [["return", 0]]
    # a {"ref"} attribute
    nodes = copy.deepcopy(seed_request(x100)["graph"]["nodes"])
    nodes[6] = {"op": "mean", "inputs": [], "attributes": {"input": {"ref": "zz"}}, "outputs": ["loss"]}
    b = problem(client.post("/v1/grad", json=with_nodes(seed_request(x100), nodes)), 422)
    assert locs(b) == [["graph", "nodes", 6, "attributes", "input", "ref"]]


def test_422_duplicate_names(client, x100):
    nodes = copy.deepcopy(seed_request(x100)["graph"]["nodes"])
    nodes[3]["outputs"] = ["p"]
    b = problem(client.post("/v1/grad", json=with_nodes(seed_request(x100), nodes)), 422, "invalid-graph")
    assert locs(b) == [["graph", "nodes", 3, "outputs", 0]] and "duplicate name 'p'" in b["detail"]
    nodes = copy.deepcopy(seed_request(x100)["graph"]["nodes"])
    nodes[0]["outputs"] = ["w"]  # shadows a graph input
    b = problem(client.post("/v1/grad", json=with_nodes(seed_request(x100), nodes)), 422)
    assert locs(b) == [["graph", "nodes", 0, "outputs", 0]] and "graph input" in b["detail"]
    req = seed_request(x100)
    req["graph"]["inputs"].append(wire_tensor("b", np.zeros(1, np.float32)))
    b = problem(client.post("/v1/grad", json=req), 422)
    assert locs(b) == [["graph", "inputs", 3, "name"]]


def test_422_cycle(client, x100):
    nodes = copy.deepcopy(seed_request(x100)["graph"]["nodes"])
    nodes[1]["inputs"] = ["t", "r"]  # y needs r, r needs y
    b = problem(client.post("/v1/grad", json=with_nodes(seed_request(x100), nodes)), 422, "invalid-graph")
    assert b["detail"].startswith("cycle:") and "'y'" in b["detail"] and "'r'" in b["detail"]
    assert locs(b)[0][:2] == ["graph", "nodes"]
    nodes = copy.deepcopy(seed_request(x100)["graph"]["nodes"])
    nodes[0]["inputs"] = [2, "t"]  # its own output
    b = problem(client.post("/v1/grad", json=with_nodes(seed_request(x100), nodes)), 422)
    assert locs(b) == [["graph", "nodes", 0, "inputs", 1]] and "cycle" in b["detail"]
    assert_still_serving(client, x100)


def test_422_arity_and_attributes(client, x100):
    base = seed_request(x100)
    nodes = copy.deepcopy(base["graph"]["nodes"])
    nodes[0]["inputs"] = [2]
    b = problem(client.post("/v1/grad", json=with_nodes(base, nodes)), 422, "invalid-graph")
    assert locs(b) == [["graph", "nodes", 0, "inputs"]] and "missing a required argument" in b["detail"]
    nodes = copy.deepcopy(base["graph"]["nodes"])
    nodes[0]["inputs"] = [2, "x", 3, 4]
    b = problem(client.post("/v1/grad", json=with_nodes(base, nodes)), 422)
    assert locs(b) == [["graph", "nodes", 0, "inputs"]] and "too many positional" in b["detail"]
    nodes = copy.deepcopy(base["graph"]["nodes"])
    nodes[6]["attributes"] = {"dimm": 0}
    b = problem(client.post("/v1/grad", json=with_nodes(base, nodes)), 422)
    assert locs(b) == [["graph", "nodes", 6, "attributes", "dimm"]] and "dimm" in b["detail"]
    # a grad node needs one output name per input
    nodes = copy.deepcopy(base["graph"]["nodes"]) + [
        {"op": "grad", "attributes": {"outputs": ["loss"], "inputs": ["w", "b"]}, "outputs": ["gw"]}]
    b = problem(client.post("/v1/grad", json=with_nodes(base, nodes)), 422)
    assert locs(b) == [["graph", "nodes", 7, "outputs"]]
    # an attribute the op rejects at run time: the engine's (torch's) TypeError/IndexError
    nodes = copy.deepcopy(base["graph"]["nodes"])
    nodes[6]["attributes"] = {"dim": 5}
    b = problem(client.post("/v1/grad", json=with_nodes(base, nodes)), 422, "engine-error")
    assert locs(b) == [["graph", "nodes", 6]] and b["errors"][0]["node"] == "loss"
    exc, msg = torch_error(lambda: torch.ones(100).mean(dim=5))
    assert b["exception"] == exc and b["detail"] == msg


def test_422_shape_mismatch_carries_torch_error(client):
    a, m = np.ones((2, 3), np.float32), np.ones((2, 3), np.float32)
    req = {"graph": {"inputs": [wire_tensor("a", a, requires_grad=True), wire_tensor("m", m)],
                     "nodes": [{"op": "matmul", "inputs": ["a", "m"], "outputs": ["p"]},
                               {"op": "sum", "inputs": ["p"], "outputs": ["l"]}]},
           "outputs": "l", "inputs": "a"}
    b = problem(client.post("/v1/grad", json=req), 422, "engine-error")
    exc, msg = torch_error(lambda: torch.ones(2, 3) @ torch.ones(2, 3))
    assert b["exception"] == exc == "RuntimeError" and b["detail"] == msg
    assert locs(b) == [["graph", "nodes", 0]] and b["errors"][0]["node"] == "p"
    # broadcasting mismatch in an elementwise op names the node and both shapes
    req["graph"]["nodes"][0] = {"op": "add", "inputs": ["a", {"literal": [[1.0, 2.0]]}], "outputs": ["p"]}
    b = problem(client.post("/v1/grad", json=req), 422, "engine-error")
    assert locs(b) == [["graph", "nodes", 0]] and "3" in b["detail"] and "2" in b["detail"]
    # expression form: the node is named by line and column
    req["graph"] = {"inputs": req["graph"]["inputs"], "source": "q = a * 2\np = q @ m\nl = sum(p)"}
    b = problem(client.post("/v1/grad", json=req), 422, "engine-error")
    assert b["errors"][0]["line"] == 2 and b["errors"][0]["col"] == 5 and b["errors"][0]["node"] == "p"


# ---------------------------------------------------------------- 422: autograd errors (torch's words)
def _grad_req(src: str, **top) -> dict:
    x = np.array([1.0, 2.0, 3.0])
    req = {"graph": {"inputs": [wire_tensor("x", x, requires_grad=True), wire_tensor("c", x),
                                wire_tensor("u", x, requires_grad=True)], "source": src}}
    req.update(top)
    return req


AUTOGRAD_CASES = {
    "input does not require grad": (
        dict(outputs="l", inputs=["x", "c"]), ["inputs"],
        lambda x, c, u: torch.autograd.grad((x * x).sum(), [x, c])),
    "unused input": (
        dict(outputs="l", inputs=["x", "u"]), ["inputs", 1],
        lambda x, c, u: torch.autograd.grad((x * x).sum(), [x, u])),
    "implicit grad of a non-scalar": (
        dict(outputs="y", inputs=["x"]), ["grad_outputs"],
        lambda x, c, u: torch.autograd.grad(x * x, [x])),
    "grad_output shape mismatch": (
        dict(outputs="y", inputs=["x"], grad_outputs=[wire_tensor("g", np.ones(2))]), ["grad_outputs", 0],
        lambda x, c, u: torch.autograd.grad(x * x, [x], [torch.ones(2, dtype=torch.float64)])),
    "too few grad_outputs": (
        dict(outputs=["y", "l"], inputs=["x"], grad_outputs=["c"]), ["grad_outputs"],
        lambda x, c, u: torch.autograd.grad([x * x, (x * x).sum()], [x], [c])),
    "output without grad_fn": (
        dict(outputs=["k"], inputs=["x"]), ["outputs", 0],
        lambda x, c, u: torch.autograd.grad((c * 2).sum(), [x])),
    "empty inputs": (
        dict(outputs="l", inputs=[]), ["inputs"],
        lambda x, c, u: torch.autograd.grad((x * x).sum(), [])),
    "materialize_grads with allow_unused False": (
        dict(outputs="l", inputs=["x"], allow_unused=False, materialize_grads=True), ["inputs"],
        lambda x, c, u: torch.autograd.grad((x * x).sum(), [x], allow_unused=False, materialize_grads=True)),
}


@pytest.mark.parametrize("case", list(AUTOGRAD_CASES))
def test_422_autograd_errors_carry_torch_type_and_message(client, x100, case):
    top, loc, torch_fn = AUTOGRAD_CASES[case]
    req = _grad_req("y = x * x\nl = sum(y)\nk = sum(c * 2)\n", **top)
    b = problem(client.post("/v1/grad", json=req), 422, "autograd-error")
    t = [torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=rg) for rg in (True, False, True)]
    exc, msg = torch_error(lambda: torch_fn(*t))
    assert b["exception"] == exc
    assert b["detail"] == msg
    assert locs(b) == [loc]
    assert_still_serving(client, x100)


def test_422_autograd_error_inside_a_grad_node(client):
    src = "y = x * x\nl = sum(y)\ng, h = grad(l, [x, u])\n"
    b = problem(client.post("/v1/grad", json=_grad_req(src, **{"return": ["g"]})), 422, "autograd-error")
    exc, msg = torch_error(lambda: torch.autograd.grad(
        (torch.ones(3, requires_grad=True) ** 2).sum(), [torch.ones(1, requires_grad=True)] * 2))
    assert b["exception"] == exc == "RuntimeError"
    assert b["detail"] == msg.replace("index 0", "index 1")
    err = b["errors"][0]
    assert err["loc"] == ["graph", "source"] and err["line"] == 3 and err["node"] == "g"
    # the same in node form names the node and the attribute
    nodes = [{"op": "mul", "inputs": ["x", "x"], "outputs": ["y"]},
             {"op": "sum", "inputs": ["y"], "outputs": ["l"]},
             {"op": "grad", "attributes": {"outputs": "l", "inputs": ["x", "u"]}, "outputs": ["g", "h"]}]
    req = _grad_req("", **{"return": ["g"]})
    del req["graph"]["source"]
    req["graph"]["nodes"] = nodes
    b = problem(client.post("/v1/grad", json=req), 422, "autograd-error")
    assert locs(b) == [["graph", "nodes", 2, "attributes", "inputs", 1]]


# ---------------------------------------------------------------- 422: schema and tensor errors
@pytest.mark.parametrize("mutate, loc", [
    (lambda r: r.pop("graph"), ["graph"]),
    (lambda r: r["graph"]["inputs"][0].update(datatype="float128"), ["graph", "inputs", 0, "datatype"]),
    (lambda r: r["graph"]["inputs"][0].update(b64="AAAA"), ["graph", "inputs", 0]),
    (lambda r: r["graph"]["inputs"][0].pop("data"), ["graph", "inputs", 0]),
    (lambda r: r["graph"]["inputs"][0].update(shape=[-1]), ["graph", "inputs", 0, "shape", 0]),
    (lambda r: r["graph"]["inputs"][0].update(requires_grad="yes"), ["graph", "inputs", 0, "requires_grad"]),
    (lambda r: r.update(create_graph=1), ["create_graph"]),
    (lambda r: r.update(retrun=["loss"]), ["retrun"]),
    (lambda r: r["graph"].update(source="y = x"), ["graph"]),
    (lambda r: r["graph"]["nodes"].append(5), ["graph", "nodes", 7]),
    (lambda r: r["graph"]["nodes"][0].pop("outputs"), ["graph", "nodes", 0, "outputs"]),
    (lambda r: r["graph"]["nodes"].append({"op": "grad", "attributes": {"outputs": "loss"},
                                           "outputs": ["g"]}),
     ["graph", "nodes", 7, "attributes", "inputs"]),
    (lambda r: r.update(response_encoding="xml"), ["response_encoding"]),
])
def test_422_schema_errors_name_the_field(client, x100, mutate, loc):
    req = seed_request(x100)
    mutate(req)
    b = problem(client.post("/v1/grad", json=req), 422, "invalid-request")
    assert loc in locs(b), locs(b)


@pytest.mark.parametrize("tensor, field", [
    ({"name": "w", "datatype": "FP32", "shape": [2], "data": [0.5], "requires_grad": True}, "data"),
    ({"name": "w", "datatype": "FP32", "shape": [1], "data": ["zero"], "requires_grad": True}, "data"),
    ({"name": "w", "datatype": "FP32", "shape": [1], "data": [None], "requires_grad": True}, "data"),
    ({"name": "w", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3]]}, "data"),
    ({"name": "w", "datatype": "FP32", "shape": [1], "b64": "!!!", "requires_grad": True}, "b64"),
    ({"name": "w", "datatype": "FP32", "shape": [1], "b64": "AAAAAAAA", "requires_grad": True}, "b64"),
    ({"name": "w", "datatype": "INT32", "shape": [1], "data": [1.5]}, "data"),
])
def test_422_tensor_payload_errors(client, x100, tensor, field):
    req = seed_request(x100)
    req["graph"]["inputs"][0] = tensor
    b = problem(client.post("/v1/grad", json=req), 422, "invalid-request")
    assert locs(b) == [["graph", "inputs", 0, field]]


def test_422_integer_tensor_cannot_require_grad(client, x100):
    req = seed_request(x100)
    req["graph"]["inputs"][0] = {"name": "w", "datatype": "INT64", "shape": [1], "data": [1],
                                 "requires_grad": True}
    b = problem(client.post("/v1/grad", json=req), 422, "engine-error")
    exc, msg = torch_error(lambda: torch.tensor([1]).requires_grad_())
    assert b["exception"] == exc and b["detail"] == msg
    assert locs(b) == [["graph", "inputs", 0, "requires_grad"]]


@pytest.mark.parametrize("source, line, col, words", [
    ("import os", 1, 1, "imports"),
    ("y = x\nz = x.__class__", 2, 5, "dunder"),
    ("y = x.shape", 1, 5, "attribute access"),
    ("y = (lambda: x)()", 1, 6, "lambda"),
    ("y = [x for _ in x]", 1, 5, "comprehension"),
    ("y = __import__('os')", 1, 5, "dunder"),
    ("y = open('/etc/passwd')", 1, 5, "unknown op 'open'"),
    ("y = getattr(x, '__class__')", 1, 5, "unknown op 'getattr'"),
    ("y = eval('1')", 1, 5, "unknown op 'eval'"),
    ("y = x +", 1, 8, "syntax"),
    ("y = x if x else x", 1, 5, "conditional"),
    ("def f(): pass", 1, 1, "function"),
    ("y = undefined_name * 2", 1, 5, "not defined"),
    ("y = x\ny[0][1] = 2", 2, 1, "items of named tensors"),
    ("g = grad(sum(x), x)", 1, 5, "tuple"),
])
def test_422_expression_errors_name_line_and_col(client, x100, source, line, col, words):
    req = {"graph": {"inputs": [wire_tensor("x", np.ones(3))], "source": source}, "return": []}
    b = problem(client.post("/v1/grad", json=req), 422)
    assert b["type"] in ("urn:gradserve:problem:invalid-expression", "urn:gradserve:problem:invalid-graph")
    e = b["errors"][0]
    assert e["loc"] == ["graph", "source"] and (e["line"], e["col"]) == (line, col), e
    assert words in e["msg"] and e["msg"].startswith(f"line {line}, col {col}")
    assert_still_serving(client, x100)


# ---------------------------------------------------------------- other routes
def test_404_and_405_are_problems_too(client):
    problem(client.get("/v2/nothing"), 404)
    problem(client.get("/v1/grad"), 405)
