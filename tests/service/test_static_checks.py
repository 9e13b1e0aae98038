"""The static check (service.preflight): a graph is checked whole, in meta mode, before anything runs.

Shapes, dtypes and limits are refused before a single tensor is computed: a probe op counts its
real runs (meta runs do not count), and tracemalloc shows what the process allocated.
"""

from __future__ import annotations

import inspect
import tracemalloc

import numpy as np
import pytest
import torch

import engine
from engine import _meta

from .helpers import read_tensor, wire_tensor
from .test_errors import assert_still_serving, locs, problem, torch_error


@pytest.fixture
def probe(monkeypatch):
    """``test.probe(x)``: ``x * 1``, counting its real runs (an engine-module op, so the static
    check runs it in meta mode like any engine op)."""
    runs: list[int] = []

    def probe_fn(input):
        if _meta._local.session is None:
            runs.append(1)
        return input * 1

    probe_fn.__module__ = "engine.test_probe"
    monkeypatch.setitem(engine.OPS, "test.probe", engine.OpInfo("test.probe", probe_fn, ("input",),
                                                              inspect.signature(probe_fn), 1))
    return runs


def _req(source: str, tensors: dict, **top) -> dict:
    ins = [wire_tensor(k, v, requires_grad=v.dtype.kind == "f") for k, v in tensors.items()]
    return {"graph": {"inputs": ins, "source": source}, **top}


# ---------------------------------------------------------------- shapes and dtypes, before running
def test_a_late_shape_error_is_found_before_the_first_node_runs(client, probe, x100):
    a, m = np.ones((2, 3), np.float32), np.ones((2, 3), np.float32)
    req = _req("p = test.probe(a)\nq = exp(p)\nr = q @ m\nl = sum(r)", {"a": a, "m": m},
               outputs="l", inputs="a")
    b = problem(client.post("/v1/grad", json=req), 422, "engine-error")
    exc, msg = torch_error(lambda: torch.ones(2, 3) @ torch.ones(2, 3))
    assert (b["exception"], b["detail"]) == (exc, msg)
    item = b["errors"][0]
    assert (item["line"], item["col"], item["node"]) == (3, 5, "r")
    assert item["shapes"] == {"q": [2, 3], "m": [2, 3]} and "q [2, 3], m [2, 3]" in item["msg"]
    assert probe == []  # nothing ran: not the probe, not exp
    assert_still_serving(client, x100)
    # the same graph with matching shapes runs, and the probe with it
    req = _req("p = test.probe(a)\nq = exp(p)\nr = q @ m\nl = sum(r)", {"a": a, "m": m.T.copy()},
               outputs="l", inputs="a")
    r = client.post("/v1/grad", json=req)
    assert r.status_code == 200, r.text
    assert probe == [1]


def test_broadcasting_error_names_the_node_and_both_shapes(client):
    req = {"graph": {"inputs": [wire_tensor("a", np.ones((2, 3)), requires_grad=True),
                                wire_tensor("c", np.ones((4,)))],
                     "nodes": [{"op": "mul", "inputs": ["a", 2.0], "outputs": ["t"]},
                               {"op": "add", "inputs": ["t", "c"], "outputs": ["u"]},
                               {"op": "sum", "inputs": ["u"], "outputs": ["l"]}]},
           "outputs": "l", "inputs": "a"}
    b = problem(client.post("/v1/grad", json=req), 422, "engine-error")
    exc, msg = torch_error(lambda: torch.ones(2, 3) + torch.ones(4))
    assert (b["exception"], b["detail"]) == (exc, msg)
    assert locs(b) == [["graph", "nodes", 1]] and b["errors"][0]["node"] == "u"
    assert b["errors"][0]["shapes"] == {"t": [2, 3], "c": [4]}


def test_errors_inside_a_grad_node_are_found_statically(client, probe):
    # the second grad node's grad_outputs do not match its output's shape
    src = ("y = test.probe(x) ** 3\ng, = grad(sum(y), x, create_graph=True)\n"
           "h, = grad(g, x, grad_outputs=[v])\n")
    req = _req(src, {"x": np.ones(3), "v": np.ones(2)}, **{"return": ["h"]})
    req["graph"]["inputs"][1]["requires_grad"] = False
    b = problem(client.post("/v1/grad", json=req), 422, "autograd-error")
    exc, msg = torch_error(lambda: torch.autograd.grad(torch.ones(3, requires_grad=True) * 2,
                                                       torch.ones(3, requires_grad=True), torch.ones(2)))
    assert b["exception"] == exc and "Mismatch in shape" in b["detail"] and "Mismatch in shape" in msg
    assert b["errors"][0]["line"] == 3
    assert probe == []


def test_the_final_autograd_grad_is_checked_too(client, probe):
    req = _req("y = test.probe(x) * 2", {"x": np.ones(3)}, outputs="y", inputs="x")
    b = problem(client.post("/v1/grad", json=req), 422, "autograd-error")
    exc, msg = torch_error(lambda: torch.autograd.grad(torch.ones(3, requires_grad=True) * 2,
                                                       torch.ones(3, requires_grad=True)))
    assert (b["exception"], b["detail"]) == (exc, msg)
    assert probe == []


def test_dtypes_that_cannot_require_grad(client, probe):
    # a computed integer tensor cannot be differentiated: found before running
    req = _req("k = test.probe(x)\ni = argmax(k)\n", {"x": np.ones(3)}, outputs="i", inputs="x")
    b = problem(client.post("/v1/grad", json=req), 422, "autograd-error")
    exc, msg = torch_error(lambda: torch.autograd.grad(torch.ones(3, requires_grad=True).argmax(),
                                                       torch.ones(3, requires_grad=True)))
    assert (b["exception"], b["detail"]) == (exc, msg)
    assert probe == []


def test_valid_graphs_still_compute_the_same(client):
    x = np.random.default_rng(0).standard_normal((3, 4))
    req = _req("y = softmax(x @ x.t(), 1)\nl = sum(y[:, 0] * x[:, 1])", {"x": x}, outputs="l", inputs="x",
               **{"return": ["y"]})
    r = client.post("/v1/grad", json=req)
    assert r.status_code == 200, r.text
    xt = torch.tensor(x, requires_grad=True)
    y = torch.softmax(xt @ xt.t(), 1)
    g, = torch.autograd.grad((y[:, 0] * xt[:, 1]).sum(), xt)
    np.testing.assert_allclose(read_tensor(r.json()["grads"][0]), g.numpy(), rtol=1e-10)
    np.testing.assert_allclose(read_tensor(r.json()["values"]["y"]), y.detach().numpy(), rtol=1e-10)


# ---------------------------------------------------------------- never allocated
def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@pytest.mark.parametrize("source, limit, settings", [
    ("y = expand(x, 100000, 10000000)\nl = sum(y)", "max_tensor_elements", {}),
    ("y = x @ x.t()\nl = sum(y)", "max_tensor_elements", {}),
    ("y = ones(100000, 100000)\nl = sum(y * x[0, 0])", "max_tensor_elements", {}),
    ("y = x @ x.t()\nl = sum(y)", "max_memory_bytes", {"max_tensor_elements": 10**11}),
    ("y = expand(x, 100000, 10000000)", "max_memory_bytes", {"max_tensor_elements": 10**13}),
])
def test_huge_results_are_refused_without_allocating(make_client, x100, source, limit, settings):
    c = make_client(**settings)
    x = np.ones((100_000, 1), np.float32)
    req = {"graph": {"inputs": [wire_tensor("x", x, requires_grad=True, encoding="b64")], "source": source},
           "return": ["y"]}
    if source.endswith("sum(y)") or "l =" in source:
        req.update(outputs="l", inputs="x")
    before = _rss()
    tracemalloc.start()
    try:
        r = c.post("/v1/grad", json=req)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    b = problem(r, 413, "payload-too-large")
    assert b["limit"] == limit and limit in b["detail"], b
    assert peak < 64 * 2**20, f"the request allocated {peak} bytes"
    assert _rss() - before < 64 * 2**20
    assert_still_serving(c, x100)


def test_memory_estimate_counts_what_backward_keeps(make_client, x100):
    # 20 tanh layers of 1000 x 1000 float64: 8 MB each, saved for backward (~160 MB at the peak)
    x = np.ones((1000, 1000))
    src = "h0 = x\n" + "".join(f"h{i + 1} = tanh(h{i})\n" for i in range(20)) + "l = sum(h20)\n"
    req = {"graph": {"inputs": [wire_tensor("x", x, requires_grad=True, encoding="b64")], "source": src},
           "outputs": "l", "inputs": "x"}
    small = make_client(max_memory_bytes=100 * 2**20)
    b = problem(small.post("/v1/grad", json=req), 413, "payload-too-large")
    assert b["limit"] == "max_memory_bytes"
    big = make_client(max_memory_bytes=400 * 2**20)
    r = big.post("/v1/grad", json=req)
    assert r.status_code == 200, r.text
    assert_still_serving(small, x100)


# ---------------------------------------------------------------- graph limits
def test_graph_depth_and_grad_node_limits(make_client, x100):
    c = make_client(max_graph_depth=10, max_grad_nodes=2)
    x = np.ones(3)
    deep = "y0 = x * 2\n" + "".join(f"y{i + 1} = y{i} * 2\n" for i in range(10))  # 11 deep
    b = problem(c.post("/v1/grad", json=_req(deep, {"x": x}, **{"return": ["y10"]})), 413)
    assert b["limit"] == "max_graph_depth" and "11 nodes deep" in b["detail"]
    wide = "".join(f"y{i} = x * {i}\n" for i in range(30))  # 30 nodes, depth 1: fine
    assert c.post("/v1/grad", json=_req(wide, {"x": x}, **{"return": ["y29"]})).status_code == 200
    grads = ("y = sum(x ** 4)\ng1, = grad(y, x, create_graph=True)\n"
             "g2, = grad(sum(g1), x, create_graph=True)\ng3, = grad(sum(g2), x)\n")
    b = problem(c.post("/v1/grad", json=_req(grads, {"x": x}, **{"return": ["g3"]})), 413)
    assert b["limit"] == "max_grad_nodes" and b["errors"][0]["loc"] == ["graph", "source"]
    assert b["errors"][0]["line"] == 4  # the first grad node over the limit
    ok = grads.rsplit("g3", 1)[0]
    r = c.post("/v1/grad", json=_req(ok, {"x": x}, **{"return": ["g2"]}))
    assert r.status_code == 200 and read_tensor(r.json()["values"]["g2"]).tolist() == [12.0] * 3
    assert_still_serving(c, x100)


def test_shapes_that_depend_on_values_are_left_to_the_run(client):
    # the mask's values are computed: the static check has only an upper bound for x[m]
    x = np.array([-1.0, 2.0, -3.0, 4.0])
    req = _req("m = x > 0\ny = x[m]\nl = sum(y * w)", {"x": x, "w": np.ones(2)}, outputs="l", inputs="x")
    r = client.post("/v1/grad", json=req)
    assert r.status_code == 200, r.text
    assert read_tensor(r.json()["grads"][0]).tolist() == [0.0, 1.0, 0.0, 1.0]
    # with the wrong number of weights the real run reports the error
    req = _req("m = x > 0\ny = x[m]\nl = sum(y * w)", {"x": x, "w": np.ones(3)}, outputs="l", inputs="x")
    b = problem(client.post("/v1/grad", json=req), 422, "engine-error")
    assert b["errors"][0]["line"] == 3
