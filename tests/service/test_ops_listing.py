"""``GET /v1/ops`` and the registry-driven gradient check cover the same ops: they cannot drift.

Every op the service lists must be an engine op, must be parametrized by
``tests/engine/test_gradcheck.py`` (finite differences at first order and, where torch has one,
second order, for differentiable ops) and must have a torch oracle or a stated reason why torch has
none. The check's parameter lists are imported, not recomputed, so an op the check silently
dropped would fail here.
"""

from __future__ import annotations

from typing import Any

import engine
from tests.engine import gradcheck as gc
from tests.engine import test_gradcheck as check
from tests.engine.opsamples import NO_TORCH, SAMPLES

MIN_OPS = 200  # issue 4: "GET /v1/ops lists at least 200 ops"


def _listing(client: Any) -> list[dict[str, Any]]:
    r = client.get("/v1/ops")
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == len(body["ops"])
    return body["ops"]


def _canonical(ops: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["canonical"]: o for o in ops}


def test_lists_at_least_200_distinct_engine_ops(client) -> None:
    ops = _listing(client)
    names = [o["name"] for o in ops]
    assert len(names) == len(set(names)), "an op is listed twice"
    for o in ops:
        assert o["name"] in engine.OPS, f"{o['name']} is listed but not an engine op"
        assert engine.OPS[o["name"]].name == o["canonical"], o["name"]
    canonical = _canonical(ops)
    assert set(canonical) <= set(names), "an alias points to an op that is not listed"
    assert len(canonical) >= MIN_OPS, f"only {len(canonical)} distinct ops are listed"
    assert set(names) == set(engine.OPS), "the listing hides engine ops"


def test_every_listed_op_is_in_the_registry_driven_check(client) -> None:
    canonical = _canonical(_listing(client))
    assert set(canonical) == set(check.UNIQUE), "the gradient check iterates other ops than listed"
    unsampled = sorted(set(canonical) - {n for n, _ in check.CASES})
    assert not unsampled, f"listed ops without gradcheck samples: {unsampled}"
    listed_diff = {n for n, o in canonical.items() if o["differentiable"]}
    assert listed_diff == set(check.DIFF), "the listing and the engine disagree on differentiability"
    assert len(listed_diff) >= MIN_OPS // 2  # most of the catalogue is differentiable


def test_every_differentiable_op_is_checked_at_first_and_second_order(client) -> None:
    canonical = _canonical(_listing(client))
    first = {n for n, i in check.DIFF_CASES if SAMPLES[n][i].fd}
    second = {n for n, i in check.DIFF_CASES if SAMPLES[n][i].fd and SAMPLES[n][i].second_order}
    for name, o in sorted(canonical.items()):
        if not o["differentiable"]:
            continue
        assert name in first, f"{name}: no sample is checked against finite differences"
        if name not in second:  # allowed only where torch has no second derivative either
            assert any(s.note for s in SAMPLES[name] if not s.second_order), \
                f"{name}: no second-order check and no stated reason"


def test_every_listed_op_has_torch_parity_or_a_reason(client) -> None:
    canonical = _canonical(_listing(client))
    parity = {n for n, _ in check.CASES if n not in NO_TORCH}  # test_torch_parity's parameters
    for name in sorted(canonical):
        if name in NO_TORCH:
            assert NO_TORCH[name].strip(), f"{name}: an empty NO_TORCH reason"
            continue
        assert name in parity, name
        lacking = [i for i, s in enumerate(SAMPLES[name]) if gc.torch_callable(name, s) is None]
        assert not lacking, f"{name}: samples {lacking} have no torch oracle and no NO_TORCH reason"
