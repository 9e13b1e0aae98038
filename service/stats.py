"""Per-request engine statistics, reported by :mod:`service.core` to whoever listens.

The core stays free of the server's dependencies (prometheus_client, OpenTelemetry): it calls
:func:`report_run` after running a plan and :func:`report_plan_cache` on a plan-cache lookup.
The server registers an observer (:mod:`service.observe`); with none registered (the client's
embedded mode) a report costs one function call and an empty loop.

>>> class Printer:
...     def on_run(self, s: RunStats) -> None: print(s.nodes, s.ok)
...     def on_plan_cache(self, hit: bool) -> None: print("hit" if hit else "miss")
>>> add_observer(Printer())          # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = ["RunStats", "Observer", "add_observer", "remove_observer", "report_run", "report_plan_cache",
           "report_pool"]

_ITEMSIZE = {"FP16": 2, "FP32": 4, "FP64": 8, "INT32": 4, "INT64": 8, "BOOL": 1}


@dataclass(frozen=True, slots=True)
class RunStats:
    """One plan run. ``bytes_in`` counts the decoded input tensors (graph inputs and inline
    grad_outputs), ``bytes_out`` the result arrays (gradients and returned values)."""

    nodes: int
    bytes_in: int
    bytes_out: int
    compute_s: float
    start_ns: int   # wall clock (time.time_ns) when the run started, for tracing spans
    ok: bool


class Observer(Protocol):
    def on_run(self, stats: RunStats) -> None: ...

    def on_plan_cache(self, hit: bool) -> None: ...


_observers: list[Observer] = []


def add_observer(obs: Observer) -> None:
    """Register ``obs`` (idempotent: the same object is registered once)."""
    if not any(o is obs for o in _observers):
        _observers.append(obs)


def remove_observer(obs: Observer) -> None:
    _observers[:] = [o for o in _observers if o is not obs]


def _tensor_bytes(t: Any) -> int:
    n = _ITEMSIZE.get(getattr(t, "datatype", ""), 0)
    for s in getattr(t, "shape", ()):
        n *= s
    return n


def bytes_in(req: Any) -> int:
    """Bytes of a request's input tensors (graph inputs and inline grad_outputs)."""
    return _bytes_in(req)


def _bytes_in(req: Any) -> int:
    total = sum(_tensor_bytes(t) for t in req.graph.inputs)
    if isinstance(req.grad_outputs, list):
        total += sum(_tensor_bytes(t) for t in req.grad_outputs if hasattr(t, "datatype"))
    return total


def _bytes_out(result: Any) -> int:
    arrays = [*result.grads, *result.values.values()]
    return sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))


def report_run(plan: Any, result: Any, compute_s: float, bytes_in: int | None = None) -> None:
    """Called by the core after ``run_plan`` (``result`` is None when it raised); ``bytes_in``,
    when the caller knows it, saves going over the request's tensors."""
    if not _observers:
        return
    if bytes_in is None:
        bytes_in = _bytes_in(plan.request)
    stats = RunStats(nodes=len(plan.steps), bytes_in=bytes_in,
                     bytes_out=0 if result is None else _bytes_out(result), compute_s=compute_s,
                     start_ns=time.time_ns() - int(compute_s * 1e9), ok=result is not None)
    for obs in _observers:
        obs.on_run(stats)


def report_plan_cache(hit: bool) -> None:
    """Called on every plan-cache lookup of a request."""
    for obs in _observers:
        obs.on_plan_cache(hit)


def report_pool(snapshot: Callable[[], dict[str, int]]) -> None:
    """Called by the worker pool (:mod:`service.pool`) when a job takes or gives back a worker
    and when the pool starts or stops, with its ``stats`` (workers, busy, and the spawned /
    replaced / recycled / killed counts so far), taken only if an observer has ``on_pool``."""
    listeners = [f for obs in _observers if (f := getattr(obs, "on_pool", None)) is not None]
    if listeners:
        now = snapshot()
        for on_pool in listeners:
            on_pool(now)
