"""The worker pool against a real uvicorn: workers are the server's child processes, killed from
outside, hung past their deadline, and stopped with the server on SIGTERM, leaving no process
and no zombie behind.

The memory limit and the peak RSS under attack are tests/e2e/test_isolation.py's (the pool is the
default isolation); slow work is ``debug.spin`` (GRADSERVE_DEBUG_OPS), never a timed workload.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from bench.work import DEBUG_ENV, sleep_chain
from service import pool

pytestmark = pytest.mark.skipif(not pool.available(), reason="the worker pool needs Linux (fork, memfd)")

POOL_ENV = {**DEBUG_ENV, "GRADSERVE_ISOLATION": "process", "GRADSERVE_POOL_SIZE": "2"}


def children(pid: int) -> dict[int, str]:
    """The child processes of ``pid`` and their states (``Z``: exited, not reaped)."""
    kids: dict[int, str] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            listed = (task / "children").read_text().split()
        except FileNotFoundError:
            continue
        for k in listed:
            try:
                kids[int(k)] = Path(f"/proc/{k}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                pass
    return kids


def wait_for(cond, what: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, what
        time.sleep(0.02)


def small(op: str = "debug.sleep", seconds: float = 0.0) -> dict:
    """Cheap, but never statically cheap (an op from outside the engine): it goes to a worker."""
    return {"graph": {"inputs": [{"name": "x", "datatype": "FP64", "shape": [3], "data": [1.0, 2.0, 3.0],
                                  "requires_grad": True}],
                      "source": f"y = {op}(x, {seconds})\nl = sum(y * y)"}, "outputs": "l", "inputs": "x"}


def assert_ok(url: str) -> None:
    r = httpx.post(f"{url}/v1/grad", json=small(), timeout=30)
    assert r.status_code == 200, r.text[:300]
    assert r.json()["grads"][0]["data"] == [2.0, 4.0, 6.0]


def test_a_worker_killed_from_outside_is_replaced_and_reaped(make_server) -> None:
    server = make_server(env=POOL_ENV)
    workers = children(server.proc.pid)
    assert len(workers) == 2, workers  # forked at start-up
    assert_ok(server.url)
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    for _ in range(4):
        assert_ok(server.url)
    now = children(server.proc.pid)
    assert "Z" not in now.values(), now  # the dead were reaped
    assert not set(now) & set(workers) and 1 <= len(now) <= 2, now


def test_a_hung_worker_is_killed_at_its_deadline_while_the_others_serve(make_server) -> None:
    server = make_server(env={**POOL_ENV, "GRADSERVE_REQUEST_TIMEOUT_S": "3",
                              "GRADSERVE_MAX_CONCURRENCY": "2"})
    before = set(children(server.proc.pid))
    out = {}
    hung = threading.Thread(target=lambda: out.setdefault("r", httpx.post(
        f"{server.url}/v1/grad", json=sleep_chain(60.0, step=60.0, op="debug.spin"), timeout=60)))
    hung.start()
    wait_for(lambda: httpx.get(f"{server.url}/health/ready").json()["active"] == 1, "never started")
    served = 0
    while hung.is_alive():  # meanwhile: health answers, and the other worker serves requests
        assert httpx.get(f"{server.url}/health/live", timeout=5).status_code == 200
        if served < 3:
            assert_ok(server.url)
            served += 1
        time.sleep(0.05)
    assert served >= 1  # (3 unless the machine stalls for seconds)
    r = out["r"]
    assert r.status_code == 504 and r.headers["content-type"] == "application/problem+json", r.text[:300]
    assert "request_timeout_s" in r.json()["detail"]
    # the spinning worker is killed half a second after the deadline, reaped, and replaced at once
    wait_for(lambda: len(before - set(children(server.proc.pid))) == 1, "the hung worker is still there")
    wait_for(lambda: len(children(server.proc.pid)) == 2, "no worker took the hung one's place")
    assert_ok(server.url)
    assert "Z" not in children(server.proc.pid).values()


def test_sigterm_stops_every_worker(make_server) -> None:
    server = make_server(env=POOL_ENV)
    assert_ok(server.url)
    workers = children(server.proc.pid)
    assert len(workers) == 2, workers
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) in (0, -signal.SIGTERM)
    # stopped and reaped by the server before it exited: no worker is left running, or orphaned
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists(), (pid, Path(f"/proc/{pid}/stat").read_text())
