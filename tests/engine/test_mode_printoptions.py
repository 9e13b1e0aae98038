"""engine.mode and engine.set_printoptions against torch: mode's values, indices (torch's CPU
choice among ties and NaN), gradients and errors; tensor reprs under several print options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import engine

from .parity import TDT, assert_same_error

_R = np.random.default_rng(7)


def _check_mode(a: np.ndarray, *args: object, **kw: object) -> None:
    """Values, indices, dtypes and the gradient of the values equal torch's."""
    e_in, t_in = engine.tensor(a), torch.tensor(a)
    grad = a.dtype.kind == "f"
    if grad:
        e_in.requires_grad_(True)
        t_in.requires_grad_(True)
    e, t = engine.mode(e_in, *args, **kw), torch.mode(t_in, *args, **kw)
    assert type(e).__name__ == "mode" and e._fields == ("values", "indices")
    assert TDT[e.values.dtype] == t.values.dtype and TDT[e.indices.dtype] == t.indices.dtype
    np.testing.assert_array_equal(e.indices.numpy(), t.indices.numpy())
    ev, tv = e.values.detach().numpy(), t.values.detach().numpy()
    np.testing.assert_array_equal(ev, tv)
    np.testing.assert_array_equal(np.signbit(ev), np.signbit(tv))  # -0.0 and 0.0 tie: which one
    if grad and t.values.numel():
        w = np.arange(1.0, t.values.numel() + 1).reshape(t.values.shape).astype(a.dtype)
        (e.values * engine.tensor(w)).sum().backward()
        (t.values * torch.tensor(w)).sum().backward()
        np.testing.assert_array_equal(e_in.grad.numpy(), t_in.grad.numpy())


@pytest.mark.parametrize("a", [
    np.array([1.0, 2.0, 2.0, 1.0, 3.0, 1.0, 2.0]),
    np.array([3.0, 3.0, 1.0, 1.0, 2.0]),
    np.array([0.0, -0.0, 1.0, -0.0]),
    np.array([np.inf, np.inf, 1.0, -np.inf]),
    np.array([np.nan, 1.0, np.nan, 2.0, 2.0]),
    np.array([np.nan, 1.0, np.nan, 2.0]),
    np.array([np.nan, np.nan, np.nan]),
    np.array([5.0]),
], ids=lambda a: str(a.tolist()))
def test_mode_ties_and_nan(a: np.ndarray) -> None:
    _check_mode(a)


def test_mode_long_rows_follow_torchs_introsort() -> None:
    # beyond 16 elements std::sort is not stable: the index is not simply the last occurrence
    for n in (17, 40, 200, 1500):
        for k in (2, 5, 30):
            _check_mode(_R.integers(0, k, (3, n)).astype(np.float64))
    a = _R.integers(0, 4, (2, 300)).astype(np.float32)
    a[_R.random(a.shape) < 0.1] = np.nan
    _check_mode(a)
    _check_mode(np.sort(_R.integers(0, 6, 100)).astype(np.float64))


def test_mode_many_short_rows() -> None:
    # rows of up to 16 take a vectorized path; rows with NaN replay std::sort
    for n in range(1, 18):
        ints = _R.integers(-2, 3, (300, n))
        _check_mode(ints.astype(np.int32))
        a = ints.astype(np.float64)
        a[a == 2] = -0.0
        a[_R.random(a.shape) < 0.03] = np.nan
        _check_mode(a)


@pytest.mark.parametrize("dim", [-3, -2, -1, 0, 1, 2])
@pytest.mark.parametrize("keepdim", [False, True])
def test_mode_dims(dim: int, keepdim: bool) -> None:
    _check_mode(_R.integers(0, 4, (3, 20, 5)).astype(np.float32), dim, keepdim)
    _check_mode(_R.integers(0, 4, (3, 20, 5)).astype(np.float64), dim=dim, keepdim=keepdim)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_, np.float16])
def test_mode_dtypes(dtype: type) -> None:
    _check_mode(_R.integers(0, 3, (4, 25)).astype(dtype), 1)
    _check_mode(_R.integers(0, 3, (4, 7)).astype(dtype), 0, True)


def test_mode_0d_and_empty() -> None:
    _check_mode(np.array(2.5))
    _check_mode(np.array(2.5), 0, True)
    _check_mode(np.array(2.5), -1)
    _check_mode(np.zeros((2, 0)), 0)
    _check_mode(np.zeros((2, 0)), 0, True)
    _check_mode(np.zeros((0, 2)), 1)


@pytest.mark.parametrize("fn", [
    lambda m: m.mode(m.zeros(0)),
    lambda m: m.mode(m.zeros(0, 2), 0),
    lambda m: m.mode(m.zeros(0, 2), -2),
    lambda m: m.mode(m.zeros(3), 1),
    lambda m: m.mode(m.zeros(0), 3),
    lambda m: m.mode(m.tensor(1.0), 1),
    lambda m: m.zeros(2, 3).mode(-3),
])
def test_mode_errors(fn: object) -> None:
    assert_same_error(fn)


def test_mode_method_and_keywords() -> None:
    a = _R.integers(0, 3, (4, 6)).astype(np.float64)
    e, t = engine.tensor(a).mode(dim=0, keepdim=True), torch.tensor(a).mode(dim=0, keepdim=True)
    np.testing.assert_array_equal(e.indices.numpy(), t.indices.numpy())
    np.testing.assert_array_equal(e.values.numpy(), t.values.numpy())
    values, indices = engine.tensor(a).mode()
    np.testing.assert_array_equal(indices.numpy(), torch.tensor(a).mode()[1].numpy())
    assert engine.mode(engine.tensor(a)).indices.requires_grad is False


def test_mode_second_order() -> None:
    a = np.array([[1.0, 2.0, 2.0, 0.5], [3.0, 0.5, 3.0, 0.5]])
    e_in = engine.tensor(a, requires_grad=True)
    t_in = torch.tensor(a, requires_grad=True)
    (ge,) = engine.autograd.grad((engine.mode(e_in).values ** 3).sum(), [e_in], create_graph=True)
    (gt,) = torch.autograd.grad((torch.mode(t_in).values ** 3).sum(), [t_in], create_graph=True)
    (hge,) = engine.autograd.grad(ge.sum(), [e_in])
    (hgt,) = torch.autograd.grad(gt.sum(), [t_in])
    np.testing.assert_allclose(hge.numpy(), hgt.numpy())
