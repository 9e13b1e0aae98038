"""The remote shells against httpx.MockTransport: request layout, encodings, retries, errors.

The mock answers by hand (fixed arrays, not computed by our code); the real server is exercised
in tests/e2e/test_client_remote.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable

import httpx
import numpy as np
import pytest

import client
from client import AsyncClient, Client, RetryPolicy

FAST = RetryPolicy(retries=3, backoff=0.001, max_backoff=0.002)
PROBLEM = "application/problem+json"


def _problem(status: int, detail: str, **extra: object) -> dict:
    return {"type": "urn:gradserve:problem:x", "title": "t", "status": status, "detail": detail,
            "errors": [], **extra}


def _ok(grads: list) -> httpx.Response:
    return httpx.Response(200, json={"grads": grads, "values": {}})


G = {"name": "w", "datatype": "FP32", "shape": [], "data": 3.0}


class Script:
    """A mock server answering from a list of steps (a Response, an exception, or a callable)."""

    def __init__(self, *steps: object) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        if callable(step):
            return step(request)
        assert isinstance(step, httpx.Response)
        return step


def _sync(script: Script, **kw: object) -> Client:
    return Client("http://test", transport=httpx.MockTransport(script), retries=kw.pop("retries", FAST), **kw)


def _grad(c: Client) -> tuple:
    w = c.tensor(1.5, requires_grad=True, name="w")
    return c.autograd_grad(w * w * 1.0, [w])


# ---------------------------------------------------------------- request layout and encodings
def test_small_tensors_go_as_b64_and_ask_for_b64() -> None:
    seen: dict = {}

    def answer(req: httpx.Request) -> httpx.Response:
        seen["body"] = json.loads(req.content)
        seen["headers"] = req.headers
        return _ok([G])

    s = Script(answer)
    c = _sync(s, api_key="k1")
    (g,) = _grad(c)
    assert g == np.float32(3.0) and g.dtype == np.float32
    body, headers = seen["body"], seen["headers"]
    assert headers["content-type"] == "application/json" and headers["authorization"] == "Bearer k1"
    assert s.requests[0].url.path == "/v1/grad"
    (w,) = body["graph"]["inputs"]
    assert base64.b64decode(w["b64"]) == np.float32(1.5).tobytes()
    assert body["response_encoding"] == "b64"


def test_json_tensor_encoding_on_request() -> None:
    seen: dict = {}
    s = Script(lambda req: (seen.setdefault("b", json.loads(req.content)), _ok([G]))[1])
    _grad(_sync(s, tensor_encoding="json", response_encoding="json"))
    assert seen["b"]["graph"]["inputs"][0]["data"] == 1.5
    assert "response_encoding" not in seen["b"]


def test_big_tensors_go_binary_and_the_answer_comes_binary() -> None:
    xv = np.arange(4096, dtype=np.float64)  # 32 KiB: above a 1 KiB threshold
    g = (np.arange(4096, dtype=np.float64) * 2).astype(np.float64)

    def answer(req: httpx.Request) -> httpx.Response:
        assert req.headers["content-type"] == "application/octet-stream"
        assert req.headers["accept"] == "application/octet-stream"
        n = int(req.headers["inference-header-content-length"])
        head = json.loads(req.content[:n])
        (x,) = head["graph"]["inputs"]
        assert x["parameters"] == {"binary_data_size": xv.nbytes} and "data" not in x
        assert np.array_equal(np.frombuffer(req.content[n:], "<f8"), xv)
        out = json.dumps({"grads": [{"name": "x", "datatype": "FP64", "shape": [4096],
                                     "parameters": {"binary_data_size": g.nbytes}}],
                          "values": {}}).encode()
        return httpx.Response(200, content=out + g.tobytes(),
                              headers={"content-type": "application/octet-stream",
                                       "inference-header-content-length": str(len(out))})

    c = _sync(Script(answer), binary_threshold=1024)
    x = c.tensor(xv, requires_grad=True)
    (gx,) = c.autograd_grad((x * x).sum(), [x])
    np.testing.assert_array_equal(gx, g)


def test_response_decoding_json_with_non_finite_and_values() -> None:
    def answer(req: httpx.Request) -> httpx.Response:
        (name,) = json.loads(req.content)["return"]
        return httpx.Response(200, json={
            "grads": [None, {"name": "b", "datatype": "FP32", "shape": [3], "data": [1, "NaN", "-Infinity"]}],
            "values": {name: {"name": name, "datatype": "FP64", "shape": [], "data": 2.5}}})

    s = Script(answer)
    c = _sync(s)
    a, b = c.tensor(1.0, requires_grad=True), c.tensor([1.0, 2.0, 3.0], requires_grad=True)
    loss = (b * 2).sum()
    (ga, gb), (lv,) = c.autograd_grad(loss, [a, b], allow_unused=True, return_values=[loss])
    assert ga is None and gb[0] == 1 and np.isnan(gb[1]) and gb[2] == -np.inf
    assert lv == 2.5 and loss.item() == 2.5 and len(s.requests) == 1


def test_unreadable_answers_raise_response_error() -> None:
    with pytest.raises(client.ResponseError):
        bad = httpx.Response(200, content=b"{nope", headers={"content-type": "application/json"})
        _grad(_sync(Script(bad)))
    with pytest.raises(client.ResponseError):  # wrong number of gradients
        _grad(_sync(Script(_ok([G, G]))))


# ---------------------------------------------------------------- retries
def test_retries_503_and_429_then_succeeds() -> None:
    s = Script(httpx.Response(503, json=_problem(503, "busy"), headers={"Retry-After": "0"}),
               httpx.Response(429, json=_problem(429, "slow down"), headers={"Retry-After": "0"}),
               _ok([G]))
    (g,) = _grad(_sync(s))
    assert g == 3.0 and len(s.requests) == 3


def test_retries_connection_errors_then_succeeds() -> None:
    s = Script(httpx.ConnectError("refused"), httpx.RemoteProtocolError("dropped"), _ok([G]))
    (g,) = _grad(_sync(s))
    assert g == 3.0 and len(s.requests) == 3


def test_retry_after_is_honoured() -> None:
    s = Script(httpx.Response(503, json=_problem(503, "busy"), headers={"Retry-After": "1"}), _ok([G]))
    t0 = time.monotonic()
    _grad(_sync(s))
    assert time.monotonic() - t0 >= 1.0 and len(s.requests) == 2


def test_retries_are_bounded() -> None:
    s = Script(httpx.Response(503, json=_problem(503, "still busy"), headers={"Retry-After": "0"}))
    with pytest.raises(client.ServiceUnavailableError, match="still busy") as ei:
        _grad(_sync(s))
    assert len(s.requests) == FAST.retries + 1 and ei.value.retry_after == 0.0
    s = Script(httpx.Response(429, json=_problem(429, "no")))
    with pytest.raises(client.RateLimitError):
        _grad(_sync(s))
    assert len(s.requests) == FAST.retries + 1


def test_a_long_retry_after_is_not_waited_out() -> None:
    s = Script(httpx.Response(503, json=_problem(503, "come back in an hour"),
                              headers={"Retry-After": "3600"}))
    t0 = time.monotonic()
    with pytest.raises(client.ServiceUnavailableError) as ei:
        _grad(_sync(s))
    assert time.monotonic() - t0 < 1.0 and len(s.requests) == 1 and ei.value.retry_after == 3600.0


def test_connection_errors_exhaust_into_typed_error() -> None:
    s = Script(httpx.ConnectError("refused"))
    with pytest.raises(client.ConnectError) as ei:
        _grad(_sync(s))
    assert isinstance(ei.value, ConnectionError) and isinstance(ei.value.__cause__, httpx.ConnectError)
    assert len(s.requests) == FAST.retries + 1


@pytest.mark.parametrize(("exc", "cls"), [
    (httpx.ReadTimeout("slow"), client.Timeout),
    (httpx.ProxyError("proxy"), client.TransportError),
    (httpx.UnsupportedProtocol("gopher"), client.TransportError),
])
def test_other_httpx_errors_are_converted_and_not_retried(exc: Exception, cls: type) -> None:
    s = Script(exc)
    with pytest.raises(cls) as ei:
        _grad(_sync(s))
    assert not isinstance(ei.value, httpx.HTTPError) and ei.value.__cause__ is exc
    assert len(s.requests) == 1


def test_client_errors_are_not_retried_and_are_typed() -> None:
    s = Script(httpx.Response(422, headers={"content-type": PROBLEM}, content=json.dumps(_problem(
        422, "One of the differentiated Tensors does not require grad", exception="RuntimeError",
        errors=[{"loc": ["inputs"], "msg": "m"}])).encode()))
    with pytest.raises(RuntimeError, match="does not require grad") as ei:
        _grad(_sync(s))
    assert isinstance(ei.value, client.AutogradRuntimeError) and ei.value.errors[0]["loc"] == ["inputs"]
    assert len(s.requests) == 1
    s = Script(httpx.Response(401, json=_problem(401, "missing key")))
    with pytest.raises(client.AuthenticationError):
        _grad(_sync(s))


def test_bad_base_url_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Client("ftp://example.invalid")


# ---------------------------------------------------------------- the async shell
def _async(script: Script, **kw: object) -> AsyncClient:
    return AsyncClient("http://test", transport=httpx.MockTransport(script), retries=FAST, **kw)


def _arun(fn: Callable[[AsyncClient], object], c: AsyncClient) -> object:
    async def main() -> object:
        async with c:
            return await fn(c)  # type: ignore[misc]
    return asyncio.run(main())


async def _agrad(c: AsyncClient) -> tuple:
    w = c.tensor(1.5, requires_grad=True)
    return await c.autograd_grad(w * w * 1.0, [w])


def test_async_retries_and_decoding() -> None:
    s = Script(httpx.ConnectError("refused"),
               httpx.Response(503, json=_problem(503, "busy"), headers={"Retry-After": "0"}), _ok([G]))
    (g,) = _arun(_agrad, _async(s))
    assert g == 3.0 and len(s.requests) == 3


def test_async_errors_are_typed() -> None:
    s = Script(httpx.Response(422, json=_problem(422, "bad value", exception="ValueError")))
    with pytest.raises(ValueError, match="bad value"):
        _arun(_agrad, _async(s))
    s = Script(httpx.ReadTimeout("slow"))
    with pytest.raises(client.Timeout):
        _arun(_agrad, _async(s))
    assert len(s.requests) == 1


def test_sync_and_async_send_the_same_bytes() -> None:
    bodies: list[bytes] = []

    def answer(req: httpx.Request) -> httpx.Response:
        bodies.append(req.content)
        return _ok([G])

    _grad(_sync(Script(answer)))

    async def agrad(c: AsyncClient) -> tuple:
        w = c.tensor(1.5, requires_grad=True, name="w")
        return await c.autograd_grad(w * w * 1.0, [w])

    _arun(agrad, _async(Script(answer)))
    assert len(bodies) == 2 and bodies[0] == bodies[1]
