"""The client against a real uvicorn server on a loopback port (the ``server_url`` fixture).

The shared scenarios (tests/client/_scenarios.py) check results against torch, sync and async,
over every request encoding; further tests check that embedded and remote mode give identical
bytes and identical errors for the same code.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest

import client
from bench.work import DEBUG_ENV, sleep_chain
from client import AsyncClient, Client
from tests.client._scenarios import (
    SCENARIOS,
    Harness,
    hessian_vector_product,
    multi_output_and_indexing,
    seed_example,
    value_and_grad,
)


@pytest.fixture(params=["sync", "async"])
def remote(request: pytest.FixtureRequest, server_url: str) -> Iterator[Harness]:
    cls = Client if request.param == "sync" else AsyncClient
    h = Harness(cls(server_url))
    assert not h.c.embedded
    yield h
    h.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_scenario_remote(remote: Harness, scenario: Callable[[Harness], None]) -> None:
    scenario(remote)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(("tensor_encoding", "response_encoding"), [
    ("json", "json"), ("b64", "b64"), ("binary", "binary"), ("json", "binary"), ("binary", "json"),
])
@pytest.mark.parametrize("scenario", [seed_example, value_and_grad, hessian_vector_product,
                                      multi_output_and_indexing], ids=lambda f: f.__name__)
def test_encodings_remote(server_url: str, mode: str, tensor_encoding: str, response_encoding: str,
                          scenario: Callable[[Harness], None]) -> None:
    cls = Client if mode == "sync" else AsyncClient
    h = Harness(cls(server_url, tensor_encoding=tensor_encoding, response_encoding=response_encoding))
    try:
        scenario(h)
    finally:
        h.close()


def test_binary_is_the_default_for_big_tensors(server_url: str) -> None:
    seen: list[httpx.Request] = []
    with Client(server_url, binary_threshold=1 << 16) as c:
        c._http.event_hooks["request"].append(seen.append)  # type: ignore[union-attr]
        xv = np.random.default_rng(0).standard_normal(1 << 18).astype(np.float32)  # 1 MiB
        x = c.tensor(xv, requires_grad=True)
        small = c.tensor([1.0, 2.0])
        (gx,), (s,) = c.autograd_grad((x * x).sum() + small.sum(), [x], return_values=[small * 1])
    assert seen[-1].headers["content-type"] == "application/octet-stream"
    np.testing.assert_array_equal(gx, 2 * xv)  # exact in float32
    np.testing.assert_array_equal(s, np.array([1.0, 2.0], np.float32))


# ---------------------------------------------------------------- embedded == remote
def _forward(c: Client | AsyncClient) -> tuple[Any, list, list]:
    rng = np.random.default_rng(7)
    W = c.tensor(rng.standard_normal((4, 3)).astype(np.float32), requires_grad=True, name="W")
    b = c.tensor(np.zeros(4, np.float32), requires_grad=True, name="b")
    x = c.tensor(rng.standard_normal((5, 3)).astype(np.float32), name="x")
    h = c.tanh(x @ W.t() + b)
    m = h.max(dim=1)
    loss = c.logsumexp(h, 1).mean() + (m.values ** 2).sum() * 0.1
    return loss, [W, b], [loss, m.indices]


def _penalty(gW: Any, gb: Any) -> Any:
    return (gW ** 2).sum() + (gb ** 2).sum()  # a gradient penalty: needs create_graph


def _program(c: Client) -> tuple[Any, list, list]:
    loss, ins, rets = _forward(c)
    gW, gb = c.autograd_grad(loss, ins, create_graph=True)
    return _penalty(gW, gb), ins, [*rets, gW]


def test_embedded_and_remote_give_identical_bytes(server_url: str) -> None:
    embedded, remote = Client(), Client(server_url)
    pe, ie, re_ = _program(embedded)
    pr, ir, rr = _program(remote)
    # the same request, byte for byte
    assert embedded.to_json(pe, ie, return_values=re_) == remote.to_json(pr, ir, return_values=rr)
    ge, ve = embedded.autograd_grad(pe, ie, return_values=re_)
    gr, vr = remote.autograd_grad(pr, ir, return_values=rr)
    for a, b in zip([*ge, *ve], [*gr, *vr], strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    remote.close()


def test_embedded_and_remote_async_agree(server_url: str) -> None:
    async def run(c: AsyncClient) -> tuple:
        async with c:
            loss, ins, rets = _forward(c)
            gW, gb = await c.autograd_grad(loss, ins, create_graph=True)
            return await c.autograd_grad(_penalty(gW, gb), ins, return_values=[*rets, gW])

    ge, ve = asyncio.run(run(AsyncClient()))
    gr, vr = asyncio.run(run(AsyncClient(server_url)))
    for a, b in zip([*ge, *ve], [*gr, *vr], strict=True):
        np.testing.assert_array_equal(a, b)


def _failures(c: Client) -> list[Callable[[], Any]]:
    w, x = c.tensor(1.5, requires_grad=True), c.tensor([1.0, 2.0])
    a, m = c.tensor(np.ones((2, 3)), requires_grad=True), c.tensor(np.ones((4, 5)))
    return [
        lambda: c.autograd_grad((w * x).sum(), [x]),                        # input needs no grad
        lambda: c.autograd_grad(w * x, [w]),                                # non-scalar, no grad_outputs
        lambda: c.autograd_grad(w * 2, [w, c.tensor(1.0, requires_grad=True)]),  # unused input
        lambda: c.autograd_grad(w * 2, [w], allow_unused=False, materialize_grads=True),
        lambda: c.autograd_grad((a @ m).sum(), [a]),                        # shape mismatch in a node
        lambda: c.autograd_grad(c.reshape(x, (3,)).sum(), [w]),             # bad reshape
        lambda: c.values(x[5]),                                             # index out of range
    ]


def test_embedded_and_remote_raise_the_same_errors(server_url: str) -> None:
    embedded, remote = Client(), Client(server_url)
    for fe, fr in zip(_failures(embedded), _failures(remote), strict=True):
        with pytest.raises(client.APIError) as ee:
            fe()
        with pytest.raises(client.APIError) as er:
            fr()
        assert type(ee.value) is type(er.value)
        assert isinstance(ee.value, (RuntimeError, ValueError, IndexError)), type(ee.value)
        assert str(ee.value) == str(er.value)
        assert (ee.value.status, ee.value.type, ee.value.exception, ee.value.errors) == \
               (er.value.status, er.value.type, er.value.exception, er.value.errors)
    # and the server still answers correctly afterwards
    w = remote.tensor(3.0, requires_grad=True)
    assert remote.autograd_grad(w * w, [w])[0] == np.float32(6.0)
    remote.close()


def test_values_come_on_demand_from_the_server(server_url: str) -> None:
    seen: list[httpx.Request] = []
    with Client(server_url) as c:
        c._http.event_hooks["request"].append(seen.append)  # type: ignore[union-attr]
        x = c.tensor([1.0, 2.0, 3.0], requires_grad=True)
        (g,) = c.autograd_grad((x ** 3).sum(), [x], create_graph=True)
        assert not seen  # recorded only
        np.testing.assert_array_equal(g.numpy(), np.array([3.0, 12.0, 27.0], np.float32))
        assert len(seen) == 1
        body = json.loads(seen[0].content)
        assert "outputs" not in body and body["return"] == [g.name]
        assert [n["op"] for n in body["graph"]["nodes"]] == ["pow", "sum", "grad"]
        g.numpy()
        assert len(seen) == 1  # cached


def test_api_keys(make_server: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRADSERVE_API_KEY", raising=False)
    url = make_server(env={"GRADSERVE_API_KEYS": "k-one,k-two"}).url

    def grad(c: Client) -> Any:
        w = c.tensor(2.0, requires_grad=True)
        return c.autograd_grad(w * w, [w])[0]

    for key in (None, "wrong"):
        with Client(url, api_key=key) as c, pytest.raises(client.AuthenticationError) as ei:
            grad(c)
        assert ei.value.status == 401 and "wrong" not in str(ei.value.problem)
    with Client(url, api_key="k-two") as c:
        assert grad(c) == np.float32(4.0)
    monkeypatch.setenv("GRADSERVE_API_KEY", "k-one")  # the client's default key
    with Client(url) as c:
        assert grad(c) == np.float32(4.0)


@pytest.mark.slow
def test_overloaded_server_is_retried_after_its_retry_after(make_server: Callable[..., Any]) -> None:
    """One engine thread, no queue: a second request gets 503 + Retry-After while the first
    computes; the client waits as told and gets its answer once the server is free."""
    import threading
    url = make_server(env={**DEBUG_ENV, "GRADSERVE_MAX_CONCURRENCY": "1", "GRADSERVE_MAX_QUEUE": "0",
                           "GRADSERVE_RETRY_AFTER_S": "1"}).url
    slow: dict[str, Any] = {}
    # holds the only engine slot for 3 s of wall time, on any machine
    t = threading.Thread(target=lambda: slow.setdefault(
        "r", httpx.post(f"{url}/v1/grad", json=sleep_chain(3.0, grad=True), timeout=60)))
    t.start()
    statuses: list[int] = []
    try:
        end = time.monotonic() + 30
        while not httpx.get(f"{url}/health/ready", timeout=5).json()["active"]:
            assert time.monotonic() < end, "the slow request never started"
            time.sleep(0.01)
        with Client(url, retries=client.RetryPolicy(retries=60, max_retry_after=5)) as c:
            c._http.event_hooks["response"].append(lambda r: statuses.append(r.status_code))  # type: ignore[union-attr]
            w = c.tensor(3.0, requires_grad=True)
            (g,) = c.autograd_grad(w * w, [w])
    finally:
        t.join(120)
    assert slow["r"].status_code == 200, slow["r"].text
    assert g == np.float32(6.0)
    assert statuses[0] == 503 and statuses[-1] == 200, statuses


def test_connection_refused_is_retried_then_typed() -> None:
    with socket_free_port() as port:
        pass  # closed again: nothing listens there
    c = Client(f"http://127.0.0.1:{port}", retries=client.RetryPolicy(retries=2, backoff=0.01))
    w = c.tensor(1.0, requires_grad=True)
    with pytest.raises(client.ConnectError):
        c.autograd_grad(w * w, [w])
    c.close()


class socket_free_port:  # noqa: N801 - used as a context manager
    def __enter__(self) -> int:
        import socket
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        return self.s.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self.s.close()
