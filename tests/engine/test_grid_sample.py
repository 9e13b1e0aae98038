"""``affine_grid`` and ``grid_sample`` against torch beyond the registry's small samples: every
mode x padding x align_corners on random inputs with grid points far outside [-1, 1], float32
and float64, gradients in both arguments, the rounding of nearest, torch's own reference grid
(an affine map of a 345 x 456 image), the warnings, and torch's errors for misuse."""

from __future__ import annotations

import itertools
import re
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import engine
import engine.nn.functional as EF

from .parity import assert_same_error, torch_error

r = np.random.default_rng(0)
CASES_2D = list(itertools.product(("bilinear", "nearest", "bicubic"), ("zeros", "border", "reflection"),
                                  (False, True)))
CASES_3D = list(itertools.product(("bilinear", "nearest"), ("zeros", "border", "reflection"), (False, True)))


def _pair(x: np.ndarray, g: np.ndarray, dtype: str) -> tuple:
    ex = engine.tensor(x.astype(dtype), requires_grad=True)
    eg = engine.tensor(g.astype(dtype), requires_grad=True)
    tx = torch.tensor(x.astype(dtype), requires_grad=True)
    tg = torch.tensor(g.astype(dtype), requires_grad=True)
    return ex, eg, tx, tg


def _compare(x: np.ndarray, g: np.ndarray, dtype: str, **kw: object) -> None:
    ex, eg, tx, tg = _pair(x, g, dtype)
    eo, to = EF.grid_sample(ex, eg, **kw), TF.grid_sample(tx, tg, **kw)
    tol = {"float64": (1e-10, 1e-12), "float32": (1e-4, 1e-4)}[dtype]
    assert eo.dtype == getattr(engine, dtype) and tuple(eo.shape) == tuple(to.shape)
    assert eo.requires_grad and to.requires_grad
    np.testing.assert_allclose(eo.detach().numpy(), to.detach().numpy(), *tol)
    v = r.standard_normal(tuple(to.shape)).astype(dtype)
    egx, egg = engine.autograd.grad(eo, (ex, eg), engine.tensor(v))
    tgx, tgg = torch.autograd.grad(to, (tx, tg), torch.tensor(v))
    np.testing.assert_allclose(egx.numpy(), tgx.numpy(), *tol, err_msg="d/d input")
    # float32 grid gradients sum many terms of both signs: compare on their own scale
    scale = 1.0 if dtype == "float64" else max(1.0, float(np.abs(tgg.numpy()).max()))
    np.testing.assert_allclose(egg.numpy(), tgg.numpy(), tol[0], tol[1] * scale, err_msg="d/d grid")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("mode,padding_mode,align_corners", CASES_2D)
def test_2d_values_and_gradients_match_torch(mode: str, padding_mode: str, align_corners: bool,
                                             dtype: str) -> None:
    x = r.standard_normal((2, 3, 4, 5))
    g = r.uniform(-2.5, 2.5, (2, 3, 6, 2))  # many points outside the input: padding decides
    _compare(x, g, dtype, mode=mode, padding_mode=padding_mode, align_corners=align_corners)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("mode,padding_mode,align_corners", CASES_3D)
def test_3d_values_and_gradients_match_torch(mode: str, padding_mode: str, align_corners: bool,
                                             dtype: str) -> None:
    x = r.standard_normal((2, 2, 3, 4, 2))
    g = r.uniform(-2.5, 2.5, (2, 2, 3, 2, 3))
    _compare(x, g, dtype, mode=mode, padding_mode=padding_mode, align_corners=align_corners)


@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
def test_second_order_matches_torch(padding_mode: str) -> None:
    x, g = r.standard_normal((1, 2, 3, 4)), r.uniform(-1.4, 1.4, (1, 2, 3, 2))
    for mode in ("bilinear", "bicubic"):
        out = []
        for lib, F in ((engine, EF), (torch, TF)):
            lx, lg = lib.tensor(x, requires_grad=True), lib.tensor(g, requires_grad=True)
            o = F.grid_sample(lx, lg, mode=mode, padding_mode=padding_mode, align_corners=False)
            gx, gg = lib.autograd.grad((o * o).sum(), (lx, lg), create_graph=True)
            second = lib.autograd.grad(gx.sum() + (gg * gg).sum(), (lx, lg))
            out.append([a.detach().numpy() for a in second])
        for a, b in zip(*out):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10, err_msg=mode)


def test_nearest_rounds_half_to_even_and_its_grid_gradient_is_zero() -> None:
    # on a width of 4 (align_corners=False) x = -0.5, 0.5, 0.0 land on pixels 0.5, 2.5, 1.5 exactly,
    # which nearbyint rounds to 0, 2, 2 (half to even); x = 0.25 lands on 2.0
    x = np.arange(4.0).reshape(1, 1, 1, 4)
    g = np.array([[[[-0.5, 0.0], [0.5, 0.0], [0.0, 0.0], [0.25, 0.0]]]])
    ex, eg, tx, tg = _pair(x, g, "float64")
    eo = EF.grid_sample(ex, eg, mode="nearest", align_corners=False)
    to = TF.grid_sample(tx, tg, mode="nearest", align_corners=False)
    assert eo.tolist() == to.tolist() == [[[[0.0, 2.0, 2.0, 2.0]]]]
    eo.sum().backward()
    to.sum().backward()
    assert eg.grad.tolist() == tg.grad.tolist() == np.zeros((1, 1, 4, 2)).tolist()
    # only the grid requires grad: the result still does, as torch's
    assert EF.grid_sample(ex.detach(), eg, mode="nearest", align_corners=False).requires_grad


def test_torch_reference_grid_of_an_affine_map() -> None:
    # torch's OpInfo reference inputs: a 45-degree rotation of a 345 x 456 image (float32), whose
    # nearest-mode taps need torch's exact float32 source coordinates
    h, w = 345, 456
    a = np.deg2rad(45.0)
    theta = np.array([[[np.cos(a) / 1.23, np.sin(a), 0.0], [-np.sin(a), np.cos(a) / 1.34, 0.0]]], np.float32)
    x = (np.arange(3 * h * w) % 256).reshape(1, 3, h, w).astype(np.float32)
    modes = itertools.product(("nearest", "bilinear"), ("zeros", "reflection"), (False, True))
    for mode, pad, align in modes:
        tg = TF.affine_grid(torch.tensor(theta), [1, 3, h, w], align_corners=align)
        eg = EF.affine_grid(engine.tensor(theta), [1, 3, h, w], align_corners=align)
        np.testing.assert_allclose(eg.numpy(), tg.numpy(), rtol=1e-6, atol=1e-6)
        to = TF.grid_sample(torch.tensor(x), tg, mode, pad, align)
        eo = EF.grid_sample(engine.tensor(x), engine.tensor(tg.numpy()), mode, pad, align)
        if mode == "nearest":
            assert np.array_equal(eo.numpy(), to.numpy()), (mode, pad, align)
        else:
            np.testing.assert_allclose(eo.numpy(), to.numpy(), rtol=1e-4, atol=1e-4, err_msg=f"{pad} {align}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("size", [(2, 3, 4, 5), (1, 1, 1, 3), (2, 1, 3, 2, 4), (1, 2, 1, 1, 2)])
@pytest.mark.parametrize("align_corners", [False, True])
def test_affine_grid_matches_torch(size: tuple, align_corners: bool, dtype: str) -> None:
    nd = len(size) - 2
    theta = r.standard_normal((size[0], nd, nd + 1)).astype(dtype)
    et, tt = engine.tensor(theta, requires_grad=True), torch.tensor(theta, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unit-size dims with align_corners: both warn
        eo, to = EF.affine_grid(et, size, align_corners), TF.affine_grid(tt, size, align_corners)
    assert tuple(eo.shape) == tuple(to.shape) and eo.dtype == getattr(engine, dtype)
    tol = 1e-12 if dtype == "float64" else 1e-6
    np.testing.assert_allclose(eo.detach().numpy(), to.detach().numpy(), rtol=tol, atol=tol)
    v = r.standard_normal(tuple(to.shape)).astype(dtype)
    (ge,) = engine.autograd.grad(eo, et, engine.tensor(v))
    (gt,) = torch.autograd.grad(to, tt, torch.tensor(v))
    np.testing.assert_allclose(ge.numpy(), gt.numpy(), rtol=tol * 10, atol=tol * 10)


def test_warnings_match_torch() -> None:
    for lib, F in ((engine, EF), (torch, TF)):
        x, g, th = lib.ones(1, 1, 2, 2), lib.zeros(1, 1, 1, 2), lib.zeros(1, 2, 3)
        default = "Default grid_sample and affine_grid behavior has changed to align_corners=False"
        with pytest.warns(UserWarning, match=re.escape(default)):
            F.grid_sample(x, g)
        with pytest.warns(UserWarning, match="Default grid_sample and affine_grid behavior"):
            F.affine_grid(th, (1, 1, 2, 2))
        with pytest.warns(UserWarning, match="affine_grid behavior has changed for unit-size grids"):
            F.affine_grid(th, (1, 1, 1, 2), align_corners=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            F.grid_sample(x, g, align_corners=False)
            F.affine_grid(th, (1, 1, 2, 2), align_corners=False)


def _gs(xs: tuple, gs: tuple, xdt: str = "float32", gdt: str | None = None, **kw: object):  # noqa: ANN202
    """grid_sample on zeros of these shapes and dtypes (align_corners=False unless given)."""
    kw.setdefault("align_corners", False)
    x, g = np.zeros(xs, xdt), np.zeros(gs, gdt or xdt)
    return lambda m: m.nn.functional.grid_sample(m.tensor(x), m.tensor(g), **kw)


def _ag(ts: tuple, size: object, dt: str = "float32"):  # noqa: ANN202
    return lambda m: m.nn.functional.affine_grid(m.tensor(np.zeros(ts, dt)), size, align_corners=False)


MISUSE = {
    "mode": _gs((1, 1, 3, 3), (1, 2, 2, 2), mode="linear"),
    "padding": _gs((1, 1, 3, 3), (1, 2, 2, 2), padding_mode="circular"),
    "batch": _gs((2, 1, 3, 3), (1, 2, 2, 2)),
    "last dim": _gs((1, 1, 3, 3), (1, 2, 2, 3)),
    "5-D input, 4-D grid": _gs((1, 1, 3, 3, 3), (1, 2, 2, 2)),
    "4-D input, 5-D grid": _gs((1, 1, 3, 3), (1, 2, 2, 2, 2)),
    "3-D input": _gs((1, 1, 3), (1, 2, 1)),
    "empty spatial": _gs((1, 1, 0, 3), (1, 2, 2, 2)),
    "bicubic 5-D": _gs((1, 1, 3, 3, 3), (1, 2, 2, 2, 3), mode="bicubic"),
    "dtypes differ": _gs((1, 1, 3, 3), (1, 2, 2, 2), "float32", "float64"),
    "integer input": _gs((1, 1, 3, 3), (1, 2, 2, 2), "int64"),
    "integer input 5-D": _gs((1, 1, 3, 3, 3), (1, 2, 2, 2, 3), "int64", "float32"),
    "0-d input": _gs((), (1, 2, 2, 2)),
    "theta integer": _ag((1, 2, 3), (1, 1, 2, 2), "int64"),
    "theta shape": _ag((1, 3, 3), (1, 1, 2, 2)),
    "theta shape 3-D": _ag((1, 2, 3), [1, 1, 2, 2, 2]),
    "size length": _ag((1, 2, 3), (1, 1, 2)),
    "size zero": _ag((1, 2, 3), (1, 1, 0, 2)),
    "theta batch": _ag((2, 2, 3), (1, 1, 2, 2)),
    "theta batch 3-D": _ag((2, 3, 4), (3, 1, 2, 2, 2)),
}


@pytest.mark.parametrize("case", sorted(MISUSE))
def test_errors_match_torch(case: str) -> None:
    exc = assert_same_error(MISUSE[case])
    assert str(exc) == str(torch_error(MISUSE[case])), "the whole message, as torch words it"


def test_empty_batch_and_channels() -> None:
    for xs, gs in (((0, 2, 3, 3), (0, 2, 2, 2)), ((1, 0, 3, 3), (1, 2, 2, 2)), ((1, 2, 3, 3), (1, 0, 2, 2))):
        ex, eg, tx, tg = _pair(np.zeros(xs), np.zeros(gs), "float64")
        eo, to = EF.grid_sample(ex, eg, align_corners=False), TF.grid_sample(tx, tg, align_corners=False)
        assert tuple(eo.shape) == tuple(to.shape)
        gx, gg = engine.autograd.grad(eo.sum(), (ex, eg))
        assert tuple(gx.shape) == xs and tuple(gg.shape) == gs and not gg.numpy().any()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_non_finite_and_huge_grid_values_match_torch(dtype: str) -> None:
    # torch's clip takes NaN to 0 (border, reflection); taps of inf or 1e30 fall outside (zeros)
    x = (np.arange(12.0) + 1).reshape(1, 1, 3, 4).astype(dtype)
    special = [np.nan, np.inf, -np.inf, 1e30, -1e30, 1e10]
    g = np.array([[[[v, 0.1] for v in special] + [[0.1, v] for v in special]]]).astype(dtype)
    for mode, pad, align in CASES_2D:
        to = TF.grid_sample(torch.tensor(x), torch.tensor(g), mode, pad, align).numpy()
        with np.errstate(all="ignore"):
            eo = EF.grid_sample(engine.tensor(x), engine.tensor(g), mode, pad, align).numpy()
        np.testing.assert_allclose(eo, to, rtol=1e-6, err_msg=f"{mode} {pad} {align}")  # NaN where torch's
