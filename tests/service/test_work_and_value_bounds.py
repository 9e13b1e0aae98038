"""Cost rules (``max_work``), value-dependent shapes checked before allocating, bounded parsing.

Every case here is refused by an estimate made from shapes and values, before the costly part
runs: nothing depends on the machine's speed.
"""

from __future__ import annotations

import gzip

import numpy as np
import orjson
import pytest

import engine
from engine import _meta
from service.core import JSON_INFLATION

from .helpers import wire_tensor

MB = 1 << 20


def _problem(r, status: int, limit: str | None = None) -> dict:
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    if limit is not None:
        assert body["limit"] == limit, body
    return body


def _req(inputs: dict[str, np.ndarray], source: str, ret: str = "y", **kw) -> dict:
    return {"graph": {"inputs": [wire_tensor(k, v, encoding="b64") for k, v in inputs.items()],
                      "source": source}, "return": [ret], **kw}


# ---------------------------------------------------------------- cost rules
def test_every_rule_declares_its_cost() -> None:
    for name, prim in engine.PRIMITIVES.items():  # None: element passes, no scratch
        assert prim.work_rule is None or callable(prim.work_rule), name
        assert prim.scratch_rule is None or callable(prim.scratch_rule), name
    for name, fn in _meta.RULES.items():  # rules registered the old way
        assert callable(getattr(fn, "work", None)), name
        assert hasattr(fn, "scratch"), name


def test_matmul_and_svd_costs_follow_their_flops() -> None:
    with _meta.meta_mode() as m:
        a = engine.from_numpy(m.array((200, 300), "float64"))
        b = engine.from_numpy(m.array((300, 400), "float64"))
        before = m.work
        a @ b
        mm = m.work - before
    assert mm >= 2 * 200 * 300 * 400 * _meta.BLAS_FLOP
    with _meta.meta_mode() as m:
        engine.linalg.svdvals(engine.from_numpy(m.array((500, 500), "float64")))
        assert m.work >= 22 * 500**3 * _meta.LAPACK_FLOP
        assert m.peak_bytes >= 7 * 500 * 500 * 8  # the workspace counts as memory


def test_work_is_summed_through_backward() -> None:
    def work(grad: bool) -> float:
        with _meta.meta_mode() as m, engine.enable_grad():
            x = engine.from_numpy(m.array((300, 300), "float64")).requires_grad_()
            y = (x @ x).sum()
            if grad:
                engine.autograd_grad([y], [x])
            return m.work
    assert work(True) > 2 * work(False) - 1


def test_max_work_refuses_with_estimate_and_limit(make_client) -> None:
    c = make_client(max_work=1e9)
    x = np.random.default_rng(0).standard_normal((1000, 1000)) / 30
    r = c.post("/v1/grad", json=_req({"x": x}, f"y = sum(matrix_power(x, {2**62}))"))
    body = _problem(r, 413, "max_work")
    assert "max_work" in body["detail"] and "1e+09" in body["detail"], body


def test_diff_with_a_huge_order_is_refused_before_its_loop(client) -> None:
    x = np.random.default_rng(0).standard_normal(300_000)
    r = client.post("/v1/grad", json=_req({"x": x}, "y = sum(diff(x, n=150000))"))
    _problem(r, 413, "max_work")


def test_within_max_work_runs(make_client) -> None:
    c = make_client(max_work=1e9)
    x = np.random.default_rng(0).standard_normal((50, 50))
    r = c.post("/v1/grad", json=_req({"x": x}, "y = sum(x @ x)"))
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["values"]["y"]["data"][0], (x @ x).sum(), rtol=1e-9)


def test_svd_workspace_counts_against_max_memory(make_client) -> None:
    c = make_client(max_memory_bytes=100 * MB, max_work=1e13)
    x = np.zeros((2400, 2400))  # 46 MB: the input fits, LAPACK's workspace does not
    body = {"graph": {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2400, 2400],
                                  "parameters": {"binary_data_size": x.nbytes}}],
                      "source": "y = sum(linalg.svdvals(x))"}, "return": ["y"]}
    header = orjson.dumps(body)
    r = c.post("/v1/grad", content=header + x.tobytes(),
               headers={"content-type": "application/octet-stream",
                        "inference-header-content-length": str(len(header))})
    _problem(r, 413, "max_memory_bytes")


def test_mvlgamma_is_sized_before_its_arange(make_client) -> None:
    c = make_client(max_memory_bytes=100 * MB)
    r = c.post("/v1/grad", json=_req({"x": np.full(3, 5e7)}, "y = mvlgamma(x, 100000000)"))
    _problem(r, 413, "max_tensor_elements")


# ---------------------------------------------------------------- value-dependent shapes
@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_repeat_interleave_with_computed_counts_is_sized_first(make_client, isolation: str) -> None:
    c = make_client(max_memory_bytes=100 * MB, isolation=isolation)
    x = np.ones(4)
    r = c.post("/v1/grad", json=_nodes_req(x, [
        {"op": "mul", "inputs": ["x", 12_500_000], "outputs": ["f"]},
        {"op": "to", "inputs": ["f"], "attributes": {"dtype": "INT64"}, "outputs": ["c"]},
        {"op": "repeat_interleave", "inputs": ["x", {"ref": "c"}], "outputs": ["y"]}]))
    body = _problem(r, 413, "max_tensor_elements")
    assert "repeat_interleave" in body["detail"], body


def _nodes_req(x: np.ndarray, nodes: list, ret: str = "y", **kw) -> dict:
    return {"graph": {"inputs": [wire_tensor("x", x)], "nodes": nodes}, "return": [ret], **kw}


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_one_hot_of_computed_values_then_big_nodes_is_rechecked(make_client, isolation: str) -> None:
    # one_hot's size comes from computed values; the nine 16M-element nodes after it were not
    # estimated before: now each is checked on its real shape before it runs
    c = make_client(max_memory_bytes=100 * MB, isolation=isolation)
    x = np.arange(4.0)
    nodes = [{"op": "mul", "inputs": ["x", 0], "outputs": ["z"]},
             {"op": "add", "inputs": ["z", 4_000_000 - 1], "outputs": ["f"]},
             {"op": "to", "inputs": ["f"], "attributes": {"dtype": "INT64"}, "outputs": ["i"]},
             {"op": "nn.functional.one_hot", "inputs": ["i"], "outputs": ["h"]},
             {"op": "to", "inputs": ["h"], "attributes": {"dtype": "FP32"}, "outputs": ["h0"]}]
    for k in range(9):
        nodes.append({"op": "add", "inputs": [f"h{k}", 1.0], "outputs": [f"h{k + 1}"]})
    nodes.append({"op": "sum", "inputs": ["h9"], "outputs": ["y"]})
    r = c.post("/v1/grad", json=_nodes_req(x, nodes))
    body = _problem(r, 413)
    assert body["limit"] in ("max_memory_bytes", "max_tensor_elements"), body


def test_boolean_mask_of_computed_values_is_exact_at_run_time(client) -> None:
    x = np.arange(10.0)
    nodes = [{"op": "gt", "inputs": ["x", 4.5], "outputs": ["m"]},
             {"op": "getitem", "inputs": ["x", {"ref": "m"}], "outputs": ["s"]},
             {"op": "mul", "inputs": ["s", 2.0], "outputs": ["y"]}]
    r = client.post("/v1/grad", json=_nodes_req(x, nodes))
    assert r.status_code == 200, r.text
    assert r.json()["values"]["y"]["data"] == [10.0, 12.0, 14.0, 16.0, 18.0]


def test_value_dependent_plans_never_run_inline(make_client) -> None:
    from service.core import Job
    from service.plan_cache import PlanCache

    c = make_client()
    cache: PlanCache = c.app.state.plan_cache
    x = np.ones(3)
    nodes = [{"op": "mul", "inputs": ["x", 1], "outputs": ["f"]},
             {"op": "to", "inputs": ["f"], "attributes": {"dtype": "INT64"}, "outputs": ["c"]},
             {"op": "repeat_interleave", "inputs": ["x", {"ref": "c"}], "outputs": ["y"]}]
    req = _nodes_req(x, nodes)
    for _ in range(6):
        assert c.post("/v1/grad", json=req).status_code == 200
    job = Job(orjson.dumps(req), "application/json", None, False, c.app.state.settings, None, cache)
    assert not job.runs_fast()
    # a static plan of the same size does become inline
    static = _nodes_req(x, [{"op": "mul", "inputs": ["x", 2], "outputs": ["y"]}])
    for _ in range(6):
        assert c.post("/v1/grad", json=static).status_code == 200
    job = Job(orjson.dumps(static), "application/json", None, False, c.app.state.settings, None, cache)
    assert job.runs_fast()


def test_mode_over_long_rows_costs_its_python_sort_and_never_runs_inline(make_client) -> None:
    # mode's rows past 16 elements replay std::sort in Python (~0.5-2 us an element): a small
    # body of such rows must not be taken for a cheap plan and run on the event loop
    from service.core import Job

    with _meta.meta_mode() as m:
        engine.mode(engine.from_numpy(m.array((10, 1000), "float32")), 1)
        assert m.work >= 10 * 1000 * 500
    c = make_client()
    cache = c.app.state.plan_cache

    def runs_fast(x: np.ndarray) -> bool:
        node = {"op": "mode", "inputs": ["x"], "attributes": {"dim": 1}, "outputs": ["y", "i"]}
        req = _nodes_req(x, [node])
        for _ in range(6):
            r = c.post("/v1/grad", json=req)
            assert r.status_code == 200, r.text[:300]
        return Job(orjson.dumps(req), "application/json", None, False, c.app.state.settings, None,
                   cache).runs_fast()

    rng = np.random.default_rng(0)
    assert not runs_fast(rng.integers(0, 9, (4, 2000)).astype(np.float64))  # a small body of long rows
    assert runs_fast(rng.integers(0, 9, (8, 4)).astype(np.float64))


# ---------------------------------------------------------------- parsing
def test_json_text_is_bounded_by_memory(make_client) -> None:
    c = make_client(max_memory_bytes=100 * MB)
    limit = 100 * MB // JSON_INFLATION
    body = b'{"graph": {"inputs": [], "source": "y = 1"}, "pad": [' + b"[]," * (limit // 3) + b"[]]}"
    body = _problem(c.post("/v1/grad", content=body, headers={"content-type": "application/json"}), 413,
                    "max_json_body_bytes")
    assert str(limit) in body["detail"]


def test_big_b64_tensors_do_not_count_as_json(make_client) -> None:
    c = make_client(max_memory_bytes=100 * MB)
    x = np.random.default_rng(0).standard_normal(1_000_000)  # 8 MB: 10.7 MB of base64 > 2.6 MB
    r = c.post("/v1/grad", json=_req({"x": x}, "y = sum(x)"))
    assert r.status_code == 200, r.text[:300]


def test_gzip_bodies_count_as_they_inflate(make_client) -> None:
    c = make_client(max_memory_bytes=100 * MB)
    raw = b'{"inputs": [' + b"[]," * (4 * MB) + b"[]]}"
    r = c.post("/v2/models/gradserve/infer", content=gzip.compress(raw),
               headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert r.status_code == 413, r.text[:300]


@pytest.mark.parametrize("limit", ["max_json_body_bytes"])
def test_binary_header_json_is_bounded(make_client, limit: str) -> None:
    c = make_client(max_json_body_bytes=4096)
    header = orjson.dumps({"graph": {"inputs": [], "source": "y = 1"}, "pad": [[]] * 4000})
    r = c.post("/v1/grad", content=header, headers={"content-type": "application/octet-stream",
                                                    "inference-header-content-length": str(len(header))})
    _problem(r, 413, limit)
