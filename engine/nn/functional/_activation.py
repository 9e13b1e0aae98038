"""Activations of ``engine.nn.functional``, with torch's names, defaults and kink conventions.

Most are compositions of engine ops: ``where`` sends the gradient to the branch torch's backward
uses at a kink, so autograd reproduces torch's first *and* second derivatives. Four are primitives
because no composition gives torch's derivatives: the elu family and prelu (torch's double backward
masks with ``x < 0`` while the first derivative switches at ``x > 0``), softplus (first derivative
switches at ``beta*x > threshold``, second at ``beta*x < threshold``, and it must not overflow) and
erf for exact gelu (scipy forward). Their VJPs are engine ops, so any order works.
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import scipy.special

from ... import _dtype
from ..._autograd import _align, diagonal_jvp, elementwise_batch, primitive
from ..._meta import elementwise_shape
from ...ops import elementwise as _E
from ...ops import inplace as _inplace
from ...ops._registry import as_tensor_arg, op
from ...ops.elementwise import exp, where
from ...ops.reduction import log_softmax as _log_softmax
from ...ops.reduction import softmax as _softmax
from ...ops.shape import narrow, norm_dim, reshape
from ...tensor import Tensor


def torch_type_name(t: Tensor) -> str:
    """torch's C++ name of a tensor's dtype (``Float``, ``Long``...), as its error messages say it."""
    return _dtype.type_name(t._data.dtype)


def inplace_variant(fn: Callable) -> Callable:
    """Give an out-of-place op torch's ``inplace=True``: the result is written into ``input``
    (engine.ops.inplace: the input's version moves, its history becomes the op's)."""
    sig = inspect.signature(fn)
    pos = list(sig.parameters).index("inplace")

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("inplace") and (len(args) <= pos or not args[pos]):
            return fn(*args, **kwargs)
        bound = sig.bind(*args, **kwargs)
        bound.arguments["inplace"] = False
        target = bound.arguments["input"]
        return _inplace.inplace(target, lambda _: fn(*bound.args, **bound.kwargs))

    return wrapper


def float_kernel(input: object, kernel: str) -> Tensor:
    """``input`` as a tensor; torch's NotImplementedError for integer inputs of float-only kernels."""
    x = as_tensor_arg(input)
    if x._data.dtype.kind != "f":
        raise NotImplementedError(f'"{kernel}" not implemented for \'{torch_type_name(x)}\'')
    return x


def _bound(x: Tensor, v: float) -> float | int:
    # An integer tensor keeps its dtype: torch converts float bounds to the tensor's type.
    return v if x._data.dtype.kind == "f" else int(v)


# ---------------------------------------------------------------- rectifiers and clamps
@op()
@inplace_variant
def relu(input, inplace=False):
    """``max(input, 0)`` (``engine.relu``); relu'(0) = 0.

    >>> F.relu(engine.tensor([-1.0, 2.0]))
    tensor([0., 2.])
    """
    return _E.relu(input)


@op()
@inplace_variant
def leaky_relu(input, negative_slope=0.01, inplace=False):
    """``input`` where positive, else ``negative_slope * input``; the slope applies at 0.

    >>> F.leaky_relu(engine.tensor([-2.0, 3.0]), 0.1)
    tensor([-0.2,  3. ])
    """
    x = float_kernel(input, "leaky_relu_cpu")
    return where(x > 0, x, x * negative_slope)


@op()
@inplace_variant
def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """Clamp to ``[min_val, max_val]``; unlike ``clamp``, the gradient is 0 at the bounds (torch).

    >>> F.hardtanh(engine.tensor([-3.0, 0.5, 3.0]))
    tensor([-1. ,  0.5,  1. ])
    """
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    x = as_tensor_arg(input)
    lo, hi = _bound(x, min_val), _bound(x, max_val)
    return where(x <= lo, lo, where(x >= hi, hi, x))


@op()
@inplace_variant
def relu6(input, inplace=False):
    """``hardtanh(input, 0, 6)``.

    >>> F.relu6(engine.tensor([-1.0, 7.0]))
    tensor([0., 6.])
    """
    return hardtanh(input, 0.0, 6.0)


@op()
@inplace_variant
def threshold(input, threshold, value, inplace=False):
    """``input`` where ``input > threshold``, else ``value``.

    >>> F.threshold(engine.tensor([0.5, 2.0]), 1.0, -1.0)
    tensor([-1.,  2.])
    """
    x = as_tensor_arg(input)
    return where(x <= _bound(x, threshold), _bound(x, value), x)  # torch's test: NaN passes


@op()
@inplace_variant
def hardsigmoid(input, inplace=False):
    """``relu6(input + 3) / 6``; gradient 1/6 strictly inside (-3, 3).

    >>> F.hardsigmoid(engine.tensor([-4.0, 0.0, 4.0]))
    tensor([0. , 0.5, 1. ])
    """
    x = float_kernel(input, "hardsigmoid_cpu")
    # torch: gradient 1/6 strictly inside (-3, 3), 0 elsewhere and at NaN (which stays NaN)
    return where((x > -3.0) & (x < 3.0), (x + 3.0) / 6.0,
                 where(x <= -3.0, 0.0, where(x >= 3.0, 1.0, x.detach())))


@op()
@inplace_variant
def hardswish(input, inplace=False):
    """``input * relu6(input + 3) / 6``; torch's gradient is 0 at -3 and 1 at 3.

    >>> F.hardswish(engine.tensor([-4.0, 1.0, 4.0]))
    tensor([0.    , 0.6667, 4.    ])
    """
    return _hardswish(float_kernel(input, "hardswish_cpu"))


# silu, mish and hardswish are primitives for their gradients: torch forms the local slope first
# and multiplies the upstream gradient once (or selects 0 by the input's range), so an infinite
# upstream gradient gives +-inf (or 0) where the composites' two product-rule paths made inf - inf
@primitive(save=(0,))
def _hardswish(x):
    return np.where(x <= -3.0, 0.0, np.where(x >= 3.0, x, x * (x + 3.0) / 6.0)).astype(x.dtype, copy=False)


@_hardswish.defvjp
def _hardswish_vjp(ctx, g, x):
    # torch: 0 up to -3 (whatever g holds), x / 3 + 1/2 inside, 1 from 3 on and at NaN
    return where(x <= -3.0, 0.0, g * where(x < 3.0, x / 3.0 + 0.5, 1.0))


@primitive(save=(0,))
def _silu(x):
    return x * _E._sigmoid_np(x)


@_silu.defvjp
def _silu_vjp(ctx, g, x):
    s = _E.sigmoid(x)
    return g * s * (1.0 + x * (1.0 - s))  # torch's silu_backward, in its order


@primitive(save=(0,))
def _mish(x):
    return x * np.tanh(_softplus.fwd(x, 1.0, math.inf))


@_mish.defvjp
def _mish_vjp(ctx, g, x):
    t = _E.tanh(softplus_inf(x))
    return g * (t + x * _E.sigmoid(x) * (1.0 - t * t))  # torch's mish_backward


for _p in (_hardswish, _silu, _mish):
    _p.defjvp(diagonal_jvp)
    _p.defbatch(elementwise_batch)
    _p.defshape(elementwise_shape)


@op()
def softshrink(input, lambd=0.5):
    """``input - lambd`` above ``lambd``, ``input + lambd`` below ``-lambd``, else 0.

    >>> F.softshrink(engine.tensor([-1.0, 0.2, 1.0]))
    tensor([-0.5,  0. ,  0.5])
    """
    x = float_kernel(input, "softshrink_check")
    if lambd < 0:
        raise RuntimeError(f"lambda must be in range [0, {np.finfo(x._data.dtype).max:g}] for input "
                           f"dtype {torch_type_name(x)}, but found {lambd:g}")
    # torch: 0 inside [-lambd, lambd]; outside, and at NaN, x - lambd * sign(x) with gradient 1
    return where((x >= -lambd) & (x <= lambd), 0.0, x - lambd * x.detach().sign())


@op()
def hardshrink(input, lambd=0.5):
    """``input`` where ``|input| > lambd``, else 0.

    >>> F.hardshrink(engine.tensor([-1.0, 0.2, 1.0]))
    tensor([-1.,  0.,  1.])
    """
    x = float_kernel(input, "hardshrink_cpu")
    return where((x >= -lambd) & (x <= lambd), 0.0, x)  # torch's test: NaN passes


@op()
def tanhshrink(input):
    """``input - tanh(input)``.

    >>> F.tanhshrink(engine.tensor([1.0]))
    tensor([0.2384])
    """
    x = as_tensor_arg(input)
    return x - _E.tanh(x)


@op()
def softsign(input):
    """``input / (1 + |input|)``.

    >>> F.softsign(engine.tensor([-1.0, 3.0]))
    tensor([-0.5 ,  0.75])
    """
    x = as_tensor_arg(input)
    return x / (x.abs() + 1)


# ---------------------------------------------------------------- exponential units (primitive)
@primitive(save=(0,))
def _elu(x, alpha, scale, input_scale):
    neg = np.expm1(np.minimum(x, 0) * input_scale) * (alpha * scale)
    return np.where(x > 0, x * scale, neg).astype(x.dtype, copy=False)


@_elu.defvjp
def _elu_vjp(ctx, g, x, alpha, scale, input_scale):
    # torch: slope `scale` for x > 0, else alpha*scale*input_scale*exp(x*input_scale) (so at 0 too);
    # its double backward masks the exp branch with x < 0, hence the exponent's gradient path.
    xn = where(x < 0, x, 0.0)
    return g * where(x <= 0, exp(xn * input_scale) * (alpha * scale * input_scale), scale)  # NaN: scale


_elu.defjvp(diagonal_jvp)
_elu.defbatch(elementwise_batch)
_elu.defshape(elementwise_shape)


@op()
@inplace_variant
def elu(input, alpha=1.0, inplace=False):
    """``input`` where positive, else ``alpha * (exp(input) - 1)``.

    >>> F.elu(engine.tensor([-1.0, 2.0]))
    tensor([-0.6321,  2.    ])
    """
    x = float_kernel(input, "elu_cpu")
    return _elu(x, alpha=float(alpha), scale=1.0, input_scale=1.0)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@op()
@inplace_variant
def selu(input, inplace=False):
    """``scale * elu(input, alpha)`` with the self-normalizing constants.

    >>> F.selu(engine.tensor([1.0]))
    tensor([1.0507])
    """
    x = float_kernel(input, "elu_cpu")
    return _elu(x, alpha=_SELU_ALPHA, scale=_SELU_SCALE, input_scale=1.0)


@op()
@inplace_variant
def celu(input, alpha=1.0, inplace=False):
    """``max(0, input) + min(0, alpha * (exp(input / alpha) - 1))``.

    >>> F.celu(engine.tensor([-1.0]), 2.0)
    tensor([-0.7869])
    """
    x = float_kernel(input, "elu_cpu")
    if alpha == 0:
        raise RuntimeError("ZeroDivisionError: alpha cannot be 0 for CELU")
    return _elu(x, alpha=float(alpha), scale=1.0, input_scale=1.0 / alpha)


# ---------------------------------------------------------------- smooth units
@primitive(save=(0,))
def _softplus(x, beta, threshold):
    z = x * beta
    # log1p(exp(z)) without overflow: max(z, 0) + log1p(exp(-|z|))
    sp = (np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))) / beta
    return np.where(z > threshold, x, sp).astype(x.dtype, copy=False)


@_softplus.defvjp
def _softplus_vjp(ctx, g, x, beta, threshold):
    z = x * beta
    if threshold == math.inf:
        return g * _E.sigmoid(z)
    # torch: slope 1 where z > threshold; its double backward masks with z < threshold
    zs = where(z < threshold, z, z.detach())
    return g * where(z > threshold, 1.0, _E.sigmoid(zs))


_softplus.defjvp(diagonal_jvp)
_softplus.defbatch(elementwise_batch)
_softplus.defshape(elementwise_shape)


def softplus_inf(x: Tensor) -> Tensor:
    """``log(1 + exp(x))`` computed stably, with no linear cut-off (gradient: sigmoid)."""
    return _softplus(x, beta=1.0, threshold=math.inf)


@op()
def softplus(input, beta=1.0, threshold=20.0):
    """``log(1 + exp(beta * input)) / beta``, linear where ``beta * input > threshold``.

    >>> F.softplus(engine.tensor([0.0, 30.0]))
    tensor([ 0.6931, 30.    ])
    """
    x = float_kernel(input, "softplus_cpu")
    return _softplus(x, beta=float(beta), threshold=float(threshold))


@op()
def logsigmoid(input):
    """``log(sigmoid(input))``, stable for large ``|input|``.

    >>> F.logsigmoid(engine.tensor([0.0]))
    tensor([-0.6931])
    """
    x = float_kernel(input, "log_sigmoid_cpu")
    return -softplus_inf(-x)


@op()
@inplace_variant
def silu(input, inplace=False):
    """``input * sigmoid(input)`` (swish).

    >>> F.silu(engine.tensor([1.0]))
    tensor([0.7311])
    """
    return _silu(float_kernel(input, "silu_cpu"))


@op()
@inplace_variant
def mish(input, inplace=False):
    """``input * tanh(softplus(input))``.

    >>> F.mish(engine.tensor([1.0]))
    tensor([0.8651])
    """
    return _mish(float_kernel(input, "mish_cpu"))


# Phi(x) = (1 + erf(x / sqrt 2)) / 2 in float32 without scipy, which evaluates each element in
# double through scalar C code (~10x torch's time on a gelu of 512k entries). erf's polynomials
# were fitted here (least squares on Chebyshev nodes, relative error) and are evaluated by Horner
# in float32, at most ~2.5 ulp from the correctly rounded erf (tests/engine/test_nn_functional.py
# checks gelu and its derivative). |t| < 1: erf(t) = t P(t^2); 1 <= |t| < 4:
# erf(|t|) = 1 - exp(-t^2) Q(|t|) (Q ~ erfcx); |t| >= 4: 1 to float32 precision, Q taken at 4.
_ERF_P = (1.1283791065216064, -0.37612318992614746, 0.11280130594968796, -0.02670995518565178,
          0.004916026722639799, -0.0005625399062409997)
_ERF_Q = (0.9922682046890259, -1.082141637802124, 0.8737443089485168, -0.5418185591697693,
          0.2575716972351074, -0.09242025762796402, 0.02443726547062397, -0.004594458267092705,
          0.000579196959733963, -4.378835001261905e-05, 1.4981617368903244e-06)
_SQRT1_2 = math.sqrt(0.5)
_SQRT_2_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# |x| < sqrt 2: Phi(x) = 1/2 + x P'(x^2), P'_i = P_i / (2 sqrt(2)^(2i+1)): no pass to scale x
_PHI_P = tuple(c * 0.5 * _SQRT1_2 ** (2 * i + 1) for i, c in enumerate(_ERF_P))


def _horner32(coef: tuple, z: np.ndarray, out: np.ndarray) -> np.ndarray:
    y = np.multiply(z, np.float32(coef[-1]), out=out)
    y += np.float32(coef[-2])
    for c in coef[-3::-1]:
        y *= z
        y += np.float32(c)
    return y


def _std_normal_cdf_f32(x: np.ndarray, out: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> None:
    """Phi(x) of a 1-D float32 block into ``out``; ``s1``, ``s2`` (same size) are overwritten."""
    c = np.clip(x, -math.sqrt(2), math.sqrt(2), out=s1)  # the tail's entries are replaced below
    _horner32(_PHI_P, np.multiply(c, c, out=s2), out=out)
    out *= c
    out += np.float32(0.5)
    tail = np.flatnonzero(c != x)  # |x| >= sqrt 2, and NaN: few in typical activations
    if tail.size:
        xt = x[tail]
        t = np.minimum(np.abs(xt) * np.float32(_SQRT1_2), np.float32(4))  # NaN stays NaN
        q = _horner32(_ERF_Q, t, out=np.empty_like(t))
        q *= np.exp(-(t * t))
        e = np.copysign(np.float32(1) - q, xt)  # erf, rounded as torch's (1 + erf) / 2 needs
        e += 1
        e *= np.float32(0.5)
        out[tail] = e


def _std_normal_cdf(x: np.ndarray, out: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """``Phi(x) = (1 + erf(x / sqrt 2)) / 2`` as torch's gelu computes it, into ``out`` (1-D blocks;
    ``s1``, ``s2`` are scratch)."""
    if x.dtype == np.float32:
        _std_normal_cdf_f32(x, out, s1, s2)
        return out
    scipy.special.erf(np.multiply(x, x.dtype.type(_SQRT1_2), out=s1), out=out)
    out += 1
    out *= 0.5
    return out


# Elements per pass. Measured on the transformer block's gelu and its backward (4x128x1024
# float32, wall time, medians of 25 interleaved rounds of the compiled step on a quiet 2-core
# machine): 3.66 ms in 64K-element blocks, 3.56 in 256K ones (fewer numpy calls), 4.03 with the
# 256K blocks shared out between two threads: the passes are memory-bound, and the second
# thread ran beside OpenBLAS's worker, still spinning after the GEMM before it.
_BLOCK = 1 << 18


def _blocks(*arrays: np.ndarray) -> Iterator[list[np.ndarray]]:
    """Blocks of the flattened (C-contiguous, same-size) arrays, plus three scratch blocks."""
    flats = [a.reshape(-1) for a in arrays]
    n = flats[0].size
    scratch = np.empty((3, min(n, _BLOCK)), arrays[0].dtype)
    for i in range(0, n, _BLOCK):
        k = min(_BLOCK, n - i)
        yield [f[i:i + k] for f in flats] + [scratch[0, :k], scratch[1, :k], scratch[2, :k]]


def _contiguous(a: np.ndarray) -> np.ndarray:
    # (np.ascontiguousarray makes a 0-d array 1-d: gelu of a 0-d tensor was shaped [1])
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


# Exact gelu is two primitives, like torch's gelu and gelu_backward: gelu saves only its input
# (a composition through erf kept four activation-sized arrays alive until backward), and its
# VJP g * (Phi(x) + x phi(x)) is one pass instead of a dozen ops. Both work block by block: the
# output is their only activation-sized buffer.
@primitive(save=(0,))
def _gelu(x):
    x = _contiguous(x)
    y = np.empty(x.shape, x.dtype)

    for xb, yb, s1, s2, _ in _blocks(x, y):
        _std_normal_cdf(xb, yb, s1, s2)
        yb *= xb
    return y


@primitive(save=(0, 1))
def _gelu_backward(g, x):
    x = _contiguous(x)
    g = _contiguous(np.broadcast_to(g, x.shape))
    d = np.empty(x.shape, np.result_type(g, x))
    inv = x.dtype.type(_INV_SQRT_2PI)

    for xb, gb, db, pb, s1, s2 in _blocks(x, g, d):
        _std_normal_cdf(xb, pb, s1, s2)
        np.multiply(xb, xb, out=db)
        db *= -0.5
        np.exp(db, out=db)
        db *= inv
        db *= xb
        db += pb
        db *= gb
    return d


@_gelu_backward.defvjp
def _gelu_backward_vjp(ctx, h, g, x):
    # linear in g; (Phi + x phi)' = 2 phi + x phi' = phi (2 - x^2)
    hg = _gelu_backward(h, x) if ctx.edges[0] is not None else None
    hx = h * g * exp(x * x * -0.5) * ((2.0 - x * x) * _INV_SQRT_2PI) if ctx.edges[1] is not None else None
    return hg, hx


_gelu_backward.defjvp(diagonal_jvp)
# (its forward broadcasts g to x's shape: both to the batch's shape first)
_gelu_backward.defbatch(lambda prim, a, f: prim.fwd(*np.broadcast_arrays(*_align(a, f))))
_gelu_backward.defshape(elementwise_shape)


_gelu.defvjp(lambda ctx, g, x: _gelu_backward(g, x))
_gelu.defjvp(diagonal_jvp)
_gelu.defbatch(elementwise_batch)
_gelu.defshape(elementwise_shape)


@op()
def gelu(input, approximate="none"):
    """``input * Phi(input)`` (``approximate='none'``, via erf) or its tanh approximation.

    >>> F.gelu(engine.tensor([1.0]))
    tensor([0.8413])
    """
    if approximate not in ("none", "tanh"):
        raise RuntimeError("approximate argument must be either none or tanh.")
    x = float_kernel(input, "GeluKernelImpl")
    if approximate == "none":
        return _gelu(x)
    inner = (x + x * x * x * 0.044715) * _SQRT_2_PI
    return x * 0.5 * (_E.tanh(inner) + 1.0)


@op()
def glu(input, dim=-1):
    """Gated linear unit: ``a * sigmoid(b)`` for the two halves ``a, b`` of ``input`` along ``dim``.

    >>> F.glu(engine.tensor([1.0, 0.0]))
    tensor([0.5])
    """
    x = as_tensor_arg(input)
    if x._data.ndim == 0:
        raise RuntimeError("glu does not support scalars because halving size must be even")
    d = norm_dim(dim, x._data.ndim)
    n = x._data.shape[d]
    if n % 2:
        raise RuntimeError(f"Halving dimension must be even, but dimension {d} is size {n}")
    return narrow(x, d, 0, n // 2) * _E.sigmoid(narrow(x, d, n // 2, n // 2))


# ---------------------------------------------------------------- prelu (primitive)
@primitive(save=(0, 1))
def _prelu(x, w):
    return np.where(x > 0, x, w * x)


@_prelu.defvjp
def _prelu_vjp(ctx, g, x, w):
    # torch's first derivative takes the weight branch at x == 0; its double backward masks the
    # mixed (x, weight) terms with x < 0, hence the detached weight at 0.
    gx = gw = None
    if ctx.edges[0] is not None:
        gx = g * where(x > 0, 1.0, where(x < 0, w, w.detach()))
    if ctx.edges[1] is not None:
        gw = g * where(x < 0, x, 0.0)
    return gx, gw


_prelu.defjvp(diagonal_jvp)
_prelu.defbatch(elementwise_batch)
_prelu.defshape(elementwise_shape)


@op(differentiable=("input", "weight"))
def prelu(input, weight):
    """``input`` where positive, else ``weight * input``; ``weight`` has 1 or ``C`` (dim 1) entries.

    >>> F.prelu(engine.tensor([[-1.0, 2.0]]), engine.tensor([0.25]))
    tensor([[-0.25,  2.  ]])
    """
    x, w = float_kernel(input, "prelu_cpu"), as_tensor_arg(weight)
    if w._data.ndim > 1:
        raise RuntimeError(f"prelu: Expected `weight` to be a scalar or 1D tensor, but got: ndim = "
                           f"{w._data.ndim}")
    channels = x._data.shape[1] if x._data.ndim >= 2 else 1
    if w._data.size != 1 and w._data.size != channels:
        raise RuntimeError(f"Mismatch of parameter numbers and input channel size. Found parameter "
                           f"numbers = {w._data.size} and channel size = {channels}.")
    if w._data.dtype != x._data.dtype:
        raise RuntimeError(f"prelu: Type promoting not supported. Got {torch_type_name(x)} and "
                           f"{torch_type_name(w)}")
    if w._data.size == 1:
        w = reshape(w, ())
    elif x._data.ndim > 2:
        w = reshape(w, (channels,) + (1,) * (x._data.ndim - 2))
    return _prelu(x, w)


# ---------------------------------------------------------------- torch.nn.functional aliases
@op()
def sigmoid(input):
    """``1 / (1 + exp(-input))`` (``engine.sigmoid``).

    >>> F.sigmoid(engine.tensor([0.0]))
    tensor([0.5])
    """
    return _E.sigmoid(input)


@op()
def tanh(input):
    """Hyperbolic tangent (``engine.tanh``).

    >>> F.tanh(engine.tensor([0.0]))
    tensor([0.])
    """
    return _E.tanh(input)


def _implicit_dim(name: str, ndim: int) -> int:
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to "
                  "include dim=X as an argument.", stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


@op()
def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """``exp(input) / sum(exp(input), dim)``; ``dtype`` casts the input first.

    >>> F.softmax(engine.tensor([0.0, 0.0]), dim=0)
    tensor([0.5, 0.5])
    """
    if dim is None:
        dim = _implicit_dim("softmax", input.ndim)
    return _softmax(input, dim, dtype)


@op()
def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """``input - logsumexp(input, dim)``.

    >>> F.log_softmax(engine.tensor([0.0, 0.0]), dim=0)
    tensor([-0.6931, -0.6931])
    """
    if dim is None:
        dim = _implicit_dim("log_softmax", input.ndim)
    return _log_softmax(input, dim, dtype)


@op()
def softmin(input, dim=None, _stacklevel=3, dtype=None):
    """``softmax(-input, dim)``.

    >>> F.softmin(engine.tensor([0.0, 1.0]), dim=0)
    tensor([0.7311, 0.2689])
    """
    if dim is None:
        dim = _implicit_dim("softmin", input.ndim)
    return _softmax(-input, dim, dtype)

