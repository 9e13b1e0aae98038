"""The plan cache: graph hashes, hits and misses, the LRU bound, requests by hash, inline dispatch.

Expected gradients come from torch (``seed_torch``) or from closed forms; expected hashes from an
independent implementation of the canonical form (``json.dumps`` with sorted keys, not orjson).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import time

import numpy as np
import orjson
import pytest

import engine
from service.executor import compile_graph
from service.plan_cache import PlanCache, graph_hash
from service.wire import Graph

from .helpers import binary_body, read_tensor, seed_request, seed_torch, split_binary_response, wire_tensor
from .test_errors import assert_still_serving, problem

HASH_HEADER = "gradserve-graph-hash"


def reference_hash(graph: dict) -> str:
    """The documented canonical form, written independently of service.plan_cache."""
    body = "nodes" if "nodes" in graph else "source"
    canon = {"inputs": [t["name"] for t in graph["inputs"]], body: graph[body]}
    text = json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def by_hash(req: dict, h: str) -> dict:
    """The same request naming its graph by hash."""
    req = copy.deepcopy(req)
    req["graph"] = {"inputs": req["graph"]["inputs"], "hash": h}
    return req


def check_seed(r, x) -> None:
    assert r.status_code == 200, r.text
    gw, gb, _ = seed_torch(x)
    grads = r.json()["grads"]
    np.testing.assert_allclose(read_tensor(grads[0]), gw, rtol=1e-6)
    np.testing.assert_allclose(read_tensor(grads[1]), gb, rtol=1e-6)


def xs(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(100).astype(np.float32)


# ---------------------------------------------------------------- the hash
def test_hash_follows_the_documented_canonical_form() -> None:
    g = seed_request(xs(0))["graph"]
    assert graph_hash(g) == reference_hash(g)
    src = seed_request(xs(0), form="source")["graph"]
    assert graph_hash(src) == reference_hash(src) != graph_hash(g)


def test_same_graph_same_hash_whatever_the_spelling_values_or_shapes() -> None:
    g = seed_request(xs(0))["graph"]
    text = orjson.dumps(g).decode()
    assert '"inputs":[2,"x"]' in text
    respelled = orjson.loads(text.replace('"inputs":[2,"x"]', '"inputs" :\n [ 2 , "x" ]'))
    assert graph_hash(respelled) == graph_hash(g)
    reordered = {"nodes": [dict(reversed(list(n.items()))) for n in g["nodes"]], "inputs": g["inputs"]}
    assert graph_hash(reordered) == graph_hash(g)
    raw = b'{"inputs":[{"name":"x"}],"nodes":[{"op":"mul","inputs":["x",2.50],"outputs":["y"]}]}'
    assert graph_hash(orjson.loads(raw)) == graph_hash(orjson.loads(raw.replace(b"2.50", b"2.5")))
    # tensor values, shapes, dtypes and requires_grad are not part of it
    other = copy.deepcopy(g)
    other["inputs"][2] = wire_tensor("x", np.ones((3, 4)), encoding="b64")
    other["inputs"][0]["requires_grad"] = False
    assert graph_hash(other) == graph_hash(g)


def test_different_graphs_different_hashes() -> None:
    g = seed_request(xs(0))["graph"]
    op = copy.deepcopy(g)
    op["nodes"][5]["inputs"] = ["r", 3]  # pow 2 -> pow 3
    renamed = copy.deepcopy(g)
    renamed["inputs"][1]["name"] = "c"
    reordered = copy.deepcopy(g)
    reordered["inputs"] = reordered["inputs"][::-1]
    hashes = {graph_hash(x) for x in (g, op, renamed, reordered)}
    assert len(hashes) == 4 and None not in hashes


@pytest.mark.parametrize("graph", [
    None, [1], {"inputs": []}, {"inputs": [], "nodes": [], "source": ""},
    {"inputs": [{"datatype": "FP32"}], "nodes": []}, {"inputs": "x", "nodes": []},
])
def test_unhashable_graphs_have_no_hash(graph) -> None:
    assert graph_hash(graph) is None


# ---------------------------------------------------------------- the LRU
def _plan(name: str):
    return compile_graph(Graph.model_validate({
        "inputs": [{"name": name, "datatype": "FP32", "shape": [], "data": 1.0}],
        "source": f"y = {name} * 2"}))


def test_cache_counts_hits_and_misses_and_keeps_at_most_maxsize() -> None:
    cache = PlanCache(maxsize=2)
    assert cache.get("a") is None
    pa, pb, pc = _plan("a"), _plan("b"), _plan("c")
    cache.put("a", pa)
    cache.put("b", pb)
    assert cache.get("a").plan is pa          # a is now the most recently used
    cache.put("c", pc)                        # evicts b, the least recently used
    assert "b" not in cache and cache.get("b") is None
    assert cache.get("a").plan is pa and cache.get("c").plan is pc
    assert cache.stats() == {"hits": 3, "misses": 2, "evictions": 1, "size": 2, "maxsize": 2}
    assert cache.put("a", pb).plan is pa      # a plan built twice concurrently: the first stays
    assert cache.peek("a").plan is pa and cache.stats()["hits"] == 3  # peek counts nothing


def test_cache_of_size_zero_keeps_nothing() -> None:
    cache = PlanCache(maxsize=0)
    cache.put("a", _plan("a"))
    assert len(cache) == 0 and cache.get("a") is None


# ---------------------------------------------------------------- over HTTP
def test_graph_sent_again_hits_the_cache_and_is_still_correct(make_client) -> None:
    c = make_client()
    cache = c.app.state.plan_cache
    first = c.post("/v1/grad", json=seed_request(xs(0)))
    check_seed(first, xs(0))
    assert cache.stats()["misses"] == 1 and cache.stats()["hits"] == 0
    h = graph_hash(seed_request(xs(0))["graph"])
    assert first.headers[HASH_HEADER] == h
    for seed in (1, 2):  # new inputs, same graph
        r = c.post("/v1/grad", json=seed_request(xs(seed)))
        check_seed(r, xs(seed))
        assert r.headers[HASH_HEADER] == h
    assert cache.stats()["hits"] == 2 and len(cache) == 1


def test_request_by_hash(make_client) -> None:
    c = make_client()
    h = c.post("/v1/grad", json=seed_request(xs(0))).headers[HASH_HEADER]
    r = c.post("/v1/grad", json=by_hash(seed_request(xs(3), **{"return": ["loss"]}), h))
    check_seed(r, xs(3))
    _, _, loss = seed_torch(xs(3))
    np.testing.assert_allclose(read_tensor(r.json()["values"]["loss"]), loss, rtol=1e-6)
    # the binary layout works by hash too
    req = by_hash(seed_request(xs(4), encoding="binary"), h)
    body, headers = binary_body(req, [np.array([0.5], np.float32), np.array([0.9], np.float32), xs(4)])
    r = c.post("/v1/grad", content=body, headers={**headers, "accept": "application/octet-stream"})
    assert r.status_code == 200, r.text
    head, blobs = split_binary_response(r.content, int(r.headers["inference-header-content-length"]))
    gw, gb, _ = seed_torch(xs(4))
    np.testing.assert_allclose(read_tensor(head["grads"][0], blobs[0]), gw, rtol=1e-6)
    np.testing.assert_allclose(read_tensor(head["grads"][1], blobs[1]), gb, rtol=1e-6)


def test_unknown_hash_is_409_plan_not_cached(make_client) -> None:
    c = make_client()
    h = graph_hash(seed_request(xs(0))["graph"])
    b = problem(c.post("/v1/grad", json=by_hash(seed_request(xs(0)), h)), 409, "plan-not-cached")
    assert b["errors"][0]["loc"] == ["graph", "hash"] and h in b["detail"]
    assert_still_serving(c, xs(0))
    check_seed(c.post("/v1/grad", json=by_hash(seed_request(xs(1)), h)), xs(1))  # now it is known


def test_without_a_cache_no_hash_is_offered_or_accepted(make_client) -> None:
    c = make_client(plan_cache_size=0)
    r = c.post("/v1/grad", json=seed_request(xs(0)))
    check_seed(r, xs(0))
    assert HASH_HEADER not in r.headers
    h = graph_hash(seed_request(xs(0))["graph"])
    b = problem(c.post("/v1/grad", json=by_hash(seed_request(xs(0)), h)), 409, "plan-not-cached")
    assert "plan_cache_size" in b["detail"]


def test_least_recently_used_plan_is_evicted(make_client) -> None:
    c = make_client(plan_cache_size=2)
    graphs = []
    for k in (2, 3, 4):  # three graphs: loss = mean(r ** k)
        req = seed_request(xs(0))
        req["graph"]["nodes"][5]["inputs"] = ["r", k]
        assert c.post("/v1/grad", json=req).status_code == 200
        graphs.append(req)
    hashes = [graph_hash(g["graph"]) for g in graphs]
    assert len(set(hashes)) == 3
    problem(c.post("/v1/grad", json=by_hash(graphs[0], hashes[0])), 409, "plan-not-cached")
    r = c.post("/v1/grad", json=by_hash(graphs[2], hashes[2]))
    assert r.status_code == 200, r.text
    # mean((y - q) ** 4) with the seed's y = 2x + 1, q = 0.5 x + 0.9: d/db = -4 mean(r ** 3)
    x = xs(0).astype(np.float64)
    rr = 2 * x + 1 - (0.5 * x + 0.9)
    np.testing.assert_allclose(read_tensor(r.json()["grads"][1]), [-4 * np.mean(rr ** 3)], rtol=1e-5)
    assert c.app.state.plan_cache.stats()["evictions"] >= 1


def test_another_graph_never_runs_a_cached_plan(make_client) -> None:
    # The server keys plans by the hash it computes itself: a different graph is a miss and runs
    # its own nodes, whatever else the request says.
    c = make_client()
    c.post("/v1/grad", json=seed_request(xs(0)))
    other = seed_request(xs(0))
    other["graph"]["nodes"][4]["op"] = "add"  # r = y + q instead of y - q
    r = c.post("/v1/grad", json=other)
    assert r.status_code == 200, r.text
    x = xs(0).astype(np.float64)
    rr = 2 * x + 1 + (0.5 * x + 0.9)
    np.testing.assert_allclose(read_tensor(r.json()["grads"][1]), [2 * np.mean(rr)], rtol=1e-5)
    assert c.app.state.plan_cache.stats()["misses"] == 2
    # a full graph together with a hash is refused: the hash can never be attached to other nodes
    both = seed_request(xs(0))
    both["graph"]["hash"] = graph_hash(seed_request(xs(0))["graph"])
    problem(c.post("/v1/grad", json=both), 422, "invalid-request")


def test_a_cached_graph_is_still_validated_around_its_nodes(make_client) -> None:
    c = make_client()
    h = c.post("/v1/grad", json=seed_request(xs(0))).headers[HASH_HEADER]
    b = problem(c.post("/v1/grad", json=seed_request(xs(0), outputs=["nope"])), 422, "invalid-graph")
    assert b["errors"][0]["loc"] == ["outputs", 0]
    junk = seed_request(xs(0))
    junk["graph"]["junk"] = 1
    problem(c.post("/v1/grad", json=junk), 422, "invalid-request")
    bad_x = seed_request(xs(0))
    bad_x["graph"]["inputs"][2]["shape"] = [99]
    problem(c.post("/v1/grad", json=bad_x), 422, "invalid-request")
    renamed = by_hash(seed_request(xs(0)), h)
    renamed["graph"]["inputs"][2]["name"] = "z"
    b = problem(c.post("/v1/grad", json=renamed), 422, "invalid-request")
    assert b["errors"][0]["loc"] == ["graph", "inputs"]
    for bad in ("sha256:abc", "md5:" + "0" * 32, 42):
        problem(c.post("/v1/grad", json=by_hash(seed_request(xs(0)), bad)), 422, "invalid-request")
    big = by_hash(seed_request(xs(0)), h)
    big["graph"]["inputs"][2] = wire_tensor("x", np.zeros(11, np.float32))
    c2 = make_client(max_tensor_elements=10)
    c2.post("/v1/grad", json=seed_request(xs(0)[:10]))
    problem(c2.post("/v1/grad", json=big), 413, "payload-too-large")
    assert_still_serving(c, xs(0))


def test_source_graphs_are_cached_too(make_client) -> None:
    c = make_client()
    h = c.post("/v1/grad", json=seed_request(xs(0), form="source")).headers[HASH_HEADER]
    check_seed(c.post("/v1/grad", json=seed_request(xs(5), form="source")), xs(5))
    check_seed(c.post("/v1/grad", json=by_hash(seed_request(xs(6), form="source"), h)), xs(6))
    assert c.app.state.plan_cache.stats()["hits"] == 2


# ---------------------------------------------------------------- inline dispatch
@pytest.fixture
def gate_calls(monkeypatch):
    """Counts the jobs that go through the engine gate (the rest ran on the event loop)."""
    from service.gate import Gate
    calls = []
    run = Gate.run

    async def counting(self, fn, timeout):
        calls.append(fn)
        return await run(self, fn, timeout)

    monkeypatch.setattr(Gate, "run", counting)
    return calls


def test_a_fast_cached_plan_skips_the_thread_hand_off(make_client, gate_calls) -> None:
    c = make_client(inline_max_ms=1000.0)
    check_seed(c.post("/v1/grad", json=seed_request(xs(0))), xs(0))
    assert len(gate_calls) == 1  # unknown graph: an engine thread
    for seed in (1, 2):
        check_seed(c.post("/v1/grad", json=seed_request(xs(seed))), xs(seed))
    assert len(gate_calls) == 1  # known and fast: inline
    bigger = seed_request(np.random.default_rng(0).random(200).astype(np.float32))
    assert c.post("/v1/grad", json=bigger).status_code == 200
    assert len(gate_calls) == 2  # bigger inputs than any measured run: an engine thread again


def test_slow_plans_and_disabled_inlining_use_engine_threads(make_client, gate_calls, monkeypatch) -> None:
    def sleep(input):
        time.sleep(0.005)
        return input * 1

    monkeypatch.setitem(engine.OPS, "test.sleep5ms",
                        engine.OpInfo("test.sleep5ms", sleep, ("input",), inspect.signature(sleep), 1))
    slow = {"graph": {"inputs": [wire_tensor("x", np.ones(3, np.float32), requires_grad=True)],
                      "source": "y = test.sleep5ms(x)\nl = sum(y * y)"}, "outputs": "l", "inputs": "x"}
    c = make_client(inline_max_ms=1.0)
    for _ in range(3):
        r = c.post("/v1/grad", json=slow)
        assert r.status_code == 200 and read_tensor(r.json()["grads"][0]).tolist() == [2.0, 2.0, 2.0]
    assert len(gate_calls) == 3
    off = make_client(inline_max_ms=0)
    for seed in (0, 1, 2):
        check_seed(off.post("/v1/grad", json=seed_request(xs(seed))), xs(seed))
    assert len(gate_calls) == 6
