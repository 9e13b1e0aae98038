"""A real uvicorn server under stress: slow and stalled clients, long requests, SIGTERM, keys.

Each test starts its own server (``make_server``) on a loopback port. Raw sockets play the
misbehaving clients; httpx plays the well-behaved ones, whose answers are checked.
"""

from __future__ import annotations

import os
import signal
import socket
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
from tests.service.helpers import read_tensor, seed_request, seed_torch

ROOT = Path(__file__).resolve().parents[2]
X = np.random.default_rng(1234).random(100).astype(np.float32)


def assert_serves(url: str, headers: dict | None = None) -> float:
    """A seed request is answered correctly; returns its latency."""
    t0 = time.monotonic()
    r = httpx.post(f"{url}/v1/grad", json=seed_request(X), headers=headers, timeout=30)
    dt = time.monotonic() - t0
    assert r.status_code == 200, r.text
    gw, gb, _ = seed_torch(X)
    np.testing.assert_allclose(read_tensor(r.json()["grads"][0]), gw, rtol=1e-6)
    np.testing.assert_allclose(read_tensor(r.json()["grads"][1]), gb, rtol=1e-6)
    return dt


def raw_request(port: int, body: bytes, *, send: int | None = None, headers: str = "") -> socket.socket:
    """Open a connection and send the request line, headers and the first ``send`` body bytes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (f"POST /v1/grad HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{headers}\r\n").encode()
    s.sendall(head + body[:send])
    return s


def read_response(s: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), None)
    while length is not None and len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, rest


# ---------------------------------------------------------------- slow and stalled clients
def test_a_slow_client_does_not_block_others(make_server):
    server = make_server()
    body = orjson.dumps(seed_request(X))
    slow = raw_request(server.port, body, send=10)
    latencies = []
    for i in range(10, len(body), len(body) // 20):  # the body trickles in over ~2 s ...
        slow.sendall(body[i:i + len(body) // 20])
        latencies.append(assert_serves(server.url))  # ... while others are served as usual
        time.sleep(0.1)
    status, answer = read_response(slow)
    slow.close()
    assert status == 200, answer[:300]
    gw, _, _ = seed_torch(X)
    np.testing.assert_allclose(read_tensor(orjson.loads(answer)["grads"][0]), gw, rtol=1e-6)
    assert max(latencies) < 2.0, latencies


def test_clients_that_stop_mid_body_get_408_and_block_no_one(make_server):
    server = make_server(env={"GRADSERVE_REQUEST_TIMEOUT_S": "1.5"})
    body = orjson.dumps(seed_request(X))
    stalled = [raw_request(server.port, body, send=len(body) // 2) for _ in range(30)]
    t0 = time.monotonic()
    for _ in range(5):
        assert assert_serves(server.url) < 2.0
    for s in stalled:
        status, answer = read_response(s)
        assert status == 408, answer[:300]
        assert orjson.loads(answer)["type"] == "urn:gradserve:problem:body-timeout"
        assert s.recv(1) == b""  # and the connection is closed
        s.close()
    assert time.monotonic() - t0 < 10
    assert_serves(server.url)


def _post_while_probing(url: str, req: dict) -> tuple[dict, list[float]]:
    """POST ``req`` from a thread; meanwhile probe the health routes, timing each pair of probes."""
    result = {}

    def slow():
        t0 = time.monotonic()
        result["r"] = httpx.post(f"{url}/v1/grad", json=req, timeout=120)
        result["t"] = time.monotonic() - t0

    t = threading.Thread(target=slow)
    t.start()
    probes = []
    with httpx.Client(base_url=url, timeout=5) as http:
        while t.is_alive():
            t0 = time.monotonic()
            assert http.get("/health/live").status_code == 200
            assert http.get("/health/ready").status_code == 200
            probes.append(time.monotonic() - t0)
            time.sleep(0.05)
    t.join()
    return result, probes


# ---------------------------------------------------------------- long requests and the deadline
def test_past_the_deadline_504_while_health_checks_answer(make_server):
    server = make_server(env={**DEBUG_ENV, "GRADSERVE_REQUEST_TIMEOUT_S": "1.5"})
    # 30 s of sleeping steps against a 1.5 s deadline: a 20x margin on any machine
    req = sleep_chain(30.0, step=0.05)
    result, probes = _post_while_probing(server.url, req)
    r = result["r"]
    assert r.status_code == 504, r.text[:300]
    assert r.headers["content-type"] == "application/problem+json"
    assert "request_timeout_s" in r.json()["detail"]
    assert result["t"] < 1.5 + 10.0  # far sooner than the 30 s the graph needs
    t0 = time.monotonic()  # and its work stopped: the engine slot frees long before the graph ends
    while httpx.get(f"{server.url}/health/ready", timeout=5).json()["active"]:
        assert time.monotonic() - t0 < 10.0
        time.sleep(0.02)
    assert len(probes) >= 5 and max(probes) < 1.0, probes
    assert_serves(server.url)


# ---------------------------------------------------------------- graceful shutdown
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_finishes_requests_in_flight_and_refuses_new_ones(make_server, workers):
    server = make_server(env=DEBUG_ENV, args=["--workers", str(workers)])
    req = sleep_chain(3.0, step=0.1, grad=True)  # in flight long enough to be caught there
    result = {}
    t = threading.Thread(target=lambda: result.setdefault(
        "r", httpx.post(f"{server.url}/v1/grad", json=req, timeout=60)))
    t.start()
    end = time.monotonic() + 30
    while time.monotonic() < end:  # in flight: a worker's engine is on it (probes reach either worker)
        if httpx.get(f"{server.url}/health/ready", timeout=5).json().get("active", 0) >= 1:
            break
        time.sleep(0.02)
    else:
        pytest.fail(f"the request never started: {result}")
    server.proc.send_signal(signal.SIGTERM)
    refused = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{server.url}/health/live", timeout=0.5)
        except httpx.TransportError:
            refused = time.monotonic()
            break
        time.sleep(0.05)
    assert refused is not None, "new connections were still accepted 10 s after SIGTERM"
    t.join(60)
    assert "r" in result, "the request in flight got no answer"
    r = result["r"]
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(read_tensor(r.json()["grads"][0]), 2 * np.arange(1.0, 5.0))  # d sum(x²)/dx
    # uvicorn re-raises the signal once it has shut down, so the exit status says SIGTERM
    assert server.proc.wait(30) in (0, -signal.SIGTERM)


# ---------------------------------------------------------------- API keys
def test_api_keys_never_appear_in_logs_or_error_bodies(make_server):
    keys = ["sekrit-key-ONE-4f1c", "sekrit-key-TWO-9a7e"]
    wrong = "sekrit-wrong-b77d"
    server = make_server(env={"GRADSERVE_API_KEYS": ",".join(keys)}, args=["--log-level", "debug"])
    bodies = []
    for auth in (None, f"Bearer {wrong}", f"Basic {keys[0]}", keys[1], f"Bearer {keys[0]}x"):
        r = httpx.post(f"{server.url}/v1/grad", json=seed_request(X), timeout=30,
                       headers={"Authorization": auth} if auth else {})
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        bodies.append(r.text)
    assert_serves(server.url, {"Authorization": f"Bearer {keys[1]}"})
    bad = seed_request(X)
    bad["graph"]["nodes"][0]["op"] = "mull"
    r = httpx.post(f"{server.url}/v1/grad", json=bad, headers={"Authorization": f"Bearer {keys[0]}"})
    assert r.status_code == 422
    bodies.append(r.text)
    assert httpx.get(f"{server.url}/health/ready").status_code == 200  # health stays open
    server.proc.terminate()
    server.proc.wait(30)
    out = server.output()
    assert "401" in out or "POST" in out, out[-2000:]  # the log saw these requests ...
    for secret in [*keys, wrong]:
        assert secret not in out  # ... but never a key
        assert all(secret not in b for b in bodies)


_CLI_PROBE = """
import sys, uvicorn
import service.cli
uvicorn.run = lambda *a, **k: print("uvicorn.run", k["host"], flush=True)
service.cli.main(sys.argv[1:])
"""


@pytest.mark.parametrize("args, keys, warns, host", [
    ([], "", False, "127.0.0.1"),
    (["--host", "0.0.0.0"], "", True, "0.0.0.0"),
    (["--host", "::"], "", True, "::"),
    (["--host", "localhost"], "", False, "localhost"),
    (["--host", "0.0.0.0"], "k1,k2", False, "0.0.0.0"),
])
def test_without_keys_loopback_by_default_and_a_warning_elsewhere(args, keys, warns, host):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADSERVE_")}
    if keys:
        env["GRADSERVE_API_KEYS"] = keys
    p = subprocess.run([sys.executable, "-c", _CLI_PROBE, "serve", *args, "--log-format", "text"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert f"uvicorn.run {host}" in out  # nothing was bound: uvicorn.run is a stand-in here
    assert ("without API keys" in out) == warns, out
    assert "k1" not in out and "k2" not in out
