"""engine.nn.init against torch.nn.init: gains and errors exactly, random fills by their
distribution (the engine's random stream is not torch's), deterministic fills exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import engine
import engine.nn.init as EI
from tests.engine.parity import assert_same_error


@pytest.fixture(autouse=True)
def _seed() -> None:
    engine.manual_seed(0)
    torch.manual_seed(0)


@pytest.mark.parametrize("args", [("linear",), ("conv2d",), ("conv_transpose3d",), ("sigmoid",), ("tanh",),
                                  ("relu",), ("leaky_relu",), ("leaky_relu", 0.2), ("leaky_relu", 3),
                                  ("selu",)])
def test_calculate_gain(args: tuple) -> None:
    assert EI.calculate_gain(*args) == torch.nn.init.calculate_gain(*args)


@pytest.mark.parametrize("case", ["bad nonlinearity", "bool slope", "string slope", "fan 1-D", "fan 0-D",
                                  "kaiming mode", "eye 3-D", "dirac 2-D", "dirac groups", "orthogonal 1-D",
                                  "sparse 3-D", "xavier 1-D"])
def test_errors(case: str) -> None:
    fns = {
        "bad nonlinearity": lambda m: m.nn.init.calculate_gain("softmax"),
        "bool slope": lambda m: m.nn.init.calculate_gain("leaky_relu", True),
        "string slope": lambda m: m.nn.init.calculate_gain("leaky_relu", "0.1"),
        "fan 1-D": lambda m: m.nn.init._calculate_fan_in_and_fan_out(m.empty(3)),
        "fan 0-D": lambda m: m.nn.init._calculate_fan_in_and_fan_out(m.empty(())),
        "kaiming mode": lambda m: m.nn.init.kaiming_uniform_(m.empty(3, 4), mode="fan_avg"),
        "eye 3-D": lambda m: m.nn.init.eye_(m.empty(2, 2, 2)),
        "dirac 2-D": lambda m: m.nn.init.dirac_(m.empty(2, 2)),
        "dirac groups": lambda m: m.nn.init.dirac_(m.empty(3, 2, 3), groups=2),
        "orthogonal 1-D": lambda m: m.nn.init.orthogonal_(m.empty(3)),
        "sparse 3-D": lambda m: m.nn.init.sparse_(m.empty(2, 2, 2), 0.5),
        "xavier 1-D": lambda m: m.nn.init.xavier_normal_(m.empty(3)),
    }
    assert_same_error(fns[case])


@pytest.mark.parametrize("shape", [(3, 4), (5, 2, 3), (4, 3, 2, 2), (2, 3, 1, 2, 2)])
def test_fan(shape: tuple) -> None:
    assert EI._calculate_fan_in_and_fan_out(engine.empty(*shape)) == \
        torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(*shape))


def _check_moments(x: np.ndarray, mean: float, std: float) -> None:
    n = x.size
    # mean within 5 standard errors; std within 5% (n is large)
    assert abs(x.mean() - mean) < 5 * std / math.sqrt(n)
    assert abs(x.std() - std) < 0.05 * std


N = (200, 300)  # 60000 draws


@pytest.mark.parametrize("dtype", [engine.float32, engine.float64])
def test_uniform_normal(dtype: engine.dtype) -> None:
    w = engine.empty(*N, dtype=dtype)
    assert EI.uniform_(w, -2.0, 3.0) is w and w.dtype == dtype
    a = w.numpy()
    assert a.min() >= -2.0 and a.max() <= 3.0
    _check_moments(a, 0.5, 5 / math.sqrt(12))
    EI.normal_(w, 1.5, 0.25)
    _check_moments(w.numpy(), 1.5, 0.25)


def test_trunc_normal() -> None:
    w = EI.trunc_normal_(engine.empty(*N), mean=0.5, std=2.0, a=-1.0, b=1.5)
    a = w.numpy()
    assert a.min() >= -1.0 and a.max() <= 1.5
    # the truncated normal's moments, from scipy's formulas
    from scipy.stats import truncnorm
    d = truncnorm((-1.0 - 0.5) / 2.0, (1.5 - 0.5) / 2.0, loc=0.5, scale=2.0)
    _check_moments(a, d.mean(), d.std())
    with pytest.warns(UserWarning, match="mean is more than 2 std from"):
        EI.trunc_normal_(engine.empty(10), mean=10.0)


def test_constant_ones_zeros_keep_leaf() -> None:
    p = engine.nn.Parameter(engine.empty(2, 3))
    assert EI.constant_(p, 0.25) is p
    np.testing.assert_array_equal(p.detach().numpy(), np.full((2, 3), 0.25, np.float32))
    assert p.is_leaf and p.requires_grad and p.grad_fn is None
    np.testing.assert_array_equal(EI.ones_(p).detach().numpy(), 1.0)
    np.testing.assert_array_equal(EI.zeros_(p).detach().numpy(), 0.0)


@pytest.mark.parametrize("shape", [(2, 3), (3, 2), (3, 3)])
def test_eye(shape: tuple) -> None:
    np.testing.assert_array_equal(EI.eye_(engine.empty(*shape)).numpy(),
                                  torch.nn.init.eye_(torch.empty(*shape)).numpy())


@pytest.mark.parametrize("shape,groups", [((2, 2, 3), 1), ((4, 3, 3, 4), 2), ((6, 2, 3, 3, 3), 3),
                                          ((3, 5, 2), 1), ((4, 1, 3, 3), 4)])
def test_dirac(shape: tuple, groups: int) -> None:
    np.testing.assert_array_equal(EI.dirac_(engine.empty(*shape), groups).numpy(),
                                  torch.nn.init.dirac_(torch.empty(*shape), groups).numpy())


def test_xavier() -> None:
    w = engine.empty(*N)
    bound = 1.5 * math.sqrt(6 / sum(N))
    a = EI.xavier_uniform_(w, gain=1.5).numpy()
    assert a.min() >= -bound and a.max() <= bound
    _check_moments(a, 0.0, bound / math.sqrt(3))
    _check_moments(EI.xavier_normal_(w, gain=0.5).numpy(), 0.0, 0.5 * math.sqrt(2 / sum(N)))


@pytest.mark.parametrize("a,mode,nonlinearity", [
    (0, "fan_in", "leaky_relu"), (math.sqrt(5), "fan_in", "leaky_relu"), (0, "fan_out", "relu"),
    (0.2, "FAN_OUT", "leaky_relu"), (0, "fan_in", "tanh")])
def test_kaiming(a: float, mode: str, nonlinearity: str) -> None:
    shape = (60, 40, 5)
    fan = 40 * 5 if mode.lower() == "fan_in" else 60 * 5
    std = torch.nn.init.calculate_gain(nonlinearity, a) / math.sqrt(fan)
    w = EI.kaiming_uniform_(engine.empty(*shape), a=a, mode=mode, nonlinearity=nonlinearity).numpy()
    assert np.abs(w).max() <= math.sqrt(3) * std
    _check_moments(w, 0.0, std)
    w = EI.kaiming_normal_(engine.empty(*shape), a=a, mode=mode, nonlinearity=nonlinearity).numpy()
    _check_moments(w, 0.0, std)


def test_kaiming_empty_warns() -> None:
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
        EI.kaiming_uniform_(engine.empty(0, 3))


@pytest.mark.parametrize("shape", [(4, 4), (3, 7), (7, 3), (6, 2, 2, 2)])
@pytest.mark.parametrize("dtype", [engine.float32, engine.float64])
def test_orthogonal(shape: tuple, dtype: engine.dtype) -> None:
    w = engine.empty(*shape, dtype=dtype)
    assert EI.orthogonal_(w, gain=2.0) is w
    m = w.numpy().reshape(shape[0], -1) / 2.0
    small = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    tol = 1e-5 if dtype == engine.float32 else 1e-12
    np.testing.assert_allclose(small, np.eye(small.shape[0]), atol=tol)


def test_sparse() -> None:
    w = EI.sparse_(engine.empty(10, 300), sparsity=0.25, std=0.5)
    a = w.numpy()
    assert ((a == 0).sum(axis=0) == 3).all()
    _check_moments(a[a != 0], 0.0, 0.5)


def test_seeded_reproducible() -> None:
    engine.manual_seed(3)
    a = EI.kaiming_uniform_(engine.empty(4, 5)).numpy()
    engine.manual_seed(3)
    np.testing.assert_array_equal(a, EI.kaiming_uniform_(engine.empty(4, 5)).numpy())


def test_deprecated_alias() -> None:
    msg = "`nn.init.normal` is now deprecated in favor of `nn.init.normal_`"
    with pytest.warns(FutureWarning, match=msg):
        EI.normal(engine.empty(2))


def test_docstring_examples() -> None:
    import doctest

    res = doctest.testmod(EI, extraglobs={"engine": engine}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0 and res.attempted > 0
