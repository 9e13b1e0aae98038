"""503 when every engine slot and queue place is taken; 504 past the request deadline.

A test-only op (``test.block``, added to ``engine.OPS`` for the test) waits on an event, so a
request can be held inside the engine for exactly as long as a test needs. That the service picks
it up at all also shows that ops are resolved only through ``engine.OPS``.
"""

from __future__ import annotations

import inspect
import threading
import time

import numpy as np
import pytest

import engine

from .helpers import read_tensor, seed_request, seed_torch, wire_tensor
from .test_errors import assert_still_serving, problem


@pytest.fixture
def blocker(monkeypatch):
    """Registers ``test.block(x)``: returns ``x * 1`` once ``release`` is set."""
    started, release = threading.Event(), threading.Event()

    def block(input):
        started.set()
        release.wait(30)
        return input * 1

    info = engine.OpInfo("test.block", block, ("input",), inspect.signature(block), 1)
    monkeypatch.setitem(engine.OPS, "test.block", info)
    yield started, release
    release.set()


def blocked_request() -> dict:
    return {"graph": {"inputs": [wire_tensor("x", np.array([1.0, 2.0]), requires_grad=True)],
                      "source": "y = test.block(x)\nl = sum(y * y)"}, "outputs": "l", "inputs": "x"}


def wait_until(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.005)


def test_503_when_overloaded_then_serves_again(make_client, blocker, x100):
    started, release = blocker
    c = make_client(max_concurrency=1, max_queue=0, retry_after_s=2)
    results = {}
    t = threading.Thread(target=lambda: results.setdefault("slow", c.post("/v1/grad",
                                                                          json=blocked_request())))
    t.start()
    assert started.wait(10)
    r = c.post("/v1/grad", json=seed_request(x100))
    b = problem(r, 503, "overloaded")
    assert r.headers["retry-after"] == "2"
    assert "max_concurrency" in b["detail"]
    # health stays responsive while the engine is busy
    assert c.get("/health/live").status_code == 200
    release.set()
    t.join(10)
    assert results["slow"].status_code == 200, results["slow"].text
    np.testing.assert_allclose(read_tensor(results["slow"].json()["grads"][0]), [2.0, 4.0])
    assert_still_serving(c, x100)


def test_queued_request_waits_for_a_slot(make_client, blocker, x100):
    started, release = blocker
    c = make_client(max_concurrency=1, max_queue=4)
    gate = c.app.state.gate
    results = {}
    slow = threading.Thread(target=lambda: results.setdefault("slow", c.post("/v1/grad",
                                                                             json=blocked_request())))
    slow.start()
    assert started.wait(10)
    queued = threading.Thread(target=lambda: results.setdefault("q", c.post("/v1/grad",
                                                                            json=seed_request(x100))))
    queued.start()
    wait_until(lambda: gate.waiting == 1)
    assert "q" not in results
    release.set()
    slow.join(10)
    queued.join(10)
    assert results["slow"].status_code == 200 and results["q"].status_code == 200, results["q"].text
    gw, _, _ = seed_torch(x100)
    np.testing.assert_allclose(read_tensor(results["q"].json()["grads"][0]), gw, rtol=1e-6)
    wait_until(lambda: gate.active == 0)


def test_504_when_the_engine_runs_past_the_deadline(make_client, blocker, x100):
    started, release = blocker
    c = make_client(request_timeout_s=0.3, max_concurrency=2)
    t0 = time.monotonic()
    r = c.post("/v1/grad", json=blocked_request())
    elapsed = time.monotonic() - t0
    b = problem(r, 504, "timeout")
    assert "request_timeout_s" in b["detail"]
    assert elapsed < 5
    # the abandoned job still holds its slot until it really stops
    assert c.app.state.gate.active == 1
    release.set()
    wait_until(lambda: c.app.state.gate.active == 0)
    assert_still_serving(c, x100)


@pytest.fixture
def sleeper_and_counter(monkeypatch):
    """``test.sleep(x, seconds)`` sleeps then returns ``x * 1``; ``test.count(x)`` counts its calls."""
    calls = []

    def sleep(input, seconds):
        time.sleep(seconds)
        return input * 1

    def count(input):
        calls.append(1)
        return input * 1

    for name, fn in (("test.sleep", sleep), ("test.count", count)):
        monkeypatch.setitem(engine.OPS, name, engine.OpInfo(name, fn, ("input",), inspect.signature(fn), 1))
    return calls


def test_504_stops_a_graph_between_nodes(make_client, sleeper_and_counter, x100):
    calls = sleeper_and_counter
    c = make_client(request_timeout_s=0.2)
    src = ("y = test.sleep(x, 0.25)\n" + "".join(f"z{i} = test.count(y)\n" for i in range(20))
           + "l = sum(z19)\n")
    req = {"graph": {"inputs": [wire_tensor("x", np.ones(3), requires_grad=True)], "source": src},
           "outputs": "l", "inputs": "x"}
    r = c.post("/v1/grad", json=req)
    b = problem(r, 504, "timeout")
    # the cooperative check between nodes answered (naming where it stopped), and no later node ran
    assert "stopped before line 2, col 6 (test.count -> z0)" in b["detail"], b["detail"]
    assert calls == []
    wait_until(lambda: c.app.state.gate.active == 0)
    assert_still_serving(c, x100)
