"""Fixtures for the service tests: an in-process app per settings, driven by TestClient."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import numpy as np
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx vs httpx2 in its TestClient
    from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings


@pytest.fixture
def make_client() -> Iterator[Callable[..., TestClient]]:
    """``make_client(**settings)``: a TestClient on a fresh app with those settings."""
    clients: list[TestClient] = []

    def make(**overrides: object) -> TestClient:
        # computations in engine threads: one fork per request would make this suite several
        # times slower; process isolation is tested against real servers (tests/e2e) and by the
        # tests that ask for it (isolation="process")
        c = TestClient(create_app(Settings(**{"api_keys": [], "isolation": "thread", **overrides})))
        c.__enter__()  # run lifespan (startup/shutdown), as under uvicorn
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture
def x100() -> np.ndarray:
    """The seed example's x: 100 uniforms in float32."""
    return np.random.default_rng(1234).random(100).astype(np.float32)
