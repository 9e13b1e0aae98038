"""What each optimization of ``engine.compile`` buys: ``python -m bench.compile_passes``.

For the seed, chain, MLP and CNN steps, the same program is built with the passes switched on one
after the other (none, + constant folding, + dead-step elimination, + freeing at last use, + buffer
reuse with ``out=``, + the rewrites rules register: the fusions around max pooling); each
program's results are checked bitwise against eager first. Reported per configuration: program
steps, CPU time per call (median of interleaved rounds, ``time.process_time``, every thread's:
steadier than wall time on a shared machine), wall time per call (what the engine's threads buy
shows there) and the peak of numpy allocations during one call (``tracemalloc``).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from contextlib import contextmanager

import numpy as np

PASSES = ("none", "+fold", "+dce", "+free", "+reuse", "+rewrites")


@contextmanager
def _passes(level: int):
    """Switch the passes after ``level`` off (module switches, for this measurement only)."""
    from engine import _compile as C
    saved = (C._fold, C._eliminate_dead, C.FREE_BYTES, C.REUSE_BYTES)
    rules = list(C._REWRITES)
    if level < 1:
        C._fold = lambda steps, n: steps
    if level < 2:
        C._eliminate_dead = lambda steps, outs: steps
    if level < 3:
        C.FREE_BYTES = 1 << 62
    if level < 4:
        C.REUSE_BYTES = 1 << 62
    if level < 5:
        C._REWRITES.clear()
    try:
        yield
    finally:
        C._fold, C._eliminate_dead, C.FREE_BYTES, C.REUSE_BYTES = saved
        C._REWRITES[:] = rules


def _steps():
    import engine
    import engine.nn.functional as F

    from . import engine_cases as E
    from . import model_cases as M
    x, w, b = E.seed_inputs()

    def seed(x, w, b):
        loss = E.seed_loss(x, w, b)
        return (loss.detach(), *engine.autograd_grad(loss, (w, b)))

    def chain(x):
        y = x
        for _ in range(E.CHAIN_STEPS):
            y = y * 1.0001 + 0.0001
        return (y.detach(), *engine.autograd_grad(y, x))

    a = E.mlp_inputs()
    mp = [engine.tensor(a[k], requires_grad=True) for k in E._param_names()]
    cp, cx, cy = M.cnn_inputs()
    cp = [engine.tensor(t, requires_grad=True) for t in cp]
    return {
        "seed": (seed, (engine.tensor(x), engine.tensor(w, requires_grad=True),
                        engine.tensor(b, requires_grad=True))),
        "chain": (chain, (engine.tensor(np.array([0.5], np.float32), requires_grad=True),)),
        "mlp": (lambda p, x, y: engine.autograd_grad(E._engine_loss(p, x, y), p),
                (mp, engine.tensor(a["x"]), engine.tensor(a["y"]))),
        "cnn": (lambda p, x, y: engine.autograd_grad(M.cnn_loss(F, p, x, y), p),
                (cp, engine.tensor(cx), engine.tensor(cy))),
    }


def _same(a, b) -> bool:
    from engine import Tensor
    if isinstance(a, Tensor):
        return a._data.dtype == b._data.dtype and a._data.tobytes() == b._data.tobytes()
    return all(_same(x, y) for x, y in zip(a, b))


def _peak(run) -> float:
    gc.collect()
    tracemalloc.start()
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


LABELS = {"none": "no passes", "+fold": "+ constants folded", "+dce": "+ dead steps eliminated",
          "+free": "+ large buffers freed at last use", "+reuse": "+ dead buffers reused (`out=`)",
          "+rewrites": "+ rewrites (fusions around max pooling)"}
HEADER = ("case", "program", "steps", "CPU µs/call", "wall µs/call", "peak MiB")


def table(cases: tuple[str, ...] = ("seed", "chain", "mlp", "cnn"),
          rounds: int = 15) -> list[tuple[str, ...]]:
    """One row per case and configuration (eager, then the passes added one by one)."""
    import engine
    steps = _steps()
    rows = []
    for name in cases:
        fn, fargs = steps[name]
        want = fn(*fargs)
        runs = {"eager": lambda fn=fn, fargs=fargs: fn(*fargs)}
        info = {"eager": ("", _peak(runs["eager"]))}
        for level, label in enumerate(PASSES):
            with _passes(level):
                cf = engine.compile(fn)
                assert _same(cf(*fargs), want), f"{name} {label}: differs from eager"
            assert _same(cf(*fargs), want), f"{name} {label}: replay differs from eager"
            runs[label] = lambda cf=cf, fargs=fargs: cf(*fargs)
            info[label] = (str(len(cf.programs()[0].runs)), _peak(runs[label]))
        times = {k: [] for k in runs}
        walls = {k: [] for k in runs}
        n = max(1, int(2e-3 // max(1e-6, _once(runs["eager"]))))  # calls per sample: >= ~2 ms
        for r in range(rounds):
            order = list(runs)
            k = r % len(order)
            for label in order[k:] + order[:k]:
                gc.collect()
                t0, w0 = time.process_time(), time.perf_counter()
                for _ in range(n):
                    runs[label]()
                times[label].append((time.process_time() - t0) / n)
                walls[label].append((time.perf_counter() - w0) / n)
        for label in runs:
            s, peak = info[label]
            rows.append((name, LABELS.get(label, label), s,
                         f"{statistics.median(times[label]) * 1e6:.1f}",
                         f"{statistics.median(walls[label]) * 1e6:.1f}", f"{peak:.2f}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compile_passes", description=__doc__)
    p.add_argument("--cases", default="seed,chain,mlp,cnn")
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args(argv)
    rows = table(tuple(args.cases.split(",")), args.rounds)
    widths = [max(len(r[i]) for r in (HEADER, *rows)) for i in range(len(HEADER))]
    for r in (HEADER, *rows):
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return 0


def _once(run) -> float:
    t0 = time.process_time()
    run()
    return time.process_time() - t0


if __name__ == "__main__":
    raise SystemExit(main())
