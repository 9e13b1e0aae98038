"""``c.func`` (torch.func's transforms on client tensors), embedded, sync and async, against
``torch.func``; the same scenarios run against a real server in tests/e2e/test_func_remote.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
import torch.func as TF

from client import AsyncClient, AutogradError, Client

from ._func_scenarios import SCENARIOS, XS, W
from ._scenarios import Harness


@pytest.fixture(params=["sync", "async"])
def h(request: pytest.FixtureRequest) -> Iterator[Harness]:
    harness = Harness((Client if request.param == "sync" else AsyncClient)())
    yield harness
    harness.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
def test_scenarios_equal_torch_func(h: Harness, scenario: Callable[[Harness], None]) -> None:
    scenario(h)


def test_func_replaces_the_hint_and_mirrors_torch_func() -> None:
    c = Client()
    assert {"grad", "grad_and_value", "vjp", "jvp", "jacrev", "jacfwd", "hessian", "vmap"} <= set(dir(c.func))
    with pytest.raises(AttributeError, match=r"c\.func\.grad"):
        c.vmap  # noqa: B018 - torch.func's names are under c.func, not c
    x = c.tensor(np.arange(3.0))
    g = c.func.grad(lambda x: (x ** 2).sum())(x)
    assert g.shape == (3,)  # a client tensor: shapes locally, the value on demand
    np.testing.assert_allclose(g.numpy(), [0.0, 2.0, 4.0])


def test_errors_are_torchs() -> None:
    c = Client()
    w, xs = c.tensor(W), c.tensor(XS)
    loss = lambda w, x: (c.tanh(w @ x) ** 2).sum()  # noqa: E731
    t_loss = lambda w, x: (torch.tanh(w @ x) ** 2).sum()  # noqa: E731

    def both(ours: Callable[[], Any], theirs: Callable[[], Any], exc: type[Exception]) -> None:
        with pytest.raises(exc) as e_theirs:
            theirs()
        with pytest.raises(exc) as e_ours:
            ours()
        tail = lambda m: str(m).split("(<inputs>): ", 1)[-1].split(". ")[0]  # noqa: E731
        assert tail(e_ours.value) == tail(e_theirs.value)

    tw, txs = torch.tensor(W), torch.tensor(XS)
    # found here, before anything is sent
    both(lambda: c.func.vmap(loss, in_dims=(None, 0, 0))(w, xs),
         lambda: TF.vmap(t_loss, in_dims=(None, 0, 0))(tw, txs), ValueError)
    both(lambda: c.func.vmap(loss, in_dims=(None, 2))(w, xs),
         lambda: TF.vmap(t_loss, in_dims=(None, 2))(tw, txs), ValueError)
    both(lambda: c.func.grad(loss, argnums=2)(w, xs[0]),
         lambda: TF.grad(t_loss, argnums=2)(tw, txs[0]), RuntimeError)
    # found by the server (its static check): a typed client error that is also torch's type
    ys = c.func.vmap(lambda w, x: c.tanh(w @ x), in_dims=(None, 0), out_dims=2)(w, xs)
    with pytest.raises(IndexError) as ei:
        ys.numpy()
    assert isinstance(ei.value, AutogradError)
    with pytest.raises(IndexError) as theirs:
        TF.vmap(lambda w, x: torch.tanh(w @ x), in_dims=(None, 0), out_dims=2)(tw, txs)
    assert str(theirs.value) in str(ei.value)


def test_the_request_carries_the_node_kinds() -> None:
    c = Client()
    w, xs = c.tensor(W, name="w"), c.tensor(XS, name="xs")
    ps = c.func.vmap(c.func.grad(lambda w, x: (w @ x).sum()), in_dims=(None, 0))(w, xs)
    import json
    nodes = json.loads(c.to_json(return_values=[ps]))["graph"]["nodes"]
    grad, vmap = nodes[-2], nodes[-1]
    assert grad["op"] == "func.grad" and grad["attributes"]["argnums"] == 0
    assert vmap["op"] == "vmap"
    assert vmap["attributes"]["args"] == ["w", "xs"] and vmap["attributes"]["in_dims"] == [None, 0]
    assert vmap["attributes"]["outputs"] == grad["outputs"][0]
