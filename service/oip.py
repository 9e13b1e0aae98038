"""The Open Inference Protocol (KServe v2, Triton's HTTP API) on top of the v1 core.

Transport-free like :mod:`service.core`: an infer request's bytes in, response bytes out. Every
request becomes a v1 request and runs through ``core.evaluate_binary``, so validation, limits,
deadlines, results and errors are the v1 ones. One model is served: ``gradserve``, version ``1``.

An infer request carries:

- ``graph``: a BYTES tensor of one element holding the v1 ``graph`` JSON object. An entry of its
  ``inputs`` may leave out ``datatype``, ``shape`` and the data when an input tensor of the same
  name carries them: ``{"name": "w", "requires_grad": true}``.
- Every other input tensor is the graph input of the same name (``parameters.requires_grad``
  may mark it too), except ``grad_output:<name>``: the grad_output of the autograd output
  ``<name>``. Datatypes FP16, FP32, FP64, INT32, INT64 and BOOL.
- ``parameters``: the v1 arguments under their v1 names. ``outputs``, ``inputs`` and ``return``
  take a list of names or one comma-separated string; ``retain_graph``, ``create_graph``,
  ``allow_unused``, ``materialize_grads`` and ``is_grads_batched`` take booleans. Triton's
  ``binary_data_output`` and ``timeout`` (microseconds, shortens the deadline) are honoured;
  its scheduling parameters (``priority``, ``sequence_*``) are accepted and ignored.
- Requested ``outputs``: ``grad:<input>`` for a gradient, any other name for a value of the
  graph. Without ``parameters.inputs``, the requested ``grad:`` outputs name the differentiated
  inputs. Without requested outputs, the differentiated inputs are ``parameters.inputs`` or else
  every graph input that requires grad, and the response has ``grad:<input>`` for each of them
  and every ``return`` value. A gradient that is None (``allow_unused``) is left out, so tritonclient's
  ``as_numpy("grad:x")`` gives None, as torch does.

Triton's binary tensor data extension works both ways: ``Inference-Header-Content-Length``
splits the JSON header from the tensor bytes (each tensor with ``parameters.binary_data_size``,
BYTES elements as a 4-byte little-endian length and the bytes), and an output is sent binary
when its ``parameters.binary_data`` (or the request's ``binary_data_output``) is true.
``Content-Encoding: gzip`` or ``deflate`` request bodies are accepted (tritonclient's
``request_compression_algorithm``).

>>> import orjson
>>> graph = {"inputs": [{"name": "x", "requires_grad": True}], "source": "y = sum(x * x)"}
>>> req = {"inputs": [
...     {"name": "graph", "datatype": "BYTES", "shape": [1], "data": [orjson.dumps(graph).decode()]},
...     {"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}],
...        "parameters": {"outputs": "y"}, "outputs": [{"name": "grad:x"}]}
>>> body, media_type, headers = process_infer(orjson.dumps(req))
>>> orjson.loads(body)["outputs"][0]["data"]
[2.0, 4.0]
"""

from __future__ import annotations

import struct
import time
import zlib
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

import engine

from . import codec, core
from .errors import BadRequest, InvalidGraph, InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from .plan_cache import PlanCache
from .settings import Settings
from .wire import DATATYPES, canonical_datatype

__all__ = ["MODEL_NAME", "MODEL_VERSION", "EXTENSIONS", "GRAPH_INPUT", "GRAD_PREFIX",
           "GRAD_OUTPUT_PREFIX", "InferRequest", "server_metadata", "model_metadata", "decode_content",
           "process_infer", "bytes_elements"]

MODEL_NAME = "gradserve"
MODEL_VERSION = "1"
EXTENSIONS = ["binary_tensor_data", "parameters"]
GRAPH_INPUT = "graph"
GRAD_PREFIX = "grad:"
GRAD_OUTPUT_PREFIX = "grad_output:"

_NAME_PARAMS = ("outputs", "inputs", "return")
_FLAG_PARAMS = ("retain_graph", "create_graph", "allow_unused", "materialize_grads", "is_grads_batched")
_IGNORED_PARAMS = ("priority", "sequence_id", "sequence_start", "sequence_end", "headers")
_KNOWN_PARAMS = (*_NAME_PARAMS, *_FLAG_PARAMS, "binary_data_output", "timeout", *_IGNORED_PARAMS)
_LEN = struct.Struct("<I")

Loc = tuple[str | int, ...]


# ---------------------------------------------------------------- request schema
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class InferTensor(_Model):
    """An input tensor: JSON ``data`` (flat or nested, row-major) or ``parameters.binary_data_size``."""

    name: str = Field(min_length=1)
    shape: list[Annotated[int, Field(ge=0)]]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: Any = None


class RequestedOutput(_Model):
    name: str = Field(min_length=1)
    parameters: dict[str, Any] | None = None


class InferRequest(_Model):
    """``$inference_request`` of the protocol."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferTensor] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


# ---------------------------------------------------------------- metadata
def server_metadata() -> dict[str, Any]:
    """``GET /v2``."""
    return {"name": MODEL_NAME, "version": engine.__version__, "extensions": list(EXTENSIONS)}


def model_metadata() -> dict[str, Any]:
    """``GET /v2/models/gradserve``. Input tensors other than ``graph`` are named by the graph."""
    return {"name": MODEL_NAME, "versions": [MODEL_VERSION], "platform": "gradserve",
            "inputs": [{"name": GRAPH_INPUT, "datatype": "BYTES", "shape": [1]}], "outputs": []}


# ---------------------------------------------------------------- body
def decode_content(body: bytes, encoding: str | None, limit: int,
                   limit_name: str = "max_body_bytes") -> bytes:
    """Undo ``Content-Encoding`` gzip or deflate, refusing more than ``limit`` bytes of output
    (inflating stops there: a gzip bomb costs ``limit`` bytes at most)."""
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc not in ("gzip", "deflate"):
        raise UnsupportedMediaType(f"Content-Encoding {enc[:40]!r} is not supported (gzip, deflate)",
                                   loc=("headers", "Content-Encoding"))
    d = zlib.decompressobj(16 + zlib.MAX_WBITS if enc == "gzip" else zlib.MAX_WBITS)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as e:
        raise BadRequest(f"the {enc} body does not decompress: {e}", loc=("body",)) from None
    if len(out) > limit:
        raise PayloadTooLarge(f"the decompressed body is over the limit {limit_name} ({limit} bytes)",
                              limit=limit_name, loc=("body",))
    if not d.eof or d.unused_data:
        raise BadRequest(f"the {enc} body is truncated or has trailing bytes", loc=("body",))
    return out


def _split(body: bytes, header_length: str | None, json_limit: int | None = None
           ) -> tuple[dict[str, Any], memoryview]:
    view = memoryview(body)
    if header_length is None:
        return core.parse_json(view, json_limit), view[len(view):]
    try:
        n = int(header_length)
    except ValueError:
        n = -1
    if not 0 <= n <= len(body):
        raise BadRequest(f"{core.HEADER_LENGTH} must be an integer between 0 and the body length "
                         f"({len(body)}), got {header_length[:40]!r}", loc=("headers", core.HEADER_LENGTH))
    return core.parse_json(view[:n], json_limit), view[n:]


_INFER_FIELDS = core.model_fields(InferRequest)


def parse_infer(payload: dict[str, Any]) -> InferRequest:
    """Validate an infer request's JSON header (InvalidRequest naming each bad field)."""
    try:
        return InferRequest.model_validate(payload)
    except ValidationError as e:
        errors = [{"loc": list(err["loc"]), "msg": core.extra_field_msg(err["loc"], err["msg"], _INFER_FIELDS)
                   if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")}
                  for err in e.errors(include_url=False, include_input=False, include_context=False)]
        where = ".".join(str(x) for x in errors[0]["loc"]) or "request"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InvalidRequest(f"{where}: {errors[0]['msg']}{more}", errors=errors) from None


def bytes_elements(buf: bytes | memoryview, count: int, loc: Loc = ()) -> list[bytes]:
    """Split Triton's BYTES serialization (per element: uint32 LE length, then the bytes)."""
    view, out, off = memoryview(buf), [], 0
    for _ in range(count):
        if off + 4 > len(view):
            raise BadRequest(f"the BYTES data ends inside the length of element {len(out)}", loc=loc)
        (n,) = _LEN.unpack_from(view, off)
        off += 4
        if off + n > len(view):
            raise BadRequest(f"BYTES element {len(out)} declares {n} bytes but only {len(view) - off} "
                             "remain", loc=loc)
        out.append(bytes(view[off:off + n]))
        off += n
    if off != len(view):
        raise BadRequest(f"the BYTES data has {len(view) - off} bytes after its {count} element(s)", loc=loc)
    return out


# ---------------------------------------------------------------- request -> v1
def _names(v: Any, key: str) -> list[str] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return [s.strip() for s in v.split(",") if s.strip()]
    if isinstance(v, list) and all(isinstance(s, str) for s in v):
        return list(v)
    raise InvalidRequest(f"parameters.{key} takes a list of names or one comma-separated string",
                         loc=("parameters", key))


def _flag(params: dict[str, Any], key: str, default: bool | None = None) -> bool | None:
    v = params.get(key, default)
    if v is not None and not isinstance(v, bool):
        raise InvalidRequest(f"parameters.{key} must be true or false", loc=("parameters", key))
    return v


def _numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _graph_json(t: InferTensor, i: int, blob: memoryview | None) -> dict[str, Any]:
    loc: Loc = ("inputs", i)
    if t.datatype != "BYTES":
        raise InvalidRequest(f"the input '{GRAPH_INPUT}' must be BYTES, got {t.datatype}",
                             loc=(*loc, "datatype"))
    if _numel(t.shape) != 1:
        raise InvalidRequest(f"the input '{GRAPH_INPUT}' holds one element (shape [1]), not shape {t.shape}",
                             loc=(*loc, "shape"))
    if blob is not None:
        raw: Any = bytes_elements(blob, 1, loc)[0]
    else:
        raw = t.data
        while isinstance(raw, list) and len(raw) == 1:
            raw = raw[0]
        if isinstance(raw, dict):  # a JSON object in place of its string: handy with curl
            return raw
        if not isinstance(raw, str):
            raise InvalidRequest(f"the input '{GRAPH_INPUT}' holds one string: the graph JSON",
                                 loc=(*loc, "data"))
    try:
        graph = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"the input '{GRAPH_INPUT}' is not valid JSON: {e}", loc=(*loc, "data")) from None
    if not isinstance(graph, dict):
        raise InvalidRequest(f"the input '{GRAPH_INPUT}' must hold a JSON object (the v1 graph)",
                             loc=(*loc, "data"))
    return graph


def _tensor(t: InferTensor, i: int, blob: memoryview | None) -> dict[str, Any]:
    """An OIP input tensor as a v1 tensor object (the blob, if any, travels beside it)."""
    loc: Loc = ("inputs", i)
    if t.datatype not in DATATYPES:
        raise InvalidRequest(f"input '{t.name}': datatype {t.datatype} is not supported; use one of "
                             f"{', '.join(DATATYPES)} (BYTES only for '{GRAPH_INPUT}')",
                             loc=(*loc, "datatype"))
    out: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": t.shape}
    if blob is not None:
        out["parameters"] = {"binary_data_size": len(blob)}
    elif t.data is None:
        raise InvalidRequest(f"input '{t.name}' needs data or parameters.binary_data_size",
                             loc=(*loc, "data"))
    else:
        out["data"] = t.data
    return out


def _requires_grad(t: InferTensor, i: int) -> bool | None:
    v = (t.parameters or {}).get("requires_grad")
    if v is not None and not isinstance(v, bool):
        raise InvalidRequest(f"input '{t.name}': parameters.requires_grad must be true or false",
                             loc=("inputs", i, "parameters", "requires_grad"))
    return v


def _blobs(req: InferRequest, rest: memoryview) -> list[memoryview | None]:
    out: list[memoryview | None] = []
    off = 0
    for i, t in enumerate(req.inputs):
        p = t.parameters or {}
        if "shared_memory_region" in p:
            raise InvalidRequest("shared-memory tensors are not supported; send the data in the body",
                                 loc=("inputs", i, "parameters", "shared_memory_region"))
        size = p.get("binary_data_size")
        if size is None:
            out.append(None)
            continue
        if type(size) is not int or size < 0:
            raise InvalidRequest("binary_data_size must be a non-negative integer",
                                 loc=("inputs", i, "parameters", "binary_data_size"))
        if t.data is not None:
            raise InvalidRequest(f"input '{t.name}' has both data and binary_data_size",
                                 loc=("inputs", i))
        if off + size > len(rest):
            raise BadRequest(f"input '{t.name}' needs {size} binary bytes but only {len(rest) - off} remain "
                             f"after the {core.HEADER_LENGTH} header bytes", loc=("inputs", i))
        out.append(rest[off:off + size])
        off += size
    if off != len(rest):
        raise BadRequest(f"the binary part has {len(rest)} bytes but the inputs' binary_data_size values "
                         f"add up to {off}", loc=("body",))
    return out


_DATA_KEYS = ("data", "b64")


def _has_data(entry: dict[str, Any]) -> bool:
    params = entry.get("parameters")
    return any(k in entry for k in _DATA_KEYS) or (
        isinstance(params, dict) and params.get("binary_data_size") is not None)


_Tensor = tuple[dict[str, Any], bool | None, memoryview | None]  # v1 tensor, requires_grad, blob


def _merge_inputs(graph: dict[str, Any], tensors: dict[str, _Tensor]
                  ) -> tuple[list[Any], list[memoryview]]:
    """The graph's ``inputs`` with each entry's data taken from the input tensor of its name,
    then the input tensors the graph does not list; and their blobs in that order."""
    entries = graph.get("inputs", [])
    if not isinstance(entries, list):
        raise InvalidRequest("graph.inputs must be a list", loc=("graph", "inputs"))
    merged: list[Any] = []
    blobs: list[memoryview] = []
    left = dict(tensors)
    for k, e in enumerate(entries):
        name = e.get("name") if isinstance(e, dict) else None
        if not isinstance(name, str) or name not in left:
            if isinstance(e, dict) and isinstance(name, str):
                params = e.get("parameters")
                if isinstance(params, dict) and params.get("binary_data_size") is not None:
                    raise InvalidGraph(f"graph input '{name}': binary data travels as an input tensor, "
                                       "not inside the graph JSON", loc=("graph", "inputs", k, "parameters"))
                if not _has_data(e):
                    raise InvalidGraph(f"graph input '{name}' has no data: send an input tensor named "
                                       f"'{name}'", loc=("graph", "inputs", k))
            merged.append(e)  # a constant carried inside the graph (or a bad entry v1 will name)
            continue
        if _has_data(e):
            raise InvalidGraph(f"graph input '{name}' has data in the graph and an input tensor too; "
                               "send it once", loc=("graph", "inputs", k))
        t, rg, blob = left.pop(name)
        for key in ("datatype", "shape"):
            if key in e:
                given = e[key]
                try:
                    same = (canonical_datatype(given) if key == "datatype" else given) == t[key]
                except (ValueError, TypeError):
                    same = False
                if not same:
                    raise InvalidGraph(f"graph input '{name}' declares {key} {given!r} but the input tensor "
                                       f"has {t[key]!r}", loc=("graph", "inputs", k, key))
        item = {**{key: v for key, v in e.items() if key not in ("datatype", "shape")}, **t}
        if "requires_grad" not in e and rg is not None:
            item["requires_grad"] = rg
        merged.append(item)
        if blob is not None:
            blobs.append(blob)
    for t, rg, blob in left.values():  # input tensors the graph does not list
        merged.append({**t, "requires_grad": bool(rg)})
        if blob is not None:
            blobs.append(blob)
    return merged, blobs


class _Output:
    __slots__ = ("kind", "name", "binary")

    def __init__(self, kind: str, name: str, binary: bool) -> None:
        self.kind, self.name, self.binary = kind, name, binary


def _requested(req: InferRequest, binary_default: bool) -> list[_Output]:
    out, seen = [], set()
    for j, o in enumerate(req.outputs or []):
        p = o.parameters or {}
        if "classification" in p:
            raise InvalidRequest("the classification extension is not supported",
                                 loc=("outputs", j, "parameters", "classification"))
        binary = p.get("binary_data", binary_default)
        if not isinstance(binary, bool):
            raise InvalidRequest("parameters.binary_data must be true or false",
                                 loc=("outputs", j, "parameters", "binary_data"))
        if o.name in seen:
            raise InvalidRequest(f"output '{o.name}' is requested twice", loc=("outputs", j, "name"))
        seen.add(o.name)
        if o.name.startswith(GRAD_PREFIX):
            out.append(_Output("grad", o.name[len(GRAD_PREFIX):], binary))
        else:
            out.append(_Output("value", o.name, binary))
    return out


def to_v1(req: InferRequest, rest: memoryview) -> tuple[dict[str, Any], list[memoryview], list[_Output]]:
    """The v1 payload and its blobs, plus the outputs to send back, for an infer request."""
    params = dict(req.parameters or {})
    unknown = sorted(set(params) - set(_KNOWN_PARAMS))
    if unknown:
        raise InvalidRequest(f"unknown parameter {unknown[0]!r}; the parameters are "
                             f"{', '.join(_NAME_PARAMS + _FLAG_PARAMS)}, binary_data_output and timeout",
                             loc=("parameters", unknown[0]))
    blobs = _blobs(req, rest)
    graph: dict[str, Any] | None = None
    tensors: dict[str, _Tensor] = {}
    grad_outs: dict[str, tuple[int, dict[str, Any], memoryview | None]] = {}
    seen: set[str] = set()
    for i, (t, blob) in enumerate(zip(req.inputs, blobs)):
        if t.name in seen:
            raise InvalidRequest(f"input '{t.name}' is given twice", loc=("inputs", i, "name"))
        seen.add(t.name)
        if t.name == GRAPH_INPUT:
            graph = _graph_json(t, i, blob)
        elif t.name.startswith(GRAD_OUTPUT_PREFIX):
            grad_outs[t.name[len(GRAD_OUTPUT_PREFIX):]] = (i, _tensor(t, i, blob), blob)
        else:
            tensors[t.name] = (_tensor(t, i, blob), _requires_grad(t, i), blob)
    if graph is None:
        raise InvalidRequest(f"an infer request needs the BYTES input '{GRAPH_INPUT}' holding the graph JSON",
                             loc=("inputs",))
    graph_inputs, v1_blobs = _merge_inputs(graph, tensors)
    graph = {**graph, "inputs": graph_inputs}

    outputs = _names(params.get("outputs"), "outputs")
    inputs = _names(params.get("inputs"), "inputs")
    returns = _names(params.get("return"), "return") or []
    requested = _requested(req, bool(_flag(params, "binary_data_output", False)))
    if req.outputs is not None:
        wanted_grads = [o.name for o in requested if o.kind == "grad"]
        if inputs is None:
            inputs = wanted_grads or None
        else:
            for j, o in enumerate(requested):
                if o.kind == "grad" and o.name not in inputs:
                    raise InvalidRequest(f"output '{GRAD_PREFIX}{o.name}' is requested but '{o.name}' is not "
                                         "in parameters.inputs", loc=("outputs", j, "name"))
        returns += [o.name for o in requested if o.kind == "value" and o.name not in returns]
    else:
        if inputs is None and outputs is not None:  # every input that requires grad, in graph order
            inputs = [t["name"] for t in graph_inputs if isinstance(t, dict)
                      and t.get("requires_grad") is True and isinstance(t.get("name"), str)] or None
        binary = bool(_flag(params, "binary_data_output", False))
        requested = [_Output("grad", n, binary) for n in dict.fromkeys(inputs or [])]
        requested += [_Output("value", n, binary) for n in dict.fromkeys(returns)]

    grad_outputs: list[Any] | None = None
    if grad_outs:
        for name, (i, _, _) in grad_outs.items():
            if outputs is None or name not in outputs:
                raise InvalidRequest(f"input '{GRAD_OUTPUT_PREFIX}{name}' names no autograd output "
                                     f"(parameters.outputs: {', '.join(outputs or []) or 'none'})",
                                     loc=("inputs", i, "name"))
        grad_outputs = []
        for o in outputs or []:
            _, t, blob = grad_outs.get(o, (0, None, None))
            grad_outputs.append(t)
            if blob is not None:
                v1_blobs.append(blob)

    payload: dict[str, Any] = {"graph": graph}
    if outputs is not None:
        payload["outputs"] = outputs
    if inputs is not None:
        payload["inputs"] = inputs
    if grad_outputs is not None:
        payload["grad_outputs"] = grad_outputs
    for key in _FLAG_PARAMS:
        v = _flag(params, key)
        if v is not None:
            payload[key] = v
    if returns:
        payload["return"] = returns
    return payload, v1_blobs, requested


# ---------------------------------------------------------------- v1 result -> response
def _response(req: InferRequest, payload: dict[str, Any], resp: dict[str, Any], blobs: list[memoryview],
              requested: list[_Output]) -> tuple[bytes, str, dict[str, str]]:
    it = iter(blobs)
    grads = [None if g is None else (g, next(it)) for g in resp["grads"]]
    values = {k: None if v is None else (v, next(it)) for k, v in resp["values"].items()}
    index = {name: i for i, name in reversed(list(enumerate(payload.get("inputs") or [])))}
    outputs: list[dict[str, Any]] = []
    out_blobs: list[memoryview] = []
    for o in requested:
        found = grads[index[o.name]] if o.kind == "grad" else values.get(o.name)
        if found is None:  # an unused input's gradient is None, as in torch: no output
            continue
        t, blob = found
        item: dict[str, Any] = {"name": GRAD_PREFIX + o.name if o.kind == "grad" else o.name,
                                "datatype": t["datatype"], "shape": t["shape"]}
        if o.binary:
            item["parameters"] = {"binary_data_size": len(blob)}
            out_blobs.append(blob)
        else:
            item["data"] = codec.json_data(codec.decode_bytes(blob, t["datatype"], t["shape"]), numpy_ok=True)
        outputs.append(item)
    body: dict[str, Any] = {"model_name": MODEL_NAME, "model_version": MODEL_VERSION}
    if req.id is not None:
        body["id"] = req.id
    body["outputs"] = outputs
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not out_blobs:
        return header, core.JSON_MEDIA_TYPE, {}
    return b"".join([header, *out_blobs]), core.BINARY_MEDIA_TYPE, {core.HEADER_LENGTH: str(len(header))}


def process_infer(body: bytes, header_length: str | None = None, content_encoding: str | None = None,
                  settings: Settings | None = None, deadline: float | None = None,
                  plan_cache: PlanCache | None = None) -> tuple[bytes, str, dict[str, str]]:
    """Handle one ``POST /v2/models/gradserve/infer`` body: (response bytes, media type, headers).

    Raises :class:`service.errors.GradserveError` subclasses, as :func:`service.core.process_body`
    does. ``plan_cache`` is the server's (shared with v1: the same graph has the same plan).
    Meant to run in an engine thread.
    """
    s = settings or Settings()
    if deadline is None:
        deadline = time.monotonic() + s.request_timeout_s
    # a JSON body inflates into JSON text: the JSON limit; a binary body may hold big blobs
    if header_length is None and core.json_limit(s) < s.max_body_bytes:
        body = decode_content(body, content_encoding, core.json_limit(s), "max_json_body_bytes")
    else:
        body = decode_content(body, content_encoding, s.max_body_bytes)
    header, rest = _split(body, header_length, core.json_limit(s))
    req = parse_infer(header)
    timeout_us = (req.parameters or {}).get("timeout")
    if timeout_us is not None:
        if isinstance(timeout_us, bool) or not isinstance(timeout_us, (int, float)) or timeout_us < 0:
            raise InvalidRequest("parameters.timeout is a number of microseconds",
                                 loc=("parameters", "timeout"))
        if timeout_us > 0:
            deadline = min(deadline, time.monotonic() + timeout_us / 1e6)
    payload, blobs, requested = to_v1(req, rest)
    resp, out_blobs = core.evaluate_binary(payload, blobs, s, deadline=deadline, plan_cache=plan_cache)
    return _response(req, payload, resp, out_blobs, requested)
