"""Registry-driven gradient checks: every op in engine.OPS, first and second order against
central finite differences in float64, plus forward/gradient/double-backward parity with torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import engine

from . import gradcheck as gc
from .opsamples import NO_TORCH, NO_VALUE_PARITY, SAMPLES

UNIQUE = {info.name: info for info in engine.OPS.values()}
DIFF = sorted(n for n, i in UNIQUE.items() if i.is_differentiable)
CASES = [(n, i) for n in sorted(UNIQUE) for i in range(len(SAMPLES.get(n, ())))]
DIFF_CASES = [(n, i) for n, i in CASES
              if UNIQUE[n].is_differentiable and gc.build(SAMPLES[n][i], engine)[2]]


def _id(case: tuple) -> str:
    return f"{case[0]}-{case[1]}"


def test_every_op_has_samples() -> None:
    missing = sorted(n for n in UNIQUE if n not in SAMPLES)
    assert not missing, f"ops without gradcheck samples: {missing}"


def test_no_stale_samples() -> None:
    stale = sorted(n for n in SAMPLES if n not in UNIQUE)
    assert not stale, f"samples for ops that are not registered: {stale}"


def test_torch_exemptions_are_real() -> None:
    # An op may skip torch parity only if torch really lacks it.
    for name in NO_TORCH:
        for s in SAMPLES.get(name, ()):
            assert s.torch_fn is None or gc.torch_callable(name, s) is None, name


@pytest.mark.parametrize("case", DIFF_CASES, ids=_id)
def test_first_order_vs_finite_differences(case: tuple) -> None:
    name, i = case
    s = SAMPLES[name][i]
    fn = UNIQUE[name].fn
    leaves, outs, grads, _ = gc.first_order(fn, engine, s)
    assert leaves, f"{name}: sample differentiates nothing"
    assert outs, f"{name}: no differentiable output"
    if not s.fd:
        return
    arrays = gc.leaf_arrays(s)
    num = gc.numerical_grad(lambda a: gc.scalar_L(fn, s, a), arrays)
    for k, (g, n) in enumerate(zip(grads, num)):
        assert g.dtype == leaves[k].dtype
        assert tuple(g.shape) == tuple(leaves[k].shape)
        np.testing.assert_allclose(gc.to_np(g), n, rtol=s.rtol * 100, atol=s.atol * 100,
                                   err_msg=f"{name}: d/d(leaf {k})")


@pytest.mark.parametrize("case", [c for c in DIFF_CASES if SAMPLES[c[0]][c[1]].second_order], ids=_id)
def test_second_order_vs_finite_differences(case: tuple) -> None:
    name, i = case
    s = SAMPLES[name][i]
    fn = UNIQUE[name].fn
    leaves, G = gc.second_scalar(fn, engine, s)
    if G is not None and G.requires_grad:
        ana = [gc.to_np(g) for g in engine.autograd.grad(G, leaves, allow_unused=True,
                                                          materialize_grads=True)]
    else:  # constant gradient: the second derivative must vanish
        ana = [np.zeros(tuple(t.shape)) for t in leaves]
    if not s.fd:
        return
    num = gc.numerical_grad(lambda a: gc.G_value(fn, s, a), gc.leaf_arrays(s))
    for k, (a, n) in enumerate(zip(ana, num)):
        np.testing.assert_allclose(a, n, rtol=s.rtol * 1000, atol=s.atol * 1000,
                                   err_msg=f"{name}: second order, leaf {k}")


def test_every_op_has_a_torch_oracle_or_a_reason() -> None:
    lacking = sorted({n for n, i in CASES if gc.torch_callable(n, SAMPLES[n][i]) is None} - set(NO_TORCH))
    assert not lacking, f"no torch equivalent found and no NO_TORCH reason: {lacking}"


@pytest.mark.parametrize("case", [c for c in CASES if c[0] not in NO_TORCH], ids=_id)
def test_torch_parity(case: tuple) -> None:
    name, i = case
    s = SAMPLES[name][i]
    fn = UNIQUE[name].fn
    tfn = gc.torch_callable(name, s)
    e_leaves, e_outs, e_grads, e_out = gc.first_order(fn, engine, s)
    t_leaves, t_outs, t_grads, t_out = gc.first_order(tfn, torch, s)
    # forward values and dtypes
    e_all, t_all = _all_tensors(e_out), _all_tensors(t_out)
    assert len(e_all) == len(t_all), f"{name}: {len(e_all)} outputs vs torch's {len(t_all)}"
    for k, (a, b) in enumerate(zip(e_all, t_all)):
        assert tuple(a.shape) == tuple(b.shape), f"{name}: output {k} shape"
        assert a.dtype.name == str(b.dtype).removeprefix("torch."), f"{name}: output {k} dtype"
        assert a.requires_grad == b.requires_grad, f"{name}: output {k} requires_grad"
        if name not in NO_VALUE_PARITY:
            gc.assert_close(gc.to_np(a), gc.to_np(b), s, f"{name}: output {k} value")
    # gradients
    assert len(e_grads) == len(t_grads)
    for k, (a, b) in enumerate(zip(e_grads, t_grads)):
        gc.assert_close(gc.to_np(a), gc.to_np(b), s, f"{name}: gradient {k}")
    # double backward
    if e_grads and s.second_order:
        el, eG = gc.second_scalar(fn, engine, s)
        tl, tG = gc.second_scalar(tfn, torch, s)
        e2 = _grads_or_zeros(eG, el, engine)
        t2 = _grads_or_zeros(tG, tl, torch)
        for k, (a, b) in enumerate(zip(e2, t2)):
            gc.assert_close(a, b, s, f"{name}: second order, leaf {k}")


def _all_tensors(out: object) -> list:
    if isinstance(out, (engine.Tensor, torch.Tensor)):
        return [out]
    if isinstance(out, (tuple, list)):
        return [o for o in out if isinstance(o, (engine.Tensor, torch.Tensor))]
    return []


def _grads_or_zeros(G: object, leaves: list, lib: object) -> list:
    if G is None or not G.requires_grad:
        return [np.zeros(tuple(t.shape)) for t in leaves]
    return [gc.to_np(g) for g in lib.autograd.grad(G, leaves, allow_unused=True, materialize_grads=True)]
