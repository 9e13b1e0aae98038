"""Error bodies a newcomer can act on: every 4xx names a place, says it once, in the user's words."""

from __future__ import annotations

import re

import numpy as np
import pytest

from .helpers import wire_tensor

X = wire_tensor("x", np.array([1.0, 2.0], np.float32), requires_grad=True)


def problem(client, req: dict, status: int) -> dict:
    r = client.post("/v1/grad", json=req)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["errors"] and all("loc" in e for e in body["errors"]), body
    return body


def test_binary_count_mismatch_names_the_tensor(client):
    x = {**X, "parameters": {"binary_data_size": 8}}
    x.pop("data")
    b = problem(client, {"graph": {"inputs": [x], "source": "y = sum(x)"}}, 400)
    assert "marked binary" in b["detail"]
    assert b["errors"][0]["loc"] == ["graph", "inputs", 0, "parameters", "binary_data_size"]


def test_too_large_says_its_location_once_and_names_the_users_variable(make_client):
    client = make_client(max_tensor_elements=100)
    b = problem(client, {"graph": {"inputs": [X], "source": "y = sum(x.expand(1000, 2) * 2)"},
                         "outputs": "y", "inputs": "x"}, 413)
    err = b["errors"][0]
    assert err["msg"].count("line 1, col 9") == 1 and b["detail"].count("line 1, col 9") == 1
    assert err["node"] == "y" and (err["line"], err["col"]) == (1, 9)
    assert "x.expand(1000, 2)" in err["msg"]  # the user's own text names the intermediate value


@pytest.mark.parametrize(("src", "node", "line"), [
    ("a = x * 2\ny = sum(log(a) * 'no')", "y", 2),    # engine error on an intermediate value
    ("y = sum(mm(x, x))", "y", 1),                   # engine error, operand shapes listed
    ("a = x + 1\nb, c = split(a * 2, 1)\nq = b.unknownop()", "q", 3),  # unknown op
    ("a = x + 1\nq = a.shape[0] * x", "q", 2),                         # refused while compiling
])
def test_expression_errors_name_the_users_variable_and_line_never_an_internal_node(client, src, node, line):
    b = problem(client, {"graph": {"inputs": [X], "source": src}, "outputs": "y", "inputs": "x"}, 422)
    err = b["errors"][0]
    assert err["node"] == node and err["line"] == line, err
    text = str(b)
    assert not re.search(r"%\d", text), text


def test_unknown_attribute_gets_a_did_you_mean(client):
    node = {"op": "jacobian", "attributes": {"outputs": "y", "inputs": "x", "vectorise": True},
            "outputs": ["j"]}
    mul = {"op": "mul", "inputs": ["x", 2], "outputs": ["y"]}
    b = problem(client, {"graph": {"inputs": [X], "nodes": [mul, node]}}, 422)
    assert b["errors"][0]["loc"] == ["graph", "nodes", 1, "attributes", "vectorise"]
    assert "did you mean 'vectorize'?" in b["errors"][0]["msg"]
    b = problem(client, {"graph": {"inputs": [X], "source": "y = x"}, "outputz": ["y"]}, 422)
    assert "did you mean 'outputs'?" in b["detail"]


def test_unknown_op_keyword_gets_a_did_you_mean(client):
    b = problem(client, {"graph": {"inputs": [X], "nodes": [
        {"op": "sum", "inputs": ["x"], "attributes": {"dimm": 0}, "outputs": ["s"]}]}}, 422)
    assert b["errors"][0]["loc"] == ["graph", "nodes", 0, "attributes", "dimm"]
    assert "did you mean 'dim'?" in b["detail"]


@pytest.mark.parametrize(("req", "status"), [
    ({"graph": {"inputs": [X], "hash": "sha256:" + "0" * 64}}, 409),
    ({"graph": {"inputs": [X], "source": "y = x"}, "outputs": "y"}, 422),
    ({"graph": {"inputs": [X], "source": "y = x +"}}, 422),
    ({"graph": {"inputs": [X, X], "source": "y = x"}}, 422),
    ({"graph": {"inputs": [X], "source": "y = x"}, "return": ["z"]}, 422),
])
def test_every_client_error_has_a_located_entry(client, req, status):
    problem(client, req, status)


def test_null_hash_is_absent(client):
    """Clients that serialize nulls send "hash": null; the schema allows it, so it means no hash."""
    for graph in ({"hash": None, "source": "y = sum(x * x)"}, {"nodes": None, "hash": None,
                                                               "source": "y = sum(x * x)"}):
        r = client.post("/v1/grad", json={"graph": {"inputs": [X], **graph}, "outputs": "y", "inputs": "x"})
        assert r.status_code == 200, r.text
        assert r.json()["grads"][0]["data"] == [2.0, 4.0]  # d/dx sum(x^2) = 2x
    r = client.post("/v1/grad", json={"graph": {"inputs": [X], "hash": None}})
    assert r.status_code == 422 and "exactly one of nodes, source, hash or onnx" in r.text


def test_unknown_infer_field_gets_a_did_you_mean(client):
    req = {"inputs": [{"name": "graph", "datatype": "BYTES", "shape": [1], "data": ["{}"]}], "outptus": []}
    r = client.post("/v2/models/gradserve/infer", json=req)
    assert r.status_code == 422
    assert r.json()["errors"][0] == {"loc": ["outptus"], "msg": "unknown field; did you mean 'outputs'?"}
