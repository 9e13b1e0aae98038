"""The fastest GEMM the registry offers, by measurement: ``python -m bench.gemm``.

Issue 11 asks for numpy's OpenBLAS to be measured against the GEMMs that install from PyPI, on
the matrix products the models actually make. This records every ``np.matmul`` one eager step of
the MLP, CNN and transformer-block cases calls (operands copied in their memory layout: a
transposed view stays a transposed view, ``out=`` stays ``out=``), then times each case's whole
list of products per library, interleaved (the starting library rotates every round):

- ``numpy``: ``np.matmul`` as the engine calls it (numpy's bundled OpenBLAS);
- ``scipy``: ``scipy.linalg.blas.sgemm``/``dgemm`` (scipy's own OpenBLAS build), fed
  Fortran-ordered operands through the transpose identity ``C^T = B^T A^T`` so nothing is copied;
- ``blis``: ``blis.py.gemm`` (BLIS, the ``blis`` package), with its transpose flags;
- ``torch``: ``torch.matmul`` on the same buffers, the reference the MLP target is stated against.

Batched products (attention's) are one call for numpy and torch and a loop of 2-D calls for the
others: what adopting them would cost the engine. Every library's products are checked against
numpy's first. A library that is not installed is reported as n/a.

The main bench times the MLP's products (numpy's and torch's runs of :func:`runs_for`) beside
the MLP step, so the target "compiled MLP step <= numpy GEMM / torch GEMM + 5 %" is checked in
the same run.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable

if __name__ == "__main__":  # BLAS pools size themselves when numpy loads: --threads acts first
    for _i, _arg in enumerate(sys.argv):
        if _arg == "--threads" and _i + 1 < len(sys.argv):
            for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
                os.environ[_var] = sys.argv[_i + 1]

import numpy as np  # noqa: E402

from .gemm_calls import LIBS, record, runs_for  # noqa: E402


def case_calls(name: str) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """The products of one eager engine step of the bench case ``name`` (mlp, cnn, block)."""
    from . import engine_cases, model_cases  # noqa: F401  (registers the cases)
    from ._harness import CASES
    case = next(c for c in CASES if c.name == name)
    runs = case.build(True)
    runs["engine"]()  # warm: lazy imports and caches are not the step
    return record(runs["engine"])


def _flat(res: list, lib: str) -> list[np.ndarray]:
    out = []
    for r in res:
        if lib in ("scipy", "blis"):
            out.append(np.stack(r).reshape(-1) if len(r) > 1 else np.asarray(r[0]).reshape(-1))
        else:
            out.append(np.asarray(r.detach().numpy() if hasattr(r, "detach") else r).reshape(-1))
    return out


def check(runs: dict[str, Callable[[], list]]) -> None:
    ref = _flat(runs["numpy"](), "numpy")
    for lib, run in runs.items():
        for i, (g, r) in enumerate(zip(_flat(run(), lib), ref)):
            np.testing.assert_allclose(g, r, rtol=1e-3, atol=1e-3,
                                       err_msg=f"{lib}'s product {i} differs from numpy's")


def measure(runs: dict[str, Callable[[], list]], rounds: int) -> dict[str, float]:
    """Median seconds per run, interleaved (the starting library rotates every round)."""
    names = list(runs)
    for n in names:
        runs[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            gc.collect()
            t0 = time.perf_counter()
            runs[n]()
            times[n].append(time.perf_counter() - t0)
    return {n: statistics.median(t) for n, t in times.items()}


HEADER = ("case", "products", "numpy ms", "scipy ms", "blis ms", "torch ms", "scipy/numpy",
          "blis/numpy", "numpy/torch")


def table(cases: tuple[str, ...] = ("mlp", "cnn", "block"), rounds: int = 30) -> list[tuple[str, ...]]:
    rows = []
    for name in cases:
        calls = case_calls(name)
        runs = runs_for(calls)
        check(runs)
        med = measure(runs, rounds)
        rows.append((name, str(len(calls)), *(_ms(med, lib) for lib in LIBS),
                     _ratio(med, "scipy", "numpy"), _ratio(med, "blis", "numpy"),
                     _ratio(med, "numpy", "torch")))
    return rows


def _ms(med: dict, lib: str) -> str:
    return f"{med[lib] * 1e3:.3f}" if lib in med else "n/a"


def _ratio(med: dict, a: str, b: str) -> str:
    return f"{med[a] / med[b]:.2f}" if a in med and b in med else "n/a"


def environment() -> str:
    from importlib.metadata import PackageNotFoundError, version
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    parts = [f"numpy {np.__version__} (BLAS threads: {threads})"]
    for pkg in ("scipy", "blis", "torch"):
        try:
            parts.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            parts.append(f"{pkg} not installed")
    if "torch" in sys.modules:
        parts[-1] += f" ({sys.modules['torch'].get_num_threads()} threads)"
    return ", ".join(parts)


def markdown(rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gemm", description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default="mlp,cnn,block")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--threads", type=int, help="BLAS (OpenBLAS, BLIS) and torch threads for every "
                   "library (default: each library's own; BLIS's wheel runs on one)")
    args = p.parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    rows = table(tuple(args.cases.split(",")), args.rounds)
    print(f"# {environment()}")
    if args.markdown:
        print(markdown(rows))
    else:
        body = [HEADER, *rows]
        widths = [max(len(r[i]) for r in body) for i in range(len(HEADER))]
        for r in body:
            print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
