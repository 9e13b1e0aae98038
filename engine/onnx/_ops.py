"""The supported ONNX operators: :data:`CONVERTERS` maps each ``op_type`` to its converter.

A converter ``fn(b, ins, attrs, n_out)`` gets the node's input values (``Sym`` for run-time
values, numpy arrays for constants, None for omitted optional inputs), its attributes with
ONNX defaults not yet applied, and how many outputs the node names; it returns the output
values, computed with ``b.op(engine_op, ...)``. Shapes, axes and other operands that decide
shapes must be constants (``b.const``/``b.ints``), which is what load-time folding guarantees
for exported models.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .. import _dtype
from . import Builder, Conv, Sym

__all__ = ["CONVERTERS"]

CONVERTERS: dict[str, Conv] = {}


def onnx_op(*names: str, attrs: Iterable[str] = ()) -> Callable:
    def deco(fn: Callable) -> Callable:
        for n in names:
            if n in CONVERTERS:
                raise ValueError(f"ONNX operator {n!r} registered twice")
            CONVERTERS[n] = Conv(fn, frozenset(attrs))
        return fn
    return deco


def _rank(b: Builder, v: Any) -> int:
    return len(b.shape(v))


def _axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def _edtype(dt: Any) -> Any:
    return _dtype.from_numpy_dtype(np.dtype(dt))


def _onnx_np_dtype(to: int) -> np.dtype:
    import onnx
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(to))


# ---------------------------------------------------------------- elementwise
_UNARY = {
    "Abs": "abs", "Neg": "neg", "Exp": "exp", "Log": "log", "Sqrt": "sqrt", "Reciprocal": "reciprocal",
    "Floor": "floor", "Ceil": "ceil", "Round": "round", "Sign": "sign", "Sin": "sin", "Cos": "cos",
    "Tan": "tan", "Asin": "asin", "Acos": "acos", "Atan": "atan", "Sinh": "sinh", "Cosh": "cosh",
    "Erf": "erf", "Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "IsNaN": "isnan",
    "Not": "logical_not",
    "Softsign": "nn.functional.softsign", "Mish": "nn.functional.mish",
}


def _unary(engine_op: str) -> Callable:
    return lambda b, ins, a, n: b.op(engine_op, ins[0])


for _name, _eop in _UNARY.items():
    onnx_op(_name)(_unary(_eop))

_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Pow": "pow", "Equal": "eq", "Less": "lt",
           "LessOrEqual": "le", "Greater": "gt", "GreaterOrEqual": "ge", "And": "logical_and",
           "Or": "logical_or", "Xor": "logical_xor"}


def _binary(engine_op: str) -> Callable:
    return lambda b, ins, a, n: b.op(engine_op, ins[0], ins[1])


for _name, _eop in _BINARY.items():
    onnx_op(_name)(_binary(_eop))


@onnx_op("Div")
def _div(b: Builder, ins: list, a: dict, n: int) -> Any:
    if b.dtype(ins[0]).kind in "iu":  # ONNX integer division truncates, as C does
        return b.op("div", ins[0], ins[1], rounding_mode="trunc")
    return b.op("div", ins[0], ins[1])


@onnx_op("Mod", attrs=("fmod",))
def _mod(b: Builder, ins: list, a: dict, n: int) -> Any:
    return b.op("fmod" if a.get("fmod", 0) else "remainder", ins[0], ins[1])


def _variadic(engine_op: str, mean: bool = False) -> Callable:
    def conv(b: Builder, ins: list, a: dict, n: int) -> Any:
        acc = ins[0]
        for x in ins[1:]:
            acc = b.op(engine_op, acc, x)
        if len(ins) == 1 and isinstance(acc, Sym):
            return b.op("view_as", acc, acc)
        return b.op("div", acc, float(len(ins))) if mean else acc
    return conv


onnx_op("Sum")(_variadic("add"))
onnx_op("Mean")(_variadic("add", mean=True))
onnx_op("Max")(_variadic("maximum"))
onnx_op("Min")(_variadic("minimum"))


@onnx_op("IsInf", attrs=("detect_negative", "detect_positive"))
def _isinf(b: Builder, ins: list, a: dict, n: int) -> Any:
    neg, pos = a.get("detect_negative", 1), a.get("detect_positive", 1)
    inf = b.op("isinf", ins[0])
    if neg and pos:
        return inf
    sign = b.op("gt" if pos else "lt", ins[0], 0)
    return b.op("logical_and", inf, sign)


@onnx_op("Identity")
def _identity(b: Builder, ins: list, a: dict, n: int) -> Any:
    return ins[0]


# ---------------------------------------------------------------- activations
@onnx_op("LeakyRelu", attrs=("alpha",))
def _leaky_relu(b: Builder, ins: list, a: dict, n: int) -> Any:
    return b.op("nn.functional.leaky_relu", ins[0], float(a.get("alpha", 0.01)))


@onnx_op("Elu", attrs=("alpha",))
def _elu(b: Builder, ins: list, a: dict, n: int) -> Any:
    return b.op("nn.functional.elu", ins[0], float(a.get("alpha", 1.0)))


@onnx_op("Celu", attrs=("alpha",))
def _celu(b: Builder, ins: list, a: dict, n: int) -> Any:
    return b.op("nn.functional.celu", ins[0], float(a.get("alpha", 1.0)))


@onnx_op("Selu", attrs=("alpha", "gamma"))
def _selu(b: Builder, ins: list, a: dict, n: int) -> Any:
    alpha = float(a.get("alpha", 1.67326319217681884765625))
    gamma = float(a.get("gamma", 1.05070102214813232421875))
    return b.op("mul", b.op("nn.functional.elu", ins[0], alpha), gamma)


@onnx_op("HardSigmoid", attrs=("alpha", "beta"))
def _hard_sigmoid(b: Builder, ins: list, a: dict, n: int) -> Any:
    alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    return b.op("clamp", b.op("add", b.op("mul", ins[0], alpha), beta), 0.0, 1.0)


@onnx_op("HardSwish")
def _hard_swish(b: Builder, ins: list, a: dict, n: int) -> Any:
    return b.op("nn.functional.hardswish", ins[0])


@onnx_op("Softplus")
def _softplus(b: Builder, ins: list, a: dict, n: int) -> Any:
    # ONNX's softplus is log(1 + exp(x)) everywhere: no linear regime above a threshold
    return b.op("nn.functional.softplus", ins[0], 1.0, math.inf)


@onnx_op("ThresholdedRelu", attrs=("alpha",))
def _thresholded_relu(b: Builder, ins: list, a: dict, n: int) -> Any:
    x = ins[0]
    return b.op("where", b.op("gt", x, float(a.get("alpha", 1.0))), x, b.op("zeros_like", x))


@onnx_op("PRelu")
def _prelu(b: Builder, ins: list, a: dict, n: int) -> Any:
    x, slope = ins
    return b.op("where", b.op("gt", x, 0), x, b.op("mul", x, slope))


@onnx_op("Gelu", attrs=("approximate",))
def _gelu(b: Builder, ins: list, a: dict, n: int) -> Any:
    approx = a.get("approximate", "none")
    if approx not in ("none", "tanh"):
        raise b.fail(f"approximate={approx!r} is not supported")
    return b.op("nn.functional.gelu", ins[0], approximate=approx)


def _softmax(engine_op: str) -> Callable:
    def conv(b: Builder, ins: list, a: dict, n: int) -> Any:
        return b.op(engine_op, ins[0], _axis(int(a.get("axis", -1)), _rank(b, ins[0])))
    return conv


onnx_op("Softmax", attrs=("axis",))(_softmax("softmax"))
onnx_op("LogSoftmax", attrs=("axis",))(_softmax("log_softmax"))


@onnx_op("Clip")
def _clip(b: Builder, ins: list, a: dict, n: int) -> Any:
    x = ins[0]
    lo = ins[1] if len(ins) > 1 else None
    hi = ins[2] if len(ins) > 2 else None
    # constant bounds as numbers; run-time ones (parameters too: torch's clamp differentiates
    # tensor bounds) stay tensors
    if lo is not None and not isinstance(lo, Sym):
        lo = np.asarray(lo).reshape(()).item()
    if hi is not None and not isinstance(hi, Sym):
        hi = np.asarray(hi).reshape(()).item()
    if lo is None and hi is None:
        return x
    return b.op("clamp", x, lo, hi)


# ---------------------------------------------------------------- linear algebra
@onnx_op("MatMul")
def _matmul(b: Builder, ins: list, a: dict, n: int) -> Any:
    return b.op("matmul", ins[0], ins[1])


@onnx_op("Gemm", attrs=("alpha", "beta", "transA", "transB"))
def _gemm(b: Builder, ins: list, a: dict, n: int) -> Any:
    A, B = ins[0], ins[1]
    C = ins[2] if len(ins) > 2 else None
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    ta, tb = int(a.get("transA", 0)), int(a.get("transB", 0))
    if ta:
        A = b.op("t", A)
    cols = b.shape(B)[0] if tb else b.shape(B)[-1]
    if tb and alpha == 1.0 and (C is None or (beta == 1.0 and b.shape(C) == (cols,))):
        return b.op("nn.functional.linear", A, B, C)  # torch's Linear, exactly as exported
    y = b.op("matmul", A, b.op("t", B) if tb else B)
    if alpha != 1.0:
        y = b.op("mul", y, alpha)
    if C is not None:
        y = b.op("add", y, C if beta == 1.0 else b.op("mul", C, beta))
    return y


@onnx_op("Einsum", attrs=("equation",))
def _einsum(b: Builder, ins: list, a: dict, n: int) -> Any:
    return b.op("einsum", a["equation"].replace(" ", ""), *ins)


@onnx_op("Det")
def _det(b: Builder, ins: list, a: dict, n: int) -> Any:
    return b.op("det", ins[0])


# ---------------------------------------------------------------- convolution and pooling
def _spatial(b: Builder, x: Any, a: dict, kernel: list[int], strides: list[int], dilations: list[int],
             transposed: bool = False) -> list[int]:
    """ONNX pads (begin..., end...) resolved from auto_pad."""
    k = len(kernel)
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        pads = list(a.get("pads", [0] * (2 * k)))
        if len(pads) != 2 * k:
            raise b.fail(f"pads has {len(pads)} values; {2 * k} expected")
        return pads
    if auto == "VALID":
        return [0] * (2 * k)
    if auto not in ("SAME_UPPER", "SAME_LOWER") or transposed:
        raise b.fail(f"auto_pad={auto!r} is not supported here")
    size = b.shape(x)[2:]
    begin, end = [], []
    for i in range(k):
        out = -(-size[i] // strides[i])
        total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size[i])
        small, big = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else big)
        end.append(big if auto == "SAME_UPPER" else small)
    return begin + end


def _torch_pad(pads: list[int]) -> list[int]:
    """ONNX (b1, b2, ..., e1, e2, ...) -> torch's (b_last, e_last, ..., b_first, e_first)."""
    k = len(pads) // 2
    out: list[int] = []
    for i in reversed(range(k)):
        out += [pads[i], pads[i + k]]
    return out


def _sym_pads(b: Builder, x: Any, pads: list[int], value: float = 0.0) -> tuple[Any, list[int]]:
    """Symmetric padding as an argument; asymmetric padding applied first with ``value``."""
    k = len(pads) // 2
    if pads[:k] == pads[k:]:
        return x, pads[:k]
    return b.op("nn.functional.pad", x, _torch_pad(pads), "constant", value), [0] * k


def _conv_operands(b: Builder, ins: list, what: str) -> tuple[Any, Any, Any, list[int], int]:
    """Conv and ConvTranspose: input, weight, optional bias, the weight's shape and the spatial rank."""
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    wshape = b.shape(w)
    k = len(wshape) - 2
    if k not in (1, 2, 3):
        raise b.fail(f"{k}-D {what} is not supported")
    return x, w, bias, wshape, k


@onnx_op("Conv", attrs=("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"))
def _conv(b: Builder, ins: list, a: dict, n: int) -> Any:
    x, w, bias, wshape, k = _conv_operands(b, ins, "convolution")
    kernel = list(a.get("kernel_shape", wshape[2:]))
    strides = list(a.get("strides", [1] * k))
    dil = list(a.get("dilations", [1] * k))
    x, pad = _sym_pads(b, x, _spatial(b, x, a, kernel, strides, dil))
    return b.op(f"nn.functional.conv{k}d", x, w, bias, strides, pad, dil, int(a.get("group", 1)))


@onnx_op("ConvTranspose", attrs=("auto_pad", "dilations", "group", "kernel_shape", "output_padding",
                                 "output_shape", "pads", "strides"))
def _conv_transpose(b: Builder, ins: list, a: dict, n: int) -> Any:
    x, w, bias, wshape, k = _conv_operands(b, ins, "transposed convolution")
    if "output_shape" in a:
        raise b.fail("attribute output_shape is not supported (give pads and output_padding)")
    strides = list(a.get("strides", [1] * k))
    dil = list(a.get("dilations", [1] * k))
    kernel = list(a.get("kernel_shape", wshape[2:]))
    pads = _spatial(b, x, a, kernel, strides, dil, transposed=True)
    if pads[:k] != pads[k:]:
        raise b.fail(f"asymmetric pads {pads} are not supported")
    outpad = list(a.get("output_padding", [0] * k))
    return b.op(f"nn.functional.conv_transpose{k}d", x, w, bias, strides, pads[:k], outpad,
                int(a.get("group", 1)), dil)


def _pool_common(b: Builder, x: Any, a: dict) -> tuple[int, list[int], list[int], list[int], list[int]]:
    kernel = list(a["kernel_shape"])
    k = len(kernel)
    if k not in (1, 2, 3):
        raise b.fail(f"{k}-D pooling is not supported")
    strides = list(a.get("strides", [1] * k))
    dil = list(a.get("dilations", [1] * k))
    return k, kernel, strides, dil, _spatial(b, x, a, kernel, strides, dil)


@onnx_op("MaxPool", attrs=("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order",
                           "strides"))
def _max_pool(b: Builder, ins: list, a: dict, n: int) -> Any:
    if n > 1:
        raise b.fail("the Indices output is not supported")
    x = ins[0]
    k, kernel, strides, dil, pads = _pool_common(b, x, a)
    x, pad = _sym_pads(b, x, pads, -math.inf)
    if any(2 * p > kk for p, kk in zip(pad, kernel)):  # torch's limit: pad first instead
        x, pad = b.op("nn.functional.pad", x, _torch_pad(pad + pad), "constant", -math.inf), [0] * k
    return b.op(f"nn.functional.max_pool{k}d", x, kernel, strides, pad, dil, bool(a.get("ceil_mode", 0)))


@onnx_op("AveragePool", attrs=("auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape",
                               "pads", "strides"))
def _avg_pool(b: Builder, ins: list, a: dict, n: int) -> Any:
    x = ins[0]
    k, kernel, strides, dil, pads = _pool_common(b, x, a)
    if any(d != 1 for d in dil):
        raise b.fail("dilations other than 1 are not supported")
    include = bool(a.get("count_include_pad", 0))
    if pads[:k] != pads[k:]:
        if not include:
            raise b.fail(f"asymmetric pads {pads} are only supported with count_include_pad=1")
        x, pad = _sym_pads(b, x, pads)
    else:
        pad = pads[:k]
    if any(2 * p > kk for p, kk in zip(pad, kernel)):
        raise b.fail(f"pads {pads} larger than half the kernel are not supported")
    return b.op(f"nn.functional.avg_pool{k}d", x, kernel, strides, pad, bool(a.get("ceil_mode", 0)), include)


@onnx_op("GlobalAveragePool")
def _global_avg_pool(b: Builder, ins: list, a: dict, n: int) -> Any:
    x = ins[0]
    return b.op("mean", x, tuple(range(2, _rank(b, x))), True)


@onnx_op("GlobalMaxPool")
def _global_max_pool(b: Builder, ins: list, a: dict, n: int) -> Any:
    x = ins[0]
    return b.op("amax", x, tuple(range(2, _rank(b, x))), True)


# ---------------------------------------------------------------- normalization
def _channel(b: Builder, v: Any, rank: int) -> Any:
    """A per-channel vector shaped to broadcast against (N, C, ...)."""
    return b.op("reshape", v, -1, *([1] * (rank - 2)))


@onnx_op("BatchNormalization", attrs=("epsilon", "momentum", "training_mode"))
def _batch_norm(b: Builder, ins: list, a: dict, n: int) -> Any:
    if a.get("training_mode", 0) or n > 1:
        raise b.fail("only the inference form (training_mode=0, one output) is supported")
    x, scale, bias, mean, var = ins
    eps = float(a.get("epsilon", 1e-5))
    r = _rank(b, x)
    if r < 2:
        raise b.fail("the input needs at least 2 dimensions")
    inv = b.op("rsqrt", b.op("add", _channel(b, var, r), eps))
    y = b.op("mul", b.op("sub", x, _channel(b, mean, r)), inv)
    return b.op("add", b.op("mul", y, _channel(b, scale, r)), _channel(b, bias, r))


@onnx_op("LayerNormalization", attrs=("axis", "epsilon", "stash_type"))
def _layer_norm(b: Builder, ins: list, a: dict, n: int) -> Any:
    x, scale = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    r = _rank(b, x)
    axis = _axis(int(a.get("axis", -1)), r)
    eps = float(a.get("epsilon", 1e-5))
    norm_shape = list(b.shape(x)[axis:])
    if n == 1 and list(b.shape(scale)) == norm_shape and (bias is None or list(b.shape(bias)) == norm_shape):
        return b.op("nn.functional.layer_norm", x, norm_shape, scale, bias, eps)
    dims = tuple(range(axis, r))
    mean = b.op("mean", x, dims, True)
    d = b.op("sub", x, mean)
    inv = b.op("rsqrt", b.op("add", b.op("mean", b.op("mul", d, d), dims, True), eps))
    y = b.op("mul", b.op("mul", d, inv), scale)
    if bias is not None:
        y = b.op("add", y, bias)
    return [y, mean, inv][:max(n, 1)]


@onnx_op("GroupNormalization", attrs=("epsilon", "num_groups", "stash_type"))
def _group_norm(b: Builder, ins: list, a: dict, n: int) -> Any:
    x, scale, bias = ins
    groups = int(a["num_groups"])
    shape = b.shape(x)
    c = shape[1]
    if c % groups:
        raise b.fail(f"{c} channels do not split into {groups} groups")
    if b.shape(scale) != (c,) or b.shape(bias) != (c,):  # opset 18's per-group form is deprecated
        raise b.fail(f"scale and bias must have one element per channel ({c}), as in opset 21")
    return b.op("nn.functional.group_norm", x, groups, scale, bias, float(a.get("epsilon", 1e-5)))


@onnx_op("Resize", attrs=("antialias", "axes", "coordinate_transformation_mode", "cubic_coeff_a",
                          "exclude_outside", "extrapolation_value", "keep_aspect_ratio_policy", "mode",
                          "nearest_mode"))
def _resize(b: Builder, ins: list, a: dict, n: int) -> Any:
    x = ins[0]
    shape = b.shape(x)
    r = len(shape)
    if r not in (3, 4, 5):
        raise b.fail("only 3-D to 5-D inputs (N, C, spatial...) are supported")
    mode = a.get("mode", "nearest")
    ct = a.get("coordinate_transformation_mode", "half_pixel")
    if a.get("antialias", 0):
        raise b.fail("antialias=1 is not supported")
    if a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise b.fail("keep_aspect_ratio_policy other than stretch is not supported")
    axes = [_axis(int(ax), r) for ax in a.get("axes", range(r))]
    scales = None
    if len(ins) > 2 and ins[2] is not None and np.asarray(b.const(ins[2], "scales")).size:
        given = [float(v) for v in np.asarray(b.const(ins[2], "scales")).reshape(-1)]
        scales = [1.0] * r
        for ax, v in zip(axes, given):
            scales[ax] = v
    size = None
    if len(ins) > 3 and ins[3] is not None:
        given_sizes = b.ints(ins[3], "sizes")
        size = list(shape)
        for ax, v in zip(axes, given_sizes):
            size[ax] = v
    if (scales is None) == (size is None):
        raise b.fail("exactly one of scales and sizes must be given")
    if (scales is not None and scales[:2] != [1.0, 1.0]) or \
            (size is not None and size[:2] != list(shape[:2])):
        raise b.fail("only the spatial dimensions (2 and up) can be resized")
    kw: dict[str, Any] = {"size": size[2:]} if size is not None else {"scale_factor": scales[2:]}
    if mode == "nearest":
        if ct != "asymmetric" or a.get("nearest_mode", "round_prefer_floor") != "floor":
            raise b.fail("nearest mode is supported with coordinate_transformation_mode=asymmetric and "
                         "nearest_mode=floor (torch's nearest)")
        return b.op("nn.functional.interpolate", x, mode="nearest", **kw)
    if mode == "linear":
        if ct not in ("half_pixel", "pytorch_half_pixel", "align_corners"):
            raise b.fail(f"coordinate_transformation_mode={ct!r} is not supported for linear")
        lin = {3: "linear", 4: "bilinear", 5: "trilinear"}[r]
        return b.op("nn.functional.interpolate", x, mode=lin, align_corners=ct == "align_corners", **kw)
    raise b.fail(f"mode={mode!r} is not supported (nearest, linear)")


@onnx_op("InstanceNormalization", attrs=("epsilon",))
def _instance_norm(b: Builder, ins: list, a: dict, n: int) -> Any:
    x, scale, bias = ins
    return b.op("nn.functional.instance_norm", x, None, None, scale, bias, True, 0.1,
                float(a.get("epsilon", 1e-5)))


@onnx_op("LpNormalization", attrs=("axis", "p"))
def _lp_norm(b: Builder, ins: list, a: dict, n: int) -> Any:
    x = ins[0]
    p = int(a.get("p", 2))
    if p not in (1, 2):
        raise b.fail(f"p={p} is not supported (1 or 2)")
    dim = _axis(int(a.get("axis", -1)), _rank(b, x))
    norm = b.op("linalg.vector_norm", x, float(p), dim, True)
    return b.op("div", x, norm)


@onnx_op("Dropout", attrs=("seed",))
def _dropout(b: Builder, ins: list, a: dict, n: int) -> Any:
    x = ins[0]
    training = ins[2] if len(ins) > 2 else None
    if training is not None and bool(np.asarray(b.const(training, "training_mode")).reshape(())):
        raise b.fail("training_mode=true is not supported (inference only)")
    out = [x]
    if n > 1:
        b.check_size(b.shape(x), "the mask")
        out.append(np.ones(b.shape(x), dtype=bool))
    return out


# ---------------------------------------------------------------- shapes and indexing
@onnx_op("Shape", attrs=("start", "end"))
def _shape(b: Builder, ins: list, a: dict, n: int) -> Any:
    shape = b.shape(ins[0])
    r = len(shape)
    start, end = int(a.get("start", 0)), int(a.get("end", r))
    return np.array(shape[slice(start, end)], dtype=np.int64)


@onnx_op("Size")
def _size(b: Builder, ins: list, a: dict, n: int) -> Any:
    return np.array(math.prod(b.shape(ins[0])), dtype=np.int64)


@onnx_op("Reshape", attrs=("allowzero",))
def _reshape(b: Builder, ins: list, a: dict, n: int) -> Any:
    x = ins[0]
    target = b.ints(ins[1], "the shape")
    if not a.get("allowzero", 0):
        target = [b.shape(x)[i] if d == 0 else d for i, d in enumerate(target)]
    return b.op("reshape", x, *target)


@onnx_op("Flatten", attrs=("axis",))
def _flatten(b: Builder, ins: list, a: dict, n: int) -> Any:
    x = ins[0]
    shape = b.shape(x)
    axis = int(a.get("axis", 1))
    axis = axis + len(shape) if axis < 0 else axis
    return b.op("reshape", x, math.prod(shape[:axis]), math.prod(shape[axis:]))


@onnx_op("Transpose", attrs=("perm",))
def _transpose(b: Builder, ins: list, a: dict, n: int) -> Any:
    x = ins[0]
    perm = list(a.get("perm", reversed(range(_rank(b, x)))))
    return b.op("permute", x, *perm)


@onnx_op("Concat", attrs=("axis",))
def _concat(b: Builder, ins: list, a: dict, n: int) -> Any:
    return b.op("cat", [x for x in ins if x is not None], _axis(int(a["axis"]), _rank(b, ins[0])))


@onnx_op("Split", attrs=("axis", "num_outputs"))
def _split(b: Builder, ins: list, a: dict, n: int) -> Any:
    x = ins[0]
    axis = _axis(int(a.get("axis", 0)), _rank(b, x))
    size = b.shape(x)[axis]
    if len(ins) > 1 and ins[1] is not None:
        sizes = b.ints(ins[1], "split")
    else:
        parts = int(a.get("num_outputs", n))
        chunk = -(-size // parts)
        sizes = [min(chunk, size - i * chunk) for i in range(parts)]
    if len(sizes) == 1:
        return [b.op("view_as", x, x) if isinstance(x, Sym) else x]
    return list(b.op("split", x, sizes, axis))


@onnx_op("Slice")
def _slice(b: Builder, ins: list, a: dict, n: int) -> Any:
    x = ins[0]
    shape = b.shape(x)
    r = len(shape)
    starts, ends = b.ints(ins[1], "starts"), b.ints(ins[2], "ends")
    axes = b.ints(ins[3], "axes") if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
    steps = b.ints(ins[4], "steps") if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    key: list[Any] = [slice(None)] * r
    out = x
    for s, e, ax, st in zip(starts, ends, axes, steps):
        ax = _axis(ax, r)
        dim = shape[ax]
        if st == 0:
            raise b.fail("a step of 0 is not allowed")
        idx = range(dim)[slice(max(min(s, dim + 1), -dim - 1), max(min(e, dim + 1), -dim - 1), st)]
        if st > 0:
            key[ax] = slice(idx.start, idx.stop, idx.step) if len(idx) else slice(0, 0)
        else:  # torch has no negative steps: pick the indices
            out = b.op("index_select", out, ax, np.asarray(list(idx), dtype=np.int64))
    if all(k == slice(None) for k in key):
        return b.op("view_as", out, out) if isinstance(out, Sym) and out is x else out
    return b.op("getitem", out, tuple(key))


@onnx_op("Gather", attrs=("axis",))
def _gather(b: Builder, ins: list, a: dict, n: int) -> Any:
    x, idx = ins
    shape = b.shape(x)
    axis = _axis(int(a.get("axis", 0)), len(shape))
    ishape = b.shape(idx)
    if isinstance(idx, Sym):
        idx = b.op("remainder", idx, shape[axis])  # negative indices count from the end
    else:
        idx = np.where(idx < 0, idx + shape[axis], idx).astype(np.int64)
    if not ishape:
        return b.op("select", x, axis, idx if isinstance(idx, Sym) else int(idx))
    flat = b.op("reshape", idx, -1)
    picked = b.op("index_select", x, axis, flat)
    return b.op("reshape", picked, *shape[:axis], *ishape, *shape[axis + 1:])


@onnx_op("GatherElements", attrs=("axis",))
def _gather_elements(b: Builder, ins: list, a: dict, n: int) -> Any:
    x, idx = ins
    axis = _axis(int(a.get("axis", 0)), _rank(b, x))
    size = b.shape(x)[axis]
    idx = b.op("remainder", idx, size) if isinstance(idx, Sym) else np.where(idx < 0, idx + size, idx)
    return b.op("gather", x, axis, idx)


def _axes_arg(b: Builder, ins: list, a: dict, pos: int = 1) -> list[int] | None:
    if len(ins) > pos and ins[pos] is not None:
        return b.ints(ins[pos], "axes")
    if "axes" in a:
        return [int(x) for x in a["axes"]]
    return None


@onnx_op("Squeeze")
def _squeeze(b: Builder, ins: list, a: dict, n: int) -> Any:
    x = ins[0]
    shape = b.shape(x)
    axes = _axes_arg(b, ins, a)
    if axes is None:
        axes = [i for i, d in enumerate(shape) if d == 1]
    keep = [d for i, d in enumerate(shape) if i not in {_axis(ax, len(shape)) for ax in axes}]
    return b.op("reshape", x, *keep)


@onnx_op("Unsqueeze")
def _unsqueeze(b: Builder, ins: list, a: dict, n: int) -> Any:
    x = ins[0]
    shape = list(b.shape(x))
    axes = sorted(_axis(ax, len(shape) + len(b.ints(ins[1], "axes"))) for ax in b.ints(ins[1], "axes"))
    for ax in axes:
        shape.insert(ax, 1)
    return b.op("reshape", x, *shape)


@onnx_op("Expand")
def _expand(b: Builder, ins: list, a: dict, n: int) -> Any:
    x = ins[0]
    target = tuple(np.broadcast_shapes(b.shape(x), tuple(b.ints(ins[1], "the shape"))))
    return b.op("broadcast_to", x, target)


@onnx_op("Tile")
def _tile(b: Builder, ins: list, a: dict, n: int) -> Any:
    return b.op("tile", ins[0], tuple(b.ints(ins[1], "repeats")))


@onnx_op("Pad", attrs=("mode",))
def _pad(b: Builder, ins: list, a: dict, n: int) -> Any:
    x = ins[0]
    r = _rank(b, x)
    pads = b.ints(ins[1], "pads")
    value = ins[2] if len(ins) > 2 and ins[2] is not None else None
    axes = b.ints(ins[3], "axes") if len(ins) > 3 and ins[3] is not None else list(range(r))
    full = [0] * (2 * r)
    k = len(axes)
    for i, ax in enumerate(axes):
        ax = _axis(ax, r)
        full[ax], full[ax + r] = pads[i], pads[i + k]
    mode = a.get("mode", "constant")
    tmode = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}.get(mode)
    if tmode is None:
        raise b.fail(f"mode={mode!r} is not supported")
    if tmode == "constant":
        v = 0.0 if value is None else np.asarray(b.const(value, "constant_value")).reshape(-1)
        v = v if isinstance(v, float) else (v[0].item() if v.size else 0.0)
        return b.op("nn.functional.pad", x, _torch_pad(full), "constant", v)
    # torch pads only the trailing dims in these modes: the leading ones must be unpadded
    first = next((i for i in range(r) if full[i] or full[i + r]), r)
    tp = _torch_pad(full[first:r] + full[r + first:])
    return b.op("nn.functional.pad", x, tp, tmode)


@onnx_op("Where")
def _where(b: Builder, ins: list, a: dict, n: int) -> Any:
    return b.op("where", ins[0], ins[1], ins[2])


@onnx_op("Cast", attrs=("saturate", "to"))
def _cast(b: Builder, ins: list, a: dict, n: int) -> Any:
    return b.op("to", ins[0], dtype=_edtype(_onnx_np_dtype(int(a["to"]))))


@onnx_op("CastLike", attrs=("saturate",))
def _cast_like(b: Builder, ins: list, a: dict, n: int) -> Any:
    return b.op("to", ins[0], dtype=_edtype(b.dtype(ins[1])))


@onnx_op("Constant", attrs=("value", "value_float", "value_floats", "value_int", "value_ints"))
def _constant(b: Builder, ins: list, a: dict, n: int) -> Any:
    if "value" in a:
        return np.asarray(a["value"])
    if "value_float" in a:
        return np.array(a["value_float"], dtype=np.float32)
    if "value_floats" in a:
        return np.array(a["value_floats"], dtype=np.float32)
    if "value_int" in a:
        return np.array(a["value_int"], dtype=np.int64)
    if "value_ints" in a:
        return np.array(a["value_ints"], dtype=np.int64)
    raise b.fail("a Constant needs one of value, value_float(s), value_int(s)")


@onnx_op("ConstantOfShape", attrs=("value",))
def _constant_of_shape(b: Builder, ins: list, a: dict, n: int) -> Any:
    shape = b.ints(ins[0], "the shape")
    v = np.asarray(a.get("value", np.zeros(1, np.float32)))
    b.check_size(shape)
    return np.full(shape, v.reshape(-1)[0], dtype=v.dtype)


@onnx_op("Range")
def _range(b: Builder, ins: list, a: dict, n: int) -> Any:
    start, limit, delta = (np.asarray(b.const(v, what)).reshape(()) for v, what in
                           zip(ins, ("start", "limit", "delta")))
    if delta == 0:
        raise b.fail("delta must not be 0")
    count = max(int(math.ceil((limit - start) / delta)), 0)
    b.check_size([count])
    return (start + np.arange(count, dtype=start.dtype) * delta).astype(start.dtype)


@onnx_op("Trilu", attrs=("upper",))
def _trilu(b: Builder, ins: list, a: dict, n: int) -> Any:
    k = int(np.asarray(b.const(ins[1], "k")).reshape(())) if len(ins) > 1 and ins[1] is not None else 0
    return b.op("triu" if a.get("upper", 1) else "tril", ins[0], k)


@onnx_op("CumSum", attrs=("exclusive", "reverse"))
def _cumsum(b: Builder, ins: list, a: dict, n: int) -> Any:
    x = ins[0]
    axis = _axis(int(np.asarray(b.const(ins[1], "axis")).reshape(())), _rank(b, x))
    rev = a.get("reverse", 0)
    if rev:
        x = b.op("flip", x, (axis,))
    y = b.op("cumsum", x, axis)
    if a.get("exclusive", 0):
        y = b.op("sub", y, x)
    return b.op("flip", y, (axis,)) if rev else y


def _arg(engine_op: str) -> Callable:
    def conv(b: Builder, ins: list, a: dict, n: int) -> Any:
        if a.get("select_last_index", 0):
            raise b.fail("select_last_index=1 is not supported")
        x = ins[0]
        axis = _axis(int(a.get("axis", 0)), _rank(b, x))
        return b.op(engine_op, x, axis, bool(a.get("keepdims", 1)))
    return conv


onnx_op("ArgMax", attrs=("axis", "keepdims", "select_last_index"))(_arg("argmax"))
onnx_op("ArgMin", attrs=("axis", "keepdims", "select_last_index"))(_arg("argmin"))


# ---------------------------------------------------------------- reductions
def _reduce(kind: str) -> Callable:
    def conv(b: Builder, ins: list, a: dict, n: int) -> Any:
        x = ins[0]
        r = _rank(b, x)
        axes = _axes_arg(b, ins, a)
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                return b.op("view_as", x, x) if isinstance(x, Sym) else x
            axes = list(range(r))
        dims = tuple(sorted({_axis(ax, r) for ax in axes}))
        keep = bool(a.get("keepdims", 1))
        if not dims:  # a 0-d input
            return b.op("view_as", x, x) if isinstance(x, Sym) else x
        if kind == "sum":
            return b.op("sum", x, dims, keep)
        if kind == "mean":
            return b.op("mean", x, dims, keep)
        if kind == "max":
            return b.op("amax", x, dims, keep)
        if kind == "min":
            return b.op("amin", x, dims, keep)
        if kind == "l1":
            return b.op("sum", b.op("abs", x), dims, keep)
        if kind == "l2":
            return b.op("sqrt", b.op("sum", b.op("mul", x, x), dims, keep))
        if kind == "sumsquare":
            return b.op("sum", b.op("mul", x, x), dims, keep)
        if kind == "logsum":
            return b.op("log", b.op("sum", x, dims, keep))
        if kind == "logsumexp":
            return b.op("logsumexp", x, dims, keep)
        # prod: torch reduces one dim at a time
        y = x
        for d in sorted(dims, reverse=True):
            y = b.op("prod", y, d, keep)
        return y
    return conv


for _name, _kind in {"ReduceSum": "sum", "ReduceMean": "mean", "ReduceMax": "max", "ReduceMin": "min",
                     "ReduceProd": "prod", "ReduceL1": "l1", "ReduceL2": "l2", "ReduceSumSquare": "sumsquare",
                     "ReduceLogSum": "logsum", "ReduceLogSumExp": "logsumexp"}.items():
    onnx_op(_name, attrs=("axes", "keepdims", "noop_with_empty_axes"))(_reduce(_kind))


# ---------------------------------------------------------------- ai.onnx.ml (scikit-learn's linear models)
def _linear_scores(b: Builder, x: Any, a: dict, rows: int | None = None) -> Any:
    """X @ W.T + intercepts, W from the flat ``coefficients`` attribute (constants: skl2onnx
    stores the fitted weights as attributes, so gradients are with respect to X)."""
    if b.dtype(x).kind != "f":
        x = b.op("to", x, dtype=_edtype(np.float32))
    if len(b.shape(x)) == 1:
        x = b.op("reshape", x, 1, -1)
    coef = np.asarray(a["coefficients"], dtype=b.dtype(x))
    k = rows or max(1, coef.size // b.shape(x)[-1])
    w = coef.reshape(k, -1)
    y = b.op("matmul", x, np.ascontiguousarray(w.T))
    if "intercepts" in a:
        y = b.op("add", y, np.asarray(a["intercepts"], dtype=b.dtype(x)))
    return y


@onnx_op("ai.onnx.ml.LinearRegressor", attrs=("coefficients", "intercepts", "post_transform", "targets"))
def _linear_regressor(b: Builder, ins: list, a: dict, n: int) -> Any:
    if a.get("post_transform", "NONE") != "NONE":
        raise b.fail(f"post_transform={a['post_transform']!r} is not supported (NONE)")
    return _linear_scores(b, ins[0], a, int(a.get("targets", 1)))


@onnx_op("ai.onnx.ml.LinearClassifier", attrs=("classlabels_ints", "classlabels_strings", "coefficients",
                                              "intercepts", "multi_class", "post_transform"))
def _linear_classifier(b: Builder, ins: list, a: dict, n: int) -> Any:
    if "classlabels_ints" not in a:
        raise b.fail("only integer class labels are supported (string labels are not tensors here)")
    labels = np.asarray(a["classlabels_ints"], dtype=np.int64)
    post = a.get("post_transform", "NONE")
    s = _linear_scores(b, ins[0], a)
    k = b.shape(s)[-1]
    if k == 1 and len(labels) == 2:  # binary: one score for class 1, as onnxruntime expands it
        if post == "LOGISTIC":
            p = b.op("sigmoid", s)
            z = b.op("cat", [b.op("add", b.op("neg", p), 1.0), p], 1)
        elif post == "NONE":
            z = b.op("cat", [b.op("neg", s), s], 1)
        else:
            raise b.fail(f"post_transform={post!r} is not supported for a binary classifier")
        label_idx = b.op("to", b.op("gt", s, 0.0), dtype=_edtype(np.int64))
        label_idx = b.op("reshape", label_idx, -1)
    else:
        if post == "LOGISTIC":
            z = b.op("sigmoid", s)
        elif post == "SOFTMAX":
            z = b.op("softmax", s, 1)
        elif post == "NONE":
            z = s
        else:
            raise b.fail(f"post_transform={post!r} is not supported (NONE, LOGISTIC, SOFTMAX)")
        label_idx = b.op("argmax", s, 1)
    return [b.op("index_select", labels, 0, label_idx), z]


@onnx_op("ai.onnx.ml.ArrayFeatureExtractor")
def _array_feature_extractor(b: Builder, ins: list, a: dict, n: int) -> Any:
    x, idx = ins
    flat = b.op("reshape", idx, -1)
    r = len(b.shape(x))
    return b.op("index_select", x, r - 1, flat)


@onnx_op("ai.onnx.ml.Normalizer", attrs=("norm",))
def _normalizer(b: Builder, ins: list, a: dict, n: int) -> Any:
    x = ins[0]
    if b.dtype(x).kind != "f":
        x = b.op("to", x, dtype=_edtype(np.float32))
    norm = a.get("norm", "MAX")
    if norm == "MAX":
        d = b.op("amax", x, 1, True)
    elif norm == "L1":
        d = b.op("sum", b.op("abs", x), 1, True)
    elif norm == "L2":
        d = b.op("sqrt", b.op("sum", b.op("mul", x, x), 1, True))
    else:
        raise b.fail(f"norm={norm!r} is not supported (MAX, L1, L2)")
    return b.op("div", x, d)
