"""Linear layers: ``linear`` (``x @ W.T + b``) and ``bilinear`` (``x1 @ W[o] @ x2 + b[o]``).

Compositions of matmul, so their derivatives of any order are matmul's; the common case of
``linear`` is one primitive (addmm-like) whose VJP is matmuls too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..._autograd import primitive
from ..._meta import BLAS_FLOP, _bound, _fresh, _passes, _probe_dtype
from ...ops._registry import as_tensor_arg, op
from ...ops.linalg_prims import _c_name, matmul
from ...ops.matrix import _addmm_dtypes, _check_expand
from ...ops.shape import permute, reshape, t


# x @ w.T + b as one GEMM on the flattened batch with the bias added in place: the composition
# (reshape, t, matmul, reshape, add) was five nodes and a second output-sized buffer.
@primitive(save=(0, 1))
def _linear(x, w, b):
    y = np.matmul(x.reshape(-1, x.shape[-1]), w.T).reshape(x.shape[:-1] + w.shape[:1])
    if b is not None:
        y += b
    return y


@_linear.defvjp
def _linear_vjp(ctx, g, x, w):
    gx = gw = None
    n = w._data.shape[0]
    if ctx.edges[0] is not None:  # one GEMM over the flattened batch (not one per batch entry)
        gx = matmul(g, w) if g._data.ndim <= 2 else reshape(matmul(reshape(g, (-1, n)), w), x._data.shape)
    if ctx.edges[1] is not None:
        gw = matmul(t(reshape(g, (-1, n))), reshape(x, (-1, x._data.shape[-1])))
    return gx, gw, g if ctx.edges[2] is not None else None  # the bias: summed to its shape centrally


@_linear.defjvp
def _linear_jvp(ctx, ts, x, w, b):
    # bilinear in (x, w), plus the bias' own tangent (broadcast centrally)
    tx, tw, tb = ts
    terms = [_linear(tx, w, None) if tx is not None else None,
             _linear(x, tw, None) if tw is not None else None, tb]
    out = None
    for term in terms:
        if term is not None:
            out = term if out is None else out + term
    return out


def _linear_batch(prim, arrs, flags, **params):
    x, w, b = arrs
    if not flags[1] and not flags[2]:  # the common case (a batch of inputs): one GEMM as it is
        return prim.fwd(x, w, b)
    per = x.shape[1:] if flags[0] else x.shape
    xm = x.reshape((x.shape[0] if flags[0] else 1, -1, per[-1]))
    y = np.matmul(xm, np.swapaxes(w, -1, -2) if flags[1] else w.T)
    y = y.reshape(y.shape[:1] + per[:-1] + y.shape[-1:])
    if b is not None:
        y = y + (b.reshape(b.shape[:1] + (1,) * (y.ndim - 2) + b.shape[1:]) if flags[2] else b)
    return y


_linear.defbatch(_linear_batch)


def _linear_work(prim: Any, arrays: Sequence, params: dict, outs: tuple) -> float:
    x = arrays[0]
    return 2 * outs[0].size * (x.shape[-1] if x.ndim else 1) * BLAS_FLOP + _passes(prim, arrays, params, outs)


@_linear.defshape(work=_linear_work)
def _linear_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    x, w = a["x"], a["w"]
    return _fresh(x.shape[:-1] + w.shape[:1], _probe_dtype(prim, arrays, params))


@op(differentiable=("input", "weight", "bias"))
def linear(input, weight, bias=None):
    """``input @ weight.T + bias``; ``weight`` is (out_features, in_features).

    >>> F.linear(engine.ones(2, 3), engine.ones(4, 3), engine.zeros(4)).shape
    torch.Size([2, 4])
    """
    x, w = as_tensor_arg(input), as_tensor_arg(weight)
    b = as_tensor_arg(bias) if bias is not None else None
    xs, ws = x._data.shape, w._data.shape
    wdt = w._data.dtype
    if b is not None and (x._data.ndim <= 2 or b._data.ndim == 1):
        # torch runs addmm(bias, x (batch dims folded), weight.T): its dtype check before any
        # shape check, then the bias against the folded product
        if b._data.dtype != wdt or x._data.dtype != wdt:
            _addmm_dtypes(b, x, w)
        if b._data.shape != ws[:1] and len(xs) >= 2 and len(ws) == 2 and xs[-1] == ws[-1]:
            _check_expand(b, (math.prod(xs[:-1]), ws[0]))
    if xs and ws and xs[-1] != ws[-1] and w._data.ndim == 2:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({math.prod(xs[:-1])}x{xs[-1]} "
                           f"and {ws[1]}x{ws[0]})")
    dt = x._data.dtype
    if w._data.ndim == 2 and x._data.ndim >= 1 and dt.kind == "f" and w._data.dtype == dt and \
            (b is None or (b._data.ndim <= 1 and b._data.dtype == dt)):
        return _linear(x, w, b)
    # the rest (a 1-D weight, mixed dtypes, a bias that broadcasts up): matmul's rules and errors
    if x._data.ndim > 2 and w._data.ndim == 2:
        y = reshape(matmul(reshape(x, (-1, xs[-1])), t(w)), xs[:-1] + (ws[0],))
    else:
        y = matmul(x, t(w))
    return y + b if b is not None else y


@op(differentiable=("input1", "input2", "weight", "bias"))
def bilinear(input1, input2, weight, bias=None):
    """``y[..., o] = sum_ij input1[..., i] * weight[o, i, j] * input2[..., j] + bias[o]``.

    >>> F.bilinear(engine.ones(2, 3), engine.ones(2, 4), engine.ones(5, 3, 4)).shape
    torch.Size([2, 5])
    """
    x1, x2, w = as_tensor_arg(input1), as_tensor_arg(input2), as_tensor_arg(weight)
    ts = [("input1", x1), ("input2", x2), ("weight", w)]
    if bias is not None:
        ts.append(("bias", as_tensor_arg(bias)))
    if any(t._data.dtype != w._data.dtype for _, t in ts):
        raise RuntimeError("All tensors must have the same dtype, got " +
                           ", ".join(f"{n}: {_c_name(t._data.dtype)}" for n, t in ts))
    s1, s2, sw = x1._data.shape, x2._data.shape, w._data.shape
    if len(sw) != 3:
        raise RuntimeError(f"bilinear(): weight must be 3-dimensional, but got {len(sw)} dimensions")
    if x1._data.ndim != x2._data.ndim:
        raise RuntimeError(f"bilinear(): input dimensions do not match: got {x1._data.ndim} and "
                           f"{x2._data.ndim}")
    for i in range(x1._data.ndim - 1):
        if s1[i] != s2[i]:
            raise RuntimeError(f"bilinear(): input batch dimensions do not match at dim {i}: got "
                               f"{s1[i]} and {s2[i]}")
    if s1[-1] != sw[1]:
        raise RuntimeError(f"bilinear(): input1 size does not match weight size: got {s1[-1]} but "
                           f"expected {sw[1]}")
    if s2[-1] != sw[2]:
        raise RuntimeError(f"bilinear(): input2 size does not match weight size: got {s2[-1]} but "
                           f"expected {sw[2]}")
    if bias is not None and as_tensor_arg(bias)._data.shape != (sw[0],):
        raise RuntimeError(f"bilinear(): bias size does not match weight size: got "
                           f"{as_tensor_arg(bias)._data.shape[-1] if as_tensor_arg(bias)._data.ndim else 1} "
                           f"but expected {sw[0]}")
    o, i1, i2 = sw
    lead = s1[:-1]
    # (B, I1) @ (I1, O*I2) -> (B, O, I2), then contract I2 with x2 as a batched matrix-vector product
    a = matmul(reshape(x1, (math.prod(lead), i1)), reshape(permute(w, (1, 0, 2)), (i1, o * i2)))
    y = matmul(reshape(a, (math.prod(lead), o, i2)), reshape(x2, (math.prod(lead), i2, 1)))
    y = reshape(y, lead + (o,))
    return y + as_tensor_arg(bias) if bias is not None else y


