"""The README's "ONNX models" section: its operator list is the code's, and its Python examples
run against a real server and print what their comments say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine.onnx.__main__ import markdown

ROOT = Path(__file__).resolve().parents[2]


def section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## ONNX models\n")
    return text[start:text.index("\n## ", start + 1)]


def test_the_operator_list_is_generated_from_the_code() -> None:
    m = re.search(r"<!-- onnx-operators:start -->\n(.*?)\n<!-- onnx-operators:end -->", section(), re.S)
    assert m, "the README lacks the onnx-operators markers"
    assert m.group(1).strip() == markdown(), "README operator list is stale: run python -m engine.onnx"


BLOCKS = re.findall(r"```python\n(.*?)```", section(), re.S)


def expected_output(code: str) -> list[str]:
    """The comment lines right after a print (or after such a comment): the exact output."""
    out, after_print = [], False
    for line in code.splitlines():
        s = line.strip()
        if s.startswith("# ") and after_print:
            out.append(s[2:])
            continue
        after_print = "print(" in s
    return out


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_examples_run_against_a_server(code: str, server_url: str, tmp_path: Path) -> None:
    script = code.replace("http://localhost:8000", server_url)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == expected_output(code)
