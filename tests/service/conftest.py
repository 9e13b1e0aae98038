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

# The graph tests run twice: as served by default (compile="on": a header's first request runs
# eagerly, the next ones compiled) and with compile="always" (every compilable request is traced
# and its program replayed at once), so compiled plans pass every test the eager run passes.
# GRADSERVE_COMPILE=always python -m pytest tests/service runs the whole suite that way.
BOTH_WAYS = {"test_grad_api", "test_functional_wire", "test_expression_form", "test_transports",
             "test_r_json", "test_static_checks"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if module in BOTH_WAYS and "make_client" in metafunc.fixturenames:
        metafunc.parametrize("compile_mode", ["on", "always"], indirect=True)


@pytest.fixture
def compile_mode(request: pytest.FixtureRequest) -> str | None:
    """The ``compile`` setting of the test's clients (None: the environment's, default on)."""
    return getattr(request, "param", None)


@pytest.fixture
def make_client(compile_mode: str | None) -> Iterator[Callable[..., TestClient]]:
    """``make_client(**settings)``: a TestClient on a fresh app with those settings."""
    clients: list[TestClient] = []
    mode = {"compile": compile_mode} if compile_mode is not None else {}

    def make(**overrides: object) -> TestClient:
        # computations in engine threads: one fork per request would make this suite several
        # times slower; process isolation is tested against real servers (tests/e2e) and by the
        # tests that ask for it (isolation="process")
        c = TestClient(create_app(Settings(**{"api_keys": [], "isolation": "thread", **mode, **overrides})))
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
