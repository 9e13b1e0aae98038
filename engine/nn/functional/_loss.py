"""Losses of ``engine.nn.functional``, with every torch option and torch's errors.

Compositions of engine ops throughout (cross_entropy is log_softmax + nll_loss, as in torch),
except binary_cross_entropy: torch clamps its logs at -100 and its gradient's denominator at
1e-12, which keeps the gradient finite where a sigmoid saturates to exactly 0 or 1, so it is a
primitive whose VJP (in engine ops) uses that denominator.

Arguments torch does not differentiate (class weights of nll_loss/cross_entropy/bce, soft_margin's
target, ...) raise torch's RuntimeError when they require grad.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..._autograd import diagonal_jvp, elementwise_batch, is_grad_enabled, primitive
from ..._meta import elementwise_shape
from ...ops._registry import as_tensor_arg, op
from ...ops.elementwise import clamp, exp, log, minimum, where
from ...ops.reduction import log_softmax, norm
from ...ops.shape import expand, gather, reshape, squeeze
from ...tensor import Size, Tensor
from ._activation import float_kernel, logsigmoid, softplus_inf, torch_type_name

# torch's C++ EPSILON in these losses is a float constant
_EPS12 = float(np.float32(1e-12))


# ---------------------------------------------------------------- shared checks and reductions
def _legacy(size_average: bool | None, reduce: bool | None, stacklevel: int = 4) -> str:
    """torch's mapping of the deprecated ``size_average``/``reduce`` flags to ``reduction``.

    ``stacklevel`` points the warning at the user's call (op -> helper -> here by default)."""
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    ret = "mean" if size_average and reduce else "sum" if reduce else "none"
    warnings.warn(f"size_average and reduce args will be deprecated, please use reduction='{ret}' "
                  "instead.", stacklevel=stacklevel)
    return ret


def _reduction(reduction: str, size_average: bool | None = None, reduce: bool | None = None) -> str:
    """Validate ``reduction`` as torch's ``_Reduction.get_enum`` does; returns none/mean/sum."""
    if size_average is not None or reduce is not None:
        reduction = _legacy(size_average, reduce)
    if reduction == "elementwise_mean":
        warnings.warn("reduction='elementwise_mean' is deprecated. Please use reduction='mean' "
                      "instead.", stacklevel=3)
        return "mean"
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _not_differentiable(t: object, fn: str, arg: str) -> None:
    if isinstance(t, Tensor) and t._rg and is_grad_enabled():
        raise RuntimeError(f"The function '{fn}' is not differentiable with respect to argument "
                           f"'{arg}'. This input cannot have requires_grad True.")


def _broadcast_shape(a: tuple, b: tuple) -> tuple:
    """Broadcast two shapes, with torch's error message."""
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    out = []
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y and x != 1 and y != 1:
            raise RuntimeError(f"The size of tensor a ({x}) must match the size of tensor b ({y}) at "
                               f"non-singleton dimension {i}")
        out.append(y if x == 1 else x)
    return tuple(out)


def _broadcast_pair(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    shape = _broadcast_shape(a._data.shape, b._data.shape)
    return expand(a, shape), expand(b, shape)


def _warn_size(input: Tensor, target: Tensor) -> None:
    if input._data.shape != target._data.shape:
        warnings.warn(f"Using a target size ({Size(target._data.shape)}) that is different to the input "
                      f"size ({Size(input._data.shape)}). This will likely lead to incorrect results due "
                      "to broadcasting. Please ensure they have the same size.", stacklevel=4)


def _pointwise(input: object, target: object, size_average: bool | None, reduce: bool | None,
               reduction: str) -> tuple[Tensor, Tensor, Tensor, str]:
    """Common prologue of mse/l1/smooth_l1: warn on shape mismatch, broadcast, ``input - target``."""
    input, target = as_tensor_arg(input), as_tensor_arg(target)
    _warn_size(input, target)
    if size_average is not None or reduce is not None:
        reduction = _legacy(size_average, reduce)
    x, t = _broadcast_pair(input, target)
    return input, x, x - t, reduction


def _weighted(loss: Tensor, weight: object, input: Tensor, reduction: str, by_weight: bool) -> Tensor:
    """torch's weighted pointwise losses: ``mean`` is sum(w*l)/sum(w) (mse, l1) or mean(w*l) (huber)."""
    weight = as_tensor_arg(weight)
    if weight._data.shape != input._data.shape:
        raise ValueError("Weights and input must have the same size.")
    loss = loss * weight
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / weight.sum() if by_weight else loss.mean()
    raise ValueError(f"Invalid reduction mode: {reduction}. Expected one of 'none', 'mean', 'sum'.")


# ---------------------------------------------------------------- regression losses
@op(differentiable=("input", "target", "weight"))
def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean squared error, optionally weighted (``mean`` then divides by ``weight.sum()``).

    >>> F.mse_loss(engine.tensor([1.0, 3.0]), engine.tensor([0.0, 0.0]))
    tensor(5.)
    """
    input, _, d, reduction = _pointwise(input, target, size_average, reduce, reduction)
    if weight is not None:
        return _weighted(d * d, weight, input, reduction, by_weight=True)
    reduction = _reduction(reduction)
    float_kernel(d, "mse_cpu")
    return _reduce(d * d, reduction)


@op(differentiable=("input", "target", "weight"))
def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean absolute error; the gradient at ``input == target`` is 0.

    >>> F.l1_loss(engine.tensor([1.0, -3.0]), engine.tensor([0.0, 0.0]))
    tensor(2.)
    """
    input, _, d, reduction = _pointwise(input, target, size_average, reduce, reduction)
    if weight is not None:
        return _weighted(d.abs(), weight, input, reduction, by_weight=True)
    return _reduce(d.abs(), _reduction(reduction))


@op(differentiable=("input", "target"))
def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta`` (l1 when ``beta == 0``).

    >>> F.smooth_l1_loss(engine.tensor([0.5, 3.0]), engine.tensor([0.0, 0.0]))
    tensor(1.3125)
    """
    _, _, d, reduction = _pointwise(input, target, size_average, reduce, reduction)
    reduction = _reduction(reduction)
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    ad = d.abs()
    if beta == 0:
        return _reduce(ad, reduction)
    return _reduce(where(ad < beta, d * d * 0.5 / beta, ad - 0.5 * beta), reduction)


@op(differentiable=("input", "target", "weight"))
def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """``0.5 d^2`` where ``|d| < delta``, else ``delta (|d| - 0.5 delta)``; ``mean`` is mean(w*l).

    >>> F.huber_loss(engine.tensor([0.5, 3.0]), engine.tensor([0.0, 0.0]))
    tensor(1.3125)
    """
    input, _, d, _ = _pointwise(input, target, None, None, reduction)
    if weight is None:
        reduction = _reduction(reduction)
    if delta <= 0:
        raise RuntimeError("huber_loss does not support non-positive values for delta.")
    ad = d.abs()
    loss = where(ad < delta, d * d * 0.5, (ad - 0.5 * delta) * delta)
    if weight is not None:
        return _weighted(loss, weight, input, reduction, by_weight=False)
    return _reduce(loss, reduction)


@op(differentiable=("input", "target", "var"))
def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """Gaussian negative log likelihood ``0.5 (log var + (input - target)^2 / var)``.

    ``var`` is clamped to ``eps`` for the value only; the gradient flows as if unclamped (torch).

    >>> F.gaussian_nll_loss(engine.tensor([1.0]), engine.tensor([0.0]), engine.tensor([1.0]))
    tensor(0.5)
    """
    input, target = as_tensor_arg(input), as_tensor_arg(target)
    if isinstance(var, (int, float)):
        if var < 0:
            raise ValueError("var has negative entry/entries")
        var = Tensor._make(np.full(input._data.shape, var, input._data.dtype))
    else:
        var = as_tensor_arg(var)
        if np.any(var._data < 0):
            raise ValueError("var has negative entry/entries")
    vs, xs = var._data.shape, input._data.shape
    if vs != xs:
        if xs[:-1] == vs:  # homoscedastic: one variance per sample
            var = reshape(var, vs + (1,))
        elif not (len(xs) == len(vs) and sum(v for x, v in zip(xs, vs) if x != v) == 1):
            raise ValueError("var is of incorrect size")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(reduction + " is not valid")
    var = _clamp_min_nograd(var, min=eps)
    d = input - target
    loss = (log(var) + d ** 2 / var) * 0.5
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)


@primitive()
def _clamp_min_nograd(x, min):
    return np.maximum(x, np.asarray(min, x.dtype))


# torch clamps under no_grad (in place on a clone): the value changes, the gradient passes unchanged.
_clamp_min_nograd.defvjp(lambda ctx, g, min: g)
_clamp_min_nograd.defjvp(diagonal_jvp)
_clamp_min_nograd.defbatch(elementwise_batch)
_clamp_min_nograd.defshape(elementwise_shape)


@op(differentiable=("input", "target"))
def poisson_nll_loss(input, target, log_input=True, full=False, size_average=None, eps=1e-8,
                     reduce=None, reduction="mean"):
    """Poisson negative log likelihood: ``exp(input) - target * input`` (``log_input``) or
    ``input - target * log(input + eps)``, plus Stirling's term for ``target > 1`` if ``full``.

    >>> F.poisson_nll_loss(engine.tensor([0.0]), engine.tensor([2.0]))
    tensor(1.)
    """
    input, target = as_tensor_arg(input), as_tensor_arg(target)
    reduction = _reduction(reduction, size_average, reduce)
    if log_input:
        loss = exp(input) - target * input
    else:
        loss = input - target * log(input + eps)
    if full:
        with np.errstate(divide="ignore", invalid="ignore"):  # masked out below, as in torch
            stirling = target * log(target) - target + log(target * (2 * math.pi)) * 0.5
        loss = loss + where(target <= 1, 0.0, stirling)
    return _reduce(loss, reduction)


# ---------------------------------------------------------------- classification losses
def _check_target_dtype(t: Tensor) -> None:
    if t._data.dtype not in (np.int64, np.uint8):
        raise RuntimeError(f"expected target dtype to be Long or Byte, but got {torch_type_name(t)}")


def _check_weight(weight: Tensor, n_classes: int, prefix: str = "") -> None:
    if weight._data.ndim != 1 or weight._data.size != n_classes:
        raise RuntimeError(f"{prefix}weight tensor should be defined either for all {n_classes} classes "
                           f"or no classes but got weight tensor of shape: {list(weight._data.shape)}")


def _nll_check_shapes(x: Tensor, t: Tensor) -> None:
    xs, ts = x._data.shape, t._data.shape
    if len(xs) < 1:
        raise ValueError(f"Expected 1 or more dimensions (got {len(xs)})")
    if len(xs) != 1 and xs[0] != (ts[0] if ts else 0):
        raise ValueError(f"Expected input batch_size ({xs[0]}) to match target batch_size "
                         f"({ts[0] if ts else 0}).")
    if len(xs) <= 2:
        if len(ts) > 1:
            raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
        if len(xs) == 1 and len(ts) == 1 and ts[0] != 1:
            raise ValueError(f"For 1D input, 1D target must have size 1, but got target size: {ts[0]}")
        _check_target_dtype(t)
    elif len(xs) == 4:  # torch's nll_loss2d checks the dtype first
        _check_target_dtype(t)
        if ts != (xs[0],) + xs[2:]:
            raise RuntimeError(f"size mismatch (got input: {list(xs)} , target: {list(ts)}")
    else:
        if ts[1:] != xs[2:]:
            raise RuntimeError(f"Expected target size {[xs[0], *xs[2:]]}, got {list(ts)}")
        _check_target_dtype(t)


@op(differentiable=("input",))
def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    """Negative log likelihood of class indices ``target`` under log-probabilities ``input``
    (``(C)``, ``(N, C)`` or ``(N, C, d1, ...)``); ``mean`` divides by the total target weight.

    >>> F.nll_loss(engine.tensor([[-0.5, -1.0]]), engine.tensor([1]))
    tensor(1.)
    """
    reduction = _reduction(reduction, size_average, reduce)
    x, t = as_tensor_arg(input), as_tensor_arg(target)
    _nll_check_shapes(x, t)
    cdim = 0 if x._data.ndim == 1 else 1
    n_classes = x._data.shape[cdim]
    if weight is not None:
        weight = as_tensor_arg(weight)
        _check_weight(weight, n_classes)
        if weight._data.dtype != x._data.dtype:
            raise RuntimeError(f"expected scalar type {torch_type_name(x)} but found "
                               f"{torch_type_name(weight)}")
        _not_differentiable(weight, "nll_loss_forward", "weight")
    float_kernel(x, "nll_loss_out_frame")
    td = t._data.astype(np.int64, copy=False)  # (no copy of int64 targets: nothing writes td)
    valid = td != ignore_index
    bad = valid & ((td < 0) | (td >= n_classes))
    if bad.any():
        raise IndexError(f"Target {td[bad].flat[0]} is out of bounds.")
    safe = np.where(valid, td, 0)
    if x._data.ndim == 1:
        picked = reshape(gather(x, 0, safe.reshape(1)), ())
        valid = valid.reshape(())
        safe = safe.reshape(())
    else:
        picked = squeeze(gather(x, 1, np.expand_dims(safe, 1)), 1)
    w = valid.astype(x._data.dtype)
    if weight is not None:
        w = w * weight._data[safe]
    loss = -picked if valid.all() and weight is None else -picked * Tensor._make(w)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    with np.errstate(invalid="ignore", divide="ignore"):  # every target ignored: nan, as in torch
        return loss.sum() / Tensor._make(np.asarray(w.sum(), x._data.dtype))


def _class_view(weight: Tensor, ndim: int) -> Tensor:
    """Class weights shaped to broadcast along dim 1 of an ``ndim``-dim input."""
    return weight if ndim <= 1 else reshape(weight, (-1,) + (1,) * (ndim - 2))


@op(differentiable=("input", "target"))
def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """Cross entropy of logits ``input`` against class indices or class probabilities
    (``target`` of ``input``'s shape), with class ``weight``, ``ignore_index`` and
    ``label_smoothing``; ``log_softmax`` then ``nll_loss`` for indices, as in torch.

    >>> F.cross_entropy(engine.tensor([[2.0, 0.5, -1.0]]), engine.tensor([0]))
    tensor(0.2413)
    """
    reduction = _reduction(reduction, size_average, reduce)
    x, t = as_tensor_arg(input), as_tensor_arg(target)
    cdim = 0 if x._data.ndim == 1 else 1
    if x._data.shape == t._data.shape:
        return _cross_entropy_probs(x, t, weight, ignore_index, reduction, label_smoothing, cdim)
    if label_smoothing > 0.0:
        if label_smoothing > 1.0:
            raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing:g}")
        logp = log_softmax(x, cdim)
        nll = nll_loss(logp, t, weight, ignore_index=ignore_index, reduction=reduction)
        n_classes = x._data.shape[cdim]
        if weight is not None:
            smooth = -(logp * _class_view(as_tensor_arg(weight), x._data.ndim)).sum(cdim)
        else:
            smooth = -logp.sum(cdim)
        ignored = t._data == ignore_index
        if ignored.any():
            smooth = where(Tensor._make(ignored), 0.0, smooth)
        if reduction == "mean":
            kept = t._data[~ignored]
            denom = as_tensor_arg(weight)._data[kept].sum() if weight is not None else kept.size
            with np.errstate(invalid="ignore", divide="ignore"):
                ret = smooth.sum() / Tensor._make(np.asarray(denom, x._data.dtype))
        else:
            ret = _reduce(smooth, reduction)
        return nll * (1 - label_smoothing) + ret * (label_smoothing / n_classes)
    return nll_loss(log_softmax(x, cdim), t, weight, ignore_index=ignore_index, reduction=reduction)


def _cross_entropy_probs(x: Tensor, t: Tensor, weight: object, ignore_index: int, reduction: str,
                         label_smoothing: float, cdim: int) -> Tensor:
    if t._data.dtype.kind != "f":
        raise RuntimeError(f"Expected floating point type for target with class probabilities, got "
                           f"{torch_type_name(t)}")
    if ignore_index >= 0:
        raise RuntimeError("ignore_index is not supported for floating point target")
    n_classes = x._data.shape[cdim]
    if weight is not None:
        weight = as_tensor_arg(weight)
        _check_weight(weight, n_classes, prefix="cross_entropy: ")
    logp = log_softmax(x, cdim)
    if label_smoothing > 0.0:
        if label_smoothing > 1.0:
            raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing:g}")
        t = t * (1 - label_smoothing) + label_smoothing / n_classes
    prod = logp * t
    if weight is not None:
        prod = prod * _class_view(weight, x._data.ndim)
    if reduction == "none":
        return -prod.sum(cdim)
    if reduction == "sum":
        return -prod.sum()
    if x._data.size == 0:
        return -prod.sum() * float("nan")
    return -prod.sum() / (x._data.size // n_classes)


@primitive(save=(0, 1))
def _bce(x, t):
    with np.errstate(divide="ignore"):
        return -(t * np.maximum(np.log(x), -100) + (1 - t) * np.maximum(np.log1p(-x), -100))


@_bce.defvjp
def _bce_vjp(ctx, g, x, t):
    gx = gt = None
    if ctx.edges[0] is not None:  # torch's denominator max(x (1 - x), 1e-12) keeps it finite at 0, 1
        gx = g * (x - t) / clamp(x * (1 - x), min=_EPS12)
    if ctx.edges[1] is not None:
        gt = g * (log(1 - x) - log(x))
    return gx, gt


_bce.defjvp(diagonal_jvp)
_bce.defbatch(elementwise_batch)
_bce.defshape(elementwise_shape)


@op(differentiable=("input", "target"))
def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """``-w (t log x + (1 - t) log(1 - x))`` for probabilities ``input``; logs clamped at -100.

    >>> F.binary_cross_entropy(engine.tensor([0.5]), engine.tensor([1.0]))
    tensor(0.6931)
    """
    reduction = _reduction(reduction, size_average, reduce)
    x, t = as_tensor_arg(input), as_tensor_arg(target)
    if t._data.shape != x._data.shape:
        raise ValueError(f"Using a target size ({Size(t._data.shape)}) that is different to the input size "
                         f"({Size(x._data.shape)}) is deprecated. Please ensure they have the same size.")
    if t._data.dtype != x._data.dtype:
        raise RuntimeError(f"Found dtype {torch_type_name(t)} but expected {torch_type_name(x)}")
    if weight is not None:
        weight = as_tensor_arg(weight)
        weight = expand(weight, _broadcast_shape(t._data.shape, weight._data.shape))
        _not_differentiable(weight, "binary_cross_entropy", "weight")
    float_kernel(x, "binary_cross_entropy")
    if not np.all((x._data >= 0) & (x._data <= 1)):
        raise RuntimeError("all elements of input should be between 0 and 1")
    loss = _bce(x, t)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


@op(differentiable=("input", "target"))
def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    """Binary cross entropy of ``sigmoid(input)``, computed stably from logits; ``pos_weight``
    weighs the positive term.

    >>> F.binary_cross_entropy_with_logits(engine.tensor([0.0]), engine.tensor([1.0]))
    tensor(0.6931)
    """
    reduction = _reduction(reduction, size_average, reduce)
    x, t = as_tensor_arg(input), as_tensor_arg(target)
    if t._data.shape != x._data.shape:
        raise ValueError(f"Target size ({Size(t._data.shape)}) must be the same as input size "
                         f"({Size(x._data.shape)})")
    _not_differentiable(weight, "binary_cross_entropy_with_logits", "weight")
    _not_differentiable(pos_weight, "binary_cross_entropy_with_logits", "pos_weight")
    log_sig = logsigmoid(x)
    if pos_weight is not None:
        pw = as_tensor_arg(pos_weight)
        _broadcast_shape(pw._data.shape, t._data.shape)
        log_sig = log_sig * ((pw - 1) * t + 1)
    loss = (1 - t) * x - log_sig
    if weight is not None:
        loss = loss * as_tensor_arg(weight)
    return _reduce(loss, reduction)


def _xlogy(x: Tensor, y: Tensor) -> Tensor:
    """``x * log(y)``, 0 where ``x == 0`` (torch.xlogy; its gradient is NaN at ``x == y == 0`` too)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return where((x == 0) & (y == y), 0.0, x * log(y))


@op(differentiable=("input", "target"))
def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """KL divergence of ``target`` (probabilities, or log-probabilities if ``log_target``) from the
    log-probabilities ``input``; ``reduction='batchmean'`` divides the sum by the batch size.

    >>> F.kl_div(engine.tensor([-0.5]), engine.tensor([0.5]), reduction="sum")
    tensor(-0.0966)
    """
    x, t = as_tensor_arg(input), as_tensor_arg(target)
    if size_average is not None or reduce is not None:
        reduction = _legacy(size_average, reduce, stacklevel=3)
    elif reduction == "mean":
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the support "
                      "size.'batchmean' divides only by the batch size, and aligns with the KL div math "
                      "definition.'mean' will be changed to behave the same as 'batchmean' in the next "
                      "major release.", stacklevel=2)
    batchmean = reduction == "batchmean"
    reduction = _reduction("sum" if batchmean else reduction)
    if x._data.dtype.kind != "f" or t._data.dtype.kind != "f":
        raise RuntimeError("kl_div: Integral inputs not supported.")
    if log_target:
        loss = exp(t) * (t - x)
    else:
        loss = _xlogy(t, t) - t * x
    out = _reduce(loss, reduction)
    if batchmean and x._data.ndim != 0:
        out = out / x._data.shape[0]
    return out


# ---------------------------------------------------------------- margin and embedding losses
@op(differentiable=("input", "target"))
def soft_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """``log(1 + exp(-target * input))`` for labels ``target`` in {-1, 1}.

    >>> F.soft_margin_loss(engine.tensor([0.0]), engine.tensor([1.0]))
    tensor(0.6931)
    """
    reduction = _reduction(reduction, size_average, reduce)
    x, t = as_tensor_arg(input), as_tensor_arg(target)
    _not_differentiable(t, "soft_margin_loss", "target")
    return _reduce(softplus_inf(-(x * t)), reduction)


@op(differentiable=("input", "target", "weight"))
def multilabel_soft_margin_loss(input, target, weight=None, size_average=None, reduce=None,
                                reduction="mean"):
    """One-vs-all logistic loss over the last dim, averaged over classes.

    >>> F.multilabel_soft_margin_loss(engine.tensor([[0.0, 0.0]]), engine.tensor([[1.0, 0.0]]))
    tensor(0.6931)
    """
    if size_average is not None or reduce is not None:
        reduction = _legacy(size_average, reduce, stacklevel=3)
    x, t = as_tensor_arg(input), as_tensor_arg(target)
    loss = -(t * logsigmoid(x) + (1 - t) * logsigmoid(-x))
    if weight is not None:
        loss = loss * as_tensor_arg(weight)
    class_dim = x._data.ndim - 1
    loss = loss.sum(class_dim) / x._data.shape[class_dim]
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(reduction + " is not valid")
    return _reduce(loss, reduction)


@op(differentiable=("input",))
def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                      reduction="mean"):
    """Multi-class hinge loss ``sum_{j != y} max(0, margin - x[y] + x[j])^p / C`` (``p`` 1 or 2).

    >>> F.multi_margin_loss(engine.tensor([[0.1, 0.2, 0.4]]), engine.tensor([2]))
    tensor(0.5)
    """
    reduction = _reduction(reduction, size_average, reduce)
    if p != 1 and p != 2:
        raise ValueError("only p == 1 and p == 2 supported")
    x, t = as_tensor_arg(input), as_tensor_arg(target)
    if weight is not None:
        weight = as_tensor_arg(weight)
        if weight._data.ndim != 1:
            raise ValueError("weight must be one-dimensional")
    xs = x._data.shape
    if not ((len(xs) == 2 and xs[1] != 0) or (len(xs) == 1 and xs[0] != 0) or len(xs) == 0):
        raise RuntimeError(f"Expected non-empty vector or matrix with optional 0-dim batch size, but "
                           f"got: {list(xs)}")
    n = xs[0] if len(xs) == 2 else 1
    n_classes = xs[-1] if xs else 1
    if t._data.ndim > 1 or t._data.size != n:
        raise RuntimeError(f"multi_margin_loss: target tensor should be 1-D with size equal to the "
                           f"number of input samples (batch size). Expected target size [{n}], but got "
                           f"{list(t._data.shape)}. Input has shape {list(xs)}.")
    if t._data.dtype != np.int64:
        raise RuntimeError(f"expected scalar type Long but found {torch_type_name(t)}")
    if weight is not None:
        if weight._data.size != n_classes:
            raise RuntimeError(f"inconsistent weight size, expected {n_classes} but got "
                               f"{list(weight._data.shape)}")
        _not_differentiable(weight, "multi_margin_loss", "weight")
    y = t._data.reshape(n)
    if np.any((y < 0) | (y >= n_classes)):
        raise RuntimeError("target out of range")
    x2 = reshape(x, (n, n_classes))
    z = x2 - gather(x2, 1, y[:, None]) + margin
    h = z.relu()  # torch: a term counts only where z > 0
    if p == 2:
        h = h * h
    others = np.arange(n_classes)[None, :] != y[:, None]
    scale = others.astype(x._data.dtype)
    if weight is not None:
        scale = scale * weight._data[y][:, None]
    loss = reshape((h * Tensor._make(scale)).sum(1) / n_classes, t._data.shape)
    return _reduce(loss, reduction)


@op(differentiable=("input", "target"))
def hinge_embedding_loss(input, target, margin=1.0, size_average=None, reduce=None, reduction="mean"):
    """``input`` where ``target == 1``, ``max(0, margin - input)`` where ``target == -1``.

    >>> F.hinge_embedding_loss(engine.tensor([0.3, 2.0]), engine.tensor([-1.0, 1.0]))
    tensor(1.35)
    """
    reduction = _reduction(reduction, size_average, reduce)
    x, t = as_tensor_arg(input), as_tensor_arg(target)
    margin_term = where(t != 1, clamp(margin - x, min=0), 0.0)
    self_term = where(t != -1, x, 0.0)
    return _reduce(margin_term + self_term, reduction)


@op(differentiable=("input1", "input2", "target"))
def margin_ranking_loss(input1, input2, target, margin=0, size_average=None, reduce=None,
                        reduction="mean"):
    """``max(0, -target * (input1 - input2) + margin)``.

    >>> F.margin_ranking_loss(engine.tensor([1.0]), engine.tensor([2.0]), engine.tensor([1.0]))
    tensor(1.)
    """
    reduction = _reduction(reduction, size_average, reduce)
    a, b, t = as_tensor_arg(input1), as_tensor_arg(input2), as_tensor_arg(target)
    if not a._data.ndim == b._data.ndim == t._data.ndim:
        raise RuntimeError(f"margin_ranking_loss : All input tensors should have same dimension but got "
                           f"sizes: input1: {Size(a._data.shape)}, input2: {Size(b._data.shape)}, "
                           f"target: {Size(t._data.shape)} ")
    return _reduce(clamp(-t * (a - b) + margin, min=0), reduction)


@op(differentiable=("input1", "input2"))
def cosine_embedding_loss(input1, input2, target, margin=0, size_average=None, reduce=None,
                          reduction="mean"):
    """``1 - cos(input1, input2)`` where ``target == 1``, ``max(0, cos - margin)`` where ``-1``.

    >>> F.cosine_embedding_loss(engine.tensor([[1.0, 0.0]]), engine.tensor([[1.0, 1.0]]),
    ...                         engine.tensor([1.0]))
    tensor(0.2929)
    """
    reduction = _reduction(reduction, size_average, reduce)
    a, b, t = as_tensor_arg(input1), as_tensor_arg(input2), as_tensor_arg(target)
    tdim = t._data.ndim
    if tdim > 1:
        raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
    want = 2 if tdim == 1 else 1
    if a._data.ndim != want or b._data.ndim != want:
        raise RuntimeError(f"{tdim}D target tensor expects {want}D input tensors, but found inputs with "
                           f"sizes {list(a._data.shape)} and {list(b._data.shape)}.")
    prod = (a * b).sum(tdim)
    mag1 = (a * a).sum(tdim) + _EPS12
    mag2 = (b * b).sum(tdim) + _EPS12
    cos = prod / (mag1 * mag2).sqrt()
    pos = where(t == 1, 1 - cos, 0.0)
    neg = where(t == -1, clamp(cos - margin, min=0), 0.0)
    return _reduce(pos + neg, reduction)


@op(differentiable=("x1", "x2"))
def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """Cosine of the angle between ``x1`` and ``x2`` along ``dim`` (each norm clamped to ``eps``).

    >>> F.cosine_similarity(engine.tensor([[1.0, 0.0]]), engine.tensor([[1.0, 1.0]]))
    tensor([0.7071])
    """
    a, b = as_tensor_arg(x1), as_tensor_arg(x2)
    kinds = a._data.dtype.kind + b._data.dtype.kind
    if "f" not in kinds:
        common = Tensor._make(np.zeros(0, np.result_type(a._data.dtype, b._data.dtype)))
        raise RuntimeError(f"expected common dtype to be floating point, yet common dtype is "
                           f"{torch_type_name(common)}")
    if a._data.dtype.kind != "f":
        a = a.to(b.dtype)
    if b._data.dtype.kind != "f":
        b = b.to(a.dtype)
    a, b = _broadcast_pair(a, b)
    # torch clamps the norms under no_grad: the gradient flows as through the unclamped norms
    na = _clamp_min_nograd(norm(a, 2, dim, keepdim=True), min=eps)
    nb = _clamp_min_nograd(norm(b, 2, dim, keepdim=True), min=eps)
    return ((a / na) * (b / nb)).sum(dim)


@op(differentiable=("x1", "x2"))
def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """``p``-norm of ``x1 - x2 + eps`` over the last dim.

    >>> F.pairwise_distance(engine.tensor([[3.0, 0.0]]), engine.tensor([[0.0, 4.0]]), eps=0.0)
    tensor([5.])
    """
    a, b = as_tensor_arg(x1), as_tensor_arg(x2)
    _broadcast_shape(a._data.shape, b._data.shape)
    last = max(a._data.ndim, b._data.ndim) - 1
    return norm(a - b + eps, p, last if last >= 0 else None, keepdim)


@op(differentiable=("anchor", "positive", "negative"))
def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2, eps=1e-6, swap=False,
                        size_average=None, reduce=None, reduction="mean"):
    """``max(d(a, p) - d(a, n) + margin, 0)`` with pairwise ``p``-norm distances; ``swap`` uses
    ``min(d(a, n), d(p, n))``.

    >>> a, p, n = engine.tensor([[0.0, 0.0]]), engine.tensor([[1.0, 0.0]]), engine.tensor([[0.0, 3.0]])
    >>> F.triplet_margin_loss(a, p, n, eps=0.0)
    tensor(0.)
    """
    reduction = _reduction(reduction, size_average, reduce)
    if margin <= 0:
        raise ValueError(f"margin must be greater than 0, got {margin}")
    a, pos, neg = as_tensor_arg(anchor), as_tensor_arg(positive), as_tensor_arg(negative)
    da, dp, dn = a._data.ndim, pos._data.ndim, neg._data.ndim
    if not da == dp == dn:
        raise RuntimeError(f"The anchor, positive, and negative tensors are expected to have the same "
                           f"number of dimensions, but got: anchor {da}D, positive {dp}D, and negative "
                           f"{dn}D inputs")
    d_pos = pairwise_distance(a, pos, p, eps)
    d_neg = pairwise_distance(a, neg, p, eps)
    if swap:
        d_neg = minimum(d_neg, pairwise_distance(pos, neg, p, eps))
    return _reduce(clamp(d_pos - d_neg + margin, min=0), reduction)

