"""The convolution primitives walk the batch in chunks (engine/nn/functional/_conv.py); the
registry's gradcheck samples are too small to span more than one. Here the chunk sizes are shrunk
so that every layout (pitched narrow, pitched wide, strided) crosses chunk boundaries, including a
shorter last chunk, and values, first- and second-order gradients are compared with torch's."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import engine
import engine.nn.functional as EF
import engine.nn.functional._conv as conv_mod

CASES = {
    "conv2d pad": ("conv2d", (5, 4, 7, 6), (6, 4, 3, 3), True, {"padding": 1}),
    "conv2d groups dilation": ("conv2d", (5, 4, 9, 7), (6, 2, 3, 2), True,
                               {"padding": (2, 1), "dilation": (2, 3), "groups": 2}),
    "conv2d strided": ("conv2d", (5, 4, 7, 6), (6, 2, 3, 2), False,
                       {"padding": (1, 2), "stride": (2, 1), "groups": 2}),
    "conv1d": ("conv1d", (5, 4, 9), (6, 4, 3), True, {"padding": 1}),
    "conv3d": ("conv3d", (3, 2, 4, 5, 4), (2, 1, 2, 3, 2), False,
               {"padding": (0, 1, 1), "groups": 2}),
    "conv_transpose2d": ("conv_transpose2d", (5, 4, 4, 3), (4, 3, 3, 3), True,
                         {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2}),
    "conv_transpose2d unit stride": ("conv_transpose2d", (5, 4, 4, 3), (4, 3, 3, 2), False,
                                     {"padding": (1, 0), "dilation": (1, 2)}),
    # padding beyond the kernel's reach (no shared padding), and 'same' with an even kernel
    # (asymmetric padding)
    "conv2d wide padding": ("conv2d", (5, 4, 6, 5), (6, 4, 3, 2), True, {"padding": (3, 2)}),
    "conv2d same even": ("conv2d", (5, 4, 7, 6), (6, 4, 4, 2), True, {"padding": "same"}),
}


@pytest.mark.parametrize("step", [1, 2])
@pytest.mark.parametrize("split", [True, False], ids=["per-sample", "per-chunk"])
@pytest.mark.parametrize("case", list(CASES))
def test_chunked_convolution_matches_torch(case: str, split: bool, step: int,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # every sample is its own GEMM when _SPLIT_ROWS is huge, every chunk one GEMM when it is 0;
    # a step of 2 over odd batches leaves a shorter chunk
    monkeypatch.setattr(conv_mod, "_SPLIT_ROWS", 1 << 40 if split else 0)
    monkeypatch.setattr(conv_mod._Layout, "step", lambda self, n, c, dt: max(1, min(step, n)))
    name, xs, ws, bias, kw = CASES[case]
    rng = np.random.default_rng(sum(map(ord, case)))
    arrays = [rng.standard_normal(xs), rng.standard_normal(ws)]
    if bias:
        out_ch = ws[1] * kw.get("groups", 1) if "transpose" in name else ws[0]
        arrays.append(rng.standard_normal(out_ch))
    te = [engine.tensor(a, requires_grad=True) for a in arrays]
    tt = [torch.tensor(a, requires_grad=True) for a in arrays]
    ye = getattr(EF, name)(*te, **kw)
    yt = getattr(torch.nn.functional, name)(*tt, **kw)
    np.testing.assert_allclose(ye.detach().numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    ge = engine.autograd_grad((ye * ye).sum(), te, create_graph=True)
    gt = torch.autograd.grad((yt * yt).sum(), tt, create_graph=True)
    for a, b in zip(ge, gt):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-10)
    he = engine.autograd_grad(sum((g * g).sum() for g in ge), te)
    ht = torch.autograd.grad(sum((g * g).sum() for g in gt), tt)
    for a, b in zip(he, ht):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("padding", [1, (3, 2)], ids=["shared", "own"])
@pytest.mark.parametrize("where", ["input", "weight"])
def test_junk_positions_do_not_leak_non_finite_values(where: str, padding: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # unit-stride columns carry junk positions (past rows, between samples); an inf read there must not turn a
    # gradient into NaN that torch computes finite
    monkeypatch.setattr(conv_mod._Layout, "step", lambda self, n, c, dt: max(1, min(2, n)))
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((3, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
    if where == "input":
        x[1, 1, 2, 0] = np.inf
    else:
        w[1, 0, 0, 2] = np.inf
    te = [engine.tensor(a, requires_grad=True) for a in (x, w)]
    tt = [torch.tensor(a, requires_grad=True) for a in (x, w)]
    with np.errstate(invalid="ignore"):
        ge = engine.autograd_grad(EF.conv2d(*te, padding=padding).sum(), te)
    gt = torch.autograd.grad(torch.nn.functional.conv2d(*tt, padding=padding).sum(), tt)
    for a, b in zip(ge, gt):
        np.testing.assert_allclose(a.numpy(), b.numpy())


@pytest.mark.parametrize("name", ["conv2d", "conv_transpose2d"])
def test_empty_batch_matches_torch(name: str) -> None:
    # no chunk to run: outputs and gradients are empty, the weight gradient zero
    ws = (2, 3, 3, 3) if name == "conv2d" else (3, 2, 3, 3)
    x, w = np.zeros((0, 3, 5, 4)), np.random.default_rng(0).standard_normal(ws)
    te = [engine.tensor(a, requires_grad=True) for a in (x, w)]
    tt = [torch.tensor(a, requires_grad=True) for a in (x, w)]
    ye = getattr(EF, name)(*te, padding=1)
    yt = getattr(torch.nn.functional, name)(*tt, padding=1)
    assert tuple(ye.shape) == tuple(yt.shape)
    ge = engine.autograd_grad(ye.sum(), te)
    gt = torch.autograd.grad(yt.sum(), tt)
    for a, b in zip(ge, gt):
        assert tuple(a.shape) == tuple(b.shape)
        np.testing.assert_array_equal(a.numpy(), b.numpy())
