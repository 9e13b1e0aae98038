"""Hostile shapes and integers: 422 naming the limit, never a 500.

A zero-size tensor can still declare a dimension of 2**63 - 1, which numpy cannot lay out; an
integer literal or result can have 400 digits, which no wire datatype holds.
"""

from __future__ import annotations

import base64

import orjson
import pytest

from .helpers import binary_body

HUGE = 2**63 - 1
SHAPE = [0, HUGE]


def _problem(r, status: int = 422) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    return r.json()


def _names_dim(body: dict) -> None:
    assert "dimension 1" in body["detail"] and str(HUGE) in body["detail"], body
    assert "max_tensor_elements" in body["detail"], body


@pytest.mark.parametrize("encoding", ["data", "b64"])
def test_zero_size_huge_dim_json(client, encoding: str) -> None:
    t = {"name": "x", "datatype": "FP32", "shape": SHAPE}
    t.update({"data": []} if encoding == "data" else {"b64": ""})
    r = client.post("/v1/grad", json={"graph": {"inputs": [t], "source": "y = x * 1"}, "return": ["y"]})
    body = _problem(r)
    _names_dim(body)
    assert body["errors"][0]["loc"] == ["graph", "inputs", 0, "shape", 1]


def test_zero_size_huge_dim_binary(client) -> None:
    header = {"graph": {"inputs": [{"name": "x", "datatype": "FP32", "shape": SHAPE,
                                    "parameters": {"binary_data_size": 0}}], "source": "y = x * 1"},
              "return": ["y"]}
    body, headers = binary_body(header, [])
    _names_dim(_problem(client.post("/v1/grad", content=body, headers=headers)))


def test_zero_size_huge_dim_grad_outputs(client) -> None:
    req = {"graph": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0],
                                 "requires_grad": True}], "source": "y = x * 1"},
           "outputs": ["y"], "inputs": ["x"],
           "grad_outputs": [{"datatype": "FP32", "shape": SHAPE, "data": []}]}
    body = _problem(client.post("/v1/grad", json=req))
    assert body["errors"][0]["loc"] == ["grad_outputs", 0, "shape", 1]


def test_zero_size_huge_dim_v2(client) -> None:
    graph = {"inputs": [{"name": "x"}], "source": "y = x * 1"}
    g = {"name": "graph", "datatype": "BYTES", "shape": [1], "data": [orjson.dumps(graph).decode()]}
    req = {"inputs": [g,
                      {"name": "x", "datatype": "FP32", "shape": SHAPE, "data": []}],
           "parameters": {"return": ["y"]}, "outputs": [{"name": "y"}]}
    r = client.post("/v2/models/gradserve/infer", json=req)
    assert r.status_code == 422, r.text
    assert str(HUGE) in r.text and "max_tensor_elements" in r.text


@pytest.mark.parametrize("src", [f"y = zeros(0, {HUGE})", f"y = full([{HUGE}, 0], 1.0)",
                                 f"y = eye(0, {HUGE})"])
def test_zero_size_huge_dim_computed(client, src: str) -> None:
    r = client.post("/v1/grad", json={"graph": {"inputs": [], "source": src}, "return": ["y"]})
    body = _problem(r, 413)
    assert "dimension" in body["detail"] and "max_tensor_elements" in body["detail"], body


def test_zero_size_huge_dim_views_are_4xx(client) -> None:
    x = {"name": "e", "datatype": "FP32", "shape": [0, 3], "data": []}
    for src in [f"y = reshape(e, [0, {HUGE}])", f"y = expand(e, [{HUGE}, 0, 3])",
                f"y = tile(e, [{HUGE}, 1])", f"y = e.unflatten(1, [{HUGE}, 0])"]:
        r = client.post("/v1/grad", json={"graph": {"inputs": [x], "source": src}, "return": ["y"]})
        assert 400 <= r.status_code < 500, (src, r.text)


def test_integer_literal_outside_int64(client) -> None:
    src = "n = getitem([1%s], 0)" % ("0" * 400)
    x = {"name": "x", "datatype": "INT64", "shape": [1], "data": [1]}
    body = _problem(client.post("/v1/grad", json={"graph": {"inputs": [x], "source": src}, "return": ["n"]}))
    assert "int64" in body["detail"], body
    for lit in ([{"literal": [1, 2**64]}], [{"slice": [0, 2**64, None]}]):
        node = {"op": "getitem", "inputs": ["x", *lit], "outputs": ["n"]}
        req = {"graph": {"inputs": [x], "nodes": [node]}, "return": ["n"]}
        _problem(_post_bigint(client, req))


def _post_bigint(client, obj: object):
    import json

    # orjson refuses integers past 64 bits: the standard library writes them
    return client.post("/v1/grad", content=json.dumps(obj).encode(),
                       headers={"content-type": "application/json"})


def test_integer_result_outside_int64_is_refused_at_output() -> None:
    from service.errors import InvalidGraph
    from service.executor import _array

    assert _array(HUGE, "n") == HUGE
    with pytest.raises(InvalidGraph, match="outside int64"):
        _array(HUGE + 1, "n")
    with pytest.raises(InvalidGraph, match="outside int64"):
        _array((1, -2**64), "n")


@pytest.mark.parametrize("datatype,value", [("INT32", 2**31), ("INT64", 2**63), ("INT64", -2**63 - 1),
                                            ("INT32", -2**31 - 1)])
def test_integer_data_outside_dtype_range_at_parse(client, datatype: str, value: int) -> None:
    req = {"graph": {"inputs": [{"name": "x", "datatype": datatype, "shape": [1], "data": [value]}],
                     "source": "y = x * 1"}, "return": ["y"]}
    _problem(_post_bigint(client, req))


def test_integer_b64_within_range_roundtrips(client) -> None:
    raw = (2**62).to_bytes(8, "little")
    x = {"name": "x", "datatype": "INT64", "shape": [1], "b64": base64.b64encode(raw).decode()}
    req = {"graph": {"inputs": [x],
                     "source": "y = x * 1"}, "return": ["y"]}
    r = client.post("/v1/grad", json=req)
    assert r.status_code == 200 and r.json()["values"]["y"]["data"] == [2**62], r.text
