"""Keep freed activation-sized buffers in the process heap (glibc only).

An eager step allocates and frees its activations and gradients every time. With glibc's default
malloc settings, buffers past the mmap threshold come from fresh ``mmap``s, and the heap top freed
at the end of a step is given back to the kernel once it passes the trim threshold; either way
the next step page-faults every page of its buffers again (a transformer block step took ~3900
faults per step, ~25 % of its CPU time; torch's took ~550). Raising both thresholds keeps up to
:data:`TRIM_BYTES` of freed heap for the next step to reuse.

It is done once, on ``import engine``, with ``mallopt``; it changes nothing where it cannot (not
glibc) or where the user chose otherwise: ``GRADSERVE_ENGINE_MALLOC=0`` turns it off, and
glibc's own ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_TOP_PAD_`` in the
environment win.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["MMAP_BYTES", "TRIM_BYTES", "tune"]

# glibc's ceiling for its own dynamic mmap threshold: blocks larger than this still get their
# own mapping (and are returned on free), so one huge tensor is not kept after it dies
MMAP_BYTES = 32 << 20
TRIM_BYTES = 64 << 20  # freed heap kept for reuse (glibc: "M_TRIM_THRESHOLD")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
_GLIBC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")

tuned = False  # whether tune() set the thresholds in this process


def tune() -> bool:
    """Raise glibc's mmap and trim thresholds, unless turned off or set by the user; returns
    whether they were set.

    >>> isinstance(tune(), bool)
    True
    """
    global tuned
    if tuned:
        return True
    if os.environ.get("GRADSERVE_ENGINE_MALLOC", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if any(k in os.environ for k in _GLIBC_ENV):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (glibc's; musl's mallopt does nothing)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # (the mmap threshold first: setting either one stops glibc's dynamic adjustment of both)
    tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_BYTES))
    return tuned
