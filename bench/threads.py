"""The engine's thread pool, before and after: ``python -m bench.threads [--cases cnn,block]``.

Times the eager engine step of each case with ``engine.set_num_threads(1)`` (everything on the
calling thread; OpenBLAS with its own threads outside the convolutions' chunk loops) and with
``N`` threads (the default: the cores this process may use; convolution chunks split across the
pool, OpenBLAS held to one thread inside it), interleaved in the same rounds, and checks both
give the same bits. torch is not timed here: in one process its OpenMP threads and OpenBLAS's
spin against each other (bench/README.md); the main table has the ratios to torch, each library
timed in a process of its own.
``OPENBLAS_NUM_THREADS=1`` in the environment takes BLAS's own threads out of the comparison.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.threads", description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default="cnn,block")
    p.add_argument("--rounds", type=int, default=20)
    args = p.parse_args(argv)
    rows = table(tuple(args.cases.split(",")), args.rounds)
    print("| " + " | ".join(HEADER) + " |\n|" + "---|" * len(HEADER))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
