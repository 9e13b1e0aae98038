"""Cases, timing and result checking: everything a benchmark case plugs into.

A :class:`Case` builds, for each library, a zero-argument callable that runs one repetition on
inputs shared by all libraries and returns its results (tensors or arrays). The harness first
checks every library's results against torch's, then times each library in a worker process of
its own (:func:`measure_isolated`, ``bench/_worker.py``), blocks of repetitions back to back,
the workers taking turns so that machine noise (other processes on the 2 shared cores) hits all
libraries alike. :func:`measure` is the older way, every library in this process, one repetition
each in turn (``python -m bench --same-process``).
"""

from __future__ import annotations

import contextlib
import gc
import http.client
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
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


# ---------------------------------------------------------------- each library in its own process
# Between two blocks the parent waits until the worker processes are quiet (their threads have
# gone to sleep), so that the next worker does not share the cores with the last one's spinning
# pool. Measured on the 2-core machine after one call (CPU time of the whole process while its
# main thread sleeps): torch's OpenMP threads (libgomp) keep spinning 7-9 ms after a conv2d;
# numpy's OpenBLAS threads 103-104 ms after a 512x784x512 GEMM (OpenBLAS busy-waits about 2^28
# cycles before it sleeps). A fixed gap would have to be 150 ms for every block, OpenBLAS's
# figure with half again as much; waiting for quiet costs ~10 ms after torch and nothing after a
# step too small to wake a pool. SETTLE_S caps the wait (a worker busy for another reason).
SETTLE_S = 0.3
QUIET_S = 0.006     # quiet: the workers used under 10 % of a core over this window
ROUNDS = 10        # blocks per library in a full run: enough turns that drift hits every worker
QUICK_ROUNDS = 2    # --quick: a smoke run, the fewest pauses and dropped repetitions
REPLY_TIMEOUT_S = 900.0  # a worker that answers nothing for this long is taken for hung
# Environment variables every worker gets before it builds a case, set by what the parent has
# started since the workers did: the bench server's port (bench.service_cases.server), so that
# the onnx_cnn case's worker sends its requests to the parent's server instead of starting one.
WORKER_ENV: dict[str, str] = {}


class WorkerError(RuntimeError):
    """A worker failed: its exception's traceback, or its exit status and the end of its stderr."""


class Worker:
    """``python -m bench._worker``: one run of a case, timed in a process of its own.

    Spoken to in JSON lines (one request, one answer): ``build`` (a case, the run to keep, warm-up
    count), ``time`` (a block of repetitions; answers the seconds of each), ``drop``, ``quit``.
    Started with ``subprocess`` (a fork would copy torch's OpenMP state, which does not survive
    it), in the parent's working directory and environment, with the parent's own ``sys.path``
    entries in ``PYTHONPATH``, in a session of its own so that :meth:`close` also reaches
    whatever it started (a case's helper process).
    """

    def __init__(self, name: str, threads: int | None = None) -> None:
        self.name = name
        env = dict(os.environ)
        site = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
        own = [os.path.abspath(p or os.getcwd()) for p in sys.path
               if not any(os.path.realpath(p or os.getcwd()).startswith(s) for s in site)]
        env["PYTHONPATH"] = os.pathsep.join(own + [p for p in [env.get("PYTHONPATH")] if p])
        self.stderr = tempfile.TemporaryFile()  # a file, not a pipe: a chatty worker never blocks
        argv = [sys.executable, "-m", "bench._worker"] + (["--threads", str(threads)] if threads else [])
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, cwd=os.getcwd(), env=env,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, msg: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died() from None

    def recv(self, timeout: float = REPLY_TIMEOUT_S) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise WorkerError(f"worker {self.name!r} did not answer in {timeout:g} s\n{self._stderr_tail()}")
        line = self.proc.stdout.readline()
        if not line:
            raise self._died()
        reply = json.loads(line)
        if not reply.get("ok"):
            raise WorkerError(f"worker {self.name!r} failed:\n{reply.get('error', '?')}")
        return reply

    def request(self, msg: dict, timeout: float = REPLY_TIMEOUT_S) -> dict:
        self.send(msg)
        return self.recv(timeout)

    def _stderr_tail(self, n: int = 4000) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-n:]

    def _died(self) -> WorkerError:
        try:
            code = self.proc.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        return WorkerError(f"worker {self.name!r} exited (status {code}); its stderr:\n{self._stderr_tail()}")

    def quit(self) -> None:
        """Ask the worker to quit (it exits once it has read the request)."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b'{"op": "quit"}\n')
                self.proc.stdin.flush()
            except OSError:
                pass

    def close(self, grace_s: float = 10.0) -> None:
        """Ask the worker to quit, give it ``grace_s`` to exit, then kill its session: the
        worker if it is still there (hung, or busy in a block), and anything it started."""
        self.quit()
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.stderr):
            # (a quit request can still sit in stdin's buffer when the worker exited before
            # reading it: flushing it on close then meets a broken pipe; the file closes anyway)
            with contextlib.suppress(OSError):
                f.close()


class WorkerPool:
    """One :class:`Worker` per run name (``engine``, ``torch``, ...), started on first use and
    kept case after case: each case is built afresh in it and the previous case's objects are
    dropped, so a worker only ever runs its own library, and the interpreters' start-up (seconds
    each: torch, jax) is paid once per run instead of once per case. Use as a context manager.
    """

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self.workers: dict[str, Worker] = {}

    def get(self, name: str) -> Worker:
        if name not in self.workers:
            self.workers[name] = Worker(name, self.threads)
        return self.workers[name]

    def discard(self, name: str) -> None:
        w = self.workers.pop(name, None)
        if w is not None:
            w.close()

    def pids(self) -> list[int]:
        return [w.pid for w in self.workers.values()]

    def close(self, grace_s: float = 10.0) -> None:
        workers, self.workers = list(self.workers.values()), {}
        for w in workers:  # all quit at once: an interpreter with torch and jax takes a while to exit
            w.quit()
        end = time.monotonic() + grace_s
        for w in workers:
            w.close(max(0.0, end - time.monotonic()))

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _cpu_s(pids: Sequence[int]) -> float | None:
    """CPU seconds every thread of these processes has used (Linux ``/proc``), None without it."""
    total, seen = 0, False
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
                seen = True
            except OSError:
                continue  # a thread that just ended
    return total / 1e9 if seen else None


def settle(pids: Sequence[int], most_s: float = SETTLE_S, quiet_s: float = QUIET_S) -> float:
    """Wait until the processes ``pids`` use under 10 % of a core over ``quiet_s`` (their pools'
    threads asleep), at most ``most_s``; without ``/proc``, wait ``most_s``. Returns the wait."""
    t0 = time.perf_counter()
    last = _cpu_s(pids)
    if last is None:
        time.sleep(most_s)
        return most_s
    while time.perf_counter() - t0 < most_s:
        time.sleep(quiet_s)
        now = _cpu_s(pids) or 0.0
        if now - last < 0.1 * quiet_s:
            break
        last = now
    return time.perf_counter() - t0


def _blocks(reps: int, rounds: int) -> list[int]:
    """``reps`` split into ``rounds`` blocks as even as can be: ``_blocks(10, 3) == [4, 3, 3]``."""
    rounds = max(1, min(reps, rounds))
    return [reps // rounds + (i < reps % rounds) for i in range(rounds)]


def measure_isolated(case: Case, names: Sequence[str], pool: WorkerPool, quick: bool, reps: int,
                     warmup: int = 2, budget_s: float | None = None,
                     settle_s: float = SETTLE_S,
                     while_building: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Time each of the case's runs ``names`` ``reps`` times, each in its own worker process.

    Every worker builds the case, keeps its own run, warms it up; then the workers take turns in
    rounds, the starting one rotating every round, each running a block of repetitions back to
    back (as a training loop or a server would), once every worker's threads are asleep
    (:func:`settle`, at most ``settle_s``). The first repetition of each block is not kept: it
    pays the wake-up after the pause. With ``budget_s``, stop after the round in which that much
    wall time is spent (at least 3 rounds run).
    ``while_building`` runs here while the workers build and warm up (nothing is timed yet).
    """
    workers = {n: pool.get(n) for n in names}
    build = {"op": "build", "module": case.build.__module__, "case": case.name, "quick": quick,
             "warmup": warmup, "env": WORKER_ENV}
    done = False
    try:
        for n, w in workers.items():  # the workers build in parallel: nothing is being timed yet
            w.send({**build, "run": n})
        if while_building is not None:
            while_building()
        for w in workers.values():
            w.recv()
        times: dict[str, list[float]] = {n: [] for n in names}
        order = list(names)
        pids = [w.pid for w in workers.values()]
        start = time.perf_counter()
        for r, size in enumerate(_blocks(reps, QUICK_ROUNDS if quick else ROUNDS)):
            k = r % len(order)
            for n in order[k:] + order[:k]:
                settle(pids, settle_s)
                times[n] += workers[n].request({"op": "time", "reps": size + 1})["times"][1:]
            if budget_s is not None and r >= 2 and time.perf_counter() - start > budget_s:
                break
        for w in workers.values():  # the case's objects go (a full collection: all at once)
            w.send({"op": "drop"})
        for w in workers.values():
            w.recv()
        done = True
    finally:
        if not done:  # a worker failed (or we were interrupted): these workers are not reused
            for n in workers:
                pool.discard(n)
    return times


def run_case(case: Case, quick: bool, budget_s: float | None = None,
             max_reps: int | None = None, pool: WorkerPool | None = None,
             same_process: bool = False) -> Result:
    """Check and time ``case``: each run in its own worker of ``pool`` (a pool of this call's
    own when None), or all of them in this process with ``same_process``."""
    reason = case.unavailable()
    if reason:
        return Result(case, {}, skipped=reason)
    if case.runner is not None:
        return case.runner(case, quick)
    runs = case.build(quick)
    reps = case.quick_reps if quick else case.reps
    reps = min(reps, max_reps) if max_reps else reps
    warmup = 1 if quick else 3
    if same_process:
        check(case, runs)
        return Result(case, measure(runs, reps, warmup=warmup, budget_s=budget_s))
    names, held = list(runs), [runs]
    del runs

    def check_and_drop() -> None:  # while the workers build: they start (seconds) and warm up
        check(case, held.pop())     # the parent's copies then go: each worker has its own
        gc.collect()

    with WorkerPool() if pool is None else contextlib.nullcontext(pool) as workers:
        times = measure_isolated(case, names, workers, quick, reps, warmup, budget_s,
                                 while_building=check_and_drop)
    return Result(case, times, extra={"method": "isolated"})


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
