"""Every code block of README.md runs as written, against a real server on a free port.

Conventions (also stated in an HTML comment at the top of the README):

- ```` ```bash ```` (or ``sh``/``shell``) blocks run through ``bash -eo pipefail`` and ```` ```python ````
  blocks through this interpreter, both from the repository root, with ``localhost:8000``,
  ``127.0.0.1:8000`` and ``localhost:8080``/``127.0.0.1:8080`` (the Docker section's host port) pointed
  at the test server. ``curl`` fails on an HTTP error status (``--fail-with-body``), so a
  problem+json answer fails the block as a non-zero exit does.
- Blocks in any other language (``text``, ``json``, ``r``, ``yaml``, ``dockerfile``, ...) are not run.
  Every block must name its language.
- A bash or Python block that installs packages, starts a server, runs Docker or a cluster tool, or
  runs the test suite is not run, and says so with an HTML comment on the line(s) just before it:
  ``<!-- not run: starts a server -->``. Such a block without the marker fails this test.
- **Expected output.** The full-line ``#`` comments that end a block, after its last command, are
  that block's expected standard output. If they read as JSON (``# `` removed, lines joined), the
  output must be JSON equal to it, numbers within a relative 1e-6 (float32 results print as
  their shortest decimal); otherwise the output's lines must equal them. A block with no trailing
  comment only has to succeed.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT

README = ROOT / "README.md"
RUN_AS = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python", "py": "python"}
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->")
ADDRESS = re.compile(r"\b(?:localhost|127\.0\.0\.1):(?:8000|8080)\b")
# What a block may only do with a visible "not run" marker.
NEEDS_MARKER = re.compile(r"\bpip install\b|\bgradserve serve\b|\bdocker\b|\bkubectl\b|\bserve run\b|"
                          r"\bpytest\b|\bapt(?:-get)? install\b|\bnpm install\b")
TIMEOUT_S = 600  # a generous bound, not a speed check


@dataclass
class Block:
    line: int           # of the opening fence, 1-based
    lang: str
    code: str
    skip: str | None    # the "not run" reason

    @property
    def id(self) -> str:
        return f"README.md:{self.line}-{self.lang or 'none'}"


def blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, with the "not run" marker just above each."""
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        fence, start = m.group(2), i
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = NOT_RUN.search(lines[k]) if k >= 0 else None
        indent = len(m.group(1))
        code = "\n".join(line[indent:] for line in lines[start + 1:j]) + "\n"
        out.append(Block(start + 1, m.group(3).lower(), code, marker.group(1) if marker else None))
        i = j + 1
    return out


def expected_output(code: str) -> list[str] | None:
    """The trailing full-line ``#`` comments after the block's last command (None: there are none)."""
    lines = code.rstrip("\n").splitlines()
    tail: list[str] = []
    while lines and lines[-1].lstrip().startswith("#"):
        tail.insert(0, lines.pop())
    if not tail or not any(line.strip() for line in lines):
        return None
    return [re.sub(r"^\s*# ?", "", line) for line in tail]


def _same(a, b, where: str = "output") -> list[str]:
    """Where JSON values ``a`` (actual) and ``b`` (expected) differ; numbers within rel 1e-6."""
    if isinstance(b, dict):
        if not isinstance(a, dict) or set(a) != set(b):
            return [f"{where}: keys {sorted(a) if isinstance(a, dict) else type(a).__name__} != {sorted(b)}"]
        return [d for k in b for d in _same(a[k], b[k], f"{where}.{k}")]
    if isinstance(b, list):
        if not isinstance(a, list) or len(a) != len(b):
            return [f"{where}: {a!r} != {b!r}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _same(x, y, f"{where}[{i}]")]
    if isinstance(b, (int, float)) and not isinstance(b, bool) and isinstance(a, (int, float)) \
            and not isinstance(a, bool):
        return [] if math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12) else [f"{where}: {a!r} != {b!r}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def compare(stdout: str, expected: list[str]) -> list[str]:
    """Differences between a block's output and its expected-output comments (empty: it matches)."""
    text = "\n".join(expected)
    try:
        want = json.loads(text)
    except json.JSONDecodeError:
        got = [line.rstrip() for line in stdout.rstrip("\n").splitlines()]
        return [] if got == [line.rstrip() for line in expected] else [f"{got!r} != {expected!r}"]
    try:
        have = json.loads(stdout)
    except json.JSONDecodeError:
        return [f"the output is not JSON: {stdout[:500]!r}"]
    return _same(have, want)


# ---------------------------------------------------------------- the convention itself
def test_the_parser_and_the_comparison():
    md = ("x\n\n<!-- not run: starts a server -->\n```bash\ngradserve serve\n```\n\n"
          "```python\nprint(1)\n# 1\n```\n```text\nnot code\n```\n")
    bs = blocks(md)
    assert [(b.line, b.lang, b.skip) for b in bs] == [(4, "bash", "starts a server"), (8, "python", None),
                                                       (12, "text", None)]
    assert expected_output(bs[1].code) == ["1"] and expected_output("# only a comment\n") is None
    assert expected_output("curl x\n# {\"a\": [1.0,\n#  2]}\n") == ['{"a": [1.0,', ' 2]}']
    assert compare('{"a": [1.0000001, 2], "b": {}}', ['{"a": [1, 2],', '"b": {}}']) == []
    assert compare('{"a": [1.01, 2]}', ['{"a": [1, 2]}']) == ["output.a[0]: 1.01 != 1"]
    assert compare('{"a": 1, "c": 2}', ['{"a": 1}'])
    assert compare("hello  \n", ["hello"]) == [] and compare("hello\n", ["bye"])


def test_every_block_names_its_language_and_every_skip_is_marked():
    problems = []
    for b in blocks(README.read_text()):
        if not b.lang:
            problems.append(f"{b.id}: name the block's language (```bash, ```python, ```text, ...)")
        elif b.lang in RUN_AS and b.skip is None and NEEDS_MARKER.search(b.code):
            problems.append(f"{b.id}: installs, serves, runs Docker or the tests: mark it with "
                            "<!-- not run: <why> --> on the line before the block")
    assert problems == []


# ---------------------------------------------------------------- running them
def _params() -> list:
    # Blocks marked "not run" are no test cases (a skip would read as a gap in CI); the test below
    # lists them with their reasons.
    return [pytest.param(b, id=b.id) for b in blocks(README.read_text())
            if b.lang in RUN_AS and not b.skip]


def test_blocks_not_run_say_why() -> None:
    """Each bash/python block left out names its reason; they are listed in the test's output."""
    left_out = [b for b in blocks(README.read_text()) if b.lang in RUN_AS and b.skip]
    for b in left_out:
        assert b.skip.strip(), f"{b.id}: an empty 'not run' reason"
        print(f"not run: {b.id}: {b.skip}")
    assert len(left_out) < len([b for b in blocks(README.read_text()) if b.lang in RUN_AS]) / 2


@pytest.mark.parametrize("block", _params())
def test_readme_block_runs_as_written(block: Block, server_url: str, tmp_path: Path):
    # never run an install, a server or the suite by accident: such a block needs its marker
    assert not NEEDS_MARKER.search(block.code), f"{block.id}: mark it <!-- not run: <why> -->"
    host = server_url.removeprefix("http://")
    code = ADDRESS.sub(host, block.code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADSERVE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python` is this one
    env["PYTHONPATH"] = str(ROOT)
    if RUN_AS[block.lang] == "bash":
        script = tmp_path / "block.sh"
        # an HTTP error answer fails the block, as a failing command does
        script.write_text('curl() { command curl --fail-with-body "$@"; }\n' + code)
        cmd = ["bash", "-eo", "pipefail", str(script)]
    else:
        script = tmp_path / "block.py"
        script.write_text(code)
        cmd = [sys.executable, str(script)]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert r.returncode == 0, \
        f"{block.id} exited with {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
    want = expected_output(block.code)
    if want is not None:
        diff = compare(r.stdout, want)
        assert diff == [], f"{block.id}: the output differs from its # comments:\n" + "\n".join(diff) + \
            f"\n--- stdout\n{r.stdout}"
