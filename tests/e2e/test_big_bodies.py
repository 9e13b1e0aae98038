"""Big binary bodies over a real server: read into one reused buffer (service.http.WholeBody,
service.buffers), and no answer ever holds another request's bytes.

Bodies of a few MiB take that path (from 256 KiB on); every request of a test has the same size,
so each could get the buffer another one used. The graph is ``sum(x * x)``, whose gradient
``2 * x`` is exact in float32, and ``x`` itself is returned too: that part of the answer is a view
of the request's body, still being sent while later requests arrive.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from tests.service.helpers import binary_body, read_tensor, split_binary_response, wire_tensor

N = 1 << 20  # float32 elements: 4 MiB bodies


def request(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    req = {"graph": {"inputs": [wire_tensor("x", x, encoding="binary", requires_grad=True)],
                     "source": "l = sum(x * x)"}, "outputs": ["l"], "inputs": ["x"], "return": ["x"]}
    body, headers = binary_body(req, [x])
    return body, {**headers, "accept": "application/octet-stream"}


def values(seed: int, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def check(status: int, headers: dict, content: bytes, x: np.ndarray) -> None:
    assert status == 200, content[:300]
    header, blobs = split_binary_response(content, int(headers["inference-header-content-length"]))
    np.testing.assert_array_equal(read_tensor(header["grads"][0], blobs[0]), 2 * x)
    np.testing.assert_array_equal(read_tensor(header["values"]["x"], blobs[1]), x)


def post(url: str, x: np.ndarray) -> None:
    body, headers = request(x)
    r = httpx.post(f"{url}/v1/grad", content=body, headers=headers, timeout=60)
    check(r.status_code, r.headers, r.content, x)


def raw(port: int, data: bytes, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # a small receive window (set before connecting: no autotuning)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(30)
    s.connect(("127.0.0.1", port))
    s.sendall(data)
    return s


def head_of(body: bytes, headers: dict[str, str], extra: str = "") -> bytes:
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (f"POST /v1/grad HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}Content-Length: {len(body)}\r\n"
            f"{extra}\r\n").encode()


def read_response(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response from ``s`` (responses that follow stay in the socket's buffered reader)."""
    f = _READERS.setdefault(s.fileno(), s.makefile("rb"))
    status = int(f.readline().split(b" ", 2)[1])
    headers = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        k, v = line.decode("latin-1").split(":", 1)
        headers[k.strip().lower()] = v.strip()
    content = f.read(int(headers["content-length"]))
    return status, headers, content


_READERS: dict[int, Any] = {}


def close(s: socket.socket) -> None:
    f = _READERS.pop(s.fileno(), None)
    if f is not None:
        f.close()
    s.close()


def test_concurrent_big_bodies_each_get_their_own_answer(server_url) -> None:
    errors: list[BaseException] = []

    def client(seed: int) -> None:
        try:
            for i in range(4):
                post(server_url, values(seed * 100 + i))
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_an_answer_still_being_sent_keeps_its_bytes_while_others_run(server_url) -> None:
    # the slow reader's answer (twice its 16 MiB body; it reads through a small window) stays in
    # the server's transport while three more requests of the same size come and go
    port = int(server_url.rsplit(":", 1)[1])
    post(server_url, values(6, 4 * N))  # the header's compiled program now runs in the server
    x = values(7, 4 * N)
    body, headers = request(x)
    slow = raw(port, head_of(body, headers) + body, rcvbuf=1 << 16)
    time.sleep(0.5)  # its body is in and its answer begun
    for k in range(3):
        post(server_url, values(70 + k, 4 * N))
    check(*read_response(slow), x)
    close(slow)


def test_after_failed_requests_the_next_one_is_right(server_url) -> None:
    port = int(server_url.rsplit(":", 1)[1])
    bad = values(11)
    bad[12345] = np.nan
    body, headers = request(bad)
    r = httpx.post(f"{server_url}/v1/grad", content=body, headers=headers, timeout=60)
    assert r.status_code == 422, r.text[:300]
    assert r.headers["content-type"] == "application/problem+json"
    post(server_url, values(12))
    # a client that goes away halfway through its body
    body, headers = request(values(13))
    s = raw(port, head_of(body, headers) + body[:len(body) // 2])
    time.sleep(0.2)
    close(s)
    post(server_url, values(14))
    # a binary part longer than the header says
    x = values(15)
    body, headers = request(x)
    header_len = int(headers["inference-header-content-length"])
    head = orjson.loads(body[:header_len])
    head["graph"]["inputs"][0]["parameters"]["binary_data_size"] = x.nbytes - 4
    text = orjson.dumps(head)
    r = httpx.post(f"{server_url}/v1/grad", content=text + body[header_len:], timeout=60,
                   headers={**headers, "inference-header-content-length": str(len(text))})
    assert r.status_code == 400, r.text[:300]
    post(server_url, values(16))


def test_pipelined_big_bodies_and_expect_100_continue(server_url) -> None:
    port = int(server_url.rsplit(":", 1)[1])
    xs = [values(21), values(22)]
    reqs = [request(x) for x in xs]
    s = raw(port, b"".join(head_of(b, h) + b for b, h in reqs))
    for x in xs:
        check(*read_response(s), x)
    # Expect: 100-continue: the server asks for the body when it reads it
    x = values(23)
    body, headers = request(x)
    s.sendall(head_of(body, headers, "Expect: 100-continue\r\n"))
    f = _READERS[s.fileno()]
    assert (f.readline(), f.readline()) == (b"HTTP/1.1 100 Continue\r\n", b"\r\n")
    s.sendall(body)
    check(*read_response(s), x)
    close(s)


def test_a_big_body_that_stalls_gets_408_and_a_closed_connection(make_server) -> None:
    server = make_server(env={"GRADSERVE_REQUEST_TIMEOUT_S": "1.5"})
    body, headers = request(values(31))
    s = raw(server.port, head_of(body, headers) + body[:len(body) // 3])
    status, _, content = read_response(s)
    assert status == 408, content[:300]
    assert orjson.loads(content)["type"] == "urn:gradserve:problem:body-timeout"
    s.settimeout(10)
    assert _READERS[s.fileno()].read(1) == b""  # the connection is closed
    close(s)
    post(server.url, values(32))
    # a client that sends the rest of its body after the 408, then another request on the same
    # connection (before the server closes it): that request is read where it starts
    s = raw(server.port, head_of(body, headers) + body[:len(body) // 3])
    assert read_response(s)[0] == 408
    x = values(33)
    body2, headers2 = request(x)
    s.sendall(body[len(body) // 3:] + head_of(body2, headers2) + body2)
    check(*read_response(s), x)
    close(s)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_declared_big_bodies_that_never_come_commit_no_memory_and_block_no_one(make_server) -> None:
    # 8 clients declare 128 MiB bodies (the default max_body_bytes) and send a few bytes: the
    # server commits at most service.buffers.KEPT_BYTES for them, and still serves big bodies
    server = make_server()
    post(server.url, values(40))
    before = rss_bytes(server.proc.pid)
    stalled = []
    for _ in range(8):
        body, headers = request(values(41, 16))
        head = head_of(body, headers).replace(f"Content-Length: {len(body)}".encode(),
                                              f"Content-Length: {128 << 20}".encode())
        stalled.append(raw(server.port, head + body))
    time.sleep(0.5)
    for k in range(2):
        post(server.url, values(42 + k))
    grown = rss_bytes(server.proc.pid) - before
    assert grown < 200 << 20, f"the server grew by {grown >> 20} MiB"
    for s in stalled:
        close(s)


@pytest.mark.parametrize("isolation", ["fork", "thread"])
def test_big_bodies_under_each_isolation_mode(make_server, isolation) -> None:
    # the first request of a header runs eagerly (in a child process with fork), the next ones
    # replay its compiled program in the server; "process" is the default the tests above run
    server = make_server(env={"GRADSERVE_ISOLATION": isolation})
    for k in range(3):
        post(server.url, values(50 + k, 4 * N))
