"""bench/stages.py must keep running: two rounds, every stage of both requests printed.

Its figures belong in the README (Performance); this checks only that the instrumented server
answered (the script checks the gradient against 2x itself) and that each stage was seen.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_stages_bench() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.stages", "--rounds", "2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "client wall medians, 2 interleaved rounds" in out, out
    binary, echo = out.split("\necho (")
    for stage in ("body's last byte parsed", "handler has the body >", "non-finite check >",
                  "compiled run >", "engine thread >", "response written >"):
        assert stage in binary, (stage, out)
    assert "response written >" in echo and "non-finite" not in echo, out
