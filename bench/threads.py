"""The engine's thread pool, before and after: ``python -m bench.threads [--cases cnn,block]``.

Times the eager engine step of each case with ``engine.set_num_threads(1)`` (everything on the
calling thread; OpenBLAS with its own threads outside the convolutions' chunk loops) and with
``N`` threads (the default: the cores this process may use; convolution chunks split across the
pool, OpenBLAS held to one thread inside it), interleaved in the same rounds, and checks both
give the same bits. torch is not timed here: in one process its OpenMP threads and OpenBLAS's
spin against each other (bench/README.md); the main table has the ratios to torch, each library
timed in a process of its own.
``OPENBLAS_NUM_THREADS=1`` in the environment takes BLAS's own threads out of the comparison.

``--overlap`` says how far the threads run side by side: it times every part of every
parallel region of a step (each thread's wall and CPU time, ``time.thread_time``) and prints, per
step, the regions' wall time, the parts' CPU time summed over the threads, their ratio (N when
the N threads run side by side all along, 1 when they take turns), and how long the calling
thread sat inside its own part without running. numpy releases the GIL inside each call, but a
thread back from one must take the GIL again, and while the other thread runs short calls
(im2col's copies, a bias add) it may be woken only after several of them.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import threading
import time
from collections.abc import Callable, Iterator

HEADER = ("case", "1 thread ms", "N threads ms", "N", "N/1")


def table(cases: tuple[str, ...] = ("cnn", "block"), rounds: int = 20) -> list[tuple[str, ...]]:
    import engine

    from . import model_cases  # noqa: F401  (registers the cases)
    from ._harness import CASES, to_arrays
    n = engine.get_num_threads()
    rows = []
    for name in cases:
        case = next(c for c in CASES if c.name == name)
        built = case.build(False)
        step = built["engine"]

        def with_threads(k: int, step=step):
            def run():
                engine.set_num_threads(k)
                try:
                    return step()
                finally:
                    engine.set_num_threads(n)
            return run

        runs = {"one": with_threads(1), "n": with_threads(n)}
        a, b = to_arrays(runs["one"]()), to_arrays(runs["n"]())
        assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b)), f"{name}: {n} threads differ from 1"
        gc.collect()
        gc.freeze()
        times: dict[str, list[float]] = {k: [] for k in runs}
        names = list(runs)
        try:
            for r in range(rounds):
                k = r % len(names)
                for lib in names[k:] + names[:k]:
                    gc.collect()
                    t0 = time.perf_counter()
                    runs[lib]()
                    times[lib].append(time.perf_counter() - t0)
        finally:
            gc.unfreeze()
        m = {k: statistics.median(v) for k, v in times.items()}
        ms = [f"{m[k] * 1e3:.3f}" for k in ("one", "n")]
        rows.append((name, *ms, str(n), f"{m['n'] / m['one']:.2f}"))
    return rows


OVERLAP_HEADER = ("case", "regions", "wall ms", "parts' CPU ms", "CPU/wall", "N", "caller waiting ms")


@contextlib.contextmanager
def traced_parts() -> Iterator[list[tuple]]:
    """Record each part of each parallel region (``engine._threads.run_parts``) while inside:
    ``(fn, on the calling thread, start, stop, thread CPU seconds)``; a region's parts share
    ``fn`` (the record keeps it alive, so no later region's can take its identity)."""
    from engine import _threads
    orig, log, caller = _threads._part, [], threading.get_ident()

    def part(fn: Callable, run):
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return orig(fn, run)
        finally:
            t1, cpu = time.perf_counter(), time.thread_time() - c0
            log.append((fn, threading.get_ident() == caller, t0, t1, cpu))

    _threads._part = part
    try:
        yield log
    finally:
        _threads._part = orig


def regions(log: list[tuple]) -> list[dict[str, float]]:
    """The parts of ``traced_parts`` grouped by region (in the order their first part ended):
    each region's wall time (first
    part's start to last part's stop), its parts' summed CPU time, and the time the calling
    thread spent in its own part without running (waiting for the GIL or the CPU)."""
    out: dict[int, dict[str, float]] = {}
    for fn, on_caller, t0, t1, cpu in log:
        r = out.setdefault(id(fn), {"start": t0, "stop": t1, "cpu": 0.0, "waiting": 0.0, "parts": 0})
        r["start"], r["stop"] = min(r["start"], t0), max(r["stop"], t1)
        r["cpu"] += cpu
        r["parts"] += 1
        if on_caller:
            r["waiting"] += max(0.0, t1 - t0 - cpu)
    return [{"wall": r["stop"] - r["start"], "cpu": r["cpu"], "waiting": r["waiting"], "parts": r["parts"]}
            for r in out.values()]


def overlap(cases: tuple[str, ...] = ("cnn", "block"), rounds: int = 20,
            run: str = "engine") -> list[tuple[str, ...]]:
    """Per case, medians over ``rounds`` steps (``run``: ``engine``, eager, or ``compiled``) of
    the per-step sums of :func:`regions` (regions of one part, which run no thread, left out)."""
    import engine

    from . import model_cases  # noqa: F401  (registers the cases)
    from ._harness import CASES
    n = engine.get_num_threads()
    rows = []
    for name in cases:
        step = next(c for c in CASES if c.name == name).build(False)[run]
        for _ in range(2):
            step()
        sums: dict[str, list[float]] = {"wall": [], "cpu": [], "waiting": []}
        count = 0
        for _ in range(rounds):
            gc.collect()
            with traced_parts() as log:
                step()
            rs = [r for r in regions(log) if r["parts"] > 1]
            log.clear()
            count = len(rs)
            for k in sums:
                sums[k].append(sum(r[k] for r in rs))
        m = {k: statistics.median(v) for k, v in sums.items()}
        ratio = f"{m['cpu'] / m['wall']:.2f}" if m["wall"] else "n/a"
        rows.append((name if run == "engine" else f"{name}+{run}", str(count), f"{m['wall'] * 1e3:.3f}",
                     f"{m['cpu'] * 1e3:.3f}", ratio, str(n), f"{m['waiting'] * 1e3:.3f}"))
    return rows


def _print(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.threads", description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default="cnn,block")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--overlap", action="store_true",
                   help="how far the pool's threads run side by side in the step's parallel regions")
    p.add_argument("--run", default="engine", choices=("engine", "compiled"),
                   help="with --overlap: the eager step or engine.compile's")
    args = p.parse_args(argv)
    cases = tuple(args.cases.split(","))
    if args.overlap:
        _print(OVERLAP_HEADER, overlap(cases, args.rounds, args.run))
    else:
        _print(HEADER, table(cases, args.rounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
