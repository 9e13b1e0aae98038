"""A worker process of :func:`bench._harness.measure_isolated`: one run of a case, timed alone.

``python -m bench._worker [--threads N]`` reads JSON requests from stdin, one a line, and writes
one JSON answer a line to stdout (``{"ok": true, ...}``, or ``{"ok": false, "error": traceback}``):

- ``{"op": "build", "module": m, "case": c, "run": r, "quick": q, "warmup": w, "env": e}``: set
  the environment variables ``e``, import ``m`` (which registers case ``c``), build the case, keep
  run ``r`` only, run it ``w`` times, then freeze everything alive out of the garbage collector's
  reach;
- ``{"op": "time", "reps": k}``: run it ``k`` times back to back, collecting garbage before each;
  answers ``{"ok": true, "times": [seconds, ...]}``;
- ``{"op": "drop"}``: let go of the run (the next ``build`` starts clean); ``{"op": "quit"}``.

Anything the libraries print goes to stderr, which the parent shows when the worker fails.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import sys
import time
import traceback


def _threads(argv: list[str]) -> int | None:
    # BLAS thread pools size themselves when numpy loads: set them before anything imports it
    if "--threads" in argv:
        n = argv[argv.index("--threads") + 1]
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = n
        return int(n)
    return None


def _apply_threads(n: int) -> None:
    """The libraries' own pools, for those the case imported (as ``python -m bench --threads``)."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    if "engine" in sys.modules:
        sys.modules["engine"].set_num_threads(n)


def _block(run, reps: int) -> list[float]:
    clock = time.perf_counter
    times = []
    for _ in range(reps):
        gc.collect()  # this block's garbage is collected off the clock
        t0 = clock()
        run()
        times.append(clock() - t0)
    return times


def main(argv: list[str]) -> None:
    threads = _threads(argv)
    out = os.fdopen(os.dup(1), "w", buffering=1)  # the answers' channel ...
    os.dup2(2, 1)                                 # ... and fd 1 (what a library prints) to stderr

    def answer(msg: dict) -> None:
        out.write(json.dumps(msg) + "\n")

    run = None
    for line in sys.stdin:
        msg = json.loads(line)
        op = msg.get("op")
        if op == "quit":
            break
        try:
            if op == "build":
                run = None
                gc.unfreeze()
                gc.collect()
                os.environ.update(msg.get("env", {}))  # bench._harness.WORKER_ENV
                importlib.import_module(msg["module"])
                from bench._harness import CASES
                case = next((c for c in CASES if c.name == msg["case"]), None)
                if case is None:
                    raise LookupError(f"no case {msg['case']!r} registered by {msg['module']}")
                runs = case.build(msg["quick"])
                if msg["run"] not in runs:
                    raise LookupError(f"case {case.name!r} has no run {msg['run']!r}: {sorted(runs)}")
                run = runs[msg["run"]]
                del runs  # the other libraries' objects go with it
                if threads:
                    _apply_threads(threads)
                for _ in range(msg["warmup"]):
                    run()
                # everything alive now is moved out of the collector's reach (as measure does)
                gc.collect()
                gc.freeze()
                answer({"ok": True})
            elif op == "time":
                if run is None:
                    raise RuntimeError("time before build")
                answer({"ok": True, "times": _block(run, int(msg["reps"]))})
            elif op == "drop":
                run = None
                gc.unfreeze()
                gc.collect()
                answer({"ok": True})
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception:
            answer({"ok": False, "error": traceback.format_exc()})
    out.flush()
    sys.stderr.flush()
    # no interpreter teardown (seconds with torch and jax loaded, times seven workers): what the
    # worker started, the parent kills with its session (bench._harness.Worker.close)
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
