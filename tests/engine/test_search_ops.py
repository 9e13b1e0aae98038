"""nonzero/argwhere, unique, isclose/allclose/equal, randperm, new_tensor/new_empty and torch's
refusal of negative slice steps, against torch (the oracle). torch's OpInfo samples cover the
ops it has OpInfos for (tests/engine/test_opinfo.py); these are the cases they do not reach:
0-d inputs, NaN, the inverse and counts, the Python-bool results, and meta mode, where the
value-dependent sizes must be upper bounds (the service sizes its memory by them)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

import engine
from engine import _meta


def _same(fn: Callable) -> None:
    out = []
    for lib in (engine, torch):
        try:
            r = fn(lib)
        except Exception as e:  # noqa: BLE001 (compared with torch's)
            r = (type(e).__name__, str(e))
        out.append(r)
    e, t = out
    if isinstance(t, tuple) and t and isinstance(t[0], str):
        assert e == t
        return
    _compare(e, t)


def _compare(e: object, t: object) -> None:
    if isinstance(t, torch.Tensor):
        assert isinstance(e, engine.Tensor), (e, t)
        assert str(e.dtype).split(".")[-1] == str(t.dtype).split(".")[-1]
        assert tuple(e.shape) == tuple(t.shape)
        np.testing.assert_array_equal(e.numpy(), t.numpy())
    elif isinstance(t, (tuple, list)):
        assert len(e) == len(t)
        for a, b in zip(e, t):
            _compare(a, b)
    else:
        assert e == t, (e, t)


NAN = float("nan")


@pytest.mark.parametrize("values", [5.0, 0.0, [[0.0, 1.5], [NAN, 0.0]], [[]], [0, 0, 3], [True, False]],
                         ids=str)
@pytest.mark.parametrize("as_tuple", [False, True])
def test_nonzero_as_torch(values: object, as_tuple: bool) -> None:
    _same(lambda lib: lib.nonzero(lib.tensor(values), as_tuple=as_tuple))
    _same(lambda lib: lib.tensor(values).nonzero(as_tuple=as_tuple))
    if not as_tuple:
        _same(lambda lib: lib.argwhere(lib.tensor(values)))


_UNIQUE_VALUES = [[3.0, 1.0, 3.0, -0.0, 0.0], [[2, 1], [2, 1], [0, 5]], [], [True, False, True], 7]


# (torch's unique(dim=) keeps every 1-element slice of [3, nan, 1, nan, 3, -0, 0]: not followed)
@pytest.mark.parametrize("values, dim", [([3.0, NAN, 1.0, NAN, 3.0, -0.0, 0.0], None)] +
                         [(v, d) for v in _UNIQUE_VALUES for d in (None, 0)], ids=str)
def test_unique_with_inverse_and_counts_as_torch(values: object, dim: int | None) -> None:
    for inv in (False, True):
        for counts in (False, True):
            _same(lambda lib, i=inv, c=counts: lib.unique(lib.tensor(values), return_inverse=i,
                                                          return_counts=c, dim=dim))


def test_unique_does_not_require_grad() -> None:
    x = engine.tensor([2.0, 1.0, 2.0], requires_grad=True)
    assert not engine.unique(x).requires_grad and not x.nonzero().requires_grad


@pytest.mark.parametrize("a, b, kw", [
    ([1.0, NAN, float("inf"), -float("inf"), 1e-9], [1.0 + 1e-7, NAN, float("inf"), float("inf"), 0.0], {}),
    ([1.0, NAN], [1.0, NAN], {"equal_nan": True}),
    ([1.0, 2.0], [1.1, 2.0], {"rtol": 0.2, "atol": 0}),
    ([1.0, 2.0], [1.0, 2.0], {"rtol": -1.0}),
    ([1, 2], [1, 3], {}),
    ([1, 2], [1.0, 2.0], {}),
    ([True, False], [True, True], {}),
])
def test_isclose_allclose_equal_as_torch(a: list, b: list, kw: dict) -> None:
    _same(lambda lib: lib.isclose(lib.tensor(a), lib.tensor(b), **kw))
    _same(lambda lib: lib.allclose(lib.tensor(a), lib.tensor(b), **kw))
    _same(lambda lib: lib.tensor(a).allclose(lib.tensor(b), **kw))
    _same(lambda lib: lib.equal(lib.tensor(a), lib.tensor(b)))
    _same(lambda lib: lib.tensor(a).equal(lib.tensor(a)))
    _same(lambda lib: lib.equal(lib.tensor(a), lib.tensor(a + a)))


def test_randperm_new_tensor_new_empty_as_torch() -> None:
    for n in (0, 1, 7):
        p = engine.randperm(n)
        assert p.dtype == engine.int64 and sorted(p.tolist()) == list(range(n))
    assert engine.randperm(4, dtype=engine.float64).dtype == engine.float64
    engine.manual_seed(3)
    a = engine.randperm(50).tolist()
    engine.manual_seed(3)
    assert engine.randperm(50).tolist() == a and a != sorted(a)
    _same(lambda lib: lib.randperm(-1))
    _same(lambda lib: lib.randperm(2.5))
    _same(lambda lib: lib.ones(2, dtype=lib.float64).new_tensor([1, 2]))
    _same(lambda lib: lib.ones(2).new_tensor([1, 2], dtype=lib.int64))
    _same(lambda lib: (tuple(lib.ones(2).new_empty(2, 3).shape), str(lib.ones(2).new_empty((2,)).dtype)[-7:]))


def test_negative_and_zero_slice_steps_are_refused_as_torch() -> None:
    _same(lambda lib: lib.arange(5)[::-1])
    _same(lambda lib: lib.arange(5)[::0])
    _same(lambda lib: lib.arange(5)[4:0:-2])
    _same(lambda lib: lib.arange(5)[1::2])


def test_value_dependent_sizes_are_upper_bounds_in_meta_mode() -> None:
    # the service's preflight sizes memory and work by these: a bound must not be below the truth
    with _meta.meta_mode() as m:  # (integer placeholders are 0: a count of them would be 0)
        i = engine.from_numpy(m.array((40, 30), "int64"))
        assert tuple(engine.nonzero(i).shape) == (1200, 2) and m.inexact
    with _meta.meta_mode() as m:  # a broadcast comparison is sized, not computed
        a = engine.from_numpy(m.array((50000, 1), "float32"))
        b = engine.from_numpy(m.array((1, 50000), "float32"))
        c = engine.isclose(a, b)
        assert tuple(c.shape) == (50000, 50000) and _meta.is_meta(c._data)
    with _meta.meta_mode() as m:
        x = engine.from_numpy(m.array((40, 30), "float32"))
        assert tuple(engine.nonzero(x).shape) == (1200, 2)
        assert tuple(engine.unique(x).shape) == (1200,)
        assert tuple(engine.unique(x, dim=0).shape) == (40, 30)
        vals, inv, counts = engine.unique(x, return_inverse=True, return_counts=True)
        assert (tuple(inv.shape), tuple(counts.shape)) == ((40, 30), (1200,))
        assert m.inexact


@pytest.mark.parametrize("call", [
    lambda lib: lib.multinomial(lib.tensor([0.0, 1.0]), 3),
    lambda lib: lib.multinomial(lib.tensor([0.0, 0.0]), 1),
    lambda lib: lib.multinomial(lib.tensor([-1.0, 1.0]), 1),
    lambda lib: lib.multinomial(lib.tensor([NAN, 1.0]), 1),
    lambda lib: lib.multinomial(lib.tensor([1.0, 1.0]), 0),
    lambda lib: lib.multinomial(lib.tensor(1.0), 1),
    lambda lib: lib.multinomial(lib.tensor([1, 2]), 1),
    lambda lib: lib.multinomial(lib.tensor([0.0, 1.0, 0.0]), 2),  # zeros come after the rest
    lambda lib: lib.multinomial(lib.zeros(0, 3), 2).shape,
])
def test_multinomial_errors_and_edges_as_torch(call: Callable) -> None:
    _same(call)


def test_multinomial_draws_follow_the_probabilities() -> None:
    # (random: the frequencies over 40,000 draws, 5 standard deviations of slack)
    engine.manual_seed(0)
    x = engine.multinomial(engine.tensor([1.0, 3.0]), 40_000, replacement=True).numpy()
    assert abs((x == 1).mean() - 0.75) < 5 * (0.75 * 0.25 / 40_000) ** 0.5
    first = engine.multinomial(engine.tensor([[1.0, 2.0, 7.0]] * 20_000), 2).numpy()
    freq = np.bincount(first[:, 0], minlength=3) / 20_000
    assert np.all(np.abs(freq - [0.1, 0.2, 0.7]) < 5 * np.sqrt(0.25 / 20_000))
    assert (first[:, 0] != first[:, 1]).all()  # without replacement
