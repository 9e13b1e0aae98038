"""``pad``: constant, reflect, replicate and circular padding.

Constant padding is its own primitive (its VJP crops); the other modes are an index gather along
each padded dim (``take``), whose VJP sums the gradient of every copy back into its source entry.
Negative padding crops first, as in torch.
"""

from __future__ import annotations

import numpy as np

from ...ops._registry import as_tensor_arg, op
from ...ops.shape import getitem
from ._windows import pad_constant, size_str, take

_SUPPORTED = ("Supported combinations for non-constant padding:\n"
              "  - 2D or 3D input: padding size = 2 (pads last dimension)\n"
              "  - 3D or 4D input: padding size = 4 (pads last 2 dimensions)\n"
              "  - 4D or 5D input: padding size = 6 (pads last 3 dimensions)")


def _source(mode: str, n: int, left: int, right: int) -> np.ndarray:
    """For each padded position along a dim of size ``n``, the input entry it copies (a negative
    ``left``/``right`` drops entries)."""
    i = np.arange(-left, n + right)
    if mode == "replicate":
        return np.clip(i, 0, n - 1)
    if mode == "circular":
        return i % n
    i = np.abs(i)  # reflect: mirror about the first and the last entry, without repeating them
    return np.where(i > n - 1, 2 * (n - 1) - i, i)


@op()
def pad(input, pad, mode="constant", value=None):
    """Pad the last ``len(pad) // 2`` dims; ``pad`` lists (left, right) for the last dim first.

    ``mode`` is ``'constant'`` (with ``value``, default 0), ``'reflect'``, ``'replicate'`` or
    ``'circular'``; negative amounts crop.

    >>> F.pad(engine.tensor([[[1.0, 2.0, 3.0]]]), (2, 1), mode="reflect")
    tensor([[[3., 2., 1., 2., 3., 2.]]])
    """
    x = as_tensor_arg(input)
    pads = [int(p) for p in pad]
    nd = x._data.ndim
    if len(pads) % 2:
        raise RuntimeError("Padding length must be divisible by 2")
    k = len(pads) // 2
    if k > nd:
        raise RuntimeError(f"Padding length should be less than or equal to two times the input "
                           f"dimension but got padding length {len(pads)} and input of dimension {nd}")
    pairs = [(pads[2 * j], pads[2 * j + 1]) for j in range(k)]  # pairs[j]: dim nd-1-j
    if mode == "constant":
        full = [(0, 0)] * (nd - k) + pairs[::-1]
        return pad_constant(x, full, 0.0 if value is None else value)
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(f"Unrecognised padding mode {mode}")
    if value is not None:
        raise RuntimeError(f"Padding mode \"{mode}\" doesn't take in value argument")
    if k not in (1, 2, 3) or nd not in (k + 1, k + 2):
        raise NotImplementedError(f"Padding size {len(pads)} is not supported for {nd}D input tensor.\n"
                                  + _SUPPORTED)
    shape = x._data.shape
    for j, (a, b) in enumerate(pairs):
        d, n = nd - 1 - j, shape[nd - 1 - j]
        if mode == "reflect" and (a >= n or b >= n):
            raise RuntimeError(f"Argument #{4 + 2 * j}: Padding size should be less than the "
                               f"corresponding input dimension, but got: padding ({a}, {b}) at "
                               f"dimension {d} of input {size_str(shape)}")
        if mode == "circular" and (a > n or b > n):
            raise RuntimeError("Padding value causes wrapping around more than once.")
        if n == 0:
            raise RuntimeError(f"Expected input to have non-zero size in dimension {d}, but got "
                               f"{size_str(shape)}")
    if mode == "circular" and any(a < 0 or b < 0 for a, b in pairs):
        # torch crops first, then wraps what remains
        keep = [slice(-min(a, 0), shape[nd - 1 - j] + min(b, 0)) for j, (a, b) in enumerate(pairs)]
        x = getitem(x, (slice(None),) * (nd - k) + tuple(keep[::-1]))
        pairs = [(max(a, 0), max(b, 0)) for a, b in pairs]
    for j, (a, b) in enumerate(pairs):
        if a or b:
            d = nd - 1 - j
            x = take(x, _source(mode, x._data.shape[d], a, b), d)
    return x
