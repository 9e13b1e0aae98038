"""Scaled dot-product attention, as torch's math reference computes it.

``softmax(q @ k.T * scale + mask) @ v`` from engine ops, so every derivative, double backward
included, is autograd's. As in torch, a query row whose keys are all masked out attends to nothing:
its output and gradients are 0, not NaN.
"""

from __future__ import annotations

import math

import numpy as np

from ...ops._registry import as_tensor_arg, op
from ...ops.elementwise import where
from ...ops.linalg_prims import matmul
from ...ops.reduction import _softmax, softmax
from ...ops.shape import repeat_interleave, transpose
from ...tensor import Tensor
from ._dropout import dropout

_C_NAMES = {"float32": "float", "float64": "double", "float16": "c10::Half", "int64": "long int",
            "int32": "int", "bool": "bool"}


def _c(t: Tensor) -> str:
    return _C_NAMES.get(t._data.dtype.name, t._data.dtype.name)


@op(differentiable=("query", "key", "value", "attn_mask"))
def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None, enable_gqa=False):
    """Attention of ``query`` (..., L, E) over ``key`` (..., S, E) and ``value`` (..., S, Ev).

    ``attn_mask`` is boolean (True: may attend) or additive (float), broadcastable to (..., L, S);
    ``is_causal`` masks the keys after each query; ``scale`` defaults to ``1/sqrt(E)``;
    ``enable_gqa`` shares each key/value head among ``Hq/Hkv`` query heads.

    >>> q = engine.ones(1, 2, 4, 8)
    >>> F.scaled_dot_product_attention(q, q, q, is_causal=True).shape
    torch.Size([1, 2, 4, 8])
    """
    q, k, v = as_tensor_arg(query), as_tensor_arg(key), as_tensor_arg(value)
    if not (q._data.dtype == k._data.dtype == v._data.dtype):
        raise RuntimeError(f"Expected query, key, and value to have the same dtype, but got "
                           f"query.dtype: {_c(q)} key.dtype: {_c(k)} and value.dtype: {_c(v)} instead.")
    mask = as_tensor_arg(attn_mask) if attn_mask is not None else None
    if mask is not None and mask._data.dtype != np.bool_ and mask._data.dtype.kind != "f":
        raise RuntimeError(f"Expected attn_mask dtype to be bool or float or to match query dtype, "
                           f"but got attn_mask.dtype: {_c(mask)} and  query.dtype: {_c(q)} instead.")
    if is_causal and mask is not None:
        raise RuntimeError("_scaled_dot_product_attention: Explicit attn_mask should not be set when "
                           "is_causal=True")
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {dropout_p}")
    if enable_gqa and q._data.ndim >= 3 and k._data.shape[-3] != q._data.shape[-3]:
        hq, hk = q._data.shape[-3], k._data.shape[-3]
        if hq % hk:
            raise RuntimeError(f"number of heads in key/value must divide number of heads in query, "
                               f"but got {hk} and {hq}")
        k = repeat_interleave(k, hq // hk, dim=-3)
        v = repeat_interleave(v, hq // hk, dim=-3)
    e = q._data.shape[-1]
    sc = 1.0 / math.sqrt(e) if scale is None else float(scale)
    # scale whichever is smaller, the queries (L x E) or the scores (L x S): the same product
    if e <= k._data.shape[-2]:
        s = matmul(q * sc, transpose(k, -2, -1))
    else:
        s = matmul(q, transpose(k, -2, -1)) * sc
    lq, lk = s._data.shape[-2:]
    if is_causal:
        mask = Tensor._make(np.tril(np.ones((lq, lk), np.bool_)))
    dead = keep = None
    if mask is not None:
        m = mask._data
        if m.dtype == np.bool_:
            keep, blocked = m, ~m  # given to softmax: no masked copy of the scores
        else:
            s = s + mask
            blocked = np.isneginf(m)
        dead = np.broadcast_to(blocked, np.broadcast_shapes(blocked.shape, s._data.shape)).all(
            axis=-1, keepdims=True)
        if dead.any():  # rows with nothing to attend to: softmax over zeros, then zero them
            if keep is not None:
                s, keep = where(mask, s, -math.inf), None
            s = where(Tensor._make(dead), 0.0, s)
        else:
            dead = None
    p = _softmax(s, dim=s._data.ndim - 1, mask=keep) if keep is not None else softmax(s, -1)
    if dead is not None:
        p = where(Tensor._make(dead), 0.0, p)
    if dropout_p > 0.0:
        p = dropout(p, dropout_p)
    return matmul(p, v)
