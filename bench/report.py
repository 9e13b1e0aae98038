"""The results table (plain text for the terminal, Markdown for docs/benchmarks.md) and plots."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from ._harness import Result, Target
from .memory import HEADER as MEMORY_HEADER
from .memory import MemoryResult
from .memory import rows as memory_rows


def environment() -> str:
    import numpy as np
    import torch
    try:
        from importlib.metadata import version
        hips = version("autograd")
    except Exception:  # pragma: no cover - metadata missing
        hips = "?"
    try:
        from importlib.metadata import version
        jax = f"jax {version('jax')} (CPU)"
    except Exception:  # not installed: the JAX column shows n/a
        jax = "jax not installed"
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    return (f"python {platform.python_version()}, numpy {np.__version__} (BLAS threads: {blas}), "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), autograd {hips}, "
            f"{jax}, {os.cpu_count()} cores")


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 1e3:.3f}"


def _ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _verdict(r: Result, t: Target, lib: str = "engine") -> str:
    ok = True
    vs_torch, vs_hips = r.ratio(lib, "torch"), r.ratio(lib, "hips")
    parts = []
    if t.torch is not None:
        parts.append(f"torch<={t.torch:g}")
        ok &= vs_torch is not None and vs_torch <= t.torch
    if t.hips_speedup is not None:
        parts.append(f"HIPS/{t.hips_speedup:g}")
        ok &= vs_hips is not None and vs_hips <= 1 / t.hips_speedup
    if t.jax is not None:
        parts.append(f"JAX<={t.jax:g}")
        vs_jax = r.ratio(lib, "jax")
        ok &= vs_jax is not None and vs_jax <= t.jax
    if t.gemm_slack is not None:
        bound = r.ratio("gemm_numpy", "gemm_torch")
        parts.append(f"torch<=GEMM ratio+{t.gemm_slack:g}" if bound is None else
                     f"torch<={bound + t.gemm_slack:.2f}: GEMM ratio+{t.gemm_slack:g}")
        ok &= bound is not None and vs_torch is not None and vs_torch <= bound + t.gemm_slack
    return f"{t.source} {'ok' if ok else 'MISS'} ({', '.join(parts)})"


HEADER = ("case", "engine ms", "torch ms", "HIPS ms", "JAX ms", "engine/torch", "engine/HIPS",
          "engine/JAX", "reps", "targets")


def rows(results: list[Result]) -> list[tuple[str, ...]]:
    """One row per case for the eager engine, and one (``<case>+compiled``) for engine.compile."""
    out = []
    for r in results:
        if r.skipped:
            out.append((r.case.name, "skipped", "", "", "", "", "", "", "", r.skipped))
            continue
        if r.case.rows is not None:
            out.extend(r.case.rows(r))
            continue
        reps = min(len(t) for t in r.times.values())
        for lib, name, targets in (("engine", r.case.name, r.case.targets),
                                   ("compiled", r.case.name + "+compiled", r.case.compiled_targets)):
            if lib not in r.times:
                continue
            out.append((name, _ms(r.median(lib)), _ms(r.median("torch")), _ms(r.median("hips")),
                        _ms(r.median("jax")), _ratio(r.ratio(lib, "torch")), _ratio(r.ratio(lib, "hips")),
                        _ratio(r.ratio(lib, "jax")), str(reps),
                        "; ".join(_verdict(r, t, lib) for t in targets)))
        if "gemm_numpy" in r.times and "gemm_torch" in r.times:
            out.append((r.case.name + "_gemms", _ms(r.median("gemm_numpy")), _ms(r.median("gemm_torch")),
                        "", "", _ratio(r.ratio("gemm_numpy", "gemm_torch")), "", "", str(reps),
                        "the step's matrix products alone: numpy (engine column) / torch; numpy's "
                        f"alone = {_ratio(r.ratio('gemm_numpy', 'torch'))}x torch's whole step "
                        "(the engine's floor)"))
    return out


SIDE_HEADER = ("case", "eager ms", "compiled ms", "torch ms", "JAX ms", "eager/torch", "compiled/torch",
               "compiled/JAX", "compiled/eager")


def side_by_side(results: list[Result]) -> list[tuple[str, ...]]:
    """Eager and compiled (``engine.compile``) in one row per case that has both."""
    out = []
    for r in results:
        if r.skipped or r.case.runner is not None or "compiled" not in r.times:
            continue
        out.append((r.case.name, _ms(r.median("engine")), _ms(r.median("compiled")), _ms(r.median("torch")),
                    _ms(r.median("jax")), _ratio(r.ratio("engine", "torch")),
                    _ratio(r.ratio("compiled", "torch")), _ratio(r.ratio("compiled", "jax")),
                    _ratio(r.ratio("compiled", "engine"))))
    return out


def sections(results: list[Result]) -> list[tuple[tuple[str, ...], list[tuple[str, ...]]]]:
    """(header, rows) per run of consecutive results sharing a header (engine, then service)."""
    out: list[tuple[tuple[str, ...], list[tuple[str, ...]]]] = []
    for r in results:
        header = r.case.header or HEADER
        if not out or out[-1][0] != header:
            out.append((header, []))
        out[-1][1].extend(rows([r]))
    return out


def text_table(results: list[Result]) -> str:
    blocks = sections(results) or [(HEADER, [])]
    lines: list[str] = []
    for header, rs in blocks:  # each block aligned on its own (the service table has its columns)
        if lines:
            lines.append("")
        lines.append(_aligned(header, rs))
    return "\n".join(lines)


def markdown_table(results: list[Result]) -> str:
    tables = []
    for header, rs in sections(results) or [(HEADER, [])]:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rs]
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def _aligned(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    body = [header, *rows]
    widths = [max(len(row[i]) for row in body) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i in (0, len(header) - 1) else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths))).rstrip() for row in body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def memory_table(memory: list[MemoryResult]) -> str:
    """Peak memory per library (bench.memory), as text."""
    return _aligned(MEMORY_HEADER, memory_rows(memory))


def _markdown(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


PASSES_TEXT = """\
Reading it:

- Most of the gain is the trace itself: Tensor and Node objects, dtype promotion, edge lists and
  the unbroadcasting checks (`sum_to_size`, casts) run once, at trace time, and only the numpy
  calls they decided on remain (no-op casts are dropped as they are recorded).
- Folding removes whatever does not depend on the inputs: the seed's `2 * x + 1` chain of
  constants, the backward's `ones_like` seeds and scales; the chain's whole backward (its gradient
  does not depend on `x`).
- Dead-step elimination drops the forward values nothing returns or needs (a loss not returned).
- Freeing matters for memory, and with it for time on big steps: without it the program holds
  every intermediate until the end (fresh pages cost time). With it the compiled MLP and CNN
  steps peak at or below eager (eager also frees what backward has used;
  `tests/engine/test_compile_memory.py` checks this).
- Buffer reuse (`out=` on elementwise ufuncs, into buffers no view can see) saves allocations.
- Rewrites (`engine/nn/functional/_fusions.py`): in the CNN, relu's backward runs on the pooled
  gradient before max_pool's scatter (a quarter of the elements), and relu and max_pool run in
  the convolution's threads on the samples each thread has just convolved. Same bits as eager
  (`tests/engine/test_compile_fusions.py`); the wall column shows the threads' share."""


def _gemm_verdict(gemm: list[tuple[str, ...]]) -> str:
    """Which alternative beats numpy on every model in this run, if any."""
    winners = []
    for lib, col in (("scipy", 6), ("blis", 7)):
        try:
            if all(float(r[col]) < 1 for r in gemm):
                winners.append(lib)
        except (ValueError, IndexError):  # n/a: not installed
            continue
    if not winners:
        return "In this run no alternative beats numpy's OpenBLAS on every model: the engine keeps it."
    return (f"In this run {' and '.join(winners)} beat numpy's OpenBLAS on every model; confirm on a "
            "quiet machine (and with `--threads 1`) before adopting.")


_ISOLATED_METHOD = (
    "Each library (and `compiled`, and each of the `mlp_gemms` runs) is timed in a worker process "
    "of its own, blocks of repetitions back to back as a training loop would run them; the workers "
    "take turns in rounds (the first one rotating) so that machine noise hits all of them alike, "
    "each block starts once every worker's threads are asleep, and its first repetition (the "
    "wake-up) is not counted. In one process the libraries' spinning pool threads (torch's "
    "OpenMP, numpy's OpenBLAS) would steal the cores from whichever ran next; see "
    "bench/README.md.")
_SAME_PROCESS_METHOD = (
    "`--same-process`: every library in one process, one repetition each per round, the starting "
    "library rotating, so machine noise hits all of them alike (and each library's spinning pool "
    "threads hit the one that runs next; see bench/README.md).")


def write_docs(results: list[Result], path: Path, command: str,
               memory: list[MemoryResult] = (), gemm: list[tuple[str, ...]] | None = None,
               passes: list[tuple[str, ...]] | None = None, gemm_env: str = "",
               pool: list[tuple[str, ...]] | None = None) -> list[Path]:
    """Write the Markdown report and its PNG plots next to it; returns the files written.

    ``gemm``: rows of ``bench.gemm.table``; ``passes``: rows of ``bench.compile_passes.table``;
    ``pool``: rows of ``bench.threads.table``."""
    plots = _plot(results, path.parent) + _case_plots(results, path.parent)
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{command}`. Same-run medians. "
        + (_SAME_PROCESS_METHOD if "--same-process" in command else _ISOLATED_METHOD)
        + " Ratios below 1 mean the engine is faster.",
        "",
        f"Environment: {environment()}.",
        "",
        markdown_table(results),
        "",
    ]
    side = side_by_side(results)
    if side:
        lines += ["## Eager and compiled", "",
                  "The same runs, eager engine beside `engine.compile` (issue 11): `compiled` rows time "
                  "the step compiled once, replayed every repetition; `JAX` is `jax.jit` of "
                  "`jax.grad`/`value_and_grad` on CPU. The `mlp_gemms` row above times the MLP "
                  "step's matrix products alone, numpy's and torch's, in the same rounds: issue 11 "
                  "asks the compiled MLP step to be within 5 % of that ratio.", "",
                  _markdown(SIDE_HEADER, side), ""]
    if memory:
        lines += ["Peak memory of one step (resident-set high-water mark above the resident set "
                  "before it, each library in a fresh process; see `bench/memory.py`):", "",
                  _markdown(MEMORY_HEADER, memory_rows(memory)), ""]
    if gemm:
        from .gemm import HEADER as GEMM_HEADER
        lines += ["## GEMM", "",
                  "`python -m bench.gemm`: every `np.matmul` of one eager step of each model, "
                  "replayed per library on the same operands (interleaved rounds, medians): numpy's "
                  "OpenBLAS (what the engine calls), `scipy.linalg.blas` sgemm/dgemm, BLIS (the `blis` "
                  "package) and torch, in one process (its numpy/torch column is a rough guide: "
                  "the `mlp_gemms` and `block_gemms` rows of the first table time numpy's and torch's "
                  "products each in a process of their own). The engine adopts another GEMM only if "
                  f"it wins here and installs from PyPI on a fresh machine. {gemm_env}", "",
                  _markdown(GEMM_HEADER, gemm), "", _gemm_verdict(gemm), ""]
    if pool:
        from .threads import HEADER as POOL_HEADER
        lines += ["## Threads", "",
                  "`python -m bench.threads`: the eager step with `engine.set_num_threads(1)` and with "
                  "the default pool (N threads: convolution chunks split across it, OpenBLAS held to "
                  "one thread inside), interleaved in one process; both must give the same bits. "
                  "(The ratios to torch are in the first table, each library in a process of its "
                  "own.)", "",
                  _markdown(POOL_HEADER, pool), ""]
    if passes:
        from .compile_passes import HEADER as PASSES_HEADER
        lines += ["## What each pass of `engine.compile` buys", "",
                  "`python -m bench.compile_passes`: CPU time (every thread's) and wall time per call "
                  "(medians of interleaved rounds) and the peak of numpy allocations during one call "
                  "(`tracemalloc`). Each row adds "
                  "one pass to the row above; every program's results are bitwise eager's.", "",
                  _markdown(PASSES_HEADER, passes), "", PASSES_TEXT, ""]
    lines += [
        "Cases:",
        "",
    ]
    lines += [f"- `{r.case.name}`: {r.case.title}" for r in results]
    lines.append("")
    for p in plots:
        lines += [f"![{p.stem}]({p.name})", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return [path, *plots]


def _case_plots(results: list[Result], outdir: Path) -> list[Path]:
    """The plots that cases draw themselves (the service transports sweep)."""
    outdir.mkdir(parents=True, exist_ok=True)
    made = [r.case.plot(r, outdir) for r in results if r.case.plot is not None and not r.skipped]
    return [p for p in made if p is not None]


def _plot(results: list[Result], outdir: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in results if not r.skipped and r.case.runner is None]  # the engine cases
    if not done:
        return []
    outdir.mkdir(parents=True, exist_ok=True)
    names = [r.case.name for r in done]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(done), 3.6))
    width = 0.38
    xs = range(len(done))
    for k, (other, label) in enumerate((("torch", "engine / torch"), ("hips", "engine / HIPS"))):
        vals = [r.ratio("engine", other) or 0.0 for r in done]
        ax.bar([x + (k - 0.5) * width for x in xs], vals, width, label=label)
    ax.axhline(1.0, color="black", lw=0.8)
    for x, r in zip(xs, done):  # the strictest targets of each case, over their bars
        ts = [t.torch for t in r.case.targets if t.torch is not None]
        if ts:
            ax.plot([x - width, x], [min(ts)] * 2, color="red", lw=1.5)
        hs = [1 / t.hips_speedup for t in r.case.targets if t.hips_speedup]
        if hs:
            ax.plot([x, x + width], [min(hs)] * 2, color="red", lw=1.5, ls="--")
    ax.set_xticks(list(xs), names)
    ax.set_ylabel("time ratio (lower is faster)")
    ax.set_title("Engine time relative to torch and HIPS autograd (red: strictest target)")
    ax.legend()
    fig.tight_layout()
    path = outdir / "bench_engine_ratios.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
