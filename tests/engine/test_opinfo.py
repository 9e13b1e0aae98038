"""Every engine op over torch's own OpInfo sample inputs, float32 and float64, forward and first
and second order, compared with torch (the harness is tests/engine/opinfo.py).

One test per OpInfo; it runs all of the op's samples and fails listing the sample indices that
differ from torch, unless the difference is in :data:`KNOWN` below with its reason. A KNOWN entry
that no longer differs fails too, so the table stays exact. Skips come only from torch's own
OpInfo (its skip/xfail marks for CPU and the dtype); the session summary prints them and the
coverage per check (tests/engine/conftest.py).
"""

from __future__ import annotations

import importlib.util
import os
import warnings

import pytest

if importlib.util.find_spec("expecttest") is None:  # torch's op_db imports it
    if os.environ.get("GRADSERVE_REQUIRE_ALL") == "1":
        raise RuntimeError("test_opinfo needs expecttest: pip install expecttest")
    pytest.skip("needs expecttest (pip install expecttest) for torch's op_db", allow_module_level=True)

from . import opinfo as oi  # noqa: E402

# Known differences from torch: (OpInfo id, check) -> (samples, reason). ``samples`` lists
# "dtype:index,index" groups (indices as run_op numbers them: sample inputs first, then the
# reference inputs), or "*" for every sample. README "Where we differ from torch" lists these.
KNOWN: dict[tuple[str, str], tuple[str, str]] = {
}

OPS = {oi.op_id(op): op for op in oi.matched_ops()}


def _parse(spec: str) -> set[tuple[str, int]] | None:
    if spec == "*":
        return None
    out = set()
    for group in spec.split():
        dt, idx = group.split(":")
        out.update((dt, int(i)) for i in idx.split(","))
    return out


def _fmt(cases: set[tuple[str, int]]) -> str:
    by: dict[str, list[int]] = {}
    for dt, i in sorted(cases):
        by.setdefault(dt, []).append(i)
    return " ".join(f"{dt}:{','.join(map(str, ix))}" for dt, ix in by.items())


@pytest.mark.parametrize("name", sorted(OPS))
def test_opinfo(name: str, record_property: object) -> None:
    op = OPS[name]
    fails: dict[str, dict[tuple[str, int], str]] = {c: {} for c in oi.CHECKS}
    counts = {c: [0, 0] for c in oi.CHECKS}
    skips: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for dt, i, _ref, r in oi.run_op(op):
            for c in oi.CHECKS:
                v = getattr(r, c)
                if v is None:
                    continue
                if v.startswith("skip: "):
                    skips.add(f"{c} ({dt}): {v[6:]}")
                    continue
                if v.startswith("n/a: "):
                    skips.add(f"not counted ({dt}): {v[5:]}, a dtype the engine does not have")
                    continue
                counts[c][1] += 1
                if v == "ok":
                    counts[c][0] += 1
                else:
                    fails[c][(dt, i)] = v
    record_property("opinfo", {"op": name, "counts": counts, "skips": sorted(skips), "n_ops": len(OPS)})
    problems = []
    for c in oi.CHECKS:
        known = KNOWN.get((name, c))
        allowed = set() if known is None else _parse(known[0])
        if allowed is None:  # every sample: at least one must still differ
            if not fails[c] and counts[c][1]:
                problems.append(f"{c}: KNOWN says every sample differs, but all match: drop the entry")
            continue
        new = {k: m for k, m in fails[c].items() if k not in allowed}
        fixed = allowed - set(fails[c])
        if new:
            detail = "; ".join(f"{dt}#{i}: {m}" for (dt, i), m in sorted(new.items())[:6])
            problems.append(f"{c}: samples {_fmt(set(new))} differ from torch ({detail})")
        if fixed:
            problems.append(f"{c}: samples {_fmt(fixed)} now match torch: drop them from KNOWN")
    assert not problems, f"{name}:\n  " + "\n  ".join(problems)


def test_known_entries_name_real_opinfos() -> None:
    for (name, check), (spec, reason) in KNOWN.items():
        assert name in OPS, f"KNOWN names {name!r}, which is not a tested OpInfo"
        assert check in oi.CHECKS and reason, (name, check)
        _parse(spec)
