"""``POST /v1/graph``: a graph's nodes, edges and every value's shape, checked but not run."""

from __future__ import annotations

import time

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from .. import core, describe
from ..deps import ServiceDep
from ..errors import UnsupportedMediaType
from ..wire import Problem
from .grad import _media_type, _read_body

router = APIRouter(prefix="/v1", tags=["grad"])

_PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}


class GraphValue(BaseModel):
    """A graph input or node output as the static check sees it (no values)."""

    name: str
    shape: list[int] | None = Field(description="null where the shape depends on values")
    datatype: str | None
    requires_grad: bool


class GraphNode(BaseModel):
    index: int = Field(description="the node's index in graph.nodes (or in the compiled source)")
    op: str = Field(description="op name, or grad/jacobian/hessian/vjp/jvp/hvp/vhp")
    call: str = Field(description="the node as one call, e.g. mul(2, x)")
    inputs: list[str] = Field(description="the names the node reads: the graph's edges")
    outputs: list[GraphValue]
    line: int | None = Field(description="line in graph.source (null for JSON nodes)")
    col: int | None


class GraphDescription(BaseModel):
    """``POST /v1/graph``'s answer: the compiled graph, nodes in execution order."""

    hash: str | None
    inputs: list[GraphValue]
    nodes: list[GraphNode]
    memory_bytes: int = Field(description="the request's memory estimate, as /v1/grad checks it")


@router.post(
    "/graph",
    summary="Compile and check a graph without running it: nodes, edges, shapes",
    response_model=GraphDescription,
    responses={
        200: {"description": "The graph's inputs and nodes (execution order), each value with shape, "
                             "datatype and requires_grad"},
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
