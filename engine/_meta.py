"""Meta execution: run engine code on tensors that carry a shape and a dtype but no values.

Inside ``with meta_mode() as m:`` every primitive's numpy forward is replaced by its *shape
rule*, so public ops (compositions of primitives plus Python) infer their result shapes and
dtypes by running as usual, and raise the errors they would raise, without computing anything.
A meta array is a zero-strided view of a 0-d array (``np.broadcast_to``): an ``expand`` to
10^12 elements or a 100k x 100k ``matmul`` allocates nothing. Backward runs the same way (VJPs
are engine ops), so gradient shapes, ``create_graph`` graphs and what backward saves come free.

Each primitive's shape rule sits on its record, beside its forward, VJP, JVP and batching rule,
in the module that defines it (``Primitive.defshape``, one record per primitive as in JAX's
``lax``); with it, its cost rule (``work=``, ``scratch=``: see "cost rules" below). This module
holds the machinery that reads them (meta arrays, sessions, limits, :func:`_infer`), the helpers
rules are written with (``_bound``, ``_fresh``, ``_probe_dtype``, ``_broadcast``, ``_reduced``,
:func:`index_shape`, the linear-algebra cost helpers) and the shared rules
:func:`elementwise_shape` (numpy broadcasting; the dtype comes from running the forward on
one-element inputs) and :func:`view_shape`. Adding a primitive touches its own module only::

    @primitive(save=(0,))
    def _cube(x):
        return x ** 3
    _cube.defvjp(lambda ctx, g, x: g * 3 * x * x)
    _cube.defjvp(diagonal_jvp)
    _cube.defbatch(elementwise_batch)
    _cube.defshape(elementwise_shape)   # or @_cube.defshape(work=...) over a rule of its own

Every primitive must have a rule (a test enforces it); a primitive without one raises
:class:`Unknown`, never a wrong answer. Rules registered the old way, by name in :data:`RULES`
or :data:`ELEMENTWISE`, still work (read after the record). :data:`OP_RULES` overrides a few
public ops that allocate outside primitives: constructors (``ones(10**5, 10**5)`` must not
allocate) and comparisons. Each rule's outputs are checked against the element limit, intermediate
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
           "work_of", "elementwise_shape", "view_shape", "index_shape"]


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
# A primitive's shape rule and cost rule are on its record (``Primitive.defshape``, stated in the
# module that defines the primitive). RULES and ELEMENTWISE are the tables that held them before:
# empty here, they still work for code written against them (read after the record).
RULES: dict[str, Callable] = {}
"""Legacy shape rules by primitive name (see :func:`rule`): ``rule(prim, arrays, params) ->
output (tuple if n_out > 1)``, with its cost rule as attributes: ``rule.work(prim, arrays, params,
outs)`` (units of work) and ``rule.scratch(prim, arrays, params, outs)`` (bytes, or None)."""

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
    """Register a shape rule by primitive name in :data:`RULES`, the old way (kept so that code
    written before the rules moved to their primitives still works); new rules are stated on
    the primitive with ``defshape``."""
    def deco(fn: Callable) -> Callable:
        fn.work = work or _passes  # type: ignore[attr-defined]
        fn.scratch = scratch  # type: ignore[attr-defined]
        for n in names:
            RULES[n] = fn
        return fn
    return deco


def _legacy_rule(name: str) -> Callable | None:
    """A rule registered the old way: by name in RULES (a family's base name too: einsum3 ->
    einsum), or the elementwise rule for a name in ELEMENTWISE. Read after the record's rule, so
    that branches written before the rules moved merge without breaking."""
    fn = RULES.get(name)
    if fn is None:
        if name in ELEMENTWISE:
            return elementwise_shape
        base = name.rstrip("0123456789")  # families made on demand: einsum2, einsum3, ...
        if base != name:
            return RULES.get(base)
    return fn


def _rule_for(prim: Any) -> tuple[Callable, Callable, Callable | None] | None:
    """(shape rule, work rule, scratch rule) of a primitive: its record's, else a legacy one."""
    fn = prim.shape_rule
    if fn is not None:
        return fn, prim.work_rule or _passes, prim.scratch_rule
    fn = _legacy_rule(prim.name)
    if fn is None:
        return None
    return fn, getattr(fn, "work", _passes), getattr(fn, "scratch", None)


def work_of(prim: Any, arrays: Sequence, params: dict, outs: tuple) -> float:
    """The units of work of a primitive on these operands and outputs (meta or real)."""
    r = _rule_for(prim)
    return WORK_PER_CALL + (r[1] if r is not None else _passes)(prim, arrays, params, outs)


def has_rule(name: str) -> bool:
    """True when the primitive ``name`` has a shape rule (on its record, or a legacy one)."""
    prim = _autograd.PRIMITIVES.get(name)
    if prim is not None and prim.shape_rule is not None:
        return True
    return _legacy_rule(name) is not None


def _infer(prim: Any, arrays: list, params: dict | None) -> Any:
    s = _local.session
    params = params or {}
    r = _rule_for(prim)
    if r is None:
        raise Unknown(f"no shape rule for the primitive {prim.name!r}")
    fn, work, scratch = r
    if s is None:
        return fn(prim, arrays, params)
    prev, s.current = s.current, prim.name
    try:
        out = fn(prim, arrays, params)
        res = out[0] if prim.aux else out
        outs = res if prim.n_out > 1 else (res,)
        for o in outs:  # views too: an expand to 10**12 is refused
            s.check(o, f"the result of {prim.name}")
        s.add_work(WORK_PER_CALL + work(prim, arrays, params, outs))
        if scratch is not None:
            s.scratch(int(scratch(prim, arrays, params, outs)))
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


# ---------------------------------------------------------------- shared rules
ELEMENTWISE: frozenset[str] = frozenset({
})
"""Legacy: names of primitives whose rule is :func:`elementwise_shape` (new ones say
``defshape(elementwise_shape)`` on their record)."""


def elementwise_shape(prim: Any, arrays: list, params: dict) -> Any:
    """The shape rule of elementwise primitives: the broadcast of their array operands
    (positional and keyword); the dtype comes from the forward on one-element stand-ins."""
    shapes = [np.shape(a) for a in arrays if _is_operand(a)]
    shapes += [a.shape for a in params.values() if isinstance(a, np.ndarray)]
    shape = _broadcast(shapes)
    return _fresh(shape, _probe_dtype(prim, arrays, params))


# ---------------------------------------------------------------- helpers of the rules
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


def view_shape(prim: Any, arrays: list, params: dict) -> Any:
    """The shape rule of primitives whose forward returns a view (state ``work=_free``): the
    forward itself, on meta arrays."""
    # broadcast_to, transpose, flip and sliding windows of a zero-strided array are views
    return _as_meta(prim.fwd(*arrays, **params))


def _reduced(shape: tuple, dims: Any, keepdim: bool) -> tuple[int, ...]:
    nd = len(shape)
    if nd == 0:
        return ()
    axes = set(range(nd)) if dims is None else set(normalize_axis_tuple(dims, nd))
    if keepdim:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


# ---------------------------------------------------------------- linear algebra helpers
# For the rules of engine.ops.lapack_prims' and engine.ops.matrix's primitives: FLOPs (weighted), LAPACK's
# workspaces, and the shape checks numpy's gufuncs make.
def _batch(a: np.ndarray) -> int:
    return math.prod(a.shape[:-2]) if a.ndim > 2 else 1


def _mn(a: np.ndarray) -> tuple[int, int]:
    return (a.shape[-2], a.shape[-1]) if a.ndim >= 2 else (1, max(a.size, 1))


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


def _square(a: np.ndarray) -> None:
    if a.ndim < 2:
        raise np.linalg.LinAlgError(f"{a.ndim}-dimensional array given. Array must be at least "
                                    "two-dimensional")
    if a.shape[-1] != a.shape[-2]:
        raise np.linalg.LinAlgError("Last 2 dimensions of the array must be square")


def _float(a: np.ndarray) -> np.dtype:
    return a.dtype if a.dtype.kind == "f" else np.dtype(np.float64)


def _solve_shape(a: np.ndarray, b: np.ndarray) -> tuple[int, ...]:
    batch = _broadcast([a.shape[:-2], b.shape[:-2]])
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"solve: Input operand 1 has a mismatch in its core dimension 0, with gufunc "
                         f"signature (m,m),(m,n)->(m,n) (size {b.shape[-2]} is different from "
                         f"{a.shape[-1]})")
    return (*batch, *b.shape[-2:])


# ---------------------------------------------------------------- indexing helpers
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


def _affine_grid_shapes(theta: Any, size: Any, *args: Any, **kw: Any) -> list:
    # its base grid (one linspace per spatial dim, then (*spatial, nd + 1)) is built in numpy
    sizes = tuple(int(v) for v in size)
    sp = sizes[2:]
    return [*((v,) for v in sp), sp + (len(sp) + 1,), sizes[:1] + sp + (len(sp),)]


OP_RULES["nn.functional.interpolate"] = _prechecked(_interpolate_shapes)
OP_RULES["nn.functional.affine_grid"] = _prechecked(_affine_grid_shapes)
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


@op_rule("new_zeros", "new_ones", "new_empty")
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


@op_rule("multinomial")
def _multinomial(fn: Callable, input: Any, num_samples: Any, *args: Any, **kwargs: Any) -> Any:
    # sized by num_samples, which may be huge with replacement: checked before anything is drawn
    if not (isinstance(input, Tensor) and isinstance(num_samples, (int, np.integer))
            and not isinstance(num_samples, bool) and num_samples > 1 and input._data.ndim in (1, 2)):
        return fn(input, num_samples, *args, **kwargs)
    replacement = args[0] if args else kwargs.get("replacement", False)
    if not replacement and num_samples > input._data.shape[-1]:
        return fn(input, num_samples, *args, **kwargs)  # its error
    shape = tuple(input._data.shape[:-1]) + (int(num_samples),)
    return _meta_tensor(fn(input, 1, *args, **kwargs), shape)


@op_rule("randperm")
def _ctor_randperm(fn: Callable, n: Any, *args: Any, **kwargs: Any) -> Any:
    if not _valid_size((n,)):
        return fn(n, *args, **kwargs)
    return _meta_tensor(fn(min(int(n), 1), *args, **kwargs), (int(n),))


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


@op_rule("logspace")
def _ctor_logspace(fn: Callable, start: Any, end: Any, steps: Any, *args: Any, **kwargs: Any) -> Any:
    if not (isinstance(steps, (int, np.integer)) and steps > 2) or isinstance(steps, bool):
        return fn(start, end, steps, *args, **kwargs)
    return _meta_tensor(fn(start, end, 2, *args, **kwargs), (int(steps),))


def _tri_count(row: int, col: int, offset: int) -> int:
    """Entries of a row x col matrix on and below diagonal ``offset``: the sum over rows i of
    ``clip(i + a, 0, col)``, a = offset + 1, in closed form (no loop over rows)."""
    a = offset + 1
    lo = max(0, min(row, 1 - a))    # rows before lo hold nothing
    hi = max(lo, min(row, col - a))  # rows from hi on are full
    return (hi - lo) * (lo + hi - 1 + 2 * a) // 2 + (row - hi) * col


@op_rule("tril_indices", "triu_indices")
def _ctor_tri_indices(fn: Callable, row: Any, col: Any, offset: Any = 0, **kwargs: Any) -> Any:
    if not (_valid_size((row, col)) and isinstance(offset, (int, np.integer))
            and not isinstance(offset, bool)):
        return fn(row, col, offset, **kwargs)
    row, col, offset = int(row), int(col), int(offset)
    n = _tri_count(row, col, offset) if fn.__name__ == "tril_indices" else \
        row * col - _tri_count(row, col, offset - 1)
    return _meta_tensor(fn(0, 0, 0, **kwargs), (2, n))


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
