"""Slow paths on purpose: ``debug.sleep`` and ``debug.spin``, for tests and load drills.

Tests of deadlines, shutdown and overload need a request that stays in flight for a known time.
A real workload sized for one machine finishes early on a faster one and late on a slower one,
so these ops take wall-clock time instead of work: the same request takes the same time on every
machine. They exist only on a server started with ``GRADSERVE_DEBUG_OPS=true``; never enable
that for untrusted clients (a request could hold an engine slot up to its deadline).

- ``debug.sleep(input, seconds)`` sleeps (the GIL is free meanwhile) and returns ``input * 1``.
- ``debug.spin(input, seconds)`` busy-waits in Python (holding the GIL in turns, as a
  CPU-bound op would) and returns ``input * 1``.
- ``debug.alloc(input, nbytes)`` allocates and touches ``nbytes`` bytes that no estimate knows
  of (the memory limit's drill), then returns ``input * 1``.

Both are differentiable in ``input`` (identity) and do nothing in meta mode, so the static
check before a run costs no time.

>>> install()
>>> "debug.sleep" in engine.OPS
True
"""

from __future__ import annotations

import inspect
import time

import engine
from engine import _meta

__all__ = ["install", "NAMES"]

NAMES = ("debug.sleep", "debug.spin", "debug.alloc")
MAX_SECONDS = 600.0


def _seconds(seconds: float) -> float:
    s = float(seconds)
    if not 0 <= s <= MAX_SECONDS:
        raise ValueError(f"debug ops take 0 <= seconds <= {MAX_SECONDS:g}, got {seconds!r}")
    return s


def sleep(input: engine.Tensor, seconds: float) -> engine.Tensor:
    """Sleep ``seconds`` of wall time, then return ``input * 1``."""
    s = _seconds(seconds)
    if _meta._local.session is None:  # real run (the preflight's meta run costs nothing)
        time.sleep(s)
    return input * 1


def spin(input: engine.Tensor, seconds: float) -> engine.Tensor:
    """Burn ``seconds`` of wall time in a Python loop, then return ``input * 1``."""
    s = _seconds(seconds)
    if _meta._local.session is None:
        end = time.perf_counter() + s
        while time.perf_counter() < end:
            pass
    return input * 1


def alloc(input: engine.Tensor, nbytes: int) -> engine.Tensor:
    """Allocate and touch ``nbytes`` bytes (freed on return), then return ``input * 1``."""
    n = int(nbytes)
    if not 0 <= n <= 1 << 40:
        raise ValueError(f"debug.alloc takes 0 <= nbytes <= 2**40, got {nbytes!r}")
    if _meta._local.session is None:
        import numpy as np

        np.ones(n, np.uint8)  # ones, not zeros: every page is written
    return input * 1


def install() -> None:
    """Register the debug ops in ``engine.OPS`` (idempotent; for this process)."""
    for name, fn in (("debug.sleep", sleep), ("debug.spin", spin), ("debug.alloc", alloc)):
        engine.OPS.setdefault(name, engine.OpInfo(name, fn, ("input",), inspect.signature(fn), 1))
