"""Gradserve's one glibc malloc policy: freed big buffers are reused, and memory stays bounded.

An eager step allocates and frees its activations and gradients every time, and a server reads
every request body into fresh buffers. With glibc's default malloc settings, buffers past the mmap
threshold come from fresh ``mmap``s, and the heap top freed at the end of a step is given back to
the kernel once it passes the trim threshold; either way the next step page-faults every page of
its buffers again (a transformer block step took ~3900 faults per step, ~25 % of its CPU time;
torch's took ~550). glibc's *dynamic* mmap threshold is no answer either: it rises with each big
block freed, after which megabyte blocks pile up in per-thread arenas (a server taking 10 MB
requests grew its RSS by a quarter in 25,000 requests, ``bench/load.py``).

So the policy fixes both thresholds (:data:`MMAP_BYTES`, :data:`TRIM_BYTES`: up to 64 MiB of
freed heap is kept for the next step or request; one block past 32 MiB still gets its own mapping
and is returned on free) and bounds the arenas (:data:`ARENA_MAX`), so that what is kept is kept
in few places. ``import engine`` applies it to its process with ``mallopt``; ``gradserve serve``
also puts it in the environment (``tune(export=True)``), so that the worker processes uvicorn
starts read it from their first allocation (forked workers inherit it anyway).

It changes nothing where it cannot (not glibc) or where the user chose otherwise:
``GRADSERVE_ENGINE_MALLOC=0`` turns all of it off, glibc's own ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_TOP_PAD_`` in the environment leave both thresholds to
glibc, and ``MALLOC_ARENA_MAX`` leaves the arenas to glibc.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

__all__ = ["ARENA_MAX", "MMAP_BYTES", "TRIM_BYTES", "policy", "tune"]

# glibc's ceiling for its own dynamic mmap threshold: blocks larger than this still get their
# own mapping (and are returned on free), so one huge tensor is not kept after it dies
MMAP_BYTES = 32 << 20
TRIM_BYTES = 64 << 20  # freed heap kept for reuse (glibc: "M_TRIM_THRESHOLD")
# arenas: the main one and one for the threads (event loop, engine threads), so freed buffers are
# found again by whichever thread asks next and their number does not multiply what is kept
ARENA_MAX = 2
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # <malloc.h>
_THRESHOLD_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
_ARENA_ENV = "MALLOC_ARENA_MAX"
OFF_ENV = "GRADSERVE_ENGINE_MALLOC"

tuned = False  # whether this process runs the policy's thresholds (set here, or inherited)


def policy() -> dict[str, str]:
    """The policy as glibc's environment variables (what a process reads when it starts).

    >>> policy()["MALLOC_ARENA_MAX"]
    '2'
    """
    return {"MALLOC_MMAP_THRESHOLD_": str(MMAP_BYTES), "MALLOC_TRIM_THRESHOLD_": str(TRIM_BYTES),
            _ARENA_ENV: str(ARENA_MAX)}


def _off() -> bool:
    return os.environ.get(OFF_ENV, "1").strip().lower() in ("0", "false", "no", "off")


def _mallopt() -> Callable[[int, int], int] | None:
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (glibc's; musl's mallopt does nothing)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


def tune(export: bool = False) -> bool:
    """Apply the policy to this process, except what is turned off or set by the user; with
    ``export``, also to the processes it starts (environment). Returns whether the thresholds are
    the policy's.

    >>> isinstance(tune(), bool)
    True
    """
    global tuned
    if _off():
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    ours = policy()
    user_thresholds = any(k in os.environ for k in _THRESHOLD_ENV)
    inherited = all(os.environ.get(k) == ours[k] for k in _THRESHOLD_ENV[:2]) \
        and _THRESHOLD_ENV[2] not in os.environ  # exported by a parent: the same values
    if not user_thresholds or inherited:
        # (set by us in a parent, or by nobody; the mmap threshold first: setting either one stops
        # glibc's dynamic adjustment of both)
        if not tuned:
            tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_BYTES)) \
                and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_BYTES))
        if export and tuned and not user_thresholds:
            os.environ.update({k: ours[k] for k in _THRESHOLD_ENV[:2]})
    if _ARENA_ENV not in os.environ:
        # (takes effect while no thread has needed an arena of its own yet: early, before servers
        # start their threads; the environment covers processes started from this one)
        mallopt(_M_ARENA_MAX, ARENA_MAX)
        if export:
            os.environ[_ARENA_ENV] = ours[_ARENA_ENV]
    return tuned
