"""Samples for the special functions: top-level (erf, lgamma, digamma, polygamma, mvlgamma, xlogy,
i0, logit) and engine.special. Inputs stay inside each function's domain and away from poles."""

from __future__ import annotations

import numpy as np

from . import add, away, pos, randn, rng, unit


def between(lo: float, hi: float, *shape: int, seed: int = 0) -> np.ndarray:
    return rng(seed).uniform(lo, hi, shape)


NEG_NONINT = np.array([-2.6, -1.3, -0.4, 0.7, 2.2, 4.5])  # poles of Gamma avoided

# ---------------------------------------------------------------- error functions
add("erf", randn(2, 3))
add("erfc", randn(2, 3))
add("erfinv", unit(2, 3))
add("special.erfcx", randn(2, 3) * 2)
add("special.ndtr", randn(2, 3) * 2)
add("special.log_ndtr", np.array([-6.0, -2.5, -0.3, 0.4, 1.7, 3.0]))
add("special.ndtri", between(0.05, 0.95, 2, 3))
add("special.expit", randn(2, 3) * 3)
add("logit", between(0.05, 0.95, 2, 3))
add("logit", np.array([0.05, 0.15, 0.5, 0.8, 0.95]), 0.1,
    opts={"note": "eps: clamped outside [0.1, 0.9], where the gradient is 0"})

# ---------------------------------------------------------------- gamma family
add("lgamma", pos(2, 3, lo=0.3, hi=6.0))
add("lgamma", NEG_NONINT.copy(), opts={"note": "negative arguments (log|Gamma|)"})
add("digamma", pos(2, 3, lo=0.3, hi=6.0))
add("digamma", NEG_NONINT.copy())
for n in (0, 1, 2, 3):
    add("polygamma", n, pos(2, 3, lo=0.4, hi=5.0, seed=n))
add("mvlgamma", pos(2, 3, lo=1.2, hi=4.0), 3)
add("mvlgamma", pos(4, lo=0.3, hi=3.0, seed=1), 1)
add("special.zeta", np.array([2.0, 3.0, 4.5]), pos(3, lo=0.5, hi=3.0), opts={"nondiff": (0,)})
add("special.zeta", 2.0, pos(2, 2, lo=0.5, hi=3.0), opts={"note": "scalar exponent"})

# ---------------------------------------------------------------- x log y
add("xlogy", away(2, 3), pos(2, 3, seed=1))
add("xlogy", away(3), 3.0, opts={"note": "scalar other"})
add("xlogy", 2.0, pos(3), opts={"note": "scalar input"})
add("xlogy", np.array([0.0, 0.0, 1.5]), np.array([0.0, 2.0, 0.5]),
    opts={"fd": False, "note": "x = 0: value 0 even at y = 0; torch's d/dx is 0 where y <= 0"})
add("special.xlog1py", away(2, 3), pos(2, 3, seed=1) - 0.4)
add("special.xlog1py", np.array([0.0, 0.0, 1.5]), np.array([-1.0, 2.0, 0.5]),
    opts={"fd": False, "note": "x = 0: torch's d/dx is 0 where y <= -1"})
add("special.entr", pos(2, 3, lo=0.1, hi=3.0))

# ---------------------------------------------------------------- Bessel I
add("i0", randn(2, 3) * 2)
add("special.i0e", away(2, 3) * 2)
add("special.i1", np.array([-3.0, -0.7, 0.0, 0.4, 1.1, 2.5]), opts={"note": "includes x = 0"})
add("special.i1e", away(2, 3) * 2)

# ---------------------------------------------------------------- torch.special spellings
add("special.sinc", away(2, 3))
add("special.round", away(2, 3) + 0.25)
add("special.round", away(4) + 0.27, decimals=1)
add("special.log1p", pos(2, 3))
add("special.expm1", randn(2, 3))
add("special.exp2", randn(2, 3))
add("special.logsumexp", randn(3, 4), 1)
add("special.softmax", randn(3, 4), 1)
add("special.log_softmax", randn(3, 4), 0)
