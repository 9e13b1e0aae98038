"""Issue 12's OpInfo misses, each checked against torch: 0-d tensors with dim=0, std/var
spellings, quantile's gradient in q, rounding division, norm 'nuc', randint(high, size),
diff(n=0), antialiased interpolation. Values, shapes, dtypes and gradients come from torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import engine

from .parity import assert_same


def _grad_parity(fn, *arrays, rtol: float = 1e-7, atol: float = 1e-9) -> None:
    """fn(lib, *leaves): same output and same gradient of its sum as torch."""
    res = []
    for lib in (engine, torch):
        leaves = [lib.tensor(a, requires_grad=True) for a in arrays]
        out = fn(lib, *leaves)
        grads = lib.autograd.grad(out.sum(), leaves, allow_unused=True, materialize_grads=True)
        res.append((out, grads))
    assert_same(res[0][0], res[1][0], rtol=rtol, atol=atol)
    assert_same(res[0][1], res[1][1], rtol=rtol, atol=atol, rg=False)


F = {engine: engine.nn.functional, torch: torch.nn.functional}

ZERO_D = {
    "logsumexp": lambda m, x: m.logsumexp(x, 0),
    "norm": lambda m, x: m.norm(x, dim=0),
    "norm_p3": lambda m, x: m.norm(x, p=3, dim=0),
    "normalize": lambda m, x: F[m].normalize(x, dim=0),
    "cosine_similarity": lambda m, x: F[m].cosine_similarity(x, x * 2, dim=0),
    "vector_norm": lambda m, x: m.linalg.vector_norm(x, dim=0),
    "index_select": lambda m, x: m.index_select(x, 0, m.tensor([0])),
    "sum": lambda m, x: m.sum(x, 0),
    "sum_keepdim": lambda m, x: m.sum(x, -1, keepdim=True),
    "amax": lambda m, x: m.amax(x, 0),
    "amin": lambda m, x: m.amin(x, -1),
    "mean": lambda m, x: m.mean(x, (0,)),
    "nansum": lambda m, x: m.nansum(x, 0),
    "cumsum": lambda m, x: m.cumsum(x, 0),
}


@pytest.mark.parametrize("name", sorted(ZERO_D))
def test_zero_d_input_with_dim_0(name: str) -> None:
    _grad_parity(ZERO_D[name], np.float64(1.5))


def test_index_select_on_0d_errors_as_torch() -> None:
    for idx, err in (([0, 0], RuntimeError), ([1], IndexError)):
        with pytest.raises(err) as e:
            engine.index_select(engine.tensor(1.0), 0, engine.tensor(idx))
        with pytest.raises(err) as t:
            torch.index_select(torch.tensor(1.0), 0, torch.tensor(idx))
        assert str(e.value) == str(t.value)


@pytest.mark.parametrize("call", [
    lambda m, x: m.var(x, 1, True, True),
    lambda m, x: m.var(x, 1, False),
    lambda m, x: m.var(x, False),
    lambda m, x: m.std(x, True),
    lambda m, x: m.std(x, 0, unbiased=False, keepdim=True),
    lambda m, x: m.var(x, 0, correction=None),
    lambda m, x: m.std(x, (0, 1), correction=2),
    lambda m, x: x.var(1, unbiased=True),
])
def test_std_var_spellings(call) -> None:
    _grad_parity(call, np.random.default_rng(0).standard_normal((3, 4)))


def test_std_var_reject_unbiased_with_correction() -> None:
    with pytest.raises(TypeError):
        torch.var(torch.ones(3), 0, True, correction=1)
    with pytest.raises(TypeError):
        engine.var(engine.ones(3), 0, True, correction=1)


@pytest.mark.parametrize("interpolation", ["linear", "midpoint", "lower", "nearest"])
def test_quantile_gradient_in_q(interpolation: str) -> None:
    x = np.array([[0.3, -1.2, 2.0, 0.7, 1.1], [0.5, 0.1, -0.4, 0.9, 3.0]])
    _grad_parity(lambda m, a, q: m.quantile(a, q, dim=1, interpolation=interpolation),
                 x, np.array([0.3, 0.6, 1.0]))


@pytest.mark.parametrize("mode", ["floor", "trunc"])
def test_rounding_div_has_zero_gradient(mode: str) -> None:
    _grad_parity(lambda m, a, b: m.div(a, b, rounding_mode=mode),
                 np.array([1.5, -2.5, 7.0]), np.array([2.0, 2.0, -3.0]))


def test_norm_nuc() -> None:
    r = np.random.default_rng(1)
    _grad_parity(lambda m, x: m.norm(x, "nuc"), r.standard_normal((3, 4)))
    _grad_parity(lambda m, x: m.norm(x, "nuc", dim=(0, 2), keepdim=True), r.standard_normal((3, 2, 4)))


def test_randint_high_size() -> None:
    e, t = engine.randint(5, (2, 3)), torch.randint(5, (2, 3))
    assert (tuple(e.shape), str(e.dtype)) == (tuple(t.shape), str(t.dtype).replace("torch", "engine"))
    assert int(e.max()) < 5 and int(e.min()) >= 0


def test_diff_n0_ignores_prepend_and_append() -> None:
    _grad_parity(lambda m, x, p: m.diff(x, n=0, prepend=p, append=p),
                 np.array([1.0, 2.0, 4.0]), np.array([0.5]))


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("kw", [{"size": (4, 3)}, {"size": (12, 5)}, {"scale_factor": 0.3},
                                {"size": (4, 3), "align_corners": True}])
def test_interpolate_antialias(mode: str, kw: dict) -> None:
    x = np.random.default_rng(2).random((1, 2, 9, 7))
    _grad_parity(lambda m, a: F[m].interpolate(a, mode=mode, antialias=True, **kw), x)


def test_interpolate_antialias_other_modes_error() -> None:
    with pytest.raises(ValueError) as t:
        torch.nn.functional.interpolate(torch.ones(1, 1, 4), size=2, mode="linear", antialias=True)
    with pytest.raises(ValueError) as e:
        engine.nn.functional.interpolate(engine.ones(1, 1, 4), size=2, mode="linear", antialias=True)
    assert str(e.value) == str(t.value)
