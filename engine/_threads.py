"""A small thread pool for model-sized numpy work (numpy releases the GIL in its loops and in BLAS).

Ops whose numpy forward walks a batch in independent chunks (the convolutions' im2col + GEMM)
hand the chunks to :func:`run_parts`: with more than one thread each thread takes a contiguous
run of chunks, with the same chunk boundaries as the serial loop, so every chunk computes the
same numbers; the callers combine per-chunk results in chunk order. Results are therefore
bitwise those of one thread (``tests/engine/test_threads.py``). That needs every GEMM to run on
one BLAS thread whatever the pool's size: a threaded OpenBLAS rounds some shapes differently
(0.3.31 on AVX-512 does for long inner dimensions that are odd multiples of 16).

The pool's size is ``engine.set_num_threads(n)`` (``torch.set_num_threads``), by default the
cores this process may run on (``os.sched_getaffinity``), at most 4, or ``GRADSERVE_ENGINE_THREADS``
when set. While a region of several chunks runs GEMMs, numpy's OpenBLAS is held to one thread (so
that the pool's threads and BLAS's never oversubscribe the cores, and for the rounding above);
where that cannot be done (a BLAS without ``openblas_set_num_threads``), regions that call BLAS
run serially. A single chunk runs on the calling thread with BLAS's own threads.

Elementwise kernels on large arrays (relu, its backward, the binary arithmetic ufuncs) go through
:func:`elementwise`: the flat arrays are cut into one contiguous piece per thread and each thread
writes its piece of the output. Every element is computed by the same scalar code whatever the
cut, so the results are bitwise those of one thread.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["get_num_threads", "set_num_threads", "run_parts", "elementwise", "PARALLEL_MIN"]

MAX_DEFAULT = 4


def _default_threads() -> int:
    env = os.environ.get("GRADSERVE_ENGINE_THREADS")
    if env:
        return max(1, int(env))
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_DEFAULT))


_n: int | None = None
_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()
_local = threading.local()  # .inside: this thread runs a part (no nested regions)


def get_num_threads() -> int:
    """Threads the engine uses for model-sized ops (``torch.get_num_threads``).

    >>> engine.get_num_threads() >= 1
    True
    """
    global _n
    if _n is None:
        _n = _default_threads()
    return _n


def set_num_threads(n: int) -> None:
    """Set the threads the engine uses for model-sized ops (``torch.set_num_threads``); 1 runs
    everything on the calling thread. Results do not depend on it.

    >>> engine.set_num_threads(1)
    """
    global _n, _pool
    n = int(n)
    if n < 1:
        raise RuntimeError("set_num_threads expects a positive integer")
    with _lock:
        _n = n
        if _pool is not None and _pool._max_workers != n - 1:
            _pool.shutdown(wait=False)
            _pool = None


def _executor(n: int) -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(n - 1, thread_name_prefix="engine")
        return _pool


# ---------------------------------------------------------------- holding BLAS to one thread
class _Blas:
    """numpy's OpenBLAS thread setting, found among the loaded libraries (None when absent)."""

    def __init__(self) -> None:
        self.get: Callable[[], int] | None = None
        self.set: Callable[[int], None] | None = None
        self.users = 0
        self.saved = 1
        self.lock = threading.Lock()
        # (numpy, imported above, has loaded its BLAS: /proc/self/maps lists it)
        try:
            with open("/proc/self/maps") as f:
                paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
        except OSError:
            return
        for path in sorted(paths):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", ""), ("openblas", "")):
                try:
                    get = getattr(lib, f"{prefix}_get_num_threads{suffix}")
                    set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}")
                except AttributeError:
                    continue
                get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                self.get, self.set = get, set_
                return

    def hold(self) -> None:
        with self.lock:
            if self.users == 0:
                self.saved = self.get()
                if self.saved != 1:
                    self.set(1)
            self.users += 1

    def release(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users == 0 and self.saved != 1:
                self.set(self.saved)


_blas: _Blas | None = None


def _blas_control() -> _Blas | None:
    global _blas
    if _blas is None:
        _blas = _Blas()
    return _blas if _blas.set is not None else None


# ---------------------------------------------------------------- parallel regions
def split(n: int, parts: int) -> list[range]:
    """``range(n)`` cut into at most ``parts`` contiguous, non-empty runs of near-equal length."""
    parts = max(1, min(parts, n))
    q, r = divmod(n, parts)
    out, start = [], 0
    for i in range(parts):
        stop = start + q + (i < r)
        out.append(range(start, stop))
        start = stop
    return out


def run_parts(fn: Callable[[Sequence[Any]], Any], items: Sequence[Any], blas: bool = True) -> list:
    """``[fn(run) for run in runs]`` over contiguous runs of ``items``, one run per thread (in
    order); a single run ``[fn(items)]`` when the pool has one thread, there is one item, the
    caller is itself a part, or ``blas`` work cannot be kept from oversubscribing. Over several
    items BLAS is held to one thread however many the pool has (one included)."""
    n = get_num_threads()
    if len(items) < 2 or getattr(_local, "inside", False):
        return [fn(items)]
    ctl = _blas_control() if blas else None
    if blas and ctl is None:
        return [fn(items)]
    runs = [items[r.start:r.stop] for r in split(len(items), n)]
    if ctl is not None:  # with one thread too: its GEMMs must round as the parts' do
        ctl.hold()
    futures = []
    try:
        try:
            if len(runs) > 1:
                ex = _executor(n)
                for run in runs[1:]:
                    futures.append(ex.submit(_part, fn, run))
        except RuntimeError:
            pass  # no thread to be had (an address-space limit, as in the service's forked runs)
        first = _part(fn, runs[0])  # the calling thread takes the first run
        rest = [_part(fn, run) for run in runs[1 + len(futures):]]  # what no thread took
        return [first] + [f.result() for f in futures] + rest
    finally:
        for f in futures:  # (after an error: BLAS is given back only once every part is done)
            f.exception()
        if ctl is not None:
            ctl.release()


def _after_fork_in_child() -> None:
    # A forked child (the service runs engine work in forked children) has none of the parent's
    # pool threads: a new pool is made on first use. A region the parent was running in another
    # thread is not running here: give BLAS its threads back.
    global _pool, _lock, _local
    _pool = None
    _lock = threading.Lock()
    _local = threading.local()
    if _blas is not None and _blas.set is not None:
        _blas.lock = threading.Lock()
        if _blas.users:
            _blas.users = 0
            if _blas.saved != 1:
                _blas.set(_blas.saved)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _part(fn: Callable, run: Sequence[Any]) -> Any:
    _local.inside = True
    try:
        return fn(run)
    finally:
        _local.inside = False


# ---------------------------------------------------------------- elementwise kernels
# Below this many elements a kernel runs on the calling thread. Handing a piece to a pool thread
# and waiting for it costs ~40-70 us on a shared 2-core VM, and a memory-bound float32 kernel
# gains little from a second core: measured there (interleaved medians, 2 threads / 1 thread, wall
# time), add and relu break even at 1M-2M elements (0.97-1.06 at 1M and 2M, 0.75 at 4M), relu's
# backward at ~700K (1.07 at 512K, 0.81 at 1M): python -m bench.kernels --crossover. Under
# heavier load (other processes on both cores) 2 threads lost at every size up to 4M.
PARALLEL_MIN = 1 << 20
_ALIGN = 64  # piece boundaries on multiples of 64 elements: whole cache lines, aligned SIMD runs


def splits_cleanly(*arrays: Any) -> bool:
    """Whether :func:`elementwise` may cut these operands: numpy arrays of one shape, all
    C-contiguous (Python scalars and 0-d arrays ride along whole)."""
    shape = None
    for a in arrays:
        if type(a) is not np.ndarray or a.ndim == 0:
            continue
        if shape is None:
            shape = a.shape
        elif a.shape != shape:
            return False
        if not a.flags.c_contiguous:
            return False
    return shape is not None


def elementwise(kernel: Callable[..., Any], out: Any, *operands: Any) -> Any:
    """Run ``kernel(out_piece, *operand_pieces)`` over contiguous flat pieces of ``out`` and of the
    same-shaped C-contiguous ``operands`` (Python scalars and 0-d arrays are passed whole), one
    piece per thread; on the calling thread alone when the array is under :data:`PARALLEL_MIN`
    elements or the pool has one thread. Returns ``out``.

    >>> import numpy as np
    >>> a = np.arange(6.0).reshape(2, 3)
    >>> elementwise(lambda o, x, y: np.add(x, y, out=o), np.empty_like(a), a, 1.0)[1]
    array([4., 5., 6.])
    """
    n = out.size
    parts = get_num_threads()
    if n < PARALLEL_MIN or parts <= 1 or getattr(_local, "inside", False):
        kernel(out, *operands)
        return out
    flat_out = out.reshape(-1)
    flat = [a.reshape(-1) if type(a) is np.ndarray and a.ndim else a for a in operands]
    step = -(-n // parts // _ALIGN) * _ALIGN
    cuts = list(range(0, n, step)) + [n]
    err = np.geterr()  # the caller's floating-point error handling (np.errstate is per thread)

    def run(pieces: Sequence[int]) -> None:
        with np.errstate(**err):
            for i in pieces:
                lo, hi = cuts[i], cuts[i + 1]
                kernel(flat_out[lo:hi], *[a[lo:hi] if type(a) is np.ndarray and a.ndim else a for a in flat])

    run_parts(run, range(len(cuts) - 1), blas=False)
    return out


