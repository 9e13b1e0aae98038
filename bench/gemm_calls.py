"""Recording a step's matrix products and replaying them per library (numpy, scipy, BLIS,
torch): the ground :mod:`bench.gemm`'s table and the main bench's ``mlp_gemms`` row stand on.

>>> calls = record(lambda: np.matmul(np.ones((2, 3)), np.ones((3, 4))))  # np.matmul, as the engine calls it
>>> [(a.shape, b.shape) for a, b, _ in calls]
[((2, 3), (3, 4))]
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import numpy as np

LIBS = ("numpy", "scipy", "blis", "torch")


# ---------------------------------------------------------------- recording a step's products
def _like(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` in its memory layout: C-ordered stays C, a transposed matrix stays one."""
    if a.ndim >= 2 and not a.flags.c_contiguous and np.swapaxes(a, -1, -2).flags.c_contiguous:
        return np.ascontiguousarray(np.swapaxes(a, -1, -2)).swapaxes(-1, -2)
    return np.ascontiguousarray(a)


@contextmanager
def _recording(calls: list):
    real = np.matmul

    def matmul(a, b, *args, **kwargs):
        out = kwargs.get("out")
        if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and not args:
            calls.append((_like(a), _like(b), out is not None))
        return real(a, b, *args, **kwargs)

    np.matmul = matmul
    try:
        yield
    finally:
        np.matmul = real


def record(step: Callable[[], object]) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """The ``(a, b, had_out)`` of every ``np.matmul`` one run of ``step`` makes."""
    calls: list = []
    with _recording(calls):
        step()
    return calls


# ---------------------------------------------------------------- one library's run over the products
def _numpy_run(calls: list) -> Callable[[], list]:
    outs = [np.empty(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1]),
                     np.result_type(a, b)) if o else None for a, b, o in calls]
    mm = np.matmul

    def run() -> list:
        return [mm(a, b, out=o) if o is not None else mm(a, b) for (a, b, _), o in zip(calls, outs)]
    return run


def _torch_run(calls: list) -> Callable[[], list] | None:
    try:
        import torch
    except ImportError:
        return None
    tc = [(torch.from_numpy(a), torch.from_numpy(b)) for a, b, _ in calls]
    mm = torch.matmul

    def run() -> list:
        return [mm(a, b) for a, b in tc]
    return run


def _mats(a: np.ndarray, b: np.ndarray):
    """The 2-D products of a (possibly batched) matmul."""
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    if not batch:
        return [(a, b)]
    a = np.broadcast_to(a, batch + a.shape[-2:]).reshape((-1,) + a.shape[-2:]) if a.ndim > 2 else a
    b = np.broadcast_to(b, batch + b.shape[-2:]).reshape((-1,) + b.shape[-2:]) if b.ndim > 2 else b
    n = int(np.prod(batch))
    return [(a[i] if a.ndim > 2 else a, b[i] if b.ndim > 2 else b) for i in range(n)]


def _fortran(x: np.ndarray) -> tuple[np.ndarray, int]:
    """``x`` as a Fortran-ordered operand and its BLAS trans flag, without copying if possible."""
    if x.flags.f_contiguous:
        return x, 0
    if x.flags.c_contiguous:
        return x.T, 1
    return np.asfortranarray(x), 0


def _scipy_run(calls: list) -> Callable[[], list] | None:
    try:
        from scipy.linalg import blas
    except ImportError:
        return None
    plans = []
    for a, b, _ in calls:
        fn = blas.sgemm if np.result_type(a, b) == np.float32 else blas.dgemm
        mats = []
        for a2, b2 in _mats(a, b):
            # C = A B is C^T = B^T A^T: Fortran operands B^T, A^T give a Fortran C^T, i.e. C in C order
            (x, tx), (y, ty) = _fortran(b2.T), _fortran(a2.T)
            mats.append((x, y, tx, ty))
        plans.append((fn, mats))

    def run() -> list:
        res = []
        for fn, mats in plans:
            res.append([fn(1.0, x, y, trans_a=tx, trans_b=ty).T for x, y, tx, ty in mats])
        return res
    return run


def _blis_run(calls: list) -> Callable[[], list] | None:
    try:
        from blis.py import gemm
    except ImportError:
        return None
    plans = []
    for a, b, _ in calls:
        mats = []
        for a2, b2 in _mats(a, b):
            ta, tb = not a2.flags.c_contiguous, not b2.flags.c_contiguous
            x = np.ascontiguousarray(a2.T) if ta else a2  # a transposed view: its C-ordered base
            y = np.ascontiguousarray(b2.T) if tb else b2
            mats.append((x, y, ta, tb))
        plans.append(mats)

    def run() -> list:
        return [[gemm(x, y, trans1=ta, trans2=tb) for x, y, ta, tb in mats] for mats in plans]
    return run


def runs_for(calls: list, libs: tuple[str, ...] = LIBS) -> dict[str, Callable[[], list]]:
    makers = {"numpy": _numpy_run, "scipy": _scipy_run, "blis": _blis_run, "torch": _torch_run}
    out = {}
    for lib in libs:
        run = makers[lib](calls)
        if run is not None:
            out[lib] = run
    return out




def bound_runs(step: Callable[[], object]) -> dict[str, Callable[[], list]]:
    """A case's ``gemm_numpy`` and ``gemm_torch`` runs (:data:`bench._harness.GEMM_RUNS`): the
    matrix products of one call of the engine's ``step``, replayed by numpy and by torch."""
    return {"gemm_" + lib: run for lib, run in runs_for(record(step), ("numpy", "torch")).items()}
