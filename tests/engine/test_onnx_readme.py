"""The README's "ONNX models" section lists the operators the code supports (its examples run
in tests/e2e/test_readme_blocks.py, with every other README block)."""

from __future__ import annotations

import re
from pathlib import Path

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
