"""Big base64 strings are cut out of a JSON body before it is parsed (service.core): the answer is
the same as for the body parsed whole, and anything unusual falls back to parsing it whole."""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest

from service import core

from .helpers import wire_tensor

N = core.EXCISE_MIN_BYTES // 4 + 5  # float32 elements whose base64 is over the excision size


@pytest.fixture
def a() -> np.ndarray:
    return np.random.default_rng(11).standard_normal(N).astype(np.float32)


def request(a: np.ndarray, **top) -> dict:
    return {"graph": {"inputs": [wire_tensor("a", a, encoding="b64", requires_grad=True)],
                      "nodes": [{"op": "mul", "inputs": ["a", "a"], "outputs": ["y"]},
                                {"op": "sum", "inputs": ["y"], "outputs": ["l"]}]},
            "outputs": "l", "inputs": "a", **top}


def grad_of(r) -> np.ndarray:
    assert r.status_code == 200, r.text[:500]
    g = orjson.loads(r.content)["grads"][0]
    return np.frombuffer(base64.b64decode(g["b64"]), "<f4")


def test_tensor_and_grad_output_are_cut_out(client, a) -> None:
    v = np.random.default_rng(12).standard_normal(N).astype(np.float32)
    req = request(a, outputs=["y"], grad_outputs=[wire_tensor(None, v, encoding="b64")],
                  response_encoding="b64")
    req["grad_outputs"][0].pop("name")
    body = orjson.dumps(req)
    payload, _, excised = core._split_body(body, core.JSON_MEDIA_TYPE, None)
    assert len(excised) == 2
    assert payload["graph"]["nodes"] == req["graph"]["nodes"]
    r = client.post("/v1/grad", content=body, headers={"content-type": "application/json"})
    np.testing.assert_array_equal(grad_of(r), 2 * a * v)


def test_spaces_around_the_colon(client, a) -> None:
    body = orjson.dumps(request(a, response_encoding="b64")).replace(b'"b64":"', b'"b64" :\n "', 1)
    assert len(core._split_body(body, core.JSON_MEDIA_TYPE, None)[2]) == 1
    r = client.post("/v1/grad", content=body, headers={"content-type": "application/json"})
    np.testing.assert_array_equal(grad_of(r), 2 * a)


def test_escaped_slashes_are_parsed_whole(client, a) -> None:
    body = orjson.dumps(request(a, response_encoding="b64"))
    start = body.index(b'"b64":"') + 7
    end = body.index(b'"', start)
    assert b"/" in body[start:end]
    body = body[:start] + body[start:end].replace(b"/", b"\\/") + body[end:]  # valid JSON, same string
    payload, _, excised = core._split_body(body, core.JSON_MEDIA_TYPE, None)
    assert excised == {} and payload == orjson.loads(body)
    r = client.post("/v1/grad", content=body, headers={"content-type": "application/json"})
    np.testing.assert_array_equal(grad_of(r), 2 * a)


def test_b64_key_outside_a_tensor_is_parsed_whole(a) -> None:
    text = base64.b64encode(a.tobytes()).decode()
    req = request(a[:4])
    req["graph"]["nodes"][0]["attributes"] = {"b64": text}
    body = orjson.dumps(req)
    payload, _, excised = core._split_body(body, core.JSON_MEDIA_TYPE, None)
    assert excised == {} and payload == req


def test_b64_inside_another_string_is_parsed_whole(a) -> None:
    text = base64.b64encode(a.tobytes()).decode()
    req = request(a[:4])
    req["graph"]["nodes"][0]["outputs"] = ['q", "b64": "' + text]  # a name that looks like JSON
    req["outputs"] = req["graph"]["nodes"][0]["outputs"][0]
    body = orjson.dumps(req)
    payload, _, excised = core._split_body(body, core.JSON_MEDIA_TYPE, None)
    assert excised == {} and payload == req


def test_invalid_base64_is_a_422_naming_the_field(client, a) -> None:
    body = orjson.dumps(request(a))
    start = body.index(b'"b64":"') + 7
    body = body[:start + 100] + b"!" + body[start + 101:]
    r = client.post("/v1/grad", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text[:300]
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["loc"] == ["graph", "inputs", 0, "b64"]


def test_wrong_length_names_the_field(client, a) -> None:
    req = request(a)
    req["graph"]["inputs"][0]["shape"] = [N + 1]
    r = client.post("/v1/grad", content=orjson.dumps(req), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text[:300]
    assert r.json()["errors"][0]["loc"] == ["graph", "inputs", 0, "b64"]
