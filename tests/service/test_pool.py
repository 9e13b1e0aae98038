"""The worker pool (``isolation=process``, :mod:`service.pool`) in-process, through the app.

Slow or hungry requests come from the debug ops (``debug.spin``, ``debug.alloc``), which take
wall time or memory whatever the machine: no workload here is sized by timing. Expensive but
well-shaped requests (the compiled, warm path) are matmul chains whose static cost is above the
inline bound; torch computes their expected gradients.
"""

from __future__ import annotations

import base64
import gc
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
import torch
from fastapi.testclient import TestClient

from bench.work import sleep_chain
from service import pool
from service.app import create_app
from service.settings import Settings

from .helpers import read_tensor

MB = 1 << 20
pytestmark = pytest.mark.skipif(not pool.available(), reason="the worker pool needs Linux (fork, memfd)")


def _b64(a: np.ndarray) -> dict:
    raw = a.astype("<f8").tobytes()
    return {"datatype": "FP64", "shape": list(a.shape), "b64": base64.b64encode(raw).decode()}


def _chain(x: np.ndarray, source: str = "y = matmul(x, x)\nz = matmul(y, x)\nl = sum(tanh(z))") -> dict:
    """A statically expensive request (three n x n matmuls forward, more backward)."""
    return {"graph": {"inputs": [{"name": "x", **_b64(x), "requires_grad": True}], "source": source},
            "outputs": "l", "inputs": "x", "return": ["l"]}


def _torch_chain(x: np.ndarray) -> tuple[np.ndarray, float]:
    t = torch.tensor(x, requires_grad=True)
    loss = torch.tanh(t @ t @ t).sum()
    loss.backward()
    return t.grad.numpy(), loss.item()


def _small(seconds: float = 0.0, op: str = "debug.sleep") -> dict:
    """Cheap but not statically cheap: an op from outside the engine always goes to a worker."""
    return {"graph": {"inputs": [{"name": "x", "datatype": "FP64", "shape": [3], "data": [1.0, 2.0, 3.0],
                                  "requires_grad": True}],
                      "source": f"y = {op}(x, {seconds})\nl = sum(y * y)"}, "outputs": "l", "inputs": "x"}


def _ok_small(c) -> None:
    r = c.post("/v1/grad", json=_small())
    assert r.status_code == 200, r.text[:500]
    assert r.json()["grads"][0]["data"] == [2.0, 4.0, 6.0]


def _problem(r, status: int) -> dict:
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"] == "application/problem+json"
    return r.json()


def _children_states() -> dict[int, str]:
    """This process's child processes and their states (``Z``: a zombie nobody reaped)."""
    kids: dict[int, str] = {}
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except FileNotFoundError:
                continue
            kids[int(pid)] = stat.rsplit(")", 1)[1].split()[0]
    return kids


def _gone(pid: int) -> bool:
    """Exited and reaped (a zombie still has its /proc entry)."""
    return not Path(f"/proc/{pid}").exists()


def _wait(cond, what: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, what
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def _own_pool():
    """The pool is the process's: module-scoped apps of other test modules (run by the same xdist
    worker between these tests) may hold it. Each test here starts without workers or users."""
    pool.POOL.shutdown()
    yield


@pytest.fixture
def pooled(make_client):
    def make(**kw):
        return make_client(**{"isolation": "process", "debug_ops": True, "pool_size": 2, **kw})
    return make


def test_workers_are_forked_at_start_and_reaped_at_shutdown() -> None:
    with TestClient(create_app(Settings(isolation="process", pool_size=2, api_keys=[]))):  # lifespan
        pids = pool.POOL.pids()
        assert len(pids) == 2 and set(pids) <= set(_children_states())
    assert pool.POOL.pids() == []
    for pid in pids:
        _wait(lambda pid=pid: _gone(pid), f"worker {pid} still exists (or is a zombie) after shutdown")


def test_expensive_requests_run_warm_in_one_worker_and_match_torch(pooled) -> None:
    c = pooled()
    spawned = pool.POOL.stats()["spawned"]
    rng = np.random.default_rng(0)
    n = 600
    source_b = "y = matmul(x, x)\nz = matmul(y, x)\nl = sum(sin(z))"
    for i in range(3):
        x = rng.standard_normal((n, n)) / n
        r = c.post("/v1/grad", json=_chain(x))
        assert r.status_code == 200, r.text[:500]
        g, loss = _torch_chain(x)
        np.testing.assert_allclose(read_tensor(r.json()["grads"][0]), g, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(read_tensor(r.json()["values"]["l"]), loss, rtol=1e-9)
    key = r.headers["gradserve-graph-hash"]
    holders = [w for w in pool.POOL._workers if key in w.plans]
    assert len(holders) == 1 and holders[0].jobs == 3  # affinity: one worker ran all three
    r = c.post("/v1/grad", json=_chain(rng.standard_normal((n, n)) / n, source_b))
    assert r.status_code == 200, r.text[:500]
    other = r.headers["gradserve-graph-hash"]
    assert [w for w in pool.POOL._workers if other in w.plans] != holders  # the free, emptier one
    assert pool.POOL.stats()["spawned"] == spawned  # no worker was replaced


def test_the_static_bound_decides_what_leaves_the_server(pooled) -> None:
    c = pooled()
    r = c.post("/v1/grad", json={"graph": {"inputs": [{"name": "x", "datatype": "FP64", "shape": [3],
                                                       "data": [1.0, 2.0, 3.0], "requires_grad": True}],
                                           "source": "l = sum(x * x)"}, "outputs": "l", "inputs": "x"})
    assert r.status_code == 200
    assert all(w.jobs == 0 for w in pool.POOL._workers)  # statically cheap: it ran in the server


def test_memory_past_the_limit_fails_only_its_job(pooled) -> None:
    c = pooled(max_memory_bytes=100 * MB)
    req = {"graph": {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [1.0, 2.0]}],
                     "source": f"y = debug.alloc(x, {4 << 30})\nl = sum(y)"}, "return": ["l"]}
    body = _problem(c.post("/v1/grad", json=req), 413)
    assert body["limit"] == "memory" and "memory" in body["detail"]
    _ok_small(c)
    ok = {"graph": {"inputs": req["graph"]["inputs"], "source": f"y = debug.alloc(x, {50 * MB})\nl = sum(y)"},
          "return": ["l"]}
    r = c.post("/v1/grad", json=ok)
    assert r.status_code == 200 and r.json()["values"]["l"]["data"] == [3.0], r.text[:300]


def test_past_the_deadline_the_worker_is_killed_and_replaced(pooled) -> None:
    c = pooled(request_timeout_s=1.0, pool_size=1)
    (victim,) = pool.POOL.pids()
    killed = pool.POOL.stats()["killed"]
    body = _problem(c.post("/v1/grad", json=sleep_chain(30.0, step=30.0, op="debug.spin")), 504)
    assert "request_timeout_s" in body["detail"]
    # the engine thread kills the worker half a second past the deadline, reaps it and frees its slot
    _wait(lambda: pool.POOL.stats()["killed"] == killed + 1 and _gone(victim), "the worker was not killed")
    # and a new one is forked in its place, before any request asks for it
    _wait(lambda: len(pool.POOL.pids()) == 1 and victim not in pool.POOL.pids(), "no worker took its place")
    _ok_small(c)


def test_a_worker_killed_while_idle_is_replaced(pooled) -> None:
    c = pooled()
    replaced = pool.POOL.stats()["replaced"]
    _ok_small(c)
    dead = pool.POOL.pids()
    for pid in dead:
        os.kill(pid, signal.SIGKILL)
    _wait(lambda: all(_children_states().get(p) in (None, "Z") for p in dead), "not dead")
    for _ in range(3):
        _ok_small(c)
    assert pool.POOL.stats()["replaced"] >= replaced + 2
    assert "Z" not in _children_states().values()  # every dead worker was reaped
    _wait(lambda: len(pool.POOL.pids()) == 2 and not set(dead) & set(pool.POOL.pids()), "not replaced")


def test_a_hung_worker_does_not_hold_up_the_others(pooled) -> None:
    c = pooled(request_timeout_s=20.0, max_concurrency=2)
    out = {}
    hung = threading.Thread(target=lambda: out.setdefault(
        "r", c.post("/v1/grad", json=sleep_chain(60.0, step=60.0, op="debug.spin"))))
    hung.start()
    _wait(lambda: pool.POOL.stats()["busy"] == 1, "the spinning request never reached a worker")
    for _ in range(3):
        _ok_small(c)  # the other worker answers, while the first spins for 60 s
    assert hung.is_alive() and "r" not in out
    assert c.get("/health/ready").status_code == 200
    pool.POOL.shutdown()  # kills the spinning worker: its request ends now, not in 20 s
    hung.join(30)
    assert out["r"].status_code == 413, out["r"].text[:300]


def test_rss_growth_past_the_bound_recycles_the_worker(pooled) -> None:
    c = pooled(pool_max_rss_bytes=1, pool_size=1)  # any growth at all
    (first,) = pool.POOL.pids()
    recycled = pool.POOL.stats()["recycled"]
    _ok_small(c)
    assert pool.POOL.stats()["recycled"] == recycled + 1 and _gone(first)
    _ok_small(c)
    assert pool.POOL.stats()["recycled"] == recycled + 2


def test_grad_outputs_in_a_binary_body_reach_the_worker(pooled) -> None:
    c = pooled()
    x = np.array([1.0, 2.0, 3.0])
    v = np.array([0.5, -1.0, 2.0])
    blob = {"datatype": "FP64", "shape": [3], "parameters": {"binary_data_size": 24}}
    header = orjson.dumps({"graph": {"inputs": [{"name": "x", **blob, "requires_grad": True}],
                                     "source": "y = debug.sleep(x, 0)\nz = y * y"},
                           "outputs": "z", "inputs": "x", "grad_outputs": [blob]})
    r = c.post("/v1/grad", content=header + x.astype("<f8").tobytes() + v.astype("<f8").tobytes(),
               headers={"content-type": "application/octet-stream",
                        "inference-header-content-length": str(len(header))})
    assert r.status_code == 200, r.text[:300]
    t = torch.tensor(x, requires_grad=True)
    (t * t).backward(torch.tensor(v))
    np.testing.assert_allclose(read_tensor(r.json()["grads"][0]), t.grad.numpy())
    assert sum(w.jobs for w in pool.POOL._workers) == 1


def test_fork_per_request_is_still_there(make_client) -> None:
    c = make_client(isolation="fork", debug_ops=True, max_memory_bytes=100 * MB)
    assert pool.POOL.pids() == []  # no pool for it
    _ok_small(c)
    req = {"graph": {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [1.0, 2.0]}],
                     "source": f"y = debug.alloc(x, {4 << 30})\nl = sum(y)"}, "return": ["l"]}
    assert _problem(c.post("/v1/grad", json=req), 413)["limit"] == "memory"


# ---------------------------------------------------------------- warm replay (service.compiled.execute_warm)
def _checked(source: str, x: np.ndarray, graph=None):
    from service.core import parse_request
    from service.executor import build_plan
    from service.run import checked_plan

    inputs = [{"name": "x", **_b64(x), "requires_grad": True}]
    req = parse_request({"graph": {"inputs": inputs, "source": source}, "outputs": "l", "inputs": "x",
                         "return": ["l", "y"]})
    return checked_plan(build_plan(req, None, graph))


def test_a_warm_replay_gives_the_eager_numbers_to_the_last_bit() -> None:
    from collections import OrderedDict

    from service.compiled import execute_warm
    from service.run import execute

    source = "y = matmul(x, x)\nz = matmul(y, x)\nl = sum(tanh(z))"
    rng = np.random.default_rng(1)
    programs: OrderedDict = OrderedDict()
    graph = None
    for _ in range(4):  # the first call runs eagerly, the second traces, the others replay
        c = _checked(source, rng.standard_normal((20, 20)), graph)
        graph = c.plan.graph
        warm, eager = execute_warm(c, "k", programs), execute(c)
        assert np.array_equal(warm.grads[0], eager.grads[0])
        assert all(np.array_equal(warm.values[k], eager.values[k]) for k in ("l", "y"))
    (run,) = programs.values()
    assert len(run.fn.programs()) == 1 and run.fn.eager_reasons() == []
    for _ in range(2):  # another signature: another program
        c = _checked(source, rng.standard_normal((7, 7)), graph)
        assert np.array_equal(execute_warm(c, "k", programs).grads[0], execute(c).grads[0])
    assert len(programs) == 2 and all(fn is not None for fn in programs.values())


def test_plans_sized_by_values_are_not_compiled() -> None:
    from collections import OrderedDict

    from service import debug_ops
    from service.compiled import execute_warm

    debug_ops.install()
    programs: OrderedDict = OrderedDict()
    c = _checked("y = debug.sleep(x, 0)\nl = sum(y * y)", np.array([1.0, 2.0]))
    assert c.report.value_dependent  # an op from outside the engine: its shapes are not known
    for _ in range(3):
        np.testing.assert_array_equal(execute_warm(c, "k", programs).grads[0], [2.0, 4.0])
    assert not programs


def test_an_op_registered_after_the_workers_were_forked_still_runs_isolated(pooled, monkeypatch) -> None:
    import inspect

    import engine

    def twice(input):  # noqa: A002 - torch's argument name
        return input * 2

    c = pooled()
    old = set(pool.POOL.pids())
    monkeypatch.setitem(engine.OPS, "test.twice", engine.OpInfo("test.twice", twice, ("input",),
                                                                inspect.signature(twice), 1))
    for _ in range(3):  # first in a child forked for it; the stale worker is replaced by one that has it
        r = c.post("/v1/grad", json={"graph": {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2],
                                                           "data": [1.0, 2.0], "requires_grad": True}],
                                               "source": "y = test.twice(x)\nl = sum(y * y)"},
                                     "outputs": "l", "inputs": "x"})
        assert r.status_code == 200, r.text[:300]
        assert r.json()["grads"][0]["data"] == [8.0, 16.0]  # d sum((2x)^2)/dx = 8x
    assert old - set(pool.POOL.pids())  # at least one stale worker was replaced


def test_a_worker_whose_socket_is_past_descriptor_1024_serves(pooled) -> None:
    import resource

    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1200:
        pytest.skip("needs 1200 open files (ulimit -n)")
    # The collector runs first: a socket an earlier test leaked, closed by it while this app
    # starts, would free a descriptor below 1024 for the worker's socketpair to take (the likely
    # cause of this test's one failure in a full run, unconfirmed: it printed no descriptors).
    gc.collect()
    held = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]  # select() stops at 1024
    try:
        c = pooled(pool_size=1)
        fds = [w.sock.fileno() for w in pool.POOL._workers]
        assert len(fds) == 1 and fds[0] > 1024, (fds, pool.POOL.stats())
        _ok_small(c)
        _ok_small(c)
    finally:
        for fd in held:
            os.close(fd)


def test_a_job_its_worker_never_took_goes_to_another(pooled) -> None:
    c = pooled(pool_size=1)
    (stuck,) = pool.POOL.pids()
    os.kill(stuck, signal.SIGSTOP)  # alive, but it will not read the job sent to it
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", c.post("/v1/grad", json=_small())))
    t.start()
    _wait(lambda: pool.POOL.stats()["busy"] == 1, "the request never reached the worker")
    time.sleep(0.2)  # (the job is in its socket by now; were it not, the worker is found dead first)
    os.kill(stuck, signal.SIGKILL)
    t.join(30)
    assert out["r"].status_code == 200, out["r"].text[:300]
    assert out["r"].json()["grads"][0]["data"] == [2.0, 4.0, 6.0]
    assert stuck not in pool.POOL.pids() and _gone(stuck)


def test_the_pool_s_state_and_events_are_in_the_metrics(pooled) -> None:
    from prometheus_client import REGISTRY

    def metric(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    def event(name: str) -> float:
        return metric("gradserve_pool_worker_events_total", event=name)

    before = {e: event(e) for e in ("spawned", "killed")}
    killed = pool.POOL.stats()["killed"]
    c = pooled(request_timeout_s=1.0, pool_size=1)
    assert metric("gradserve_pool_workers") == 1 and metric("gradserve_pool_busy_workers") == 0
    assert event("spawned") == before["spawned"] + 1
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", c.post("/v1/grad", json=_small(0.5))))
    t.start()
    _wait(lambda: metric("gradserve_pool_busy_workers") == 1, "the busy worker is not in the metrics")
    t.join(30)
    assert out["r"].status_code == 200 and metric("gradserve_pool_busy_workers") == 0
    _problem(c.post("/v1/grad", json=sleep_chain(30.0, step=30.0, op="debug.spin")), 504)
    _wait(lambda: pool.POOL.stats()["killed"] == killed + 1, "the worker was not killed")
    _ok_small(c)  # (the pool reports at each job)
    assert event("killed") == before["killed"] + 1
    assert event("spawned") == before["spawned"] + 2  # its replacement
    assert metric("gradserve_pool_workers") == 1
    text = c.get("/metrics").text
    assert "# TYPE gradserve_pool_busy_workers gauge" in text
    assert "gradserve_pool_worker_events_total{" in text
