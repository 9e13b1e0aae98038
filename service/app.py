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
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

import engine

from . import debug_ops, metrics, pool, tracing
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


class HotRoute:
    """Pure ASGI: ``POST /v1/grad`` dispatched before Starlette's middleware stack and router.

    Matching a path against every route, FastAPI's request handling and Starlette's exception
    middlewares cost an empty route about 0.2 ms, more than a small cached graph takes to run.
    The hot route's endpoint is called here directly, with the same ``Request``, and its errors
    go to the same problem+json handlers; everything else (and ``/v1/grad`` with another method)
    goes down the usual stack. It sits inside :mod:`service.observe`'s layer, so request ids,
    metrics, logs and tracing see it as before.
    """

    def __init__(self, app: FastAPI, inner: Any, route: APIRoute) -> None:
        self.app, self.inner, self.route = app, inner, route
        self.path, self.endpoint = route.path, route.endpoint

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.inner(scope, receive, send)
            return
        scope["app"] = self.app
        scope["route"] = self.route  # the metrics' route label (service.observe.route_label)
        tracing.note_route(self.path)
        request = Request(scope, receive, send)
        try:
            response = await self.endpoint(request)
        except GradserveError as e:
            response = await _domain_error(request, e)
        except Exception as e:  # as Starlette's ServerErrorMiddleware: answer 500, then re-raise
            await (await _unexpected_error(request, e))(scope, receive, send)
            raise
        await response(scope, receive, send)


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
    build = app.build_middleware_stack  # built on the first request, routes and all

    def build_with_hot_route() -> Any:
        route = next(r for r in grad.router.routes if isinstance(r, APIRoute) and r.path == "/v1/grad")
        return HotRoute(app, build(), route)

    app.build_middleware_stack = build_with_hot_route  # type: ignore[method-assign]
    install_observability(app, settings)  # request ids, access log, /metrics, tracing (outside)
    return app
