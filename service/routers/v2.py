"""The Open Inference Protocol (KServe v2) routes: health, metadata and ``infer``.

Errors on these routes are the protocol's ``{"error": "<message>"}`` with the status of the
shared error table (:data:`service.errors.PROBLEMS`), plus the problem's ``type``, ``errors``,
``exception`` (engine errors) and ``request_id``. The health and readiness routes stay open
when API keys are configured; metadata and ``infer`` need a key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from .. import core, metrics, oip
from ..deps import ApiKeyDep, GateDep, SettingsDep
from ..errors import GradserveError, NotFound, UnsupportedMediaType, problem_headers, to_problem
from ..logs import current_request_id
from .grad import _media_type, _read_body

__all__ = ["router", "oip_error"]

_JSON = core.JSON_MEDIA_TYPE


def oip_error(exc: GradserveError) -> Response:
    """The protocol's error body for a domain error (also counted by problem type)."""
    problem = to_problem(exc)
    body: dict[str, Any] = {"error": problem["detail"], **problem}
    body.pop("detail")
    rid = current_request_id()
    if rid is not None:
        body["request_id"] = rid
    metrics.observe_problem(problem["type"], problem["status"])
    return Response(orjson.dumps(body), status_code=problem["status"], media_type=_JSON,
                    headers=problem_headers(exc))


class OipRoute(APIRoute):
    """Renders domain errors, from dependencies (API key) or the endpoint, the protocol's way."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def oip_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except GradserveError as e:
                return oip_error(e)

        return oip_handler


router = APIRouter(prefix="/v2", tags=["open inference protocol"], route_class=OipRoute)


def _json(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type=_JSON)


def _check_model(name: str, version: str | None = None) -> None:
    if name != oip.MODEL_NAME:
        raise NotFound(f"unknown model '{name}'; this server has the model '{oip.MODEL_NAME}'",
                            loc=("path", "model_name"))
    if version is not None and version != oip.MODEL_VERSION:
        raise NotFound(f"model '{name}' has no version '{version}' (versions: {oip.MODEL_VERSION})",
                            loc=("path", "model_version"))


def _ready(request: Request) -> bool:
    return bool(getattr(request.app.state, "ready", False))


@router.get("", summary="Server metadata: name, version and protocol extensions")
async def server_metadata(_: ApiKeyDep) -> Response:
    return _json(oip.server_metadata())


@router.get("/health/live", summary="The server is live")
async def live() -> Response:
    return _json({"live": True})


@router.get("/health/ready", summary="The server is ready (503 while starting or draining)")
async def ready(request: Request) -> Response:
    # The protocol says "a 4xx"; 503 is what KServe answers, and what probes and balancers expect.
    ok = _ready(request)
    return _json({"ready": ok}, 200 if ok else 503)


@router.get("/models/{model_name}", summary="Model metadata")
@router.get("/models/{model_name}/versions/{model_version}", summary="Model metadata (one version)")
async def model_metadata(model_name: str, _: ApiKeyDep, model_version: str | None = None) -> Response:
    _check_model(model_name, model_version)
    return _json(oip.model_metadata())


@router.get("/models/{model_name}/ready", summary="The model is ready")
@router.get("/models/{model_name}/versions/{model_version}/ready", summary="The model version is ready")
async def model_ready(request: Request, model_name: str, model_version: str | None = None) -> Response:
    _check_model(model_name, model_version)
    ok = _ready(request)
    return _json({"name": model_name, "ready": ok}, 200 if ok else 503)


_INFER_MEDIA = (None, "", _JSON, core.BINARY_MEDIA_TYPE)


@router.post("/models/{model_name}/infer", summary="Run a graph and autograd_grad (OIP infer)")
@router.post("/models/{model_name}/versions/{model_version}/infer", summary="Infer (one version)")
async def infer(request: Request, model_name: str, settings: SettingsDep, gate: GateDep, _: ApiKeyDep,
                model_version: str | None = None) -> Response:
    """The body is an OIP ``$inference_request`` (JSON, or JSON header plus tensor bytes with
    ``Inference-Header-Content-Length``); see :mod:`service.oip` for how it maps onto v1."""
    deadline = time.monotonic() + settings.request_timeout_s
    _check_model(model_name, model_version)
    media = _media_type(request.headers.get("content-type"))
    if media not in _INFER_MEDIA:  # tritonclient sends none; aiohttp's default is octet-stream
        raise UnsupportedMediaType(f"Content-Type must be {_JSON} or {core.BINARY_MEDIA_TYPE}, got {media!r}",
                                   loc=("headers", "Content-Type"))
    body = await _read_body(request, settings.max_body_bytes)
    job = partial(oip.process_infer, body, request.headers.get(core.HEADER_LENGTH),
                  request.headers.get("content-encoding"), settings, deadline,
                  getattr(request.app.state, "plan_cache", None))
    content, media_type, headers = await gate.run(job, max(0.0, deadline - time.monotonic()))
    return Response(content, media_type=media_type, headers=headers)
