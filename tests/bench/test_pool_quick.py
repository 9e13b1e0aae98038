"""bench/pool.py must keep running: a few rounds of each isolation mode, in process and over HTTP.

Its figures belong in the README (Performance); this checks only that every mode answered (the
script checks each HTTP answer against d sum(x*x)/dx = 2x itself) and printed its row.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service import pool

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not pool.available(), reason="the worker pool needs Linux (fork, memfd)")
def test_quick_pool_bench() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.pool", "--rounds", "3"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {line.split()[0] for line in proc.stdout.splitlines() if line.startswith("  ")}
    assert {"thread", "pool", "fork", "process"} <= rows, proc.stdout
