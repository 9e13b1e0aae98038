"""The FastAPI application: ``create_app(settings)``.

>>> from service.app import create_app
>>> app = create_app(Settings(max_nodes=1000))   # run with: uvicorn --factory service.app:create_app

Domain errors (:mod:`service.errors`) become problem+json in one handler; so do FastAPI's and
Starlette's own errors (404, 405, validation), so bad input never gets a bare 500.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

import engine

from . import debug_ops, metrics, pool
from .errors import PROBLEM_MEDIA_TYPE, GradserveError, InvalidRequest, problem_headers, to_problem
from .gate import Gate
from .logs import current_request_id
from .observe import install as install_observability
from .openapi import build_openapi
from .plan_cache import PlanCache
from .routers import docs, grad, graph, health, ops, playground, v2
from .settings import Settings

__all__ = ["create_app"]

log = logging.getLogger("gradserve")


def _problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    rid = current_request_id()
    if rid is not None:
        body["request_id"] = rid
    metrics.observe_problem(body["type"], body["status"])
    return Response(orjson.dumps(body), status_code=body["status"], media_type=PROBLEM_MEDIA_TYPE,
                    headers=headers)


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GradserveError)
    body = to_problem(exc)
    if body["status"] >= 500 and body["status"] not in (503, 504):
        log.error("internal error on %s %s: %s", request.method, request.url.path, exc)
    return _problem_response(body, problem_headers(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    phrase = HTTPStatus(exc.status_code).phrase
    body = {"type": "about:blank", "title": phrase, "status": exc.status_code,
            "detail": exc.detail if isinstance(exc.detail, str) else phrase,
            "errors": [{"loc": ["path"], "msg": f"{request.method} {request.url.path}: {phrase}"}]}
    return _problem_response(body, dict(exc.headers or {}))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()]
    detail = errors[0]["msg"] if errors else "invalid request"
    return _problem_response(to_problem(InvalidRequest(detail, errors=errors)))


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _problem_response({"type": "about:blank", "title": "Internal Server Error", "status": 500,
                              "detail": "an internal error occurred; this is a bug", "errors": []})


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the Gradserve app. ``settings`` defaults to ``Settings()`` (``GRADSERVE_*`` env)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # worker processes forked now start as copies of the loaded server (service.pool)
        workers = settings.isolation == "process" and pool.available()
        if workers:
            pool.POOL.attach(settings.pool_size)
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False  # readiness fails first, so load balancers stop sending
            app.state.gate.shutdown()
            if workers:
                pool.POOL.detach()  # the workers exit (or are killed) and are reaped

    app = FastAPI(
        title="Gradserve",
        version=engine.__version__,
        description="torch.autograd.grad over HTTP: send a graph and tensors, get gradients.",
        lifespan=lifespan,
        docs_url=None,  # served by routers.docs from packaged assets, not from a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    if settings.debug_ops:
        debug_ops.install()
    app.state.gate = Gate(settings.max_concurrency, settings.max_queue, settings.retry_after_s)
    app.state.plan_cache = PlanCache(settings.plan_cache_size)  # soft state: compiled graphs by hash
    app.state.ready = True  # also true when served without lifespan events (plain ASGI tests)
    app.include_router(health.router)
    app.include_router(ops.router)
    app.include_router(grad.router)
    app.include_router(v2.router)
    app.include_router(graph.router)
    app.include_router(playground.router)  # the page at /playground (and /)
    docs.install(app)
    app.add_exception_handler(GradserveError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    install_observability(app, settings)  # request ids, access log, /metrics, tracing
    return app
