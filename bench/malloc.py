"""glibc malloc tuning (engine/_malloc.py), on and off: ``python -m bench.malloc [--cases block,hvp]``.

The main bench interleaves the libraries call by call, so the engine's step always follows torch's
or jax's and finds a heap they left warm. A user runs the engine's steps back to back: this runs
each case's eager engine step alone, ``--steps`` times, in fresh interpreters with the tuning on
and with ``GRADSERVE_ENGINE_MALLOC=0``, alternating, and reports page faults and CPU time per step
(CPU time: steadier than wall time on a shared machine; it includes the kernel's fault handling).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HEADER = ("case", "faults/step on", "faults/step off", "CPU ms on", "CPU ms off", "on/off")

_CHILD = """
import json, resource, statistics, sys, time
import engine
from bench import engine_cases, model_cases  # noqa: F401  (registers the cases)
from bench._harness import CASES
engine.set_num_threads(1)
step = next(c for c in CASES if c.name == sys.argv[1]).build(False)["engine"]
for _ in range(3):
    step()
cpu = []
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(int(sys.argv[2])):
    t0 = time.process_time()
    step()
    cpu.append(time.process_time() - t0)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / int(sys.argv[2])
print(json.dumps({"faults": faults, "cpu_ms": statistics.median(cpu) * 1e3}))
"""


def _child(case: str, steps: int, tuned: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "GRADSERVE_ENGINE_MALLOC"}
    if not tuned:
        env["GRADSERVE_ENGINE_MALLOC"] = "0"
    env.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core per step: steadier on a shared machine
    out = subprocess.run([sys.executable, "-c", _CHILD, case, str(steps)], capture_output=True,
                         text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(cases: tuple[str, ...] = ("block", "hvp"), steps: int = 20, pairs: int = 3) -> list[tuple]:
    rows = []
    for case in cases:
        on, off = [], []
        for _ in range(pairs):  # alternating processes: load changes hit both alike
            on.append(_child(case, steps, True))
            off.append(_child(case, steps, False))

        def med(runs: list[dict], key: str) -> float:
            return statistics.median(r[key] for r in runs)

        c_on, c_off = med(on, "cpu_ms"), med(off, "cpu_ms")
        rows.append((case, f"{med(on, 'faults'):.0f}", f"{med(off, 'faults'):.0f}", f"{c_on:.2f}",
                     f"{c_off:.2f}", f"{c_on / c_off:.2f}"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="block,hvp")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--pairs", type=int, default=3, help="on/off process pairs per case")
    args = ap.parse_args()
    rows = [HEADER, *table(tuple(args.cases.split(",")), args.steps, args.pairs)]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(HEADER))]
    for r in rows:
        print("  ".join(str(v).rjust(w) for v, w in zip(r, widths)))


if __name__ == "__main__":
    main()
