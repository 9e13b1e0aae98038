"""The benchmark command: ``python -m bench [--quick] [--cases a,b] [--docs]``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import (  # noqa: F401  (registers the cases, in table order)
    engine_cases,
    func_cases,
    model_cases,
    onnx_cases,
    service_cases,
)
from ._harness import CASES, WorkerPool, run_case
from .memory import run_memory
from .report import environment, memory_table, text_table, write_docs

ROOT = Path(__file__).resolve().parent.parent
MEMORY_CASES = ("mlp", "cnn")  # issue 5's peak-memory target; --quick measures the first only


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="few repetitions: a smoke run under a minute")
    p.add_argument("--cases", help="comma-separated case names (default: all)")
    p.add_argument("--docs", action="store_true",
                   help="also write docs/benchmarks.md and its PNG plots")
    p.add_argument("--rounds", type=int,
                   help="at most this many repetitions per library and case (a shorter run on a busy "
                        "machine; with --same-process: interleaved rounds)")
    p.add_argument("--threads", type=int,
                   help="BLAS, torch and engine threads for every library (default: each library's own); "
                        "1 is steadier on a busy machine")
    p.add_argument("--same-process", action="store_true",
                   help="time every library in this one process, one repetition each in turn (the "
                        "old method, for comparison) instead of each in a worker process of its own")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        import engine
        torch.set_num_threads(args.threads)
        engine.set_num_threads(args.threads)  # the engine's own pool (conv chunks) too

    cases = CASES
    if args.cases:
        wanted = args.cases.split(",")
        unknown = [w for w in wanted if w not in {c.name for c in CASES}]
        if unknown:
            p.error(f"unknown case(s) {unknown}; known: {[c.name for c in CASES]}")
        cases = [c for c in CASES if c.name in wanted]

    print(f"# {environment()}", flush=True)
    t0 = time.perf_counter()
    results = []
    with WorkerPool(threads=args.threads) as pool:  # its workers end with the block, error or not
        for case in cases:
            print(f"# {case.name}: {case.title} ...", flush=True)
            results.append(run_case(case, args.quick, budget_s=8.0 if args.quick else None,
                                    max_reps=args.rounds, pool=pool, same_process=args.same_process))
    memory = []
    ran = {r.case.name for r in results if not r.skipped}
    for name in MEMORY_CASES[:1] if args.quick else MEMORY_CASES:
        if name in ran:
            print(f"# peak memory of {name}, one process per library ...", flush=True)
            memory.append(run_memory(name))
    print()
    print(text_table(results))
    if memory:
        print()
        print(memory_table(memory))
    print(f"\n# {'quick' if args.quick else 'full'} run in {time.perf_counter() - t0:.1f} s", flush=True)
    if args.docs:
        command = "python -m bench --docs" + (" --quick" if args.quick else "") + \
            (f" --threads {args.threads}" if args.threads else "") + \
            (f" --rounds {args.rounds}" if args.rounds else "") + \
            (" --same-process" if args.same_process else "")
        from . import compile_passes, gemm
        print("# GEMM alternatives (bench.gemm) ...", flush=True)
        gemm_rows = gemm.table(rounds=3 if args.quick else 30)
        print("# engine.compile's passes (bench.compile_passes) ...", flush=True)
        passes = compile_passes.table(("seed",) if args.quick else ("seed", "chain", "mlp", "cnn"),
                                      rounds=3 if args.quick else 15)
        print("# the engine's thread pool, 1 thread and the default (bench.threads) ...", flush=True)
        from . import threads
        pool = threads.table(rounds=3 if args.quick else 20)
        for f in write_docs(results, ROOT / "docs" / "benchmarks.md", command, memory, gemm=gemm_rows,
                            passes=passes, gemm_env=f"Versions: {gemm.environment()}.", pool=pool):
            print(f"# wrote {f.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
