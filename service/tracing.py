"""Optional OpenTelemetry tracing: a server span per HTTP request and an engine span inside it.

Without the ``otel`` extra (``pip install "gradserve[otel]"``) every function here is a no-op.
With it, spans go to whatever tracer provider is installed: :func:`configure` installs one from
``GRADSERVE_OTEL_EXPORTER`` (``console`` or ``otlp``; the OTLP exporter reads the standard
``OTEL_EXPORTER_OTLP_*`` variables), or an application sets its own. While no provider is
installed, no span is even created.

>>> with server_span("POST", "/v1/grad", "3f2a") as span:   # doctest: +SKIP
...     set_route(span, "/v1/grad", 200)
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from .stats import RunStats

__all__ = ["available", "active", "configure", "server_span", "set_status", "Observer"]

log = logging.getLogger("gradserve")

try:
    from opentelemetry import trace
    from opentelemetry.trace import ProxyTracerProvider, SpanKind, Status, StatusCode
except ImportError:  # the `otel` extra is not installed
    trace = None  # type: ignore[assignment]


def available() -> bool:
    """True when the OpenTelemetry API is importable."""
    return trace is not None


# Whether the environment names a provider for OpenTelemetry to load on first use: read once,
# since looking it up in os.environ on every call cost the hot route about 2 us a time.
_ENV_PROVIDER = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def active() -> bool:
    """True when a tracer provider is installed (spans are recorded somewhere)."""
    if trace is None:
        return False
    # no provider set and none to load: the answer without get_tracer_provider's environment
    # lookup (called several times per request); anything else asks OpenTelemetry itself
    if getattr(trace, "_TRACER_PROVIDER", 0) is None and not _ENV_PROVIDER:
        return False
    return not isinstance(trace.get_tracer_provider(), ProxyTracerProvider)


def configure(exporter: str) -> bool:
    """Install an SDK tracer provider exporting to ``console`` or ``otlp``; False if not possible."""
    if exporter == "none":
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning("GRADSERVE_OTEL_EXPORTER=%s but opentelemetry-sdk is not installed "
                    "(pip install 'gradserve[otel]'); tracing is off", exporter)
        return False
    if exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("GRADSERVE_OTEL_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http; "
                        "tracing is off")
            return False
        span_exporter: Any = OTLPSpanExporter()
    else:
        span_exporter = ConsoleSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "gradserve"}))
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)
    return True


def _tracer() -> Any:
    return trace.get_tracer("gradserve")


@contextlib.contextmanager
def server_span(method: str, path: str, request_id: str) -> Iterator[Any]:
    """A SERVER span around one HTTP request; None when tracing is not active, or when the
    framework already opened one (FastAPI's native telemetry, an ASGI instrumentation), which
    then only gets the request id."""
    if not active():
        yield None
        return
    current = trace.get_current_span()
    if current.is_recording() and getattr(current, "kind", None) == SpanKind.SERVER:
        current.set_attribute("gradserve.request_id", request_id)
        yield None
        return
    attrs = {"http.request.method": method, "url.path": path, "gradserve.request_id": request_id}
    with _tracer().start_as_current_span(f"{method} {path}", kind=SpanKind.SERVER,
                                         attributes=attrs) as span:
        yield span


def note_route(route: str) -> None:
    """Record the route template on the current server span, for a request that bypassed the
    framework's router (service.app.HotRoute), which would have recorded it."""
    if active():
        trace.get_current_span().set_attribute("http.route", route)


def set_status(span: Any, method: str, route: str, status: int) -> None:
    """Name our server span after its route template and record the response status."""
    if span is None:
        return
    span.update_name(f"{method} {route}")
    span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))


class Observer:
    """The :mod:`service.stats` observer that records each engine run as a span.

    It is called in the engine thread, whose context the gate copied from the request, so the
    span's parent is the request's server span.
    """

    def on_run(self, stats: RunStats) -> None:
        if not active():
            return
        span = _tracer().start_span("gradserve.engine", start_time=stats.start_ns, attributes={
            "gradserve.graph.nodes": stats.nodes, "gradserve.tensor_bytes_in": stats.bytes_in,
            "gradserve.tensor_bytes_out": stats.bytes_out})
        if not stats.ok:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=stats.start_ns + int(stats.compute_s * 1e9))

    def on_plan_cache(self, hit: bool) -> None:
        if active():
            trace.get_current_span().set_attribute("gradserve.plan_cache_hit", hit)


OBSERVER = Observer()
