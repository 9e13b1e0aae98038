"""``gradserve serve``'s malloc policy (engine/_malloc.py) reaches every process of a real server:
the uvicorn workers and the pool's workers start with it in their environment (glibc reads it
there before their first allocation), unless the user set their own."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine import _malloc
from service import pool

from ._procs import children, environ

pytestmark = pytest.mark.skipif(not pool.available(), reason="the worker pool needs Linux (fork, memfd)")
ENV = {"GRADSERVE_ISOLATION": "process", "GRADSERVE_POOL_SIZE": "1"}


def _workers(pid: int) -> tuple[list[int], list[int]]:
    """The uvicorn workers of a server and the pool workers under them, once all are up."""
    end = time.monotonic() + 60
    while True:
        workers = [c for c in children(pid)  # (not multiprocessing's resource tracker)
                   if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        pooled = [c for w in workers for c in children(w)]
        if len(workers) >= 2 and len(pooled) >= len(workers) or time.monotonic() > end:
            return workers, pooled
        time.sleep(0.1)


def _malloc_env(pid: int) -> dict[str, str]:
    return {k: v for k, v in environ(pid).items() if k.startswith("MALLOC_")}


def test_every_worker_starts_with_the_policy(make_server, monkeypatch):
    for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX"):
        monkeypatch.delenv(k, raising=False)
    srv = make_server(env=ENV, args=["--workers", "2"])
    workers, pooled = _workers(srv.proc.pid)
    assert len(workers) == 2 and len(pooled) >= 2
    for pid in workers + pooled:
        assert _malloc_env(pid) == _malloc.policy()


def test_the_users_malloc_variables_win_in_every_worker(make_server, monkeypatch):
    for k in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX"):
        monkeypatch.delenv(k, raising=False)
    srv = make_server(env={**ENV, "MALLOC_MMAP_THRESHOLD_": "1048576", "MALLOC_ARENA_MAX": "4"},
                      args=["--workers", "2"])
    workers, pooled = _workers(srv.proc.pid)
    assert len(workers) == 2 and len(pooled) >= 2
    for pid in workers + pooled:
        assert _malloc_env(pid) == {"MALLOC_MMAP_THRESHOLD_": "1048576", "MALLOC_ARENA_MAX": "4"}
