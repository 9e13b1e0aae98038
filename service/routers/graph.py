"""``POST /v1/graph``: a graph's nodes, edges and every value's shape, checked but not run."""

from __future__ import annotations

import time

import orjson
from fastapi import APIRouter, Request, Response

from .. import core, describe
from ..deps import ServiceDep
from ..errors import UnsupportedMediaType
from .grad import _media_type, _read_body

router = APIRouter(prefix="/v1", tags=["grad"])

_PROBLEM = {"content": {"application/problem+json": {}}}


@router.post(
    "/graph",
    summary="Compile and check a graph without running it: nodes, edges, shapes",
    responses={
        200: {"description": "The graph's inputs and nodes (execution order), each value with shape, "
                             "datatype and requires_grad", "content": {core.JSON_MEDIA_TYPE: {}}},
        400: _PROBLEM, 401: _PROBLEM, 413: _PROBLEM, 415: _PROBLEM, 422: _PROBLEM, 503: _PROBLEM,
        504: _PROBLEM,
    },
    openapi_extra={"requestBody": {"required": True, "content": {
        core.JSON_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/GradRequest"}}}}},
)
async def graph(request: Request, service: ServiceDep) -> Response:
    """Takes a ``POST /v1/grad`` JSON body (``graph.nodes`` or ``graph.source``, tensors as ``data``
    or ``b64``). The graph is compiled and goes through the static check of ``/v1/grad`` (meta
    mode: shapes and dtypes, no values), so errors are the ones ``/v1/grad`` would answer, with
    their ``graph.source`` line and column. The answer: ``hash``, ``inputs`` and ``nodes``, each node
    with ``op``, ``call`` (the node as one call, ``mul(2, x)``), ``inputs`` (the names it reads: the
    graph's edges), ``outputs`` (name, shape, datatype, requires_grad; shape null where it depends
    on values), and ``line``/``col`` in the source; ``memory_bytes`` is the memory estimate."""
    settings = service.settings
    deadline = time.monotonic() + settings.request_timeout_s
    media = _media_type(request.headers.get("content-type"))
    if media != core.JSON_MEDIA_TYPE:
        raise UnsupportedMediaType(f"Content-Type must be {core.JSON_MEDIA_TYPE}, got {media or 'none'!r}",
                                   loc=("headers", "Content-Type"))
    payload = core.parse_json(await _read_body(request, settings.max_body_bytes))
    out = await service.gate.run(lambda: describe.describe(payload, settings, deadline),
                                 max(0.0, deadline - time.monotonic()))
    return Response(orjson.dumps(out), media_type=core.JSON_MEDIA_TYPE)
