"""The engine's thread pool (engine/_threads.py): results do not depend on the thread count.

The convolutions split their batch chunks across threads; every chunk is computed as the serial
loop computes it and per-chunk sums are added in chunk order, so values and gradients with 2 or 3
threads must be bitwise those of 1 thread. Chunk sizes are shrunk so that every layout spans
several chunks, a shorter last one included.

Large elementwise kernels (engine._threads.elementwise, engine._kernels) are cut into one flat
piece per thread; the tests lower ``PARALLEL_MIN`` so that small arrays are cut too, at sizes that
are no multiple of the piece alignment. (The threshold itself was measured with interleaved runs
of 1 and 2 threads at sizes 64K-4M elements, ``python -m bench.kernels --crossover``; no test
here depends on speed.)"""

from __future__ import annotations

import math
import threading
import warnings

import numpy as np
import pytest

import engine
import engine.nn.functional as F
import engine.nn.functional._conv as conv_mod
from engine import Tensor, _kernels, _threads

CASES = {
    "conv2d pad": ("conv2d", (7, 4, 9, 8), (6, 4, 3, 3), {"padding": 1}),
    "conv2d groups dilation": ("conv2d", (7, 4, 9, 7), (6, 2, 3, 2),
                               {"padding": (2, 1), "dilation": (2, 3), "groups": 2}),
    "conv2d strided": ("conv2d", (7, 4, 9, 8), (6, 4, 3, 2), {"padding": (1, 2), "stride": (2, 1)}),
    "conv_transpose2d": ("conv_transpose2d", (7, 4, 5, 4), (4, 3, 3, 3), {"stride": 2, "padding": 1}),
    # padding beyond the kernel's reach: samples and rows do not share their padding
    "conv2d wide padding": ("conv2d", (7, 4, 6, 5), (6, 4, 3, 2), {"padding": (3, 2)}),
    "conv1d": ("conv1d", (7, 4, 9), (6, 4, 3), {"padding": 1}),
    "conv3d": ("conv3d", (5, 2, 4, 5, 4), (4, 2, 2, 3, 2), {"padding": (0, 1, 1)}),
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
@pytest.mark.parametrize("split", [True, False], ids=["per-sample", "per-chunk"])
@pytest.mark.parametrize("case", list(CASES))
def test_convolution_bitwise_equal_across_thread_counts(case, split, dtype, threads, monkeypatch) -> None:
    monkeypatch.setattr(conv_mod, "_SPLIT_ROWS", 1 << 40 if split else 0)
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
    for n in (2, 3):
        threads(n)
        assert step() == serial, f"{n} threads differ from 1 thread"


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
    # one engine thread holds BLAS too: a threaded BLAS may round a GEMM otherwise
    threads(1)
    _threads.run_parts(lambda run: during.append(ctl.get()), range(4))
    assert during == [1, 1, 1]
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


# ---------------------------------------------------------------- elementwise kernels
def _specials(rng: np.random.Generator, n: int, dtype: type) -> np.ndarray:
    x = rng.standard_normal(n).astype(dtype)
    x[::97] = 0.0
    x[1::97] = -0.0
    x[2::101] = np.nan
    x[3::103] = np.inf
    x[4::107] = -np.inf
    return x


@pytest.fixture
def cut_small(monkeypatch):
    """Cut arrays of a few thousand elements across threads (the real threshold is far larger)."""
    monkeypatch.setattr(_threads, "PARALLEL_MIN", 1000)


ELEMENTWISE = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "maximum": engine.maximum,
    "minimum": engine.minimum,
    "where": lambda a, b: engine.where(a > b, a, b),
    "add scalar": lambda a, b: a + 0.5,
    "scalar div": lambda a, b: 2.0 / a,
    "relu": lambda a, b: engine.relu(a),
}
PLAIN = {  # numpy's own spelling, computed whole
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide,
    "maximum": np.maximum, "minimum": np.minimum, "where": lambda a, b: np.where(a > b, a, b),
    "add scalar": lambda a, b: a + 0.5, "scalar div": lambda a, b: 2.0 / a,
    "relu": lambda a, b: np.maximum(0, a),  # zero first: -0.0 stays -0.0, as in torch
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", list(ELEMENTWISE))
def test_elementwise_bitwise_equal_across_thread_counts(op, dtype, threads, cut_small) -> None:
    rng = np.random.default_rng(len(op))
    shape = (3, 7, 331)  # 6951 elements: pieces of unequal length, none a multiple of 64
    a = _specials(rng, 6951, dtype).reshape(shape)
    b = _specials(rng, 6951, dtype)[::-1].copy().reshape(shape)

    def run() -> tuple[bytes, ...]:
        ta, tb = engine.tensor(a, requires_grad=True), engine.tensor(b, requires_grad=True)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            out = ELEMENTWISE[op](ta, tb)
            grads = engine.autograd_grad(out, (ta, tb), engine.tensor(a[::-1].copy()), allow_unused=True)
        assert out.dtype == ta.dtype
        return (out.detach().numpy().tobytes(),) + tuple(g.numpy().tobytes() for g in grads if g is not None)

    threads(1)
    serial = run()
    with np.errstate(all="ignore"):
        assert serial[0] == np.asarray(PLAIN[op](a, b), dtype).tobytes()  # as numpy computes it whole
    for n in (2, 3):
        threads(n)
        assert run() == serial, f"{n} threads differ from 1 thread"


def test_elementwise_cuts_only_what_splits_cleanly(threads, cut_small) -> None:
    threads(2)
    seen = []
    kernel = lambda o, x, y: (seen.append(o.size), np.add(x, y, out=o))  # noqa: E731
    a = np.arange(5000.0)
    _threads.elementwise(kernel, np.empty_like(a), a, 1.0)
    assert sorted(seen) == [2440, 2560]  # two pieces, cut on a multiple of 64
    assert not _threads.splits_cleanly(a, a[:, None])  # broadcasting
    assert not _threads.splits_cleanly(a.reshape(50, 100).T, a.reshape(100, 50))  # one transposed
    assert _threads.splits_cleanly(a, np.float64(2.0), 3.0)
    # broadcast and strided operands take numpy's own path, with numpy's numbers
    x = engine.tensor(np.arange(4000.0).reshape(40, 100))
    assert ((x + x[:1]).numpy() == x.numpy() + x.numpy()[:1]).all()
    assert ((x.T * x.T).numpy() == (x.numpy().T * x.numpy().T)).all()


def test_elementwise_pieces_keep_the_callers_error_handling(threads, cut_small) -> None:
    # np.errstate is per thread: the pool's pieces must follow the caller's, not the default
    threads(2)
    zero = engine.tensor(np.zeros(6000))
    with np.errstate(divide="raise"), pytest.raises(FloatingPointError):
        engine.tensor(np.ones(6000)) / zero
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(divide="ignore"):
            assert np.isinf((engine.tensor(np.ones(6000)) / zero).numpy()).all()


def test_relu_and_its_gradient_match_torch_on_special_values(threads, cut_small) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = _specials(rng, 6000, np.float32)
    g = _specials(rng, 6000, np.float32)  # torch gives +0 where relu is 0, even for inf, NaN, -g
    for n in (1, 2):
        threads(n)
        tx = engine.tensor(x, requires_grad=True)
        y = engine.relu(tx)
        (gx,) = engine.autograd_grad(y, (tx,), engine.tensor(g))
        rx = torch.tensor(x, requires_grad=True)
        ry = torch.relu(rx)
        ry.backward(torch.tensor(g))
        # NaN where torch's, -0.0 where torch's (relu(-0.0) is -0.0, relu(-1) is +0.0)
        assert y.detach().numpy().tobytes() == ry.detach().numpy().tobytes()
        assert gx.numpy().tobytes() == rx.grad.numpy().tobytes()  # a NaN input passes g


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(), (7,), (5000,), (80, 70)])
def test_relu_keeps_torchs_signed_zeros(dtype, shape) -> None:
    # numpy's maximum(x, 0) gives +0.0 for -0.0, and its scalar and float16 loops do for
    # maximum(0, x) as well; torch keeps -0.0. Contiguous, transposed and 0-d inputs.
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(len(shape))
    x = _specials(rng, max(1, math.prod(shape)), dtype)
    x[::5] = -0.0
    x = x[:math.prod(shape)].reshape(shape)
    for a in (x, x.T):
        got = engine.relu(engine.tensor(a)).numpy()
        want = torch.relu(torch.tensor(a)).numpy()
        assert got.shape == want.shape
        assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(want).tobytes()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("n", [7, 5000])
def test_relu_gradient_is_torchs_for_any_upstream_gradient(n, dtype) -> None:
    # a broadcast upstream gradient (of sum) and one holding inf, NaN and negative values
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(n)
    x = _specials(rng, n, dtype)
    g = _specials(rng, n, dtype)[::-1].copy()
    tx, rx = engine.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    (gx,) = engine.autograd_grad(engine.relu(tx), (tx,), engine.tensor(g))
    (rg,) = torch.autograd.grad(torch.relu(rx), (rx,), torch.tensor(g))
    assert gx.numpy().tobytes() == rg.numpy().tobytes()
    (gx,) = engine.autograd_grad(engine.relu(tx).sum(), (tx,))
    (rg,) = torch.autograd.grad(torch.relu(rx).sum(), (rx,))
    assert gx.numpy().tobytes() == rg.numpy().tobytes()


# ---------------------------------------------------------------- sums over kept axes
SUMS = [((64, 16, 8, 8), (0, 2, 3), False), ((4, 16, 32, 32), (0, 2, 3), True),
        ((60, 5, 4, 300), (0, 3), False), ((70, 1000), (1,), False), ((3, 20, 40, 50), (2, 3), False),
        ((3, 8, 16, 32, 32), (1, 3, 4), False)]  # a batch of bias gradients (vmap)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,dims,keepdim", SUMS)
def test_sums_over_trailing_rows_match_torch(shape, dims, keepdim, dtype, threads) -> None:
    torch = pytest.importorskip("torch")
    assert _kernels.sum_plan(shape, np.dtype(dtype), dims, keepdim) is not None  # the fast path runs
    x = (np.random.default_rng(len(shape)).standard_normal(shape) + 0.25).astype(dtype)
    tx = engine.tensor(x, requires_grad=True)
    threads(1)
    s = engine.sum(tx, dims, keepdim=keepdim)
    got = s.detach().numpy()
    threads(2)
    assert engine.sum(tx, dims, keepdim=keepdim).detach().numpy().tobytes() == got.tobytes()
    want = torch.tensor(x).sum(dims, keepdim=keepdim).numpy()
    assert got.shape == want.shape and got.dtype == x.dtype
    scale = np.abs(x).sum(dims, keepdims=keepdim)
    tol = 1e-6 if dtype is np.float32 else 1e-14
    assert (np.abs(got - want) <= tol * scale).all()
    (g,) = engine.autograd_grad(s.sum(), (tx,))
    assert (g.numpy() == 1).all()


def test_sums_the_fast_path_leaves_to_numpy() -> None:
    f4 = np.dtype(np.float32)
    assert _kernels.sum_plan((32, 16, 32, 32), f4, (0, 2), False) is None  # the last axis kept
    assert _kernels.sum_plan((8, 16, 8, 32, 32), f4, (0, 2, 4), False) is None  # three reduced blocks
    assert _kernels.sum_plan((512, 1024), f4, (0,), False) is None  # the last axis kept
    assert _kernels.sum_plan((512, 1024), f4, (0, 1), False) is None  # everything: np.sum's pairwise sum
    assert _kernels.sum_plan((4, 8, 65536), f4, (2,), False) is None  # rows too long for running sums
    assert _kernels.sum_plan((64, 64, 64), np.dtype(np.int64), (2,), False) is None
    x = np.random.default_rng(0).standard_normal((64, 32, 64)).astype(np.float32)
    strided = x.transpose(1, 0, 2)  # not contiguous: numpy's sum, numpy's numbers
    assert _kernels.sum_fast(strided, (0, 2), False).tobytes() == np.sum(strided, (0, 2)).tobytes()
    with pytest.raises(ValueError):
        _kernels.sum_fast(x, (2, 2), False)  # numpy's error for a repeated axis


def test_compiled_sum_adds_as_eager() -> None:
    x = engine.tensor(np.random.default_rng(1).standard_normal((8, 16, 32, 32)).astype(np.float32))
    step = engine.compile(lambda t: t.sum((0, 2, 3)))
    assert step(x).numpy().tobytes() == x.sum((0, 2, 3)).numpy().tobytes()


def test_fast_paths_under_vmap_forward_ad_and_meta(threads, cut_small) -> None:
    # arrays large enough for the kernels' own paths (relu's zero blocks, the pieces, the row sums)
    from engine import _meta
    from engine.func import jvp, vmap
    threads(2)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 16, 16, 32, 32)).astype(np.float32)
    t = rng.standard_normal(x.shape).astype(np.float32)

    def f(a):
        return engine.relu(a * 2.0 + 1.0).sum((0, 2, 3))

    per = np.stack([f(engine.tensor(xi)).numpy() for xi in x])
    assert vmap(f)(engine.tensor(x)).numpy().tobytes() == per.tobytes()  # batched as one by one
    out, tangent = jvp(f, (engine.tensor(x[0]),), (engine.tensor(t[0]),))
    y = x[0] * 2.0 + 1.0
    np.testing.assert_allclose(tangent.numpy(), np.where(y > 0, t[0] * 2.0, 0).sum((0, 2, 3)), rtol=1e-5)
    with _meta.meta_mode() as m:
        a = Tensor._make(m.array((32, 16, 32, 32), np.float32))
        s = f(a)
        assert tuple(s.shape) == (16,) and s.dtype == engine.float32
        assert tuple(engine.sum(a, (0, 2, 3), keepdim=True).shape) == (1, 16, 1, 1)
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
