"""``c.func`` against a real uvicorn server: the scenarios of tests/client/_func_scenarios.py
(equal to torch.func), sync and async, and remote results byte-equal to embedded ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from client import AsyncClient, AutogradError, Client
from tests.client._func_scenarios import SCENARIOS, XS, W
from tests.client._scenarios import Harness


@pytest.fixture(params=["sync", "async"])
def remote(request: pytest.FixtureRequest, server_url: str) -> Iterator[Harness]:
    h = Harness((Client if request.param == "sync" else AsyncClient)(server_url))
    assert not h.c.embedded
    yield h
    h.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_func_scenario_remote(remote: Harness, scenario: Callable[[Harness], None]) -> None:
    scenario(remote)


def _per_sample(c: Client) -> list[np.ndarray]:
    w, xs = c.tensor(W), c.tensor(XS)
    loss = lambda w, x: (c.tanh(w @ x) ** 2).sum()  # noqa: E731
    ps = c.func.vmap(c.func.grad(loss), in_dims=(None, 0))(w, xs)
    h = c.func.vmap(c.func.hessian(loss, argnums=1), in_dims=(None, 0))(w, xs)
    _, vjp_fn = c.func.vjp(lambda x: c.tanh(w @ x), xs[0])
    return list(c.values(ps, h, *vjp_fn(c.tensor(np.ones(4)))))


def test_remote_equals_embedded(server_url: str) -> None:
    with Client(server_url) as remote:
        far = _per_sample(remote)
    near = _per_sample(Client())
    for a, b in zip(far, near):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()


def test_remote_errors_are_the_embedded_ones(server_url: str) -> None:
    def fail(c: Client) -> AutogradError:
        w, xs = c.tensor(W), c.tensor(XS)
        ys = c.func.vmap(lambda w, x: c.tanh(w @ x), in_dims=(None, 0), out_dims=2)(w, xs)
        with pytest.raises(IndexError) as ei:
            ys.numpy()
        assert isinstance(ei.value, AutogradError)
        return ei.value

    with Client(server_url) as remote:
        far = fail(remote)
    near = fail(Client())
    assert str(far) == str(near)
    assert far.problem["errors"][0]["loc"][-2:] == ["attributes", "out_dims"]
