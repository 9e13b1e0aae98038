"""The benchmark suite must keep running: its quick mode runs end to end and prints the table.

Timings are not asserted (they belong in the closing note). The suite checks the engine's results
against torch's before timing, so a wrong gradient makes this test fail too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import run  # noqa: F401  (imports every case module, so every case registers)
from bench._harness import CASES

ROOT = Path(__file__).resolve().parents[2]


def test_quick_mode_prints_the_table() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=1800)  # a hang guard, not a speed check
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    start = next((i for i, line in enumerate(lines)
                  if line.startswith("case ") and "engine/torch" in line), None)
    assert start is not None, f"no table header:\n{proc.stdout}"
    mem = next((i for i, line in enumerate(lines) if line.startswith("memory case")), None)
    assert mem is not None, f"no memory table:\n{proc.stdout}"
    rows = {line.split()[0]: line.split() for line in lines[start + 2:mem] if line.strip()
            and not line.startswith("#")}
    assert CASES
    for case in CASES:
        assert case.name in rows, f"no row for {case.name}:\n{proc.stdout}"
        cells = rows[case.name]
        if case.runner is not None and cells[1] != "skipped":
            # service rows: served and floor (ms, or requests/s), ..., then a verdict
            assert all(float(c.removesuffix("/s")) > 0 for c in cells[1:3]), cells
            if "#5" in cells:
                assert cells[cells.index("#5") + 1] in ("ok", "MISS"), cells
        elif cells[1] != "skipped":
            # three medians and two ratios: positive numbers, or n/a for a library without the case
            assert all(c == "n/a" or float(c) > 0 for c in cells[1:6]), cells
    # the peak-memory table (quick mode measures the MLP step): a size per library, in MiB
    row = lines[mem + 2].split()
    assert row[0] == "mlp" and all(float(c) > 0 for c in row[1:4]), row


def test_same_process_keeps_the_old_method() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--cases", "seed", "--same-process"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("seed")]
    assert [r[0] for r in rows] == ["seed", "seed+compiled"], proc.stdout
    # (n/a: a library this machine lacks; jax is in the bench extra, not the test one)
    assert all(c == "n/a" or float(c) > 0 for r in rows for c in r[1:6]), rows
    assert all(float(r[i]) > 0 for r in rows for i in (1, 2)), rows  # the engine's and torch's
