"""Real servers for end-to-end tests: ``python -m service serve`` on a free loopback port.

Fixtures:
- ``server_url`` (session): one default server, ``"http://127.0.0.1:<port>"``.
- ``make_server`` (function): ``make_server(env={...}, args=[...])`` starts another server with
  extra ``GRADSERVE_*`` settings or CLI flags (``--workers 2``) and stops it after the test.

``GRADSERVE_*`` variables of the calling environment are not passed on, so the servers run with
the documented defaults unless a test says otherwise.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A ``python -m service serve`` child process; ``url`` once it answers /health/ready."""

    def __init__(self, env: dict[str, str] | None = None, args: list[str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base = {k: v for k, v in os.environ.items() if not k.startswith("GRADSERVE_")}
        self.log = tempfile.TemporaryFile(mode="w+")
        cmd = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--log-level", "warning", *(args or [])]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env={**base, **(env or {})}, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def _wait_ready(self) -> None:
        end = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server did not become ready in {START_TIMEOUT_S} s:\n{self.output()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: uvicorn's graceful shutdown
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """URL of a real uvicorn server with default settings, shared by the whole session."""
    server = Server()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def make_server() -> Iterator[Callable[..., Server]]:
    """Start extra servers: ``make_server(env={"GRADSERVE_API_KEYS": "k"}, args=["--workers", "2"])``."""
    servers: list[Server] = []

    def make(env: dict[str, str] | None = None, args: list[str] | None = None) -> Server:
        s = Server(env, args)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()
