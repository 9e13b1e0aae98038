"""engine.mode and engine.set_printoptions against torch: mode's values, indices (torch's CPU
choice among ties and NaN), gradients and errors; tensor reprs under several print options."""

from __future__ import annotations

import inspect
import re

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


# ---------------------------------------------------------------- print options and repr
@pytest.fixture
def print_defaults():
    """The print options are global: every test leaves torch's and the engine's at the defaults."""
    yield
    engine.set_printoptions(profile="default")
    torch.set_printoptions(profile="default")


def _reprs(a: np.ndarray, requires_grad: bool = False) -> tuple[str, str]:
    """The engine's and torch's repr of ``a`` (made by an op when it requires grad, for a grad_fn);
    torch's dtype names spelled as the engine's."""
    e, t = engine.tensor(a, requires_grad=requires_grad), torch.tensor(a, requires_grad=requires_grad)
    if requires_grad:
        e, t = e * 1, t * 1
    es = repr(e)
    assert str(e) == es
    return es, repr(t).replace("torch.", "engine.")


def _unwrapped(s: str) -> str:
    # "engine." is a character longer than "torch.", so a dtype suffix can wrap onto its own
    # line in one and not the other: suffix placement is compared exactly by the default-dtype test
    return re.sub(r",\n {7}(dtype=|grad_fn=|requires_grad=|size=)", r", \1", s)


_PR = np.random.default_rng(0)
_ARRAYS = [
    np.array(3.0), np.array(-0.0), np.array(1e-7), np.array(np.nan), np.array(7), np.array(False),
    np.array([1.0, 2.0, 3.5]), np.array([1.0, -2.0, 3.0]), np.array([0.0, -0.0]),
    np.array([1e-5, 1.0, np.nan, np.inf, -np.inf]), np.array([1e10, 1.0]), np.array([123456789.0, 1.0]),
    np.array([1e-120, -3e200]), np.array([np.nan, np.inf]), np.array([0.1, 0.25, 100.0]),
    np.arange(10), np.arange(-50, 50), np.arange(2000).reshape(40, 50), np.array([True, False, True]),
    _PR.standard_normal((30, 40, 3)), _PR.standard_normal((5, 7)) * 1e5, _PR.standard_normal((3, 4)) * 1e-6,
    _PR.standard_normal((2, 3, 4, 5)), _PR.standard_normal(2000), _PR.integers(-1000, 1000, (13, 17)),
    _PR.standard_normal((1001,)), np.zeros((2, 0)), np.zeros((0,)), np.zeros((0, 3, 0)),
    _PR.standard_normal(100) * 1000, np.full((3, 3), 2.5), np.array([65504.0, 1.0, 0.001]),
    _PR.integers(0, 2, (20, 30)).astype(bool), np.array([[1.0, 2.0], [3.0, 4.0]]),
]
_DTYPES = [None, np.float32, np.float16, np.int32, np.int8, np.uint8]
_SETTINGS = [
    {}, {"precision": 2}, {"precision": 0}, {"precision": 8}, {"threshold": 5},
    {"threshold": 5, "edgeitems": 1}, {"threshold": 5, "edgeitems": 0}, {"edgeitems": 0},
    {"linewidth": 30}, {"linewidth": 200}, {"linewidth": 5}, {"sci_mode": True}, {"sci_mode": False},
    {"profile": "short"}, {"profile": "full"}, {"profile": "short", "precision": 6},
    {"threshold": 20, "edgeitems": 2, "linewidth": 40, "sci_mode": True},
]


@pytest.mark.parametrize("settings", _SETTINGS, ids=str)
def test_repr_matches_torch_under_print_options(settings: dict, print_defaults: None) -> None:
    engine.set_printoptions(**settings)
    torch.set_printoptions(**settings)
    for a in _ARRAYS:
        for dt in _DTYPES:
            castable = a.dtype.kind != "b" and (np.dtype(dt).kind == "f" or np.isfinite(a).all())
            if dt is not None and not castable:
                continue
            with np.errstate(all="ignore"):
                b = a if dt is None else a.astype(dt)
            for rg in (False, True) if b.dtype.kind == "f" else (False,):
                e, t = _reprs(b, rg)
                assert _unwrapped(e) == _unwrapped(t), f"{settings} {b.dtype} {b.shape}:\n{e}\n{t}"


@pytest.mark.parametrize("settings", [{}, {"linewidth": 40}, {"linewidth": 60, "precision": 6},
                                      {"edgeitems": 0}, {"threshold": 3, "linewidth": 20}], ids=str)
def test_repr_default_dtypes_exactly(settings: dict, print_defaults: None) -> None:
    # no dtype suffix here: the strings, suffix wrapping included, are torch's to the character
    engine.set_printoptions(**settings)
    torch.set_printoptions(**settings)
    cases = [_PR.standard_normal((3, 5)).astype(np.float32), np.arange(12).reshape(3, 4),
             _PR.standard_normal(30).astype(np.float32), np.array([True, False]), np.array(1.5, np.float32),
             np.zeros((0,), np.float32), np.zeros((2, 0), np.float32)]
    for a in cases:
        for rg in (False, True) if a.dtype.kind == "f" else (False,):
            e, t = _reprs(a, rg)
            assert e == t, f"{settings}:\n{e}\n{t}"


def test_print_options_state_as_torch(print_defaults: None) -> None:
    from torch import _tensor_str as tstr
    assert engine._tensor_str.get_printoptions() == tstr.get_printoptions()
    calls = [{"precision": 2, "sci_mode": True}, {"threshold": 10},  # sci_mode resets to None
             {"profile": "short", "edgeitems": 5}, {"profile": "full"}, {"profile": "nonsense"},
             {"linewidth": 120}, {"profile": "default"}]
    for kw in calls:
        engine.set_printoptions(**kw)
        torch.set_printoptions(**kw)
        assert engine._tensor_str.get_printoptions() == tstr.get_printoptions(), kw
    with engine._tensor_str.printoptions(precision=1):
        with torch._tensor_str.printoptions(precision=1):
            assert repr(engine.tensor([1.25, 2.0])) == repr(torch.tensor([1.25, 2.0]))
    assert engine._tensor_str.get_printoptions() == tstr.get_printoptions()
    # exposed where torch exposes them
    assert hasattr(engine, "get_printoptions") == hasattr(torch, "get_printoptions")
    sig_e, sig_t = inspect.signature(engine.set_printoptions), inspect.signature(torch.set_printoptions)
    assert [(p.name, p.default) for p in sig_e.parameters.values()] == \
        [(p.name, p.default) for p in sig_t.parameters.values()]


def test_repr_shows_the_tangent_in_a_dual_level() -> None:
    import torch.autograd.forward_ad as tfw

    import engine.autograd.forward_ad as efw
    with efw.dual_level():
        e = repr(efw.make_dual(engine.ones(2), engine.tensor([0.5, 2.0])))
    with tfw.dual_level():
        t = repr(tfw.make_dual(torch.ones(2), torch.tensor([0.5, 2.0])))
    assert e == t
