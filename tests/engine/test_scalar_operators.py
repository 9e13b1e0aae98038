"""``tensor <op> Python number``: the operators' short path (``engine._autograd.scalar_operator``)
against torch, and against the engine's general path (``apply``) for the graph it records.

The short path keeps the numbers as cached read-only 0-d arrays and shares its nodes' input
metadata: the tests below reuse one number across dtypes and signs of zero, where a cache keyed
carelessly would answer with another's.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import engine
from engine import _autograd
from engine.ops import elementwise

from .parity import assert_same

OPS = {"add": lambda x, c: x + c, "radd": lambda x, c: c + x, "sub": lambda x, c: x - c,
       "rsub": lambda x, c: c - x, "mul": lambda x, c: x * c, "rmul": lambda x, c: c * x,
       "div": lambda x, c: x / c, "rdiv": lambda x, c: c / x}
FLOATS = ["float16", "float32", "float64"]


def _both(dtype: str, ndim: int, requires_grad: bool = True):
    vals = np.array([0.75, -1.5], dtype)
    data = vals if ndim else vals[1]
    return (engine.tensor(data, requires_grad=requires_grad),
            torch.tensor(data, requires_grad=requires_grad))


# (float16 takes no number it cannot hold: torch computes its ops in float32, the engine does not)
NUMBERS = [(d, c) for d in FLOATS for c in (2.5, 3, -0.0, 1e300, 2 ** 40) if d != "float16" or abs(c) < 6e4]


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize(("dtype", "c"), NUMBERS)
@pytest.mark.parametrize("ndim", [0, 1])
def test_values_and_gradients_match_torch(op, dtype, c, ndim):
    f = OPS[op]
    ex, tx = _both(dtype, ndim)
    with np.errstate(all="ignore"):
        ey = f(f(ex, c), c)  # twice: the second use of c comes from the cache
        eg = engine.autograd.grad(ey.sum(), ex)
    ty = f(f(tx, c), c)
    tg = torch.autograd.grad(ty.sum(), tx)
    assert_same((ey, eg), (ty, tg), rtol=1e-3, atol=1e-6)
    assert ey.grad_fn is not None
    assert np.array_equal(np.signbit(ey.detach().numpy()), np.signbit(ty.detach().numpy()))


def test_signed_zeros_and_nan_are_not_mixed_up_by_the_cache():
    for c in (0.0, -0.0, 0.0, -0.0, math.nan, float("nan"), 0, 1, 1.0, True):
        ex, tx = _both("float32", 1)
        ey, ty = ex * c, tx * c
        assert np.array_equal(np.signbit(ey.detach().numpy()), np.signbit(ty.detach().numpy())), c
        np.testing.assert_array_equal(ey.detach().numpy(), ty.detach().numpy())


def test_one_number_across_dtypes_and_shapes():
    for dtype in ("float32", "float64", "float16", "float64", "float32"):
        for ndim in (1, 0, 1):
            ex, tx = _both(dtype, ndim)
            ey, ty = 1.0001 * (ex * 1.0001 + 1.0001), 1.0001 * (tx * 1.0001 + 1.0001)
            assert_same((ey, engine.autograd.grad(ey.sum(), ex)), (ty, torch.autograd.grad(ty.sum(), tx)),
                        rtol=1e-3)


def test_a_number_that_overflows_the_dtype_warns_every_time():
    x = engine.tensor(np.array([1.0], np.float16))
    with np.errstate(over="ignore"):
        x * 1e300
    with np.errstate(over="raise"), pytest.raises(FloatingPointError):
        x * 1e300
    with pytest.warns(RuntimeWarning, match="overflow"):
        x * 1e300


def test_results_hold_arrays_and_the_constants_stay_read_only():
    x = engine.tensor(np.float32(0.5), requires_grad=True)
    y = x * 1.25
    assert type(y._data) is np.ndarray and y._data.shape == ()
    y._data += 1  # a result is the caller's to modify: never a cached constant
    z = engine.tensor(np.float32(0.5)) * 1.25
    assert z.item() == 0.625
    for k in _autograd._consts.values():
        assert not k.flags.writeable


@pytest.mark.parametrize("op", sorted(OPS))
def test_the_recorded_node_is_the_general_paths(op):
    # the operator builds its node inline: it must be the node apply would build
    ex, _ = _both("float32", 1)
    prim = {"add": elementwise._add, "sub": elementwise._sub, "mul": elementwise._mul,
            "div": elementwise._div}[op.removeprefix("r")]
    args = (2.0, ex) if op.startswith("r") else (ex, 2.0)
    fast = OPS[op](ex, 2.0).grad_fn
    slow = _autograd.apply(prim, args, None, ex._data.dtype).grad_fn
    for slot in _autograd.Node.__slots__:
        if slot in ("seq", "__weakref__"):
            continue
        assert hasattr(fast, slot) == hasattr(slow, slot), slot
        if hasattr(slow, slot):
            a, b = getattr(fast, slot), getattr(slow, slot)
            assert a == b or (isinstance(a, tuple) and tuple(a) == tuple(b)), (slot, a, b)


def test_no_grad_inputs_and_no_grad_mode_record_nothing():
    ex, tx = _both("float32", 1, requires_grad=False)
    assert_same(ex * 2.0 + 1, tx * 2.0 + 1)
    ex, tx = _both("float32", 1)
    with engine.no_grad():
        ey = ex * 2.0 + 1
    with torch.no_grad():
        ty = tx * 2.0 + 1
    assert_same(ey, ty)
    assert ey.grad_fn is None


def test_grad_mode_is_per_thread_for_the_operators():
    # the operators read one per-thread mode word: another thread's no_grad must not leak in
    import threading

    ex, _ = _both("float32", 1)
    inside, go, done = [], threading.Event(), threading.Event()

    def worker():
        with engine.no_grad():
            inside.append((ex * 2.0).grad_fn)
            go.set()
            done.wait(10)

    th = threading.Thread(target=worker)
    th.start()
    go.wait(10)
    outside = (ex * 2.0).grad_fn
    done.set()
    th.join()
    assert inside == [None] and outside is not None
