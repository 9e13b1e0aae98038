"""The client's side of the plan cache: canonical names, the graph hash, requests by hash, and
sending the whole graph again when the server answers 409 plan-not-cached.

The mock servers below answer fixed values; they compute the graph hash with the server's own
function (service.plan_cache.graph_hash) from the bytes the client actually sent, so a client
hash that drifted from the server's would make these tests fail.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest

from client import AsyncClient, Client, RetryPolicy, _graphs
from service.plan_cache import graph_hash as server_hash

FAST = RetryPolicy(retries=2, backoff=0.001, max_backoff=0.002)
HASH = "Gradserve-Graph-Hash"
GRAD = {"name": "w", "datatype": "FP32", "shape": [], "data": 3.0}


def record(c, xv: np.ndarray, name: str | None = None):
    """The seed example's loss, recorded anew (fresh tensors, fresh names) on every call."""
    w = c.tensor(0.5, requires_grad=True, name=name)
    x = c.tensor(xv)
    loss = ((2 * x + 1 - (w * x + 0.9)) ** 2).mean()
    return loss, w


class MockServer:
    """Answers like a server with a plan cache: a full graph is 'cached' under the hash the
    server would compute; a request by hash is answered if that hash is cached, else 409."""

    def __init__(self, confirm: bool = True) -> None:
        self.cached: set[str] = set()
        self.confirm = confirm
        self.kinds: list[str] = []
        self.bodies: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        graph = body["graph"]
        if "hash" in graph:
            self.kinds.append("hash")
            h = graph["hash"]
            if h not in self.cached:
                return httpx.Response(409, json={
                    "type": _graphs.PLAN_NOT_CACHED, "title": "Graph plan not cached", "status": 409,
                    "detail": f"graph.hash {h}: not cached", "errors": [{"loc": ["graph", "hash"],
                                                                          "msg": "not cached"}]})
        else:
            self.kinds.append("full")
            h = server_hash(graph)
            self.cached.add(h)
        values = {n: {"name": n, "datatype": "FP32", "shape": [], "data": 7.0}
                  for n in body.get("return", [])}
        headers = {HASH: h} if self.confirm else {}
        return httpx.Response(200, json={"grads": [GRAD], "values": values}, headers=headers)


def _client(server: MockServer) -> Client:
    return Client("http://test", transport=httpx.MockTransport(server), retries=FAST)


X = np.linspace(0, 1, 100, dtype=np.float32)


def test_recording_again_gives_the_same_wire_graph_and_hash() -> None:
    server = MockServer(confirm=False)
    c = _client(server)
    for _ in range(3):
        loss, w = record(c, X)
        c.autograd_grad(loss, [w])
    g0, g1, g2 = (b["graph"] for b in server.bodies)
    assert g0["nodes"] == g1["nodes"] == g2["nodes"]
    assert [t["name"] for t in g0["inputs"]] == [t["name"] for t in g2["inputs"]]
    assert server_hash(g0) == server_hash(g2) is not None
    # the printable request keeps the names as recorded
    loss, w = record(c, X)
    printed = json.loads(c.to_json(loss, [w]))
    assert printed["outputs"] == [loss.name] and printed["inputs"] == [w.name]


def test_the_client_hash_is_the_servers_hash_of_what_was_sent() -> None:
    server = MockServer(confirm=False)
    c = _client(server)
    graphs = []
    a = c.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True, name="β_input")
    b = c.tensor(1e20)
    y = (a * b * 1e-7 + 0.1)[0, 1:3].sum() + a[..., ::2].mean() - (-0.0 * a).sum()
    graphs.append((y, [a]))
    (ga,) = c.autograd_grad(y, [a], create_graph=True)  # a grad node in the graph
    graphs.append(((ga * ga).sum(), [a]))
    m = c.tensor(np.ones((3, 4)), requires_grad=True)
    graphs.append((c.nn.functional.softmax(m, dim=1).max(dim=0).values.sum(), [m]))
    for out, ins in graphs:
        server.bodies.clear()
        c.autograd_grad(out, ins)
        sent = server.bodies[-1]
        wire, _ = _graphs.canonical(sent, c._recorder._user)  # already canonical: unchanged
        assert wire == sent
        assert _graphs.graph_hash(sent["graph"]) == server_hash(sent["graph"])


def test_by_hash_once_confirmed_and_whole_again_after_a_miss() -> None:
    server = MockServer()
    c = _client(server)
    for _ in range(3):
        loss, w = record(c, X)
        (gw,), (lv,) = c.autograd_grad(loss, [w], return_values=[loss])
        assert gw == np.float32(3.0) and lv == np.float32(7.0) and loss.item() == 7.0
    assert server.kinds == ["full", "hash", "hash"]
    by_hash = server.bodies[1]
    assert set(by_hash["graph"]) == {"inputs", "hash"}
    assert by_hash["graph"]["hash"] == server_hash(server.bodies[0]["graph"])
    assert by_hash["return"] == server.bodies[0]["return"]  # canonical names on the wire
    server.cached.clear()  # a restarted replica
    loss, w = record(c, X)
    (gw,) = c.autograd_grad(loss, [w])
    assert gw == np.float32(3.0)
    assert server.kinds == ["full", "hash", "hash", "hash", "full"]  # 409, then the whole graph
    loss, w = record(c, X)
    c.autograd_grad(loss, [w])
    assert server.kinds[-1] == "hash"


def test_other_graphs_and_unconfirmed_hashes_go_whole() -> None:
    server = MockServer(confirm=False)
    c = _client(server)
    for _ in range(2):
        loss, w = record(c, X)
        c.autograd_grad(loss, [w])
    assert server.kinds == ["full", "full"]  # the server never said it caches plans
    server = MockServer()
    c = _client(server)
    loss, w = record(c, X)
    c.autograd_grad(loss, [w])
    loss, w = record(c, X)
    c.autograd_grad(loss * 2, [w])  # another graph
    assert server.kinds == ["full", "full"]


def test_a_409_that_is_not_a_plan_miss_is_an_error() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"type": "urn:x:other", "title": "t", "status": 409,
                                         "detail": "something else", "errors": []})

    c = Client("http://test", transport=httpx.MockTransport(answer), retries=FAST)
    loss, w = record(c, X)
    with pytest.raises(Exception, match="something else"):
        c.autograd_grad(loss, [w])


def test_user_names_are_kept_and_never_collide() -> None:
    server = MockServer(confirm=False)
    c = _client(server)
    w = c.tensor(0.5, requires_grad=True, name="t_1")   # a user name shaped like an automatic one
    x = c.tensor(X, name="mul_2")
    loss = (w * x * x).sum()
    c.autograd_grad(loss, [w])
    g = server.bodies[0]["graph"]
    names = [t["name"] for t in g["inputs"]] + [o for n in g["nodes"] for o in n["outputs"]]
    assert len(set(names)) == len(names)
    assert {"t_1", "mul_2"} <= set(names)
    assert server.bodies[0]["inputs"] == ["t_1"]


def test_async_client_resends_the_whole_graph_after_a_miss() -> None:
    server = MockServer()

    async def run() -> list:
        async with AsyncClient("http://test", transport=httpx.MockTransport(server), retries=FAST) as c:
            out = []
            for i in range(3):
                if i == 2:
                    server.cached.clear()
                loss, w = record(c, X)
                out.append(await c.autograd_grad(loss, [w]))
            return out

    results = asyncio.run(run())
    assert all(g == np.float32(3.0) for (g,) in results)
    assert server.kinds == ["full", "hash", "hash", "full"]


def test_embedded_mode_reuses_compiled_plans() -> None:
    import torch
    c = Client()
    for seed in range(3):
        xv = np.random.default_rng(seed).random(100).astype(np.float32)
        loss, w = record(c, xv)
        (gw,), (lv,) = c.autograd_grad(loss, [w], return_values=[loss])
        wt = torch.tensor(0.5, requires_grad=True)
        xt = torch.from_numpy(xv)
        lt = ((2 * xt + 1 - (wt * xt + 0.9)) ** 2).mean()
        (gt,) = torch.autograd.grad(lt, [wt])
        np.testing.assert_allclose(gw, gt.numpy(), rtol=1e-5)
        np.testing.assert_allclose(lv, lt.detach().numpy(), rtol=1e-6)
    stats = c._plan_cache.stats()
    assert stats["misses"] == 1 and stats["hits"] == 2
