"""HTTP-layer limits against a real uvicorn, with raw sockets: header size, header-read
deadline, connection cap.

The timing assertions are upper bounds with wide margins over a configured timeout (seconds),
never a measure of the machine's speed.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import httpx
import pytest

HEADER_TIMEOUT_S = 1.0


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _closed_within(s: socket.socket, seconds: float) -> bool:
    """True when the server closes ``s`` (recv returns b"" or the connection resets) in time."""
    s.settimeout(0.2)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data = s.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return True
        if not data:
            return True
    return False


def _read_response(s: socket.socket) -> bytes:
    s.settimeout(10)
    out = b""
    while True:
        try:
            data = s.recv(65536)
        except OSError:
            break
        if not data:
            break
        out += data
        if b"\r\n\r\n" in out and b"content-length" in out.lower():
            head, _, body = out.partition(b"\r\n\r\n")
            n = next(int(h.split(b":")[1]) for h in head.split(b"\r\n")
                     if h.lower().startswith(b"content-length"))
            if len(body) >= n:
                break
    return out


@pytest.fixture(scope="module")
def limited():
    from .conftest import Server

    server = Server(env={"GRADSERVE_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
                         "GRADSERVE_MAX_CONNECTIONS": "40"})
    yield server
    server.stop()


def test_headers_over_the_limit_get_431_and_a_closed_connection(limited) -> None:
    s = _connect(limited.url)
    s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (100 * 1024) + b"\r\n\r\n")
    resp = _read_response(s)
    assert resp.startswith(b"HTTP/1.1 431"), resp[:200]
    assert b"max_header_bytes" in resp
    assert _closed_within(s, 5)


def test_headers_under_the_limit_are_served(limited) -> None:
    r = httpx.get(f"{limited.url}/health/live", headers={"X-Big": "a" * (48 * 1024)})
    assert r.status_code == 200


def test_a_64_mb_header_is_cut_off_early(limited) -> None:
    before = _rss(limited.proc.pid)
    s = _connect(limited.url)
    s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
    sent, chunk = 0, b"a" * (1 << 20)
    try:
        while sent < 64 << 20:
            s.sendall(chunk)
            sent += len(chunk)
    except OSError:  # the server closed the connection: what it should do
        pass
    s.close()
    assert _rss(limited.proc.pid) - before < 16 << 20
    assert httpx.get(f"{limited.url}/health/live").status_code == 200


def test_unfinished_headers_are_closed_after_the_header_timeout(limited) -> None:
    idle = [_connect(limited.url) for _ in range(10)]                     # nothing at all
    partial = [_connect(limited.url) for _ in range(10)]                  # headers never end
    for s in partial:
        s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
    start = time.monotonic()
    for s in idle + partial:
        assert _closed_within(s, HEADER_TIMEOUT_S + 10), "a connection outlived the header timeout"
    assert time.monotonic() - start >= HEADER_TIMEOUT_S * 0.5
    assert httpx.get(f"{limited.url}/health/live").status_code == 200


def test_trickled_headers_are_closed_after_the_header_timeout(limited) -> None:
    s = _connect(limited.url)
    s.sendall(b"GET /health/live HTTP/1.1\r\n")
    end = time.monotonic() + HEADER_TIMEOUT_S + 10
    closed = False
    while time.monotonic() < end:
        try:
            s.sendall(b"X-A: b\r\n")  # a header line now and then: each resets no clock
        except OSError:
            closed = True
            break
        if _closed_within(s, 0.3):
            closed = True
            break
    assert closed


def test_the_next_request_on_a_kept_alive_connection_is_timed_too(limited) -> None:
    s = _connect(limited.url)
    s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _read_response(s).startswith(b"HTTP/1.1 200")
    s.sendall(b"GET /health/live HTTP/1.1\r\n")  # then stalls
    assert _closed_within(s, HEADER_TIMEOUT_S + 10)


def test_connections_over_the_cap_get_503(limited) -> None:
    held = [_connect(limited.url) for _ in range(45)]
    try:
        time.sleep(0.2)
        s = _connect(limited.url)
        s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(s).startswith(b"HTTP/1.1 503")
    finally:
        for c in held:
            c.close()
    # the held connections are gone: served again
    deadline = time.monotonic() + 10
    while httpx.get(f"{limited.url}/health/live").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_pipelined_requests_with_a_head_request_are_all_answered(limited) -> None:
    # service.http holds each response's head until its body: a HEAD response (no body) must
    # still go out, and each pipelined request gets its own complete response, in order
    s = _connect(limited.url)
    get = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    s.sendall(get + b"HEAD /health/live HTTP/1.1\r\nHost: x\r\n\r\n" + get)
    data, end = b"", time.monotonic() + 10
    while data.count(b"HTTP/1.1 ") < 3 and time.monotonic() < end:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    # HEAD on a GET route: 405, with a head and no body
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", data) == [b"200", b"405", b"200"], data
