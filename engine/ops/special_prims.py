"""Special-function primitives (scipy.special forwards), one record each, and the top-level ops
built on them (``erf``, ``lgamma``, ``digamma``, ``polygamma``, ``xlogy``, ``i0``, ``logit``, ...).
The ``engine.special`` namespace is :mod:`engine.special`, which builds on these.

Every derivative is itself a function of this module (lgamma' = digamma, digamma' = polygamma(1),
i0' = i1, i1' = i0 - i1 / x, ...), so gradients of any order come free. Where torch pins a value
at a removable singularity (i1'(0) = 0.5) or outside a domain (logit), we do too.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import scipy.special as sc

from .._autograd import Primitive, apply, diagonal_jvp, elementwise_batch
from .._meta import elementwise_shape
from ..tensor import Tensor
from ._registry import as_tensor_arg, op
from .elementwise import binary_dtype, exp, log, to_float, where

IN, OUT, BOTH = (0,), (-1,), (0, -1)
_F32 = np.dtype(np.float32)
_2_SQRTPI = 2 / math.sqrt(math.pi)
_SQRT_2PI = math.sqrt(2 * math.pi)


def _np(fn: Callable) -> Callable:
    """A scipy ufunc that keeps its input's float dtype."""
    return lambda x: np.asarray(fn(x)).astype(x.dtype, copy=False)


def _gammaln(x: np.ndarray) -> np.ndarray:
    """log|Gamma(x)|, with torch's lgamma(-inf) = inf (scipy gives -inf)."""
    return np.where(x == -np.inf, np.inf, sc.gammaln(x))


def _prim(name: str, fwd: Callable, save: tuple, vjp: Callable) -> Primitive:
    # All elementwise: the VJP multiplies by the derivative, and serves as the JVP.
    p = Primitive(name, fwd, save)
    p.defvjp(vjp)
    p.defjvp(diagonal_jvp)
    p.defbatch(elementwise_batch)
    p.defshape(elementwise_shape)
    return p


def _tiny(x: Tensor) -> Tensor:
    """Mask of |x| <= eps, where torch pins the Bessel-I1 derivatives to 0.5."""
    return Tensor._make(np.abs(x._data) <= np.finfo(x._data.dtype).eps)


def _i1_vjp(c, g, x, y):
    # i1' = i0 - i1 / x, pinned to 0.5 at x = 0 (torch's i1_backward)
    tiny = _tiny(x)
    safe = where(tiny, 1.0, x)
    return g * where(tiny, 0.5, _i0(safe) - y / safe)


def _i1e_vjp(c, g, x, y):
    # i1e' = i0e - i1e (sign(x) + 1 / x), pinned to 0.5 at x = 0 (torch's i1e_backward)
    tiny = _tiny(x)
    safe = where(tiny, 1.0, x)
    return g * where(tiny, 0.5, _i0e(safe) - y * (safe.sign() + 1 / safe))


#                 name       forward                       saves  VJP
_erf = _prim("erf", _np(sc.erf), IN, lambda c, g, x: g * _2_SQRTPI * exp(-(x * x)))
_erfc = _prim("erfc", _np(sc.erfc), IN, lambda c, g, x: -g * _2_SQRTPI * exp(-(x * x)))
_erfinv = _prim("erfinv", _np(sc.erfinv), OUT, lambda c, g, y: g * (math.sqrt(math.pi) / 2) * exp(y * y))
_erfcx = _prim("special_erfcx", _np(sc.erfcx), BOTH, lambda c, g, x, y: g * (2 * x * y - _2_SQRTPI))
_lgamma = _prim("lgamma", _np(_gammaln), IN, lambda c, g, x: g * _polygamma(x, n=0))
_i0 = _prim("i0", _np(sc.i0), IN, lambda c, g, x: g * _i1(x))
_i0e = _prim("special_i0e", _np(sc.i0e), IN, lambda c, g, x: g * (_i1e(x) - x.sign() * _i0e(x)))
_i1 = _prim("special_i1", _np(sc.i1), BOTH, _i1_vjp)
_i1e = _prim("special_i1e", _np(sc.i1e), BOTH, _i1e_vjp)
_ndtr = _prim("special_ndtr", _np(sc.ndtr), IN, lambda c, g, x: g * exp(-0.5 * x * x) / _SQRT_2PI)
_log_ndtr = _prim("special_log_ndtr", _np(sc.log_ndtr), BOTH,
                  lambda c, g, x, y: g * exp(-(y + 0.5 * x * x)) / _SQRT_2PI)
_ndtri = _prim("special_ndtri", _np(sc.ndtri), OUT, lambda c, g, y: g * _SQRT_2PI * exp(0.5 * y * y))
_entr = _prim("special_entr", _np(sc.entr), IN, lambda c, g, x: -g * (1 + log(x)))
# polygamma(n, x); digamma is n = 0. d/dx polygamma(n, x) = polygamma(n + 1, x).
_polygamma = _prim("polygamma", lambda x, n: np.asarray(sc.polygamma(n, x)).astype(x.dtype), IN,
                   lambda c, g, x, n: g * _polygamma(x, n=n + 1))


def _unary(prim: Primitive, name: str, doc: str, aliases: tuple[str, ...] = ()) -> Callable:
    def fn(input):
        return prim(to_float(input))

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return op(method=True, aliases=aliases)(fn)


erf = _unary(_erf, "erf", "Error function.\n\n    >>> engine.erf(engine.tensor([0.0]))\n    tensor([0.])",
             ("special.erf",))
erfc = _unary(_erfc, "erfc", "Complementary error function 1 - erf(input).", ("special.erfc",))
erfinv = _unary(_erfinv, "erfinv", "Inverse error function on (-1, 1).", ("special.erfinv",))
lgamma = _unary(_lgamma, "lgamma", "log|Gamma(input)|; its derivative is digamma.",
                ("special.gammaln",))
i0 = _unary(_i0, "i0", "Modified Bessel function of the first kind, order 0; i0' = i1.",
            ("special.i0",))


@op(method=True, aliases=("special.digamma", "special.psi"))
def digamma(input):
    """The logarithmic derivative of Gamma; digamma(0) = -inf, as in torch.

    >>> engine.digamma(engine.tensor([1.0]))
    tensor([-0.5772])
    """
    return _polygamma(to_float(input), n=0)


@op(differentiable=("input",), aliases=("special.polygamma",))
def polygamma(n, input):
    """The n-th derivative of digamma (n >= 0).

    >>> engine.polygamma(1, engine.tensor([1.0]))
    tensor([1.6449])
    """
    if n < 0:
        raise RuntimeError("polygamma(n, x) does not support negative n.")
    return _polygamma(to_float(input), n=int(n))


Tensor.polygamma = lambda self, n: polygamma(n, self)


@op(method=True, aliases=("special.multigammaln",))
def mvlgamma(input, p):
    """Multivariate log-gamma of dimension ``p``:
    ``sum_i lgamma(input - i / 2) + p (p - 1) / 4 log(pi)``.

    >>> engine.mvlgamma(engine.tensor([2.5]), 2).shape
    torch.Size([1])
    """
    if p < 1:
        raise RuntimeError("p has to be greater than or equal to 1")
    x = to_float(input)
    offsets = Tensor._make((-0.5 * np.arange(p)).astype(x._data.dtype))
    return lgamma(x.unsqueeze(-1) + offsets).sum(-1) + p * (p - 1) / 4 * math.log(math.pi)


# ---------------------------------------------------------------- binary: xlogy, xlog1py, zeta
def _binary(prim: Primitive, input: object, other: object) -> Tensor:
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        raise TypeError(f"{prim.name}(): expected at least one Tensor argument")
    a = input if isinstance(input, (Tensor, int, float)) else as_tensor_arg(input)
    b = other if isinstance(other, (Tensor, int, float)) else as_tensor_arg(other)
    dt = binary_dtype(a, b)
    return apply(prim, (a, b), None, dt if dt.kind == "f" else _F32)


def _at_zero(x: object, y: object, edge: float) -> Tensor:
    """Mask of x == 0 and y <= edge, where torch zeroes d/dx of x log(y)."""
    xd = x._data if isinstance(x, Tensor) else x
    yd = y._data if isinstance(y, Tensor) else y
    return Tensor._make(np.asarray((xd == 0) & (yd <= edge)))


def _xlogy_fwd(x, y):
    return np.asarray(sc.xlogy(x, y)).astype(np.result_type(x, y))


def _xlog1py_fwd(x, y):
    return np.asarray(sc.xlog1py(x, y)).astype(np.result_type(x, y))


def _xlogy_vjp(c, g, x, y):
    # torch: d/dx = log(y), but 0 where x == 0 and y <= 0; d/dy = x / y
    return (where(_at_zero(x, y, 0.0), 0.0, _xlogy(g, y)) if c.edges[0] is not None else None,
            g * x / y if c.edges[1] is not None else None)


def _xlog1py_vjp(c, g, x, y):
    # torch: d/dx = log1p(y), but 0 where x == 0 and y <= -1; d/dy = x / (1 + y)
    return (where(_at_zero(x, y, -1.0), 0.0, _xlog1py(g, y)) if c.edges[0] is not None else None,
            g * x / (y + 1) if c.edges[1] is not None else None)


def _zeta_vjp(c, g, x, q):
    if c.edges[0] is not None:
        raise NotImplementedError("the derivative for 'zeta' is not implemented.")
    return None, g * -x * _zeta(x + 1, q)


_xlogy = _prim("xlogy", _xlogy_fwd, (0, 1), _xlogy_vjp)
_xlog1py = _prim("special_xlog1py", _xlog1py_fwd, (0, 1), _xlog1py_vjp)
_zeta = _prim("special_zeta", lambda x, q: np.asarray(sc.zeta(x, q)).astype(np.result_type(x, q)),
              (0, 1), _zeta_vjp)


@op(differentiable=("input", "other"), method=True, aliases=("special.xlogy",))
def xlogy(input, other):
    """``input * log(other)``, 0 where input is 0 (a NaN other still gives NaN).

    >>> engine.xlogy(engine.tensor([0.0, 2.0]), engine.tensor([0.0, 1.0]))
    tensor([0., 0.])
    """
    return _binary(_xlogy, input, other)


# ---------------------------------------------------------------- logit
def _logit_fwd(x, eps):
    if eps is not None:
        x = np.clip(x, eps, 1 - eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(x / (1 - x))


def _logit_vjp(c, g, x, eps):
    # torch's logit_backward: g / (x (1 - x)) inside [eps, 1 - eps] and 0 outside it; without eps,
    # NaN outside [0, 1].
    d = x._data
    if eps is None:
        outside, fill = (d < 0) | (d > 1), math.nan
    else:
        outside, fill = (d < eps) | (d > 1 - eps), 0.0
    mask = Tensor._make(outside)
    safe = where(mask, 0.5, x)
    return where(mask, fill, g / (safe * (1 - safe)))


_logit = _prim("logit", _logit_fwd, IN, _logit_vjp)


@op(method=True, aliases=("special.logit",))
def logit(input, eps=None):
    """``log(p / (1 - p))``, with p clamped to ``[eps, 1 - eps]`` when eps is given.

    >>> engine.logit(engine.tensor([0.5]))
    tensor([0.])
    """
    if eps is not None and eps < 0:
        eps = None
    return _logit(to_float(input), eps=eps)
