"""engine.nn.utils against torch.nn.utils: gradient clipping by norm and by value, the total
norm, and flat parameter vectors."""

from __future__ import annotations

import doctest
from typing import Any

import numpy as np
import pytest
import torch

import engine
import engine.nn.utils as EU

from .parity import assert_same_error


def _params(m: Any, grads: list[np.ndarray | None]) -> list:
    out = []
    for i, g in enumerate(grads):
        shape = (3,) if g is None else g.shape
        p = m.nn.Parameter(m.ones(*shape, dtype=m.float64 if g is not None and g.dtype == np.float64
                                  else m.float32) * (i + 1))
        if g is not None:
            p.grad = m.tensor(g)
        out.append(p)
    return out


def _grads(seed: int, scale: float) -> list[np.ndarray | None]:
    r = np.random.default_rng(seed)
    return [(r.standard_normal((4, 3)) * scale).astype(np.float32), None,
            (r.standard_normal(5) * scale).astype(np.float32), (r.standard_normal((2, 2)) * scale)]


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3, float("inf"), 0.5])
@pytest.mark.parametrize("max_norm", [1e-3, 1.0, 1e6])
def test_clip_grad_norm_as_torch(norm_type: float, max_norm: float) -> None:
    grads = _grads(0, 3.0)
    e, t = _params(engine, grads), _params(torch, grads)
    te = EU.clip_grad_norm_(e, max_norm, norm_type)
    tt = torch.nn.utils.clip_grad_norm_(t, max_norm, norm_type)
    assert te.dtype == engine.float64 and tt.dtype == torch.float64  # the norms' promoted dtype
    np.testing.assert_allclose(te.numpy(), tt.numpy(), rtol=1e-6)
    for pe, pt in zip(e, t):
        if pt.grad is None:
            assert pe.grad is None
        else:
            assert pe.grad.dtype == engine.float32 or pe.grad.dtype == engine.float64
            np.testing.assert_allclose(pe.grad.numpy(), pt.grad.numpy(), rtol=1e-6, atol=1e-12)


def test_one_tensor_and_no_gradients() -> None:
    for m, u in ((engine, EU), (torch, torch.nn.utils)):
        p = m.nn.Parameter(m.ones(3))
        assert float(u.clip_grad_norm_(p, 1.0)) == 0.0  # nothing to clip
        assert p.grad is None
        p.grad = m.tensor([3.0, 4.0, 0.0])
        assert float(u.clip_grad_norm_(p, 1.0)) == pytest.approx(5.0)
        assert p.grad.tolist() == pytest.approx([0.6, 0.8, 0.0], rel=1e-6)
        total = u.get_total_norm([])
        assert total.dtype == m.float32 and float(total) == 0.0


def test_non_finite_norms_as_torch() -> None:
    def scenario(m: Any, u: Any, error: bool) -> list:
        p = m.nn.Parameter(m.ones(2))
        p.grad = m.tensor([float("inf"), 1.0])
        total = u.clip_grad_norm_([p], 1.0, error_if_nonfinite=error)
        return [float(total)] + p.grad.tolist()
    np.testing.assert_equal(scenario(engine, EU, False), scenario(torch, torch.nn.utils, False))
    assert_same_error(lambda m: scenario(m, EU if m is engine else torch.nn.utils, True))


def test_clip_grads_with_norm_and_get_total_norm_as_torch() -> None:
    grads = _grads(1, 2.0)
    e, t = _params(engine, grads), _params(torch, grads)
    ne = EU.get_total_norm([p.grad for p in e if p.grad is not None], 2.0)
    nt = torch.nn.utils.get_total_norm([p.grad for p in t if p.grad is not None], 2.0)
    np.testing.assert_allclose(ne.numpy(), nt.numpy(), rtol=1e-12)
    EU.clip_grads_with_norm_(e, 0.5, ne)
    torch.nn.utils.clip_grads_with_norm_(t, 0.5, nt)
    for pe, pt in zip(e, t):
        if pt.grad is not None:
            np.testing.assert_allclose(pe.grad.numpy(), pt.grad.numpy(), rtol=1e-6)


def test_clip_grad_value_as_torch() -> None:
    grads = _grads(2, 2.0)
    e, t = _params(engine, grads), _params(torch, grads)
    assert EU.clip_grad_value_(e, 0.7) is None and torch.nn.utils.clip_grad_value_(t, 0.7) is None
    for pe, pt in zip(e, t):
        if pt.grad is not None:
            np.testing.assert_array_equal(pe.grad.numpy(), pt.grad.numpy())


def test_parameters_to_vector_records_and_vector_to_parameters_shares() -> None:
    def scenario(m: Any, u: Any) -> list:
        a, b = m.nn.Parameter(m.arange(2.0)), m.nn.Parameter(m.arange(6.0).reshape(2, 3))
        vec = u.parameters_to_vector([a, b])
        (vec * m.arange(8.0)).sum().backward()
        out = [vec.tolist(), a.grad.tolist(), b.grad.tolist()]
        new = m.arange(10.0, 18.0)
        u.vector_to_parameters(new, [a, b])
        new[0] = -1.0  # the parameters share the vector's values
        out += [a.tolist(), b.tolist(), a.requires_grad, b.is_leaf]
        return out
    assert scenario(engine, EU) == scenario(torch, torch.nn.utils)
    assert_same_error(lambda m: (EU if m is engine else torch.nn.utils).vector_to_parameters(
        [1.0], [m.nn.Parameter(m.ones(1))]))


def test_docstring_examples() -> None:
    res = doctest.testmod(EU, extraglobs={"engine": engine}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0 and res.attempted > 0
