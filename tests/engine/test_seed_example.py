"""The seed example, ported from R torch, against torch on the same x.

R original::

    x <- torch_rand(100); y <- 2 * x + 1
    w <- torch_tensor(0.5, requires_grad = TRUE); b <- torch_tensor(0.9, requires_grad = TRUE)
    loss <- torch_mean((y - (w * x + b))^2); loss$backward()
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import engine

from .parity import assert_same


def _x(dtype: torch.dtype) -> np.ndarray:
    g = torch.Generator().manual_seed(0)
    return torch.rand(100, generator=g, dtype=dtype).numpy()


def seed_example(m, x_np: np.ndarray, shape: tuple, use_backward: bool):
    x = m.tensor(x_np)
    y = 2 * x + 1
    w = m.tensor(np.full(shape, 0.5, x_np.dtype), requires_grad=True)
    b = m.tensor(np.full(shape, 0.9, x_np.dtype), requires_grad=True)
    loss = ((y - (w * x + b)) ** 2).mean()
    if use_backward:
        loss.backward()
        return loss, (w.grad, b.grad)
    return loss, m.autograd.grad(loss, [w, b])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(), (1,)])
@pytest.mark.parametrize("use_backward", [False, True])
def test_seed_example_matches_torch(dtype, shape, use_backward):
    x = _x(dtype)
    ours = seed_example(engine, x, shape, use_backward)
    theirs = seed_example(torch, x, shape, use_backward)
    assert_same(ours, theirs, rtol=1e-6 if dtype == torch.float64 else 1e-5)


def test_seed_example_against_the_closed_form():
    """dL/dw = mean(-2 (y - w x - b) x), dL/db = mean(-2 (y - w x - b)), in float64."""
    x = _x(torch.float64)
    r = (2 * x + 1) - (0.5 * x + 0.9)
    loss, (gw, gb) = seed_example(engine, x, (), use_backward=False)
    np.testing.assert_allclose(loss.item(), np.mean(r ** 2), rtol=1e-12)
    np.testing.assert_allclose(gw.item(), np.mean(-2 * r * x), rtol=1e-12)
    np.testing.assert_allclose(gb.item(), np.mean(-2 * r), rtol=1e-12)


def test_seed_example_gradient_descent_matches_torch():
    """A few SGD steps (the rest of the R tutorial) stay in step with torch."""
    x_np = _x(torch.float32)

    def fit(m):
        x = m.tensor(x_np)
        y = 2 * x + 1
        w, b = m.tensor(0.5), m.tensor(0.9)
        for _ in range(20):
            w, b = w.detach().requires_grad_(), b.detach().requires_grad_()
            loss = ((y - (w * x + b)) ** 2).mean()
            gw, gb = m.autograd.grad(loss, [w, b])
            w, b = w - 0.1 * gw, b - 0.1 * gb
        return w.detach(), b.detach()

    assert_same(fit(engine), fit(torch), rtol=1e-5)
