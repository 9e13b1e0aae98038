"""Issue 11: a compiled step's peak memory is at most eager's (MLP and CNN steps).

Peaks are numpy's allocations during one call, counted by ``tracemalloc`` (numpy reports its data
buffers to it), so they do not depend on the machine's speed or load. Each step runs once before
it is measured: the compiled function's first call is its trace, the eager one's fills caches."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

import engine
import engine.nn.functional as F


def _peak(run) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = run()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del result
    return peak


def _mlp():
    rng = np.random.default_rng(0)
    sizes = (784, 512, 512, 10)
    p = []
    for n_in, n_out in zip(sizes, sizes[1:]):
        p += [engine.tensor(rng.uniform(-0.04, 0.04, (n_in, n_out)).astype(np.float32), requires_grad=True),
              engine.tensor(rng.uniform(-0.04, 0.04, n_out).astype(np.float32), requires_grad=True)]
    x = engine.tensor(rng.standard_normal((64, 784)).astype(np.float32))
    y = engine.tensor(rng.integers(0, 10, 64))

    def step(p, x, y):
        h = x
        for i in range(3):
            h = engine.matmul(h, p[2 * i]) + p[2 * i + 1]
            if i < 2:
                h = engine.tanh(h)
        return engine.autograd_grad(F.cross_entropy(h, y), p)

    return step, (p, x, y)


def _cnn():
    rng = np.random.default_rng(1)

    def u(shape, fan_in):
        return engine.tensor(rng.uniform(-fan_in ** -0.5, fan_in ** -0.5, shape).astype(np.float32),
                             requires_grad=True)

    p = [u((16, 3, 3, 3), 27), u((16,), 27), u((32, 16, 3, 3), 144), u((32,), 144),
         u((10, 2048), 2048), u((10,), 2048)]
    x = engine.tensor(rng.standard_normal((32, 3, 32, 32)).astype(np.float32))
    y = engine.tensor(rng.integers(0, 10, 32))

    def step(p, x, y):
        h = F.max_pool2d(F.relu(F.conv2d(x, p[0], p[1], padding=1)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, p[2], p[3], padding=1)), 2)
        return engine.autograd_grad(F.cross_entropy(F.linear(h.reshape(32, -1), p[4], p[5]), y), p)

    return step, (p, x, y)


@pytest.mark.parametrize("model", [_mlp, _cnn], ids=["mlp", "cnn"])
def test_compiled_step_peaks_at_most_eager(model) -> None:
    step, args = model()
    compiled = engine.compile(step)
    want = step(*args)
    got = compiled(*args)  # the trace
    for a, b in zip(got, want):
        assert a.numpy().tobytes() == b.numpy().tobytes()
    eager = _peak(lambda: step(*args))
    replay = _peak(lambda: compiled(*args))
    assert replay <= eager, f"compiled peak {replay / 2**20:.2f} MiB > eager {eager / 2**20:.2f} MiB"
    # and not by skipping the work: the replay allocates the gradients at least
    assert replay >= sum(t.numpy().nbytes for t in want)
