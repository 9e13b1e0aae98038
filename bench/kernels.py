"""The engine's elementwise and sum kernels against their plain numpy spellings, on the CNN step's
arrays: ``python -m bench.kernels [--rounds 15] [--crossover]``.

Per CNN step: relu on the two conv outputs (32x16x32x32 and 32x32x16x16 float32), relu's backward
on them, the two conv bias gradients (sums over (0, 2, 3)), and a same-shape add. "numpy" is what
the primitives computed before ``engine._kernels`` (``np.maximum(x, 0)``, ``g * ~(y <= 0)``,
``np.sum``), timed interleaved with the kernels on 1 thread and on the pool's N threads; medians
of wall and CPU time (the CPU time counts every thread). ``--crossover`` times 1 against 2 threads
of ``engine._threads.elementwise`` by array size (the threshold ``PARALLEL_MIN``). ``--steps
cnn,mlp,block`` times whole eager and compiled steps of the bench's cases in one process with the
primitives' former numpy forwards and with the present ones, interleaved (what a before/after
comparison across two processes cannot do on a loaded machine).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np


def _cases() -> dict[str, tuple[Callable, Callable, bool]]:
    from engine import _kernels as K
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(s).astype(np.float32) for s in ((32, 16, 32, 32), (32, 32, 16, 16))]
    gs = [rng.standard_normal(x.shape).astype(np.float32) for x in xs]
    ys = [np.maximum(x, 0) for x in xs]
    add = K.threaded_ufunc(np.add)
    # name: (numpy spelling, engine kernel, bitwise equal)
    return {
        "relu x2": (lambda: [np.maximum(x, 0).astype(x.dtype, copy=False) for x in xs],
                    lambda: [K.relu(x) for x in xs], True),
        "relu backward x2": (lambda: [np.multiply(g, ~(y <= 0)) for g, y in zip(gs, ys)],
                             lambda: [K.relu_backward(g, y) for g, y in zip(gs, ys)], True),
        "bias sums x2": (lambda: [np.sum(g, axis=(0, 2, 3)) for g in gs],
                         lambda: [K.sum_fast(g, (0, 2, 3), False) for g in gs], False),
        "add x2": (lambda: [np.add(g, x) for g, x in zip(gs, xs)],
                   lambda: [add(g, x) for g, x in zip(gs, xs)], True),
    }


def _time(run: Callable, reps: int) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(reps):
        run()
    return (time.perf_counter() - t0) / reps, (time.process_time() - c0) / reps


def table(rounds: int = 15, reps: int = 20) -> list[tuple[str, ...]]:
    import engine
    n = engine.get_num_threads()
    rows = []
    for name, (plain, kernel, exact) in _cases().items():
        for a, b in zip(plain(), kernel()):
            assert a.tobytes() == b.tobytes() if exact else np.allclose(a, b, rtol=1e-4, atol=1e-3), name
        runs = {"numpy": (plain, 1), "1 thread": (kernel, 1), f"{n} threads": (kernel, n)}
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
        order = list(runs)
        try:
            for r in range(rounds):
                k = r % len(order)
                for label in order[k:] + order[:k]:
                    fn, threads = runs[label]
                    engine.set_num_threads(threads)
                    times[label].append(_time(fn, reps))
        finally:
            engine.set_num_threads(n)
        med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
               for k, v in times.items()}
        rows.append((name, *(f"{med[k][0] * 1e3:.3f} / {med[k][1] * 1e3:.3f}" for k in order),
                     f"{med['1 thread'][0] / med['numpy'][0]:.2f}"))
    return rows


def crossover(rounds: int = 11) -> list[tuple[str, ...]]:
    import engine
    from engine import _kernels as K
    from engine import _threads as T
    n0, saved = engine.get_num_threads(), T.PARALLEL_MIN
    T.PARALLEL_MIN = 0
    rng = np.random.default_rng(0)
    rows = []
    try:
        for size in (1 << 16, 1 << 18, 1 << 19, 1 << 20, 1 << 21, 1 << 22):
            a, b = (rng.standard_normal(size).astype(np.float32) for _ in range(2))
            y = np.maximum(b, 0)
            reps = max(2, (1 << 22) // size)
            kernels = {"add": lambda a=a, b=b: T.elementwise(lambda o, x, z: np.add(x, z, out=o),
                                                             np.empty_like(a), a, b),
                       "relu": lambda a=a: K.relu(a),
                       "relu backward": lambda a=a, y=y: K.relu_backward(a, y)}
            for name, fn in kernels.items():
                t: dict[int, list[float]] = {1: [], 2: []}
                for r in range(rounds):
                    for k in ((1, 2) if r % 2 else (2, 1)):
                        engine.set_num_threads(k)
                        t[k].append(_time(fn, reps)[0])
                m1, m2 = statistics.median(t[1]), statistics.median(t[2])
                rows.append((str(size), name, f"{m1 * 1e3:.3f}", f"{m2 * 1e3:.3f}", f"{m2 / m1:.2f}"))
    finally:
        T.PARALLEL_MIN = saved
        engine.set_num_threads(n0)
    return rows


# the primitives' forwards before engine._kernels, as they were written
_FORMER = {
    "add": np.add, "sub": lambda a, b: np.subtract(a, b), "mul": np.multiply,
    "div": lambda a, b: np.true_divide(a, b), "maximum": lambda a, b: np.maximum(a, b),
    "minimum": lambda a, b: np.minimum(a, b), "where": lambda cond, a, b: np.where(cond, a, b),
    "relu": lambda x: np.maximum(x, 0).astype(x.dtype, copy=False),
    "relu_backward": lambda g, y: np.multiply(g, ~(y <= 0)),
    "sum": lambda x, dims, keepdim: np.sum(x, axis=dims, keepdims=keepdim),
}


def steps(cases: tuple[str, ...], rounds: int = 10) -> list[tuple[str, ...]]:
    from engine._autograd import PRIMITIVES

    from . import model_cases  # noqa: F401  (registers the cases)
    from ._harness import CASES
    present = {k: PRIMITIVES[k].fwd for k in _FORMER}

    def use(fwds: dict) -> None:
        for k, f in fwds.items():
            PRIMITIVES[k].fwd = f

    rows = []
    try:
        for name in cases:
            case = next(c for c in CASES if c.name == name)
            runs = {}
            for label, fwds in (("former", _FORMER), ("present", present)):
                use(fwds)
                built = case.build(False)  # a compiled step traces with these forwards
                runs[label] = (fwds, built["engine"])
                if "compiled" in built:
                    runs[label + " compiled"] = (fwds, built["compiled"])
            for fwds, run in runs.values():
                use(fwds)
                for _ in range(3):
                    run()
            use(present)
            reps = max(1, int(0.02 / max(_time(runs["present"][1], 1)[1], 1e-5)))
            times: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
            order = list(runs)
            for r in range(rounds):
                k = r % len(order)
                for label in order[k:] + order[:k]:
                    fwds, run = runs[label]
                    use(fwds)
                    times[label].append(_time(run, reps))
            for mode in ("", " compiled"):
                if "former" + mode not in times:
                    continue
                old, new = times["former" + mode], times["present" + mode]
                rows.append((name + mode, *(f"{statistics.median(x[i] for x in v) * 1e3:.3f}"
                                            for v in (old, new) for i in (0, 1)),
                             f"{statistics.median(n[1] / o[1] for n, o in zip(new, old)):.3f}"))
    finally:
        use(present)
    return rows


def _print(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, *rows):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.kernels", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--crossover", action="store_true", help="1 against 2 threads by array size")
    p.add_argument("--steps", default="", help="bench cases to time whole, former against present")
    args = p.parse_args(argv)
    import engine
    if args.steps:
        _print(("step", "former wall ms", "former CPU ms", "present wall ms", "present CPU ms",
                "present/former CPU"), steps(tuple(args.steps.split(",")), args.rounds))
        return 0
    n = engine.get_num_threads()
    _print(("per CNN step", "numpy ms (wall / CPU)", "kernel, 1 thread", f"kernel, {n} threads",
            "1 thread/numpy"), table(args.rounds))
    if args.crossover:
        print()
        _print(("elements", "kernel", "1 thread ms", "2 threads ms", "2/1"), crossover())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
