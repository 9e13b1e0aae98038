"""Limits enforced by the operating system, against a real uvicorn: a computation runs in a worker
process (the default pool, service.pool) under RLIMIT_AS and is killed past its deadline; the
server's own peak RSS stays bounded.

Peak RSS is the kernel's high-water mark (``VmHWM``), reset before each case by writing 5 to
``/proc/<pid>/clear_refs``. Times are upper bounds over configured deadlines (seconds), never a
measure of the machine's speed; non-cooperative work is ``debug.spin`` (GRADSERVE_DEBUG_OPS).
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from bench.work import DEBUG_ENV, sleep_chain

MB = 1 << 20
MAX_MEMORY = 100 * MB
BOUND = int(1.25 * MAX_MEMORY) + 64 * MB  # the guarantee for one request's peak RSS growth


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def _reset_peak(pid: int) -> int:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    return _status(pid)["VmRSS"]


def _peak_growth(server, send) -> tuple[int, httpx.Response]:
    base = _reset_peak(server.proc.pid)
    r = send()
    return _status(server.proc.pid)["VmHWM"] - base, r


@pytest.fixture(scope="module", params=["process", "fork"])
def bounded(request):
    """A server whose computations run in its worker pool (process) or a child each (fork)."""
    from .conftest import Server

    server = Server(env={**DEBUG_ENV, "GRADSERVE_MAX_MEMORY_BYTES": str(MAX_MEMORY),
                         "GRADSERVE_REQUEST_TIMEOUT_S": "2", "GRADSERVE_MAX_CONCURRENCY": "1",
                         "GRADSERVE_ISOLATION": request.param})
    server.isolation = request.param
    yield server
    server.stop()


def _x(n: int = 4) -> dict:
    return {"name": "x", "datatype": "FP64", "shape": [n], "data": [1.0] * n, "requires_grad": True}


def test_memory_past_every_estimate_is_refused_by_the_os(bounded) -> None:
    req = {"graph": {"inputs": [_x()], "source": f"y = debug.alloc(x, {4 << 30})\nl = sum(y)"},
           "outputs": "l", "inputs": "x"}
    growth, r = _peak_growth(bounded, lambda: httpx.post(f"{bounded.url}/v1/grad", json=req, timeout=30))
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert growth <= BOUND, growth
    ok = {"graph": {"inputs": [_x()], "source": f"y = debug.alloc(x, {MAX_MEMORY // 2})\nl = sum(y)"},
          "outputs": "l", "inputs": "x"}
    r = httpx.post(f"{bounded.url}/v1/grad", json=ok, timeout=30)
    assert r.status_code == 200 and r.json()["grads"][0]["data"] == [1.0] * 4, r.text


def test_lapack_workspace_peak_rss(bounded) -> None:
    x = np.random.default_rng(0).standard_normal((2400, 2400))
    header = orjson.dumps({"graph": {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2400, 2400],
                                                 "parameters": {"binary_data_size": x.nbytes}}],
                                     "source": "y = sum(linalg.svdvals(x))"}, "return": ["y"]})
    body = header + x.tobytes()
    growth, r = _peak_growth(bounded, lambda: httpx.post(
        f"{bounded.url}/v1/grad", content=body, timeout=60,
        headers={"content-type": "application/octet-stream",
                 "inference-header-content-length": str(len(header))}))
    assert r.status_code == 413, r.text[:300]
    assert growth <= BOUND, growth


def test_json_parse_inflation_peak_rss(bounded) -> None:
    body = b'{"graph": {"inputs": [], "source": "y = 1"}, "pad": [' + b"[]," * (16 * MB // 3) + b"[]]}"
    growth, r = _peak_growth(bounded, lambda: httpx.post(
        f"{bounded.url}/v1/grad", content=body, headers={"content-type": "application/json"}, timeout=60))
    assert r.status_code == 413 and r.json()["limit"] == "max_json_body_bytes", r.text[:300]
    assert growth <= BOUND, growth


def test_gzip_inflation_peak_rss(bounded) -> None:
    raw = b'{"inputs": [' + b"[]," * (64 * MB // 3) + b"[]]}"
    body = gzip.compress(raw, 9)
    growth, r = _peak_growth(bounded, lambda: httpx.post(
        f"{bounded.url}/v2/models/gradserve/infer", content=body, timeout=60,
        headers={"content-type": "application/json", "content-encoding": "gzip"}))
    assert r.status_code == 413, r.text[:300]
    assert growth <= BOUND, growth


def test_an_abandoned_spinning_computation_frees_its_slot(bounded) -> None:
    # debug.spin never checks the deadline: only killing its process stops it
    req = sleep_chain(30.0, step=30.0, op="debug.spin")
    start = time.monotonic()
    r = httpx.post(f"{bounded.url}/v1/grad", json=req, timeout=60)
    assert r.status_code == 504, r.text
    deadline = start + 2.0
    # a fork per request forks and reaps in the request's thread, which a loaded machine has
    # delayed past 1 s (load average 13 on 2 cores); there the bound only guards against a hang
    margin = 1.0 if bounded.isolation == "process" else 10.0
    while True:
        ready = httpx.get(f"{bounded.url}/health/ready").json()
        if ready["active"] == 0:
            break
        assert time.monotonic() < deadline + margin, ready
        time.sleep(0.02)
    assert time.monotonic() <= deadline + margin
    # the one slot serves the next request
    ok = {"graph": {"inputs": [_x()], "source": "l = sum(x * x)"}, "outputs": "l", "inputs": "x"}
    r = httpx.post(f"{bounded.url}/v1/grad", json=ok, timeout=30)
    assert r.status_code == 200 and r.json()["grads"][0]["data"] == [2.0] * 4


def test_health_answers_within_100_ms_during_a_hostile_burst(make_server) -> None:
    server = make_server(env={**DEBUG_ENV, "GRADSERVE_MAX_MEMORY_BYTES": str(MAX_MEMORY),
                              "GRADSERVE_REQUEST_TIMEOUT_S": "3", "GRADSERVE_MAX_CONCURRENCY": "2",
                              "GRADSERVE_HEADER_TIMEOUT_S": "2"})
    url = server.url
    # the prober runs in its own process, so that the attackers' threads here cannot delay it
    prober = subprocess.Popen([sys.executable, "-c", _PROBER, url.removeprefix("http://")],
                              stdout=subprocess.PIPE, text=True)
    time.sleep(5.0)  # the quiet phase: how this machine answers now, without an attack
    attack_start = time.time()

    def attack(kind: int) -> None:
        with httpx.Client(timeout=30) as c:
            for _ in range(3):
                if kind == 0:    # non-cooperative CPU burners
                    c.post(f"{url}/v1/grad", json=sleep_chain(5.0, step=5.0, op="debug.spin"))
                elif kind == 1:  # memory past the estimate
                    c.post(f"{url}/v1/grad", json={"graph": {"inputs": [_x()], "source":
                           f"y = debug.alloc(x, {4 << 30})"}, "return": ["y"]})
                elif kind == 2:  # value-dependent bombs
                    c.post(f"{url}/v1/grad", json={"graph": {"inputs": [_x()], "nodes": [
                        {"op": "mul", "inputs": ["x", 12_500_000], "outputs": ["f"]},
                        {"op": "to", "inputs": ["f"], "attributes": {"dtype": "INT64"}, "outputs": ["c"]},
                        {"op": "repeat_interleave", "inputs": ["x", {"ref": "c"}], "outputs": ["y"]}]},
                        "return": ["y"]})
                else:            # oversized headers and stalled connections
                    try:
                        c.get(f"{url}/health/live", headers={"X-Big": "a" * (200 * 1024)})
                    except httpx.HTTPError:
                        pass

    attackers = [threading.Thread(target=attack, args=(k % 4,)) for k in range(8)]
    for a in attackers:
        a.start()
    for a in attackers:
        a.join()
    prober.terminate()
    out, _ = prober.communicate(timeout=10)
    rows = [tuple(map(float, line.split())) for line in out.splitlines() if line.strip()]
    quiet = [lat for t, lat in rows if t < attack_start]
    burst = [lat for t, lat in rows if t >= attack_start]
    assert len(quiet) > 20 and len(burst) > 100, out[-500:]
    # A shared machine stalls every process now and then: an idle server here showed single probes
    # of 150 ms with nothing in flight (load average 5, 2 cores). So 100 ms bounds the 99th
    # percentile, and the worst must stay within 100 ms of that or of the quiet phase's worst;
    # one probe alone (a stall of the machine) may reach 1 s. The event-loop hangs this guards
    # against lasted seconds, and hit every probe in them.
    burst.sort()
    p99, worst, floor = burst[int(0.99 * (len(burst) - 1))], burst[-1], max(quiet)
    slowest = sorted(((lat, t - attack_start) for t, lat in rows if t >= attack_start), reverse=True)[:5]
    where = ", ".join(f"{lat * 1e3:.0f} at {at:.2f}" for lat, at in slowest)
    assert p99 < 0.1, f"p99 of {len(burst)} /health/live latencies during the burst: {p99 * 1e3:.0f} ms"
    assert worst < min(1.0, 0.1 + max(floor, p99)) or (worst < 1.0 and len(slowest) > 1
                                                         and slowest[1][0] < 0.1 + max(floor, p99)), (
        f"the worst of {len(burst)} /health/live latencies during the burst was {worst * 1e3:.0f} ms "
        f"(before it: {floor * 1e3:.0f} ms); the slowest (ms at s into the burst): {where}")


# GET /health/live every 10 ms on one keep-alive connection; prints "wall-clock latency" (s) per probe
_PROBER = """
import socket, sys, time
host, port = sys.argv[1].split(":")
s = socket.create_connection((host, int(port)))
req = b"GET /health/live HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
while True:
    t = time.perf_counter()
    s.sendall(req)
    buf = b""
    while not (b"\\r\\n\\r\\n" in buf and buf.endswith(b"}")):
        buf += s.recv(4096)
    print(time.time(), time.perf_counter() - t, flush=True)
    time.sleep(0.01)
"""
