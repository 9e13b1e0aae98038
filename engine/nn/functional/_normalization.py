"""Normalization layers: batch, layer, group, instance and RMS norm, and ``normalize``.

All are compositions of engine ops (mean, subtraction, rsqrt, products), so their first and second
derivatives are autograd's: torch's closed-form backward formulas are these same derivatives.

In training mode ``batch_norm`` (and ``instance_norm`` with input statistics) update
``running_mean``/``running_var`` in place, as torch does:
``(1 - momentum) * running + momentum * batch_statistic``, with the unbiased batch variance.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..._autograd import dims_batch, no_grad, primitive
from ..._meta import _bound, _dtype_of, _fresh, _probe, _reduced
from ...ops import inplace as _inplace
from ...ops._registry import as_tensor_arg, op
from ...ops.elementwise import rsqrt
from ...ops.reduction import mean, norm
from ...ops.shape import reshape
from ...tensor import Size, Tensor
from ._windows import size_str


# One primitive for the statistics every norm shares (torch's native_layer_norm computes them in one
# kernel too): as a composition of mean, sub, mul, mean, add, rsqrt and mul it was ten nodes and
# kept four activation-sized arrays for backward. Both results are outputs so that the VJP,
# written in engine ops on them, differentiates again.
@primitive(save=(-1, -2), n_out=2)
def _standardize(x, dims, eps):
    """``((x - mean) * rstd, rstd)`` over ``dims``, ``rstd = 1/sqrt(biased var + eps)`` kept for
    broadcasting."""
    xc = x - np.mean(x, axis=dims, keepdims=True)
    rstd = np.mean(np.square(xc), axis=dims, keepdims=True)
    rstd += x.dtype.type(eps)
    np.sqrt(rstd, out=rstd)
    np.reciprocal(rstd, out=rstd)
    xc *= rstd
    return xc, rstd


@_standardize.defvjp
def _standardize_vjp(ctx, g, xhat, rstd, dims, eps):
    # d xhat_i/d x_j = rstd (delta_ij - 1/n) - rstd xhat_i xhat_j / n, d rstd/d x_j = -rstd^2 xhat_j / n
    gx, gr = g
    n = math.prod(xhat._data.shape[d] for d in dims)
    c = mean(gx * xhat, dims, keepdim=True) + gr * rstd * (1.0 / n)
    return rstd * (gx - mean(gx, dims, keepdim=True) - xhat * c)


@_standardize.defjvp
def _standardize_jvp(ctx, ts, x, dims, eps):
    # d xhat = rstd (t - mean t - xhat mean(xhat t)), d rstd = -rstd^2 mean(xhat t)
    xhat, rstd = ctx.out
    t = ts[0]
    m = mean(xhat * t, dims, keepdim=True)
    return rstd * (t - mean(t, dims, keepdim=True) - xhat * m), -(rstd * rstd) * m
_standardize.defbatch(dims_batch("dims"))


@_standardize.defshape
def _standardize_shape(prim: Any, arrays: list, params: dict) -> Any:
    x = _bound(prim, arrays, params)["x"]
    dt = _dtype_of(_probe(prim, arrays, params)[0])
    return _fresh(np.shape(x), dt), _fresh(_reduced(np.shape(x), params["dims"], True), dt)


def _stats(x: Tensor, dims: tuple, eps: float) -> Tensor:
    """``(x - mean) / sqrt(biased var + eps)`` over ``dims``."""
    return _standardize(x, dims=tuple(d % x._data.ndim for d in dims), eps=float(eps))[0]


def _affine(y: Tensor, weight: Tensor | None, bias: Tensor | None, shape: tuple) -> Tensor:
    if weight is not None:
        y = y * reshape(as_tensor_arg(weight), shape)
    if bias is not None:
        y = y + reshape(as_tensor_arg(bias), shape)
    return y


def _check_mixed(x: Tensor, *params: object) -> None:
    """torch's CPU kernels want the parameters in the input's dtype."""
    for t in params:
        if t is not None and as_tensor_arg(t)._data.dtype != x._data.dtype:
            if x._data.dtype == np.float32:
                raise RuntimeError("mixed dtype (CPU): expect parameter to have scalar type of Float")
            raise RuntimeError("mixed dtype (CPU): all inputs must share same datatype.")


def _check_vec(t: object, name: str, n: int) -> None:
    if t is not None and as_tensor_arg(t)._data.size != n:
        raise RuntimeError(f"{name} should contain {n} elements not {as_tensor_arg(t)._data.size}")


# ---------------------------------------------------------------- batch norm
@op(differentiable=("input", "weight", "bias"))
def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-05):
    """Normalize each channel (dim 1) by batch statistics (``training``) or by the running ones.

    In training mode the batch statistics are used and ``running_mean``/``running_var`` (when
    given) are updated in place: ``(1 - momentum) * running + momentum * batch`` (the unbiased
    variance for ``running_var``), as in torch.

    >>> x = engine.tensor([[1.0, 2.0], [3.0, 6.0]])
    >>> F.batch_norm(x, None, None, training=True)
    tensor([[-1.0000, -1.0000],
            [ 1.0000,  1.0000]])
    """
    x = as_tensor_arg(input)
    shape = x._data.shape
    c = shape[1] if x._data.ndim > 1 else 0
    if not training and (running_mean is None or running_var is None):
        which = "running_mean" if running_mean is None else "running_var"
        raise RuntimeError(f"{which} must be defined in evaluation mode")
    _check_vec(running_mean, "running_mean", c)
    _check_vec(running_var, "running_var", c)
    _check_vec(weight, "weight", c)
    _check_vec(bias, "bias", c)
    _check_mixed(x, running_mean, running_var, weight, bias)
    bshape = (1, c) + (1,) * (x._data.ndim - 2)
    if training:
        if math.prod(shape) // max(c, 1) <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size "
                             f"{Size(shape)!r}")
        dims = (0,) + tuple(range(2, x._data.ndim))
        _update_running(x, dims, running_mean, running_var, momentum)
        return _affine(_stats(x, dims, eps), weight, bias, bshape)
    rm, rv = as_tensor_arg(running_mean), as_tensor_arg(running_var)
    xc, inv = x - reshape(rm, bshape), rsqrt(reshape(rv, bshape) + eps)
    if weight is not None:  # per-channel: fold the weight into the small factor (one pass less)
        inv = inv * reshape(as_tensor_arg(weight), bshape)
    return _affine(xc * inv, None, bias, bshape)


@op(differentiable=("input", "weight", "bias"))
def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-05):
    """Normalize each (sample, channel) over its spatial dims; running stats are used only with
    ``use_input_stats=False`` and never updated in place.

    >>> F.instance_norm(engine.tensor([[[1.0, 3.0]]]))
    tensor([[[-1.0000,  1.0000]]])
    """
    x = as_tensor_arg(input)
    shape = x._data.shape
    c = shape[1] if x._data.ndim > 1 else 0
    _check_vec(weight, "weight", c)
    _check_vec(bias, "bias", c)
    bshape = (1, c) + (1,) * (x._data.ndim - 2)
    if use_input_stats:
        if math.prod(shape[2:]) <= 1:
            raise ValueError(f"Expected more than 1 spatial element when training, got input size "
                             f"{Size(shape)!r}")
        dims = tuple(range(2, x._data.ndim))
        _update_running(x, dims, running_mean, running_var, momentum, per_instance=True)
        return _affine(_stats(x, dims, eps), weight, bias, bshape)
    return batch_norm(x, running_mean, running_var, weight, bias, False, momentum, eps)


def _update_running(x: Tensor, dims: tuple, running_mean: object, running_var: object, momentum: float,
                    per_instance: bool = False) -> None:
    """torch's in-place update of the running statistics (instance norm: the per-instance
    statistics averaged over the batch, as torch's batch-norm-over-instances does)."""
    if not isinstance(running_mean, Tensor) and not isinstance(running_var, Tensor):
        return
    with no_grad():
        xd = x.detach()
        for running, stat in ((running_mean, lambda: xd.mean(dims)), (running_var, lambda: xd.var(dims))):
            if not isinstance(running, Tensor):
                continue
            s = stat()
            if per_instance:
                s = s.mean(0)
            new = (running * (1 - momentum) + s * momentum).to(running.dtype)
            if per_instance:  # torch's instance norm copies back: a version; batch norm's kernel not
                running.copy_(new)
            else:
                _inplace.commit(running, new, bump=False)


# ---------------------------------------------------------------- layer, group and RMS norm
def _norm_shape(x: Tensor, normalized_shape: object, form: str) -> tuple:
    ns = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
    k = len(ns)
    if k == 0 or x._data.shape[x._data.ndim - k:] != ns or x._data.ndim < k:
        expect = form.format(", ".join(map(str, ns)))
        raise RuntimeError(f"Given normalized_shape={list(ns)}, expected input with shape {expect}, but "
                           f"got input of size{size_str(x._data.shape)}")
    return ns


def _check_param(t: object, name: str, ns: tuple) -> None:
    if t is not None and as_tensor_arg(t)._data.shape != ns:
        raise RuntimeError(f"Expected {name} to be of same shape as normalized_shape, but got {name} of "
                           f"shape {size_str(as_tensor_arg(t)._data.shape)} and normalized_shape = "
                           f"{size_str(ns)}")


@op(differentiable=("input", "weight", "bias"))
def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-05):
    """Normalize over the last ``len(normalized_shape)`` dims, then scale and shift elementwise.

    >>> F.layer_norm(engine.tensor([[1.0, 3.0]]), (2,))
    tensor([[-1.0000,  1.0000]])
    """
    x = as_tensor_arg(input)
    ns = _norm_shape(x, normalized_shape, "[*, {}]")
    _check_param(weight, "weight", ns)
    _check_param(bias, "bias", ns)
    _check_mixed(x, weight, bias)
    return _affine(_stats(x, tuple(range(x._data.ndim - len(ns), x._data.ndim)), eps), weight, bias, ns)


@op(differentiable=("input", "weight"))
def rms_norm(input, normalized_shape, weight=None, eps=None):
    """``input / sqrt(mean(input**2) + eps)`` over the last dims, times ``weight``; ``eps`` defaults
    to the dtype's machine epsilon, as in torch.

    >>> F.rms_norm(engine.tensor([[3.0, 4.0]]), (2,))
    tensor([[0.8485, 1.1314]])
    """
    x = as_tensor_arg(input)
    ns = _norm_shape(x, normalized_shape, "[*{}]")
    _check_param(weight, "weight", ns)
    if eps is None:
        eps = float(np.finfo(x._data.dtype).eps) if x._data.dtype.kind == "f" else 1.1920928955078125e-07
    dims = tuple(range(x._data.ndim - len(ns), x._data.ndim))
    y = x * rsqrt(mean(x * x, dims, keepdim=True) + eps)
    return y * as_tensor_arg(weight) if weight is not None else y


@op(differentiable=("input", "weight", "bias"))
def group_norm(input, num_groups, weight=None, bias=None, eps=1e-05):
    """Normalize channel groups: (N, C, *) split into ``num_groups`` groups of C/num_groups channels.

    >>> F.group_norm(engine.tensor([[[1.0], [3.0]]]), 1).flatten()
    tensor([-1.0000,  1.0000])
    """
    x = as_tensor_arg(input)
    shape = x._data.shape
    if x._data.ndim < 2:
        raise RuntimeError(f"Expected at least 2 dimensions for input tensor but received "
                           f"{x._data.ndim}")
    n, c = shape[:2]
    if num_groups <= 0 or c % num_groups:
        raise RuntimeError(f"Expected number of channels in input to be divisible by num_groups, but "
                           f"got input of shape {size_str(shape)} and num_groups={num_groups}")
    for t, name in ((weight, "weight"), (bias, "bias")):
        if t is not None and as_tensor_arg(t)._data.shape != (c,):
            raise RuntimeError(f"Expected {name} to be a vector of size equal to the number of "
                               f"channels in input, but got {name} of shape "
                               f"{size_str(as_tensor_arg(t)._data.shape)} and input of shape "
                               f"{size_str(shape)}")
    _check_mixed(x, weight, bias)
    g = reshape(x, (n, num_groups, int(np.prod(shape[1:])) // num_groups))  # -1 fails when n == 0
    return _affine(reshape(_stats(g, (2,), eps), shape), weight, bias, (1, c) + (1,) * (x._data.ndim - 2))


@op()
def normalize(input, p=2.0, dim=1, eps=1e-12, out=None):
    """``input / max(||input||_p, eps)`` along ``dim``.

    >>> F.normalize(engine.tensor([[3.0, 4.0]]))
    tensor([[0.6000, 0.8000]])
    """
    x = as_tensor_arg(input)
    n = norm(x, p, dim, keepdim=True)
    return x / n.clamp(min=eps).expand_as(x)


@op()
def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Divide each entry by ``(k + alpha * mean of squares over size neighbouring channels)**beta``.

    >>> F.local_response_norm(engine.ones(1, 3, 2), 2).shape
    torch.Size([1, 3, 2])
    """
    from ._padding import pad
    from ._pooling import avg_pool2d, avg_pool3d
    x = as_tensor_arg(input)
    dim = x._data.ndim
    if dim < 3:
        raise ValueError(f"Expected 3D or higher dimensionality                          input (got "
                         f"{dim} dimensions)")
    if x._data.size == 0:
        return x
    div = x * x
    if dim == 3:
        div = pad(div.unsqueeze(1), (0, 0, size // 2, (size - 1) // 2))
        div = avg_pool2d(div, (size, 1), stride=1).squeeze(1)
    else:
        s = x._data.shape
        div = pad(reshape(div, (s[0], 1, s[1], s[2], -1)), (0, 0, 0, 0, size // 2, (size - 1) // 2))
        div = reshape(avg_pool3d(div, (size, 1, 1), stride=1).squeeze(1), s)
    return x / (div * alpha + k) ** beta
