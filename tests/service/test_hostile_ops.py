"""Every op in ``GET /v1/ops`` with hostile arguments: never a 500.

For each op, hypothesis builds calls from its listed signature with arguments drawn from a pool
of hostile values: huge, negative and zero-size numbers, dims past int64, NaN tensors, empty
tensors, wrong types (strings, objects, nested lists), slices to 2**62. Each call is checked

- in meta mode alone (:func:`service.preflight.check`, the static check before a run): it either
  passes or raises a 4xx :class:`~service.errors.GradserveError`, nothing else;
- in real mode, through the app (meta check, then the real run): every answer is 200 or a 4xx
  problem+json.

The examples are derandomized (the same on every run) and bounded per op; set
``GRADSERVE_HOSTILE_EXAMPLES=N`` for a longer run.
"""

from __future__ import annotations

import os
import time
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service import core, preflight
from service.errors import GradserveError, problem_info
from service.executor import _decode, build_plan
from service.settings import Settings

_EXAMPLES = int(os.environ.get("GRADSERVE_HOSTILE_EXAMPLES", 0)) or 5
hostile = settings(max_examples=_EXAMPLES, deadline=None, derandomize=True, database=None,
                   suppress_health_check=list(HealthCheck))

LIMITS = {"max_tensor_elements": 50_000, "max_memory_bytes": 32 * 2**20, "request_timeout_s": 10.0,
          "max_work": 10**9}

INPUTS = [
    {"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [[0.5, -1, 2], [3, 0, -0.25]],
     "requires_grad": True},
    {"name": "i", "datatype": "INT64", "shape": [2, 3], "data": [[0, 1, 1], [1, 0, 2]]},
    {"name": "b", "datatype": "BOOL", "shape": [2, 3], "data": [[True, False, True], [False, False, True]]},
    {"name": "n", "datatype": "FP64", "shape": [], "data": "NaN"},
    {"name": "e", "datatype": "FP32", "shape": [0, 3], "data": []},
    {"name": "big", "datatype": "INT64", "shape": [1], "data": [2**62]},
]
REFS = [i["name"] for i in INPUTS]
I64 = 2**63 - 1

SCALARS = st.sampled_from([
    0, 1, -1, 2, 3, -7, 2**31, -2**31, 2**40, 2**62, -2**62, I64, -I64 - 1, 10**9,
    0.5, -0.0, 1e308, -1e308, 5e-324, True, False, None,
])
STRINGS = st.sampled_from(["abc", "sum", "FP32", "mean", "reflect", "", "none", "INT64"])
OBJECTS = st.sampled_from([
    {"slice": [None, 2**62, None]}, {"slice": [-2**62, None, 2**40]}, {"ellipsis": True},
    {"tuple": ["x", "x"]}, {"tuple": [0, 2**62]}, {"literal": [1, 2]}, {"ref": "i"}, {"ref": "b"},
])
LISTS = st.lists(st.one_of(SCALARS, st.sampled_from(REFS)), max_size=4)
# in positional inputs a string names a value: literal strings travel as {"literal": ...}
VALUES = st.one_of(SCALARS, SCALARS, st.sampled_from(REFS), STRINGS.map(lambda v: {"literal": v}), OBJECTS,
                   LISTS, st.lists(LISTS, max_size=2))
KW_VALUES = st.one_of(SCALARS, SCALARS, STRINGS, st.sampled_from(REFS).map(lambda v: {"ref": v}), OBJECTS,
                      st.lists(st.one_of(SCALARS, st.sampled_from([[0, 2**62], [-1]])), max_size=3))
TENSORS = st.sampled_from(["x", "x", "x", "i", "b", "e", "n", "big"])


def _ops() -> list[dict]:
    return [o for o in core.list_ops() if not o["name"].startswith("debug.")]


OPS = _ops()


@st.composite
def calls(draw: st.DrawFn, op: dict) -> dict:
    """A request calling ``op`` once with hostile arguments (then maybe differentiating it)."""
    params = [p for p in op["parameters"] if p["kind"] in ("positional_only", "positional_or_keyword",
                                                           "var_positional")]
    positional = [p for p in params if p["kind"] != "var_positional"]
    required = [p for p in positional if "default" not in p]
    most = max(len(positional), len(required) + (len(params) > len(positional)))  # *args: one more
    n = draw(st.integers(len(required), most))
    # tensor-like first arguments, so that most calls get past the operand checks to the rest
    args = [draw(TENSORS if k == 0 or draw(st.booleans()) else VALUES) for k in range(n)]
    kw_names = [p["name"] for p in op["parameters"] if p["kind"] in ("keyword_only", "positional_or_keyword")
                and "default" in p]
    kwargs = {}
    for name in draw(st.lists(st.sampled_from(kw_names), max_size=2, unique=True)) if kw_names else []:
        kwargs[name] = draw(KW_VALUES)
    nodes = [{"op": op["name"], "inputs": args, "attributes": kwargs, "outputs": ["y"]}]
    req: dict = {"graph": {"inputs": INPUTS, "nodes": nodes}, "allow_non_finite": True}
    if draw(st.booleans()):
        nodes.append({"op": "sum", "inputs": ["y"], "outputs": ["s"]})
        req.update(outputs="s", inputs="x", allow_unused=True)
    else:
        req["return"] = ["y"]
    return req


def _status(e: GradserveError) -> int:
    return problem_info(e)[0]


@pytest.fixture(scope="module")
def app():
    from fastapi.testclient import TestClient

    from service.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = TestClient(create_app(Settings(api_keys=[], **LIMITS)), raise_server_exceptions=False)
    with c:
        yield c


def test_every_listed_op_is_covered(app) -> None:
    listed = {o["name"] for o in app.get("/v1/ops").json()["ops"]}
    assert {o["name"] for o in OPS} == {n for n in listed if not n.startswith("debug.")}


@pytest.mark.parametrize("op", OPS, ids=[o["name"] for o in OPS])
def test_meta_mode_never_fails_unexpectedly(op: dict) -> None:
    s = Settings(api_keys=[], **LIMITS)

    @hostile
    @given(req=calls(op))
    def run(req: dict) -> None:
        try:
            plan = build_plan(core.parse_request(req), s)
            decoded = {t.name: _decode(t, None, ("graph", "inputs", i))
                       for i, t in enumerate(plan.request.graph.inputs)}
            preflight.check(plan, decoded, s, time.monotonic() + 10.0)
        except GradserveError as e:
            assert 400 <= _status(e) < 500, (e, req)

    run()


@pytest.mark.parametrize("op", OPS, ids=[o["name"] for o in OPS])
def test_real_mode_answers_200_or_4xx(app, op: dict) -> None:
    @hostile
    @given(req=calls(op))
    def run(req: dict) -> None:
        r = app.post("/v1/grad", json=req)
        assert r.status_code == 200 or 400 <= r.status_code < 500, (r.status_code, r.text[:400], req)
        if r.status_code != 200:
            assert r.headers["content-type"] == "application/problem+json"

    run()
