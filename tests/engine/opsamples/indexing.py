"""Samples for issue 4's cumprod and extra elementwise ops.

Smooth samples sit away from kinks (ties, zeros, integer jumps); the ``KINK`` samples sit on them
and compare with torch's convention only (finite differences do not apply there).
"""

from __future__ import annotations

import numpy as np
import torch

from . import add, away, distinct, pos, randn, unit

KINK = {"fd": False}

# ---------------------------------------------------------------- scans
ONE_ZERO = np.array([[1.5, 0.0, -2.0, 0.7], [0.5, 1.2, 0.7, -1.1]])
TWO_ZEROS = np.array([[0.0, 2.0, 0.0, 1.3], [1.0, 0.0, 3.0, 0.0]])
add("cumprod", randn(3, 4), 1)
add("cumprod", randn(3, 4), 0)
add("cumprod", ONE_ZERO, 1, opts={"note": "one zero: exact gradient without dividing by it"})
add("cumprod", TWO_ZEROS, 1, opts={"note": "several zeros"})
add("cumprod", TWO_ZEROS, 0)
add("cumprod", np.array([[1, 2], [3, 4]]), 1)

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
