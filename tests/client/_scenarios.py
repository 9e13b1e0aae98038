"""Client scenarios checked against torch, shared by the embedded tests and the remote (e2e) ones.

Each scenario takes a :class:`Harness`, which hides whether the client is sync or async, so the
same code runs in all four combinations (embedded/remote x sync/async).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from client import AsyncClient, AutogradError, Client, GraphError


class Harness:
    """A client plus ``run``: awaits what an AsyncClient returns, passes a Client's results through."""

    def __init__(self, c: Client | AsyncClient) -> None:
        self.c = c
        self.requests = 0
        self._loop = asyncio.new_event_loop() if isinstance(c, AsyncClient) else None
        send = c._send

        def counting_send(plan: Any) -> Any:
            self.requests += 1
            return send(plan)

        c._send = counting_send  # type: ignore[method-assign]

    def run(self, x: Any) -> Any:
        if inspect.isawaitable(x):
            assert self._loop is not None
            return self._loop.run_until_complete(x)
        return x

    def grad(self, *args: Any, **kwargs: Any) -> Any:
        return self.run(self.c.autograd_grad(*args, **kwargs))

    def values(self, *ts: Any) -> Any:
        return self.run(self.c.values(*ts))

    def close(self) -> None:
        if isinstance(self.c, AsyncClient):
            self.run(self.c.aclose())
            assert self._loop is not None
            self._loop.close()
        else:
            self.c.close()


def _t(a: Any, rg: bool = False) -> torch.Tensor:
    return torch.tensor(np.asarray(a), requires_grad=rg)


def _close(ours: Any, theirs: torch.Tensor, rtol: float = 1e-6, atol: float = 1e-7) -> None:
    theirs = theirs.detach().numpy()
    ours = np.asarray(ours)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    assert ours.dtype == theirs.dtype, (ours.dtype, theirs.dtype)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)


# ---------------------------------------------------------------- the examples
def seed_example(h: Harness) -> None:
    """w=0.5, b=0.9, x = 100 uniforms, y = 2x + 1, loss = mean((y - (w x + b))^2)."""
    c = h.c
    xv = np.random.default_rng(1).random(100)
    w = c.tensor(0.5, requires_grad=True)
    b = c.tensor(0.9, requires_grad=True)
    x = c.tensor(xv)
    y = 2 * x + 1
    loss = ((y - (w * x + b)) ** 2).mean()
    gw, gb = h.grad(loss, [w, b])

    tw, tb, tx = _t(np.float32(0.5), True), _t(np.float32(0.9), True), _t(xv)
    tl = ((2 * tx + 1 - (tw * tx + tb)) ** 2).mean()
    twg, tbg = torch.autograd.grad(tl, [tw, tb])
    _close(gw, twg)
    _close(gb, tbg)
    assert h.requests == 1


def value_and_grad(h: Harness) -> None:
    c = h.c
    xv = np.random.default_rng(2).standard_normal((4, 3))
    x = c.tensor(xv, requires_grad=True)
    y = c.tanh(x) * 2
    loss = (y ** 2).sum()
    (gx,), (lv, yv) = h.grad(loss, [x], return_values=[loss, y])
    assert h.requests == 1
    assert gx.flags.writeable and yv.flags.writeable  # ordinary arrays, whatever the transport

    tx = _t(xv, True)
    ty = torch.tanh(tx) * 2
    tl = (ty ** 2).sum()
    (tgx,) = torch.autograd.grad(tl, [tx])
    _close(gx, tgx)
    _close(lv, tl)
    _close(yv, ty)
    # fetched values are cached on the tensors: no new request
    assert np.array_equal(h.values(loss, y)[0], lv)
    assert h.requests == 1


def several_values_in_one_trip(h: Harness) -> None:
    c = h.c
    xv = np.arange(6, dtype=np.float64).reshape(2, 3)
    x = c.tensor(xv)
    a, b, m = x.sum(1), x.exp().mean(), x.max(dim=1)
    av, bv, mv, mi = h.values(a, b, m.values, m.indices)
    assert h.requests == 1
    tx = _t(xv)
    _close(av, tx.sum(1))
    _close(bv, tx.exp().mean())
    tm = tx.max(dim=1)
    _close(mv, tm.values)
    _close(mi, tm.indices)


def second_derivative(h: Harness) -> None:
    """create_graph=True gives client tensors; differentiate them again (d2/dx2 x^3 = 6x)."""
    c = h.c
    x = c.tensor(2.0, dtype="float64", requires_grad=True)
    (g,) = h.grad(x ** 3, [x], create_graph=True)
    assert h.requests == 0  # recorded, not sent
    (gg,) = h.grad(g, [x])
    (gv,) = h.values(g)
    tx = _t(np.float64(2.0), True)
    (tg,) = torch.autograd.grad(tx ** 3, [tx], create_graph=True)
    (tgg,) = torch.autograd.grad(tg, [tx])
    _close(gv, tg)
    _close(gg, tgg)


def hessian_vector_product(h: Harness) -> None:
    """HVP of a small MLP loss: grad of (grad(loss, params) . v) with respect to the params."""
    c = h.c
    rng = np.random.default_rng(3)
    W1v, W2v, xv = rng.standard_normal((5, 4)), rng.standard_normal((3, 5)), rng.standard_normal((8, 4))
    v1, v2 = rng.standard_normal((5, 4)), rng.standard_normal((3, 5))
    labels = np.array([0, 2, 1, 1, 0, 2, 2, 1])

    W1, W2 = c.tensor(W1v, requires_grad=True), c.tensor(W2v, requires_grad=True)
    x = c.tensor(xv)
    logits = c.tanh(x @ W1.t()) @ W2.t()
    logp = c.log_softmax(logits, dim=1)
    loss = -c.gather(logp, 1, c.tensor(labels[:, None])).mean()
    g1, g2 = h.grad(loss, [W1, W2], create_graph=True)
    dot = (g1 * c.tensor(v1)).sum() + (g2 * c.tensor(v2)).sum()
    (h1, h2), (lv,) = h.grad(dot, [W1, W2], return_values=[loss])
    assert h.requests == 1

    tW1, tW2, tx = _t(W1v, True), _t(W2v, True), _t(xv)
    tlogp = torch.log_softmax(torch.tanh(tx @ tW1.t()) @ tW2.t(), dim=1)
    tloss = -torch.gather(tlogp, 1, torch.tensor(labels[:, None])).mean()
    tg1, tg2 = torch.autograd.grad(tloss, [tW1, tW2], create_graph=True)
    th1, th2 = torch.autograd.grad((tg1 * _t(v1)).sum() + (tg2 * _t(v2)).sum(), [tW1, tW2])
    _close(h1, th1, rtol=1e-10)
    _close(h2, th2, rtol=1e-10)
    _close(lv, tloss)
    g1v, g2v = h.values(g1, g2)
    _close(g1v, tg1, rtol=1e-10)
    _close(g2v, tg2, rtol=1e-10)


def grad_outputs_and_broadcasting(h: Harness) -> None:
    c = h.c
    rng = np.random.default_rng(4)
    av, bv, gov = rng.standard_normal((3, 1)), rng.standard_normal((4,)), rng.standard_normal((3, 4))
    a, b = c.tensor(av, requires_grad=True), c.tensor(bv, requires_grad=True)
    y = a * b + a
    ga, gb = h.grad([y], [a, b], grad_outputs=[gov])
    ta, tb = _t(av, True), _t(bv, True)
    tga, tgb = torch.autograd.grad([ta * tb + ta], [ta, tb], grad_outputs=[_t(gov)])
    _close(ga, tga)
    _close(gb, tgb)


def multi_output_and_indexing(h: Harness) -> None:
    c = h.c
    rng = np.random.default_rng(5)
    xv = rng.standard_normal((4, 6))
    x = c.tensor(xv, requires_grad=True)
    vals, idx = x.max(dim=1)
    parts = x.split(4, dim=1)
    assert isinstance(parts, tuple) and len(parts) == 2
    rows = x.unbind(0)
    assert len(rows) == 4
    picked = x[1:, None, ::2] * 2 + x[..., [0, 0, 5]].sum() + x[x > 0].sum()
    loss = vals.sum() + (parts[1] ** 2).sum() + rows[3].exp().sum() + picked.sum()
    (gx,), (iv,) = h.grad(loss, [x], return_values=[idx])

    tx = _t(xv, True)
    tv, ti = tx.max(dim=1)
    tparts, trows = tx.split(4, dim=1), tx.unbind(0)
    tpicked = tx[1:, None, ::2] * 2 + tx[..., [0, 0, 5]].sum() + tx[tx > 0].sum()
    tl = tv.sum() + (tparts[1] ** 2).sum() + trows[3].exp().sum() + tpicked.sum()
    (tgx,) = torch.autograd.grad(tl, [tx])
    _close(gx, tgx)
    _close(iv, ti)


def numpy_operands_and_non_finite_constants(h: Harness) -> None:
    c = h.c
    rng = np.random.default_rng(6)
    sv, mask = rng.standard_normal((3, 3)), np.triu(np.ones((3, 3), bool), 1)
    s = c.tensor(sv, requires_grad=True)
    scores = np.full((3, 3), 0.5) * s  # a numpy array on the left records too
    p = c.softmax(scores.masked_fill(c.tensor(mask), float("-inf")), dim=-1)
    loss = (p * np.arange(9.0).reshape(3, 3)).sum()
    (gs,), (pv,) = h.grad(loss, [s], return_values=[p])

    ts = _t(sv, True)
    tp = torch.softmax((_t(np.full((3, 3), 0.5)) * ts).masked_fill(_t(mask), float("-inf")), dim=-1)
    (tgs,) = torch.autograd.grad((tp * _t(np.arange(9.0).reshape(3, 3))).sum(), [ts])
    _close(gs, tgs)
    _close(pv, tp)


def casts_detach_and_namespaces(h: Harness) -> None:
    c = h.c
    xv = np.array([[0.5, -1.5, 2.0], [1.0, 0.25, -0.75]], np.float32)
    x = c.tensor(xv, requires_grad=True)
    y = x.double() * x.to(c.tensor(1.0, dtype="float64").dtype)  # float-to-float casts differentiate
    z = y.sum() + (x.detach() * x).sum() + c.nn.functional.relu(x).float().sum()
    idx = x.argmax(dim=1).long()
    (gx,), (zv, iv) = h.grad(z, [x], return_values=[z, idx])

    tx = _t(xv, True)
    tz = (tx.double() * tx.to(torch.float64)).sum() + (tx.detach() * tx).sum() \
        + torch.nn.functional.relu(tx).float().sum()
    (tgx,) = torch.autograd.grad(tz, [tx])
    _close(gx, tgx)
    _close(zv, tz)
    _close(iv, tx.argmax(dim=1))


def unused_inputs(h: Harness) -> None:
    c = h.c
    a, b = c.tensor([1.0, 2.0], requires_grad=True), c.tensor([3.0], requires_grad=True)
    loss = (a * a).sum()
    # loss goes backward three times: retain_graph keeps its saved tensors, as torch needs
    ga, gb = h.grad(loss, [a, b], allow_unused=True, retain_graph=True)
    assert gb is None
    np.testing.assert_array_equal(ga, np.array([2.0, 4.0], np.float32))
    ga, gb = h.grad(loss, [a, b], allow_unused=True, materialize_grads=True, retain_graph=True)
    np.testing.assert_array_equal(gb, np.zeros(1, np.float32))
    # with create_graph the None is known at once too (one request to find out)
    ga2, gb2 = h.grad(loss, [a, b], create_graph=True, allow_unused=True)
    assert gb2 is None and ga2 is not None
    (gaa,) = h.grad(ga2.sum(), [a])
    np.testing.assert_array_equal(gaa, np.array([2.0, 2.0], np.float32))


# ---------------------------------------------------------------- errors: torch's types and phrases
def _torch_error(fn: Callable[[], Any]) -> BaseException:
    with pytest.raises(Exception) as ei:
        fn()
    return ei.value


def _expect_like_torch(ours: Callable[[], Any], theirs: Callable[[], Any], phrase: str) -> AutogradError:
    terr = _torch_error(theirs)
    assert phrase in str(terr), f"torch's message changed: {terr}"
    with pytest.raises(type(terr)) as ei:
        ours()
    assert isinstance(ei.value, AutogradError), type(ei.value)
    assert ei.value.status == 422 and ei.value.exception == type(terr).__name__
    assert phrase in str(ei.value)
    return ei.value


def autograd_errors_match_torch(h: Harness) -> None:
    c = h.c
    w, x = c.tensor(1.5, requires_grad=True), c.tensor([1.0, 2.0])
    tw, tx = _t(np.float32(1.5), True), _t(np.array([1.0, 2.0], np.float32))

    _expect_like_torch(lambda: h.grad((w * x).sum(), [x]),
                       lambda: torch.autograd.grad((tw * tx).sum(), [tx]),
                       "does not require grad")
    err = _expect_like_torch(lambda: h.grad(w * x, [w]), lambda: torch.autograd.grad(tw * tx, [tw]),
                             "grad can be implicitly created only for scalar outputs")
    assert err.errors and err.errors[0]["loc"]
    _expect_like_torch(lambda: h.grad((w * 2).sum(), [w, c.tensor(1.0, requires_grad=True)]),
                       lambda: torch.autograd.grad((tw * 2).sum(), [tw, _t(np.float32(1), True)]),
                       "appears to not have been used in the graph")
    _expect_like_torch(lambda: h.grad(w * 2, [w], allow_unused=False, materialize_grads=True),
                       lambda: torch.autograd.grad(tw * 2, [tw], allow_unused=False, materialize_grads=True),
                       "materialize_grads")
    _expect_like_torch(lambda: h.grad(w * x, [w], grad_outputs=[np.ones(3, np.float32)]),
                       lambda: torch.autograd.grad(tw * tx, [tw], grad_outputs=[torch.ones(3)]),
                       "Mismatch in shape")
    _expect_like_torch(lambda: h.grad([w * x, w], [w], grad_outputs=[np.ones(2, np.float32)]),
                       lambda: torch.autograd.grad([tw * tx, tw], [tw], grad_outputs=[torch.ones(2)]),
                       "got 2 tensors and 1 gradients")
    _expect_like_torch(lambda: h.grad(x.sum(), [w]), lambda: torch.autograd.grad(tx.sum(), [tw]),
                       "does not require grad and does not have a grad_fn")


def retain_graph_error_inside_one_request(h: Harness) -> None:
    """A grad node with retain_graph=False frees the graph; a second pass raises torch's error."""
    c = h.c
    w = c.tensor(2.0, requires_grad=True)
    loss = (w.exp() * w).sum()
    (g,) = h.grad(loss, [w], create_graph=True, retain_graph=False)
    tw = _t(np.float32(2.0), True)
    tl = (tw.exp() * tw).sum()
    torch.autograd.grad(tl, [tw], create_graph=True, retain_graph=False)
    # the client knows the graph was freed (client._shadow): torch's error, before any request
    sent = h.requests
    terr = _torch_error(lambda: torch.autograd.grad(tl, [tw]))
    with pytest.raises(RuntimeError) as ei:
        h.grad([loss, g], [w])
    assert type(ei.value) is type(terr) and str(ei.value) == str(terr)
    assert h.requests == sent


def engine_errors_are_typed(h: Harness) -> None:
    c = h.c
    a, b = c.tensor(np.ones((2, 3)), requires_grad=True), c.tensor(np.ones((4, 5)))
    ta, tb = _t(np.ones((2, 3)), True), _t(np.ones((4, 5)))
    terr = _torch_error(lambda: ta @ tb)
    with pytest.raises(type(terr)) as ei:
        h.grad((a @ b).sum(), [a])
    assert isinstance(ei.value, GraphError) and ei.value.status == 422
    # the error names the node that failed
    assert any(e.get("loc") for e in ei.value.errors), ei.value.errors


# ---------------------------------------------------------------- mutation (functional on the wire)
def _torch_in_place_program(t: Any, x: Any, w: Any) -> Any:
    """One program, run by torch (t = torch) on torch tensors and by the client (t = the client)
    on recorded ones: in-place methods, item assignment and augmented assignment."""
    h = x * 2
    h.add_(1)
    h.mul_(w)
    h[0] = 10.0
    h[1:] *= x[:2]
    v = h[2:]
    v.sub_(0.5)  # a basic-index view writes back to h, as torch's shared storage
    h.clamp_(min=-3.0, max=40.0)
    h += w.exp()
    h[h > 5.0] = 5.0  # a mask: advanced indexing
    t.nn.functional.relu(h, inplace=True)  # an op's inplace=True changes its input too
    k = t.zeros(3)
    k.copy_(h)
    k.index_put_((t.tensor([0, 2]),), h[:2] * 3.0, accumulate=True)
    return h, k


def in_place_ops_match_torch(h: Harness) -> None:
    c = h.c
    xv, wv = np.array([0.3, -1.2, 2.0], np.float32), np.array([1.5, 0.5, -0.25], np.float32)
    x, w = c.tensor(xv, requires_grad=True), c.tensor(wv, requires_grad=True)
    hh, k = _torch_in_place_program(c, x, w)
    loss = (hh * hh).sum() + k.sum()
    (gx, gw), (hv, kv) = h.grad(loss, [x, w], return_values=[hh, k])
    tx, tw = _t(xv, True), _t(wv, True)
    th, tk = _torch_in_place_program(torch, tx, tw)
    tgx, tgw = torch.autograd.grad((th * th).sum() + tk.sum(), [tx, tw])
    _close(hv, th)
    _close(kv, tk, rtol=1e-6)
    _close(gx, tgx)
    _close(gw, tgw)
    assert h.requests == 1


def in_place_refusals_match_torch(h: Harness) -> None:
    c = h.c
    for ours, theirs in [(lambda x: x.add_(1.0), lambda x: x.add_(1.0)),
                         (lambda x: x.__setitem__(0, 1.0), lambda x: x.__setitem__(0, 1.0)),
                         (lambda x: x.__setitem__([0], 1.0), lambda x: x.__setitem__([0], 1.0)),
                         (lambda x: x[1:].zero_(), lambda x: x[1:].zero_())]:
        terr = _torch_error(lambda: theirs(_t(np.ones(3, np.float32), True)))
        with pytest.raises(RuntimeError) as ei:
            ours(c.tensor(np.ones(3, np.float32), requires_grad=True))
        assert type(ei.value) is type(terr) and str(ei.value) == str(terr)
    # a value saved for the gradient and changed afterwards: torch's version-counter error
    xv = np.array([0.5, 1.5], np.float32)
    x = c.tensor(xv, requires_grad=True)
    y = c.tanh(x)
    y.add_(1.0)
    tx = _t(xv, True)
    ty = torch.tanh(tx)
    ty.add_(1.0)
    terr = _torch_error(lambda: torch.autograd.grad(ty.sum(), [tx]))
    with pytest.raises(RuntimeError) as ei:
        h.grad(y.sum(), [x])
    assert str(ei.value) == str(terr)
    sent = h.requests
    # dtype and shape rules come from the server (or the embedded core), worded as torch's
    n = c.tensor(np.arange(3))
    n.add_(0.5)
    terr = _torch_error(lambda: torch.arange(3).add_(0.5))
    with pytest.raises(RuntimeError) as ei:
        h.values(n)
    assert str(terr) in str(ei.value)
    assert h.requests == sent + 1


def second_backward_needs_retain_graph(h: Harness) -> None:
    """A second autograd_grad through the same graph: torch's error exactly where torch raises it
    (saved tensors freed), nothing sent; with retain_graph=True, or no saved tensors, it works."""
    c = h.c
    programs = [lambda x: (x * x).sum(), lambda x: x.exp().sum(), lambda x: (x + 1.0).sum(),
                lambda x: (x * 2.0).sum(), lambda x: x.sum()]
    xv = np.array([0.5, 1.5], np.float32)
    for f in programs:
        x = c.tensor(xv, requires_grad=True)
        y = f(x)
        tx = _t(xv, True)
        ty = f(tx)
        h.grad(y, [x])
        torch.autograd.grad(ty, [tx])
        try:
            (tg,) = torch.autograd.grad(ty, [tx])
        except RuntimeError as terr:
            sent = h.requests
            with pytest.raises(RuntimeError) as ei:
                h.grad(y, [x])
            assert type(ei.value) is RuntimeError and str(ei.value) == str(terr)
            assert h.requests == sent
        else:
            (g,) = h.grad(y, [x])
            _close(g, tg)
        # retain_graph=True keeps the saved tensors for the next call, as in torch
        x = c.tensor(xv, requires_grad=True)
        y = f(x)
        h.grad(y, [x], retain_graph=True)
        (g,) = h.grad(y, [x])
        tx = _t(xv, True)
        (tg,) = torch.autograd.grad(f(tx), [tx])
        _close(g, tg)


def views_follow_in_place_writes(h: Harness) -> None:
    c = h.c
    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    a = c.tensor(xv) * 1.0
    row = a[1]  # a basic-index view: it sees writes to a, and a sees writes to it
    a.add_(1.0)
    row.mul_(2.0)
    ta = _t(xv) * 1.0
    trow = ta[1]
    ta.add_(1.0)
    trow.mul_(2.0)
    av, rv = h.values(a, row)
    _close(av, ta)
    _close(rv, trow)
    # a view that cannot be written back over the wire is refused when used, never silently wrong
    flat = a.reshape(-1)
    a.zero_()
    with pytest.raises(RuntimeError, match="view"):
        flat.sum()


SCENARIOS: list[Callable[[Harness], None]] = [
    seed_example, value_and_grad, several_values_in_one_trip, second_derivative, hessian_vector_product,
    grad_outputs_and_broadcasting, multi_output_and_indexing, numpy_operands_and_non_finite_constants,
    casts_detach_and_namespaces, unused_inputs, autograd_errors_match_torch,
    retain_graph_error_inside_one_request, engine_errors_are_typed, in_place_ops_match_torch,
    in_place_refusals_match_torch, second_backward_needs_retain_graph, views_follow_in_place_writes,
]
