"""matmul's gradient is laid out as its operand is, as torch's mm backward does.

An operand used through ``.T``/``.mT`` (a linear layer's ``x @ W.T``, attention's ``q @ k.mT``) is
laid out column by column. Its gradient is computed as the transpose of the transposed product,
so that the gradient handed back through the transpose is C-ordered, like the leaf. Otherwise
every later sum with that gradient (a Hessian-vector product's accumulation, ``.grad``) runs
numpy's strided loop. torch (the oracle) decides the 2-D layout; values are checked against it
for every layout, 2-D and batched, first and second order.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import engine

RNG = np.random.default_rng(7)


def _array(shape: tuple, column_major: bool) -> np.ndarray:
    if not column_major:
        return RNG.standard_normal(shape)
    return np.swapaxes(RNG.standard_normal(shape[:-2] + shape[-2:][::-1]), -1, -2)


def _pair(av: np.ndarray, bv: np.ndarray) -> tuple:
    e = [engine.from_numpy(v).requires_grad_() for v in (av, bv)]
    t = [torch.from_numpy(v).requires_grad_() for v in (av, bv)]
    return e, t


@pytest.mark.parametrize("batch", [(), (2,), (3, 1)])
@pytest.mark.parametrize("a_cm, b_cm", list(itertools.product([False, True], repeat=2)))
def test_first_order_values_and_layout(batch: tuple, a_cm: bool, b_cm: bool) -> None:
    av, bv = _array(batch + (5, 3), a_cm), _array(batch[-1:] + (3, 4), b_cm)
    (ea, eb), (ta, tb) = _pair(av, bv)
    w = RNG.standard_normal(np.broadcast_shapes(batch, batch[-1:]) + (5, 4))
    eg = engine.autograd_grad((ea @ eb * engine.from_numpy(w)).sum(), (ea, eb))
    tg = torch.autograd.grad((ta @ tb * torch.from_numpy(w)).sum(), (ta, tb))
    for e, t, cm in zip(eg, tg, (a_cm, b_cm)):
        np.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-12, atol=1e-12)
        d = e.numpy()
        # the operand's layout, matrix by matrix, for every batch (torch's bmm has no such rule)
        assert (d.strides[-2] == d.itemsize) == cm
        if not batch:
            assert d.flags.c_contiguous == t.is_contiguous() == (not cm)


def test_a_weight_used_transposed_gets_a_c_ordered_gradient() -> None:
    x = engine.from_numpy(RNG.standard_normal((6, 5)))
    w = engine.from_numpy(RNG.standard_normal((4, 5))).requires_grad_()
    (g,) = engine.autograd_grad((x @ w.T).tanh().sum(), w)
    assert g.numpy().flags.c_contiguous


def test_hessian_vector_product_through_linear_layers() -> None:
    # The case that motivated the rule: the second backward's sum of W's two contributions, one of
    # them reached through W.T.
    xs = RNG.standard_normal((8, 6))
    ws = [RNG.standard_normal((5, 6)), RNG.standard_normal((3, 5))]
    vs = [RNG.standard_normal(w.shape) for w in ws]

    def hvp(lib, xs, ws, vs):
        x = lib.from_numpy(xs)
        p = [lib.from_numpy(w.copy()).requires_grad_() for w in ws]
        h = x
        for i, w in enumerate(p):
            h = h @ w.T
            if i == 0:
                h = h.tanh()
        loss = (h * h).sum()
        gs = lib.autograd.grad(loss, p, create_graph=True) if lib is torch else \
            engine.autograd_grad(loss, p, create_graph=True)
        dot = sum((g * lib.from_numpy(v)).sum() for g, v in zip(gs, vs))
        return lib.autograd.grad(dot, p) if lib is torch else engine.autograd_grad(dot, p)

    for e, t in zip(hvp(engine, xs, ws, vs), hvp(torch, xs, ws, vs)):
        np.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-10, atol=1e-12)
        assert e.numpy().flags.c_contiguous
