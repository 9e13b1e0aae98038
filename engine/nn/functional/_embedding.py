"""Lookup layers: ``embedding`` (a gather of weight rows) and ``one_hot``.

``embedding`` is the ``take`` primitive along dim 0: its VJP sums the gradient rows per index
(duplicates accumulate without ``np.add.at``), and the VJP of that is the gather again.
"""

from __future__ import annotations

import numpy as np

from ..._autograd import no_grad
from ...ops._registry import as_tensor_arg, op
from ...ops.elementwise import where
from ...tensor import Tensor
from ._windows import take, type_name


@op(differentiable=("weight",))
def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """Rows of ``weight`` (num_embeddings, dim) at the integer ``input`` indices.

    The row at ``padding_idx`` gets no gradient; ``scale_grad_by_freq`` divides each row's gradient
    by how often its index occurs in ``input``. With ``max_norm`` the rows looked up whose
    ``norm_type``-norm exceeds it are first renormalized to it, in place in ``weight`` (as torch).

    >>> F.embedding(engine.tensor([[0, 2]]), engine.eye(3)).tolist()
    [[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]
    """
    idx_t, w = as_tensor_arg(input), as_tensor_arg(weight)
    if w._data.ndim != 2:
        raise RuntimeError("'weight' must be 2-D")
    n = w._data.shape[0]
    if padding_idx is not None:
        if padding_idx > 0:
            assert padding_idx < n, "Padding_idx must be within num_embeddings"
        elif padding_idx < 0:
            assert padding_idx >= -n, "Padding_idx must be within num_embeddings"
            padding_idx = n + padding_idx
    idx = idx_t._data
    if idx.dtype not in (np.int64, np.int32):
        raise RuntimeError(f"Expected tensor for argument #1 'indices' to have one of the following "
                           f"scalar types: Long, Int; but got torch.{type_name(idx_t)}Tensor instead "
                           "(while checking arguments for embedding)")
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise IndexError("index out of range in self")
    if max_norm is not None:
        _renorm_rows(w, idx, max_norm, norm_type)
    out = take(w, idx, 0)
    if scale_grad_by_freq and idx.size:
        counts = np.bincount(idx.reshape(-1), minlength=n)
        s = Tensor._make((1.0 / counts[idx])[..., None].astype(w._data.dtype))
        frozen = out.detach()
        out = frozen + (out - frozen) * s  # the same values; the gradient scaled by 1/count
    if padding_idx is not None and (idx == padding_idx).any():
        out = where(Tensor._make((idx == padding_idx)[..., None]), out.detach(), out)
    return out


def _renorm_rows(w: Tensor, idx: np.ndarray, max_norm: float, norm_type: float) -> None:
    """torch's embedding_renorm_: each row looked up with a norm above ``max_norm`` is scaled to
    ``max_norm`` (over ``norm + 1e-7``), in place and unrecorded."""
    rows = np.unique(idx)
    with no_grad():
        sel = w[Tensor._make(rows)]
        norms = sel.abs().pow(norm_type).sum(1).pow(1.0 / norm_type)
        scale = where(norms > max_norm, max_norm / (norms + 1e-7), 1.0).to(w.dtype)
        w[Tensor._make(rows)] = sel * scale.unsqueeze(1)


@op(differentiable=())
def one_hot(tensor, num_classes=-1):
    """``(..., num_classes)`` int64 rows with a 1 at each index (``num_classes=-1``: max + 1).

    >>> F.one_hot(engine.tensor([0, 2]), 3)
    tensor([[1, 0, 0],
            [0, 0, 1]])
    """
    t = as_tensor_arg(tensor)
    idx = t._data
    if idx.dtype != np.int64:
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    if num_classes == -1:
        if idx.size == 0:
            raise RuntimeError("Can not infer total number of classes from empty tensor.")
        num_classes = int(idx.max()) + 1
    if idx.size:
        if idx.min() < 0:
            raise RuntimeError("Class values must be non-negative.")
        if idx.max() >= num_classes:
            raise RuntimeError("Class values must be smaller than num_classes.")
    return Tensor._make((idx[..., None] == np.arange(num_classes)).astype(np.int64))
