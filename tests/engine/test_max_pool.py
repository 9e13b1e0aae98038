"""Max pooling's paths against torch (engine/nn/functional/_pooling.py).

The op samples (tests/engine/opsamples/nn_layers.py) run every path in float64 through the
gradient, vmap, forward-mode, compile and meta checks. The 2x2 stride-2 path works on 1-, 2- and
4-byte dtypes only (float32 in the CNN), so it is checked here: values, torch's indices,
gradients, double backward, forward mode and vmap, with ties, NaN, infinities and signed zeros,
and sizes that crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import engine
import engine.nn.functional as F
from engine.func import jvp, vmap

TF = torch.nn.functional


def _data(shape: tuple, dtype: type, kind: str, seed: int = 0) -> np.ndarray:
    """Values of ``kind``: distinct-ish normals, small integers (many ties), or with NaN/inf."""
    r = np.random.default_rng(seed)
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = (info.min, info.max) if kind == "extremes" else (max(info.min, -3), 4)
        return r.integers(lo, hi, shape, endpoint=True).astype(dtype)
    x = r.standard_normal(shape)
    if kind == "ties":
        x = np.round(x)  # windows of equal values, +0.0 and -0.0 among them
        x[r.random(shape) < 0.3] *= -1.0
    if kind == "nan":
        flat = x.reshape(-1)
        flat[r.random(flat.size) < 0.15] = np.nan
        flat[r.random(flat.size) < 0.05] = np.inf
    if kind == "extremes":
        flat = x.reshape(-1)
        flat[r.random(flat.size) < 0.5] = -np.inf
    return x.astype(dtype)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values, NaN equal NaN, and zeros of the same sign."""
    return a.dtype == b.dtype and a.shape == b.shape and bool(
        np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
        and (a.dtype.kind != "f" or np.array_equal(np.signbit(a), np.signbit(b))))


PAIR_SHAPES = [(2, 3, 8, 6), (2, 3, 7, 9), (3, 5, 4), (1, 1, 2, 2), (2, 1, 3, 33)]
PAIR_DTYPES = [np.float32, np.float16, np.int32, np.int16, np.int8, np.uint8]


@pytest.mark.parametrize(("dtype", "kind"), [(d, k) for d in PAIR_DTYPES for k in
                                             ("normal", "ties", "nan", "extremes")
                                             if k != "nan" or np.dtype(d).kind == "f"],
                         ids=lambda v: v if isinstance(v, str) else np.dtype(v).name)
@pytest.mark.parametrize("shape", PAIR_SHAPES, ids=str)
def test_two_by_two_matches_torch(shape, dtype, kind) -> None:
    x = _data(shape, dtype, kind, seed=len(shape) + shape[-1])
    y, idx = F.max_pool2d(engine.tensor(x), 2, return_indices=True)
    ty, tidx = TF.max_pool2d(torch.tensor(x), 2, return_indices=True)
    assert _same(y.numpy(), ty.numpy())
    assert np.array_equal(idx.numpy(), tidx.numpy())


@pytest.mark.parametrize("kind", ["normal", "ties", "nan", "extremes"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", PAIR_SHAPES, ids=str)
def test_two_by_two_gradient_matches_torch(shape, dtype, kind) -> None:
    x = _data(shape, dtype, kind, seed=shape[-1])
    g = np.random.default_rng(1).standard_normal(tuple(s // 2 if i >= len(shape) - 2 else s
                                                       for i, s in enumerate(shape))).astype(dtype)
    xe = engine.tensor(x, requires_grad=True)
    (gx,) = engine.autograd.grad(F.max_pool2d(xe, 2), xe, engine.tensor(g))
    xt = torch.tensor(x, requires_grad=True)
    TF.max_pool2d(xt, 2).backward(torch.tensor(g))
    assert np.array_equal(gx.numpy(), xt.grad.numpy())


def test_non_contiguous_input() -> None:
    x = _data((2, 8, 6, 3), np.float32, "ties").transpose(0, 3, 1, 2)  # (2, 3, 8, 6), strided
    xe = engine.tensor(x, requires_grad=True)
    y = F.max_pool2d(xe, 2)
    xt = torch.tensor(x, requires_grad=True)
    ty = TF.max_pool2d(xt, 2)
    assert _same(y.detach().numpy(), ty.detach().numpy())
    (gx,) = engine.autograd.grad(y.sum(), xe)
    ty.sum().backward()
    assert np.array_equal(gx.numpy(), xt.grad.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kw", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1}],
                         ids=["2x2", "overlapping"])
def test_double_backward_matches_torch(kw, dtype) -> None:
    x = _data((2, 3, 7, 8), dtype, "ties", seed=3)
    r = np.random.default_rng(4)
    xe = engine.tensor(x, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    ye, yt = F.max_pool2d(xe, **kw), TF.max_pool2d(xt, **kw)
    g = r.standard_normal(tuple(yt.shape)).astype(dtype)
    u = r.standard_normal(x.shape).astype(dtype)
    w = r.standard_normal(tuple(yt.shape)).astype(dtype)
    ge, ue = engine.tensor(g, requires_grad=True), engine.tensor(u, requires_grad=True)
    gt, ut = torch.tensor(g, requires_grad=True), torch.tensor(u, requires_grad=True)
    (vx,) = engine.autograd.grad(ye, xe, ge, create_graph=True)  # the VJP: a scatter
    (tx,) = torch.autograd.grad(yt, xt, gt, create_graph=True)
    # overlapping windows add into a shared entry in another order than torch's
    same = np.array_equal if kw["kernel_size"] == 2 else lambda a, b: np.allclose(a, b, 1e-6, 1e-6)
    assert same(vx.detach().numpy(), tx.detach().numpy())
    # the scatter's VJP: a gather of u at the argmax
    (gg,) = engine.autograd.grad((vx * ue).sum(), ge, create_graph=True)
    (tg,) = torch.autograd.grad((tx * ut).sum(), gt, create_graph=True)
    assert np.array_equal(gg.detach().numpy(), tg.detach().numpy())
    # the gather's VJP: the scatter again
    (gu,) = engine.autograd.grad((gg * engine.tensor(w)).sum(), ue)
    (tu,) = torch.autograd.grad((tg * torch.tensor(w)).sum(), ut)
    assert same(gu.numpy(), tu.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kw", [{"kernel_size": 2}, {"kernel_size": (2, 3), "stride": 3},
                                {"kernel_size": 3, "stride": 1, "padding": 1, "dilation": 1}],
                         ids=["2x2", "gaps", "overlapping"])
def test_forward_mode_matches_torch(kw, dtype) -> None:
    x = _data((2, 3, 7, 8), dtype, "ties", seed=5)
    t = np.random.default_rng(6).standard_normal(x.shape).astype(dtype)
    _, te = jvp(lambda a: F.max_pool2d(a, **kw), (engine.tensor(x),), (engine.tensor(t),))
    _, tt = torch.func.jvp(lambda a: TF.max_pool2d(a, **kw), (torch.tensor(x),), (torch.tensor(t),))
    assert np.array_equal(te.numpy(), tt.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_vmap_matches_torch(dtype) -> None:
    x = _data((4, 2, 3, 6, 7), dtype, "ties", seed=7)
    g = np.random.default_rng(8).standard_normal((4, 2, 3, 3, 3)).astype(dtype)

    ye = vmap(lambda a: F.max_pool2d(a, 2))(engine.tensor(x))
    yt = torch.func.vmap(lambda a: TF.max_pool2d(a, 2))(torch.tensor(x))
    assert _same(ye.numpy(), yt.numpy())
    # a batch of cotangents through the VJP (the scatter's batching rule), and of inputs
    ge = vmap(engine.func.grad(lambda a, c: (F.max_pool2d(a, 2) * c).sum()))(engine.tensor(x),
                                                                            engine.tensor(g))
    gt = torch.func.vmap(torch.func.grad(lambda a, c: (TF.max_pool2d(a, 2) * c).sum()))(
        torch.tensor(x), torch.tensor(g))
    assert np.array_equal(ge.numpy(), gt.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64],
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kw", [{"kernel_size": 2, "padding": 1},
                                {"kernel_size": 3, "stride": 2, "padding": 1},
                                {"kernel_size": 2, "stride": 2, "ceil_mode": True}],
                         ids=["pad", "overlapping pad", "ceil"])
def test_padding_never_wins(kw, dtype) -> None:
    # windows whose entries inside the input all hold the lowest value: torch picks the first of
    # those, never a padding position
    low = -np.inf if np.dtype(dtype).kind == "f" else np.iinfo(dtype).min
    x = np.full((1, 2, 5, 5), low, dtype)
    x[0, 1, 2, 2] = 1
    y, idx = F.max_pool2d(engine.tensor(x), return_indices=True, **kw)
    ty, tidx = TF.max_pool2d(torch.tensor(x), return_indices=True, **kw)
    assert _same(y.numpy(), ty.numpy())
    assert np.array_equal(idx.numpy(), tidx.numpy())
    if np.dtype(dtype).kind == "f":
        xe, xt = engine.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        (gx,) = engine.autograd.grad(F.max_pool2d(xe, **kw).sum(), xe)
        TF.max_pool2d(xt, **kw).sum().backward()
        assert np.array_equal(gx.numpy(), xt.grad.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kw", [{"kernel_size": 3}, {"kernel_size": 3, "stride": 4},
                                {"kernel_size": (1, 3), "stride": (2, 3), "padding": (0, 1)},
                                {"kernel_size": 2, "stride": 2, "dilation": 2},
                                {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}],
                         ids=["tiled 3", "gaps", "tiled padded", "dilated", "overlapping"])
def test_other_windows_match_torch(kw, dtype) -> None:
    for shape in ((2, 3, 9, 12), (3, 7, 8)):
        x = _data(shape, dtype, "ties", seed=shape[-1])
        xe, xt = engine.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y, idx = F.max_pool2d(xe, return_indices=True, **kw)
        ty, tidx = TF.max_pool2d(xt, return_indices=True, **kw)
        assert _same(y.detach().numpy(), ty.detach().numpy())
        assert np.array_equal(idx.numpy(), tidx.numpy())
        g = np.random.default_rng(2).standard_normal(tuple(ty.shape)).astype(dtype)
        (gx,) = engine.autograd.grad(y, xe, engine.tensor(g))
        ty.backward(torch.tensor(g))
        np.testing.assert_allclose(gx.numpy(), xt.grad.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("nd", [1, 3])
def test_other_ranks_with_ties_match_torch(nd: int) -> None:
    shape = (2, 3) + (7, 6, 5)[:nd]
    x = _data(shape, np.float32, "ties", seed=nd)
    fn, tfn = (F.max_pool1d, F.max_pool3d)[nd == 3], (TF.max_pool1d, TF.max_pool3d)[nd == 3]
    for kw in ({"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}):
        xe, xt = engine.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y, idx = fn(xe, return_indices=True, **kw)
        ty, tidx = tfn(xt, return_indices=True, **kw)
        assert _same(y.detach().numpy(), ty.detach().numpy())
        assert np.array_equal(idx.numpy(), tidx.numpy())
        (gx,) = engine.autograd.grad(y.sum(), xe)
        ty.sum().backward()
        np.testing.assert_allclose(gx.numpy(), xt.grad.numpy(), rtol=1e-6)


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("return_indices", [False, True])
def test_bool_input_raises_as_torch(nd: int, return_indices: bool) -> None:
    fn, tfn = getattr(F, f"max_pool{nd}d"), getattr(TF, f"max_pool{nd}d")
    shape = (1, 1) + (4,) * nd
    with pytest.raises(NotImplementedError) as expected:
        tfn(torch.ones(shape, dtype=torch.bool), 2, return_indices=return_indices)
    with pytest.raises(NotImplementedError, match=str(expected.value).replace('"', '.')):
        fn(engine.ones(shape, dtype=engine.bool), 2, return_indices=return_indices)
