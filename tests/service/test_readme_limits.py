"""The README's "Limits and security" table lists every limit with its real default and setting."""

from __future__ import annotations

import re
from pathlib import Path

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
# Every setting that bounds a request, or decides who may send one.
LIMITS = {name for name in Settings.model_fields if name.startswith("max_")} | {
    "request_timeout_s", "retry_after_s", "api_keys"}


def _section() -> str:
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"^## Limits and security\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    assert m, "README.md has no '## Limits and security' section"
    return m.group(1)


def _rows() -> dict[str, str]:
    rows = {}
    for line in _section().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3:
            for name in re.findall(r"GRADSERVE_([A-Z0-9_]+)", cells[2]):
                rows[name.lower()] = cells[1]
    return rows


def test_every_limit_is_in_the_table() -> None:
    missing = LIMITS - set(_rows())
    assert not missing, f"README 'Limits and security' table lacks: {sorted(missing)}"


def test_the_table_gives_the_real_defaults(monkeypatch) -> None:
    for k in [k for k in __import__("os").environ if k.startswith("GRADSERVE_")]:
        monkeypatch.delenv(k)
    s = Settings()
    for name, default in _rows().items():
        value = getattr(s, name)
        if name in ("max_concurrency", "pool_size"):
            assert "number of CPUs" in default
        elif name == "api_keys":
            assert value == [] and default.startswith("none")
        else:
            number = float(re.match(r"[0-9.]+", default).group(0))
            assert number == value, f"{name}: README says {default!r}, Settings says {value!r}"
