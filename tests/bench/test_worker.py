"""Each library in its own worker process (bench._harness.measure_isolated, bench/_worker.py):
the protocol, errors reaching the parent, and no worker left behind. Nothing here is timed
against a bound: only counts and that the times are positive numbers."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bench import _harness
from bench._harness import Worker, WorkerError, WorkerPool, run_case
from tests.bench.fake_cases import CRASHES, FAIL_MESSAGE, FAKE, HANGS, RAISES


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead, only not yet reaped
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def _dies(pid: int, hang_guard_s: float = 60.0) -> bool:
    """Whether ``pid`` is gone within ``hang_guard_s``: a SIGKILL takes effect once the process is
    next scheduled, later on a loaded machine (CI once saw the worker's child still running right
    after the session was killed)."""
    end = time.monotonic() + hang_guard_s
    while _alive(pid):
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def test_each_run_is_timed_in_its_own_worker() -> None:
    with WorkerPool() as pool:
        result = run_case(FAKE, quick=False, pool=pool)
        pids = pool.pids()
        assert sorted(pool.workers) == ["engine", "hips", "torch"]
        assert len(set(pids)) == 3 and os.getpid() not in pids
        # a second case reuses the same workers: each is built afresh in them
        again = run_case(FAKE, quick=True, pool=pool)
        assert pool.pids() == pids
    assert set(result.times) == {"engine", "torch", "hips"}
    for lib, times in result.times.items():
        assert len(times) == FAKE.reps, lib  # the dropped first repetition of each block not counted
        assert all(t > 0 for t in times), lib
    assert all(len(t) == FAKE.quick_reps for t in again.times.values())
    assert result.extra["method"] == "isolated"
    assert not any(_alive(p) for p in pids)


def test_max_reps_caps_the_repetitions() -> None:
    result = run_case(FAKE, quick=False, max_reps=2)  # a pool of the call's own
    assert {len(t) for t in result.times.values()} == {2}


def test_same_process_keeps_the_old_interleaving() -> None:
    result = run_case(FAKE, quick=False, same_process=True)
    assert {len(t) for t in result.times.values()} == {FAKE.reps}
    assert "method" not in result.extra


def test_the_protocol_by_hand() -> None:
    w = Worker("engine")
    try:
        assert w.request({"op": "build", "module": FAKE.build.__module__, "case": FAKE.name,
                          "run": "engine", "quick": True, "warmup": 1}) == {"ok": True}
        times = w.request({"op": "time", "reps": 5})["times"]
        assert len(times) == 5 and all(t > 0 for t in times)
        assert w.request({"op": "drop"}) == {"ok": True}
        with pytest.raises(WorkerError, match="time before build"):
            w.request({"op": "time", "reps": 1})
        with pytest.raises(WorkerError, match="no run 'jax'"):
            w.request({"op": "build", "module": FAKE.build.__module__, "case": FAKE.name,
                       "run": "jax", "quick": True, "warmup": 1})
    finally:
        w.close()
    assert not _alive(w.pid)


def test_an_exception_in_a_worker_reaches_the_parent() -> None:
    with WorkerPool() as pool:
        with pytest.raises(WorkerError) as err:
            run_case(RAISES, quick=True, pool=pool)
        assert "engine" not in pool.workers  # a failed worker is not reused
        pids = pool.pids()
    assert FAIL_MESSAGE in str(err.value) and "ValueError" in str(err.value)
    assert not any(_alive(p) for p in pids)


def test_a_crashed_worker_reports_its_status_and_stderr() -> None:
    with WorkerPool() as pool:
        with pytest.raises(WorkerError) as err:
            run_case(CRASHES, quick=True, pool=pool)
        pids = pool.pids()
    assert "status 3" in str(err.value) and FAIL_MESSAGE in str(err.value)
    assert not any(_alive(p) for p in pids)


def test_no_worker_nor_its_children_outlive_an_interrupted_run(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pidfile = tmp_path / "child.pid"
    monkeypatch.setitem(_harness.WORKER_ENV, "FAKE_PIDFILE", str(pidfile))
    pool = WorkerPool()
    w = pool.get("engine")
    try:
        w.send({"op": "build", "module": HANGS.build.__module__, "case": HANGS.name, "run": "engine",
                "quick": True, "warmup": 1, "env": _harness.WORKER_ENV})
        deadline = time.monotonic() + 120  # a hang guard: the worker has to start python twice
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            assert w.proc.poll() is None, w._stderr_tail()
            time.sleep(0.05)
        child = int(pidfile.read_text())
        assert _alive(w.pid) and _alive(child)
    finally:
        pool.close(grace_s=0.5)  # the worker never reads its quit request: it is killed
    assert not _alive(w.pid)  # (close reaped it)
    assert _dies(child)
