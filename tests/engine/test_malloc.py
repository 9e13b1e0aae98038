"""engine/_malloc.py: on glibc, ``import engine`` keeps freed activation-sized buffers in the heap,
so a repeated step stops page-faulting its buffers again; GRADSERVE_ENGINE_MALLOC=0 turns it off.

Counted in page faults (``ru_minflt``) of a fresh interpreter, not in time; the settings are read
back with ``mallinfo2`` (whether a block got its own mapping) and from the calls to ``mallopt``."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

from engine import _malloc as m
from tests._require import require

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A "step": forty 1 MiB buffers alive together, then all freed (like a step's activations).
_STEP = """
import json, resource, sys
import numpy as np
import engine, engine._malloc as m

def step():
    bufs = [np.ones(1 << 18, np.float32) for _ in range(40)]
    return sum(float(b[0]) for b in bufs)

for _ in range(3):
    step()
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 10
print(json.dumps({"tuned": m.tuned, "faults": faults}))
"""


def _glibc() -> bool:
    try:
        ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018
        return True
    except (OSError, AttributeError):
        return False


# Source for scripts run in fresh interpreters (here and tests/service/test_cli.py): ``mapped(n)``
# says whether glibc gives a block of n bytes its own mapping (mallinfo2's count of mapped blocks
# goes up).
MAPPED = """
import ctypes

class _Info(ctypes.Structure):
    _fields_ = [(k, ctypes.c_size_t) for k in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

_libc = ctypes.CDLL(None)
_libc.mallinfo2.restype = _Info
_libc.malloc.restype, _libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]

def mapped(n):
    before = _libc.mallinfo2().hblks
    p = _libc.malloc(n)
    out = _libc.mallinfo2().hblks > before
    _libc.free(p)
    return out
"""
# Under the policy's fixed 32 MiB threshold a 4 MiB block comes from the heap, a 48 MiB one is mapped.
PROBE = MAPPED + """
import json
import engine, engine._malloc as m

print(json.dumps({"tuned": m.tuned, "mapped_4mib": mapped(4 << 20), "mapped_48mib": mapped(48 << 20)}))
"""
MALLOC_ENV = ("GRADSERVE_ENGINE_MALLOC", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
              "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX")


def glibc_with_mallinfo2() -> bool:
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018
        libc.mallinfo2  # noqa: B018  (glibc 2.33+)
        return sys.platform.startswith("linux")
    except (OSError, AttributeError):
        return False


def _run(code: str = _STEP, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**clean, **env}, cwd=_ROOT)
    return json.loads(out.stdout)


def test_freed_buffers_are_reused_without_page_faults():
    require(sys.platform.startswith("linux") and _glibc(), "needs Linux with glibc (mallopt)")
    on, off = _run(), _run(GRADSERVE_ENGINE_MALLOC="0")
    assert on["tuned"] and not off["tuned"]
    step_pages = 40 * (1 << 20) // 4096
    assert off["faults"] > step_pages / 2  # glibc's defaults: the buffers are faulted in again
    assert on["faults"] < step_pages / 20


@pytest.mark.parametrize("var", ["MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"])
def test_the_users_glibc_settings_win(var):
    require(sys.platform.startswith("linux") and _glibc(), "needs Linux with glibc (mallopt)")
    assert not _run(**{var: str(1 << 20)})["tuned"]


def test_the_policy_is_read_back_from_glibc():
    require(glibc_with_mallinfo2(), "needs Linux with glibc 2.33+ (mallinfo2)")
    on = _run(PROBE)
    assert on == {"tuned": True, "mapped_4mib": False, "mapped_48mib": True}
    user = _run(PROBE, MALLOC_MMAP_THRESHOLD_=str(1 << 20))  # the user's threshold rules
    assert user == {"tuned": False, "mapped_4mib": True, "mapped_48mib": True}


class FakeLibc:
    """``mallopt`` calls recorded instead of made."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 1


@pytest.fixture
def fake(monkeypatch):
    for k in MALLOC_ENV:
        monkeypatch.delenv(k, raising=False)
    libc = FakeLibc()
    monkeypatch.setattr(m, "_mallopt", lambda: libc)
    monkeypatch.setattr(m, "tuned", False)
    return libc


M_TRIM, M_MMAP, M_ARENA = -1, -3, -8  # <malloc.h>


def test_tune_sets_thresholds_and_arenas(fake):
    assert m.tune()
    assert fake.calls == [(M_MMAP, m.MMAP_BYTES), (M_TRIM, m.TRIM_BYTES), (M_ARENA, m.ARENA_MAX)]
    assert not any(k in os.environ for k in MALLOC_ENV)  # the engine alone exports nothing


def test_export_puts_the_policy_in_the_environment(fake):
    assert m.tune(export=True)
    assert {k: os.environ[k] for k in m.policy()} == {"MALLOC_MMAP_THRESHOLD_": str(32 << 20),
                                                      "MALLOC_TRIM_THRESHOLD_": str(64 << 20),
                                                      "MALLOC_ARENA_MAX": "2"}
    fake.calls.clear()
    m.tuned = False  # a process started with that environment: the same policy, not the user's
    assert m.tune()
    assert fake.calls == [(M_MMAP, m.MMAP_BYTES), (M_TRIM, m.TRIM_BYTES)]


@pytest.mark.parametrize("var", ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"])
def test_a_users_threshold_leaves_both_thresholds_to_glibc(fake, monkeypatch, var):
    monkeypatch.setenv(var, "4096")
    assert not m.tune(export=True)
    assert fake.calls == [(M_ARENA, m.ARENA_MAX)]
    assert os.environ[var] == "4096"
    assert [k for k in m.policy() if k in os.environ and k != var] == ["MALLOC_ARENA_MAX"]


def test_a_users_arena_max_wins(fake, monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert m.tune(export=True)
    assert (M_ARENA, m.ARENA_MAX) not in fake.calls and os.environ["MALLOC_ARENA_MAX"] == "8"


@pytest.mark.parametrize("value", ["0", "off", "false"])
def test_gradserve_engine_malloc_0_turns_it_all_off(fake, monkeypatch, value):
    monkeypatch.setenv("GRADSERVE_ENGINE_MALLOC", value)
    assert not m.tune(export=True)
    assert fake.calls == [] and not any(k in os.environ for k in MALLOC_ENV[1:])
