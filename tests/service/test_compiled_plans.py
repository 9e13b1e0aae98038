"""Compiled cached plans and the cached-header fast path (service.compiled, service.fastpath).

The reference is the same server with ``compile="off"`` (eager) on the same inputs: compiled
replays must give its results to the last bit. torch checks the seed example's numbers.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from .helpers import binary_body, read_tensor, seed_request, seed_torch, split_binary_response, wire_tensor

PLAN = "gradserve-plan"
RNG = np.random.default_rng(7)


def _mlp(rng: np.random.Generator) -> dict:
    x = rng.standard_normal((4, 3)).astype(np.float64)
    w = rng.standard_normal((3, 2)).astype(np.float64)
    return {"graph": {"inputs": [wire_tensor("x", x), wire_tensor("w", w, requires_grad=True)],
                      "source": "h = tanh(x @ w)\nloss = sum(softmax(h, 1) * h)"},
            "outputs": "loss", "inputs": "w", "return": ["loss", "h"]}


def _higher(rng: np.random.Generator) -> dict:
    x = rng.standard_normal(3)
    v = rng.standard_normal(3)
    return {"graph": {"inputs": [wire_tensor("x", x, requires_grad=True), wire_tensor("v", v)],
                      "source": "f = sum(x ** 3)\ng, = grad(f, x, create_graph=True)\ngv = sum(g * v)"},
            "outputs": ["gv"], "inputs": ["x"], "return": ["g"]}


def _functional(rng: np.random.Generator) -> dict:
    x = rng.standard_normal(2)
    a = rng.standard_normal((2, 2))
    return {"graph": {"inputs": [wire_tensor("x", x, requires_grad=True), wire_tensor("A", a)],
                      "source": "y = A.T @ x ** 3\nJ = jacobian(y, x)\nH = hessian(sum(y), x)\nl = sum(y)"},
            "outputs": "l", "inputs": "x", "return": ["J", "H"]}


def _hvp(rng: np.random.Generator) -> dict:
    x = rng.standard_normal(4).astype(np.float32)
    v = rng.standard_normal(4).astype(np.float32)
    return {"graph": {"inputs": [wire_tensor("x", x, requires_grad=True), wire_tensor("v", v)],
                      "source": "f = sum(exp(x) * sin(x))\nhv = hvp(f, x, v)\nout = sum(hv * x)"},
            "outputs": "out", "inputs": "x", "return": ["hv"]}


def _seed(rng: np.random.Generator) -> dict:
    return seed_request(rng.random(100).astype(np.float32)) | {"return": ["loss"]}


def _integer_index(rng: np.random.Generator) -> dict:
    x = rng.standard_normal((5, 3))
    idx = rng.integers(0, 5, size=4).astype(np.int64)
    return {"graph": {"inputs": [wire_tensor("x", x, requires_grad=True), wire_tensor("i", idx)],
                      "source": "y = index_select(x, 0, i)\nl = sum(y * y)"},
            "outputs": "l", "inputs": "x", "return": ["y"]}


def _broadcast_b64(rng: np.random.Generator) -> dict:
    a = rng.standard_normal((3, 1)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    return {"graph": {"inputs": [wire_tensor("a", a, requires_grad=True, encoding="b64"),
                                 wire_tensor("b", b, requires_grad=True, encoding="b64")],
                      "source": "l = mean(log1p(exp(a * b)) - a / (1 + b * b))"},
            "outputs": "l", "inputs": ["a", "b"], "response_encoding": "b64", "return": ["l"]}


CASES = {"seed": _seed, "mlp": _mlp, "higher_order": _higher, "functional": _functional, "hvp": _hvp,
         "integer_index": _integer_index, "broadcast_b64": _broadcast_b64}


def _arrays(body: dict) -> dict[str, np.ndarray]:
    out = {f"grad{i}": read_tensor(g) for i, g in enumerate(body["grads"])}
    out.update({k: read_tensor(v) for k, v in body["values"].items()})
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_compiled_replays_are_bitwise_equal_to_eager(make_client: Any, case: str) -> None:
    compiled, eager = make_client(compile="on"), make_client(compile="off")
    rng = np.random.default_rng(abs(hash(case)) % 2**32)
    seen = []
    for _ in range(4):  # full, then compiled (traced), then replays, each with new values
        req = CASES[case](rng)
        r = compiled.post("/v1/grad", json=req)
        ref = eager.post("/v1/grad", json=req)
        assert r.status_code == ref.status_code == 200, r.text
        seen.append(r.headers[PLAN])
        got, want = _arrays(r.json()), _arrays(ref.json())
        assert got.keys() == want.keys()
        for k in want:
            assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
            assert got[k].tobytes() == want[k].tobytes(), f"{case}: {k} differs from eager"
    assert seen == ["full", "compiled", "compiled", "compiled"], seen


def test_always_compiles_the_first_request_too(make_client: Any) -> None:
    x = RNG.random(100).astype(np.float32)
    c, e = make_client(compile="always"), make_client(compile="off")
    a, b = c.post("/v1/grad", json=seed_request(x)), e.post("/v1/grad", json=seed_request(x))
    assert a.status_code == b.status_code == 200
    assert a.content == b.content
    gw, gb, _ = seed_torch(x)
    np.testing.assert_allclose(read_tensor(a.json()["grads"][0]), gw, rtol=1e-6)
    np.testing.assert_allclose(read_tensor(a.json()["grads"][1]), gb, rtol=1e-6)


def test_compile_off_still_skips_validation_for_a_known_header(make_client: Any) -> None:
    c = make_client(compile="off")
    hs = [c.post("/v1/grad", json=seed_request(RNG.random(100).astype(np.float32))).headers[PLAN]
          for _ in range(3)]
    assert hs == ["full", "cached", "cached"]


# ---------------------------------------------------------------- what takes the fast path
def test_only_data_may_differ_for_the_fast_path(client: Any) -> None:
    x = RNG.random(100).astype(np.float32)
    assert client.post("/v1/grad", json=seed_request(x)).headers[PLAN] == "full"
    r = client.post("/v1/grad", json=seed_request(x * 2))
    assert r.headers[PLAN] == "compiled"
    gw, gb, _ = seed_torch(x * 2)
    np.testing.assert_allclose(read_tensor(r.json()["grads"][0]), gw, rtol=1e-6)
    changed = [
        seed_request(RNG.random(50).astype(np.float32)),              # a new shape
        seed_request(x, create_graph=True),                           # a new top-level call
        seed_request(x) | {"return": ["loss"]},                       # new values returned
        seed_request(x.astype(np.float64)),                           # a new dtype
        seed_request(x, encoding="b64"),                              # a new transport
    ]
    for req in changed:
        r = client.post("/v1/grad", json=req)
        assert r.status_code == 200, r.text
        assert r.headers[PLAN] == "full", req
    flags = seed_request(x)
    flags["graph"]["inputs"][2]["requires_grad"] = True                 # a new flag
    assert client.post("/v1/grad", json=flags).headers[PLAN] == "full"


def test_the_fast_path_serves_binary_bodies_and_responses(client: Any) -> None:
    for i in range(3):
        x = RNG.standard_normal(1000).astype(np.float32)
        header = {"graph": {"inputs": [wire_tensor("x", x, requires_grad=True, encoding="binary")],
                            "source": "l = sum(x * x)"}, "outputs": "l", "inputs": "x"}
        body, headers = binary_body(header, [x])
        r = client.post("/v1/grad", content=body, headers={**headers, "accept": "application/octet-stream"})
        assert r.status_code == 200, r.text
        assert r.headers[PLAN] == ("full" if i == 0 else "compiled")
        _, (blob,) = split_binary_response(r.content, int(r.headers["inference-header-content-length"]))
        np.testing.assert_array_equal(np.frombuffer(blob, np.float32), 2 * x)


# ---------------------------------------------------------------- limits hold on the fast path
def _warm(client: Any, req: dict) -> None:
    for _ in range(2):
        r = client.post("/v1/grad", json=req)
        assert r.status_code == 200, r.text
    assert r.headers[PLAN] == "compiled"


def _problem(r: Any, status: int, loc: list | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    if loc is not None:
        assert any(e["loc"][:len(loc)] == loc for e in body["errors"]), body["errors"]
    return body


def test_non_finite_inputs_are_refused_for_a_cached_header(client: Any) -> None:
    x = RNG.random(100).astype(np.float32)
    _warm(client, seed_request(x))
    bad = seed_request(x)
    bad["graph"]["inputs"][2]["data"][7] = "NaN"
    body = _problem(client.post("/v1/grad", json=bad), 422, ["graph", "inputs", 2])
    assert "non-finite" in body["detail"]
    b64 = seed_request(x, encoding="b64")
    _warm(client, b64)
    y = x.copy()
    y[3] = np.inf
    b64["graph"]["inputs"][2] = wire_tensor("x", y, encoding="b64")
    _problem(client.post("/v1/grad", json=b64), 422, ["graph", "inputs", 2])


def test_wrong_sizes_for_a_cached_header_are_refused(client: Any) -> None:
    x = RNG.random(100).astype(np.float32)
    _warm(client, seed_request(x))
    short = seed_request(x)
    short["graph"]["inputs"][2]["data"] = short["graph"]["inputs"][2]["data"][:99]
    _problem(client.post("/v1/grad", json=short), 422, ["graph", "inputs", 2, "data"])
    garbage = seed_request(x)
    garbage["graph"]["inputs"][2]["data"] = {"not": "numbers"}
    _problem(client.post("/v1/grad", json=garbage), 422, ["graph", "inputs", 2])
    b64 = seed_request(x, encoding="b64")
    _warm(client, b64)
    wrong = copy.deepcopy(b64)
    wrong["graph"]["inputs"][2] = wire_tensor("x", x[:97], encoding="b64") | {"shape": [100]}
    _problem(client.post("/v1/grad", json=wrong), 422, ["graph", "inputs", 2, "b64"])
    # a binary body whose bytes do not fill the declared sizes
    header = {"graph": {"inputs": [wire_tensor("x", x, requires_grad=True, encoding="binary")],
                        "source": "l = sum(x * x)"}, "outputs": "l", "inputs": "x"}
    body, headers = binary_body(header, [x])
    for _ in range(2):
        assert client.post("/v1/grad", content=body, headers=headers).status_code == 200
    _problem(client.post("/v1/grad", content=body[:-4], headers=headers), 400)
    _problem(client.post("/v1/grad", content=body + b"\0\0\0\0", headers=headers), 400)


def test_oversized_data_for_a_cached_header_is_refused(make_client: Any) -> None:
    c = make_client(max_body_bytes=64 * 1024, max_json_body_bytes=32 * 1024)
    x = RNG.random(100).astype(np.float32)
    _warm(c, seed_request(x))
    big = seed_request(x)
    big["graph"]["inputs"][2]["data"] = [0.5] * 20000   # same header, 200 times the data
    r = c.post("/v1/grad", json=big)
    assert r.status_code == 413, r.text
    long = seed_request(x)
    long["graph"]["inputs"][2]["data"] = [0.5] * 101
    _problem(c.post("/v1/grad", json=long), 422, ["graph", "inputs", 2, "data"])


def test_api_keys_hold_on_the_fast_path(make_client: Any) -> None:
    c = make_client(api_keys=["k1"])
    auth = {"authorization": "Bearer k1"}
    x = RNG.random(100).astype(np.float32)
    for _ in range(2):
        assert c.post("/v1/grad", json=seed_request(x), headers=auth).status_code == 200
    _problem(c.post("/v1/grad", json=seed_request(x)), 401)


def test_check_finite_and_value_sized_plans_run_eagerly(client: Any) -> None:
    x = RNG.random(100).astype(np.float32)
    for _ in range(3):
        r = client.post("/v1/grad", json=seed_request(x, check_finite=True))
        assert r.status_code == 200, r.text
    assert r.headers[PLAN] == "cached"
    req = {"graph": {"inputs": [wire_tensor("x", np.array([1.0, -2.0, 3.0]), requires_grad=True)],
                     "source": "y = x[x > 0]\nl = sum(y * y)"}, "outputs": "l", "inputs": "x"}
    hs = []
    for _ in range(3):
        r = client.post("/v1/grad", json=req)
        assert r.status_code == 200, r.text
        np.testing.assert_array_equal(read_tensor(r.json()["grads"][0]), [2.0, 0.0, 6.0])
        hs.append(r.headers[PLAN])
    assert hs == ["full", "cached", "cached"]


# ---------------------------------------------------------------- what compiled programs keep
def _big_sum(x: np.ndarray) -> dict:
    return {"graph": {"inputs": [wire_tensor("x", x, requires_grad=True, encoding="b64")],
                      "source": "l = sum(x * x)"}, "outputs": "l", "inputs": "x"}


def test_programs_over_the_held_bytes_budget_run_eagerly(make_client: Any, monkeypatch: Any) -> None:
    from service import compiled

    monkeypatch.setattr(compiled, "HELD_BYTES_LIMIT", compiled.held_bytes())  # nothing more fits
    c = make_client()
    hs = []
    for _ in range(3):
        x = RNG.standard_normal(4096)
        r = c.post("/v1/grad", json=_big_sum(x))
        assert r.status_code == 200, r.text
        np.testing.assert_array_equal(read_tensor(r.json()["grads"][0]), 2 * x)
        hs.append(r.headers[PLAN])
    # the trace found constants to keep (the gradient seed, broadcast to x's shape): dropped
    assert hs == ["full", "compiled", "cached"]


def test_evicted_plans_give_their_held_bytes_back(make_client: Any) -> None:
    import gc

    from service import compiled

    gc.collect()
    before = compiled.held_bytes()
    c = make_client(plan_cache_size=1)
    for _ in range(2):
        assert c.post("/v1/grad", json=_big_sum(RNG.standard_normal(4096))).status_code == 200
    assert compiled.held_bytes() > before
    c.post("/v1/grad", json=seed_request(RNG.random(100).astype(np.float32)))  # evicts the first plan
    gc.collect()
    assert compiled.held_bytes() == before
