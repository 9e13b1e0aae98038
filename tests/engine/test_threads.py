"""The engine's thread pool (engine/_threads.py): results do not depend on the thread count.

The convolutions split their batch chunks across threads; every chunk is computed as the serial
loop computes it and per-chunk sums are added in chunk order, so values and gradients with 2 or 3
threads must be bitwise those of 1 thread. Chunk sizes are shrunk so that every layout spans
several chunks, a shorter last one included."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import engine
import engine.nn.functional as F
import engine.nn.functional._conv as conv_mod
from engine import _threads

CASES = {
    "conv2d pad": ("conv2d", (7, 4, 9, 8), (6, 4, 3, 3), {"padding": 1}),
    "conv2d groups dilation": ("conv2d", (7, 4, 9, 7), (6, 2, 3, 2),
                               {"padding": (2, 1), "dilation": (2, 3), "groups": 2}),
    "conv2d strided": ("conv2d", (7, 4, 9, 8), (6, 4, 3, 2), {"padding": (1, 2), "stride": (2, 1)}),
    "conv_transpose2d": ("conv_transpose2d", (7, 4, 5, 4), (4, 3, 3, 3), {"stride": 2, "padding": 1}),
}


@pytest.fixture
def threads():
    """Set the engine's thread count for one test; restored after it."""
    before = engine.get_num_threads()
    yield engine.set_num_threads
    engine.set_num_threads(before)


def _run(name: str, xs: tuple, ws: tuple, kw: dict, dtype: type) -> list[np.ndarray]:
    rng = np.random.default_rng(sum(map(ord, name)) + len(xs))
    x = engine.tensor(rng.standard_normal(xs).astype(dtype), requires_grad=True)
    w = engine.tensor(rng.standard_normal(ws).astype(dtype), requires_grad=True)
    y = getattr(F, name)(x, w, **kw)
    gx, gw = engine.autograd_grad((y * y).sum(), (x, w))  # wgrad and xgrad
    return [y.detach().numpy(), gx.numpy(), gw.numpy()]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("wide", [True, False], ids=["wide", "narrow"])
@pytest.mark.parametrize("case", list(CASES))
def test_convolution_bitwise_equal_across_thread_counts(case, wide, dtype, threads, monkeypatch) -> None:
    monkeypatch.setattr(conv_mod, "_CHUNK_COLS", 1 if wide else 1 << 40)
    monkeypatch.setattr(conv_mod._Layout, "step", lambda self, n, c, dt: max(1, min(2, n)))
    threads(1)
    serial = _run(*CASES[case], dtype)
    for n in (2, 3):
        threads(n)
        got = _run(*CASES[case], dtype)
        for a, b in zip(got, serial):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert a.tobytes() == b.tobytes(), f"{n} threads differ from 1 thread"


def test_cnn_step_bitwise_equal_across_thread_counts(threads) -> None:
    # the bench's CNN at its real chunk sizes (several chunks of several samples per conv)
    from bench.model_cases import cnn_inputs, cnn_loss
    params, x, y = cnn_inputs()

    def step() -> list[bytes]:
        p = [engine.tensor(a, requires_grad=True) for a in params]
        loss = cnn_loss(F, p, engine.tensor(x), engine.tensor(y))
        return [loss.detach().numpy().tobytes()] + [g.numpy().tobytes()
                                                    for g in engine.autograd_grad(loss, p)]

    threads(1)
    serial = step()
    threads(2)
    assert step() == serial


def test_run_parts_splits_in_order_across_threads(threads) -> None:
    threads(3)
    seen = []

    def part(run):
        seen.append(threading.get_ident())
        return list(run)

    parts = _threads.run_parts(part, range(10), blas=False)
    assert [i for p in parts for i in p] == list(range(10))
    assert [len(p) for p in parts] == [4, 3, 3]
    assert len(set(seen)) >= 2  # the caller took the first run, the pool the others
    threads(1)
    assert _threads.run_parts(part, range(10), blas=False) == [list(range(10))]


def test_parts_do_not_nest(threads) -> None:
    threads(2)
    inner = []

    def part(run):
        inner.append(_threads.run_parts(list, range(4), blas=False))
        return run

    _threads.run_parts(part, range(4), blas=False)
    assert inner == [[[0, 1, 2, 3]]] * 2  # a part runs a region of its own serially


def test_blas_threads_given_back(threads) -> None:
    ctl = _threads._blas_control()
    if ctl is None:
        pytest.skip("numpy's BLAS has no openblas_set_num_threads: BLAS regions run serially")
    threads(2)
    before = ctl.get()
    during = []
    _threads.run_parts(lambda run: during.append(ctl.get()), range(4))
    assert during == [1, 1]
    assert ctl.get() == before


def test_set_num_threads_rejects_zero() -> None:
    with pytest.raises(RuntimeError):
        engine.set_num_threads(0)


def test_pool_works_in_a_forked_child(threads) -> None:
    # the service runs engine work in forked children: the parent's pool threads are not there
    import multiprocessing
    import os
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    threads(2)
    _threads.run_parts(list, range(4), blas=False)  # the parent's pool exists
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()

    def child() -> None:
        q.put(_threads.run_parts(list, range(4), blas=False))

    proc = ctx.Process(target=child)
    proc.start()
    proc.join(60)  # a hang guard, not a speed check
    alive = proc.is_alive()
    if alive:
        proc.kill()
    assert not alive, "the child hung on the parent's pool"
    assert q.get(timeout=5) == [[0, 1], [2, 3]]


def test_no_thread_to_be_had_runs_on_the_caller(threads, monkeypatch) -> None:
    # under an address-space limit a new thread's stack may not be had: the caller does the work
    class NoThreads:
        def submit(self, *args, **kwargs):
            raise RuntimeError("can't start new thread")

    threads(2)
    monkeypatch.setattr(_threads, "_executor", lambda n: NoThreads())
    assert _threads.run_parts(list, range(4), blas=False) == [[0, 1], [2, 3]]


POOL_CASES = {
    "max_pool2d 2x2 float32": ((7, 5, 9, 8), np.float32, {"kernel_size": 2}),
    "max_pool2d 2x2 float64": ((7, 5, 8, 9), np.float64, {"kernel_size": 2}),
    "max_pool2d overlapping": ((7, 5, 9, 8), np.float32, {"kernel_size": 3, "stride": 2, "padding": 1}),
    "max_pool2d gaps": ((7, 5, 9, 8), np.float64, {"kernel_size": 2, "stride": 3, "ceil_mode": True}),
}


@pytest.mark.parametrize("case", list(POOL_CASES))
def test_max_pool_bitwise_equal_across_thread_counts(case, threads, monkeypatch) -> None:
    # planes are split across threads from _THREAD_MIN input elements: lowered so that these
    # small inputs split, into runs of unequal length (35 planes over 2 and 3 threads)
    from engine.nn.functional import _pooling
    monkeypatch.setattr(_pooling, "_THREAD_MIN", 1)
    shape, dtype, kw = POOL_CASES[case]
    rng = np.random.default_rng(3)
    x = np.round(rng.standard_normal(shape) * 2).astype(dtype)  # ties
    g = rng.standard_normal(F.max_pool2d(engine.tensor(x), **kw).shape).astype(dtype)

    def run() -> list[bytes]:
        xe = engine.tensor(x, requires_grad=True)
        y, idx = F.max_pool2d(xe, return_indices=True, **kw)
        (gx,) = engine.autograd_grad(y, xe, engine.tensor(g))
        return [y.detach().numpy().tobytes(), idx.numpy().tobytes(), gx.numpy().tobytes()]

    threads(1)
    serial = run()
    for n in (2, 3):
        threads(n)
        assert run() == serial, f"{n} threads differ from 1 thread"
