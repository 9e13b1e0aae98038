"""Max pooling of the CNN step, this tree against another checkout: ``python -m bench.max_pool``.

Times both ``max_pool2d(2)`` calls of the bench's CNN step (on (32, 16, 32, 32) and (32, 32, 16,
16) float32), forward and backward (``autograd.grad`` with a fixed cotangent), per step. Each
round runs one fresh process per variant (the other checkout, this tree with 1 thread, this tree
with the default threads), in turn, so that the load of a shared machine hits every variant
alike; medians of wall and CPU time (the CPU time, which a loaded machine changes less, counts
every thread of the process).

    python -m bench.max_pool --old /work/main            # 7 rounds of 100 steps
    python -m bench.max_pool --old ../main --rounds 3 --steps 50
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

SHAPES = ((32, 16, 32, 32), (32, 32, 16, 16))

_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
import engine
import engine.nn.functional as F
threads, steps = int(sys.argv[2]), int(sys.argv[3])
if threads:
    engine.set_num_threads(threads)
rng = np.random.default_rng(0)
shapes = json.loads(sys.argv[4])
xs = [engine.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True) for s in shapes]
gs = [engine.tensor(rng.standard_normal(s[:2] + [s[2] // 2, s[3] // 2]).astype(np.float32))
      for s in shapes]
def step():
    for x, g in zip(xs, gs):
        engine.autograd.grad(F.max_pool2d(x, 2), x, g)
for _ in range(10):
    step()
wall, cpu = [], []
for _ in range(steps):
    w, c = time.perf_counter(), time.process_time()
    step()
    wall.append(time.perf_counter() - w)
    cpu.append(time.process_time() - c)
wall.sort(); cpu.sort()
print(json.dumps([wall[len(wall) // 2] * 1e3, cpu[len(cpu) // 2] * 1e3, engine.get_num_threads()]))
"""


def run(old: str, rounds: int, steps: int) -> dict[str, list]:
    here = str(Path(__file__).resolve().parents[1])
    variants = [("old", old, 1), ("new, 1 thread", here, 1), ("new, default threads", here, 0)]
    res: dict[str, list] = {name: [] for name, _, _ in variants}
    for _ in range(rounds):
        for name, path, threads in variants:
            out = subprocess.run([sys.executable, "-c", _CHILD, path, str(threads), str(steps),
                                  json.dumps([list(s) for s in SHAPES])],
                                 capture_output=True, text=True, check=True, cwd=path)
            res[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="the other checkout's root (its engine is timed as 'old')")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=100)
    a = ap.parse_args()
    res = run(a.old, a.rounds, a.steps)
    base = statistics.median(r[1] for r in res["old"])
    print(f"{'variant':22}  {'wall ms':>8}  {'CPU ms':>8}  {'threads':>7}  {'old CPU/CPU':>11}")
    for name, rows in res.items():
        wall, cpu = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
        print(f"{name:22}  {wall:8.3f}  {cpu:8.3f}  {rows[0][2]:7d}  {base / cpu:11.2f}")


if __name__ == "__main__":
    main()
