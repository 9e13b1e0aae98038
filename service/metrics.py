"""Prometheus metrics of one server, correct across worker processes.

With ``PROMETHEUS_MULTIPROC_DIR`` set before this module is imported, prometheus_client keeps
every value in a per-process file there and :func:`render` adds them up over all processes, so
any worker answering ``GET /metrics`` reports the whole server. ``gradserve serve --workers N``
(N > 1) creates and removes that directory itself; one process needs none.

Metric names (all prefixed ``gradserve_``):

- ``http_requests_total{route,method,status}`` and ``http_request_duration_seconds{route,method}``;
  ``route`` is the route's path template (``/v2/models/{model_name}/infer``), ``unmatched`` for 404s
- ``engine_compute_seconds``: decoding inputs, running the nodes and ``autograd_grad``
- ``graph_nodes``: nodes per graph that ran
- ``tensor_bytes_in_total`` / ``tensor_bytes_out_total``: decoded input tensors and result arrays
- ``errors_total{type,status}``: error responses by problem type (``invalid-graph``, ...)
- ``plan_cache_hits_total`` / ``plan_cache_misses_total``
- ``pool_workers`` / ``pool_busy_workers``: worker processes of ``isolation=process`` and those
  running a job (summed over server processes); ``pool_worker_events_total{event}``: workers
  ``spawned``, ``replaced`` (found dead, or stale), ``recycled`` (past ``max_worker_rss_bytes``)
  and ``killed`` (at a deadline). All busy for long means requests wait for a worker: raise
  ``pool_size`` or add servers.

>>> b"gradserve_http_requests_total" in render()[0]          # doctest: +SKIP
True
"""

from __future__ import annotations

import os
import threading
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from .errors import PROBLEM_TYPE_PREFIX
from .stats import RunStats

__all__ = ["MULTIPROC_ENV", "observe_request", "observe_problem", "Observer", "render", "multiprocess_mode"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# The *_created series double the output and do not exist in multiprocess mode: one shape for both.
disable_created_metrics()

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0)
_NODE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 100_000)

REQUESTS = Counter("gradserve_http_requests_total", "HTTP requests by route, method and status.",
                   ["route", "method", "status"])
LATENCY = Histogram("gradserve_http_request_duration_seconds",
                    "HTTP request latency (first byte in to last byte out) by route and method.",
                    ["route", "method"], buckets=_LATENCY_BUCKETS)
COMPUTE = Histogram("gradserve_engine_compute_seconds",
                    "Engine time per request: decoding inputs, running the nodes and autograd_grad.",
                    buckets=_LATENCY_BUCKETS)
NODES = Histogram("gradserve_graph_nodes", "Nodes per graph run.", buckets=_NODE_BUCKETS)
BYTES_IN = Counter("gradserve_tensor_bytes_in_total",
                   "Bytes of input tensors decoded (graph inputs and grad_outputs).")
BYTES_OUT = Counter("gradserve_tensor_bytes_out_total",
                    "Bytes of result tensors (gradients and returned values).")
ERRORS = Counter("gradserve_errors_total", "Error responses by problem type and status.",
                 ["type", "status"])
PLAN_CACHE_HITS = Counter("gradserve_plan_cache_hits_total", "Plan-cache lookups that found the plan.")
PLAN_CACHE_MISSES = Counter("gradserve_plan_cache_misses_total", "Plan-cache lookups that did not.")
POOL_WORKERS = Gauge("gradserve_pool_workers", "Worker processes in the pool (isolation=process).",
                     multiprocess_mode="livesum")
POOL_BUSY = Gauge("gradserve_pool_busy_workers", "Pool workers running a job.", multiprocess_mode="livesum")
POOL_EVENTS = Counter("gradserve_pool_worker_events_total",
                      "Pool workers spawned, replaced (found dead or stale), recycled (past their RSS "
                      "limit) and killed (at a deadline).", ["event"])
_POOL_EVENTS = ("spawned", "replaced", "recycled", "killed")


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


# Labelled children by (route, method, status): labels() validates and locks on every call. The
# keys are bounded as the labels are (route templates, methods, statuses).
_REQUEST_CHILDREN: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    key = (route, method, status)
    children = _REQUEST_CHILDREN.get(key)
    if children is None:
        children = _REQUEST_CHILDREN.setdefault(
            key, (REQUESTS.labels(route, method, str(status)), LATENCY.labels(route, method)))
    children[0].inc()
    children[1].observe(seconds)


def problem_slug(type_uri: str, status: int) -> str:
    """``urn:gradserve:problem:invalid-graph`` -> ``invalid-graph``; HTTP-level errors -> ``http-404``."""
    if type_uri.startswith(PROBLEM_TYPE_PREFIX):
        return type_uri[len(PROBLEM_TYPE_PREFIX):]
    return f"http-{status}"


def observe_problem(type_uri: str, status: int) -> None:
    ERRORS.labels(problem_slug(type_uri, status), str(status)).inc()


class Observer:
    """The :mod:`service.stats` observer that feeds the engine and pool metrics."""

    def __init__(self) -> None:
        self._pool_seen = dict.fromkeys(_POOL_EVENTS, 0)  # this process's pool counts, reported
        self._pool_lock = threading.Lock()

    def on_run(self, stats: RunStats) -> None:
        COMPUTE.observe(stats.compute_s)
        if stats.ok:
            NODES.observe(stats.nodes)
            BYTES_IN.inc(stats.bytes_in)
            BYTES_OUT.inc(stats.bytes_out)

    def on_plan_cache(self, hit: bool) -> None:
        (PLAN_CACHE_HITS if hit else PLAN_CACHE_MISSES).inc()

    def on_pool(self, snapshot: dict[str, int]) -> None:
        with self._pool_lock:  # (jobs report from several threads: each count is added once)
            POOL_WORKERS.set(snapshot["workers"])
            POOL_BUSY.set(snapshot["busy"])
            for event in _POOL_EVENTS:
                now = snapshot[event]
                seen = self._pool_seen[event]
                if now > seen:
                    POOL_EVENTS.labels(event).inc(now - seen)
                self._pool_seen[event] = now


OBSERVER = Observer()


def render() -> tuple[bytes, str]:
    """The exposition text of every metric (summed over worker processes) and its media type."""
    if multiprocess_mode():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
