"""service.http.WholeBody with a real uvicorn server in this process: a big body is read into one
buffer of service.buffers.BODIES, which the next body of that size on the connection reuses."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import uvicorn

from service.app import create_app
from service.buffers import BODIES
from service.http import Protocol

from .helpers import binary_body, read_tensor, split_binary_response, wire_tensor

N = (1 << 18) + 7  # float32 elements: a body size no other test sends


@pytest.fixture
def url() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, http=Protocol,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + 30
    while not server.started and time.monotonic() < end:
        time.sleep(0.02)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_a_connection_reuses_one_buffer_and_each_answer_is_its_own(url) -> None:
    size = None
    with httpx.Client(timeout=60) as http:
        for seed in range(5):
            x = np.random.default_rng(seed).standard_normal(N).astype(np.float32)
            req = {"graph": {"inputs": [wire_tensor("x", x, encoding="binary", requires_grad=True)],
                             "source": "l = sum(x * x)"}, "outputs": ["l"], "inputs": ["x"],
                   "return": ["x"]}
            body, headers = binary_body(req, [x])
            size = len(body)
            r = http.post(f"{url}/v1/grad", content=body,
                          headers={**headers, "accept": "application/octet-stream"})
            assert r.status_code == 200, r.text[:300]
            n = int(r.headers["inference-header-content-length"])
            header, blobs = split_binary_response(r.content, n)
            np.testing.assert_array_equal(read_tensor(header["grads"][0], blobs[0]), 2 * x)
            np.testing.assert_array_equal(read_tensor(header["values"]["x"], blobs[1]), x)
            assert BODIES.kept().count(size) == 1  # the same buffer each time
