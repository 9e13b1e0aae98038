"""``gradserve serve --workers N`` on one host: requests spread over the worker processes.

The server adds ``X-Gradserve-Pid`` (``GRADSERVE_PID_HEADER=1``); every request goes over a fresh
connection, from several threads at once, and each answer is checked against torch.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch

from tests.service.helpers import SEED_NODES

from ._procs import children

X = np.random.default_rng(9).random(100).astype(np.float32)


def _request(w: float) -> dict:
    return {"graph": {"inputs": [
        {"name": "w", "datatype": "FP32", "shape": [1], "data": [w], "requires_grad": True},
        {"name": "b", "datatype": "FP32", "shape": [1], "data": [0.9], "requires_grad": True},
        {"name": "x", "datatype": "FP32", "shape": [100], "data": X.tolist()}], "nodes": SEED_NODES},
        "outputs": "loss", "inputs": ["w", "b"]}


def _torch(w: float) -> tuple[float, float]:
    wt, bt = torch.tensor([w], requires_grad=True), torch.tensor([0.9], requires_grad=True)
    xt = torch.from_numpy(X)
    gw, gb = torch.autograd.grad(((2 * xt + 1 - (wt * xt + bt)) ** 2).mean(), (wt, bt))
    return gw.item(), gb.item()


def _spread(url: str, n: int, until: int) -> Counter[int]:
    """Send seed requests (w varies) 8 at a time over fresh connections, checking every answer,
    until ``until`` distinct processes answered and at least ``n`` requests went out (at most 20n)."""

    def one(w: float) -> int:
        r = httpx.post(f"{url}/v1/grad", json=_request(w), headers={"Connection": "close"}, timeout=60)
        assert r.status_code == 200, r.text
        gw, gb = _torch(w)
        np.testing.assert_allclose(r.json()["grads"][0]["data"], [gw], rtol=1e-5)
        np.testing.assert_allclose(r.json()["grads"][1]["data"], [gb], rtol=1e-5)
        return int(r.headers["x-gradserve-pid"])

    pids: Counter[int] = Counter()
    sent = 0
    with ThreadPoolExecutor(8) as pool:
        while (sent < n or len(pids) < until) and sent < 20 * n:
            pids.update(pool.map(one, [0.1 + 0.01 * (sent + i) for i in range(16)]))
            sent += 16
    return pids


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_share_the_load(make_server, workers):
    srv = make_server(env={"GRADSERVE_PID_HEADER": "1"}, args=["--workers", str(workers)])
    pids = _spread(srv.url, 48, workers)
    worker_pids = set(children(srv.proc.pid))
    assert len(pids) == workers, pids  # every worker process answered some
    assert set(pids) <= worker_pids and srv.proc.pid not in pids  # the workers, not the supervisor


def test_one_worker_is_one_process(make_server):
    srv = make_server(env={"GRADSERVE_PID_HEADER": "1"})
    pids = _spread(srv.url, 32, 1)
    assert set(pids) == {srv.proc.pid}
