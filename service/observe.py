"""Request ids, access logs, metrics and tracing for every HTTP request, in one ASGI layer.

:func:`install` wraps the whole application, outside Starlette's ``ServerErrorMiddleware``, so
that even an unexpected 500 is counted, timed, logged and carries its ``X-Request-ID``. It also
registers the engine observers (:mod:`service.stats`) and, with ``settings.metrics``, adds
``GET /metrics``.

The request id is the client's ``X-Request-ID`` when it is a plain token (letters, digits and
``._~:/+=@-``, at most 128 characters), else a new random one. It is echoed in the response's
``X-Request-ID``, put in problem bodies (``request_id``) and in every log line of the request.

>>> app = create_app(Settings())          # doctest: +SKIP  (create_app calls install)
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI

from . import metrics, stats, tracing
from .logs import REQUEST_ID
from .settings import Settings

__all__ = ["install", "ObservabilityMiddleware", "REQUEST_ID_HEADER", "PID_HEADER", "route_label"]

REQUEST_ID_HEADER = "X-Request-ID"
PID_HEADER = "X-Gradserve-Pid"
_ID_OK = re.compile(rb"[A-Za-z0-9._~:/+=@-]{1,128}")
_RID_KEY = REQUEST_ID_HEADER.lower().encode()

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]

access_log = logging.getLogger("gradserve.access")
_NO_SPAN = contextlib.nullcontext()


def _incoming_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    for k, v in headers:
        if k == _RID_KEY:
            return v.decode("ascii") if _ID_OK.fullmatch(v) else None
    return None


def route_label(scope: Scope) -> str:
    """The matched route's path template, or ``unmatched`` (keeps label cardinality bounded)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class ObservabilityMiddleware:
    """Pure ASGI (no response buffering): adds headers, then counts, times and logs."""

    def __init__(self, app: ASGIApp, *, pid_header: bool = False) -> None:
        self.app = app
        self.pid = str(os.getpid()).encode()
        self.pid_header = pid_header

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming_id(scope.get("headers", [])) or os.urandom(16).hex()  # uuid4().hex's form, cheaper
        # Set, never reset: Starlette's error handlers run after the inner app returned or raised
        # and still read it; each request runs in its own task, with its own context.
        REQUEST_ID.set(rid)
        extra = [(_RID_KEY, rid.encode())]
        if self.pid_header:
            extra.append((PID_HEADER.lower().encode(), self.pid))
        status = 499  # nginx's "client closed request": no response was started

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        method = scope.get("method", "")
        start = time.perf_counter()
        # tracing and the access log cost only when they are on (a span, a log record's fields)
        traced = tracing.active()
        with tracing.server_span(method, scope.get("path", ""), rid) if traced else _NO_SPAN as span:
            try:
                await self.app(scope, receive, send_with_headers)
            finally:
                seconds = time.perf_counter() - start
                route = route_label(scope)
                metrics.observe_request(route, method, status, seconds)
                if traced:
                    tracing.set_status(span, method, route, status)
                if access_log.isEnabledFor(logging.INFO):
                    client = scope.get("client")
                    access_log.info("%s %s %d", method, scope.get("path", ""), status, extra={"fields": {
                        "method": method, "path": scope.get("path", ""), "route": route, "status": status,
                        "duration_ms": round(seconds * 1000, 3), "client": client[0] if client else None}})


def install(app: FastAPI, settings: Settings) -> None:
    """Wire request ids, access logs, metrics (``GET /metrics``) and tracing into ``app``."""
    stats.add_observer(metrics.OBSERVER)
    stats.add_observer(tracing.OBSERVER)
    if settings.otel_exporter != "none" and not tracing.active():
        tracing.configure(settings.otel_exporter)
    if settings.metrics:
        from .routers import metrics as metrics_router

        app.include_router(metrics_router.router)
    # Starlette builds its middleware stack on the first request; wrapping the builder puts this
    # layer outside ServerErrorMiddleware, which add_middleware() cannot do.
    build = app.build_middleware_stack

    def build_with_observability() -> ASGIApp:
        return ObservabilityMiddleware(build(), pid_header=settings.pid_header)

    app.build_middleware_stack = build_with_observability  # type: ignore[method-assign]
