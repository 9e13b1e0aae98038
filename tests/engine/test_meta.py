"""Meta execution (engine._meta): shapes and dtypes without values, for every op and primitive.

Registry-driven like the gradient checks: every primitive needs a shape rule, and every op
sample in ``tests/engine/opsamples`` must infer exactly the shapes, dtypes and requires_grad
flags that a real run produces, forward and backward (first order and with create_graph).
"""

from __future__ import annotations

import threading
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine import Tensor, _autograd, _meta

from . import gradcheck as gc
from .opsamples import SAMPLES

UNIQUE = {info.name: info for info in engine.OPS.values()}
CASES = [(n, i) for n in sorted(UNIQUE) for i in range(len(SAMPLES.get(n, ())))]
DIFF_CASES = [c for c in CASES if UNIQUE[c[0]].is_differentiable and gc.build(SAMPLES[c[0]][c[1]], engine)[2]]

# Ops whose result size depends on values the sample computes: meta mode says Unknown (the
# service then leaves them to the real run). Any other op must infer its shapes.
DYNAMIC = {"repeat_interleave": "counts given as a tensor: the size is their sum",
           "bincount": "the size is the largest value counted"}
# Backward code that branches on values (meta tensors hold placeholders): the gradient's shape
# and dtype are right, whether it requires grad under create_graph may not be.
VALUE_BRANCHING_VJP = {
    "linalg.slogdet": "the VJP takes a singular-matrix branch when det == 0",
    "logdet": "built on slogdet",
}
# Ops whose meta results are real arrays (made by numpy in op code, outside primitives),
# reviewed: each such result is no larger than the op's inputs, so meta mode never allocates
# more than the request's own tensors. A new op that computes its result outside primitives
# must be added here after review, or get an override in engine._meta.OP_RULES.
RAW_BOUNDED = {
    "all", "any", "argmax", "argmin", "argsort", "signbit", "isposinf", "isneginf", "isreal",
    "cummax", "cummin", "isfinite", "isinf", "isnan", "kthvalue",
    "logical_not", "max", "min", "median", "sort", "topk", "nn.functional.adaptive_max_pool1d",
    "nn.functional.adaptive_max_pool2d", "nn.functional.adaptive_max_pool3d",
    "nn.functional.max_pool1d", "nn.functional.max_pool2d", "nn.functional.max_pool3d",
    "new_tensor",  # its data argument, converted: no larger than what the caller sent
}


def _id(case: tuple) -> str:
    return f"{case[0]}-{case[1]}"


def build_meta(sample, m: _meta.MetaSession) -> tuple[tuple, dict, list]:
    """gradcheck.build with float arrays as meta tensors; integer and bool arrays keep their
    values (as the service's static check keeps them: indices, masks)."""
    return gc.build(sample, engine, lambda x: Tensor._make(m.array(x.shape, np.float64)))


def signature(out) -> object:
    if isinstance(out, Tensor):
        return ("tensor", tuple(out.shape), out.dtype, out.requires_grad)
    if isinstance(out, (tuple, list)):
        return (type(out).__name__, tuple(signature(o) for o in out))
    return ("value", out if isinstance(out, (int, float, bool, str, type(None))) else type(out).__name__)


def upper_bound(meta, real) -> bool:
    """Every dim of the meta signature is at least the real one (an upper-bound shape)."""
    if meta[0] == "tensor" and real[0] == "tensor":
        return meta[2:] == real[2:] and len(meta[1]) == len(real[1]) and \
            all(a >= b for a, b in zip(meta[1], real[1]))
    if meta[0] == real[0] and meta[0] in ("tuple", "list") or meta[0] == real[0] != "value":
        return len(meta[1]) == len(real[1]) and all(upper_bound(a, b) for a, b in zip(meta[1], real[1]))
    return meta == real


def run_meta(name: str, sample, m: _meta.MetaSession):
    args, kwargs, leaves = build_meta(sample, m)
    fn = UNIQUE[name].fn
    out = gc.call(lambda *a, **k: _meta.run_op(name, fn, *a, **k), sample, args, kwargs)
    return out, leaves


# ---------------------------------------------------------------- registry completeness
def test_every_primitive_has_a_shape_rule() -> None:
    missing = sorted(n for n in engine.PRIMITIVES if not _meta.has_rule(n))
    assert not missing, f"primitives without a shape rule (defshape, beside their VJP): {missing}"


def test_rules_name_only_existing_primitives() -> None:
    engine.einsum("i,i->", engine.ones(2), engine.ones(2))  # its primitives are made on first use
    known = set(engine.PRIMITIVES) | {n.rstrip("0123456789") for n in engine.PRIMITIVES}
    stale = sorted((set(_meta.RULES) | _meta.ELEMENTWISE) - known)
    assert not stale, f"rules for primitives that no longer exist: {stale}"
    # a rule on the record and another in the old tables (two branches merged): which one holds?
    twice = sorted(n for n, p in engine.PRIMITIVES.items()
                   if p.shape_rule is not None and _meta._legacy_rule(n) is not None)
    assert not twice, f"primitives with a rule on their record and in _meta.RULES/ELEMENTWISE: {twice}"


def test_a_rule_registered_the_old_way_still_works(monkeypatch) -> None:
    # Code written before the rules moved onto the primitives' records (a rule by name in
    # _meta.RULES, or a name in _meta.ELEMENTWISE) keeps working: branches merge without breaking.
    prim = _autograd.Primitive("legacy_rule_probe", lambda x, y: np.add(x, y))
    try:
        assert not _meta.has_rule(prim.name)
        with _meta.meta_mode() as m:
            x = Tensor._make(m.array((3, 1), np.float32))
            with pytest.raises(_meta.Unknown):
                prim(x, x)
        monkeypatch.setattr(_meta, "RULES", dict(_meta.RULES))
        _meta.rule(prim.name, work=lambda prim, arrays, params, outs: 10**6)(
            lambda prim, arrays, params: _meta.meta_array((7,), np.float64))
        assert _meta.has_rule(prim.name)
        with _meta.meta_mode() as m:
            x = Tensor._make(m.array((3, 1), np.float32))
            y = prim(x, x)
            assert tuple(y.shape) == (7,) and y.dtype == engine.float64
            assert m.work == _meta.WORK_PER_CALL + 10**6
        monkeypatch.setattr(_meta, "RULES", {})
        monkeypatch.setattr(_meta, "ELEMENTWISE", _meta.ELEMENTWISE | {prim.name})
        with _meta.meta_mode() as m:
            y = prim(Tensor._make(m.array((3, 1), np.float32)), Tensor._make(m.array((4,), np.float32)))
            assert tuple(y.shape) == (3, 4) and y.dtype == engine.float32
    finally:
        del _autograd.PRIMITIVES[prim.name]


def test_op_rules_name_existing_ops() -> None:
    assert not sorted(set(_meta.OP_RULES) - set(engine.OPS))


# ---------------------------------------------------------------- meta == real, every op sample
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_forward_shapes_and_dtypes_match_a_real_run(case: tuple) -> None:
    name, i = case
    s = SAMPLES[name][i]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args, kwargs, _ = gc.build(s, engine)
        real = gc.call(UNIQUE[name].fn, s, args, kwargs)
        try:
            with _meta.meta_mode() as m:
                out, _ = run_meta(name, s, m)
                inexact = m.inexact
        except _meta.Unknown:
            assert name in DYNAMIC, f"{name}: meta mode could not infer it"
            return
    want, got = signature(real), signature(out)
    if inexact:
        assert upper_bound(got, want), (got, want)
    else:
        assert got == want


@pytest.mark.parametrize("create_graph", [False, True], ids=["first", "create_graph"])
@pytest.mark.parametrize("case", DIFF_CASES, ids=_id)
def test_gradient_shapes_and_dtypes_match_a_real_run(case: tuple, create_graph: bool) -> None:
    name, i = case
    s = SAMPLES[name][i]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args, kwargs, leaves = gc.build(s, engine)
        outs = [o for o in gc.float_outputs(gc.call(UNIQUE[name].fn, s, args, kwargs)) if o.requires_grad]
        if not outs:
            pytest.skip("no output requires grad")  # not expected: DIFF_CASES have leaves
        vs = [engine.tensor(v) for v in gc.cotangents(outs)]
        real = engine.autograd.grad(outs, leaves, vs, allow_unused=True, materialize_grads=True,
                                    create_graph=create_graph)
        try:
            with _meta.meta_mode() as m:
                out, mleaves = run_meta(name, s, m)
                mouts = [o for o in gc.float_outputs(out) if o.requires_grad]
                mvs = [Tensor._make(m.array(o.shape, o._data.dtype)) for o in mouts]
                got = engine.autograd.grad(mouts, mleaves, mvs, allow_unused=True, materialize_grads=True,
                                           create_graph=create_graph)
        except _meta.Unknown:
            assert name in DYNAMIC
            return
    assert [(tuple(g.shape), g.dtype) for g in got] == [(tuple(g.shape), g.dtype) for g in real]
    if name not in VALUE_BRANCHING_VJP:
        assert [g.requires_grad for g in got] == [g.requires_grad for g in real]


def test_results_made_outside_primitives_are_reviewed() -> None:
    raw = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, i in CASES:
            if name in _meta.OP_RULES:
                continue
            try:
                with _meta.meta_mode() as m:
                    out, _ = run_meta(name, SAMPLES[name][i], m)
            except _meta.Unknown:
                continue
            outs = [out] if isinstance(out, Tensor) else \
                [o for o in out if isinstance(o, Tensor)] if isinstance(out, (tuple, list)) else []
            if any(not _meta.is_meta(o._data) for o in outs):
                raw.add(name)
    assert raw <= RAW_BOUNDED, f"review these ops (results computed outside primitives): {raw - RAW_BOUNDED}"


# ---------------------------------------------------------------- nothing is allocated
def test_expand_to_a_trillion_and_a_100k_matmul_allocate_nothing() -> None:
    tracemalloc.start()
    try:
        with _meta.meta_mode() as m:
            x = Tensor._make(m.array((100_000, 1), np.float32)).requires_grad_()
            big = x.expand(100_000, 10_000_000)          # 10^12 elements
            p = x @ x.reshape(1, 100_000)                # 100k x 100k
            loss = (big.sum(1) + p.sum(1)).sum()
            g, = engine.autograd_grad(loss, x)
            peak = tracemalloc.get_traced_memory()[1]
            simulated = m.peak_bytes
    finally:
        tracemalloc.stop()
    assert big.shape == (100_000, 10_000_000) and p.shape == (100_000, 100_000)
    assert g.shape == (100_000, 1) and g.dtype == engine.float32
    assert peak < 50 * 2**20, f"meta mode allocated {peak} bytes"
    assert simulated >= 100_000 * 100_000 * 4  # the matmul's result would be 40 GB in a real run


def test_element_limit_applies_to_every_intermediate() -> None:
    with _meta.meta_mode(max_elements=1000) as m:
        x = Tensor._make(m.array((10, 10), np.float64))
        (x * x).sum()  # 100 elements: fine
        with pytest.raises(_meta.TooLarge) as e:
            x.reshape(100, 1) @ x.reshape(1, 100)  # 10^4 elements inside one op
        assert e.value.shape == (100, 100) and e.value.limit == 1000
        with pytest.raises(_meta.TooLarge):  # the public op's override: nothing allocated
            _meta.run_op("ones", engine.ones, 10**5, 10**5)
        with pytest.raises(_meta.TooLarge):
            x.expand(10**4, 10, 10)


def test_constructors_allocate_nothing_and_keep_dtype_and_flags() -> None:
    tracemalloc.start()
    try:
        with _meta.meta_mode():
            a = _meta.run_op("ones", engine.ones, 10**5, 10**5, dtype=engine.float64, requires_grad=True)
            b = _meta.run_op("arange", engine.arange, 0, 10**10, 2)
            c = _meta.run_op("eye", engine.eye, 10**5)
            d = _meta.run_op("full", engine.full, (10**4, 10**4), 7)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (a.shape, a.dtype, a.requires_grad) == ((10**5, 10**5), engine.float64, True)
    assert (b.shape, b.dtype) == ((5 * 10**9,), engine.int64)
    assert (c.shape, c.dtype) == ((10**5, 10**5), engine.float32)
    assert (d.shape, d.dtype) == ((10**4, 10**4), engine.int64)
    assert peak < 10 * 2**20
    with pytest.raises(RuntimeError, match="negative dimension"), _meta.meta_mode():
        _meta.run_op("zeros", engine.zeros, 3, -1)


def test_errors_are_the_real_ones() -> None:
    a, b = np.ones((2, 3)), np.ones((4,))
    for f in (lambda x, y: x + y, lambda x, y: x @ y.reshape(4, 1), lambda x, y: engine.cat([x, y])):
        with pytest.raises(Exception) as real:
            f(engine.tensor(a), engine.tensor(b))
        with pytest.raises(Exception) as meta, _meta.meta_mode() as m:
            f(Tensor._make(m.array(a.shape, a.dtype)), Tensor._make(m.array(b.shape, b.dtype)))
        assert (type(meta.value), str(meta.value)) == (type(real.value), str(real.value))


def test_boolean_mask_gives_an_upper_bound_and_says_so() -> None:
    with _meta.meta_mode() as m:
        x = Tensor._make(m.array((3, 4), np.float64))
        mask = _meta.run_op("gt", engine.gt, x, 0)  # a computed mask: its values are unknown
        y = x[mask]
        assert y.shape == (12,) and m.inexact
        m.inexact = False
        known = x[engine.tensor(np.array([True, False, True]))]  # a mask with values: exact
        assert known.shape == (2, 4) and not m.inexact


# ---------------------------------------------------------------- memory simulation
def test_memory_counts_live_results_and_not_views() -> None:
    with _meta.meta_mode() as m:
        x = Tensor._make(m.array((1000,), np.float64))
        base = m.live_bytes
        v = x.reshape(10, 100).t()[2:]          # views: nothing new
        assert m.live_bytes == base and v.shape == (98, 10)
        y = v * 2                               # a new array of 980 float64 ...
        assert m.live_bytes == base + 8 * 980
        del y                                   # ... freed with its last reference
        assert m.live_bytes == base and m.peak_bytes == base + 8 * 980


def test_what_backward_saves_stays_counted_until_backward_frees_it() -> None:
    n = 8 * 1000
    with _meta.meta_mode() as m:
        x = Tensor._make(m.array((1000,), np.float64)).requires_grad_()
        base = m.live_bytes
        t = x * 2
        y = t.sin()  # sin saves its input t
        del t
        assert m.live_bytes == base + 2 * n  # t lives on in y's graph
        loss = y.sum()
        del y  # sum saves nothing: y's array is gone
        assert m.live_bytes == base + n + 8
        g, = engine.autograd_grad(loss, x)  # frees the saved t; g is a new array
        assert m.live_bytes == base + 8 + n and g.shape == (1000,)
        del g
        assert m.live_bytes == base + 8
    assert m.peak_bytes >= base + 2 * n


# ---------------------------------------------------------------- index shapes vs numpy
_idx = st.one_of(
    st.integers(-3, 2), st.none(), st.just(Ellipsis),
    st.builds(slice, st.none() | st.integers(-4, 4), st.none() | st.integers(-4, 4),
              st.none() | st.sampled_from([1, 2, -1, 3])),
    st.lists(st.integers(-3, 2), min_size=0, max_size=4).map(lambda v: np.array(v, np.int64)),
    st.lists(st.lists(st.integers(-3, 2), min_size=2, max_size=2), min_size=1, max_size=3)
    .map(lambda v: np.array(v, np.int64)),
)


@settings(max_examples=400, deadline=None)
@given(shape=st.lists(st.integers(0, 3), min_size=0, max_size=4), key=st.lists(_idx, min_size=1, max_size=4),
       mask_dims=st.integers(0, 2), seed=st.integers(0, 2**16))
def test_index_shape_matches_numpy(shape, key, mask_dims, seed) -> None:
    x = np.zeros(shape)
    if mask_dims and len(shape) >= mask_dims:
        key = [np.random.default_rng(seed).random(tuple(shape[:mask_dims])) > 0.5, *key[1:]]
    key = tuple(key)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = x[key].shape
    except IndexError as e:
        with pytest.raises(IndexError) as got:
            _meta.index_shape(tuple(shape), key)
        assert str(got.value) == str(e)
        return
    assert _meta.index_shape(tuple(shape), key) == (want, False)


# ---------------------------------------------------------------- the engine hooks
def test_meta_mode_is_per_thread_and_restored() -> None:
    seen = {}

    def other() -> None:
        seen["other"] = _meta.is_meta((engine.ones(2) * 2)._data)

    with _meta.meta_mode():
        t = threading.Thread(target=other)
        t.start()
        t.join()
        seen["here"] = _meta.is_meta((engine.tensor([1.0]) * 2)._data)
    assert seen == {"other": False, "here": True}
    assert _autograd._hooks.meta is None
    np.testing.assert_array_equal((engine.ones(2) * 2).numpy(), [2.0, 2.0])


def test_backward_hook_sees_every_node_and_can_stop_the_pass() -> None:
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    loss = ((x * 3).exp() + x).sum()
    names = []
    _autograd._hooks.backward = lambda node, grads: names.append(node.name())
    try:
        engine.autograd_grad(loss, x, retain_graph=True)
    finally:
        _autograd._hooks.backward = None
    assert sorted(names) == ["AddBackward0", "ExpBackward0", "MulBackward0", "SumBackward0"]

    class Stop(BaseException):
        pass

    def stop(node, grads):
        raise Stop

    _autograd._hooks.backward = stop
    try:
        with pytest.raises(Stop):
            engine.autograd_grad(loss, x, retain_graph=True)
    finally:
        _autograd._hooks.backward = None
    assert engine.is_grad_enabled()  # the pass restored grad mode on its way out
