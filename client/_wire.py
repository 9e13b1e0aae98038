"""Wire format v1, sans I/O: tensor encodings, request bodies, response parsing and retry timing.

Nothing here touches the network or the clock, so the sync and the async client (and the embedded
mode) share every byte of it; only the thin shells in ``_client.py`` do I/O.
"""

from __future__ import annotations

import email.utils
import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pybase64  # SIMD base64: ~50x faster than the standard library on big tensors

from .errors import APIError, ResponseError, problem_to_error

__all__ = [
    "DATATYPES", "Encoding", "RetryPolicy", "HTTPRequest", "encode_tensor", "decode_tensor",
    "build_request", "parse_response", "parse_binary_body", "retry_after_seconds", "to_json",
    "Result", "Plan",
]

Encoding = Literal["json", "b64", "binary"]

# Open Inference Protocol names; numpy's names are accepted when reading.
DATATYPES: dict[np.dtype, str] = {
    np.dtype(np.float16): "FP16", np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64",
    np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64", np.dtype(np.bool_): "BOOL",
}
_FROM_DATATYPE: dict[str, np.dtype] = {v: k for k, v in DATATYPES.items()}
_FROM_DATATYPE.update({str(k): k for k in DATATYPES})  # "float32", ..., "bool"

JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"
HEADER_LENGTH = "Inference-Header-Content-Length"
GRAD_PATH = "/v1/grad"

_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


# ---------------------------------------------------------------- tensors
def datatype_of(arr: np.ndarray) -> str:
    try:
        return DATATYPES[arr.dtype.newbyteorder("=")]
    except KeyError:
        raise TypeError(f"dtype {arr.dtype} cannot be sent: the wire carries "
                        f"{', '.join(sorted(str(d) for d in DATATYPES))}") from None


def _json_number(v: float) -> float | str:
    if math.isfinite(v):
        return v
    return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")


def json_data(arr: np.ndarray) -> Any:
    """Row-major JSON ``data``: a number for 0-d tensors, else a flat list; non-finite as strings."""
    flat = arr.reshape(-1)
    if arr.dtype in (np.float16, np.float32):
        # The shortest decimal that rounds back to the same float32 (0.9, not 0.8999999761581421):
        # exact once the server casts it to the tensor's datatype, and readable in curl bodies.
        values = [float(str(v)) for v in flat]
    else:
        values = flat.tolist()
    if arr.dtype.kind == "f" and not np.isfinite(flat).all():
        values = [_json_number(v) for v in values]
    return values[0] if arr.ndim == 0 else values


def encode_tensor(name: str, arr: np.ndarray, encoding: Encoding,
                  requires_grad: bool = False) -> tuple[dict[str, Any], bytes | None]:
    """A v1 tensor object for ``arr``; for ``binary`` also the bytes that follow the JSON header."""
    obj: dict[str, Any] = {"name": name, "datatype": datatype_of(arr), "shape": list(arr.shape)}
    blob = None
    if encoding == "json":
        obj["data"] = json_data(arr)
    else:
        raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        if encoding == "b64":
            obj["b64"] = pybase64.b64encode_as_string(raw)
        else:
            obj["parameters"] = {"binary_data_size": len(raw)}
            blob = raw
    if requires_grad:
        obj["requires_grad"] = True
    return obj, blob


def decode_tensor(obj: Any, blob: bytes | bytearray | memoryview | None = None) -> np.ndarray:
    """The numpy array of a v1 tensor object (``data``, ``b64`` or the binary ``blob``)."""
    if not isinstance(obj, Mapping):
        raise ResponseError(f"expected a tensor object, got {type(obj).__name__}")
    try:
        dt = _FROM_DATATYPE[obj["datatype"]]
        shape = tuple(int(s) for s in obj["shape"])
    except (KeyError, TypeError, ValueError) as e:
        raise ResponseError(f"tensor {obj.get('name')!r}: bad datatype or shape ({e})") from None
    le = dt.newbyteorder("<")
    try:
        if blob is not None:
            arr = np.frombuffer(blob, dtype=le).astype(dt, copy=False)
        elif "b64" in obj:
            raw = pybase64.b64decode(obj["b64"], validate=True)
            arr = np.frombuffer(raw, dtype=le).astype(dt, copy=False)
        elif "data" in obj:
            data = obj["data"]
            arr = np.asarray(_nonfinite(data) if dt.kind == "f" else data, dtype=dt)
        else:
            raise ResponseError(f"tensor {obj.get('name')!r} has neither data, b64 nor binary data")
        if not arr.flags.writeable:  # users get ordinary arrays, as from torch's .numpy()
            arr = arr.copy()
        return arr.reshape(shape)
    except (ValueError, TypeError) as e:
        raise ResponseError(f"tensor {obj.get('name')!r}: cannot decode ({e})") from None


def _nonfinite(data: Any) -> Any:
    if isinstance(data, str):
        return _NONFINITE.get(data, data)
    if isinstance(data, list):
        return [_nonfinite(v) for v in data] if any(isinstance(v, (str, list)) for v in data) else data
    return data


# ---------------------------------------------------------------- request bodies
@dataclass(frozen=True)
class HTTPRequest:
    """Everything needed to send one request: the shells hand it to httpx unchanged."""

    method: str
    path: str
    headers: dict[str, str]
    content: bytes


def dumps(payload: Any, indent: int | None = None) -> str:
    """Strict JSON (no NaN literals: the wire writes non-finite numbers as strings)."""
    seps = (",", ":") if indent is None else (",", ": ")
    return json.dumps(payload, separators=seps, indent=indent, allow_nan=False)


def build_request(payload: dict[str, Any], blobs: list[bytes], *, binary_response: bool,
                  api_key: str | None = None, extra_headers: Mapping[str, str] | None = None) -> HTTPRequest:
    """The ``POST /v1/grad`` request: JSON, or Triton's binary layout when there are blobs."""
    header = dumps(payload).encode()
    headers = {"Accept": BINARY_TYPE if binary_response else JSON_TYPE}
    if blobs:
        headers["Content-Type"] = BINARY_TYPE
        headers[HEADER_LENGTH] = str(len(header))
        content = b"".join([header, *blobs])
    else:
        headers["Content-Type"] = JSON_TYPE
        content = header
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if extra_headers:
        headers.update(extra_headers)
    return HTTPRequest("POST", GRAD_PATH, headers, content)


def to_json(payload: dict[str, Any], indent: int | None = 2) -> str:
    return dumps(payload, indent=indent)


# ---------------------------------------------------------------- responses
def _header(headers: Mapping[str, str], name: str) -> str | None:
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    return None


def parse_binary_body(content: bytes, header_length: str | None) -> tuple[dict[str, Any], list[bytearray]]:
    """Split a binary-layout body into its JSON header and the raw tensor bytes, in order."""
    try:
        n = int(header_length or "")
    except ValueError:
        raise ResponseError(f"binary response with a bad {HEADER_LENGTH} header: {header_length!r}") from None
    if not 0 <= n <= len(content):
        raise ResponseError(f"{HEADER_LENGTH} is {n} but the body has {len(content)} bytes")
    head = _loads(content[:n])
    rest = memoryview(content)[n:]
    blobs, pos = [], 0
    for obj in _response_tensors(head):
        size = _binary_size(obj)
        if size is None:
            continue
        if pos + size > len(rest):
            raise ResponseError("the binary response is shorter than its header says")
        blobs.append(bytearray(rest[pos:pos + size]))  # one copy, and the arrays stay writable
        pos += size
    if pos != len(rest):
        raise ResponseError(f"the binary response has {len(rest) - pos} bytes more than its header says")
    return head, blobs


def _loads(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError) as e:
        raise ResponseError(f"the server's answer is not valid JSON ({e})") from None


def _binary_size(obj: Any) -> int | None:
    if not isinstance(obj, Mapping) or "data" in obj or "b64" in obj:
        return None
    params = obj.get("parameters")
    size = params.get("binary_data_size") if isinstance(params, Mapping) else None
    if size is None:
        return None
    if not isinstance(size, int) or size < 0:
        raise ResponseError(f"bad binary_data_size {size!r}")
    return size


def _response_tensors(body: Any) -> list[Any]:
    """Tensor objects of a response in document order (the order of the binary chunks)."""
    if not isinstance(body, Mapping):
        raise ResponseError("the server's answer is not a JSON object")
    out: list[Any] = []
    for key, val in body.items():
        if key == "grads" and isinstance(val, list):
            out.extend(v for v in val if v is not None)
        elif key == "values" and isinstance(val, Mapping):
            out.extend(v for v in val.values() if v is not None)
    return out


@dataclass
class Result:
    """A decoded v1 response: ``grads`` lines up with the request's inputs (None where unused)."""

    grads: list[np.ndarray | None]
    values: dict[str, np.ndarray | None]


@dataclass
class Plan:
    """A request to make (``payload`` None: none) and what to do with its result."""

    payload: dict[str, Any] | None
    blobs: list[bytes]
    finish: Callable[[Result | None], Any]
    binary_response: bool = False


def decode_result(body: Any, blobs: Sequence[bytes | bytearray | memoryview] | None = None) -> Result:
    """Decode the tensors of a v1 response body (blobs: the binary layout's chunks, in order)."""
    if not isinstance(body, Mapping):
        raise ResponseError("the server's answer is not a JSON object")
    it = iter(blobs or [])

    def one(obj: Any) -> np.ndarray | None:
        if obj is None:
            return None
        blob = next(it, None) if _binary_size(obj) is not None else None
        if blob is None and _binary_size(obj) is not None:
            raise ResponseError("a binary tensor has no bytes in the response")
        return decode_tensor(obj, blob)

    grads: list[np.ndarray | None] = []
    values: dict[str, np.ndarray | None] = {}
    for key, val in body.items():  # document order, as the binary chunks are
        if key == "grads":
            if not isinstance(val, list):
                raise ResponseError("'grads' is not a list")
            grads = [one(v) for v in val]
        elif key == "values":
            if not isinstance(val, Mapping):
                raise ResponseError("'values' is not an object")
            values = {str(k): one(v) for k, v in val.items()}
    return Result(grads, values)


def parse_response(status: int, headers: Mapping[str, str], content: bytes) -> Result:
    """Decode an HTTP answer to ``POST /v1/grad``, or raise its typed :class:`APIError`."""
    ctype = (_header(headers, "content-type") or "").split(";")[0].strip().lower()
    if status >= 400:
        raise error_from_response(status, headers, content)
    if ctype == BINARY_TYPE:
        body, blobs = parse_binary_body(content, _header(headers, HEADER_LENGTH))
        return decode_result(body, blobs)
    if ctype.endswith("json"):
        return decode_result(_loads(content))
    raise ResponseError(f"unexpected content type {ctype or 'none'!r} (HTTP {status})")


def error_from_response(status: int, headers: Mapping[str, str], content: bytes) -> APIError:
    """The typed exception for an error answer; tolerant of proxies that answer in plain text."""
    ctype = (_header(headers, "content-type") or "").split(";")[0].strip().lower()
    problem: Any = None
    if ctype.endswith("json"):
        try:
            problem = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            problem = None
    if problem is None:
        text = content[:2000].decode("utf-8", "replace").strip()
        problem = {"status": status, "title": f"HTTP {status}", "detail": text or None}
    return problem_to_error(status, problem, retry_after_seconds(_header(headers, "retry-after")))


# ---------------------------------------------------------------- retries
def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


RETRY_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry: connection errors, 503 and 429 (POST /v1/grad is idempotent).

    Without ``Retry-After`` the wait is exponential with jitter: ``backoff * 2**attempt``, scaled by a
    random factor in [0.5, 1], at most ``max_backoff``. A ``Retry-After`` is honoured exactly, unless
    it asks for more than ``max_retry_after`` seconds: then the error is raised at once.
    """

    retries: int = 3
    backoff: float = 0.25
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry number ``attempt + 1``, or None to give up."""
        if attempt >= self.retries:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        return min(self.max_backoff, self.backoff * 2 ** attempt) * (0.5 + random.random() / 2)
