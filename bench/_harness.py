"""Cases, interleaved timing and result checking: everything a benchmark case plugs into.

A :class:`Case` builds, for each library, a zero-argument callable that runs one repetition on
inputs shared by all libraries and returns its results (tensors or arrays). The harness first
checks every library's results against torch's, then times the callables round-robin, so that
machine noise (other processes on the 2 shared cores) hits all libraries alike.
"""

from __future__ import annotations

import gc
import http.client
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

LIBS = ("engine", "compiled", "torch", "hips", "jax")  # compiled: engine.compile; jax: jax.jit
# Runs a case may add beside the libraries, timed in the same interleaved rounds but not checked
# against torch: the MLP's matrix products alone, numpy's and torch's (bench.gemm), for issue 11's
# target "compiled MLP step <= numpy GEMM / torch GEMM + 5 %" in the same run.
GEMM_RUNS = ("gemm_numpy", "gemm_torch")
REFERENCE = "torch"

Run = Callable[[], Sequence]


@dataclass(frozen=True)
class Target:
    """A required ratio: ``engine/torch <= torch``, ``engine/HIPS <= 1/hips_speedup``,
    ``engine/JAX <= jax``, ``engine/torch <= numpy GEMM / torch GEMM + gemm_slack`` (the
    case's matrix products alone, timed in the same run: see :data:`GEMM_RUNS`)."""

    source: str                      # where the target comes from, e.g. "#2", "#5"
    torch: float | None = None
    hips_speedup: float | None = None
    jax: float | None = None
    gemm_slack: float | None = None


@dataclass(frozen=True)
class Case:
    """One benchmark case.

    ``build(quick)`` returns ``{library: run}``; a library missing from the dict is reported as
    n/a. ``unavailable()`` returns a reason to skip the whole case (an engine op not there yet).
    """

    name: str
    title: str
    build: Callable[[bool], dict[str, Run]]
    reps: int
    quick_reps: int
    targets: tuple[Target, ...] = ()
    rtol: float = 1e-4
    atol: float = 1e-5
    unavailable: Callable[[], str | None] = field(default=lambda: None)
    compiled_targets: tuple[Target, ...] = ()  # for the row of engine.compile's run
    # A case measured another way (the service cases: a server, floors instead of torch):
    # ``runner(case, quick)`` replaces build/check/measure, and ``rows(result)`` gives its table
    # rows under its own ``header`` (same number of columns as the engine table's).
    runner: Callable[[Case, bool], Result] | None = None
    header: tuple[str, ...] | None = None
    rows: Callable[[Result], list[tuple[str, ...]]] | None = None
    plot: Callable[[Result, Path], Path | None] | None = None  # a PNG for --docs, in that folder


@dataclass
class Result:
    case: Case
    times: dict[str, list[float]]          # seconds per repetition, per library
    skipped: str | None = None
    extra: dict = field(default_factory=dict)  # anything else a runner measured

    def median(self, lib: str) -> float | None:
        t = self.times.get(lib)
        return statistics.median(t) if t else None

    def ratio(self, lib: str, other: str) -> float | None:
        a, b = self.median(lib), self.median(other)
        return a / b if a is not None and b else None


CASES: list[Case] = []


def register(case: Case) -> Case:
    if any(c.name == case.name for c in CASES):
        raise ValueError(f"benchmark case {case.name!r} registered twice")
    CASES.append(case)
    return case


def to_arrays(results: Sequence) -> list[np.ndarray]:
    """Results of any library as numpy arrays (torch and engine tensors have ``detach().numpy()``)."""
    out = []
    for r in results:
        if hasattr(r, "detach"):
            r = r.detach().numpy()
        out.append(np.asarray(r))
    return out


def check(case: Case, runs: dict[str, Run]) -> None:
    """Every library's results must equal the reference's (allclose) before anything is timed."""
    ref = to_arrays(runs[REFERENCE]())
    for lib, run in runs.items():
        if lib == REFERENCE or lib in GEMM_RUNS:
            continue
        got = to_arrays(run())
        if len(got) != len(ref):
            raise AssertionError(f"{case.name}: {lib} returned {len(got)} results, torch {len(ref)}")
        for i, (g, r) in enumerate(zip(got, ref)):
            if g.shape != r.shape:
                raise AssertionError(f"{case.name}: {lib} result {i} has shape {g.shape}, torch {r.shape}")
            if lib in ("engine", "compiled") and g.dtype != r.dtype:
                raise AssertionError(f"{case.name}: {lib} result {i} is {g.dtype}, torch {r.dtype}")
            # XLA contracts a*b + c into one fused multiply-add: one rounding instead of two,
            # which drifts over the chain's 1000 steps
            k = 10 if lib == "jax" else 1
            np.testing.assert_allclose(g, r, rtol=case.rtol * k, atol=case.atol * k,
                                       err_msg=f"{case.name}: {lib} result {i} differs from torch")


def measure(runs: dict[str, Run], reps: int, warmup: int = 2,
            budget_s: float | None = None) -> dict[str, list[float]]:
    """Time each run ``reps`` times, interleaved; the starting library rotates every round.

    With ``budget_s``, stop early once that much wall time is spent (at least 3 rounds run).
    """
    names = list(runs)
    for _ in range(warmup):
        for n in names:
            runs[n]()
    # Everything alive now (the libraries' modules, the inputs, jax's and torch's caches) is
    # moved out of the collector's reach: the collection before each repetition then scans only
    # what the repetitions left behind, instead of walking every object of three libraries
    # (tens of ms with jax loaded, and a cold cache for the repetition that follows).
    gc.collect()
    gc.freeze()
    times: dict[str, list[float]] = {n: [] for n in names}
    start = time.perf_counter()
    clock = time.perf_counter
    try:
        for r in range(reps):
            k = r % len(names)
            for n in names[k:] + names[:k]:
                run = runs[n]
                gc.collect()  # garbage left by one library is not collected on another's clock
                t0 = clock()
                run()
                times[n].append(clock() - t0)
            if budget_s is not None and r >= 2 and clock() - start > budget_s:
                break
    finally:
        gc.unfreeze()
    return times


def run_case(case: Case, quick: bool, budget_s: float | None = None,
             max_reps: int | None = None) -> Result:
    reason = case.unavailable()
    if reason:
        return Result(case, {}, skipped=reason)
    if case.runner is not None:
        return case.runner(case, quick)
    runs = case.build(quick)
    check(case, runs)
    reps = case.quick_reps if quick else case.reps
    times = measure(runs, min(reps, max_reps) if max_reps else reps, warmup=1 if quick else 3,
                    budget_s=budget_s)
    return Result(case, times)


def wait_ready(port: int, proc: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    """Return once the server on loopback ``port`` answers ``GET /health/ready`` with 200.

    Raises RuntimeError when ``proc`` (the server's process) exits first or ``timeout`` seconds
    pass; a bench then stops instead of timing a server that is not there.
    """
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the bench server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health/ready")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the bench server on port {port} did not become ready in {timeout:g} s")
