"""Models exported from torch, run by engine.onnx: forward values against onnxruntime, gradients
with respect to the input and to every parameter against torch on the original module (first
order for all, second order for a subset)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

import engine
import engine.onnx as eo
from tests.engine import onnx_models as om

CASES = [("mlp", False), ("cnn", False), ("block", False), ("block", True), ("lm", False)]


def _ids(c: tuple) -> str:
    return f"{c[0]}-{'torchscript' if c[1] else 'dynamo'}"


def _close(a: np.ndarray, b: np.ndarray, tol: float = 1e-4) -> None:
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_forward_matches_onnxruntime(case: tuple) -> None:
    data = om.exported(*case)
    _, x = om.make(case[0])
    m = eo.load(data)
    y = m(x=engine.from_numpy(x.numpy()))
    (ref,) = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})
    _close(y.detach().numpy(), ref, 1e-5)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_gradients_match_torch(case: tuple) -> None:
    data = om.exported(*case)
    tm, x = om.make(case[0])
    m = eo.load(data)
    params = m.parameters()
    owners = om.torch_params(tm, {k: v.detach().numpy() for k, v in params.items()})
    # every torch parameter is some initializer (exporters may merge equal ones: TorchScript does)
    held = {id(p) for p, _ in owners.values()}
    if not case[1]:
        assert held == {id(p) for p in tm.parameters()}
    ints = not x.is_floating_point()  # token ids: no gradient with respect to them
    xe = engine.from_numpy(x.numpy()) if ints else engine.from_numpy(x.numpy()).requires_grad_()
    y = m(x=xe)
    w = np.linspace(-1, 1, y.numel(), dtype=np.float32).reshape(tuple(y.shape))
    names = list(owners)
    gs = engine.autograd_grad((y * engine.from_numpy(w)).sum(), [*([] if ints else [xe]),
                                                                 *(params[k] for k in names)])
    xt = x.clone() if ints else x.clone().requires_grad_()
    yt = tm(xt)
    tps = list({id(p): p for p, _ in owners.values()}.values())
    gt = torch.autograd.grad((yt * torch.from_numpy(w)).sum(), [*([] if ints else [xt]), *tps])
    if ints:
        gs, gt = (None, *gs), (None, *gt)
    else:
        _close(gs[0].numpy(), gt[0].numpy())
    by_id = {id(p): g for p, g in zip(tps, gt[1:])}
    for k, g in zip(names, gs[1:]):
        p, transposed = owners[k]
        want = by_id[id(p)].numpy()
        if sum(1 for q, _ in owners.values() if q is p) == 1:  # not shared with another initializer
            _close(g.numpy(), want.T if transposed else want)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_second_order_matches_torch(name: str) -> None:
    """The gradient of the squared input-gradient norm: a Hessian-vector product through the model."""
    data = om.exported(name)
    tm, x = om.make(name)
    m = eo.load(data)
    params = m.parameters()
    xe = engine.from_numpy(x.numpy()).requires_grad_()
    (gx,) = engine.autograd_grad((m(x=xe) ** 2).sum(), [xe], create_graph=True)
    wname = "fc.weight" if name == "cnn" else "fc1.weight"
    hx, hw = engine.autograd_grad((gx * gx).sum(), [xe, params[wname]])
    xt = x.clone().requires_grad_()
    (gxt,) = torch.autograd.grad((tm(xt) ** 2).sum(), [xt], create_graph=True)
    hxt, hwt = torch.autograd.grad((gxt * gxt).sum(), [xt, dict(tm.named_parameters())[wname]])
    _close(hx.numpy(), hxt.numpy())
    _close(hw.numpy(), hwt.numpy())


def test_intermediate_values_and_replaced_parameters() -> None:
    data = om.exported("mlp")
    tm, x = om.make("mlp")
    m = eo.load(data)
    xe = engine.from_numpy(x.numpy())
    y = m(x=xe)
    # every value the model computes can be asked for by its ONNX name
    names = sorted(n for n in m.value_names if n not in m.parameters() and n != "x")
    vals = m.run({"x": xe}, names)
    assert np.array_equal(vals["y"].detach().numpy(), y.detach().numpy())
    # parameters can be given per call, as torch.func.functional_call does
    zero = {k: engine.zeros_like(v) for k, v in m.parameters().items()}
    assert not m.run({"x": xe}, ["y"], zero)["y"].numpy().any()


def test_the_shape_subgraph_is_folded_at_load_time() -> None:
    """TorchScript's block computes reshape targets with Shape, Gather, Concat...: lowered for an
    input shape, none of that integer work is left to run, only the float computation."""
    data = om.exported("block", True)
    m = eo.load(data)
    assert {"Shape", "Gather", "Concat", "Unsqueeze"} <= {n[1] for n in m._nodes}
    prog = m.program({"x": ((2, 5, 8), np.float32)})
    env = {k: engine.from_numpy(a) for k, a in {**prog.params, **prog.constants}.items()}
    env["x"] = engine.zeros(2, 5, 8)
    before = set(env)
    prog.run(env)
    made = {k: v for k, v in env.items() if k not in before}
    assert made and all(v.dtype.is_floating_point for v in made.values()), \
        sorted(k for k, v in made.items() if not v.dtype.is_floating_point)
    assert any(a.dtype == np.int64 for a in prog.constants.values())  # the folded shapes


def test_a_dynamic_batch_is_lowered_per_shape() -> None:
    import io
    import warnings
    tm, x = om.make("cnn")
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(tm, (x,), f, input_names=["x"], output_names=["y"], dynamo=False, opset_version=17,
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    m = eo.load(f.getvalue())
    assert m.input_spec("x")[1][0] is None
    for batch in (1, 5):
        xb = torch.randn(batch, *x.shape[1:])
        _close(m(x=engine.from_numpy(xb.numpy())).detach().numpy(), tm(xb).detach().numpy(), 1e-5)
    assert len(m._programs) == 2
