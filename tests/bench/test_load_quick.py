"""bench/load.py must keep running: its quick mode drives a real 2-worker server end to end.

The figures of the full run (>= 20,000 requests) belong in the closing note; this checks that
the quick run sees every kind of request answered with its expected status, none lost, every
valid answer byte-identical to the in-process one, and the server processes' RSS measured.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_load_run(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    proc = subprocess.run([sys.executable, "-m", "bench.load", "--quick", "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "load: PASS" in proc.stdout
    res = json.loads(out.read_text())
    assert res["served"] == 400 and res["lost"] == 0 and res["unexpected"] == 0 and res["wrong"] == 0
    assert res["workers"] == 2
    kinds = res["statuses"]
    assert {"valid-seed", "valid-hvp", "malformed-json", "too-large", "deadline"} <= set(kinds)
    assert kinds["deadline"] == {"504": kinds["deadline"]["504"]} and kinds["too-large"].keys() == {"413"}
    assert res["rss_start"] > 0 and res["rss_end"] > 0 and res["p99_ms"] >= res["p50_ms"] > 0
