"""The sans-IO wire code: tensor encodings, the binary layout, Retry-After and the retry policy."""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import numpy as np
import pytest

from client import ResponseError, RetryPolicy
from client import _wire as w

DTYPES = [np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_]


def _sample(dtype: type, shape: tuple[int, ...] = (2, 3)) -> np.ndarray:
    rng = np.random.default_rng(0)
    if dtype is np.bool_:
        return rng.random(shape) > 0.5
    if np.dtype(dtype).kind == "i":
        return rng.integers(-1000, 1000, shape).astype(dtype)
    return (rng.standard_normal(shape) * 100).astype(dtype)


@pytest.mark.parametrize("encoding", ["json", "b64", "binary"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_tensor_round_trip_is_exact(dtype: type, encoding: str) -> None:
    arr = _sample(dtype)
    obj, blob = w.encode_tensor("x", arr, encoding)
    assert obj["datatype"] == {np.float16: "FP16", np.float32: "FP32", np.float64: "FP64",
                               np.int32: "INT32", np.int64: "INT64", np.bool_: "BOOL"}[dtype]
    assert obj["shape"] == [2, 3]
    assert (blob is not None) == (encoding == "binary")
    # through real JSON text, as on the wire
    obj = json.loads(json.dumps(obj))
    back = w.decode_tensor(obj, blob)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


def test_b64_is_little_endian_row_major() -> None:
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    obj, _ = w.encode_tensor("x", arr, "b64")
    raw = base64.b64decode(obj["b64"])
    assert raw == np.arange(6, dtype="<f4").tobytes()
    # a big-endian array is sent little-endian too
    obj, blob = w.encode_tensor("x", arr.astype(">f4"), "binary")
    assert blob == raw and obj["parameters"] == {"binary_data_size": 24}


def test_json_writes_non_finite_as_strings_and_reads_them_back() -> None:
    arr = np.array([1.5, np.nan, np.inf, -np.inf], np.float64)
    obj, _ = w.encode_tensor("x", arr, "json")
    assert obj["data"][1:] == ["NaN", "Infinity", "-Infinity"]
    text = w.dumps(obj)  # strict JSON: no bare NaN
    assert "NaN\"" in text and "Infinity\"" in text
    back = w.decode_tensor(json.loads(text))
    assert back[0] == 1.5 and math.isnan(back[1]) and back[2] == math.inf and back[3] == -math.inf
    nested = {"name": "y", "datatype": "FP32", "shape": [2, 2], "data": [[1, "NaN"], ["-Infinity", 2]]}
    assert np.isneginf(w.decode_tensor(nested)[1, 0])


def test_json_float32_uses_the_shortest_exact_decimal() -> None:
    obj, _ = w.encode_tensor("b", np.array(0.9, np.float32), "json")
    assert obj["data"] == 0.9 and obj["shape"] == []
    assert np.float32(obj["data"]) == np.float32(0.9)


def test_numpy_datatype_aliases_are_read() -> None:
    obj = {"name": "x", "datatype": "float64", "shape": [2], "data": [1, 2]}
    assert w.decode_tensor(obj).dtype == np.float64


def test_unsupported_dtype_is_refused() -> None:
    with pytest.raises(TypeError, match="cannot be sent"):
        w.encode_tensor("x", np.zeros(2, np.uint8), "json")


@pytest.mark.parametrize("obj", [
    {"name": "x", "datatype": "FP99", "shape": [1], "data": [1]},
    {"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2]},
    {"name": "x", "datatype": "FP32", "shape": [1]},
    {"name": "x", "datatype": "FP32", "shape": [1], "b64": "***"},
    "not a tensor",
])
def test_bad_response_tensors_raise_response_error(obj: object) -> None:
    with pytest.raises(ResponseError):
        w.decode_tensor(obj)


def test_build_request_json_and_binary_layout() -> None:
    payload = {"graph": {"inputs": [], "nodes": []}}
    req = w.build_request(payload, [], binary_response=False, api_key="k")
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["Accept"] == "application/json"
    assert req.headers["Authorization"] == "Bearer k"
    assert json.loads(req.content) == payload

    req = w.build_request(payload, [b"abc", b"defg"], binary_response=True)
    n = int(req.headers["Inference-Header-Content-Length"])
    assert req.headers["Content-Type"] == "application/octet-stream"
    assert req.headers["Accept"] == "application/octet-stream"
    assert "Authorization" not in req.headers
    assert json.loads(req.content[:n]) == payload and req.content[n:] == b"abcdefg"


def _binary_response(body: dict, blobs: list[bytes]) -> tuple[dict, bytes]:
    head = json.dumps(body).encode()
    headers = {"content-type": "application/octet-stream",
               "inference-header-content-length": str(len(head))}
    return headers, head + b"".join(blobs)


def test_parse_binary_response_in_document_order() -> None:
    g0, v = np.array([1.0, 2.0], np.float32), np.array([[1, 2], [3, 4]], np.int64)
    body = {"grads": [{"name": "g0", "datatype": "FP32", "shape": [2],
                       "parameters": {"binary_data_size": 8}}, None],
            "values": {"loss": {"name": "loss", "datatype": "FP64", "shape": [], "data": 0.25},
                       "idx": {"name": "idx", "datatype": "INT64", "shape": [2, 2],
                               "parameters": {"binary_data_size": 32}}}}
    headers, content = _binary_response(body, [g0.tobytes(), v.tobytes()])
    res = w.parse_response(200, headers, content)
    np.testing.assert_array_equal(res.grads[0], g0)
    assert res.grads[1] is None
    assert res.values["loss"] == 0.25
    np.testing.assert_array_equal(res.values["idx"], v)


@pytest.mark.parametrize("tamper", ["short", "long", "header"])
def test_binary_response_with_wrong_lengths_is_refused(tamper: str) -> None:
    body = {"grads": [{"name": "g", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}],
            "values": {}}
    headers, content = _binary_response(body, [bytes(8)])
    if tamper == "short":
        content = content[:-1]
    elif tamper == "long":
        content += b"x"
    else:
        headers["inference-header-content-length"] = "nope"
    with pytest.raises(ResponseError):
        w.parse_response(200, headers, content)


def test_error_response_becomes_typed_exception_with_retry_after() -> None:
    from client import ServiceUnavailableError
    problem = {"type": "urn:gradserve:problem:overloaded", "title": "Server overloaded", "status": 503,
               "detail": "busy", "errors": []}
    with pytest.raises(ServiceUnavailableError) as ei:
        w.parse_response(503, {"content-type": "application/problem+json", "retry-after": "2"},
                         json.dumps(problem).encode())
    assert ei.value.retry_after == 2.0 and str(ei.value) == "busy"


def test_plain_text_error_from_a_proxy_is_tolerated() -> None:
    from client import ServerError
    with pytest.raises(ServerError, match="Bad Gateway") as ei:
        w.parse_response(502, {"content-type": "text/html"}, b"<h1>502 Bad Gateway</h1>")
    assert ei.value.status == 502


def test_retry_after_forms() -> None:
    assert w.retry_after_seconds("3") == 3.0
    assert w.retry_after_seconds(" 0 ") == 0.0
    assert w.retry_after_seconds(None) is None
    assert w.retry_after_seconds("soon") is None
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    date = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert w.retry_after_seconds(date, now=now) == 7.0
    assert w.retry_after_seconds(format_datetime(now - timedelta(seconds=7), usegmt=True), now=now) == 0.0


def test_retry_policy_is_bounded_exponential_and_honours_retry_after() -> None:
    p = RetryPolicy(retries=4, backoff=1.0, max_backoff=3.0, max_retry_after=10.0)
    delays = [p.delay(i) for i in range(4)]
    for i, d in enumerate(delays):
        full = min(3.0, 2.0 ** i)
        assert full / 2 <= d <= full
    assert p.delay(4) is None  # retries exhausted
    assert p.delay(0, retry_after=5.0) == 5.0  # honoured exactly, no jitter
    assert p.delay(0, retry_after=11.0) is None  # longer than we are willing to wait: give up now
    assert RetryPolicy(retries=0).delay(0) is None
