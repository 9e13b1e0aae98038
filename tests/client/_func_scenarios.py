"""``c.func`` scenarios checked against ``torch.func``, shared by the embedded tests
(tests/client/test_func.py) and the remote ones (tests/e2e/test_func_remote.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.func as TF

from ._scenarios import Harness

rng = np.random.default_rng(5)
W = rng.normal(size=(4, 3))
XS = rng.normal(size=(16, 3))
X = XS[0]
V4, V3 = rng.normal(size=4), rng.normal(size=3)


def _t(a: Any, rg: bool = False) -> torch.Tensor:
    return torch.tensor(np.asarray(a), requires_grad=rg)


def close(ours: Any, theirs: torch.Tensor) -> None:
    theirs = theirs.detach().numpy()
    ours = np.asarray(ours)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    assert ours.dtype == theirs.dtype, (ours.dtype, theirs.dtype)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


def t_loss(w: Any, x: Any) -> Any:
    return (torch.tanh(w @ x) ** 2).sum()


def losses(h: Harness) -> tuple[Any, Any]:
    c = h.c
    return (lambda w, x: (c.tanh(w @ x) ** 2).sum()), (lambda w, x: c.tanh(w @ x))


def per_sample_gradients(h: Harness) -> None:
    """The headline: vmap of grad, one request, equal to torch.func's."""
    c = h.c
    loss, _ = losses(h)
    w, xs = c.tensor(W), c.tensor(XS)
    per_sample = c.func.vmap(c.func.grad(loss), in_dims=(None, 0))(w, xs)
    before = h.requests
    (got,) = h.values(per_sample)
    assert h.requests == before + 1
    close(got, TF.vmap(TF.grad(t_loss), in_dims=(None, 0))(_t(W), _t(XS)))
    # chunks and out_dims as torch.func
    both = c.func.grad(loss, argnums=(0, 1))
    ps = c.func.vmap(both, in_dims=(None, 0), out_dims=(1, 0), chunk_size=5)(w, xs)
    gw, gx = h.values(*ps)
    tw, tx = TF.vmap(TF.grad(t_loss, argnums=(0, 1)), in_dims=(None, 0), out_dims=(1, 0), chunk_size=5)(
        _t(W), _t(XS))
    close(gw, tw)
    close(gx, tx)


def jacobians_and_hessian(h: Harness) -> None:
    c = h.c
    loss, y = losses(h)
    w, x = c.tensor(W), c.tensor(X)
    jr = c.func.jacrev(y, argnums=(0, 1))(w, x)
    jf = c.func.jacfwd(y, argnums=1)(w, x)
    hs = c.func.hessian(loss, argnums=1)(w, x)
    assert isinstance(jr, tuple) and len(jr) == 2
    jrw, jrx, jfx, hx = h.values(*jr, jf, hs)
    ty = lambda w, x: torch.tanh(w @ x)  # noqa: E731
    tw, tx = TF.jacrev(ty, argnums=(0, 1))(_t(W), _t(X))
    close(jrw, tw)
    close(jrx, tx)
    close(jfx, TF.jacfwd(ty, argnums=1)(_t(W), _t(X)))
    close(hx, TF.hessian(t_loss, argnums=1)(_t(W), _t(X)))


def vjp_and_jvp(h: Harness) -> None:
    c = h.c
    _, y = losses(h)
    w, x = c.tensor(W), c.tensor(X)
    out, vjp_fn = c.func.vjp(y, w, x)
    gw, gx = vjp_fn(c.tensor(V4))
    out2, jv = c.func.jvp(lambda x: y(w, x), (x,), (c.tensor(V3),))
    o, a, b, o2, j = h.values(out, gw, gx, out2, jv)
    ty = lambda w, x: torch.tanh(w @ x)  # noqa: E731
    t_out, t_fn = TF.vjp(ty, _t(W), _t(X))
    tw, tx = t_fn(_t(V4))
    close(o, t_out)
    close(a, tw)
    close(b, tx)
    t_out2, t_jv = TF.jvp(lambda x: ty(_t(W), x), (_t(X),), (_t(V3),))
    close(o2, t_out2)
    close(j, t_jv)


def nesting(h: Harness) -> None:
    """Transforms of transforms: jacfwd(jacrev), grad(grad), vmap(vmap), vmap(jacrev)."""
    c = h.c
    loss, y = losses(h)
    w, x, xs = c.tensor(W), c.tensor(X), c.tensor(XS)
    hess = c.func.jacfwd(c.func.jacrev(lambda x: loss(w, x)))(x)
    gg = c.func.grad(c.func.grad(lambda s: s ** 3 * c.sin(s)))(c.tensor(np.array(0.7)))
    batches = c.tensor(XS.reshape(4, 4, 3))
    vv = c.func.vmap(c.func.vmap(lambda x: y(w, x)))(batches)
    vj = c.func.vmap(c.func.jacrev(y, argnums=1), in_dims=(None, 0))(w, xs)
    got = h.values(hess, gg, vv, vj)
    ty = lambda w, x: torch.tanh(w @ x)  # noqa: E731
    close(got[0], TF.jacfwd(TF.jacrev(lambda x: t_loss(_t(W), x)))(_t(X)))
    close(got[1], TF.grad(TF.grad(lambda s: s ** 3 * torch.sin(s)))(_t(0.7)))
    close(got[2], TF.vmap(TF.vmap(lambda x: ty(_t(W), x)))(_t(XS.reshape(4, 4, 3))))
    close(got[3], TF.vmap(TF.jacrev(ty, argnums=1), in_dims=(None, 0))(_t(W), _t(XS)))


def aux_and_values(h: Harness) -> None:
    c = h.c
    _, y = losses(h)
    w, x = c.tensor(W), c.tensor(X)

    def f(w: Any, x: Any) -> Any:
        out = y(w, x)
        return (out ** 2).sum(), (out, w @ x)

    g, (value, (a1, a2)) = c.func.grad_and_value(f, has_aux=True)(w, x)
    g2, aux = c.func.grad(lambda w, x: ((y(w, x) ** 2).sum(), y(w, x)), argnums=1, has_aux=True)(w, x)
    got = h.values(g, value, a1, a2, g2, aux)

    def tf(w: Any, x: Any) -> Any:
        out = torch.tanh(w @ x)
        return (out ** 2).sum(), (out, w @ x)

    tg, (tv, (ta1, ta2)) = TF.grad_and_value(tf, has_aux=True)(_t(W), _t(X))
    for ours, theirs in zip(got, (tg, tv, ta1, ta2)):
        close(ours, theirs)
    tg2, taux = TF.grad(lambda w, x: (tf(w, x)[0], tf(w, x)[1][0]), argnums=1, has_aux=True)(_t(W), _t(X))
    close(got[4], tg2)
    close(got[5], taux)
    # vjp, jvp and jacrev with aux
    fa = lambda x: (y(w, x), w @ x)  # noqa: E731
    out, vjp_fn, aux = c.func.vjp(fa, x, has_aux=True)
    (ct,) = vjp_fn(c.tensor(np.ones(4)))
    _, jv, aux2 = c.func.jvp(fa, (x,), (c.tensor(np.ones(3)),), has_aux=True)
    jac, aux3 = c.func.jacrev(fa, has_aux=True, chunk_size=2)(x)
    got = h.values(out, ct, aux, jv, aux2, jac, aux3)
    tfa = lambda x: (torch.tanh(_t(W) @ x), _t(W) @ x)  # noqa: E731
    t_out, t_fn, t_aux = TF.vjp(tfa, _t(X), has_aux=True)
    _, t_jv, _ = TF.jvp(tfa, (_t(X),), (_t(np.ones(3)),), has_aux=True)
    t_jac, _ = TF.jacrev(tfa, has_aux=True, chunk_size=2)(_t(X))
    for ours, theirs in zip(got, (t_out, t_fn(_t(np.ones(4)))[0], t_aux, t_jv, t_aux, t_jac, t_aux)):
        close(ours, theirs)


def differentiated_again(h: Harness) -> None:
    """Results are client tensors in the graph: autograd_grad goes through them."""
    c = h.c
    loss, _ = losses(h)
    w = c.tensor(W, requires_grad=True)
    total = c.func.vmap(loss, in_dims=(None, 0))(w, c.tensor(XS)).sum()
    (g,) = h.grad(total, [w])
    tw = _t(W, rg=True)
    (tg,) = torch.autograd.grad(TF.vmap(t_loss, in_dims=(None, 0))(tw, _t(XS)).sum(), tw)
    close(g, tg)


SCENARIOS = [per_sample_gradients, jacobians_and_hessian, vjp_and_jvp, nesting, aux_and_values,
             differentiated_again]
