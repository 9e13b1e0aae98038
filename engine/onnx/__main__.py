"""``python -m engine.onnx``: the supported operators as the README's Markdown list."""

from __future__ import annotations

from . import MAX_OPSET, MIN_OPSET, operators


def markdown() -> str:
    """The README's operator list (checked against the code by tests/e2e/test_onnx_readme.py)."""
    ops = [op for op in operators() if "." not in op]
    other = [op for op in operators() if "." in op]
    text = (f"{len(ops)} operators of the default domain, opsets {MIN_OPSET} to {MAX_OPSET}: "
            + ", ".join(f"`{op}`" for op in ops) + ".")
    if other:
        domain = other[0].rsplit(".", 1)[0]
        text += (f"\n\nFrom `{domain}` (scikit-learn's linear models, as skl2onnx writes them): "
                 + ", ".join(f"`{op.rsplit('.', 1)[1]}`" for op in other) + ".")
    return text


if __name__ == "__main__":
    print(markdown())
