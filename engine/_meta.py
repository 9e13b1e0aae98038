"""Meta execution: run engine code on tensors that carry a shape and a dtype but no values.

Inside ``with meta_mode() as m:`` every primitive's numpy forward is replaced by its *shape
rule*, so public ops (compositions of primitives plus Python) infer their result shapes and
dtypes by running as usual, and raise the errors they would raise, without computing anything.
A meta array is a zero-strided view of a 0-d array (``np.broadcast_to``): an ``expand`` to
10^12 elements or a 100k x 100k ``matmul`` allocates nothing. Backward runs the same way (VJPs
are engine ops), so gradient shapes, ``create_graph`` graphs and what backward saves come free.

The rule table is :data:`RULES` (keyed by primitive name) plus :data:`ELEMENTWISE`, the
primitives whose default rule is numpy broadcasting (their dtype comes from running the forward
on one-element inputs). Every primitive must be in one of them (a test enforces it); a primitive
without a rule raises :class:`Unknown`, never a wrong answer. :data:`OP_RULES` overrides a few
public ops that allocate outside primitives: constructors (``ones(10**5, 10**5)`` must not
allocate) and comparisons. Each rule also checks the element limit on every output, intermediate
results included, before anything downstream could allocate them.

Values are placeholders (0.5 for floats, 0 for integers, False for bools). Shapes that depend
on values are handled conservatively: a boolean-mask index gives an upper bound (the mask's
size) and sets :attr:`MetaSession.inexact`; ``repeat_interleave`` with tensor counts raises
:class:`Unknown`. :attr:`MetaSession.peak_bytes` simulates memory: every rule output that a real
run would allocate is counted while a Python reference to it lives (views count nothing), so
what backward saves and what ``create_graph`` keeps are included.

>>> import engine
>>> with meta_mode() as m:
...     x = engine.from_numpy(m.array((100_000, 100_000), "float32"))
...     y = (x @ x).sum(1)
>>> y.shape, y.dtype
(torch.Size([100000]), engine.float32)
"""

from __future__ import annotations

import inspect
import math
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple

from . import _autograd
from .tensor import Size, Tensor

__all__ = ["meta_mode", "MetaSession", "MetaAbort", "TooLarge", "TooMuchWork", "Unknown", "RULES",
           "ELEMENTWISE", "OP_RULES", "has_rule", "is_meta", "meta_array", "run_op", "WORK_PER_CALL",
           "work_of"]


# ---------------------------------------------------------------- errors
class MetaAbort(BaseException):
    """Ends a meta run. A BaseException, so that ``except Exception`` in op code lets it through."""


class TooLarge(MetaAbort):
    """A primitive's output (an intermediate result too) has more elements than allowed."""

    def __init__(self, what: str, shape: tuple[int, ...], limit: int) -> None:
        self.what, self.shape, self.limit = what, tuple(shape), limit
        self.numel = math.prod(self.shape)
        super().__init__(f"{what} would have {self.numel} elements (shape {list(self.shape)}); "
                         f"the limit is {limit}")

    @property
    def dim(self) -> int | None:
        """The first dimension over the limit when the element count is not (a zero-size shape)."""
        if self.numel > self.limit:
            return None
        return next((d for d, n in enumerate(self.shape) if n > self.limit), None)


def _over(shape: Sequence[int], limit: int) -> bool:
    """More elements than ``limit``, or one dimension longer than it (even with another dim 0:
    numpy cannot lay out ``(0, 2**63 - 1)``, and no tensor with data could be that long)."""
    return math.prod(shape) > limit or any(n > limit for n in shape)


class TooMuchWork(MetaAbort):
    """The work of the primitives run so far (forward and backward) is over the budget."""

    def __init__(self, work: float, limit: float, what: str) -> None:
        self.work, self.limit, self.what = work, limit, what
        super().__init__(f"at least {work:.3g} units of work (at {what}); the limit is {limit:.3g}")


class Unknown(MetaAbort):
    """The shape cannot be inferred without the values (or no rule exists): check at run time."""


# ---------------------------------------------------------------- meta arrays
_FILL = {"f": 0.5, "c": 0.5, "i": 0, "u": 0, "b": False}
_PROBE_FILL = {"f": 0.5, "c": 0.5, "i": 1, "u": 1, "b": True}


class _Root(np.ndarray):
    """The 0-d array every meta array is a view of; ``meta_bytes`` is what a real one would take."""

    meta_bytes = 0
    meta_numel = 1


def _root(dtype: np.dtype, numel: int) -> _Root:
    r = _Root((), dtype)  # owns its 8 bytes, so every view's base chain ends here
    r[()] = _FILL.get(dtype.kind, 0)
    r.meta_numel = numel
    r.meta_bytes = numel * dtype.itemsize
    return r


def _view_of(root: _Root, shape: tuple[int, ...]) -> np.ndarray:
    """A read-only zero-strided view of ``root`` with ``shape`` (np.broadcast_to, 3x faster)."""
    v = np.ndarray(shape, root.dtype, buffer=root, strides=(0,) * len(shape))
    v.flags.writeable = False
    return v


def _root_of(a: Any) -> _Root | None:
    while a is not None:
        if type(a) is _Root:
            return a
        a = getattr(a, "base", None)  # as_strided views end in a DummyArray with a .base
    return None


def is_meta(a: Any) -> bool:
    """True for an array made by meta execution (a view of a meta root)."""
    return isinstance(a, np.ndarray) and _root_of(a) is not None


class MetaSession:
    """State of one meta run: limits, the inexact flag and the memory simulation."""

    def __init__(self, max_elements: int | None = None, max_work: float | None = None) -> None:
        self.max_elements = max_elements
        self.max_work = max_work
        self.work = 0.0             # units of work of every primitive run (see "cost rules")
        self.value_dependent = False  # a rule read values to size a result (counts, masks, classes)
        self.inexact = False        # a rule gave an upper bound (value-dependent shape)
        self.current = "an operation"  # what is being inferred, for TooLarge's message
        self.rule_raised = False    # a shape rule (not op code reading placeholders) raised
        self.live_bytes = 0
        self.peak_bytes = 0
        self.largest_bytes = 0      # the largest single allocation (a transient's worth)
        self._refs: dict[int, weakref.ref] = {}

    def _count(self, root: _Root) -> None:
        n = root.meta_bytes
        if not n:
            return
        self.live_bytes += n
        if self.live_bytes > self.peak_bytes:
            self.peak_bytes = self.live_bytes
        if n > self.largest_bytes:
            self.largest_bytes = n
        key = id(root)

        def free(_: Any, n: int = n, key: int = key) -> None:
            self.live_bytes -= n
            self._refs.pop(key, None)

        self._refs[key] = weakref.ref(root, free)

    def add_work(self, units: float) -> None:
        """Count ``units`` of work; TooMuchWork past ``max_work`` (a long loop of ops in meta
        mode stops there too, so the check itself never runs for long)."""
        self.work += units
        if self.max_work is not None and self.work > self.max_work:
            raise TooMuchWork(self.work, self.max_work, self.current)

    def scratch(self, nbytes: int) -> None:
        """A transient allocation the rule's outputs do not show (LAPACK workspaces, copies)."""
        if self.live_bytes + nbytes > self.peak_bytes:
            self.peak_bytes = self.live_bytes + nbytes
        if nbytes > self.largest_bytes:
            self.largest_bytes = nbytes

    def array(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        """A fresh meta array (counted as an allocation while referenced)."""
        dt = np.dtype(dtype)
        shape = tuple(int(s) for s in shape)
        numel = math.prod(shape)
        if self.max_elements is not None and _over(shape, self.max_elements):
            raise TooLarge(f"the result of {self.current}", shape, self.max_elements)
        root = _root(dt, numel)
        self._count(root)
        return _view_of(root, shape)

    def adopt(self, a: np.ndarray) -> np.ndarray:
        """The meta twin of an array that op code computed outright (counted from now on)."""
        return a if is_meta(a) else self.array(a.shape, a.dtype)

    def check(self, a: Any, what: str) -> None:
        lim = self.max_elements
        if lim is not None and isinstance(a, np.ndarray) and _over(a.shape, lim):
            raise TooLarge(what, a.shape, lim)

    def check_shape(self, shape: Sequence[int], what: str) -> None:
        lim = self.max_elements
        if lim is not None and _over(shape, lim):
            raise TooLarge(what, tuple(shape), lim)


class _Local(threading.local):
    session: MetaSession | None = None


_local = _Local()


def meta_array(shape: Sequence[int], dtype: Any) -> np.ndarray:
    """A fresh meta array in the current session (or an uncounted one outside meta mode)."""
    s = _local.session
    if s is not None:
        return s.array(shape, dtype)
    dt = np.dtype(dtype)
    return _view_of(_root(dt, math.prod(shape)), tuple(int(d) for d in shape))


@contextmanager
def meta_mode(max_elements: int | None = None, max_work: float | None = None) -> Iterator[MetaSession]:
    """Run engine code on meta tensors in this thread; ``max_elements`` bounds every result,
    ``max_work`` the total work (:class:`TooMuchWork`)."""
    prev_session, prev_hook = _local.session, _autograd._hooks.meta
    s = MetaSession(max_elements, max_work)
    _local.session = s
    _autograd._hooks.meta = _infer
    try:
        with np.errstate(all="ignore"):
            yield s
    finally:
        _local.session, _autograd._hooks.meta = prev_session, prev_hook


# ---------------------------------------------------------------- dispatch
RULES: dict[str, Callable] = {}
"""Shape rules by primitive name: ``rule(prim, arrays, params) -> output (tuple if n_out > 1)``.
Each rule carries its cost rule as attributes: ``rule.work(arrays, params, outs)`` (units of
work) and ``rule.scratch(arrays, params, outs)`` (bytes of transient memory, or None)."""

# ---------------------------------------------------------------- cost rules
# A unit of work is about one element pass of a simple numpy loop (~1 ns on one core). A
# primitive's work is declared beside its shape rule; by default it reads its operands and
# writes its outputs once ("element passes"). The weights per FLOP are fixed numbers, never
# measured on the machine at hand: the same request gets the same estimate everywhere.
WORK_PER_CALL = 2_000      # a numpy call and the engine's bookkeeping, whatever the sizes
BLAS_FLOP = 0.05           # matrix products: tens of GFLOP/s per core
LAPACK_FLOP = 0.1          # factorizations: fewer FLOP/s than a product
_F8 = 8                    # scratch is sized in float64 (LAPACK works in double or in place)


def _size(a: Any) -> int:
    if isinstance(a, np.ndarray):
        return a.size
    if isinstance(a, (list, tuple)):
        return sum(_size(x) for x in a)
    return 0


def _passes(prim: Any, arrays: Sequence, params: dict, outs: tuple) -> float:
    """The default cost: every operand read and every output written once."""
    return _size(list(arrays)) + sum(_size(v) for v in params.values()) + _size(outs)


def _free(prim: Any, arrays: Sequence, params: dict, outs: tuple) -> float:
    return 0  # views: nothing is read or written


def rule(*names: str, work: Callable | None = None, scratch: Callable | None = None
         ) -> Callable[[Callable], Callable]:
    """Register a shape rule and its cost rule (``work``: element passes by default)."""
    def deco(fn: Callable) -> Callable:
        fn.work = work or _passes  # type: ignore[attr-defined]
        fn.scratch = scratch  # type: ignore[attr-defined]
        for n in names:
            RULES[n] = fn
        return fn
    return deco


def work_of(prim: Any, arrays: Sequence, params: dict, outs: tuple) -> float:
    """The units of work of a primitive on these operands and outputs (meta or real)."""
    fn = _rule_for(prim.name)
    return WORK_PER_CALL + getattr(fn, "work", _passes)(prim, arrays, params, outs)


def _rule_for(name: str) -> Callable | None:
    fn = RULES.get(name)
    if fn is None:
        if name in ELEMENTWISE:
            return _elementwise
        base = name.rstrip("0123456789")  # families made on demand: einsum2, einsum3, ...
        if base != name:
            return RULES.get(base)
    return fn


def has_rule(name: str) -> bool:
    """True when the primitive ``name`` has a shape rule (its own or the elementwise default)."""
    return _rule_for(name) is not None


def _infer(prim: Any, arrays: list, params: dict | None) -> Any:
    s = _local.session
    params = params or {}
    fn = _rule_for(prim.name)
    if fn is None:
        raise Unknown(f"no shape rule for the primitive {prim.name!r}")
    if s is None:
        return fn(prim, arrays, params)
    prev, s.current = s.current, prim.name
    try:
        out = fn(prim, arrays, params)
        res = out[0] if prim.aux else out
        outs = res if prim.n_out > 1 else (res,)
        for o in outs:  # views too: an expand to 10**12 is refused
            s.check(o, f"the result of {prim.name}")
        s.add_work(WORK_PER_CALL + fn.work(prim, arrays, params, outs))
        if fn.scratch is not None:
            s.scratch(int(fn.scratch(prim, arrays, params, outs)))
    except Exception:
        s.rule_raised = True  # the error comes from shapes and dtypes, not from placeholder values
        raise
    finally:
        s.current = prev
    return out


def _fresh(shape: Sequence[int], dtype: Any) -> np.ndarray:
    return meta_array(shape, dtype)


def _tiny(a: Any) -> Any:
    """A one-element stand-in with the same dtype, ndim and zero-sized dims (for probing)."""
    if isinstance(a, np.ndarray):
        return np.full(tuple(min(d, 1) for d in a.shape), _PROBE_FILL.get(a.dtype.kind, 0), a.dtype)
    if isinstance(a, (list, tuple)) and any(isinstance(x, np.ndarray) for x in a):
        return type(a)(_tiny(x) for x in a)
    return a


def _probe(prim: Any, arrays: Sequence, params: dict) -> Any:
    """The forward on one-element stand-ins: the output dtype, and the errors that do not
    depend on sizes (bad axes, dtypes, parameters)."""
    return prim.fwd(*[_tiny(a) for a in arrays], **{k: _tiny(v) for k, v in params.items()})


def _dtype_of(x: Any) -> np.dtype:
    return np.asarray(x).dtype


def _key(a: Any) -> Any:
    if isinstance(a, np.ndarray):
        return (a.dtype, tuple(min(d, 1) for d in a.shape))
    if isinstance(a, np.generic):
        return (a.dtype, a.item())
    if isinstance(a, (list, tuple)):
        return (type(a), tuple(_key(x) for x in a))
    return (type(a), a)


_PROBED: dict[Any, np.dtype] = {}


def _probe_dtype(prim: Any, arrays: Sequence, params: dict) -> np.dtype:
    """The dtype :func:`_probe` gives, remembered per (primitive, operand dtypes and ranks,
    parameters): the forward on stand-ins is the costliest part of a rule."""
    try:
        key = (prim, tuple(_key(a) for a in arrays), tuple((k, _key(v)) for k, v in params.items()))
        dt = _PROBED.get(key)
    except TypeError:  # an unhashable parameter
        return _dtype_of(_probe(prim, arrays, params))
    if dt is None:
        dt = _dtype_of(_probe(prim, arrays, params))  # errors are raised again each time, never cached
        if len(_PROBED) > 4096:
            _PROBED.clear()
        _PROBED[key] = dt
    return dt


def _np_shape(s: Sequence[int]) -> str:
    return "(" + ",".join(str(d) for d in s) + ("," if len(s) == 1 else "") + ")"


def _broadcast(shapes: Sequence[tuple]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:  # numpy's own wording, which apply() turns into torch's
        raise ValueError("operands could not be broadcast together with shapes "
                         + " ".join(_np_shape(s) for s in shapes) + " ") from None


def _is_operand(a: Any) -> bool:
    return isinstance(a, (np.ndarray, np.generic))


# ---------------------------------------------------------------- elementwise (the default rule)
ELEMENTWISE: frozenset[str] = frozenset({
    "abs", "acos", "acosh", "add", "asin", "asinh", "atanh", "atan", "atan2", "bce", "ceil", "clamp",
    "clamp_min_nograd",
    "clamp_t", "copysign", "cos", "cosh", "delayed_error", "div", "div_rounded", "elu", "erf", "erfc",
    "erfinv",
    "exp", "expm1", "floor", "fmod", "gelu", "gelu_backward", "heaviside", "hypot", "i0", "lgamma",
    "log", "log1p", "logaddexp", "logaddexp2", "logit", "maximum", "minimum", "mul", "neg",
    "polygamma", "pow", "prelu", "relu", "relu_backward", "remainder", "round", "sigmoid", "sign",
    "sin", "sinh",
    "softmax_backward", "softplus", "special_entr", "special_erfcx", "special_i0e", "special_i1",
    "special_i1e", "special_log_ndtr", "special_ndtr", "special_ndtri", "special_xlog1py",
    "special_zeta", "sqrt", "sub", "tan", "tanh", "to", "trunc", "where", "xlogy",
})
"""Primitives whose output is the broadcast of their array operands (positional and keyword)."""


def _elementwise(prim: Any, arrays: list, params: dict) -> Any:
    shapes = [np.shape(a) for a in arrays if _is_operand(a)]
    shapes += [a.shape for a in params.values() if isinstance(a, np.ndarray)]
    shape = _broadcast(shapes)
    return _fresh(shape, _probe_dtype(prim, arrays, params))


_elementwise.work = _passes  # type: ignore[attr-defined]
_elementwise.scratch = None  # type: ignore[attr-defined]


# ---------------------------------------------------------------- explicit rules
# Rules get the forward's arguments by name (bound to its signature), so they read like it.
_SPECS: dict[Callable, tuple[list[str], str | None, dict[str, Any]]] = {}


def _spec(fn: Callable) -> tuple[list[str], str | None, dict[str, Any]]:
    pos, var, defaults = [], None, {}
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            pos.append(p.name)
        elif p.kind == p.VAR_POSITIONAL:
            var = p.name
        if p.default is not p.empty:
            defaults[p.name] = p.default
    return pos, var, defaults


def _bound(prim: Any, arrays: Sequence, params: dict) -> dict[str, Any]:
    """The forward's arguments by name (positional ones, ``*var`` as a tuple, defaults filled)."""
    spec = _SPECS.get(prim.fwd)
    if spec is None:
        spec = _SPECS[prim.fwd] = _spec(prim.fwd)
    pos, var, defaults = spec
    out = dict(defaults)
    out.update(zip(pos, arrays))
    if var is not None:
        out[var] = tuple(arrays[len(pos):])
    out.update(params)
    return out


def _as_meta(out: Any) -> Any:
    """A forward result as a meta array: views of meta inputs stay views (no allocation)."""
    if isinstance(out, np.ndarray) and is_meta(out):
        return out
    out = np.asarray(out)
    return _fresh(out.shape, out.dtype)


@rule("expand", "permute", "windows", work=_free)
def _view(prim: Any, arrays: list, params: dict) -> Any:
    # broadcast_to, transpose and sliding windows of a zero-strided array are views
    return _as_meta(prim.fwd(*arrays, **params))


@rule("reshape")
def _reshape(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    x = a["x"]
    out = np.reshape(x, a["shape"])  # a view of a zero-strided array; numpy's errors
    root = _root_of(x)
    if root is not None and x.size > root.meta_numel and out.shape != x.shape:
        return _fresh(out.shape, out.dtype)  # reshaping a broadcast copies in a real run
    return _as_meta(out)


@rule("diagonal")
def _diagonal(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    v = np.diagonal(a["x"], a["offset"], a["dim1"], a["dim2"])  # a view, as the forward's
    return _fresh(v.shape, v.dtype)


# ---------------------------------------------------------------- reductions and scans
def _reduced(shape: tuple, dims: Any, keepdim: bool) -> tuple[int, ...]:
    nd = len(shape)
    if nd == 0:
        return ()
    axes = set(range(nd)) if dims is None else set(normalize_axis_tuple(dims, nd))
    if keepdim:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


@rule("sum", "mean", "amax", "amin", "prod", "linalg_vector_norm")
def _reduction(prim: Any, arrays: list, params: dict) -> Any:
    dt = _probe_dtype(prim, arrays, params)  # bad axes, empty reductions without identity
    a = _bound(prim, arrays, params)
    dims = a["dims"] if "dims" in a else a["dim"]
    return _fresh(_reduced(np.shape(a["x"]), dims, bool(a.get("keepdim"))), dt)


@rule("standardize")
def _standardize(prim: Any, arrays: list, params: dict) -> Any:
    x = _bound(prim, arrays, params)["x"]
    dt = _dtype_of(_probe(prim, arrays, params)[0])
    return _fresh(np.shape(x), dt), _fresh(_reduced(np.shape(x), params["dims"], True), dt)


@rule("cumsum", "cumprod", "logcumsumexp", "log_softmax", "softmax")
def _scan(prim: Any, arrays: list, params: dict) -> Any:
    return _fresh(np.shape(arrays[0]), _probe_dtype(prim, arrays, params))


@rule("median_all")
def _scalar(prim: Any, arrays: list, params: dict) -> Any:
    return _fresh((), _probe_dtype(prim, arrays, params))


# ---------------------------------------------------------------- joins
@rule("cat")
def _cat(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    xs = [np.asarray(x) for x in a["xs"]]
    nd = xs[0].ndim
    for i, x in enumerate(xs):
        if x.ndim != nd:
            raise ValueError(f"all the input arrays must have same number of dimensions, but the array "
                             f"at index 0 has {nd} dimension(s) and the array at index {i} has "
                             f"{x.ndim} dimension(s)")
    ax = normalize_axis_index(a["dim"], nd)
    for i, x in enumerate(xs):
        for d in range(nd):
            if d != ax and x.shape[d] != xs[0].shape[d]:
                raise ValueError(f"all the input array dimensions except for the concatenation axis "
                                 f"must match exactly, but along dimension {d}, the array at index 0 "
                                 f"has size {xs[0].shape[d]} and the array at index {i} has size "
                                 f"{x.shape[d]}")
    shape = list(xs[0].shape)
    shape[ax] = sum(x.shape[ax] for x in xs)
    return _fresh(shape, np.result_type(*[x.dtype for x in xs]))


# ---------------------------------------------------------------- linear algebra
# Cost rules of the linear algebra primitives: FLOPs (weighted) and LAPACK's workspaces.
def _batch(a: np.ndarray) -> int:
    return math.prod(a.shape[:-2]) if a.ndim > 2 else 1


def _mn(a: np.ndarray) -> tuple[int, int]:
    return (a.shape[-2], a.shape[-1]) if a.ndim >= 2 else (1, max(a.size, 1))


def _matmul_work(prim: Any, arrays: Sequence, params: dict, outs: tuple) -> float:
    a = arrays[0]
    k = a.shape[-1] if a.ndim else 1
    return 2 * outs[0].size * k * BLAS_FLOP + _passes(prim, arrays, params, outs)


def _linear_work(prim: Any, arrays: Sequence, params: dict, outs: tuple) -> float:
    x = arrays[0]
    return 2 * outs[0].size * (x.shape[-1] if x.ndim else 1) * BLAS_FLOP + _passes(prim, arrays, params, outs)


def _einsum_work(prim: Any, arrays: Sequence, params: dict, outs: tuple) -> float:
    # a contraction visits every combination of its labels' sizes once (numpy may do better)
    a = _bound(prim, arrays, params)
    ops, subs = a["ops"], a["subs"]
    size: dict[Any, int] = {}
    for o, sub in zip(ops, subs):
        for lab, n in zip(sub, np.shape(o)):
            size[lab] = max(size.get(lab, 1), n)
    return 2 * math.prod(size.values()) * BLAS_FLOP + _passes(prim, arrays, params, outs)


def _cubic(flops_per_n3: float, scratch_per_mn: float = 1.0, scratch_per_k2: float = 0.0) -> tuple:
    """(work, scratch) rules for a factorization of each m x n matrix of operand 0: about
    ``flops_per_n3 * m * n * min(m, n)`` FLOPs, and a copy plus workspace of
    ``scratch_per_mn * m * n + scratch_per_k2 * min(m, n)**2`` doubles (numpy's gufuncs
    factor one matrix at a time, so the workspace is one matrix's)."""
    def work(prim: Any, arrays: Sequence, params: dict, outs: tuple) -> float:
        a = arrays[0]
        m, n = _mn(a)
        flops = _batch(a) * flops_per_n3 * m * n * min(m, n)
        return flops * LAPACK_FLOP + _passes(prim, arrays, params, outs)

    def scratch(prim: Any, arrays: Sequence, params: dict, outs: tuple) -> float:
        m, n = _mn(arrays[0])
        return _F8 * (scratch_per_mn * m * n + scratch_per_k2 * min(m, n) ** 2 + 8 * max(m, n))

    return work, scratch


_LU_WORK, _LU_SCRATCH = _cubic(2.0, 2.0)          # inv, solve, det: a copy and the identity/rhs
_EIGH_WORK, _EIGH_SCRATCH = _cubic(9.0, 1.0, 2.0)  # syevd: 1 + 6n + 2n^2
_SVD_WORK, _SVD_SCRATCH = _cubic(22.0, 1.0, 7.0)   # gesdd: about 3k^2 + 4k^2 + 4k
_QR_WORK, _QR_SCRATCH = _cubic(2.0, 2.0)


def _solve_work(prim: Any, arrays: Sequence, params: dict, outs: tuple) -> float:
    a, b = arrays[0], arrays[1]
    n = a.shape[-1] if a.ndim else 1
    rhs = b.shape[-1] if b.ndim >= 2 else 1
    batch = max(_batch(a), _batch(b))
    return batch * (2 * n ** 3 + 2 * n * n * rhs) * LAPACK_FLOP + _passes(prim, arrays, params, outs)


def _tri_solve_work(prim: Any, arrays: Sequence, params: dict, outs: tuple) -> float:
    a = arrays[0]
    n = a.shape[-1] if a.ndim else 1
    return max(outs[0].size, 1) * n * LAPACK_FLOP + _passes(prim, arrays, params, outs)


_MATMUL_SIG = "(n?,k),(k,m?)->(n?,m?)"


@rule("matmul", work=_matmul_work)
def _matmul(prim: Any, arrays: list, params: dict) -> Any:
    a, b = np.asarray(arrays[0]), np.asarray(arrays[1])
    for i, x in enumerate((a, b)):
        if x.ndim == 0:
            raise ValueError(f"matmul: Input operand {i} does not have enough dimensions (has 0, gufunc "
                             f"core with signature {_MATMUL_SIG} requires 1)")
    a2 = a.shape if a.ndim > 1 else (1,) + a.shape
    b2 = b.shape if b.ndim > 1 else b.shape + (1,)
    if a2[-1] != b2[-2]:
        raise ValueError(f"matmul: Input operand 1 has a mismatch in its core dimension 0, with gufunc "
                         f"signature {_MATMUL_SIG} (size {b2[-2]} is different from {a2[-1]})")
    shape = _broadcast([a2[:-2], b2[:-2]]) + (a2[-2],) * (a.ndim > 1) + (b2[-1],) * (b.ndim > 1)
    return _fresh(shape, _probe_dtype(prim, (a, b), params))


@rule("linear", work=_linear_work)
def _linear(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    x, w = a["x"], a["w"]
    return _fresh(x.shape[:-1] + w.shape[:1], _probe_dtype(prim, arrays, params))


@rule("einsum", work=_einsum_work)
def _einsum(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    ops, subs, out = a["ops"], a["subs"], a["out"]
    if len(dict.fromkeys([*(s for sub in subs for s in sub), *out])) > 52:
        raise RuntimeError("einsum(): at most 52 distinct subscripts (ellipsis dims included) are "
                           "supported")
    size: dict[int, int] = {}
    for o, sub in zip(ops, subs):
        for lab, n in zip(sub, np.shape(o)):
            if size.get(lab, 1) == 1:  # a size-1 (ellipsis) dim broadcasts
                size[lab] = n
    return _fresh(tuple(size.get(lab, 1) for lab in out), np.asarray(ops[0]).dtype)


def _square(a: np.ndarray) -> None:
    if a.ndim < 2:
        raise np.linalg.LinAlgError(f"{a.ndim}-dimensional array given. Array must be at least "
                                    "two-dimensional")
    if a.shape[-1] != a.shape[-2]:
        raise np.linalg.LinAlgError("Last 2 dimensions of the array must be square")


def _float(a: np.ndarray) -> np.dtype:
    return a.dtype if a.dtype.kind == "f" else np.dtype(np.float64)


@rule("linalg_inv_ex", "linalg_cholesky_ex", work=_LU_WORK, scratch=_LU_SCRATCH)  # cholesky: less
def _same_square(prim: Any, arrays: list, params: dict) -> Any:
    a = arrays[0]
    _square(a)
    return _fresh(a.shape, _float(a))


@rule("linalg_det", work=_LU_WORK, scratch=_LU_SCRATCH)
def _det(prim: Any, arrays: list, params: dict) -> Any:
    a = arrays[0]
    _square(a)
    return _fresh(a.shape[:-2], _float(a))


@rule("linalg_slogdet", work=_LU_WORK, scratch=_LU_SCRATCH)
def _slogdet(prim: Any, arrays: list, params: dict) -> Any:
    a = arrays[0]
    _square(a)
    return _fresh(a.shape[:-2], _float(a)), _fresh(a.shape[:-2], _float(a))


@rule("linalg_eigh", work=_EIGH_WORK, scratch=_EIGH_SCRATCH)
def _eigh(prim: Any, arrays: list, params: dict) -> Any:
    a = arrays[0]
    _square(a)
    return _fresh(a.shape[:-1], _float(a)), _fresh(a.shape, _float(a))


@rule("linalg_svd", work=_SVD_WORK, scratch=_SVD_SCRATCH)
def _svd(prim: Any, arrays: list, params: dict) -> Any:
    b = _bound(prim, arrays, params)
    a = b["a"]
    *batch, m, n = a.shape
    k = min(m, n)
    dt = _float(a)
    u, vh = ((m, m), (n, n)) if b["full_matrices"] else ((m, k), (k, n))
    return _fresh((*batch, *u), dt), _fresh((*batch, k), dt), _fresh((*batch, *vh), dt)


@rule("linalg_qr", work=_QR_WORK, scratch=_QR_SCRATCH)
def _qr(prim: Any, arrays: list, params: dict) -> Any:
    b = _bound(prim, arrays, params)
    a, mode = b["a"], b["mode"]
    *batch, m, n = a.shape
    k = min(m, n)
    dt = _float(a)
    if mode == "r":
        return _fresh((0,), dt), _fresh((*batch, k, n), dt)
    if mode == "complete":
        return _fresh((*batch, m, m), dt), _fresh((*batch, m, n), dt)
    return _fresh((*batch, m, k), dt), _fresh((*batch, k, n), dt)


@rule("linalg_pinv", work=_SVD_WORK, scratch=_SVD_SCRATCH)
def _pinv(prim: Any, arrays: list, params: dict) -> Any:
    b = _bound(prim, arrays, params)
    a = b["a"]
    tol = [np.shape(b[k]) for k in ("atol", "rtol") if isinstance(b[k], np.ndarray)]
    batch = _broadcast([a.shape[:-2], *tol])
    return _fresh((*batch, a.shape[-1], a.shape[-2]), a.dtype)


def _solve_shape(a: np.ndarray, b: np.ndarray) -> tuple[int, ...]:
    batch = _broadcast([a.shape[:-2], b.shape[:-2]])
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"solve: Input operand 1 has a mismatch in its core dimension 0, with gufunc "
                         f"signature (m,m),(m,n)->(m,n) (size {b.shape[-2]} is different from "
                         f"{a.shape[-1]})")
    return (*batch, *b.shape[-2:])


@rule("linalg_solve_ex", work=_solve_work, scratch=_LU_SCRATCH)
def _solve(prim: Any, arrays: list, params: dict) -> Any:
    a, b = arrays[0], arrays[1]
    _square(a)
    return _fresh(_solve_shape(a, b), np.result_type(a.dtype, b.dtype))


@rule("linalg_solve_triangular", work=_tri_solve_work)
def _solve_triangular(prim: Any, arrays: list, params: dict) -> Any:
    bd = _bound(prim, arrays, params)
    a, b = bd["a"], bd["b"]
    _square(a)
    if bd["left"]:
        shape = _solve_shape(a, b)
    else:  # X A = B is A^T X^T = B^T
        t = _solve_shape(a, np.swapaxes(b, -1, -2))
        shape = (*t[:-2], t[-1], t[-2])
    return _fresh(shape, np.result_type(a.dtype, b.dtype))


@rule("cholesky_solve", work=_tri_solve_work)
def _cholesky_solve(prim: Any, arrays: list, params: dict) -> Any:
    b, u = arrays[0], arrays[1]
    _square(u)
    return _fresh(_solve_shape(u, b), np.result_type(b.dtype, u.dtype))


@rule("linalg_cross")
def _cross(prim: Any, arrays: list, params: dict) -> Any:
    bd = _bound(prim, arrays, params)
    a, b = bd["a"], bd["b"]
    shape = _broadcast([a.shape, b.shape])
    ax = normalize_axis_index(bd["dim"], len(shape))
    if shape[ax] not in (2, 3):
        raise ValueError("incompatible dimensions for cross product\n(dimension must be 2 or 3)")
    return _fresh(shape, np.result_type(a.dtype, b.dtype))


@rule("tril", "triu")
def _tri(prim: Any, arrays: list, params: dict) -> Any:
    x = arrays[0]
    if x.ndim < 2:
        return _as_meta(_probe(prim, arrays, params))
    return _fresh(x.shape, x.dtype)


@rule("diag_scatter")
def _diag_scatter(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    return _fresh(a["shape"], a["g"].dtype)


# ---------------------------------------------------------------- indexing and scatter
def _consumed(k: Any) -> int:
    if k is None or k is Ellipsis or isinstance(k, (bool, np.bool_)):
        return 0
    if isinstance(k, np.ndarray) and k.dtype == np.bool_:
        return k.ndim
    return 1


def _check_bounds(idx: np.ndarray | int, size: int, axis: int) -> None:
    if isinstance(idx, np.ndarray):
        if idx.size == 0 or is_meta(idx):
            return  # placeholder values say nothing: the real run checks them
        flat = idx.reshape(-1)
        out = flat[(flat >= size) | (flat < -size)]
        bad = int(out[0]) if out.size else None  # numpy names the first, in order
    else:
        bad = idx if not -size <= idx < size else None
    if bad is not None:
        raise IndexError(f"index {bad} is out of bounds for axis {axis} with size {size}")


def _is_mask(k: Any) -> bool:
    return isinstance(k, (bool, np.bool_)) or (isinstance(k, np.ndarray) and k.dtype == np.bool_)


def index_shape(shape: tuple[int, ...], key: tuple) -> tuple[tuple[int, ...], bool]:
    """numpy's result shape for ``x[key]`` without indexing, and whether it is an upper bound
    (a boolean mask of unknown values). Raises numpy's IndexError for bad keys."""
    key = tuple(np.asarray(k) if isinstance(k, list) else k for k in key)
    n_ell = sum(1 for k in key if k is Ellipsis)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    nd = len(shape)
    used = sum(_consumed(k) for k in key)
    if used > nd:
        raise IndexError(f"too many indices for array: array is {nd}-dimensional, but {used} were indexed")
    full: list = []
    for k in key:
        full.extend([slice(None)] * (nd - used) if k is Ellipsis else [k])
    if not n_ell:
        full.extend([slice(None)] * (nd - used))
    fancy = any(_is_mask(k) or isinstance(k, np.ndarray) for k in full)
    out: list = []             # result dims; None marks where the advanced block goes
    blocks: list = []
    where: list[int] = []
    upper = False
    axis = 0
    checks: list[tuple] = []   # bounds of advanced indices: numpy checks them only if any is used
    for pos, k in enumerate(full):
        if k is None:
            out.append(1)
        elif isinstance(k, slice):
            out.append(len(range(*k.indices(shape[axis]))))
            axis += 1
        elif _is_mask(k):
            m = np.asarray(k)
            for j in range(m.ndim):
                if m.shape[j] != shape[axis + j]:
                    raise IndexError(f"boolean index did not match indexed array along axis {axis + j}; "
                                     f"size of axis is {shape[axis + j]} but size of corresponding "
                                     f"boolean axis is {m.shape[j]}")
            if _local.session is not None:
                _local.session.value_dependent = True  # another mask, another size
            if is_meta(m):
                count, upper = m.size, True
            else:
                count = int(np.count_nonzero(m))
            blocks.extend([(count,)] * max(m.ndim, 1))  # numpy lists a mask as its nonzero() arrays
            where.append(pos)
            out.append(None)
            axis += m.ndim
        elif isinstance(k, (int, np.integer)) and not fancy:
            _check_bounds(int(k), shape[axis], axis)
            axis += 1
        else:
            a = np.asarray(k)
            if a.dtype.kind not in "iu":
                raise IndexError("only integers, slices (`:`), ellipsis (`...`), numpy.newaxis (`None`) "
                                 "and integer or boolean arrays are valid indices")
            if a.ndim:
                checks.append((a, shape[axis], axis))
                blocks.append(a.shape)
            else:  # integers are checked first, used or not, and broadcast as ()
                _check_bounds(int(a), shape[axis], axis)
            where.append(pos)
            out.append(None)
            axis += 1
    if not where:
        return tuple(out), upper
    try:
        block = tuple(np.broadcast_shapes(*blocks)) if blocks else ()
    except ValueError:
        raise IndexError("shape mismatch: indexing arrays could not be broadcast together with shapes "
                         + " ".join(_np_shape(s) for s in blocks) + " ") from None
    if math.prod(block):
        for c in checks:
            _check_bounds(*c)
    rest = tuple(d for d in out if d is not None)
    if where == list(range(where[0], where[0] + len(where))):  # adjacent: the block stays in place
        first = out.index(None)
        return tuple(out[:first]) + block + tuple(d for d in out[first:] if d is not None), upper
    return block + rest, upper


def _basic(key: tuple) -> bool:
    return all(k is None or k is Ellipsis or isinstance(k, (slice, np.integer))
               or (isinstance(k, int) and not isinstance(k, bool)) for k in key)


@rule("index")
def _index(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    x, key = a["x"], a["key"]
    key = key if isinstance(key, tuple) else (key,)
    if _basic(key):
        return _as_meta(x[key])  # a view, with numpy's errors
    shape, upper = index_shape(x.shape, key)
    if upper and _local.session is not None:
        _local.session.inexact = True
    return _fresh(shape, x.dtype)


@rule("index_backward", "scatter_add_zeros")
def _zeros_of_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    return _fresh(a["shape"], a["g"].dtype)


@rule("put", "index_put", "setitem_slices", "copy_slices", "flip", "scatter_reduce")
def _same_as_x(prim: Any, arrays: list, params: dict) -> Any:
    x = _bound(prim, arrays, params)["x"]
    return _fresh(x.shape, x.dtype)


@rule("zero", "fill", "fill_tensor", "copy", "uniform_fill", "normal_fill", "bernoulli_fill",
      "exponential_fill", "log_normal_fill", "cauchy_fill", "geometric_fill")
def _like_x(prim: Any, arrays: list, params: dict) -> Any:
    x = _bound(prim, arrays, params)["x"]
    if prim.name == "copy":  # torch's broadcast error for a source that does not fit
        _broadcast([np.shape(arrays[1]), x.shape])
    return _fresh(x.shape, x.dtype)


@rule("view_replay", work=_free)
def _view_replay(prim: Any, arrays: list, params: dict) -> Any:
    # the view chain replayed on the meta array, by the view ops' own rules (engine.ops.inplace)
    return params["chain"].meta(arrays[0])


@rule("gather")
def _gather(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    x, idx = a["x"], np.asarray(a["idx"])
    if x.ndim != idx.ndim:
        raise ValueError("`indices` and `arr` must have the same number of dimensions")
    ax = normalize_axis_index(a["dim"], max(x.ndim, 1))
    if all(i <= n for d, (i, n) in enumerate(zip(idx.shape, x.shape)) if d != ax):
        return _fresh(idx.shape, x.dtype)  # torch's gather: the index's extent (engine.ops.shape._gather)
    base = tuple(1 if i == ax else d for i, d in enumerate(x.shape))
    return _fresh(_broadcast([idx.shape, base]), x.dtype)


@rule("take")
def _take(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    x, idx = a["x"], np.asarray(a["idx"])
    ax = normalize_axis_index(a["axis"], max(x.ndim, 1))
    return _fresh(x.shape[:ax] + idx.shape + x.shape[ax + 1:], x.dtype)


@rule("take_add")
def _take_add(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    g, idx, ax = a["g"], np.asarray(a["idx"]), a["axis"]
    return _fresh(g.shape[:ax] + (a["n"],) + g.shape[ax + idx.ndim:], g.dtype)


# ---------------------------------------------------------------- padding and windows
@rule("pad_constant")
def _pad_constant(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    x = a["x"]
    return _fresh(tuple(s + lo + hi for s, (lo, hi) in zip(x.shape, a["pads"])), x.dtype)


@rule("fold_windows")
def _fold_windows(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    g, k = a["g"], len(a["kernel"])
    return _fresh(g.shape[:g.ndim - 2 * k] + tuple(a["size"]), g.dtype)


def _conv_work(prim: Any, arrays: Sequence, params: dict, outs: tuple) -> float:
    """2 FLOPs per (output element, weight it multiplies); for the weight gradient, per
    (weight, position of the output gradient it sums over)."""
    a = _bound(prim, arrays, params)
    w, g = a.get("w"), a.get("g")
    if w is not None and g is None:     # conv_gemm: w is (out channels, in channels / groups, *kernel)
        n, per = outs[0].size, w.size // max(w.shape[0], 1)
    elif w is not None:                 # conv_xgrad: every output gradient meets w[:, ...]
        n, per = g.size, w.size // max(w.shape[0], 1)
    else:                               # conv_wgrad
        n, per = outs[0].size, g.size // max(g.shape[1], 1)
    return 2 * n * per * BLAS_FLOP + _passes(prim, arrays, params, outs)


@rule("conv_gemm", work=_conv_work)
def _conv_gemm(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    x, w = a["x"], a["w"]
    return _fresh((x.shape[0], w.shape[0]) + tuple(a["out"]), np.result_type(x.dtype, w.dtype))


@rule("conv_wgrad", work=_conv_work)
def _conv_wgrad(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    x, g = a["x"], a["g"]
    return _fresh((g.shape[1], x.shape[1] // a["groups"]) + tuple(a["kernel"]),
                  np.result_type(x.dtype, g.dtype))


@rule("conv_xgrad", work=_conv_work)
def _conv_xgrad(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    g, w = a["g"], a["w"]
    return _fresh((g.shape[0], w.shape[1] * a["groups"]) + tuple(a["size"]),
                  np.result_type(g.dtype, w.dtype))


# ---------------------------------------------------------------- public ops that allocate outside primitives
OP_RULES: dict[str, Callable] = {}
"""Overrides by public op name: ``rule(fn, *args, **kwargs)`` where ``fn`` is the real op."""


def op_rule(*names: str) -> Callable[[Callable], Callable]:
    def deco(fn: Callable) -> Callable:
        for n in names:
            OP_RULES[n] = fn
        return fn
    return deco


def run_op(name: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call the public op ``name`` in meta mode (through its override, if it has one)."""
    r = OP_RULES.get(name)
    if r is None:
        return fn(*args, **kwargs)
    s = _local.session
    if s is None:
        return r(fn, *args, **kwargs)
    prev, s.current = s.current, name
    try:
        return r(fn, *args, **kwargs)
    finally:
        s.current = prev


def _prechecked(shapes: Callable[..., list]) -> Callable:
    """An override for an op that builds arrays sized by its parameters in numpy (outside
    primitives): ``shapes(*args, **kwargs)`` lists the sizes it will build, checked first."""

    def rule(fn: Callable, *args: Any, **kwargs: Any) -> Any:
        s = _local.session
        if s is not None:
            try:
                want = shapes(*args, **kwargs)
            except Exception:  # arguments the op rejects: its own error follows
                want = []
            for shape in want:
                s.check_shape(shape, f"the result of {s.current}")
        return fn(*args, **kwargs)

    return rule


def _spatial(x: Any, nd: int) -> tuple[int, ...]:
    return tuple(x._data.shape[-nd:]) if isinstance(x, Tensor) else ()


def _interpolate_shapes(input: Any, size: Any = None, scale_factor: Any = None, *args: Any,
                        **kw: Any) -> list:
    x = input._data
    nd = x.ndim - 2
    sp = x.shape[2:]
    if size is not None:
        out = (int(size),) * nd if isinstance(size, (int, np.integer)) else tuple(int(v) for v in size)
    else:
        sf = (float(scale_factor),) * nd if isinstance(scale_factor, (int, float)) \
            else tuple(float(v) for v in scale_factor)
        out = tuple(int(math.floor(float(i) * f)) for i, f in zip(sp, sf))
    return [x.shape[:2] + out, *((o,) for o in out)]


def _adaptive_shapes(nd: int, matrix: bool) -> Callable[..., list]:
    def shapes(input: Any, output_size: Any, *args: Any, **kw: Any) -> list:
        sp = _spatial(input, nd)
        out = (output_size,) * nd if output_size is None or isinstance(output_size, (int, np.integer)) \
            else tuple(output_size)
        out = tuple(i if o is None else int(o) for i, o in zip(sp, out))
        lead = input._data.shape[:-nd]
        return [lead + out, *(((i, o) if matrix else (o,)) for i, o in zip(sp, out))]
    return shapes


def _mvlgamma_shapes(input: Any, p: Any, *args: Any, **kw: Any) -> list:
    # its offsets are np.arange(p), built outside primitives: sized before they are built
    n = int(p)
    return [(n,), tuple(input._data.shape) + (n,)] if n > 0 else []


OP_RULES["nn.functional.interpolate"] = _prechecked(_interpolate_shapes)
OP_RULES["mvlgamma"] = OP_RULES["special.multigammaln"] = _prechecked(_mvlgamma_shapes)
for _nd in (1, 2, 3):
    OP_RULES[f"nn.functional.adaptive_avg_pool{_nd}d"] = _prechecked(_adaptive_shapes(_nd, True))
    OP_RULES[f"nn.functional.adaptive_max_pool{_nd}d"] = _prechecked(_adaptive_shapes(_nd, False))


def _meta_tensor(like: Tensor, shape: Sequence[int]) -> Tensor:
    s = _local.session
    if s is not None:
        s.add_work(WORK_PER_CALL + math.prod(shape))  # a constructor writes every element once
    t = Tensor._make(_fresh(shape, like._data.dtype))
    if like.requires_grad:
        t.requires_grad_()
    return t


def _small(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(min(int(s), 1) for s in shape)


def _valid_size(size: Sequence[Any]) -> bool:
    return all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in size)


def _size_args(args: tuple) -> tuple:
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list, Size)) else args


@op_rule("zeros", "ones", "empty", "rand", "randn")
def _ctor_sizes(fn: Callable, *size: Any, **kwargs: Any) -> Any:
    shape = _size_args(size)
    if not _valid_size(shape):
        return fn(*size, **kwargs)  # raises before allocating
    return _meta_tensor(fn(*_small(shape), **kwargs), shape)


@op_rule("full")
def _ctor_full(fn: Callable, size: Any, *args: Any, **kwargs: Any) -> Any:
    shape = _size_args((size,))
    if not _valid_size(shape):
        return fn(size, *args, **kwargs)
    return _meta_tensor(fn(_small(shape), *args, **kwargs), shape)


@op_rule("new_zeros", "new_ones")
def _ctor_new(fn: Callable, input: Any, *size: Any, **kwargs: Any) -> Any:
    shape = _size_args(size)
    if not _valid_size(shape):
        return fn(input, *size, **kwargs)
    return _meta_tensor(fn(input, *_small(shape), **kwargs), shape)


@op_rule("new_full")
def _ctor_new_full(fn: Callable, input: Any, size: Any, *args: Any, **kwargs: Any) -> Any:
    shape = _size_args((size,))
    if not _valid_size(shape):
        return fn(input, size, *args, **kwargs)
    return _meta_tensor(fn(input, _small(shape), *args, **kwargs), shape)


@op_rule("randint")
def _ctor_randint(fn: Callable, low: Any, high: Any = None, size: Any = (), *args: Any, **kwargs: Any) -> Any:
    if "size" in kwargs:
        size = kwargs.pop("size")
    shape = _size_args((size,))
    if not _valid_size(shape):
        return fn(low, high, size, *args, **kwargs)
    return _meta_tensor(fn(low, high, _small(shape), *args, **kwargs), shape)


@op_rule("zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like")
def _ctor_like(fn: Callable, input: Any, *args: Any, **kwargs: Any) -> Any:
    if not isinstance(input, Tensor):
        return fn(input, *args, **kwargs)
    small = Tensor._make(np.full(_small(input._data.shape), _PROBE_FILL.get(input._data.dtype.kind, 0),
                                 input._data.dtype))
    return _meta_tensor(fn(small, *args, **kwargs), input._data.shape)


def _scalar_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


@op_rule("arange")
def _ctor_arange(fn: Callable, start: Any, end: Any = None, step: Any = 1, **kwargs: Any) -> Any:
    lo, hi = (0, start) if end is None else (start, end)
    if not all(_scalar_number(v) for v in (lo, hi, step)) or step == 0 or (hi - lo) / step < 0:
        if any(isinstance(v, Tensor) for v in (start, end, step)):
            raise Unknown("arange with tensor bounds")
        return fn(start, end, step, **kwargs)  # the real op's errors (nothing is allocated)
    n = math.ceil((hi - lo) / step)
    if n <= 1:
        return fn(start, end, step, **kwargs)
    return _meta_tensor(fn(lo, lo + step, step, **kwargs), (n,))


@op_rule("linspace")
def _ctor_linspace(fn: Callable, start: Any, end: Any, steps: Any, **kwargs: Any) -> Any:
    if not (isinstance(steps, (int, np.integer)) and steps > 2) or isinstance(steps, bool):
        return fn(start, end, steps, **kwargs)
    return _meta_tensor(fn(start, end, 2, **kwargs), (int(steps),))


@op_rule("eye")
def _ctor_eye(fn: Callable, n: Any, m: Any = None, **kwargs: Any) -> Any:
    dims = (n,) if m is None else (n, m)
    if not _valid_size(dims):
        return fn(n, m, **kwargs)
    return _meta_tensor(fn(min(n, 1), None if m is None else min(m, 1), **kwargs),
                        (n, n if m is None else m))


@op_rule("eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor")
def _compare(fn: Callable, input: Any, other: Any, *args: Any, **kwargs: Any) -> Any:
    # numpy broadcasting outside any primitive: infer, never compute
    shapes = [x._data.shape for x in (input, other) if isinstance(x, Tensor)]
    shapes += [np.shape(x) for x in (input, other) if isinstance(x, np.ndarray)]
    shape = _broadcast(shapes)

    def small(x: Any) -> Any:
        return Tensor._make(_tiny(x._data)) if isinstance(x, Tensor) else _tiny(x)

    probe = fn(small(input), small(other), *args, **kwargs)
    try:
        return _meta_tensor(probe, shape)
    except ValueError as e:  # pragma: no cover - the probe raised what the real op raises
        raise RuntimeError(str(e)) from None


@op_rule("repeat_interleave")
def _repeat_interleave(fn: Callable, input: Any, repeats: Any = None, dim: Any = None, **kwargs: Any) -> Any:
    counts = input if repeats is None else repeats
    vals = counts._data if isinstance(counts, Tensor) else np.asarray(counts)
    if isinstance(counts, Tensor) and _local.session is not None:
        _local.session.value_dependent = True  # other counts, another size
    if is_meta(vals):
        raise Unknown("repeat_interleave with computed counts: the result's size depends on their values")
    s = _local.session
    if s is None or vals.dtype.kind not in "iub" or not isinstance(input, Tensor):
        return fn(input, repeats, dim, **kwargs)
    # the counts are known: refuse a result over the limit before numpy builds its index
    x = input._data
    if repeats is None:
        total, rest = int(vals.sum()), 1
    else:
        try:
            d = None if dim is None else normalize_axis_index(dim, max(x.ndim, 1))
        except Exception:
            return fn(input, repeats, dim, **kwargs)  # its own error
        n = x.size if d is None else (x.shape[d] if x.ndim else 1)
        rest = 1 if d is None or n == 0 else x.size // n
        total = int(vals.reshape(())) * n if vals.size == 1 else int(vals.sum())
    if total >= 0:
        s.check_shape((total, rest), "the result of repeat_interleave")
    return fn(input, repeats, dim, **kwargs)


@op_rule("diff")
def _diff(fn: Callable, input: Any, n: Any = 1, dim: Any = -1, prepend: Any = None,
          append: Any = None) -> Any:
    # n passes over the input, one primitive loop each: refused before the loop when over budget
    s = _local.session
    if s is not None and s.max_work is not None and isinstance(input, Tensor) and type(n) is int and n > 0:
        parts = [t for t in (prepend, input, append) if isinstance(t, Tensor)]
        numel = sum(t._data.size for t in parts)
        try:
            length = sum(t._data.shape[dim] for t in parts if t._data.ndim)
        except IndexError:
            length = 0
        steps = min(n, length)
        need = steps * (3 * numel + 3 * WORK_PER_CALL) / 2  # the size shrinks by one per pass
        if s.work + need > s.max_work:
            raise TooMuchWork(s.work + need, s.max_work, "diff")
    return fn(input, n, dim, prepend, append)


@op_rule("nn.functional.one_hot")
def _one_hot(fn: Callable, tensor: Any, num_classes: Any = -1) -> Any:
    if not isinstance(tensor, Tensor) or not isinstance(num_classes, int):
        return fn(tensor, num_classes)
    idx = tensor._data
    if num_classes == -1 and _local.session is not None:
        _local.session.value_dependent = True  # the largest index sets the size
    if not is_meta(idx):  # real class indices (a graph input): the real op, once its size is known
        n = num_classes
        if n == -1 and idx.size and idx.dtype == np.int64:
            n = int(idx.max()) + 1
        s = _local.session
        if s is not None:
            s.check_shape(idx.shape + (max(n, 0),), "the result of one_hot")
        return fn(tensor, num_classes)
    if num_classes == -1:
        raise Unknown("one_hot without num_classes: the number of classes depends on the values")
    s = _local.session
    if s is not None:
        s.check_shape(idx.shape + (max(num_classes, 0),), "the result of one_hot")
    probe = fn(Tensor._make(np.zeros(_small(idx.shape), idx.dtype)), min(max(num_classes, 0), 1))
    return _meta_tensor(probe, idx.shape + (num_classes,))
