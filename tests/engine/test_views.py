"""Views against torch: shared storage and version counter, ``_base``/``_is_view()``, in-place ops
on views rewriting the base's history (CopySlices) and regenerating the other views
(AsStridedBackward0), torch's refusals, and random sequences of in-place ops on views."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .test_inplace import B, both, leaf, same

r = np.random.default_rng(1)
A = r.standard_normal((3, 4))
W = r.standard_normal((3, 4))

VIEWS: dict[str, Callable] = {
    "index": lambda t: t[1],
    "element": lambda t: t[1, 2],
    "select_element": lambda t: t.select(0, 0).select(0, 1),
    "ellipsis_element": lambda t: t[..., 1, 3],
    "slice": lambda t: t[:, 1:3],
    "step": lambda t: t[::2, 1::2],
    "newaxis": lambda t: t[..., None],
    "view": lambda t: t.view(12),
    "view_t": lambda t: t.t().view(12),
    "reshape": lambda t: t.reshape(2, 6),
    "transpose": lambda t: t.transpose(0, 1),
    "t": lambda t: t.t(),
    "T": lambda t: t.T,
    "mT": lambda t: t.mT,
    "permute": lambda t: t.permute(1, 0),
    "select": lambda t: t.select(1, 2),
    "narrow": lambda t: t.narrow(1, 1, 2),
    "unsqueeze": lambda t: t.unsqueeze(0),
    "squeeze": lambda t: t[None].squeeze(0),
    "diagonal": lambda t: t.diagonal(),
    "flatten": lambda t: t.flatten(),
    "unflatten": lambda t: t.unflatten(1, (2, 2)),
    "movedim": lambda t: t.movedim(0, 1),
    "view_as": lambda t: t.view_as(t),
    "chain": lambda t: t.t()[1:].unsqueeze(0)[0, :, 1],
}


@pytest.mark.parametrize("name", VIEWS)
def test_in_place_op_on_a_view_as_torch(name: str) -> None:
    make = VIEWS[name]

    def run(lib):
        a = leaf(lib, A)
        b = a * 1.0
        v = make(b)
        w = b[1:, :2]  # another view of the base, made before the write
        shared = (v._is_view(), v._base is b, w._base is b)
        v.mul_(2.0).add_(1.0)
        state = (b._version, v._version, w._version, b.grad_fn.name(), v.grad_fn.name(), w.grad_fn.name())
        loss = (b * lib.tensor(W)).sum() + (v * v).sum() + w.sin().sum()
        return shared, state, b.detach(), w.detach(), lib.autograd.grad(loss, a)

    same(run)


@pytest.mark.parametrize("name", ["index", "slice", "transpose", "diagonal", "chain"])
def test_writes_to_the_base_reach_its_views_as_torch(name: str) -> None:
    make = VIEWS[name]

    def run(lib):
        a = leaf(lib, A)
        b = a * 1.0
        v = make(b)
        b.mul_(lib.tensor(W))
        b[0] = 7.0
        loss = (v * v).sum() + b.sum()
        return v.detach(), v._version, v.grad_fn.name(), lib.autograd.grad(loss, a)

    same(run)


def test_views_without_grad_share_storage_and_version() -> None:
    def run(lib):
        x = lib.zeros(3, 4)
        v = x[1]
        v.fill_(2.0)
        x[:, 0] = -1.0
        t = x.t()
        t[3].add_(5.0)
        d = x.detach()
        d.mul_(2.0)
        return x, v, (x._version, v._version, t._version, d._version, d._is_view())

    same(run)


def test_a_reshape_that_copies_is_not_a_view_as_torch() -> None:
    def run(lib):
        b = lib.arange(12.0).reshape(3, 4)
        c = b.t().reshape(12)
        c.add_(100.0)
        return c._is_view(), b

    same(run)


def test_detach_shares_the_version_counter_as_torch() -> None:
    def run(lib):
        a = leaf(lib, A)
        b = a * 1.0
        c = b * b
        b.detach().add_(1.0)  # torch: the same storage and version counter, no history
        return b._version, c.sum().backward()

    same(run)


@pytest.mark.parametrize("case", ["unbind", "split", "chunk", "no_grad_view", "view_of_leaf", "expand",
                                  "no_grad_view_of_plain", "split_of_plain"])
def test_refusals_as_torch(case: str) -> None:
    def run(lib):
        a = leaf(lib, A)
        b = a * 1.0
        if case == "unbind":
            b.unbind(0)[1].add_(1)
        elif case == "split":
            b.split(2, 1)[1].mul_(2)
        elif case == "chunk":
            b.chunk(2)[0].zero_()
        elif case == "no_grad_view":
            with lib.no_grad():
                v = b[0]
            v.add_(1)
        elif case == "view_of_leaf":
            a.t()[0].add_(1)
        elif case == "expand":
            lib.zeros(3).expand(2, 3).add_(1)
        elif case == "no_grad_view_of_plain":  # allowed: the base does not require grad
            x = lib.zeros(3)
            with lib.no_grad():
                v = x[1:]
            v.add_(1)
            return x
        else:
            x = lib.zeros(4)
            x.split(2)[1].add_(1)
            return x
        return "no error"

    same(run)


@pytest.mark.parametrize("late_write", [False, True], ids=["ok", "saved-output-modified"])
def test_second_order_through_an_in_place_op_on_a_view(late_write: bool) -> None:
    """Second order through CopySlices and the regenerated views, against torch's (and torch's
    error when exp_'s saved output is then overwritten through the base)."""
    def run(lib):
        a = leaf(lib, A)
        s = leaf(lib, B[0, :3])

        def f(a, s):
            b = a.sin() * 1.0
            v = b.t()[1:]
            if not late_write:
                b[2, ::2] = s[:2] * a[0, :2]
            v.mul_(s).exp_()
            if late_write:
                b[2, ::2] = s[:2] * a[0, :2]
            return (b * b).sum() + v.sum()

        g = lib.autograd.grad(f(a, s), (a, s), create_graph=True)
        return g, lib.autograd.grad(sum(x.pow(2).sum() for x in g), (a, s))

    same(run, rtol=1e-6)


# ---------------------------------------------------------------- random sequences against torch
_SELECT = [lambda t: t, lambda t: t[1], lambda t: t[:, 1:4], lambda t: t.t(), lambda t: t.diagonal(),
           lambda t: t[1:, ::2], lambda t: t.reshape(20)[3:9], lambda t: t.unsqueeze(1)[2, 0]]
_OPS = [lambda lib, t: t.mul_(1.5), lambda lib, t: t.add_(t.detach() * 0.1 + 0.3),
        lambda lib, t: t.tanh_(), lambda lib, t: t.sub_(t.sum() * 0.01), lambda lib, t: t.clamp_(-0.8, 0.9),
        lambda lib, t: t.__setitem__(0, 2.0), lambda lib, t: t.copy_(t.flip(0) * 0.5),
        lambda lib, t: t.__imul__(t.exp()), lambda lib, t: t.zero_()]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_SELECT) - 1), st.integers(0, len(_SELECT) - 1),
                          st.integers(0, len(_OPS) - 1), st.booleans()), min_size=1, max_size=6))
def test_random_in_place_sequences_on_views_match_torch(steps: list) -> None:
    x0 = np.random.default_rng(len(steps)).standard_normal((4, 5))

    def run(lib):
        a = leaf(lib, x0)
        b = a * 1.0
        kept = []
        for first, second, op, keep in steps:
            v = _SELECT[first](b)
            if v.dim() >= 1:
                v = _SELECT[second](v) if v.dim() == 2 else v
            if v.dim() == 0 and op in (5, 6):
                op = 0
            _OPS[op](lib, v)
            if keep:
                kept.append(v)
        loss = (b * b).sum() + sum((k * k).sum() for k in kept)
        return b.detach(), b._version, [k.detach() for k in kept], lib.autograd.grad(loss, a)

    e, t = both(run)
    from .test_inplace import _compare
    _compare(e, t, 1e-7, 1e-9)


def test_copies_of_bases_and_views_are_tensors_of_their_own() -> None:
    import copy
    import pickle

    def run(lib):
        x = lib.arange(6.0).reshape(2, 3)
        v = x[1]
        v.mul_(2.0)
        xc, vc = pickle.loads(pickle.dumps(x)), copy.deepcopy(v)
        vc.add_(1.0)  # the copies share nothing with the originals
        xc.zero_()
        return x, v, xc, vc

    same(run)
