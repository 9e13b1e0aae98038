"""Every supported ONNX operator, in a one-node model built with onnx.helper: forward values
against onnxruntime (float32), and for differentiable operators the gradient with respect to
every float input and initializer against central finite differences (float64). A test checks
that the table below covers every operator of engine.onnx's converter table; others check that
what is not supported is refused at load, naming the node and operator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import engine
import engine.onnx as eo


@dataclass
class Case:
    op: str
    inputs: list[Any]                  # arrays: run-time inputs; C(array): initializers; None: omitted
    attrs: dict[str, Any] = field(default_factory=dict)
    opset: int = 18
    grad: bool = True                  # differentiable (checked against finite differences)
    n_out: int = 1
    id: str = ""


@dataclass
class C:
    """An initializer (integer ones are constants; float ones are parameters); ``exact``: its
    dtype is kept in the float64 models (Resize's scales are float32 whatever the data)."""

    value: np.ndarray
    exact: bool = False


R = np.random.default_rng(0)


def f(*shape: int, lo: float = -2.0, hi: float = 2.0) -> np.ndarray:
    return R.uniform(lo, hi, shape)


def away(*shape: int) -> np.ndarray:
    """Values away from kinks and ties (relu, abs, max, sort): |x| in [0.3, 2], distinct."""
    n = int(np.prod(shape)) if shape else 1
    v = np.linspace(0.3, 2.0, n) * np.where(np.arange(n) % 2, 1, -1)
    return R.permutation(v).reshape(shape)


def i64(*v: int) -> C:
    return C(np.array(v, dtype=np.int64))


UNARY_POS = ["Log", "Sqrt", "Reciprocal"]
UNARY = ["Exp", "Neg", "Sin", "Cos", "Tan", "Atan", "Sinh", "Cosh", "Erf", "Sigmoid", "Tanh", "Softsign",
         "Mish", "HardSwish", "Softplus"]
KINKED = ["Abs", "Relu"]
ROUNDING = ["Floor", "Ceil", "Round", "Sign"]

CASES: list[Case] = [
    *[Case(op, [f(2, 3, lo=0.2, hi=2.0)]) for op in UNARY_POS],
    *[Case(op, [f(2, 3, lo=-1.2, hi=1.2)]) for op in UNARY],
    *[Case(op, [f(2, 3, lo=-0.9, hi=0.9)]) for op in ("Asin", "Acos")],
    *[Case(op, [away(2, 3)]) for op in KINKED],
    *[Case(op, [away(2, 3) + 0.25], grad=False) for op in ROUNDING],
    Case("IsNaN", [np.array([1.0, np.nan, 2.0])], grad=False),
    Case("IsInf", [np.array([1.0, np.inf, -np.inf])], grad=False, id="IsInf"),
    Case("IsInf", [np.array([1.0, np.inf, -np.inf])], {"detect_negative": 0}, grad=False, id="IsInf-pos"),
    Case("Not", [np.array([True, False])], grad=False),
    Case("Identity", [f(2, 3)]),
    *[Case(op, [f(2, 3), f(3)]) for op in ("Add", "Sub", "Mul")],
    Case("Div", [f(2, 3), f(3, lo=0.5, hi=2.0)]),
    Case("Div", [np.array([7, -7, 9], np.int64), np.array([2, 2, -4], np.int64)], grad=False, id="Div-int"),
    Case("Pow", [f(2, 3, lo=0.5, hi=2.0), f(3, lo=-1.5, hi=1.5)]),
    Case("Mod", [np.array([7, -7, 9], np.int64), np.array([3, 3, -4], np.int64)], grad=False),
    Case("Mod", [np.array([2.2, -3.5, 4.1]), np.array([1.5, 1.7, 1.9])], {"fmod": 1}, id="Mod-fmod"),
    *[Case(op, [f(2, 3), f(3)], grad=False) for op in ("Equal", "Less", "LessOrEqual", "Greater",
                                                        "GreaterOrEqual")],
    *[Case(op, [np.array([True, False, True]), np.array([True, True, False])], grad=False)
      for op in ("And", "Or", "Xor")],
    Case("Sum", [f(2, 3), f(3), f(2, 1)]),
    Case("Mean", [f(2, 3), f(3)]),
    Case("Max", [away(2, 3), away(2, 3) * 0.9]),
    Case("Min", [away(2, 3), away(2, 3) * 0.9]),
    Case("LeakyRelu", [away(2, 3)], {"alpha": 0.2}),
    Case("Elu", [away(2, 3)], {"alpha": 0.7}),
    Case("Celu", [away(2, 3)], {"alpha": 1.3}),
    Case("Selu", [away(2, 3)]),
    Case("HardSigmoid", [f(2, 3, lo=-2, hi=2)], {"alpha": 0.3, "beta": 0.4}),
    Case("ThresholdedRelu", [away(2, 3)], {"alpha": 0.5}),
    Case("PRelu", [away(2, 3, 2), f(3, 1)]),
    Case("Gelu", [f(2, 3)], opset=20),
    Case("Gelu", [f(2, 3)], {"approximate": "tanh"}, opset=20, id="Gelu-tanh"),
    Case("Softmax", [f(2, 3, 4)], {"axis": 1}),
    Case("LogSoftmax", [f(2, 3, 4)]),
    Case("Clip", [away(2, 3), C(np.array(-0.5)), C(np.array(0.9))], grad=True),
    Case("MatMul", [f(2, 3, 4), f(4, 5)]),
    Case("Gemm", [f(3, 4), f(5, 4), f(5)], {"transB": 1}),
    Case("Gemm", [f(4, 3), f(4, 5), f(3, 5)], {"transA": 1, "alpha": 0.5, "beta": 2.0}, id="Gemm-general"),
    Case("Gemm", [f(3, 4), f(5, 4), f(1, 5)], {"transB": 1}, id="Gemm-broadcast-C"),
    Case("Einsum", [f(2, 3), f(3, 4)], {"equation": "ij,jk->ik"}),
    Case("Det", [f(3, 3)]),
    Case("Conv", [f(1, 2, 5, 5), f(3, 2, 3, 3), f(3)], {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
    Case("Conv", [f(1, 2, 6), f(4, 1, 3)], {"group": 2, "pads": [0, 2], "dilations": [2]}, id="Conv-1d"),
    Case("Conv", [f(1, 1, 5, 5), f(2, 1, 2, 2)], {"auto_pad": "SAME_UPPER"}, id="Conv-same"),
    Case("ConvTranspose", [f(1, 2, 3, 3), f(2, 3, 3, 3), f(3)],
         {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}),
    Case("MaxPool", [away(1, 2, 5, 5)], {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 1, 1]}),
    Case("MaxPool", [away(1, 1, 6, 6)], {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
         id="MaxPool-ceil"),
    Case("AveragePool", [f(1, 2, 5, 5)], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    Case("AveragePool", [f(1, 2, 5, 5)], {"kernel_shape": [2, 2], "strides": [2, 2],
                                          "count_include_pad": 1}, id="AveragePool-include"),
    Case("GlobalAveragePool", [f(2, 3, 4, 4)]),
    Case("GlobalMaxPool", [away(2, 3, 2, 2)]),
    Case("BatchNormalization", [f(2, 3, 4), f(3), f(3), f(3), f(3, lo=0.5, hi=1.5)], {"epsilon": 1e-3}),
    Case("LayerNormalization", [f(2, 3, 4), f(4), f(4)]),
    Case("LayerNormalization", [f(2, 3, 4), f(3, 4)], {"axis": 1}, n_out=3, id="LayerNormalization-stats"),
    Case("InstanceNormalization", [f(2, 3, 5), f(3), f(3)]),
    Case("GroupNormalization", [f(2, 4, 3), f(4), f(4)], {"num_groups": 2}, opset=21),
    Case("Resize", [f(1, 2, 3, 3), None, C(np.array([1, 1, 2, 2], np.float32), True)],
         {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}),
    Case("Resize", [f(1, 2, 3, 4), None, C(np.array([1, 1, 2, 1.5], np.float32), True)], {"mode": "linear"},
         id="Resize-linear"),
    Case("Resize", [f(1, 2, 4, 4), None, C(np.array([1, 1, 0.5, 0.5], np.float32), True)],
         {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, id="Resize-down"),
    Case("Resize", [f(1, 2, 5), None, None, i64(1, 2, 9)],
         {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, id="Resize-sizes"),
    Case("LpNormalization", [f(2, 3)], {"axis": 1, "p": 2}),
    Case("LpNormalization", [away(2, 3)], {"axis": 0, "p": 1}, id="LpNormalization-p1"),
    Case("Dropout", [f(2, 3)]),
    Case("Dropout", [f(2, 3), C(np.array(0.5, np.float32)), C(np.array(False))], n_out=2, id="Dropout-mask"),
    Case("Shape", [f(2, 3, 4)], {"start": 1}, grad=False),
    Case("Size", [f(2, 3)], grad=False),
    Case("Reshape", [f(2, 3, 4), i64(0, -1)]),
    Case("Flatten", [f(2, 3, 4)], {"axis": 2}),
    Case("Transpose", [f(2, 3, 4)], {"perm": [2, 0, 1]}),
    Case("Concat", [f(2, 3), f(2, 1)], {"axis": -1}),
    Case("Split", [f(2, 5), i64(2, 3)], {"axis": 1}, n_out=2),
    Case("Split", [f(6, 2)], {"num_outputs": 3}, n_out=3, id="Split-num_outputs"),
    Case("Slice", [f(4, 5), i64(1, -1), i64(4, 0), i64(0, 1), i64(2, -2)]),
    Case("Slice", [f(4, 5), i64(1), i64(100), i64(1)], id="Slice-clamped"),
    Case("Gather", [f(4, 3), C(np.array([[0, 2], [-1, 1]], np.int64))]),
    Case("Gather", [f(4, 3), C(np.array(1, np.int64))], {"axis": 1}, id="Gather-scalar"),
    Case("Gather", [f(4, 3), np.array([3, 0, 0], np.int64)], id="Gather-runtime-indices"),
    Case("GatherElements", [f(3, 3), C(np.array([[0, 1], [2, 0], [1, 1]], np.int64))], {"axis": 1}),
    Case("Squeeze", [f(2, 1, 3, 1), i64(1, -1)]),
    Case("Unsqueeze", [f(2, 3), i64(0, 3)]),
    Case("Expand", [f(3, 1), i64(2, 1, 4)]),
    Case("Tile", [f(2, 3), i64(2, 1)]),
    Case("Pad", [f(2, 3), i64(0, 1, 1, 2), C(np.array(0.5))]),
    Case("Pad", [f(1, 2, 4), i64(0, 0, 2, 0, 0, 1)], {"mode": "reflect"}, id="Pad-reflect"),
    Case("Pad", [f(1, 2, 4), i64(1, 2), None, i64(2)], {"mode": "edge"}, id="Pad-edge-axes"),
    Case("Where", [np.array([[True, False, True]]), f(2, 3), f(3)]),
    Case("Cast", [f(2, 3)], {"to": TensorProto.DOUBLE}, grad=False),
    Case("Cast", [np.array([1.7, -2.2, 3.9])], {"to": TensorProto.INT64}, grad=False, id="Cast-int"),
    Case("CastLike", [np.array([1, 2], np.int64), f(2)], grad=False),
    Case("Constant", [], {"value": numpy_helper.from_array(np.array([1.5, 2.5], np.float32))}, grad=False),
    Case("Constant", [], {"value_ints": [1, 2, 3]}, grad=False, id="Constant-ints"),
    Case("ConstantOfShape", [i64(2, 3)], {"value": numpy_helper.from_array(np.array([7], np.int64))},
         grad=False),
    Case("Range", [C(np.array(1, np.int64)), C(np.array(10, np.int64)), C(np.array(3, np.int64))],
         grad=False),
    Case("Trilu", [f(3, 4), C(np.array(1, np.int64))], {"upper": 0}),
    Case("CumSum", [f(2, 4), C(np.array(1, np.int64))], {"exclusive": 1, "reverse": 1}),
    Case("ArgMax", [away(3, 4)], {"axis": 1, "keepdims": 0}, grad=False),
    Case("ArgMin", [away(3, 4)], {"axis": 0}, grad=False),
    Case("ReduceSum", [f(2, 3, 4), i64(0, 2)], {"keepdims": 0}),
    Case("ReduceSum", [f(2, 3)], {"noop_with_empty_axes": 1}, id="ReduceSum-noop"),
    Case("ReduceMean", [f(2, 3, 4)], {"axes": [1]}, opset=17, id="ReduceMean-attr"),
    Case("ReduceMean", [f(2, 3, 4), i64(-1)]),
    Case("ReduceMax", [away(2, 3, 4), i64(1)]),
    Case("ReduceMin", [away(2, 3, 4)], {"keepdims": 0}),
    Case("ReduceProd", [f(2, 3, 4, lo=0.5, hi=1.5), i64(0, 2)]),
    Case("ReduceL1", [away(2, 3), i64(1)]),
    Case("ReduceL2", [f(2, 3), i64(1)]),
    Case("ReduceSumSquare", [f(2, 3), i64(0)]),
    Case("ReduceLogSum", [f(2, 3, lo=0.5, hi=2), i64(1)]),
    Case("ReduceLogSumExp", [f(2, 3), i64(1)]),
    Case("ai.onnx.ml.LinearRegressor", [f(4, 3)], {"coefficients": [0.5, -1.0, 2.0, 1.0, 0.0, -0.5],
                                                   "intercepts": [0.1, -0.2], "targets": 2}),
    Case("ai.onnx.ml.LinearClassifier", [f(4, 3)],
         {"coefficients": [0.5, -1.0, 2.0, 1.0, 0.0, -0.5, 0.3, 0.3, 1.0], "intercepts": [0.1, -0.2, 0.0],
          "classlabels_ints": [3, 5, 7], "post_transform": "SOFTMAX"}, n_out=2),
    Case("ai.onnx.ml.LinearClassifier", [f(4, 3)], {"coefficients": [0.5, -1.0, 2.0], "intercepts": [0.1],
                                                    "classlabels_ints": [0, 1], "post_transform": "LOGISTIC"},
         n_out=2, id="LinearClassifier-binary"),
    Case("ai.onnx.ml.ArrayFeatureExtractor", [f(3, 4), C(np.array([3, 1], np.int64))]),
    Case("ai.onnx.ml.Normalizer", [away(3, 4)], {"norm": "L2"}),
    Case("ai.onnx.ml.Normalizer", [f(3, 4, lo=0.5, hi=2.0)], {"norm": "L1"}, id="Normalizer-L1"),
]


def _id(c: Case) -> str:
    return c.id or c.op.rpartition(".")[2]


def build(c: Case, float_dtype: type = np.float32) -> tuple[bytes, dict[str, np.ndarray], list[str]]:
    """The one-node model, its run-time inputs, and its float parameter names."""
    def cast(a: np.ndarray) -> np.ndarray:
        return a.astype(float_dtype) if a.dtype.kind == "f" else a

    names, vins, inits, feeds, params = [], [], [], {}, []
    for i, v in enumerate(c.inputs):
        if v is None:
            names.append("")
            continue
        name = f"in{i}"
        names.append(name)
        if isinstance(v, C):
            arr = np.asarray(v.value) if v.exact else cast(np.asarray(v.value))
            inits.append(numpy_helper.from_array(arr, name))
            if arr.dtype.kind == "f":
                params.append(name)
        else:
            arr = cast(np.asarray(v))
            feeds[name] = arr
            vins.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(arr.dtype),
                                                      arr.shape))
    outs = [f"out{k}" for k in range(c.n_out)]
    domain, _, op_type = c.op.rpartition(".")
    node = helper.make_node(op_type, names, outs, name="the_node", domain=domain, **c.attrs)
    graph = helper.make_graph([node], "g", vins, [helper.make_empty_tensor_value_info(o) for o in outs],
                              initializer=inits)
    imports = [helper.make_opsetid("", c.opset)] + ([helper.make_opsetid(domain, 3)] if domain else [])
    model = helper.make_model(graph, opset_imports=imports, ir_version=10 if c.opset >= 21 else 9)
    model = onnx.shape_inference.infer_shapes(model)
    for o in model.graph.output:  # a function op onnx cannot infer (GroupNormalization): as its input
        if not o.type.HasField("tensor_type"):
            first = np.asarray(c.inputs[0] if not isinstance(c.inputs[0], C) else c.inputs[0].value)
            o.CopyFrom(helper.make_tensor_value_info(o.name, helper.np_dtype_to_tensor_dtype(
                cast(first).dtype), first.shape))
    return model.SerializeToString(), feeds, params


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_forward_matches_onnxruntime(case: Case) -> None:
    data, feeds, _ = build(case)
    m = eo.load(data)
    outs = m(**{k: engine.from_numpy(v) for k, v in feeds.items()}) if feeds else m.run({}, m.output_names)
    if isinstance(outs, dict):
        outs = list(outs.values())
    outs = list(outs) if isinstance(outs, tuple) else outs if isinstance(outs, list) else [outs]
    refs = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)
    for o, r in zip(outs, refs):
        got = o.detach().numpy()
        assert got.shape == r.shape and got.dtype == r.dtype, (got.shape, got.dtype, r.shape, r.dtype)
        np.testing.assert_allclose(got, r, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", [c for c in CASES if c.grad], ids=_id)
def test_gradient_matches_finite_differences(case: Case) -> None:
    data, feeds, params = build(case, np.float64)
    m = eo.load(data)
    ps = m.parameters()
    names = [k for k, v in feeds.items() if v.dtype.kind == "f"]
    xs = {k: engine.from_numpy(v).requires_grad_() if k in names else engine.from_numpy(v)
          for k, v in feeds.items()}
    outs = m.run(xs, m.output_names)
    ws = {o: np.random.default_rng(1).standard_normal(tuple(v.shape)) for o, v in outs.items()
          if v.dtype.is_floating_point}

    def loss_np(feed: dict[str, np.ndarray], pv: dict[str, np.ndarray]) -> float:
        vals = m.run({k: engine.from_numpy(v) for k, v in feed.items()}, list(ws),
                     {k: engine.from_numpy(v) for k, v in pv.items()})
        return float(sum((vals[o].detach().numpy() * w).sum() for o, w in ws.items()))

    loss = sum((outs[o] * engine.from_numpy(w)).sum() for o, w in ws.items())
    wrt = [xs[k] for k in names] + [ps[k] for k in params]
    grads = engine.autograd_grad(loss, wrt, allow_unused=True, materialize_grads=True)
    base_p = {k: ps[k].detach().numpy() for k in params}
    eps = 1e-6
    for k, g in zip(names + params, grads):
        src = feeds if k in names else base_p
        num = np.zeros_like(src[k])
        for idx in np.ndindex(src[k].shape):
            hi, lo = src[k].copy(), src[k].copy()
            hi[idx] += eps
            lo[idx] -= eps
            if k in names:
                num[idx] = (loss_np({**feeds, k: hi}, base_p) - loss_np({**feeds, k: lo}, base_p)) / (2 * eps)
            else:
                num[idx] = (loss_np(feeds, {**base_p, k: hi}) - loss_np(feeds, {**base_p, k: lo})) / (2 * eps)
        np.testing.assert_allclose(g.numpy(), num, rtol=1e-5, atol=1e-6, err_msg=f"d/d{k}")


def test_every_operator_is_tested() -> None:
    assert set(eo.operators()) == {c.op for c in CASES}
    assert len([op for op in eo.operators() if "." not in op]) >= 80  # the default domain


# ---------------------------------------------------------------- refusals
def _model(node: Any, opset: int = 18, domain_opsets: dict | None = None, inits: list | None = None) -> Any:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    g = helper.make_graph([node], "g", [x], [y], initializer=inits or [])
    imports = [helper.make_opsetid("", opset)]
    imports += [helper.make_opsetid(d, v) for d, v in (domain_opsets or {}).items()]
    return helper.make_model(g, opset_imports=imports, ir_version=9)


def test_an_unsupported_operator_is_refused_naming_node_and_operator() -> None:
    with pytest.raises(eo.OnnxError, match=r"node 'n7' \(Hardmax\): operator not supported") as e:
        eo.load(_model(helper.make_node("Hardmax", ["x"], ["y"], name="n7")))
    assert (e.value.node, e.value.op_type) == ("n7", "Hardmax")


def test_an_unsupported_attribute_is_refused() -> None:
    with pytest.raises(eo.OnnxError, match=r"node 'n' \(Softmax\): attribute 'bogus' is not supported"):
        eo.load(_model(helper.make_node("Softmax", ["x"], ["y"], name="n", bogus=1)))


def test_an_unsupported_attribute_value_is_refused_when_lowered() -> None:
    m = eo.load(_model(helper.make_node("Gelu", ["x"], ["y"], name="g", approximate="erf"), opset=20))
    with pytest.raises(eo.OnnxError, match=r"node 'g' \(Gelu\): approximate='erf' is not supported"):
        m(x=engine.ones(2))


def test_another_domain_is_refused() -> None:
    node = helper.make_node("FusedMatMul", ["x", "x"], ["y"], name="f", domain="com.microsoft")
    with pytest.raises(eo.OnnxError, match="domain 'com.microsoft' is not supported"):
        eo.load(_model(node, domain_opsets={"com.microsoft": 1}))


@pytest.mark.parametrize("opset", [11, 22])
def test_opsets_outside_13_to_21_are_refused(opset: int) -> None:
    with pytest.raises(eo.OnnxError, match=f"opset {opset} is not supported"):
        eo.load(_model(helper.make_node("Relu", ["x"], ["y"]), opset=opset))


def test_external_data_is_refused() -> None:
    w = numpy_helper.from_array(np.ones(2, np.float32), "w")
    w.data_location = TensorProto.EXTERNAL
    w.ClearField("raw_data")
    w.external_data.add(key="location", value="weights.bin")
    with pytest.raises(eo.OnnxError, match="initializer 'w' keeps its data in an external file"):
        eo.load(_model(helper.make_node("Add", ["x", "w"], ["y"]), inits=[w]))


@pytest.mark.parametrize("data", [b"\x00\x01garbage", b"not a model at all"])
def test_malformed_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(eo.OnnxError):
        eo.load(data)


def test_wrong_input_shapes_are_refused() -> None:
    m = eo.load(_model(helper.make_node("Relu", ["x"], ["y"])))
    with pytest.raises(eo.OnnxError, match=r"input 'x' has shape \[3\]; the model declares \[2\]"):
        m(x=engine.ones(3))


SECOND_ORDER = {"Tanh", "Erf", "Softmax", "LogSoftmax", "Pow", "MatMul", "Gemm-general", "Conv",
                "LayerNormalization", "BatchNormalization", "Gelu", "Mish", "ReduceL2",
                "InstanceNormalization", "Div"}


@pytest.mark.parametrize("case", [c for c in CASES if _id(c) in SECOND_ORDER], ids=_id)
def test_second_order_matches_finite_differences(case: Case) -> None:
    """d/du (v . dL/dx) for every float input u (x itself and the mixed partials), with dL/dx
    from create_graph=True, against central differences of dL/dx."""
    data, feeds, _ = build(case, np.float64)
    m = eo.load(data)
    floats = [k for k, v in feeds.items() if v.dtype.kind == "f"]
    name = floats[0]
    w = None

    def first(feed: dict[str, np.ndarray], create_graph: bool) -> tuple:
        nonlocal w
        ins = {k: engine.from_numpy(v).requires_grad_() if k in floats else engine.from_numpy(v)
               for k, v in feed.items()}
        y = m.run(ins, m.output_names[:1])[m.output_names[0]]
        if w is None:
            w = np.random.default_rng(2).standard_normal(tuple(y.shape))
        (g,) = engine.autograd_grad((y * engine.from_numpy(w)).sum(), [ins[name]], create_graph=create_graph)
        return ins, g

    v = np.random.default_rng(3).standard_normal(feeds[name].shape)
    ins, g = first(feeds, True)
    hs = engine.autograd_grad((g * engine.from_numpy(v)).sum(), [ins[k] for k in floats], allow_unused=True,
                              materialize_grads=True)
    eps = 1e-6
    for k, h in zip(floats, hs):
        num = np.zeros_like(feeds[k])
        for idx in np.ndindex(num.shape):
            hi, lo = feeds[k].copy(), feeds[k].copy()
            hi[idx] += eps
            lo[idx] -= eps
            d = first({**feeds, k: hi}, False)[1].numpy() - first({**feeds, k: lo}, False)[1].numpy()
            num[idx] = (d * v).sum() / (2 * eps)
        np.testing.assert_allclose(h.numpy(), num, rtol=1e-5, atol=1e-6, err_msg=f"d/d{k}")
