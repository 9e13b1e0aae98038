"""The convolution primitives on the CNN case's shapes, against a git revision's:
``python -m bench.conv [--against REV] [--rounds 40] [--threads N]``.

Times ``_conv_gemm``, ``_conv_wgrad`` and ``_conv_xgrad`` (numpy forwards, no autograd) on the
shapes of one CNN step (two forwards, two weight gradients, one input gradient: batch 32, 3->16
on 32x32 and 16->32 on 16x16, 3x3, padding 1), this tree's against ``REV``'s
``engine/nn/functional/_conv.py`` (default ``HEAD``; loaded beside this one, its primitives
renamed). Calls alternate old/new primitive by primitive, the first rotating every round; the
table reports medians of wall time and of the process's CPU time (steadier on a shared machine:
with ``--threads 1`` BLAS is held to one thread too, and CPU time is the work done).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from types import ModuleType

import numpy as np

HEADER = ("primitive", "old ms", "new ms", "old/new", "old CPU ms", "new CPU ms")


def _old_module(rev: str) -> ModuleType:
    src = subprocess.run(["git", "show", f"{rev}:engine/nn/functional/_conv.py"], capture_output=True,
                         text=True, check=True).stdout
    # its primitives under other names, and none of its public ops (registered once, by this tree)
    src = re.sub(r"@primitive\((.*)\)\ndef (\w+)\(", lambda m: f"@primitive({m.group(1)}, "
                 f"name='old{m.group(2)}')\ndef {m.group(2)}(", src)
    src = src[:src.index("\ndef _conv_core(")]
    path = os.path.join(tempfile.mkdtemp(), "_conv_old.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("engine.nn.functional._conv_old", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _calls(mod: ModuleType, rng: np.random.Generator) -> dict:
    a = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    x1, w1, b1, g1 = a(32, 3, 32, 32), a(16, 3, 3, 3), a(16), a(32, 16, 32, 32)
    x2, w2, b2, g2 = a(32, 16, 16, 16), a(32, 16, 3, 3), a(32), a(32, 32, 16, 16)
    p = {"pads": ((1, 1), (1, 1)), "kernel": (3, 3), "stride": (1, 1), "dilation": (1, 1), "groups": 1}
    return {
        "conv_gemm 3->16": lambda: mod._conv_gemm.fwd(x1, w1, b1, out=(32, 32), **p),
        "conv_gemm 16->32": lambda: mod._conv_gemm.fwd(x2, w2, b2, out=(16, 16), **p),
        "conv_wgrad 3->16": lambda: mod._conv_wgrad.fwd(x1, g1, **p),
        "conv_wgrad 16->32": lambda: mod._conv_wgrad.fwd(x2, g2, **p),
        "conv_xgrad 16->32": lambda: mod._conv_xgrad.fwd(g2, w2, size=(16, 16), **p),
    }


def table(rev: str = "HEAD", rounds: int = 40) -> list[tuple]:
    import engine.nn.functional._conv as new
    old = _old_module(rev)
    libs = {"old": _calls(old, np.random.default_rng(0)), "new": _calls(new, np.random.default_rng(0))}
    for name in libs["old"]:  # same numbers (to float32 rounding) before anything is timed
        o, n = libs["old"][name](), libs["new"][name]()
        np.testing.assert_allclose(n, o, rtol=1e-4, atol=1e-4 * float(np.abs(o).max()))
    wall = {(t, k): [] for t in libs for k in libs[t]}
    cpu = {(t, k): [] for t in libs for k in libs[t]}
    for r in range(rounds):
        order = ("old", "new") if r % 2 == 0 else ("new", "old")
        for k in libs["old"]:
            for t in order:
                t0, c0 = time.perf_counter(), time.process_time()
                libs[t][k]()
                wall[t, k].append(time.perf_counter() - t0)
                cpu[t, k].append(time.process_time() - c0)
    rows, tot = [], {t: [0.0, 0.0] for t in libs}
    for k in libs["old"]:
        m = {t: (statistics.median(wall[t, k]) * 1e3, statistics.median(cpu[t, k]) * 1e3) for t in libs}
        for t in libs:
            tot[t][0] += m[t][0]
            tot[t][1] += m[t][1]
        rows.append((k, m["old"][0], m["new"][0], m["old"][0] / m["new"][0], m["old"][1], m["new"][1]))
    rows.append(("sum (one step)", tot["old"][0], tot["new"][0], tot["old"][0] / tot["new"][0],
                 tot["old"][1], tot["new"][1]))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", default="HEAD", help="git revision whose _conv.py is 'old'")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--threads", type=int, default=None, help="engine threads (default: its own)")
    args = ap.parse_args(argv)
    import engine
    from engine._threads import _blas_control
    if args.threads is not None:
        engine.set_num_threads(args.threads)
        ctl = _blas_control()
        if args.threads == 1 and ctl is not None:
            ctl.set(1)
    rows = table(args.against, args.rounds)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# engine threads {engine.get_num_threads()}, {args.rounds} rounds, load average {load:.2f}; "
          f"old = {args.against}")
    print("  ".join(f"{h:>17s}" if i else f"{h:<18s}" for i, h in enumerate(HEADER)))
    for r in rows:
        print(f"{r[0]:<18s}" + "".join(f"  {v:17.3f}" for v in r[1:]))


if __name__ == "__main__":
    main(sys.argv[1:])
