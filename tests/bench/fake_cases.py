"""Tiny benchmark cases for the worker tests: numpy only. A worker imports this module to find
them, so it registers them there; in the test process they stay out of ``bench._harness.CASES``
(test_bench_quick.py expects a table row for every registered case)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

from bench._harness import Case, Run, register

FAIL_MESSAGE = "the fake run broke on purpose"


def _in_worker() -> bool:
    """True in a ``python -m bench._worker`` process (the parent's check must pass)."""
    return getattr(sys.modules["__main__"].__spec__, "name", None) == "bench._worker"


def _register(case: Case) -> Case:
    return register(case) if _in_worker() else case


def build_fake(quick: bool) -> dict[str, Run]:
    a = np.arange(12, dtype=np.float32).reshape(3, 4)

    def run() -> list[np.ndarray]:
        return [a @ a.T]
    # "torch" is only the reference's name here: the same numpy computation, no torch needed
    return {"engine": run, "torch": run, "hips": lambda: [(a @ a.T).copy()]}


def _failing(fail: Callable[[], None]) -> Callable[[bool], dict[str, Run]]:
    """A builder like :func:`build_fake` whose engine run calls ``fail()`` inside a worker (so the
    parent's check, in the parent, passes)."""
    def build(quick: bool) -> dict[str, Run]:
        runs = build_fake(quick)
        in_worker = _in_worker()

        def run() -> list[np.ndarray]:
            if in_worker:
                fail()
            return runs["engine"]()
        return {**runs, "engine": run}
    return build


def _raise() -> None:
    raise ValueError(FAIL_MESSAGE)


def _crash() -> None:
    print(FAIL_MESSAGE, file=sys.stderr, flush=True)
    os._exit(3)  # no exception to report: the process is simply gone


def _hang() -> None:
    # something the worker started, then a worker that never answers
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(os.environ["FAKE_PIDFILE"], "w") as f:
        f.write(str(child.pid))
    time.sleep(600)


build_raises, build_crashes, build_hangs = _failing(_raise), _failing(_crash), _failing(_hang)


FAKE = _register(Case("fake_worker", "a 3x4 matrix product", build_fake, reps=7, quick_reps=4))
RAISES = _register(Case("fake_worker_raises", "the same, raising in the worker", build_raises,
                       reps=3, quick_reps=3))
CRASHES = _register(Case("fake_worker_crashes", "the same, the worker exiting", build_crashes,
                        reps=3, quick_reps=3))
HANGS = _register(Case("fake_worker_hangs", "the same, the worker hanging with a child process",
                     build_hangs, reps=3, quick_reps=3))
