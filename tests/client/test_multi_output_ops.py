"""Ops with a fixed number of results (linalg.eigh, svd, qr, slogdet) unpack into that many
client tensors, and their gradients are the engine's."""

from __future__ import annotations

import numpy as np
import pytest

import engine
from client import Client

X = np.array([[2.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 4.0]])
CASES = {
    "linalg.eigh": lambda ns, a: (lambda r: r[0].sum() + (r[1] * r[1][..., :1, :]).sum())(ns.eigh(a)),
    "linalg.svd": lambda ns, a: (lambda r: r[1].sum() + (r[0] * r[2].mT).sum())(ns.svd(a)),
    "linalg.qr": lambda ns, a: (lambda r: r[0].sum() + r[1].sum())(ns.qr(a)),
    "linalg.slogdet": lambda ns, a: (lambda r: r[0] + r[1])(ns.slogdet(a)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixed_multi_output_ops_unpack_and_differentiate(name: str) -> None:
    c = Client()
    a = c.tensor(X, requires_grad=True)
    n = engine.OPS[name].n_outputs
    assert len(getattr(c.linalg, name.split(".")[1])(a)) == n
    (got,) = c.autograd_grad(CASES[name](c.linalg, a), [a])
    e = engine.tensor(X, requires_grad=True)
    (want,) = engine.autograd_grad(CASES[name](engine.linalg, e), [e])
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-12)
