"""``python -m engine.onnx``: the supported operators as the README's Markdown list."""

from __future__ import annotations

from . import MAX_OPSET, MIN_OPSET, operators


def markdown() -> str:
    """The README's operator list (checked against the code by tests/engine/test_onnx_readme.py)."""
    ops = operators()
    return (f"{len(ops)} operators of the default domain, opsets {MIN_OPSET} to {MAX_OPSET}: "
            + ", ".join(f"`{op}`" for op in ops) + ".")


if __name__ == "__main__":
    print(markdown())
