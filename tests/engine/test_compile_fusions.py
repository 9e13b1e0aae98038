"""engine.compile's rewrites around convolutions and max pooling (engine/nn/functional/_fusions.py)
keep eager's bits.

Each case checks that the rewrites fired (the program's ``rewrites`` count) and that the tracing
call, a replay and a replay on new values equal eager bitwise, over inputs holding -0.0, windows
of non-positive values only, NaN and inf: relu's backward moved before the pool's scatter, relu
and max_pool run in the convolution's threads, a convolution's input and weight gradients
computed in one pass, and the pool's scatter done in that pass's threads.
"""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.nn.functional as F

from .test_compile import assert_identical

# (spatial dims, conv keywords, pool keywords)
GEOMETRIES = [
    (2, {"padding": 1}, {"kernel_size": 2}),
    (2, {"padding": 1, "stride": 2, "groups": 2}, {"kernel_size": 3, "stride": 2, "padding": 1}),
    (2, {"dilation": 2}, {"kernel_size": 3, "stride": 1}),
    (2, {"padding": 1}, {"kernel_size": 2, "ceil_mode": True}),
    (1, {"padding": 2}, {"kernel_size": 2}),
    (3, {"padding": 1}, {"kernel_size": 2}),
]
POOLS = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
CONVS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _specials(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    a = a.copy()
    flat = a.reshape(-1)
    flat[::7] = -0.0
    flat[1::11] = -np.abs(flat[1::11])
    flat[rng.integers(0, flat.size, 3)] = np.nan
    flat[rng.integers(0, flat.size, 2)] = np.inf
    a.reshape(a.shape[0], -1)[0, : a[0].size // 3] = -1.0  # windows holding no positive value
    return a


def _inputs(nd: int, groups: int, dtype: type, bias: bool, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    size = {1: (23,), 2: (11, 10), 3: (6, 7, 6)}[nd]
    x = _specials(rng.standard_normal((3, 4) + size).astype(dtype), rng)
    w = rng.standard_normal((6, 4 // groups) + (3,) * nd).astype(dtype)
    b = rng.standard_normal(6).astype(dtype) if bias else None
    return x, w, b


def _block(nd: int, conv: dict, pool: dict, return_relu: bool = False):
    def f(x, w, b, t):
        y = F.relu(CONVS[nd](x, w, b, **conv))
        p = POOLS[nd](y, **pool)
        loss = (p * t).sum()
        if return_relu:  # relu's output read by something else: it must be kept
            loss = loss + y.mean()
        return (p.detach(), *engine.autograd_grad(loss, [x, w] + ([b] if b is not None else [])))
    return f


def _run(f, x, w, b, t, rewrites: int | None) -> None:
    def leaves(x, w, b):
        return (engine.tensor(x, requires_grad=True), engine.tensor(w, requires_grad=True),
                None if b is None else engine.tensor(b, requires_grad=True), engine.tensor(t))

    cf = engine.compile(f)
    assert_identical(cf(*leaves(x, w, b)), f(*leaves(x, w, b)), "tracing call")
    assert_identical(cf(*leaves(x, w, b)), f(*leaves(x, w, b)), "replay")
    x2 = x[::-1].copy()  # new values, same signature
    assert_identical(cf(*leaves(x2, w, b)), f(*leaves(x2, w, b)), "replay on new values")
    (prog,) = cf.programs()
    if rewrites is not None:
        assert prog.stats["rewrites"] == rewrites


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: f"{g[0]}d-{g[1]}-{g[2]}")
def test_conv_relu_max_pool_fused_equals_eager(geometry, dtype) -> None:
    nd, conv, pool = geometry
    x, w, b = _inputs(nd, conv.get("groups", 1), dtype, True, seed=nd)
    f = _block(nd, conv, pool)
    with np.errstate(invalid="ignore", over="ignore"):
        shape = POOLS[nd](CONVS[nd](engine.tensor(x), engine.tensor(w), None, **conv), **pool).shape
        t = np.random.default_rng(0).standard_normal(tuple(shape)).astype(dtype)
        # relu's backward moved, the forward fused, x's and w's gradients computed together, the
        # pool's scatter done in their threads
        _run(f, x, w, b, t, rewrites=4)


def test_without_bias_and_in_a_two_layer_step() -> None:
    rng = np.random.default_rng(3)
    x = _specials(rng.standard_normal((4, 3, 16, 16)).astype(np.float32), rng)
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((5, 8, 3, 3)).astype(np.float32)

    def f(x, w1, w2):
        h = F.max_pool2d(F.relu(F.conv2d(x, w1, padding=1)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, w2, padding=1)), 2)
        return engine.autograd_grad((h * h).sum(), [x, w1, w2])

    def leaves():
        return [engine.tensor(a, requires_grad=True) for a in (x, w1, w2)]

    cf = engine.compile(f)
    with np.errstate(invalid="ignore", over="ignore"):
        for what in ("tracing call", "replay"):
            assert_identical(cf(*leaves()), f(*leaves()), what)
    assert cf.programs()[0].stats["rewrites"] == 8  # 4 per layer (x requires grad: both have xgrad)


def test_a_relu_output_read_elsewhere_is_not_fused() -> None:
    x, w, b = _inputs(2, 1, np.float32, True, seed=5)
    f = _block(2, {"padding": 1}, {"kernel_size": 2}, return_relu=True)
    t = np.ones((3, 6, 5, 5), np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        # the relu's output feeds the mean and its gradient: the forward stays unfused; the
        # scatter's result is added to the mean's gradient before relu's backward: not moved;
        # the input and weight gradients are still computed together
        _run(f, x, w, b, t, rewrites=1)


def test_pool_indices_and_second_order_keep_eager_bits() -> None:
    rng = np.random.default_rng(7)
    x = _specials(rng.standard_normal((2, 3, 8, 8)), rng)
    w = rng.standard_normal((4, 3, 3, 3))
    v = rng.standard_normal((4, 3, 3, 3))

    def f(x, w, v):
        p, idx = F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2, return_indices=True)
        (gw,) = engine.autograd_grad((p * p).sum(), [w], create_graph=True)
        (hv,) = engine.autograd_grad((gw * v).sum(), [w])  # a Hessian-vector product
        return p.detach(), idx, hv

    def leaves():
        return engine.tensor(x), engine.tensor(w, requires_grad=True), engine.tensor(v)

    cf = engine.compile(f)
    with np.errstate(invalid="ignore", over="ignore"):
        for what in ("tracing call", "replay"):
            assert_identical(cf(*leaves()), f(*leaves()), what)


def test_unoptimized_programs_are_not_rewritten() -> None:
    x, w, b = _inputs(2, 1, np.float64, True, seed=9)
    f = _block(2, {"padding": 1}, {"kernel_size": 2})
    cf = engine.compile(f, optimize=False)
    t = np.ones((3, 6, 5, 5))
    leaves = (engine.tensor(x, requires_grad=True), engine.tensor(w, requires_grad=True),
              engine.tensor(b, requires_grad=True), engine.tensor(t))
    with np.errstate(invalid="ignore", over="ignore"):
        assert_identical(cf(*leaves), f(*leaves))
    assert cf.programs()[0].stats["rewrites"] == 0
