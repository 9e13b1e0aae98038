"""Bad input gets a 4xx problem+json, never a 500, a crash or a hang; then the app serves again.

What test_errors.py covers is not repeated here; this adds non-finite inputs (refused unless
``allow_non_finite``), ``check_finite`` (the first node or backward function producing NaN or
infinity is named), deeply nested JSON, truncated bodies, binary lengths that disagree with the
header, unknown dtypes, and the deadline inside backward passes.
"""

from __future__ import annotations

import base64
import time

import numpy as np
import orjson
import pytest
import torch

import engine
from engine import _meta
from service import core
from service.errors import RequestTimeout
from service.settings import Settings

from .helpers import binary_body, read_tensor, seed_request, wire_tensor
from .test_errors import assert_still_serving, locs, problem
from .test_overload_timeout import wait_until


# ---------------------------------------------------------------- NaN and infinity in inputs
@pytest.mark.parametrize("encoding", ["data", "b64", "binary"])
def test_non_finite_inputs_are_refused_unless_the_request_opts_in(client, x100, encoding):
    x = x100.copy()
    x[7] = np.nan
    x[9] = np.inf
    req = seed_request(x, encoding=encoding)
    if encoding == "data":  # JSON spells them as strings
        spell = {"nan": "NaN", "inf": "Infinity"}
        req["graph"]["inputs"][2]["data"] = [spell.get(str(v), float(v)) for v in x]
    arrays = [np.array([0.5], np.float32), np.array([0.9], np.float32), x]
    body, headers = binary_body(req, arrays) if encoding == "binary" else \
        (orjson.dumps(req), {"content-type": "application/json"})
    b = problem(client.post("/v1/grad", content=body, headers=headers), 422, "invalid-request")
    assert locs(b)[0][:3] == ["graph", "inputs", 2]
    assert "'x'" in b["detail"] and "2 non-finite" in b["detail"] and "[7]" in b["detail"]
    assert "allow_non_finite" in b["detail"]
    req["allow_non_finite"] = True
    body, headers = binary_body(req, arrays) if encoding == "binary" else \
        (orjson.dumps(req), {"content-type": "application/json"})
    r = client.post("/v1/grad", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert np.isnan(read_tensor(r.json()["grads"][0])).all()  # as torch: the mean sees NaN
    assert_still_serving(client, x100)


def test_non_finite_grad_outputs_are_refused_too(client):
    req = {"graph": {"inputs": [wire_tensor("x", np.ones(3), requires_grad=True)], "source": "y = x * 2"},
           "outputs": "y", "inputs": "x",
           "grad_outputs": [{"name": "g", "datatype": "FP64", "shape": [3], "data": [1, "-Infinity", 1]}]}
    b = problem(client.post("/v1/grad", json=req), 422)
    assert locs(b) == [["grad_outputs", 0]]
    req["allow_non_finite"] = True
    r = client.post("/v1/grad", json=req)
    assert r.status_code == 200 and read_tensor(r.json()["grads"][0]).tolist() == [2.0, -np.inf, 2.0]


def test_integer_inputs_are_never_non_finite(client):
    req = {"graph": {"inputs": [wire_tensor("i", np.array([1, 2], np.int64))], "source": "y = i * 2"},
           "return": ["y"]}
    r = client.post("/v1/grad", json=req)
    assert r.status_code == 200 and read_tensor(r.json()["values"]["y"]).tolist() == [2, 4]


# ---------------------------------------------------------------- check_finite (anomaly mode)
def test_check_finite_names_the_first_node_producing_nan_in_forward(client):
    x = np.array([1.0, -1.0, 4.0])
    src = "a = x * 2\nb = sqrt(a)\nc = log(b)\nl = sum(c)"
    req = {"graph": {"inputs": [wire_tensor("x", x, requires_grad=True)], "source": src},
           "outputs": "l", "inputs": "x", "check_finite": True}
    b = problem(client.post("/v1/grad", json=req), 422, "engine-error")
    item = b["errors"][0]
    assert (item["line"], item["node"]) == (2, "b") and "NaN" in b["detail"] and "check_finite" in b["detail"]
    req.pop("check_finite")  # without the flag: NaN flows through, as in torch
    r = client.post("/v1/grad", json=req)
    assert r.status_code == 200 and np.isnan(read_tensor(r.json()["grads"][0])[1])


def test_check_finite_names_the_backward_function_like_torch_anomaly_mode(client, x100):
    # forward is finite (sqrt(0) = 0); backward divides by it: 1 / (2 sqrt(0)) = inf
    x = np.array([0.0, 1.0, 4.0])
    req = {"graph": {"inputs": [wire_tensor("x", x, requires_grad=True)], "source": "l = sum(sqrt(x))"},
           "outputs": "l", "inputs": "x", "check_finite": True}
    b = problem(client.post("/v1/grad", json=req), 422, "autograd-error")
    assert b["detail"] == "Function 'SqrtBackward0' returned inf values in its 0th output."
    # torch's anomaly mode names the same function (it looks for NaN: use 0 * inf there)
    xt = torch.tensor(x, requires_grad=True)
    with torch.autograd.detect_anomaly(), pytest.raises(RuntimeError, match="SqrtBackward0"):
        torch.autograd.grad((torch.sqrt(xt) * 0).sum(), xt)
    # inside a grad node the node is named too
    req["graph"]["source"] = "y = sum(sqrt(x))\ng, = grad(y, x)\nl = sum(g)"
    req.update(outputs=None, inputs=None, **{"return": ["l"]})
    b = problem(client.post("/v1/grad", json=req), 422, "autograd-error")
    assert b["errors"][0]["line"] == 2 and "SqrtBackward0" in b["detail"]
    assert_still_serving(client, x100)


# ---------------------------------------------------------------- malformed bodies
def test_deeply_nested_json_anywhere(client, x100):
    base = orjson.dumps(seed_request(x100))
    for depth in (100, 1023, 5000):  # orjson stops at 1024 levels: 400; below, the schema: 422
        nested = b"[" * depth + b"1" + b"]" * depth
        for body in (b'{"graph": ' + nested + b"}",
                     base.replace(b'"outputs":["loss"]', b'"outputs":' + nested),
                     base.replace(b'"inputs":[2,"x"]', b'"inputs":[' + nested + b',"x"]'),
                     base.replace(b'"data":[0.5]', b'"data":' + nested)):
            r = client.post("/v1/grad", content=body, headers={"content-type": "application/json"})
            assert r.status_code in (400, 422), (depth, r.text[:200])
            problem(r, r.status_code)
    assert_still_serving(client, x100)


def test_every_truncation_of_a_valid_body_is_a_4xx(client, x100):
    body = orjson.dumps(seed_request(x100[:4]))
    for cut in range(0, len(body), 7):
        r = client.post("/v1/grad", content=body[:cut], headers={"content-type": "application/json"})
        problem(r, 400)
    assert_still_serving(client, x100)


def test_binary_lengths_that_disagree_with_the_header(client, x100):
    req = seed_request(x100, encoding="binary")
    arrays = [np.array([0.5], np.float32), np.array([0.9], np.float32), x100]
    body, headers = binary_body(req, arrays)
    n = int(headers["inference-header-content-length"])
    for size in (0, 1, 399, 401, 10**12):  # x's binary_data_size says something else than 400
        bad = orjson.loads(body[:n])
        bad["graph"]["inputs"][2]["parameters"]["binary_data_size"] = size
        h = orjson.dumps(bad)
        r = client.post("/v1/grad", content=h + body[n:],
                        headers={**headers, "inference-header-content-length": str(len(h))})
        problem(r, 400 if size != 10**12 else r.status_code)
        assert r.status_code in (400, 422)
    # a tensor marked binary in a JSON body
    bad = orjson.loads(body[:n])
    r = client.post("/v1/grad", json=bad)
    assert r.status_code == 400 and "binary" in problem(r, 400)["detail"]
    assert_still_serving(client, x100)


@pytest.mark.parametrize("where, value", [
    ("datatype", "FP8"), ("datatype", "complex64"), ("datatype", ""), ("datatype", 32),
])
def test_unknown_input_datatypes(client, x100, where, value):
    req = seed_request(x100)
    req["graph"]["inputs"][2][where] = value
    b = problem(client.post("/v1/grad", json=req), 422, "invalid-request")
    assert ["graph", "inputs", 2, "datatype"] in locs(b)


@pytest.mark.parametrize("dtype", ["complex128", "float128", "object", "FP8", "str", 7])
def test_unknown_dtype_attributes(client, dtype):
    node = {"op": "to", "inputs": ["x"], "attributes": {"dtype": dtype}, "outputs": ["y"]}
    req = {"graph": {"inputs": [wire_tensor("x", np.ones(2))], "nodes": [node]}, "return": ["y"]}
    r = client.post("/v1/grad", json=req)
    b = problem(r, 422)
    assert b["errors"][0]["loc"][:3] == ["graph", "nodes", 0]


def test_b64_that_is_not_base64_or_has_the_wrong_size(client, x100):
    for text in ("@@@@", base64.b64encode(b"\0" * 3).decode(), "A" * 10**5):
        req = seed_request(x100, encoding="b64")
        req["graph"]["inputs"][0]["b64"] = text
        b = problem(client.post("/v1/grad", json=req), 422)
        assert locs(b) == [["graph", "inputs", 0, "b64"]]


# ---------------------------------------------------------------- the deadline inside backward
@pytest.fixture
def slow_sin_backward(monkeypatch):
    """sin's VJP sleeps 20 ms per call in real runs (not in the static check's meta run)."""
    prim = engine.PRIMITIVES["sin"]
    orig, calls = prim.bwd, []

    def slow(ctx, g, *saved, **params):
        if _meta._local.session is None:
            calls.append(1)
            time.sleep(0.02)
        return orig(ctx, g, *saved, **params)

    monkeypatch.setattr(prim, "bwd", slow)
    return calls


def _sin_chain(n: int) -> dict:
    src = "y0 = x * 1\n" + "".join(f"y{i + 1} = sin(y{i})\n" for i in range(n)) + f"l = sum(y{n})\n"
    return {"graph": {"inputs": [wire_tensor("x", np.ones(3), requires_grad=True)], "source": src},
            "outputs": "l", "inputs": "x"}


def test_deadline_is_checked_inside_backward_and_stops_it(slow_sin_backward, monkeypatch):
    # The clock runs 5 s further per backward node, so the 60 s deadline passes inside backward,
    # after 12 nodes, however fast or slow this machine builds and runs the forward (a 0.5 s
    # deadline once ran out before the forward's first node on a loaded machine).
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + 5.0 * len(slow_sin_backward))
    with pytest.raises(RequestTimeout) as e:
        core.evaluate(_sin_chain(200), settings=Settings(request_timeout_s=60.0))
    assert "stopped in backward, at SinBackward0" in e.value.detail
    assert len(slow_sin_backward) <= 60 / 5 + 16  # checked every 16 backward nodes


def test_deadline_inside_a_grad_node_is_a_504_and_the_app_serves_on(make_client, slow_sin_backward, x100):
    c = make_client(request_timeout_s=0.5)
    req = _sin_chain(200)
    req["graph"]["source"] = req["graph"]["source"].replace("l = sum(y200)", "g, = grad(sum(y200), x)")
    req.update(outputs=None, inputs=None, **{"return": ["g"]})
    b = problem(c.post("/v1/grad", json=req), 504, "timeout")
    assert "request_timeout_s" in b["detail"]
    # the abandoned job may be inside one more node when the 504 goes out; it then stops and
    # frees its engine slot, and runs nothing after that
    wait_until(lambda: c.app.state.gate.active == 0)
    n = len(slow_sin_backward)
    time.sleep(0.5)
    assert len(slow_sin_backward) == n < 100  # the abandoned work stopped, far short of 200 nodes
    assert_still_serving(c, x100)
