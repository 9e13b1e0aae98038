"""engine/_malloc.py: on glibc, ``import engine`` keeps freed activation-sized buffers in the heap,
so a repeated step stops page-faulting its buffers again; GRADSERVE_ENGINE_MALLOC=0 turns it off.

Counted in page faults (``ru_minflt``) of a fresh interpreter, not in time."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

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


def _run(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("GRADSERVE_ENGINE_MALLOC", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                          "MALLOC_TOP_PAD_")}
    out = subprocess.run([sys.executable, "-c", _STEP], capture_output=True, text=True, check=True,
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
