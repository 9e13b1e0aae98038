"""The plan cache end to end: the client against a real server sends a re-recorded graph by hash,
and sends it whole again when the server has forgotten it. Gradients are checked against torch."""

from __future__ import annotations

import json

import httpx
import numpy as np
import torch

from client import Client


class Recording(httpx.HTTPTransport):
    """A real transport that notes whether each request carried the graph's nodes or its hash."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        graph = json.loads(request.read())["graph"]
        self.kinds.append("hash" if "hash" in graph else "full")
        return super().handle_request(request)


def loss_of(c: Client, xv: np.ndarray, power: int):
    w = c.tensor(0.5, requires_grad=True)
    x = c.tensor(xv)
    return ((2 * x + 1 - (w * x + 0.9)) ** power).mean(), w


def torch_grad(xv: np.ndarray, power: int) -> np.ndarray:
    w = torch.tensor(0.5, requires_grad=True)
    x = torch.from_numpy(xv)
    (g,) = torch.autograd.grad(((2 * x + 1 - (w * x + 0.9)) ** power).mean(), [w])
    return g.numpy()


def xs(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(100).astype(np.float32)


def test_re_recorded_graph_goes_by_hash(server_url: str) -> None:
    transport = Recording()
    with Client(server_url, transport=transport) as c:
        for seed in range(3):
            loss, w = loss_of(c, xs(seed), 2)
            (gw,) = c.autograd_grad(loss, [w])
            np.testing.assert_allclose(gw, torch_grad(xs(seed), 2), rtol=1e-5)
    assert transport.kinds == ["full", "hash", "hash"]


def test_evicted_graph_is_sent_whole_again(make_server) -> None:
    server = make_server(env={"GRADSERVE_PLAN_CACHE_SIZE": "1"})
    transport = Recording()
    with Client(server.url, transport=transport) as c:
        for seed, power in enumerate((2, 2, 3, 2)):  # graph 3 evicts graph 2
            loss, w = loss_of(c, xs(seed), power)
            (gw,) = c.autograd_grad(loss, [w])
            np.testing.assert_allclose(gw, torch_grad(xs(seed), power), rtol=1e-5)
    # the last request tries the hash, meets 409 plan-not-cached, and sends the graph whole
    assert transport.kinds == ["full", "hash", "full", "hash", "full"]
