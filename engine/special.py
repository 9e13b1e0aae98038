"""Special functions, as ``torch.special`` (scipy.special computes the values).

The functions torch also has at the top level (``erf``, ``gammaln`` = ``lgamma``, ``digamma`` /
``psi``, ``polygamma``, ``multigammaln`` = ``mvlgamma``, ``xlogy``, ``i0``, ``logit``)
are the same ops under a second name; the rest are defined here. Derivatives are engine ops
(i0e' = i1e - sign(x) i0e, ndtri' = sqrt(2 pi) exp(ndtri^2 / 2), ...), so any order works.

>>> engine.special.ndtr(engine.tensor([0.0]))
tensor([0.5])
"""

from __future__ import annotations

import math

from .ops._registry import op
from .ops.elementwise import exp as _exp
from .ops.elementwise import expm1 as _expm1
from .ops.elementwise import log1p as _log1p
from .ops.elementwise import round as _round
from .ops.elementwise import sigmoid, to_float
from .ops.elementwise import sinc as _sinc
from .ops.reduction import log_softmax as _log_softmax
from .ops.reduction import logsumexp as _logsumexp
from .ops.reduction import softmax as _softmax
from .ops.special_prims import (
    _binary,
    _entr,
    _erfcx,
    _i0e,
    _i1,
    _i1e,
    _log_ndtr,
    _ndtr,
    _ndtri,
    _xlog1py,
    _zeta,
    digamma,
    erf,
    erfc,
    erfinv,
    i0,
    logit,
    polygamma,
    xlogy,
)
from .ops.special_prims import lgamma as gammaln
from .ops.special_prims import mvlgamma as multigammaln

psi = digamma

__all__ = [
    "erf", "erfc", "erfinv", "erfcx", "gammaln", "digamma", "psi", "polygamma", "multigammaln",
    "xlogy", "xlog1py", "i0", "i0e", "i1", "i1e", "ndtr", "log_ndtr", "ndtri", "logit", "expit",
    "entr", "sinc", "zeta", "round", "log1p", "exp2", "expm1", "logsumexp", "softmax",
    "log_softmax",
]


# ---------------------------------------------------------------- error functions and Bessel I
@op()
def erfcx(input):
    """Scaled complementary error function ``exp(x^2) erfc(x)``, accurate for large x."""
    return _erfcx(to_float(input))


@op()
def i0e(input):
    """Exponentially scaled Bessel I0: ``exp(-|x|) i0(x)``."""
    return _i0e(to_float(input))


@op()
def i1(input):
    """Modified Bessel function of the first kind, order 1; i1'(0) = 0.5."""
    return _i1(to_float(input))


@op()
def i1e(input):
    """Exponentially scaled Bessel I1: ``exp(-|x|) i1(x)``."""
    return _i1e(to_float(input))


# ---------------------------------------------------------------- the normal distribution
@op()
def ndtr(input):
    """Standard normal CDF.

    >>> engine.special.ndtr(engine.tensor([0.0]))
    tensor([0.5])
    """
    return _ndtr(to_float(input))


@op()
def log_ndtr(input):
    """``log(ndtr(x))``, accurate far in the left tail."""
    return _log_ndtr(to_float(input))


@op()
def ndtri(input):
    """Inverse of the standard normal CDF on (0, 1)."""
    return _ndtri(to_float(input))


@op()
def expit(input):
    """Logistic sigmoid ``1 / (1 + exp(-x))``."""
    return sigmoid(to_float(input))


# ---------------------------------------------------------------- entropy, xlog1py, zeta
@op()
def entr(input):
    """Elementwise entropy ``-x log(x)``: 0 at 0, -inf for negative x."""
    return _entr(to_float(input))


@op(differentiable=("input", "other"))
def xlog1py(input, other):
    """``input * log1p(other)``, 0 where input is 0."""
    return _binary(_xlog1py, input, other)


@op(differentiable=("other",))
def zeta(input, other):
    """Hurwitz zeta ``sum_k (k + other)^-input``; differentiable in ``other`` only (as in torch).

    >>> engine.special.zeta(engine.tensor([2.0]), 1.0)
    tensor([1.6449])
    """
    return _binary(_zeta, input, other)


# ---------------------------------------------------------------- torch.special spellings of core ops
@op()
def round(input, *, decimals=0):  # noqa: A001
    """Round half to even (zero gradient)."""
    return _round(input, decimals=decimals)


@op()
def sinc(input):
    """Normalized sinc ``sin(pi x) / (pi x)``, 1 at 0."""
    return _sinc(input)


@op()
def log1p(input):
    """``log(1 + x)``."""
    return _log1p(input)


@op()
def expm1(input):
    """``exp(x) - 1``."""
    return _expm1(input)


@op()
def exp2(input):
    """``2 ** x``, as ``exp(x ln 2)``."""
    return _exp(to_float(input) * math.log(2))


@op()
def logsumexp(input, dim, keepdim=False):
    """``log(sum(exp(input), dim))``, computed stably."""
    return _logsumexp(input, dim, keepdim)


@op()
def softmax(input, dim, *, dtype=None):
    """Softmax over ``dim``."""
    return _softmax(input, dim, dtype=dtype)


@op()
def log_softmax(input, dim, *, dtype=None):
    """Log-softmax over ``dim``."""
    return _log_softmax(input, dim, dtype=dtype)

