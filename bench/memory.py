"""Peak memory of one library's step, each measured in a fresh process.

``python -m bench.memory CASE LIB`` prints the peak in bytes: the step runs once (lazy
initialisation is not the step's memory), freed memory goes back to the OS (``malloc_trim``),
the kernel's resident-set high-water mark is reset (``/proc/self/clear_refs``), and the step runs
again; the peak is the high-water mark minus the resident set before it. This counts every
allocator alike (numpy's, torch's, HIPS autograd's), which tracemalloc would not. Linux only.
"""

from __future__ import annotations

import ctypes
import gc
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

TARGET = 1.2  # issue 5: peak memory of the MLP and CNN steps at most 1.2x torch's
ROOT = Path(__file__).resolve().parent.parent


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def measure(case_name: str, lib: str) -> int:
    from . import engine_cases, model_cases  # noqa: F401  (registers the cases)
    from ._harness import CASES
    case = next(c for c in CASES if c.name == case_name)
    run = case.build(False)[lib]
    run()
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set (VmHWM) to the current one
    before = _status("VmRSS")
    result = run()
    peak = _status("VmHWM") - before
    del result
    return peak


@dataclass
class MemoryResult:
    case: str
    peaks: dict[str, int | None]  # bytes per library; None where it failed or does not apply

    def ratio(self, lib: str, other: str) -> float | None:
        a, b = self.peaks.get(lib), self.peaks.get(other)
        return a / b if a is not None and b else None


def run_memory(case_name: str, libs: tuple[str, ...] = ("engine", "torch", "hips")) -> MemoryResult:
    """Measure each library in its own subprocess (same environment, so the same thread settings)."""
    peaks: dict[str, int | None] = {}
    for lib in libs:
        proc = subprocess.run([sys.executable, "-m", "bench.memory", case_name, lib], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        peaks[lib] = int(proc.stdout.split()[-1]) if proc.returncode == 0 and proc.stdout.strip() else None
    return MemoryResult(case_name, peaks)


HEADER = ("memory case", "engine MiB", "torch MiB", "HIPS MiB", "engine/torch", "engine/HIPS", "",
          "targets")


def rows(results: list[MemoryResult]) -> list[tuple[str, ...]]:
    def mib(v: int | None) -> str:
        return "n/a" if v is None else f"{v / 2**20:.1f}"

    def ratio(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    out = []
    for r in results:
        vs = r.ratio("engine", "torch")
        verdict = "n/a" if vs is None else ("ok" if vs <= TARGET else "MISS")
        out.append((r.case, mib(r.peaks.get("engine")), mib(r.peaks.get("torch")),
                    mib(r.peaks.get("hips")), ratio(vs), ratio(r.ratio("engine", "hips")), "",
                    f"#5 {verdict} (peak <= {TARGET:g}x torch)"))
    return out


if __name__ == "__main__":
    case_arg, lib_arg = sys.argv[1], sys.argv[2]
    if lib_arg not in ("engine", "torch", "hips"):
        sys.exit(f"unknown library {lib_arg!r}")
    print(measure(case_arg, lib_arg))
