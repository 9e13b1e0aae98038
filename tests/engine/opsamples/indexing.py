"""Samples for issue 4's indexing, shape, scan, selection and extra elementwise ops.

Smooth samples sit away from kinks (ties, zeros, integer jumps); the ``KINK`` samples sit on them
and compare with torch's convention only (finite differences do not apply there).
"""

from __future__ import annotations

import numpy as np
import torch

from . import add, away, distinct, pos, randn, unit

KINK = {"fd": False}

# ---------------------------------------------------------------- scatter family
IDX = np.array([[0, 1, 2, 0], [2, 0, 1, 1]])            # no position written twice
DUP = np.array([[0, 1, 2, 0], [0, 1, 0, 0], [2, 1, 0, 1]])  # positions hit several times
add("scatter", randn(3, 4), 0, IDX, randn(2, 4, seed=1))
add("scatter", randn(4, 3), 1, IDX.T[:, :2].copy(), randn(4, 2, seed=1))
add("scatter", randn(3, 4), 0, IDX, randn(3, 5, seed=1),
    opts={"nondiff": (3,), "note": "src larger than index (torch cannot differentiate src there)"})
add("scatter", randn(3, 4), 0, IDX, 0.5, opts={"note": "value form"})
add("scatter_add", randn(3, 4), 0, DUP, randn(3, 4, seed=1))
add("scatter_add", randn(3, 4), 1, np.array([[0, 0], [3, 1], [2, 2]]), randn(3, 2, seed=1))
VALS = distinct(7, 4)  # one pool, so self and src never tie by accident
SELF, SRC = VALS[:3].copy(), VALS[3:6].copy()
for red in ("sum", "prod", "mean", "amax", "amin"):
    for inc in (True, False):
        add("scatter_reduce", SELF, 0, DUP, SRC, red, include_self=inc)
add("scatter_reduce", SELF, 1, np.array([[0, 0, 3], [1, 1, 1], [2, 0, 2]]), SRC[:, :3].copy(), "mean",
    include_self=False)
ZS = np.array([[1.5, 0.0, 0.0, 2.0]])
add("scatter_reduce", np.array([[1.0, 2.0, 0.0, 4.0]]), 1, np.array([[0, 0, 1, 1]]),
    np.array([[3.0, 0.0, 1.5, 3.0]]), "prod", opts={"note": "one zero in src and in self per slot"})
add("scatter_reduce", np.array([[1.0, -2.0, 0.5]]), 1, np.array([[0, 0, 2, 2]]), ZS, "prod",
    include_self=False, opts={"note": "one zero per slot"})
add("scatter_reduce", np.array([[1.0, -2.0, 0.5]]), 1, np.array([[0, 1, 1, 2]]), ZS, "prod",
    opts={"second_order": False, "note": "two src zeros in one slot: torch has no double backward"})
add("scatter_reduce", np.array([[3.0, 1.0, 2.0]]), 1, np.array([[0, 0, 1, 1]]),
    np.array([[3.0, 3.0, 0.5, 1.0]]), "amax", opts={**KINK, "note": "ties share the gradient"})
add("scatter_reduce", np.array([[3.0, 1.0, 2.0]]), 1, np.array([[0, 0, 1, 1]]),
    np.array([[3.0, 3.0, 0.5, 1.0]]), "amin", include_self=False, opts=KINK)
add("index_add", randn(4, 3), 0, np.array([0, 2, 0]), randn(3, 3, seed=1))
add("index_add", randn(4, 3), 1, np.array([2, 1]), randn(4, 2, seed=1), alpha=2.5)
add("index_copy", randn(4, 3), 0, np.array([3, 1]), randn(2, 3, seed=1))
add("index_copy", randn(4, 3), -1, np.array([0, 2]), randn(4, 2, seed=1))
add("index_fill", randn(4, 3), 1, np.array([0, 2]), 1.5)
add("index_fill", randn(4, 3), 0, np.array([0, 2, 0]), np.array(0.7),
    opts={"note": "a 0-d value tensor gets the sum over the filled entries, duplicates once"})
ORDER = np.argsort(distinct(3, 4), axis=1)
add("take_along_dim", randn(3, 4), ORDER, 1)
add("take_along_dim", randn(3, 4), np.array([[0, 2, 2]]), 1, opts={"note": "broadcast rows"})
add("take_along_dim", randn(3, 4), np.array([5, 0, 11, 5]))

# ---------------------------------------------------------------- shape
add("repeat_interleave", randn(3), 2)
add("repeat_interleave", randn(2, 3), np.array([1, 0, 2]), 1)
add("repeat_interleave", randn(2, 3), np.array([2]), dim=0)
add("repeat_interleave", np.array([1, 2, 0, 3]))
add("roll", randn(3, 4), 1)
add("roll", randn(3, 4), (1, -2), (0, 1))
add("roll", randn(3, 4), 5, 1)
add("tile", randn(2, 3), (2,))
add("tile", randn(3), (2, 2))
add("meshgrid", randn(3), randn(2, seed=1), indexing="ij")
add("meshgrid", randn(3), randn(2, seed=1), randn(4, seed=2), indexing="xy")
add("diag", randn(3))
add("diag", randn(3), 1)
add("diag", randn(3, 4))
add("diag", randn(4, 3), -1)
add("diag_embed", randn(2, 3))
add("diag_embed", randn(2, 3), 1, 0, 2)
add("diag_embed", randn(2, 3), -2, -1, 0)
add("block_diag", randn(2, 2), randn(3, seed=1), np.array(2.5), randn(1, 3, seed=2))
add("block_diag", randn(2, 3), np.array([[1, 2]]), opts={"note": "an int block is promoted"})

# ---------------------------------------------------------------- scans
ONE_ZERO = np.array([[1.5, 0.0, -2.0, 0.7], [0.5, 1.2, 0.7, -1.1]])
TWO_ZEROS = np.array([[0.0, 2.0, 0.0, 1.3], [1.0, 0.0, 3.0, 0.0]])
add("cumprod", randn(3, 4), 1)
add("cumprod", randn(3, 4), 0)
add("cumprod", ONE_ZERO, 1, opts={"note": "one zero: exact gradient without dividing by it"})
add("cumprod", TWO_ZEROS, 1, opts={"note": "several zeros"})
add("cumprod", TWO_ZEROS, 0)
add("cumprod", np.array([[1, 2], [3, 4]]), 1)
for name in ("cummax", "cummin"):
    add(name, distinct(3, 5), 1)
    add(name, distinct(3, 5), 0)
    add(name, np.array([[1.0, 3.0, 2.0, 3.0, 0.5, 3.0]]), 1, opts={**KINK, "note": "ties: latest index"})
    add(name, np.array([1.0, np.nan, 2.0, np.nan, -1.0]), 0, opts={**KINK, "note": "NaN propagates"})
add("logcumsumexp", randn(3, 4), 1)
add("logcumsumexp", randn(3, 4) * 30, 0, opts={"note": "large magnitudes"})
add("diff", randn(3, 5))
add("diff", randn(3, 5), 2, 0)
add("diff", randn(3, 5), 1, 1, randn(3, 1, seed=1), randn(3, 2, seed=2))

# ---------------------------------------------------------------- sorting and selection
add("sort", distinct(3, 5))
add("sort", distinct(3, 5), 0, True)
add("sort", np.array([[3.0, 1.0, 2.0, 1.0, 3.0, 1.0]]), descending=True, stable=True,
    opts={**KINK, "note": "ties keep their order"})
add("sort", np.array([3.0, np.nan, 1.0]), opts={**KINK, "note": "NaN sorts last"})
add("argsort", distinct(3, 5), 1)
add("argsort", distinct(3, 5), 0, True)
add("topk", distinct(3, 5), 2)
add("topk", distinct(3, 5), 2, 0, False)
add("kthvalue", distinct(3, 5), 2)
add("kthvalue", distinct(3, 5), 3, 0, True)
add("median", distinct(3, 5))
add("median", distinct(4))
add("median", distinct(3, 5), 1)
add("median", distinct(3, 4), 0, True)
add("median", np.array([1.0, 2.0, 2.0, 3.0, 2.0]), opts={**KINK, "note": "ties share the gradient"})
add("median", np.array([[1.0, np.nan, 2.0, np.nan]]), 1, opts={**KINK, "note": "NaN: the first NaN"})
add("mode", distinct(3, 5))
add("mode", distinct(3, 5), 0, True)
add("mode", np.array(1.5), opts={"note": "0-d"})
add("mode", np.array([[1.0, 2.0, 2.0, 1.0, 3.0, 1.0], [3.0, 3.0, 0.5, 0.5, 2.0, 2.0]]), 1,
    opts={**KINK, "note": "ties: the smallest most frequent value, its last occurrence"})
add("mode", np.resize(np.array([2.0, 0.5, 1.0, 0.5, 2.0]), (2, 23)), 1,
    opts={**KINK, "note": "rows longer than 16: the index std::sort's introsort leaves last"})
add("mode", np.array([[np.nan, 1.0, np.nan, 2.0, 2.0], [np.nan, 1.0, np.nan, 2.0, 0.5]]),
    opts={**KINK, "note": "NaN breaks std::sort's ordering: torch's choice replayed"})
add("quantile", distinct(3, 5), 0.3, 1)
add("quantile", distinct(3, 5), 0.75)
add("quantile", distinct(3, 5), np.array([0.2, 0.5, 1.0]), 0, True, opts={"nondiff": (1,)})
for mode in ("lower", "higher", "midpoint", "nearest"):
    add("quantile", distinct(3, 5), 0.4, 1, interpolation=mode)
add("quantile", np.array([[1.0, np.nan, 2.0], [0.5, 1.5, 2.5]]), 0.5, 1,
    opts={**KINK, "note": "a NaN row gives NaN"})

# ---------------------------------------------------------------- elementwise
add("nan_to_num", np.array([1.5, np.nan, np.inf, -np.inf, -0.3]),
    opts={"fd": False, "note": "the default fills (the float64 extremes) overflow the FD sums"})
add("nan_to_num", np.array([1.5, np.nan, np.inf, -np.inf]), 0.5, 9.0, -9.0)
add("clamp", distinct(3, 4), randn(3, 4, seed=1) - 1.0, randn(3, 4, seed=2) + 1.0,
    opts={"note": "tensor bounds, away from the boundaries"})
add("clamp", distinct(3, 4), min=np.full(4, -0.3) + 0.01)
add("clamp", distinct(3, 4), max=np.full((3, 1), 0.4) + 0.01)
add("clamp", np.array([0.0, 1.0, -1.0, 2.0, 0.5, 0.5]), np.array([0.0, 0.5, 0.5, 0.5, 0.5, 1.0]),
    np.array([1.0, 1.0, 0.5, 0.5, 0.5, 0.0]),
    opts={**KINK, "note": "x on a bound, min == max, min > max: torch's subgradients"})
add("lerp", randn(3, 4), randn(3, 4, seed=1), 0.3)
add("lerp", randn(3, 4), randn(3, 4, seed=1), unit(3, 4, seed=2))
add("lerp", randn(3, 4), randn(4, seed=1), randn(3, 1, seed=2))
add("addcmul", randn(3, 4), randn(3, 4, seed=1), randn(4, seed=2), value=0.5)
add("addcmul", randn(3, 4), randn(3, 4, seed=1), randn(3, 4, seed=2))
add("addcdiv", randn(3, 4), randn(3, 4, seed=1), away(3, 4, seed=2), value=-2.0)
add("addcdiv", randn(3, 4), randn(3, 4, seed=1), pos(4, seed=2))
add("hypot", randn(3, 4), randn(3, 4, seed=1))
add("hypot", randn(3, 4), np.array(2.0))
add("logaddexp", randn(3, 4), randn(4, seed=1))
add("logaddexp", randn(3, 4) * 20, randn(3, 4, seed=1) * 20)
add("logaddexp2", randn(3, 4), randn(3, 4, seed=1))
# remainders: away from the jumps (input / other not near an integer)
QUOT = np.array([[0.3, 1.4, -2.6, 3.2], [-0.7, 2.45, -1.3, 0.55]])
DEN = np.array([[1.5, -0.8, 2.0, 1.1], [0.9, -1.7, 1.3, -2.2]])
for name in ("fmod", "remainder"):
    add(name, QUOT * DEN, DEN)
    add(name, QUOT * 1.5, 1.5)
    add(name, np.array([5, -5, 7]), np.array([3, 3, -2]))
add("copysign", away(3, 4), away(3, 4, seed=1))
add("copysign", away(3, 4), -1.0)
add("copysign", np.array([0.0, -0.0, 1.5, -2.0]), np.array([-1.0, 1.0, -0.0, 0.0]),
    opts={**KINK, "second_order": False,
          "note": "zeros and signed zeros; torch's double backward is NaN at input 0 (0/0 in its "
                  "formula), the engine's is 0"})


def _torch_heaviside(x, v):
    # torch has no derivative for heaviside; the engine's is zero (sign and floor style)
    return torch.heaviside(x.detach(), v.detach()) + 0 * x + 0 * v


add("heaviside", away(3, 4), randn(4, seed=1), opts={"torch_fn": _torch_heaviside})
add("heaviside", np.array([-1.0, 0.0, 2.0]), np.array([0.5, 0.5, 0.5]),
    opts={**KINK, "torch_fn": _torch_heaviside})
add("sinc", unit(3, 4))
add("sinc", unit(3, 4) * 3.3 + 0.05)
add("sinc", np.array([0.0, 0.5, -1.0]), opts={
    **KINK, "second_order": False,
    "note": "torch's gradient is 0 at 0; its double backward there is NaN (0/0), the engine's 0"})
add("sinc", np.array([0.5, -1.0, 1e-3]))
add("deg2rad", randn(3, 4) * 90)
add("deg2rad", np.array([90, 180]))
add("rad2deg", randn(3, 4))
add("frac", away(3, 4) * 3 + 0.25)

# ---------------------------------------------------------------- index_put
# (indices are a tuple of constant tensors; values is differentiated with the input)
add("index_put", randn(4, 3), (np.array([3, 1]),), randn(2, 3, seed=1))
add("index_put", randn(4, 3), (np.array([0, 2, 0]), np.array([1, 1, 2])), randn(3, seed=1), True,
    opts={"note": "accumulate: duplicates sum"})
add("index_put", randn(4, 3), (np.array([[True, False, True], [False] * 3, [True] * 3, [False] * 3]),),
    randn(1, seed=1), opts={"note": "bool mask, broadcast value"})
add("index_put", randn(4, 3), (np.array([1, 3]), np.array([2, 0])), randn(2, seed=1), accumulate=True)
add("searchsorted", np.array([1.0, 3.0, 5.0, 7.0]), np.array([[0.0, 3.0], [5.5, 9.0]]))
add("searchsorted", np.array([[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]]), np.array([[3.0], [3.0]]), right=True)
add("searchsorted", np.array([1, 3, 5]), np.array([3, 4]), side="right", out_int32=True)
add("bucketize", np.array([[0.0, 3.0], [5.5, 9.0]]), np.array([1.0, 3.0, 5.0, 7.0]))
add("bucketize", np.array([0.0, 3.0, 5.5]), np.array([1.0, 3.0, 5.0]), right=True)
