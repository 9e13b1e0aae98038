"""Elementwise ops: arithmetic, unary math, comparisons, selection."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .._autograd import Primitive, apply, primitive
from .._dtype import result_type
from ..tensor import Tensor
from ._registry import as_tensor_arg, op

IN, OUT = (0,), (-1,)
_F32 = np.dtype(np.float32)
_DT_CACHE: dict[tuple, np.dtype] = {}
_SCALARS = (int, float, bool)


def _key(x: object) -> object:
    return (x._data.dtype, x._data.ndim == 0) if isinstance(x, Tensor) else type(x)


def _arg(x: object) -> object:
    return x if isinstance(x, (Tensor, *_SCALARS)) else as_tensor_arg(x)


def binary_dtype(a: object, b: object) -> np.dtype:
    """Torch's promoted numpy dtype for a binary op (cached: this is on the hot path)."""
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
@primitive()
def _add(a, b):
    return np.add(a, b)


_add.defvjp(lambda ctx, g: (g, g))


@primitive()
def _sub(a, b):
    return np.subtract(a, b)


_sub.defvjp(lambda ctx, g: (g, -g if _needs(ctx, 1) else None))


@primitive(save=(0, 1))
def _mul(a, b):
    return np.multiply(a, b)


_mul.defvjp(lambda ctx, g, a, b: (g * b if _needs(ctx, 0) else None,
                                  g * a if _needs(ctx, 1) else None))


@primitive(save=(0, 1))
def _div(a, b):
    return np.true_divide(a, b)


_div.defvjp(lambda ctx, g, a, b: (g / b if _needs(ctx, 0) else None,
                                  -g * a / (b * b) if _needs(ctx, 1) else None))


@primitive()
def _neg(a):
    return np.negative(a)


_neg.defvjp(lambda ctx, g: -g)


@primitive(save=(0, 1, -1))
def _pow(a, b):
    return np.power(a, b)


@_pow.defvjp
def _pow_vjp(ctx, g, a, b, out):
    ga = gb = None
    if _needs(ctx, 0):
        if isinstance(b, (int, float)):
            ga = g * b * a ** (b - 1) if b != 0 else zeros_grad(ctx, g)
            if b == 2:
                ga = g * 2 * a
        else:
            ga = g * b * a ** (b - 1)
    if _needs(ctx, 1):
        # torch: the exponent's gradient is 0 where base == 0 and exponent >= 0
        base = as_tensor_arg(a) if not isinstance(a, Tensor) else a
        safe = where((base == 0) & (as_tensor_arg(b) >= 0), 0.0, out * log(base))
        gb = g * safe
    return ga, gb


@primitive(save=(0, 1))
def _atan2(a, b):
    return np.arctan2(a, b)


_atan2.defvjp(lambda ctx, g, a, b: (g * b / (a * a + b * b), -g * a / (a * a + b * b)))


@primitive(save=(0, 1))
def _maximum(a, b):
    return np.maximum(a, b)


@primitive(save=(0, 1))
def _minimum(a, b):
    return np.minimum(a, b)


def _minmax_vjp(ctx, g, a, b, *, sign: int):
    # torch splits the gradient evenly between equal arguments
    wa = ((a > b) if sign > 0 else (a < b)).to(g.dtype) + (a == b).to(g.dtype) * 0.5
    return g * wa, g * (1 - wa)


_maximum.defvjp(lambda ctx, g, a, b: _minmax_vjp(ctx, g, a, b, sign=1))
_minimum.defvjp(lambda ctx, g, a, b: _minmax_vjp(ctx, g, a, b, sign=-1))


@primitive(save=(0,))
def _where(cond, a, b):
    return np.where(cond, a, b)


@_where.defvjp
def _where_vjp(ctx, g, cond):
    zero = Tensor._make(np.zeros((), g._data.dtype))
    return (None, where(cond, g, zero) if _needs(ctx, 1) else None,
            where(cond, zero, g) if _needs(ctx, 2) else None)


# ---------------------------------------------------------------- arithmetic ops
@op(differentiable=("input", "other"), method=True)
def add(input, other, *, alpha=1):
    """``input + alpha * other`` with broadcasting and torch's type promotion."""
    input, other = _arg(input), _arg(other)
    if alpha != 1:
        other = mul(other, alpha)
    return apply(_add, (input, other), None, binary_dtype(input, other))


@op(differentiable=("input", "other"), method=True)
def sub(input, other, *, alpha=1):
    """``input - alpha * other``."""
    input, other = _arg(input), _arg(other)
    _check_bool_sub(input, other)
    if alpha != 1:
        other = mul(other, alpha)
    return apply(_sub, (input, other), None, binary_dtype(input, other))


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
    input, other = _arg(input), _arg(other)
    return apply(_mul, (input, other), None, binary_dtype(input, other))


@op(differentiable=("input", "other"), method=True, aliases=("divide", "true_divide"))
def div(input, other, *, rounding_mode=None):
    """True division (integers give float32); ``rounding_mode`` 'trunc'/'floor' has zero grad."""
    input, other = _arg(input), _arg(other)
    dt = binary_dtype(input, other)
    if rounding_mode is not None:
        if rounding_mode not in ("trunc", "floor"):
            raise RuntimeError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' "
                               f"but found '{rounding_mode}'")
        a, b = np.asarray(input if not isinstance(input, Tensor) else input._data, dt), \
            np.asarray(other if not isinstance(other, Tensor) else other._data, dt)
        return Tensor._make(_rounded_div(a, b, rounding_mode).astype(dt, copy=False))
    if dt.kind != "f":
        dt = _F32
    return apply(_div, (input, other), None, dt)


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
    input, exponent = _arg(input), _arg(exponent)
    dt = binary_dtype(input, exponent)
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
    input, other = _arg(input), _arg(other)
    dt = binary_dtype(input, other)
    return apply(_atan2, (input, other), None, dt if dt.kind == "f" else _F32)


@op(differentiable=("input", "other"), method=True)
def maximum(input, other):
    """Elementwise maximum; ties split the gradient evenly."""
    input, other = _arg(input), _arg(other)
    return apply(_maximum, (input, other), None, binary_dtype(input, other))


@op(differentiable=("input", "other"), method=True)
def minimum(input, other):
    """Elementwise minimum; ties split the gradient evenly."""
    input, other = _arg(input), _arg(other)
    return apply(_minimum, (input, other), None, binary_dtype(input, other))


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
           float_only: bool = True, aliases: tuple[str, ...] = ()) -> Callable:
    prim = Primitive(name, fwd, save)
    prim.defvjp(vjp)
    conv = to_float if float_only else _arg

    def fn(input):
        return prim(conv(input))

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return op(method=True, aliases=aliases)(fn)


def _inv_sqrt1m(x):
    return rsqrt(1 - x * x)


#              name      numpy forward  saves  VJP                                        doc
exp = _unary("exp", np.exp, OUT, lambda c, g, y: g * y, "e ** input.")
expm1 = _unary("expm1", np.expm1, OUT, lambda c, g, y: g * (y + 1), "exp(input) - 1, accurate near 0.")
log = _unary("log", np.log, IN, lambda c, g, x: g / x, "Natural logarithm.")
log1p = _unary("log1p", np.log1p, IN, lambda c, g, x: g / (x + 1), "log(1 + input), accurate near 0.")
sqrt = _unary("sqrt", np.sqrt, OUT, lambda c, g, y: g / (2 * y), "Square root.")
sin = _unary("sin", np.sin, IN, lambda c, g, x: g * cos(x), "Sine.")
cos = _unary("cos", np.cos, IN, lambda c, g, x: -g * sin(x), "Cosine.")
tan = _unary("tan", np.tan, OUT, lambda c, g, y: g * (1 + y * y), "Tangent.")
asin = _unary("asin", np.arcsin, IN, lambda c, g, x: g * _inv_sqrt1m(x), "Arcsine.", aliases=("arcsin",))
acos = _unary("acos", np.arccos, IN, lambda c, g, x: -g * _inv_sqrt1m(x), "Arccosine.",
              aliases=("arccos",))
atan = _unary("atan", np.arctan, IN, lambda c, g, x: g / (1 + x * x), "Arctangent.", aliases=("arctan",))
sinh = _unary("sinh", np.sinh, IN, lambda c, g, x: g * cosh(x), "Hyperbolic sine.")
cosh = _unary("cosh", np.cosh, IN, lambda c, g, x: g * sinh(x), "Hyperbolic cosine.")
tanh = _unary("tanh", np.tanh, OUT, lambda c, g, y: g * (1 - y * y), "Hyperbolic tangent.")
sigmoid = _unary("sigmoid", lambda x: _sigmoid_np(x), OUT, lambda c, g, y: g * y * (1 - y),
                 "Logistic sigmoid 1 / (1 + exp(-input)).")
relu = _unary("relu", lambda x: np.maximum(x, 0).astype(x.dtype, copy=False), OUT,
              # g * sign(y), not g * (y > 0): as torch's, the gradient stays attached to the graph
              # with create_graph (its own derivative is zero).
              lambda c, g, y: g * sign(y), "max(input, 0); relu'(0) = 0.", float_only=False)
abs = _unary("abs", np.abs, IN, lambda c, g, x: g * sign(x), "Absolute value; abs'(0) = 0.",  # noqa: A001
             float_only=False, aliases=("absolute",))
sign = _unary("sign", np.sign, (), zeros_grad, "Sign (-1, 0, 1); zero gradient.", float_only=False)
floor = _unary("floor", np.floor, (), zeros_grad, "Round down; zero gradient.", float_only=False)
ceil = _unary("ceil", np.ceil, (), zeros_grad, "Round up; zero gradient.", float_only=False)
trunc = _unary("trunc", np.trunc, (), zeros_grad, "Round toward zero; zero gradient.",
               float_only=False, aliases=("fix",))


def _sigmoid_np(x: np.ndarray) -> np.ndarray:
    # Stable for large |x|: exp only of non-positive numbers.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


@primitive()
def _round(x, decimals=0):
    return np.round(x, decimals)


_round.defvjp(zeros_grad)


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


@op(method=True, aliases=("clip",))
def clamp(input, min=None, max=None):
    """Limit values to ``[min, max]``; the gradient passes at the boundaries."""
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        out = _arg(input)
        if min is not None:
            out = where(out < min, min, out)
        if max is not None:
            out = where(out > max, max, out)
        return out
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
    return Tensor._make(np.logical_not(_arg(input)._data))


@op(differentiable=(), method=True)
def isnan(input):
    """True where NaN. Not differentiable."""
    return Tensor._make(np.isnan(input._data))


@op(differentiable=(), method=True)
def isfinite(input):
    """True where finite. Not differentiable."""
    return Tensor._make(np.isfinite(input._data))


@op(differentiable=(), method=True)
def isinf(input):
    """True where +-inf. Not differentiable."""
    return Tensor._make(np.isinf(input._data))


def _bitwise(fn: Callable, logical: Callable) -> Callable:
    def f(a, b):
        a, b = _arg(a), _arg(b)
        x = a._data if isinstance(a, Tensor) else a
        y = b._data if isinstance(b, Tensor) else b
        return Tensor._make(fn(x, y))
    return f


Tensor.__and__ = Tensor.__rand__ = _bitwise(np.bitwise_and, np.logical_and)
Tensor.__or__ = Tensor.__ror__ = _bitwise(np.bitwise_or, np.logical_or)
Tensor.__xor__ = Tensor.__rxor__ = _bitwise(np.bitwise_xor, np.logical_xor)
Tensor.__invert__ = lambda self: Tensor._make(np.invert(self._data))
