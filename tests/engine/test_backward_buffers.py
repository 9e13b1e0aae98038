"""Gradient buffers in backward: many contributions, shared tensors, in-place accumulation.

Backward adds a node's third and later gradient contributions into a sum it made itself, in
place (without ``create_graph``). These scenarios make that go wrong if the sum were shared:
tensors that a VJP hands to several places (``add`` passes its gradient on twice), user
grad_outputs, returned gradients reused by a later pass, and graphs run twice. Expected values
come from torch in the same run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import engine

from .parity import parity

RNG = np.random.default_rng(7)
A = RNG.standard_normal((3, 4)).astype(np.float32)
B = RNG.standard_normal((3, 4)).astype(np.float32)


def _fan(m: Any, x: Any) -> Any:
    """``x`` reaches ``y`` once, ``y`` reaches the loss five times (twice through one ``add``)."""
    y = x * 2.0
    s = y + y                      # add: the same gradient object goes to both inputs
    return (s * y + y.exp() + (y * 3.0).sin() + s).sum()


@pytest.mark.parametrize("create_graph", [False, True])
def test_many_contributions_to_one_node(create_graph: bool) -> None:
    def f(m: Any) -> Any:
        x = m.tensor(A, requires_grad=True)
        (g,) = m.autograd.grad(_fan(m, x), x, create_graph=create_graph)
        return (g, *m.autograd.grad(g.sum(), x)) if create_graph else g
    parity(f, rtol=1e-5, atol=1e-5)


def test_many_contributions_to_one_leaf_and_its_hook_sees_the_sum() -> None:
    def f(m: Any) -> Any:
        x = m.tensor(A, requires_grad=True)
        seen = []
        x.register_hook(lambda g: seen.append(g.detach().clone()))
        loss = (x * 1.0).sum() + (x * 2.0).sum() + (x + x).sum() + (x * x).sum()
        loss.backward()
        return x.grad, seen[0]
    parity(f)


def test_user_grad_outputs_are_never_written() -> None:
    # x is an output three times: its buffer receives the three grad_outputs themselves
    x = engine.tensor(A, requires_grad=True)
    gos = [engine.tensor(B), engine.tensor(B * 2), engine.tensor(B * 3)]
    before = [g.numpy().copy() for g in gos]
    (g,) = engine.autograd_grad([x * 1.0, x * 1.0, x * 1.0], x, gos)
    np.testing.assert_allclose(g.numpy(), B * 6, rtol=1e-6)
    for go, b in zip(gos, before):
        np.testing.assert_array_equal(go.numpy(), b)


def test_returned_gradients_survive_later_passes() -> None:
    x = engine.tensor(A, requires_grad=True)
    loss = _fan(engine, x)
    (g1,) = engine.autograd_grad(loss, x, retain_graph=True)
    kept = g1.numpy().copy()
    (g2,) = engine.autograd_grad(loss, x, retain_graph=True)
    (g3,) = engine.autograd_grad(loss, x)
    np.testing.assert_array_equal(g1.numpy(), kept)
    np.testing.assert_array_equal(g2.numpy(), kept)
    np.testing.assert_array_equal(g3.numpy(), kept)


def test_backward_twice_accumulates_into_grad_like_torch() -> None:
    def f(m: Any) -> Any:
        x = m.tensor(A, requires_grad=True)
        loss = _fan(m, x)
        loss.backward(retain_graph=True)
        first = x.grad.clone()
        loss.backward()
        return first, x.grad
    parity(f, rtol=1e-5, atol=1e-5)


def test_saved_tensors_are_not_written_by_accumulation() -> None:
    # y is saved by the products below and also receives several gradients; the saved values
    # must be the forward's when the graph runs again
    def f(m: Any) -> Any:
        x = m.tensor(A, requires_grad=True)
        y = x + 0.0
        loss = (y * y).sum() + (y + y).sum() + (y * 3.0).sum()
        g1 = m.autograd.grad(loss, x, retain_graph=True)
        g2 = m.autograd.grad(loss, x)
        return g1, g2
    parity(f)


def test_a_sum_passed_on_is_no_longer_added_into() -> None:
    # s's buffer is a sum backward made (two contributions); add passes that very tensor on to
    # both z and y; z then receives another gradient, which must not land in y's copy.
    def f(m: Any) -> Any:
        x = m.tensor(A, requires_grad=True)
        z = x * 3.0
        y = x * 2.0
        w = z * 4.0
        s = z + y
        loss = (s * 1.0).sum() + (s * 2.0).sum() + (w * 1.0).sum()
        return m.autograd.grad(loss, x)
    parity(f)
