"""The client in embedded mode (no URL: the engine runs in-process through service.core), sync and
async, against torch. The same scenarios run against a real server in tests/e2e/test_client_remote.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from client import AsyncClient, Client

from ._scenarios import SCENARIOS, Harness


@pytest.fixture(params=["sync", "async"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    h = Harness(Client() if request.param == "sync" else AsyncClient())
    assert h.c.embedded
    yield h
    h.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_scenario(harness: Harness, scenario: Callable[[Harness], None]) -> None:
    scenario(harness)
