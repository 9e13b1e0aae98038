"""Elementwise ops: arithmetic, unary math, comparisons, selection."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .. import _kernels
from .._autograd import (
    Primitive,
    _state,
    apply,
    batched_values,
    diagonal_jvp,
    elementwise_batch,
    linear_jvp,
    multilinear_jvp,
    primitive,
    zeros_jvp,
)
from .._dtype import result_type, type_name
from .._meta import elementwise_shape
from ..tensor import Tensor
from ._registry import as_tensor_arg, op

IN, OUT = (0,), (-1,)
_F32 = np.dtype(np.float32)
_DT_CACHE: dict[tuple, np.dtype] = {}
_SCALARS = (int, float, bool)


def _key(x: object) -> object:
    return (x._data.dtype, x._data.ndim == 0) if isinstance(x, Tensor) else type(x)


_ARG_TYPES = (Tensor, *_SCALARS)


def _arg(x: object) -> object:
    return x if isinstance(x, _ARG_TYPES) else as_tensor_arg(x)


def _operands(a: object, b: object) -> tuple:
    """A binary op's operands (Python numbers stay numbers) and their promoted numpy dtype."""
    if type(b) is float and type(a) is Tensor and a._data.dtype.kind == "f":
        return a, b, a._data.dtype  # the commonest case: a Python float never promotes a float tensor
    if not isinstance(a, _ARG_TYPES):
        a = as_tensor_arg(a)
    if not isinstance(b, _ARG_TYPES):
        b = as_tensor_arg(b)
    return a, b, binary_dtype(a, b)


def binary_dtype(a: object, b: object) -> np.dtype:
    """Torch's promoted numpy dtype for a binary op (cached: this is on the hot path)."""
    # Short cuts for the two commonest cases, straight from torch's rules: equal tensor dtypes
    # stay, and a Python number never promotes a floating tensor.
    if type(a) is Tensor:
        dt = a._data.dtype
        if type(b) is Tensor:
            if b._data.dtype == dt:
                return dt
        elif dt.kind == "f" and type(b) in _SCALARS:
            return dt
    elif type(b) is Tensor and type(a) in _SCALARS:
        dt = b._data.dtype
        if dt.kind == "f":
            return dt
    k = (_key(a), _key(b))
    dt = _DT_CACHE.get(k)
    if dt is None:
        dt = _DT_CACHE[k] = result_type(a, b).np
    return dt


def to_float(x: object) -> Tensor:
    """Integer and bool tensors become float32 for ops that only produce floats."""
    x = _arg(x)
    if not isinstance(x, Tensor):
        x = as_tensor_arg(x)
    if x._data.dtype.kind != "f":
        return Tensor._make(x._data.astype(_F32))
    return x


def zeros_grad(ctx: object, g: Tensor, *saved: object, **params: object) -> Tensor:
    """VJP of piecewise-constant ops: zeros that do not require grad."""
    return Tensor._make(np.zeros_like(g._data))


def _needs(ctx: object, i: int) -> bool:
    return ctx.edges[i] is not None


# ---------------------------------------------------------------- arithmetic primitives
# The binary arithmetic forwards are their ufuncs, cut across the engine's threads when the
# operands are large (engine._kernels.threaded_ufunc; the compiled runner calls the bare ufunc).
_add = Primitive("add", _kernels.threaded_ufunc(np.add))
_add.defvjp(lambda ctx, g: (g, g))
_add.defjvp(linear_jvp)
_add.defbatch(elementwise_batch)
_add.defshape(elementwise_shape)


_sub = Primitive("sub", _kernels.threaded_ufunc(np.subtract))


_sub.defvjp(lambda ctx, g: (g, -g if ctx.edges[1] is not None else None))
_sub.defjvp(linear_jvp)
_sub.defbatch(elementwise_batch)
_sub.defshape(elementwise_shape)


# a and b saved, each for the other's gradient only
_mul = Primitive("mul", _kernels.threaded_ufunc(np.multiply), save=(0, 1), save_if=(1, 0))


@_mul.defvjp
def _mul_vjp(ctx, g, a, b):
    tb = type(b)
    if tb is float or tb is int:  # x * c: only a can be the tensor that requires grad
        return g * b, None
    if a is b:  # x * x (square, a sum of squares): one product serves both uses, 2 passes not 3
        return (g * 2) * a, None
    return (g * b if ctx.edges[0] is not None else None,
            g * a if ctx.edges[1] is not None else None)


_mul.defjvp(multilinear_jvp)
_mul.defbatch(elementwise_batch)
_mul.defshape(elementwise_shape)


# a saved only for b's gradient
_div = Primitive("div", _kernels.threaded_ufunc(np.true_divide), save=(0, 1), save_if=(1, None))


_div.defvjp(lambda ctx, g, a, b: (g / b if ctx.edges[0] is not None else None,
                                  -g * a / (b * b) if ctx.edges[1] is not None else None))
_div.defjvp(diagonal_jvp)
_div.defbatch(elementwise_batch)
_div.defshape(elementwise_shape)


@primitive()
def _neg(a):
    return np.negative(a)


_neg.defvjp(lambda ctx, g: -g)
_neg.defjvp(linear_jvp)
_neg.defbatch(elementwise_batch)
_neg.defshape(elementwise_shape)


@primitive(save=(0, 1, -1))
def _pow(a, b):
    return np.power(a, b)


@_pow.defvjp
def _pow_vjp(ctx, g, a, b, out):
    ga = gb = None
    if _needs(ctx, 0):
        if not isinstance(b, (int, float)):
            ga = g * b * a ** (b - 1)
        elif b == 0:
            ga = zeros_grad(ctx, g)
        elif b == 2:
            ga = g * 2 * a
        else:
            ga = g * b * a ** (b - 1)
    if _needs(ctx, 1):
        if isinstance(a, (int, float)) and a > 0:
            gb = g * out * math.log(a)  # a scalar base: its log in float64, not a float32 tensor
        else:
            # torch: the exponent's gradient is 0 where base == 0 and exponent >= 0
            base = as_tensor_arg(a) if not isinstance(a, Tensor) else a
            gb = g * where((base == 0) & (as_tensor_arg(b) >= 0), 0.0, out * log(base))
    return ga, gb


_pow.defjvp(diagonal_jvp)
_pow.defbatch(elementwise_batch)
_pow.defshape(elementwise_shape)


@primitive(save=(0, 1))
def _atan2(a, b):
    return np.arctan2(a, b)


_atan2.defvjp(lambda ctx, g, a, b: (g * b / (a * a + b * b), -g * a / (a * a + b * b)))
_atan2.defjvp(diagonal_jvp)
_atan2.defbatch(elementwise_batch)
_atan2.defshape(elementwise_shape)


_maximum = Primitive("maximum", _kernels.threaded_ufunc(np.maximum), save=(0, 1))
_minimum = Primitive("minimum", _kernels.threaded_ufunc(np.minimum), save=(0, 1))


def _minmax_vjp(ctx, g, a, b, *, sign: int):
    # torch splits the gradient evenly between equal arguments
    # and, as torch, masks only the smaller (larger) one: a NaN passes the whole gradient to both
    tie = (a == b).to(g.dtype) * 0.5
    lose_a, lose_b = ((a < b), (a > b)) if sign > 0 else ((a > b), (a < b))
    return g * (1 - lose_a.to(g.dtype) - tie), g * (1 - lose_b.to(g.dtype) - tie)


_maximum.defvjp(lambda ctx, g, a, b: _minmax_vjp(ctx, g, a, b, sign=1))
_minimum.defvjp(lambda ctx, g, a, b: _minmax_vjp(ctx, g, a, b, sign=-1))
_maximum.defjvp(diagonal_jvp)
_maximum.defbatch(elementwise_batch)
_maximum.defshape(elementwise_shape)
_minimum.defjvp(diagonal_jvp)
_minimum.defbatch(elementwise_batch)
_minimum.defshape(elementwise_shape)


@primitive(save=(0,))
def _where(cond, a, b):
    return _kernels.where(cond, a, b)


@_where.defvjp
def _where_vjp(ctx, g, cond):
    zero = Tensor._make(np.zeros((), g._data.dtype))
    return (None, where(cond, g, zero) if _needs(ctx, 1) else None,
            where(cond, zero, g) if _needs(ctx, 2) else None)


_where.defjvp(linear_jvp)
_where.defbatch(elementwise_batch)
_where.defshape(elementwise_shape)


# ---------------------------------------------------------------- arithmetic ops
@op(differentiable=("input", "other"), method=True)
def add(input, other, *, alpha=1):
    """``input + alpha * other`` with broadcasting and torch's type promotion."""
    input, other, dt = _operands(input, other)
    if alpha != 1:
        other = mul(other, alpha)
        dt = binary_dtype(input, other)
    return apply(_add, (input, other), None, dt)


@op(differentiable=("input", "other"), method=True)
def sub(input, other, *, alpha=1):
    """``input - alpha * other``."""
    input, other, dt = _operands(input, other)
    _check_bool_sub(input, other)
    if alpha != 1:
        other = mul(other, alpha)
        dt = binary_dtype(input, other)
    return apply(_sub, (input, other), None, dt)


def _is_bool(x: object) -> bool:
    return x._data.dtype == np.bool_ if isinstance(x, Tensor) else isinstance(x, bool)


def _check_bool_sub(a: object, b: object) -> None:
    # torch refuses bool subtraction (a Python bool counts as a bool tensor).
    if _is_bool(a) and _is_bool(b):
        raise RuntimeError("Subtraction, the `-` operator, with two bool tensors is not supported. "
                           "Use the `^` or `logical_xor()` operator instead.")
    if _is_bool(a) or _is_bool(b):
        raise RuntimeError("Subtraction, the `-` operator, with a bool tensor is not supported. If you "
                           "are trying to invert a mask, use the `~` or `logical_not()` operator "
                           "instead.")


@op(differentiable=("input", "other"), method=True, aliases=("multiply",))
def mul(input, other):
    """Elementwise product."""
    input, other, dt = _operands(input, other)
    return apply(_mul, (input, other), None, dt)


@op(differentiable=("input", "other"), method=True, aliases=("divide", "true_divide"))
def div(input, other, *, rounding_mode=None):
    """True division (integers give float32); ``rounding_mode`` 'trunc'/'floor' has zero grad."""
    input, other, dt = _operands(input, other)
    if rounding_mode is not None:
        if rounding_mode not in ("trunc", "floor"):
            raise RuntimeError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' "
                               f"but found '{rounding_mode}'")
        if dt.kind == "f":  # recorded, as torch does: the result requires grad, its gradient is 0
            return apply(_div_rounded, (input, other), {"mode": rounding_mode}, dt)
        a, b = np.asarray(input if not isinstance(input, Tensor) else input._data, dt), \
            np.asarray(other if not isinstance(other, Tensor) else other._data, dt)
        return Tensor._make(_rounded_div(a, b, rounding_mode).astype(dt, copy=False))
    if dt.kind != "f":
        dt = _F32
    return apply(_div, (input, other), None, dt)


@primitive()
def _div_rounded(a, b, mode):
    return _rounded_div(np.asarray(a), np.asarray(b), mode).astype(np.result_type(a, b), copy=False)


# A step function: zero almost everywhere (torch's DivBackward for rounding modes).
_div_rounded.defvjp(lambda ctx, g, mode: tuple(
    None if m is None else Tensor._make(np.zeros(m[0], m[1])) for m in ctx.in_meta))
_div_rounded.defjvp(zeros_jvp)
_div_rounded.defbatch(elementwise_batch)
_div_rounded.defshape(elementwise_shape)


def _rounded_div(a: np.ndarray, b: np.ndarray, mode: str) -> np.ndarray:
    if a.dtype == np.bool_:
        raise NotImplementedError(f"\"div_{mode}_cpu\" not implemented for 'Bool'")
    if a.dtype.kind in "iu":  # exact in integers (a float round trip loses digits past 2**53)
        if np.any(b == 0):
            raise RuntimeError("ZeroDivisionError")
        if mode == "floor":
            return np.floor_divide(a, b)
        q = np.abs(a) // np.abs(b)
        return np.where((a < 0) != (b < 0), -q, q)
    r = np.true_divide(a, b)
    return np.trunc(r) if mode == "trunc" else np.floor(r)


@op(method=True, aliases=("negative",))
def neg(input):
    """``-input``."""
    input = _arg(input)
    if isinstance(input, Tensor) and input._data.dtype == np.bool_:
        raise RuntimeError("Negation, the `-` operator, on a bool tensor is not supported. If you are "
                           "trying to invert a mask, use the `~` or `logical_not()` operator instead.")
    return _neg(input)


@op(differentiable=("input", "exponent"), method=True)
def pow(input, exponent):
    """``input ** exponent`` for tensor or scalar base and exponent."""
    input, exponent, dt = _operands(input, exponent)
    if dt.kind in "iu" and isinstance(exponent, int) and exponent < 0:
        raise RuntimeError("Integers to negative integer powers are not allowed.")
    if dt == np.bool_:  # torch: only a bool tensor to a Python bool power; the result stays bool
        if not isinstance(exponent, bool):
            raise NotImplementedError("\"pow\" not implemented for 'Bool'")
        return Tensor._make(np.power(input._data, exponent).astype(np.bool_))
    return apply(_pow, (input, exponent), None, dt)


@op(differentiable=("input", "other"), method=True, aliases=("arctan2",))
def atan2(input, other):
    """Elementwise ``atan(input / other)`` with the quadrant of (other, input)."""
    input, other, dt = _operands(input, other)
    return apply(_atan2, (input, other), None, dt if dt.kind == "f" else _F32)


@op(differentiable=("input", "other"), method=True)
def maximum(input, other):
    """Elementwise maximum; ties split the gradient evenly."""
    input, other, dt = _operands(input, other)
    return apply(_maximum, (input, other), None, dt)


@op(differentiable=("input", "other"), method=True)
def minimum(input, other):
    """Elementwise minimum; ties split the gradient evenly."""
    input, other, dt = _operands(input, other)
    return apply(_minimum, (input, other), None, dt)


@op(differentiable=("input", "other"))
def where(condition, input, other):
    """``input`` where ``condition`` holds, else ``other``."""
    condition, input, other = as_tensor_arg(condition), _arg(input), _arg(other)
    if condition._data.dtype != np.bool_:
        condition = Tensor._make(condition._data.astype(bool))
    return apply(_where, (condition, input, other), None, binary_dtype(input, other))


def _where_method(self, condition, y):
    return where(condition, self, y)


Tensor.where = _where_method


@op(method=True)
def square(input):
    """``input * input``."""
    return mul(input, input)


@op(method=True)
def reciprocal(input):
    """``1 / input``."""
    return div(1.0, to_float(input))


@op(method=True)
def rsqrt(input):
    """``1 / sqrt(input)``."""
    return reciprocal(sqrt(input))


# ---------------------------------------------------------------- unary math
def _unary(name: str, fwd: Callable, save: tuple, vjp: Callable, doc: str,
           float_only: bool = True, aliases: tuple[str, ...] = (), jvp: Callable = diagonal_jvp) -> Callable:
    # Elementwise: the VJP multiplies by the derivative, so it serves as the JVP (diagonal_jvp).
    prim = Primitive(name, fwd, save)
    prim.defvjp(vjp)
    prim.defjvp(jvp)
    prim.defbatch(elementwise_batch)
    prim.defshape(elementwise_shape)
    conv = to_float if float_only else _arg

    def fn(input):
        return prim(conv(input))

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    fn.primitive = prim  # (engine.compile's rewrites match steps by their primitive)
    return op(method=True, aliases=aliases)(fn)


def _inv_sqrt1m(x):
    return rsqrt(1 - x * x)


def _sign_np(x: np.ndarray) -> np.ndarray:
    """torch's sign: NaN maps to 0 (numpy's to NaN)."""
    r = np.sign(x)
    return np.where(np.isnan(r), 0, r).astype(r.dtype, copy=False) if r.dtype.kind == "f" else r


@primitive(save=(1,))
def _relu_backward(g, y):
    """relu's VJP, ``g * (y > 0)`` in one pass (torch's threshold_backward). A primitive of ``y``
    too, so that with create_graph the gradient stays attached to the graph, as torch's; its
    derivative in ``y`` is zero."""
    return _kernels.relu_backward(g, y)  # as torch: result <= 0 ? 0 : g, so NaN passes g


_relu_backward.defvjp(lambda ctx, h, y: (
    _relu_backward(h, y) if ctx.edges[0] is not None else None,
    Tensor._make(np.zeros_like(y._data)) if ctx.edges[1] is not None else None))
_relu_backward.defjvp(diagonal_jvp)
_relu_backward.defbatch(elementwise_batch)
_relu_backward.defshape(elementwise_shape)


#              name      numpy forward  saves  VJP                                        doc
exp = _unary("exp", np.exp, OUT, lambda c, g, y: g * y, "e ** input.")
expm1 = _unary("expm1", np.expm1, OUT, lambda c, g, y: g * (y + 1), "exp(input) - 1, accurate near 0.")
log = _unary("log", np.log, IN, lambda c, g, x: g / x, "Natural logarithm.")
log1p = _unary("log1p", np.log1p, IN, lambda c, g, x: g / (x + 1), "log(1 + input), accurate near 0.")
sqrt = _unary("sqrt", np.sqrt, OUT, lambda c, g, y: g / (2 * y), "Square root.")
sin = _unary("sin", np.sin, IN, lambda c, g, x: g * cos(x), "Sine.")
cos = _unary("cos", np.cos, IN, lambda c, g, x: -g * sin(x), "Cosine.")
tan = _unary("tan", np.tan, OUT, lambda c, g, y: g * (1 + y * y), "Tangent.")
asinh = _unary("asinh", np.arcsinh, IN, lambda c, g, x: g * rsqrt(x * x + 1), "Inverse hyperbolic sine.",
               aliases=("arcsinh",))
acosh = _unary("acosh", np.arccosh, IN, lambda c, g, x: g * rsqrt((x - 1) * (x + 1)),
               "Inverse hyperbolic cosine.", aliases=("arccosh",))
atanh = _unary("atanh", np.arctanh, IN, lambda c, g, x: g / (1 - x * x), "Inverse hyperbolic tangent.",
               aliases=("arctanh",))
asin = _unary("asin", np.arcsin, IN, lambda c, g, x: g * _inv_sqrt1m(x), "Arcsine.", aliases=("arcsin",))
acos = _unary("acos", np.arccos, IN, lambda c, g, x: -g * _inv_sqrt1m(x), "Arccosine.",
              aliases=("arccos",))
atan = _unary("atan", np.arctan, IN, lambda c, g, x: g / (1 + x * x), "Arctangent.", aliases=("arctan",))
sinh = _unary("sinh", np.sinh, IN, lambda c, g, x: g * cosh(x), "Hyperbolic sine.")
cosh = _unary("cosh", np.cosh, IN, lambda c, g, x: g * sinh(x), "Hyperbolic cosine.")
tanh = _unary("tanh", np.tanh, OUT, lambda c, g, y: g * (1 - y * y), "Hyperbolic tangent.")
sigmoid = _unary("sigmoid", lambda x: _sigmoid_np(x), OUT, lambda c, g, y: g * y * (1 - y),
                 "Logistic sigmoid 1 / (1 + exp(-input)).")
relu = _unary("relu", _kernels.relu, OUT,
              lambda c, g, y: _relu_backward(g, y), "max(input, 0); relu'(0) = 0.", float_only=False)
abs = _unary("abs", np.abs, IN, lambda c, g, x: g * sign(x), "Absolute value; abs'(0) = 0.",  # noqa: A001
             float_only=False, aliases=("absolute",))
sign = _unary("sign", _sign_np, (), zeros_grad, "Sign (-1, 0, 1); zero gradient.", float_only=False,
             jvp=zeros_jvp)
floor = _unary("floor", np.floor, (), zeros_grad, "Round down; zero gradient.", float_only=False,
               jvp=zeros_jvp)
ceil = _unary("ceil", np.ceil, (), zeros_grad, "Round up; zero gradient.", float_only=False, jvp=zeros_jvp)
trunc = _unary("trunc", np.trunc, (), zeros_grad, "Round toward zero; zero gradient.",
               float_only=False, aliases=("fix",), jvp=zeros_jvp)


def _sigmoid_np(x: np.ndarray) -> np.ndarray:
    # Stable for large |x|: exp only of non-positive numbers.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


@primitive()
def _round(x, decimals=0):
    return np.round(x, decimals)


_round.defvjp(zeros_grad)
_round.defjvp(zeros_jvp)
_round.defbatch(elementwise_batch)
_round.defshape(elementwise_shape)


@op(method=True)
def round(input, *, decimals=0):  # noqa: A001
    """Round half to even; zero gradient."""
    return _round(_arg(input), decimals=decimals) if decimals else _round(_arg(input))


@op(method=True)
def log2(input):
    """Base-2 logarithm."""
    return log(input) * (1 / math.log(2))


@op(method=True)
def log10(input):
    """Base-10 logarithm."""
    return log(input) * (1 / math.log(10))


@primitive(save=(0,))
def _clamp(x, min=None, max=None):
    return np.clip(x, min, max)


@_clamp.defvjp
def _clamp_vjp(ctx, g, x, min=None, max=None):
    # The gradient passes where min <= x <= max, boundaries included (torch's convention).
    keep = np.ones(x._data.shape, bool)
    if min is not None:
        keep &= x._data >= min
    if max is not None:
        keep &= x._data <= max
    return g * Tensor._make(keep)


_clamp.defjvp(diagonal_jvp)
_clamp.defbatch(elementwise_batch)
_clamp.defshape(elementwise_shape)


@primitive(save=(0, 1, 2))
def _clamp_t(x, lo, hi):
    out = x if lo is None else np.maximum(x, lo)
    return out if hi is None else np.minimum(out, hi)


@_clamp_t.defvjp
def _clamp_t_vjp(ctx, g, x, lo, hi):
    # torch's clamp.Tensor: x passes on [lo, hi]; a bound gets the gradient where it is the
    # output, and lo only when lo < hi (with lo > hi the output is hi).
    zero = 0.0
    if lo is not None and hi is not None:
        gx = where((x >= lo) & (x <= hi), g, zero)
        glo = where((x < lo) & (lo < hi), g, zero) if _needs(ctx, 1) else None
        ghi = where((x > hi) | (hi < lo), g, zero) if _needs(ctx, 2) else None
    elif lo is not None:
        gx, glo, ghi = where(x >= lo, g, zero), where(x < lo, g, zero) if _needs(ctx, 1) else None, None
    else:
        gx, glo, ghi = where(x <= hi, g, zero), None, where(x > hi, g, zero) if _needs(ctx, 2) else None
    return (gx if _needs(ctx, 0) else None), glo, ghi


_clamp_t.defjvp(diagonal_jvp)
_clamp_t.defbatch(elementwise_batch)
_clamp_t.defshape(elementwise_shape)


@op(differentiable=("input", "min", "max"), method=True, aliases=("clip",))
def clamp(input, min=None, max=None):
    """Limit values to ``[min, max]`` (numbers or tensors); the gradient passes at the boundaries.

    With tensor bounds each bound gets the gradient where it is the output (torch's convention).
    """
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        input = _arg(input)
        lo = None if min is None else as_tensor_arg(min) if not isinstance(min, Tensor) else min
        hi = None if max is None else as_tensor_arg(max) if not isinstance(max, Tensor) else max
        return apply(_clamp_t, (input, lo, hi), None, result_type(input, lo, hi).np)
    input = _arg(input)
    params = {}
    if min is not None:
        params["min"] = min
    if max is not None:
        params["max"] = max
    return apply(_clamp, (input,), params)


# ---------------------------------------------------------------- comparisons (not differentiable)
def _compare(name: str, fn: Callable, doc: str) -> Callable:
    def f(input, other):
        input, other = _arg(input), _arg(other)
        dt = binary_dtype(input, other)
        if _state.vm is not None:  # under vmap: on the batch (these are not primitives)
            r = batched_values(lambda a, b: fn(np.asarray(a, dt), np.asarray(b, dt)), input, other)
            if r is not None:
                return r
        a = input._data if isinstance(input, Tensor) else input
        b = other._data if isinstance(other, Tensor) else other
        return Tensor._make(fn(np.asarray(a, dt), np.asarray(b, dt)))

    f.__name__ = f.__qualname__ = name
    f.__doc__ = doc + " Not differentiable."
    return op(differentiable=(), method=True)(f)


eq = _compare("eq", np.equal, "Elementwise ==.")
ne = _compare("ne", np.not_equal, "Elementwise !=.")
lt = _compare("lt", np.less, "Elementwise <.")
le = _compare("le", np.less_equal, "Elementwise <=.")
gt = _compare("gt", np.greater, "Elementwise >.")
ge = _compare("ge", np.greater_equal, "Elementwise >=.")
logical_and = _compare("logical_and", np.logical_and, "Elementwise logical and.")
logical_or = _compare("logical_or", np.logical_or, "Elementwise logical or.")
logical_xor = _compare("logical_xor", np.logical_xor, "Elementwise logical xor.")


@op(differentiable=(), method=True)
def logical_not(input):
    """Elementwise logical not. Not differentiable."""
    return _unary_values(np.logical_not, _arg(input))


def _unary_values(fn: Callable, x: Tensor) -> Tensor:
    """``fn`` of a tensor's values (masks): on the batch under vmap."""
    if _state.vm is not None:
        r = batched_values(fn, x)
        if r is not None:
            return r
    return Tensor._make(fn(x._data))


@op(differentiable=(), method=True)
def isnan(input):
    """True where NaN. Not differentiable."""
    return _unary_values(np.isnan, input)


@op(differentiable=(), method=True)
def isfinite(input):
    """True where finite. Not differentiable."""
    return _unary_values(np.isfinite, input)


@op(differentiable=(), method=True)
def isinf(input):
    """True where +-inf. Not differentiable."""
    return _unary_values(np.isinf, input)


def _bitwise(fn: Callable, logical: Callable) -> Callable:
    def f(a, b):
        a, b = _arg(a), _arg(b)
        if _state.vm is not None:
            r = batched_values(fn, a, b)
            if r is not None:
                return r
        x = a._data if isinstance(a, Tensor) else a
        y = b._data if isinstance(b, Tensor) else b
        return Tensor._make(fn(x, y))
    return f


Tensor.__and__ = Tensor.__rand__ = _bitwise(np.bitwise_and, np.logical_and)
Tensor.__or__ = Tensor.__ror__ = _bitwise(np.bitwise_or, np.logical_or)
Tensor.__xor__ = Tensor.__rxor__ = _bitwise(np.bitwise_xor, np.logical_xor)
Tensor.__invert__ = lambda self: _unary_values(np.invert, self)


# ---------------------------------------------------------------- more binary math
def float_only(kernel: str, dt: np.dtype) -> None:
    """torch's NotImplementedError for a floating-only kernel applied to an integer dtype."""
    if dt.kind != "f":
        raise NotImplementedError(f'"{kernel}" not implemented for \'{type_name(dt)}\'')


def _tensors(*xs: object) -> tuple:
    return tuple(as_tensor_arg(x) if not isinstance(x, Tensor) else x for x in xs)


@primitive(save=(0, 1, -1))
def _hypot(a, b):
    return np.hypot(a, b)


_hypot.defvjp(lambda ctx, g, a, b, out: (g * a / out if _needs(ctx, 0) else None,
                                         g * b / out if _needs(ctx, 1) else None))
_hypot.defjvp(diagonal_jvp)
_hypot.defbatch(elementwise_batch)
_hypot.defshape(elementwise_shape)


@op(differentiable=("input", "other"), method=True)
def hypot(input, other):
    """``sqrt(input**2 + other**2)`` without overflow."""
    input, other = _tensors(input, other)
    dt = binary_dtype(input, other)
    float_only("hypot_cpu", dt)
    return apply(_hypot, (input, other), None, dt)


@primitive(save=(0, 1))
def _logaddexp(a, b):
    return np.logaddexp(a, b)


_logaddexp.defvjp(lambda ctx, g, a, b: (g / (1 + exp(b - a)) if _needs(ctx, 0) else None,
                                        g / (1 + exp(a - b)) if _needs(ctx, 1) else None))
_logaddexp.defjvp(diagonal_jvp)
_logaddexp.defbatch(elementwise_batch)
_logaddexp.defshape(elementwise_shape)


@primitive(save=(0, 1))
def _logaddexp2(a, b):
    return np.logaddexp2(a, b)


_logaddexp2.defvjp(lambda ctx, g, a, b: (g / (1 + 2.0 ** (b - a)) if _needs(ctx, 0) else None,
                                         g / (1 + 2.0 ** (a - b)) if _needs(ctx, 1) else None))
_logaddexp2.defjvp(diagonal_jvp)
_logaddexp2.defbatch(elementwise_batch)
_logaddexp2.defshape(elementwise_shape)


@op(differentiable=("input", "other"), method=True)
def logaddexp(input, other):
    """``log(exp(input) + exp(other))``, computed stably."""
    input, other = _tensors(input, other)
    dt = binary_dtype(input, other)
    float_only("logaddexp_cpu", dt)
    return apply(_logaddexp, (input, other), None, dt)


@op(differentiable=("input", "other"), method=True)
def logaddexp2(input, other):
    """``log2(2**input + 2**other)``, computed stably."""
    input, other = _tensors(input, other)
    dt = binary_dtype(input, other)
    float_only("logaddexp2_cpu", dt)
    return apply(_logaddexp2, (input, other), None, dt)


def _quotient(a: object, b: object, rnd: Callable) -> Tensor:
    """The rounded quotient as a constant (its derivative is zero almost everywhere)."""
    x = a._data if isinstance(a, Tensor) else a
    y = b._data if isinstance(b, Tensor) else b
    return Tensor._make(rnd(np.true_divide(x, y)))


@primitive(save=(0, 1))
def _fmod(a, b):
    return np.fmod(a, b)


@primitive(save=(0, 1))
def _remainder(a, b):
    return np.remainder(a, b)


# torch: d/da = 1, d/db = -(a / b) rounded toward zero (fmod) or down (remainder)
_fmod.defvjp(lambda ctx, g, a, b: (g, -g * _quotient(a, b, np.trunc) if _needs(ctx, 1) else None))
_remainder.defvjp(lambda ctx, g, a, b: (g, -g * _quotient(a, b, np.floor) if _needs(ctx, 1) else None))
_fmod.defjvp(diagonal_jvp)
_fmod.defbatch(elementwise_batch)
_fmod.defshape(elementwise_shape)
_remainder.defjvp(diagonal_jvp)
_remainder.defbatch(elementwise_batch)
_remainder.defshape(elementwise_shape)


def _modulo(prim: Primitive, input: object, other: object) -> Tensor:
    input, other = _arg(input), _arg(other)
    dt = binary_dtype(input, other)
    if dt.kind in "iub":
        b = other._data if isinstance(other, Tensor) else other
        if np.any(np.asarray(b) == 0):
            raise RuntimeError("ZeroDivisionError")
    return apply(prim, (input, other), None, dt)


@op(differentiable=("input", "other"), method=True)
def fmod(input, other):
    """C-style remainder: the result has the sign of ``input``."""
    return _modulo(_fmod, input, other)


@op(differentiable=("input", "other"), method=True)
def remainder(input, other):
    """Python-style remainder: the result has the sign of ``other`` (also ``input % other``)."""
    return _modulo(_remainder, input, other)


Tensor.__mod__ = remainder
Tensor.__rmod__ = lambda self, other: remainder(other, self)


@primitive(save=(0, -1))
def _copysign(a, b):
    return np.copysign(a, b)


@_copysign.defvjp
def _copysign_vjp(ctx, g, a, out):
    # torch: d/da = out / a (0 where a == 0), a piecewise constant; d/db = 0
    x = a._data
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(x == 0, 0, out._data / np.where(x == 0, 1, x)).astype(out._data.dtype)
    gb = Tensor._make(np.zeros(*ctx.in_meta[1])) if _needs(ctx, 1) else None
    return g * Tensor._make(ratio), gb


_copysign.defjvp(diagonal_jvp)
_copysign.defbatch(elementwise_batch)
_copysign.defshape(elementwise_shape)


@op(differentiable=("input", "other"), method=True)
def copysign(input, other):
    """``|input|`` with the sign of ``other`` (signed zeros included); ``other`` gets zero gradient."""
    input, other = _arg(input), _arg(other)
    dt = binary_dtype(input, other)
    return apply(_copysign, (input, other), None, dt if dt.kind == "f" else _F32)


@primitive()
def _heaviside(x, values):
    # torch: x == 0 ? values : x > 0, so NaN gives 0 (numpy's heaviside gives NaN)
    return np.where(x == 0, values, x > 0).astype(x.dtype, copy=False)


_heaviside.defvjp(lambda ctx, g: (zeros_grad(ctx, g), None if ctx.edges[1] is None else
                                  Tensor._make(np.zeros(*ctx.in_meta[1]))))
_heaviside.defjvp(zeros_jvp)
_heaviside.defbatch(elementwise_batch)
_heaviside.defshape(elementwise_shape)


@op(differentiable=("input", "values"), method=True)
def heaviside(input, values):
    """Step function: 0 below zero, 1 above, ``values`` at zero. Zero gradient.

    (torch raises "derivative for aten::heaviside is not implemented"; a zero gradient like
    ``sign`` and ``floor`` is what the Gradserve API promises.)
    """
    input, values = _tensors(input, values)
    if input._data.dtype != values._data.dtype:
        raise RuntimeError("heaviside is not yet implemented for tensors with different dtypes.")
    return apply(_heaviside, (input, values), None, binary_dtype(input, values))


@op(differentiable=("input", "end", "weight"), method=True)
def lerp(input, end, weight):
    """``input + weight * (end - input)``."""
    input, end = _tensors(input, end)
    if input._data.dtype != end._data.dtype:
        raise RuntimeError(f"expected dtype {_dtname(input)} for `end` but got dtype {_dtname(end)}")
    return input + weight * (end - input)


def _dtname(t: Tensor) -> str:
    return {"float32": "float", "float64": "double", "float16": "half"}.get(t.dtype.name, t.dtype.name)


@op(differentiable=("input", "tensor1", "tensor2"), method=True)
def addcmul(input, tensor1, tensor2, *, value=1):
    """``input + value * tensor1 * tensor2``."""
    prod = mul(tensor1, tensor2)
    return add(input, prod if value == 1 else mul(prod, value))


@op(differentiable=("input", "tensor1", "tensor2"), method=True)
def addcdiv(input, tensor1, tensor2, *, value=1):
    """``input + value * tensor1 / tensor2``."""
    t1, t2 = _tensors(tensor1, tensor2)
    if t1._data.dtype.kind in "iub" and t2._data.dtype.kind in "iub":
        raise RuntimeError(
            "Integer division with addcdiv is no longer supported, and in a future  release addcdiv "
            "will perform a true division of tensor1 and tensor2. The historic addcdiv behavior can "
            "be implemented as (input + value * torch.trunc(tensor1 / tensor2)).to(input.dtype) for "
            "integer inputs and as (input + value * tensor1 / tensor2) for float inputs. The future "
            "addcdiv behavior is just the latter implementation: (input + value * tensor1 / "
            "tensor2), for all dtypes.")
    q = div(t1, t2)
    return add(input, q if value == 1 else mul(q, value))


# ---------------------------------------------------------------- more unary math
@op(method=True)
def sinc(input):
    """``sin(pi x) / (pi x)``, 1 at 0; torch's gradient is 0 at 0."""
    x = to_float(input)
    at0 = x == 0
    px = where(at0, 1.0, x) * math.pi
    return where(at0, 1.0, sin(px) / px)


@op(method=True)
def deg2rad(input):
    """Degrees to radians."""
    return to_float(input) * (math.pi / 180)


@op(method=True)
def rad2deg(input):
    """Radians to degrees."""
    return to_float(input) * (180 / math.pi)


@op(method=True)
def frac(input):
    """``input - trunc(input)``; its gradient is 1."""
    input = _arg(input)
    float_only("frac_cpu", input._data.dtype)
    return input - trunc(input)


@op(method=True)
def nan_to_num(input, nan=0.0, posinf=None, neginf=None):
    """NaN and +-inf replaced by finite numbers (the dtype's extremes by default); zero gradient
    at the replaced entries."""
    x = _arg(input)
    if x._data.dtype.kind != "f":
        return x
    fill = np.nan_to_num(x._data, nan=nan, posinf=posinf, neginf=neginf)
    return where(Tensor._make(np.isfinite(x._data)), x, Tensor._make(fill))
