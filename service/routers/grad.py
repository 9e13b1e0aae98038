"""``POST /v1/grad``: run a graph and ``autograd_grad`` (JSON or Triton binary body)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.requests import ClientDisconnect

from .. import core
from ..buffers import BODIES, BODY_EXTENSION
from ..deps import get_service
from ..errors import BadRequest, BodyTimeout, PayloadTooLarge, UnsupportedMediaType
from ..wire import GradResponse, Problem

router = APIRouter(prefix="/v1", tags=["grad"])

_PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}
_SCHEMA_REF = {"$ref": "#/components/schemas/GradRequest"}
_HEADER_LENGTH_KEY = core.HEADER_LENGTH.lower().encode()


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _header_map(raw: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """A request's headers by (lower-case) name, the first of repeated ones as Starlette's
    ``Headers.get`` has it: one pass, where each ``Headers.get`` scans them all again."""
    out: dict[bytes, bytes] = {}
    for k, v in raw:
        if k not in out:
            out[k] = v
    return out


def _str(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


_WANTS_BINARY: dict[str | None, bool] = {}  # by Accept value: clients send the same few


def _wants_binary(accept: str | None) -> bool:
    """True when Accept prefers application/octet-stream over JSON."""
    known = _WANTS_BINARY.get(accept)
    if known is None:
        known = _parse_accept(accept)
        if len(_WANTS_BINARY) < 256:  # bounded: a client could send a new value every time
            _WANTS_BINARY[accept] = known
    return known


def _parse_accept(accept: str | None) -> bool:
    q_bin = q_json = 0.0
    for part in (accept or "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media == core.BINARY_MEDIA_TYPE:
            q_bin = max(q_bin, q)
        elif media in (core.JSON_MEDIA_TYPE, "application/*", "*/*"):
            q_json = max(q_json, q if media == core.JSON_MEDIA_TYPE else q * 0.999)
    return q_bin > 0 and q_bin >= q_json


_CONTENT_TYPES = {core.JSON_MEDIA_TYPE: core.JSON_MEDIA_TYPE.encode(),
                  core.BINARY_MEDIA_TYPE: core.BINARY_MEDIA_TYPE.encode()}


class PartsResponse(Response):
    """A response whose body is several buffers sent one after another, so that tensor bytes
    and big base64 strings go out as they are instead of being joined into one copy first."""

    def __init__(self, parts: list[bytes | memoryview], media_type: str, headers: dict[str, str]) -> None:
        # the raw headers built here, not by Response.__init__ (which costs several us per request)
        self.parts = parts
        self.status_code = 200
        self.background = None
        self.media_type = media_type
        self.raw_headers = [(b"content-length", str(sum(len(p) for p in parts)).encode()),
                            (b"content-type", _CONTENT_TYPES.get(media_type) or media_type.encode()),
                            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        last = len(self.parts) - 1
        for i, part in enumerate(self.parts):
            await send({"type": "http.response.body", "body": part, "more_body": i < last})


# Bodies from this size on are read into one buffer (service.http.WholeBody, service.buffers)
# when the server offers it; smaller ones come in one or two pieces anyway.
WHOLE_BODY_MIN_BYTES = 1 << 18


async def _read_body(request: Request, limit: int, timeout: float | None = None,
                     declared: str | None | bool = False, whole: bool = False) -> bytes | bytearray:
    """The whole body, within ``max_body_bytes`` and within ``timeout`` seconds (by default the
    app's ``request_timeout_s``): a client that sends slowly or stops mid-body gets 408, and its
    connection is closed, instead of holding a request open for ever. With ``whole``, a big body
    may come as a reused ``bytearray`` of :data:`service.buffers.BODIES` (read only: other
    requests get it after this one let it go)."""
    if timeout is None:
        settings = getattr(request.app.state, "settings", None)
        timeout = settings.request_timeout_s if settings is not None else None
    if getattr(getattr(request.receive, "__self__", None), "more_body", None) is False:
        # uvicorn has the whole body already (its request cycle says no more is coming): reading
        # it cannot wait, and arming a timeout for it cost a small request about 5 us
        return await _read_all(request, limit, declared)
    try:
        async with asyncio.timeout(timeout):  # unlike wait_for, no extra task per request
            return await _read_all(request, limit, declared, whole)
    except TimeoutError:
        raise BodyTimeout(f"the request body did not arrive within request_timeout_s={timeout:g} s",
                          loc=("body",)) from None


async def _read_all(request: Request, limit: int, declared: str | None | bool = False,
                    whole: bool = False) -> bytes | bytearray:
    if declared is False:  # the caller did not look it up
        declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise BadRequest("Content-Length is not an integer", loc=("headers", "Content-Length")) from None
        if n > limit:
            raise PayloadTooLarge(f"the body has {n} bytes; the limit max_body_bytes is {limit}",
                                  limit="max_body_bytes", loc=("body",))
        reader = request.scope.get("extensions", {}).get(BODY_EXTENSION) if whole else None
        buf = BODIES.take(n) if reader is not None and n >= WHOLE_BODY_MIN_BYTES else None
        if buf is not None:  # (None: the buffers' budget is taken, by bodies still arriving)
            got = await reader.read_into(memoryview(buf))
            if got == n:
                return buf
            if got is not None:  # the client went away mid-body
                raise ClientDisconnect()
    chunks, size = [], 0
    receive = request.receive  # the ASGI messages themselves: Request.stream's generator costs more
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect: the client went away
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over the limit max_body_bytes ({limit} bytes)",
                                  limit="max_body_bytes", loc=("body",))
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


@router.post(
    "/grad",
    summary="Evaluate a graph and autograd_grad",
    response_model=GradResponse,
    responses={
        200: {"content": {core.BINARY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
              "description": "Gradients and values (binary layout with Accept: application/octet-stream)"},
        400: _PROBLEM, 401: _PROBLEM, 409: _PROBLEM, 413: _PROBLEM, 415: _PROBLEM, 422: _PROBLEM,
        503: _PROBLEM, 504: _PROBLEM,
    },
    openapi_extra={"requestBody": {"required": True, "content": {
        core.JSON_MEDIA_TYPE: {"schema": _SCHEMA_REF},
        core.BINARY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary",
                                            "description": "Inference-Header-Content-Length bytes of "
                                                           "GradRequest JSON, then the tensor blobs"}},
    }}},
)
async def grad(request: Request) -> Response:
    """The graph's ``inputs`` and ``nodes`` (or ``source``) are built, then the top level's
    ``autograd_grad(outputs, inputs, grad_outputs, retain_graph, create_graph, allow_unused,
    materialize_grads)`` runs; ``return`` names further values to send back."""
    # the service (and the API key check) without FastAPI's dependency solver: this route is the
    # hot one, and the solver costs it more than everything else it skips (the schema's security
    # comes from service.openapi, not from dependencies)
    service = await get_service(request)
    settings = service.settings
    deadline = time.monotonic() + settings.request_timeout_s
    h = _header_map(request.scope["headers"])
    media = _media_type(_str(h.get(b"content-type")))
    if media not in (core.JSON_MEDIA_TYPE, core.BINARY_MEDIA_TYPE):
        raise UnsupportedMediaType(
            f"Content-Type must be {core.JSON_MEDIA_TYPE} or {core.BINARY_MEDIA_TYPE} "
            f"(with {core.HEADER_LENGTH}), got {media or 'none'!r}", loc=("headers", "Content-Type"))
    body = await _read_body(request, settings.max_body_bytes, declared=_str(h.get(b"content-length")),
                            whole=True)
    job = core.Job(body, media, _str(h.get(_HEADER_LENGTH_KEY)), _wants_binary(_str(h.get(b"accept"))),
                   settings, deadline, service.plan_cache)
    if job.runs_fast():  # a small graph known to run fast: cheaper than a thread hand-off
        parts, media_type, headers = job.parts()
    else:
        parts, media_type, headers = await service.gate.run(job.parts, max(0.0, deadline - time.monotonic()))
    return PartsResponse(parts, media_type, headers)

