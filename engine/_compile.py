"""Compiled functions: trace once, replay a flat list of numpy calls (``engine.compile``).

The first call for a signature (the tensors' shapes, strides, dtypes, ``requires_grad`` flags
and the other arguments) runs the function once, eagerly, with every input array replaced by a *probe*
(an ndarray subclass that knows its slot). Three things are recorded:

- every primitive application, through the core's ``trace`` hook (a primitive's numpy forward is
  a pure function of its arrays and parameters, so it becomes one step, whatever it does inside);
- every numpy call the op code makes on probes outside primitives (comparisons, masks, the
  backward pass's in-place gradient sums, ``np.asarray`` of index tensors, ...), through
  ``__array_ufunc__``/``__array_function__``/the ndarray methods;
- every read of a value into Python (``bool``, ``item``, ``float``, ``int``, ``tolist``): a
  *guard*, re-checked at replay.

numpy never asks a subclass before ``np.asarray``/``np.array`` hand out its values, and arrays
the engine makes with ``np.zeros``/``np.full``/... may be filled with traced values in place; so
while a trace runs, those module functions are replaced by wrappers that record them (for the
tracing thread; other threads' calls go straight through).

VJPs are engine ops, so ``autograd_grad``/``backward`` inside the function are traced like the
forward. Work that touches no probe (constants, shape arithmetic, dtype decisions, the graph
bookkeeping) runs once at trace time and is gone from the program. The program is then
optimized (dead steps removed, large buffers freed at their last use and reused with ``out=``
by elementwise ufuncs) and turned into one closure per step over a slot list.

Replay gives the eager results to the last bit: it makes the same numpy calls on the same
dtypes in the same order. What cannot be replayed falls back to eager, with a one-time
:class:`CompileWarning` naming the cause; a failed guard retraces (keyed by the value read), up
to :data:`MAX_PROGRAMS` programs per signature.
"""

from __future__ import annotations

import functools
import operator
import os
import sys
import threading
import traceback
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _autograd
from ._dtype import get_default_dtype
from ._kernels import sum_plan
from .tensor import Tensor

__all__ = ["compile", "CompileWarning", "CompiledFunction", "MAX_PROGRAMS", "Graph", "register_rewrite"]

MAX_PROGRAMS = 8          # programs kept per signature (guards keyed by value) before eager
FREE_BYTES = 1 << 10      # arrays at least this large are dropped at their last use
REUSE_BYTES = 1 << 12     # ... and their buffers reused by a later elementwise ufunc (out=)


class CompileWarning(UserWarning):
    """A compiled function runs eagerly for some signature (the message says why)."""


class _Untraceable(BaseException):
    """Ends a trace: the function does something a flat program cannot replay.

    A BaseException, so that ``except Exception`` in op code lets it through."""


class _GuardFailed(Exception):
    """A value read at trace time differs at replay: this program does not apply."""


# ---------------------------------------------------------------- probes
_tls = threading.local()  # .tracer: the Tracer running on this thread, or absent


def _tracer() -> _Tracer | None:
    return getattr(_tls, "tracer", None)


_base_view = np.ndarray.view


def _plain(x: Any) -> Any:
    """``x`` with its probes replaced by plain views of their data (containers rebuilt)."""
    t = type(x)
    if t is _Probe:
        return _base_view(x, np.ndarray)
    if t is tuple or t is list:
        if any(_has_probe(e) for e in x):
            return t(_plain(e) for e in x)
        return x
    if t is dict:
        return {k: _plain(v) for k, v in x.items()} if any(map(_has_probe, x.values())) else x
    if t is slice and _has_probe(x):
        return slice(_plain(x.start), _plain(x.stop), _plain(x.step))
    return x


def _any_leaf(x: Any, leaf: type) -> bool:
    """Whether an argument holds a ``leaf`` anywhere in its tuples, lists, dicts and slices."""
    t = type(x)
    if t is leaf:
        return True
    if t is tuple or t is list:
        return any(_any_leaf(e, leaf) for e in x)
    if t is dict:
        return any(_any_leaf(e, leaf) for e in x.values())
    if t is slice:
        return _any_leaf(x.start, leaf) or _any_leaf(x.stop, leaf) or _any_leaf(x.step, leaf)
    return False


def _has_probe(x: Any) -> bool:
    return _any_leaf(x, _Probe)


def _call_plain(fn: Callable, args: tuple, kwargs: dict) -> Any:
    return fn(*_plain(args), **_plain(kwargs))


class _Probe(np.ndarray):
    """A traced array: the real values, plus the slot that holds them in the program."""

    _slot: int | None = None  # None: made by a numpy path the tracer did not see

    def __array_finalize__(self, obj: Any) -> None:
        self._slot = None

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        fn = ufunc if method == "__call__" else getattr(ufunc, method)
        tr = _tracer()
        if tr is None:
            return _call_plain(fn, inputs, kwargs)
        return tr.record(fn, inputs, kwargs, ufunc=ufunc if method == "__call__" else None)

    def __array_function__(self, func: Callable, types: Any, args: tuple, kwargs: dict) -> Any:
        tr = _tracer()
        if tr is None or func in _METADATA:
            return _call_plain(func, args, kwargs)
        if func in _LIKE:  # only the shape and dtype count: an array without inputs
            return tr.record(func, _plain(args), _plain(kwargs), source=True)
        return tr.record(func, args, kwargs)

    # Values read into Python: guards.
    def __bool__(self) -> bool:
        return _guard(self, "bool")

    def item(self, *args: Any) -> Any:
        return _guard(self, "item", args)

    def tolist(self) -> Any:
        return _guard(self, "tolist")

    def tobytes(self, order: str = "C") -> bytes:
        return _guard(self, "tobytes", (order,))

    def __float__(self) -> float:
        return float(_guard(self, "item"))

    def __int__(self) -> int:
        return int(_guard(self, "item"))

    def __index__(self) -> int:
        return operator.index(_guard(self, "item"))

    def __complex__(self) -> complex:
        return complex(_guard(self, "item"))

    def __format__(self, spec: str) -> str:
        return format(_guard(self, "item") if self.ndim == 0 else _guard(self, "tolist"), spec)

    def __contains__(self, value: Any) -> bool:
        return bool((self == value).any())

    def __iter__(self) -> Any:
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self)))

    @property
    def T(self) -> Any:  # noqa: N802 (numpy's name)
        return self.transpose()

    @property
    def mT(self) -> Any:  # noqa: N802
        return _method(self, "mT")

    @property
    def real(self) -> Any:
        return _method(self, "real")

    @property
    def imag(self) -> Any:
        return _method(self, "imag")

    @property
    def flat(self) -> Any:
        raise _Untraceable("ndarray.flat on a traced array")

    def __reduce__(self) -> Any:
        raise _Untraceable("pickling a traced array")


def _attr(name: str) -> Callable:
    def get(a: np.ndarray) -> Any:
        return getattr(a, name)
    get.__name__ = name
    return get


_ATTRS = {n: _attr(n) for n in ("mT", "real", "imag")}


def _caller(name: str) -> Callable:
    # a.name(...), looked up on the object at replay: a numpy scalar there has the method too,
    # where np.ndarray's descriptor would refuse it
    def call(a: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(a, name)(*args, **kwargs)
    call.__name__ = call.__qualname__ = f"ndarray.{name}"
    return call


_CALLERS: dict[str, Callable] = {}
# methods that write into their array, and those whose result's shape depends on the values
_INPLACE_METHODS = {"__setitem__", "fill", "sort", "partition", "put", "resize", "byteswap", "itemset"}
_DYNAMIC_METHODS = {"nonzero", "repeat", "compress"}


def _method(self: _Probe, name: str, *args: Any, **kwargs: Any) -> Any:
    tr = _tracer()
    if tr is None:
        return _call_plain(_ATTRS.get(name) or getattr(np.ndarray, name), (self, *args), kwargs)
    fn = _ATTRS.get(name) or _CALLERS.get(name)
    if fn is None:
        fn = _CALLERS[name] = _caller(name)
    dynamic = name in _DYNAMIC_METHODS or name == "__getitem__" and _has_bool_probe(args)
    return tr.record(fn, (self, *args), kwargs, inplace=name in _INPLACE_METHODS, dynamic=dynamic)


def _has_bool_probe(x: Any) -> bool:
    t = type(x)
    if t is _Probe:
        return x.dtype == np.bool_
    if t is tuple or t is list:
        return any(_has_bool_probe(e) for e in x)
    return False


# Every other ndarray method that computes on the values is recorded as a step (methods that
# return a view, a copy, a reduction, or change the array in place alike).
_NOT_RECORDED = {
    "__array__", "__array_finalize__", "__array_function__", "__array_ufunc__", "__array_wrap__",
    "__array_prepare__", "__array_interface__", "__array_struct__", "__array_priority__",
    "__array_namespace__", "__class__", "__class_getitem__", "__init__", "__new__", "__getattribute__",
    "__setattr__", "__delattr__", "__dir__", "__init_subclass__", "__subclasshook__", "__sizeof__",
    "__len__", "__hash__", "__reduce__", "__reduce_ex__", "__setstate__", "__getstate__", "__repr__",
    "__str__", "__format__", "__bool__", "__float__", "__int__", "__index__", "__complex__", "__iter__",
    "__contains__", "__dlpack__", "__dlpack_device__", "item", "tolist", "tobytes", "tostring",
    "tofile", "dump", "dumps", "setflags", "to_device", "__buffer__", "__release_buffer__",
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__",
}
for _name in dir(np.ndarray):
    if _name in _NOT_RECORDED or _name in _Probe.__dict__ and _name != "__array_finalize__":
        continue
    _m = getattr(np.ndarray, _name)
    if not callable(_m) or isinstance(_m, type):
        continue
    # operators (__add__, ...) reach __array_ufunc__ by themselves; the rest are recorded here
    if _name.startswith("__") and _name[2:-2] in {
            "add", "radd", "iadd", "sub", "rsub", "isub", "mul", "rmul", "imul", "truediv",
            "rtruediv", "itruediv", "floordiv", "rfloordiv", "ifloordiv", "mod", "rmod", "imod",
            "pow", "rpow", "ipow", "matmul", "rmatmul", "imatmul", "neg", "pos", "abs", "invert",
            "and", "rand", "iand", "or", "ror", "ior", "xor", "rxor", "ixor", "lshift", "rlshift",
            "ilshift", "rshift", "rrshift", "irshift", "divmod", "rdivmod"}:
        continue
    setattr(_Probe, _name, functools.partialmethod(_method, _name))
del _name, _m


def _guard(p: _Probe, kind: str, args: tuple = ()) -> Any:
    plain = _base_view(p, np.ndarray)
    tr = _tracer()
    if kind == "bool":
        value = bool(plain)
    else:
        value = getattr(plain, kind)(*args)
    if tr is not None:
        tr.guard(p, kind, value, args)
    return value


# numpy functions that read only shapes and dtypes: no step
_METADATA = {np.shape, np.ndim, np.size, np.result_type, np.can_cast, np.iscomplexobj,
             np.isrealobj, np.min_scalar_type, np.broadcast_shapes}
_METADATA = {getattr(f, "__wrapped__", f) for f in _METADATA} | _METADATA

# ... and the ones that make a new array of a probe's shape and dtype
_LIKE = {np.zeros_like, np.ones_like, np.empty_like, np.full_like}

# numpy functions whose output shape depends on the values: replay checks the shape
_DYNAMIC = {np.nonzero, np.flatnonzero, np.argwhere, np.unique, np.compress, np.extract,
            np.bincount, np.repeat, np.trim_zeros, np.delete, np.insert, np.histogram}


# ---------------------------------------------------------------- the trace
class _Ref:
    """A slot in a step's arguments."""

    __slots__ = ("slot",)

    def __init__(self, slot: int) -> None:
        self.slot = slot


class _Step:
    """One recorded call: ``outs = fn(*args, **kwargs)`` over slots."""

    __slots__ = ("fn", "args", "kwargs", "outs", "multi", "inplace", "uses", "ufunc", "guard",
                 "shape_check", "name", "fresh", "scalar", "prim")

    def __init__(self, fn: Callable, args: Any, kwargs: Any, uses: list[int], name: str) -> None:
        self.fn, self.args, self.kwargs, self.uses, self.name = fn, args, kwargs, uses, name
        self.outs: tuple[int, ...] = ()
        self.multi: type | None = None   # the container type of several outputs
        self.inplace: tuple[int, ...] = ()  # slots the call writes into (out=, a[...] = ...)
        self.ufunc: np.ufunc | None = None  # an elementwise ufunc's __call__: may take out=
        self.guard: tuple | None = None     # (kind, value) for a guard step
        self.shape_check: tuple | None = None  # output shapes replay must find again
        self.fresh = False   # the output is a new array that no one else holds
        self.scalar = False  # numpy returned a scalar at trace time: replay makes it 0-d too
        self.prim: Any = None  # the primitive whose forward this is (what rewrites match)


_SKIP = (os.path.dirname(os.path.abspath(__file__)) + os.sep, os.path.dirname(np.__file__) + os.sep,
         functools.__file__)


def _site() -> str:
    """The innermost line outside the engine and numpy: where a value was read (for warnings)."""
    for fr in reversed(traceback.extract_stack()[:-2]):
        if not fr.filename.startswith(_SKIP):
            return f"{fr.filename}:{fr.lineno}"
    return "?"


class _Tracer:
    """Records the steps of one run of the function."""

    def __init__(self) -> None:
        self.steps: list[_Step] = []
        self.values: list[Any] = []     # slot -> trace-time value (plain array or constant)
        self.n_const = 0
        self.const_ids: dict[int, int] = {}
        self.folded = 0                  # primitive applications on constants only
        self.noops = 0                   # calls that returned their argument (casts to its dtype)
        self.captured: dict[int, tuple] = {}  # id -> (ref, data, rg, grad) of outside tensors
        self.keep: list[Any] = []        # constants the program refers to (kept alive)

    # -- slots
    def new_slot(self, value: Any) -> int:
        self.values.append(value)
        return len(self.values) - 1

    def probe(self, a: np.ndarray) -> _Probe:
        p = a.view(_Probe)  # a plain ndarray's view: __array_finalize__ sets _slot to None
        p._slot = self.new_slot(a)
        return p

    def const_slot(self, value: Any) -> int:
        k = self.const_ids.get(id(value))
        if k is None or self.values[k] is not value:
            k = self.const_ids[id(value)] = self.new_slot(value)
            self.keep.append(value)
            self.n_const += 1
        return k

    # -- arguments
    def lower(self, x: Any, uses: list[int]) -> Any:
        """``x`` for replay: probes become refs (their slots appended to ``uses``)."""
        t = type(x)
        if t is _Probe:
            if x._slot is None:
                raise _Untraceable("an array made by a numpy path the tracer does not follow")
            uses.append(x._slot)
            return _Ref(x._slot)
        if t is tuple or t is list:
            return t(self.lower(e, uses) for e in x) if _has_probe(x) else x
        if t is dict:
            return {k: self.lower(v, uses) for k, v in x.items()} if _has_probe(x) else x
        if t is slice and _has_probe(x):
            return slice(*(self.lower(e, uses) for e in (x.start, x.stop, x.step)))
        if isinstance(x, Tensor):
            raise _Untraceable("a tensor passed to numpy")
        return x

    # -- recording
    def record(self, fn: Callable, args: tuple, kwargs: dict, ufunc: np.ufunc | None = None,
               name: str | None = None, source: bool = False, inplace: bool = False,
               dynamic: bool = False, primitive: Any = None) -> Any:
        """Run ``fn`` on the plain values and record it as a step; returns probes."""
        out_kw = None if primitive is not None else kwargs.get("out")  # a primitive's "out" is its own
        if out_kw is not None:
            outs = out_kw if type(out_kw) is tuple else (out_kw,)
            for o in outs:
                if o is not None and type(o) is not _Probe and (_has_probe(args) or _has_probe(kwargs)):
                    raise _Untraceable(f"{_name(fn)} writes traced values into an untraced array")
        if not (source or _has_probe(args) or _has_probe(kwargs)):
            return fn(*args, **kwargs)
        uses: list[int] = []
        largs = [self.lower(a, uses) for a in args]
        lkw = {k: self.lower(v, uses) for k, v in kwargs.items()}
        pargs, pkw = _plain(args), _plain(kwargs)
        _tls.tracer = None  # a primitive's forward is one step, whatever numpy it calls
        try:
            raw = fn(*pargs, **pkw)
        finally:
            _tls.tracer = self
        step = _Step(fn, largs, lkw, uses, name or _name(fn))
        step.prim = primitive
        # in-place: out= probes, and methods that change their array
        if out_kw is not None:
            step.inplace = tuple(o._slot for o in (out_kw if type(out_kw) is tuple else (out_kw,))
                                 if type(o) is _Probe)
        elif inplace:
            step.inplace = (args[0]._slot,)
        elif fn in _WRITES_FIRST or getattr(fn, "__name__", "") == "at":  # ufunc.at too
            if type(args[0]) is not _Probe:
                raise _Untraceable(f"{_name(fn)} writes traced values into an untraced array")
            step.inplace = (args[0]._slot,)
        self.steps.append(step)
        if ufunc is not None and ufunc.signature is None and out_kw is None and len(kwargs) == 0 \
                and ufunc.nout == 1:
            step.ufunc = ufunc
        # the result is one of the arguments (out=, astype(copy=False), ...): no new slot
        if type(raw) is np.ndarray:
            pairs = list(zip(args, pargs))
            if out_kw is not None:
                pairs += list(zip(out_kw if type(out_kw) is tuple else (out_kw,),
                                  pkw["out"] if type(out_kw) is tuple else (pkw["out"],)))
            for a, pa in pairs:
                if pa is raw and type(a) is _Probe:
                    if not step.inplace:
                        self.steps.pop()  # a no-op (a cast to the same dtype, ...)
                        self.noops += 1
                    return a
        return self._outputs(step, raw, fn, dynamic or fn in _DYNAMIC)

    def _outputs(self, step: _Step, raw: Any, fn: Callable, dynamic: bool) -> Any:
        if raw is None:
            return None
        if type(raw) is np.ndarray:
            p = self.probe(raw)
            step.outs = (p._slot,)
            step.fresh = raw.base is None
            if dynamic:
                step.shape_check = (raw.shape,)
            return p
        if isinstance(raw, np.generic):
            p = self.probe(np.asarray(raw))
            step.outs = (p._slot,)
            step.scalar = True
            return p
        if isinstance(raw, tuple):
            items = []
            for r in raw:
                if type(r) is np.ndarray:
                    items.append(r)
                elif isinstance(r, np.generic):
                    items.append(np.asarray(r))
                else:
                    raise _Untraceable(f"{_name(fn)} returned a {type(r).__name__}")
            probes = [self.probe(r) for r in items]
            step.outs = tuple(p._slot for p in probes)
            step.multi = type(raw)
            if dynamic:
                step.shape_check = tuple(r.shape for r in items)
            if hasattr(raw, "_fields"):
                return type(raw)(*probes)
            return type(raw)(probes)
        if isinstance(raw, (bool, int, float, complex)):
            # a Python value computed from traced values (np.array_equal, ...): a guard
            k = self.new_slot(raw)
            step.outs = (k,)
            g = _Step(_identity, [], {}, [k], f"guard {_name(fn)}")
            g.guard = ("py", raw, _site())
            self.steps.append(g)
            return raw
        raise _Untraceable(f"{_name(fn)} returned a {type(raw).__name__}")

    def guard(self, p: _Probe, kind: str, value: Any, args: tuple = ()) -> None:
        if p._slot is None:
            raise _Untraceable("a value read from an array the tracer does not follow")
        step = _Step(_guard_fn(kind, args), [], {}, [p._slot], f"guard {kind}")
        step.guard = (kind, value, _site())
        self.steps.append(step)

    # -- the core's hook: one primitive application
    def apply_hook(self, prim: Any, args: tuple, arrays: list, params: dict | None) -> Any:
        for a in args:
            if isinstance(a, Tensor) and type(a._data) is not _Probe and id(a) not in self.captured:
                self.captured[id(a)] = (weakref.ref(a), a._data, a._rg, a.grad)
        params = params or {}
        if not (_has_probe(arrays) or _has_probe(params)):
            self.folded += 1
            return prim.fwd(*arrays, **params)
        # traced parameters (a boolean mask, counts) may decide the shape of the result
        fwd = _lowered(prim)
        if prim.name == "mean" and fwd is _LOWER.get(("mean", ("x", "dims", "keepdim"))):
            fwd = _mean_of(arrays[0], params.get("dims")) or fwd
        elif prim.name == "sum" and fwd is _LOWER.get(("sum", ("x", "dims", "keepdim"))):
            fwd = _sum_of(arrays[0], params.get("dims"), params.get("keepdim", False)) or fwd
        return self.record(fwd, tuple(arrays), params, name=prim.name, dynamic=_has_probe(params),
                           primitive=prim, ufunc=fwd if type(fwd) is np.ufunc else None)


_WRITES_FIRST = {np.copyto, np.put, np.place, np.putmask, np.fill_diagonal, np.put_along_axis}

# Faster numpy spellings of primitive forwards, the same computation to the bit: np.sum is
# np.add.reduce behind a Python dispatch layer, np.mean is ndarray.mean behind one. Applied only
# when the forward still has the signature they were written for.
_LOWER = {
    ("sum", ("x", "dims", "keepdim")): lambda x, dims, keepdim: np.add.reduce(x, dims, None, None, keepdim),
    ("mean", ("x", "dims", "keepdim")): lambda x, dims, keepdim: x.mean(dims, None, None, keepdim),
}


def _template1(a):  # noqa: ANN001, ANN202 (a bytecode pattern, never called)
    return np.negative(a)


def _template2(a, b):  # noqa: ANN001, ANN202
    return np.negative(a, b)


_TEMPLATES = {1: _template1.__code__.co_code, 2: _template2.__code__.co_code}


def _lowered(prim: Any) -> Callable:
    """The forward to record: a faster spelling of it where there is one."""
    fwd = prim.fwd
    if type(getattr(fwd, "ufunc", None)) is np.ufunc:  # engine._kernels.threaded_ufunc: the ufunc
        return fwd.ufunc
    code = getattr(fwd, "__code__", None)
    if code is None:
        return fwd
    # A forward that is literally ``return np.<ufunc>(a[, b])`` is that ufunc (one Python call
    # less per step, and it may then write into a dead buffer).
    if _TEMPLATES.get(code.co_argcount) == code.co_code and len(code.co_names) == 2 \
            and code.co_names[0] == "np" and fwd.__globals__.get("np") is np \
            and not fwd.__defaults__ and not code.co_kwonlyargcount \
            and isinstance(getattr(np, code.co_names[1], None), np.ufunc):
        return getattr(np, code.co_names[1])
    return _LOWER.get((prim.name, code.co_varnames[:code.co_argcount]), fwd)


def _sum_of(x: Any, dims: Any, keepdim: Any) -> Callable | None:
    """The eager forward's faster sum (:func:`engine._kernels.sum_plan`) where it applies to
    arrays shaped and typed as ``x``: eager and compiled runs then add in the same order."""
    if type(x) is not _Probe or type(dims) is not tuple:
        return None
    return sum_plan(tuple(x.shape), x.dtype, dims, bool(keepdim))


def _mean_of(x: Any, dims: Any) -> Callable | None:
    """``np.mean`` over ``dims`` of arrays shaped and typed as ``x``, without its Python layer:
    numpy's own steps for a float32/float64 mean (a sum, then a division by the element count as
    an ``intp``, in place), with the count worked out now. None where numpy does more (other
    dtypes, empty reductions)."""
    if type(x) is not _Probe or x.dtype not in (_F4, _F8):
        return None
    axes = range(x.ndim) if dims is None else dims if type(dims) is tuple else (dims,)
    try:
        count = 1
        for ax in axes:
            count *= x.shape[ax]
    except (TypeError, IndexError):
        return None
    if count == 0:
        return None  # numpy warns "Mean of empty slice": eager's path
    n = np.intp(count)
    add_reduce, divide, ndarray = np.add.reduce, np.true_divide, np.ndarray

    def mean(x: np.ndarray, dims: Any, keepdim: bool) -> Any:
        r = add_reduce(x, dims, None, None, keepdim)
        if type(r) is ndarray:
            return divide(r, n, out=r, casting="unsafe", subok=False)
        return r.dtype.type(r / n)
    return mean


_F4, _F8 = np.dtype(np.float32), np.dtype(np.float64)


def _name(fn: Callable) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _identity(x: Any) -> Any:
    return x


def _guard_fn(kind: str, args: tuple) -> Callable:
    # The check run at replay: the same read as at trace time, compared exactly.
    if kind == "bool":
        return bool
    return lambda a: getattr(np.asarray(a), kind)(*args)


# ---------------------------------------------------------------- numpy's converters
# np.asarray / np.array of a probe would hand out its values untraced (numpy never asks a
# subclass): while a trace runs they are replaced by versions that record the conversion.
_CONVERTERS = ("asarray", "array", "ascontiguousarray", "asfortranarray")
# New arrays are traced too, as steps without inputs: op code fills them in place (padding,
# scatter buffers), and a constant the program shared between calls would then change under it.
# Steps computed from them alone are folded back into constants after the trace.
_CREATORS = ("zeros", "ones", "empty", "full", "arange", "eye", "identity", "indices", "tri")
_ORIG = {n: getattr(np, n) for n in _CONVERTERS + _CREATORS}
_patch_lock = threading.Lock()
_patch_count = 0


def _converter(name: str) -> Callable:
    orig = _ORIG[name]

    @functools.wraps(orig)
    def conv(a: Any, *args: Any, **kwargs: Any) -> Any:
        tr = _tracer()
        if tr is None:
            return orig(a, *args, **kwargs)
        if not _has_probe(a):
            if name != "array":
                return orig(a, *args, **kwargs)
            return tr.record(orig, (a, *args), kwargs, name="np.array", source=True)
        if type(a) is _Probe and name in ("asarray", "asfortranarray", "ascontiguousarray") \
                and not args and not kwargs:
            plain = _base_view(a, np.ndarray)
            if orig(plain) is plain:
                return a  # nothing to convert
        return tr.record(orig, (a, *args), kwargs, name=f"np.{name}")

    return conv


def _creator(name: str) -> Callable:
    orig = _ORIG[name]

    @functools.wraps(orig)
    def create(*args: Any, **kwargs: Any) -> Any:
        tr = _tracer()
        # only the engine's own arrays: numpy's internals (a Generator filling np.empty in C)
        # would not replay
        if tr is None or not sys._getframe(1).f_globals.get("__name__", "").startswith("engine."):
            return orig(*args, **kwargs)
        return tr.record(orig, args, kwargs, name=f"np.{name}", source=True)

    return create


_PATCHED = {n: (_converter if n in _CONVERTERS else _creator)(n) for n in _ORIG}


def _patch() -> None:
    global _patch_count
    with _patch_lock:
        if _patch_count == 0:
            for n, f in _PATCHED.items():
                setattr(np, n, f)
        _patch_count += 1
        _autograd._tracing = _patch_count


def _unpatch() -> None:
    global _patch_count
    with _patch_lock:
        _patch_count -= 1
        _autograd._tracing = _patch_count
        if _patch_count == 0:
            for n, f in _ORIG.items():
                setattr(np, n, f)


# ---------------------------------------------------------------- flattening arguments
# numpy's builtin dtypes are singletons that live as long as numpy: their ids are stable keys for
# the signature, cheaper to hash than the dtype (numpy hashes a dtype afresh every time). Other
# dtypes (byte-swapped, ...) stay themselves in the key.
_BUILTIN_DTYPES = frozenset(id(np.dtype(c)) for c in "?bhilqpBHILQPefdgFDG")


def _dtype_key(dt: np.dtype) -> Any:
    return id(dt) if id(dt) in _BUILTIN_DTYPES else dt


def _flatten(x: Any, leaves: list, key: list) -> Any:
    """A tree of tuples/lists/dicts: tensor leaves go to ``leaves``; the structure and the
    other values go to ``key``."""
    t = type(x)
    if isinstance(x, Tensor):
        leaves.append(x)
        d = x._data
        dt = d.dtype
        key.append((d.shape, d.strides, _dtype_key(dt), x._rg, x._grad is not None))
    elif t is tuple or t is list:
        key.append((t, len(x)))
        for e in x:
            _flatten(e, leaves, key)
    elif t is dict:
        key.append((dict, tuple(x)))
        for e in x.values():
            _flatten(e, leaves, key)
    elif t is np.ndarray:
        key.append(("ndarray", x.shape, x.dtype, x.tobytes()))
    elif isinstance(x, np.random.Generator):
        raise _Untraceable("a random generator argument")
    else:
        try:
            hash(x)
        except TypeError:
            raise _Untraceable(f"an argument of type {type(x).__name__} that cannot be hashed") from None
        key.append((t, x))


def _out_tree(x: Any, tr: _Tracer, outs: list, note: list) -> Any:
    """The output structure with its arrays replaced by output positions."""
    t = type(x)
    if isinstance(x, Tensor):
        d = x._data
        if x._rg:
            note.append("requires_grad")
        if type(d) is _Probe:
            if d._slot is None:
                raise _Untraceable("an output made by a numpy path the tracer does not follow")
            outs.append(d._slot)
        else:
            outs.append(tr.const_slot(d))
        return _OutTensor(len(outs) - 1)
    if t is _Probe:
        if x._slot is None:
            raise _Untraceable("an output made by a numpy path the tracer does not follow")
        outs.append(x._slot)
        return _OutArray(len(outs) - 1)
    if t is tuple or t is list:
        return t(_out_tree(e, tr, outs, note) for e in x)
    if t is dict:
        return {k: _out_tree(v, tr, outs, note) for k, v in x.items()}
    if hasattr(x, "_fields") and isinstance(x, tuple):
        return type(x)(*(_out_tree(e, tr, outs, note) for e in x))
    if _has_probe(x):
        raise _Untraceable(f"an output of type {t.__name__} holding traced arrays")
    return _OutConst(x)


class _OutTensor:
    __slots__ = ("i",)

    def __init__(self, i: int) -> None:
        self.i = i


class _OutArray(_OutTensor):
    __slots__ = ()


class _OutConst:
    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v


def _tensor(a: np.ndarray) -> Tensor:
    t = _new_tensor(Tensor)  # Tensor._make's work for a plain array that requires no grad
    t._data, t._rg, t.grad_fn, t._out, t._grad, t._hooks = a, False, None, 0, None, None
    return t


_new_tensor = object.__new__


def _build_out(tree: Any, vals: list) -> Any:
    t = type(tree)
    if t is _OutTensor:
        return _tensor(vals[tree.i])
    if t is _OutArray:
        return vals[tree.i]
    if t is _OutConst:
        return tree.v
    if t is tuple or t is list:
        return t(_build_out(e, vals) for e in tree)
    if t is dict:
        return {k: _build_out(v, vals) for k, v in tree.items()}
    return type(tree)(*(_build_out(e, vals) for e in tree))


# ---------------------------------------------------------------- the program
class Program:
    """A flat program: closures over a slot list. ``run(arrays)`` returns the output arrays."""

    def __init__(self, tracer: _Tracer, n_inputs: int, outs: list[int], effects: list,
                 optimize: bool = True) -> None:
        self.n_inputs = n_inputs
        self.outs = outs
        self.effects = effects  # (input position, output position or None): x.grad = ...
        self.captured = [(ref, data, rg) for ref, data, rg, _ in tracer.captured.values()
                         if ref() is not None]
        steps = tracer.steps
        self.stats = {"recorded": len(steps), "folded_at_trace": tracer.folded,
                      "noops_dropped": tracer.noops}
        values = tracer.values
        if optimize:
            steps = _fold(steps, n_inputs)
        self.stats["after_folding"] = len(steps)
        if optimize:
            steps = _eliminate_dead(steps, outs)
        self.stats["after_dce"] = len(steps)
        self.stats["rewrites"] = 0
        if optimize and _REWRITES:
            steps, self.stats["rewrites"] = _rewrite(steps, values, outs)
            steps = _eliminate_dead(steps, outs)
        self.stats["after_rewrites"] = len(steps)
        kills, reuse = _lifetimes(steps, outs, values, n_inputs, optimize)
        self.stats["freed"] = sum(len(k) for k in kills)
        self.stats["reused"] = len(reuse)
        # constants: slots the program reads that no step of it defines
        defined = {o for s in steps for o in s.outs}
        read = set(outs).union(*(s.uses for s in steps), *(s.inplace for s in steps))
        template = [None] * len(values)
        exact = {k: True for k in read}  # constants read by correctly rounded ufuncs alone
        for s in steps:
            for k in s.uses:
                if s.ufunc not in _EXACT_UFUNCS:
                    exact[k] = False
        for k in read:
            if k >= n_inputs and k not in defined:
                template[k] = _compact(values[k]) if exact[k] else values[k]

        def const(v: Any) -> int:
            template.append(v)
            return len(template) - 1

        targets = {k for s in steps for k in s.inplace}
        self.runs = [_closure(s, kills[i], reuse.get(i), s.scalar and bool(targets & set(s.outs)),
                              const) for i, s in enumerate(steps)]
        self.template = template
        self.steps = steps
        # outputs the program does not compute (folded constants) are copied: each call's
        # results are its own, as eagerly, even if a caller writes into them
        self.copied = {i for i, o in enumerate(outs) if o >= n_inputs and o not in defined}

    def held_bytes(self) -> int:
        """Bytes of memory the program keeps between calls (its constants), each buffer once.

        >>> f = engine.compile(lambda x: engine.autograd_grad((x * x).sum(), x)[0])
        >>> _ = f(engine.ones(1000, requires_grad=True)); f.programs()[0].held_bytes() < 100
        True
        """
        return held_bytes(self.template)

    def run(self, arrays: list) -> list:
        s = self.template.copy()
        s[:self.n_inputs] = arrays
        for step in self.runs:
            step(s)
        if self.copied:
            return [np.array(s[o]) if i in self.copied else s[o] for i, o in enumerate(self.outs)]
        return [s[o] for o in self.outs]


# Ufuncs whose every element is one correctly rounded IEEE operation: the same bits whatever
# loop numpy picks for the operands' strides, so a constant they read may be a broadcast view.
_EXACT_UFUNCS = frozenset({np.add, np.subtract, np.multiply, np.true_divide, np.maximum, np.minimum,
                           np.fmax, np.fmin, np.equal, np.not_equal, np.less, np.less_equal,
                           np.greater, np.greater_equal, np.copysign})


def _compact(v: Any) -> Any:
    """A folded constant that repeats one value (a gradient seed of 2s, a mask of ones) as a
    zero-strided view of that value: O(1) memory, and replays read one element, not an array."""
    if type(v) is not np.ndarray or v.size < 2 or v.nbytes < FREE_BYTES or v.dtype.hasobject \
            or not v.flags.c_contiguous:
        return v
    rows = v.reshape(-1).view(np.uint8).reshape(v.size, v.itemsize)
    if not (rows == rows[0]).all():  # bitwise: -0.0 is not 0.0, and a NaN repeats
        return v
    return np.broadcast_to(v.reshape(-1)[:1].copy().reshape(()), v.shape)


def held_bytes(values: list) -> int:
    """Bytes of memory the arrays among ``values`` occupy, each underlying buffer counted once
    (a view counts as its base: a broadcast view as the one value it repeats)."""
    seen: set[int] = set()
    total = 0
    for v in values:
        if not isinstance(v, np.ndarray):
            continue
        while isinstance(v.base, np.ndarray):
            v = v.base
        if id(v) not in seen:
            seen.add(id(v))
            total += v.nbytes
    return total


def _fold(steps: list[_Step], n_inputs: int) -> list[_Step]:
    """Fold the steps computed from constants alone into constants (their trace-time values).

    Arrays written in place, and everything that may share memory with them, stay steps: their
    trace-time values are not what a replay starts from."""
    mutated = {k for s in steps for k in s.inplace}
    changed = True
    while changed:  # conservatively: any step's inputs and outputs may be views of each other
        changed = False
        for s in steps:
            group = {*s.uses, *s.outs, *s.inplace}
            if group & mutated and not group <= mutated:
                mutated |= group
                changed = True
    variable = set(range(n_inputs)) | mutated
    kept = []
    for s in steps:
        if s.guard is None and not s.inplace and not variable.intersection(s.uses) \
                and not mutated.intersection(s.outs) and s.shape_check is None:
            continue  # its outputs keep their trace-time values
        if s.guard is not None and not variable.intersection(s.uses):
            continue  # a guard on a constant always holds
        variable.update(s.outs)
        kept.append(s)
    return kept


def _eliminate_dead(steps: list[_Step], outs: list[int]) -> list[_Step]:
    """Drop steps whose results nothing needs (guards and in-place writes always stay)."""
    live = set(outs)
    kept = []
    for s in reversed(steps):
        if s.guard is None and not s.inplace and not (live & set(s.outs)):
            continue
        live.difference_update(s.outs)
        live.update(s.uses)
        live.update(s.inplace)
        kept.append(s)
    kept.reverse()
    return kept


# ---------------------------------------------------------------- rewrites
class Graph:
    """A program's steps as a rewrite rule sees them (:func:`register_rewrite`): which step makes
    each slot, and which steps read it. Rules match steps by ``step.prim`` (the primitive whose
    forward the step runs) and their ``args`` (:class:`_Ref` slots) and ``kwargs`` (the
    primitive's parameters)."""

    def __init__(self, steps: list[_Step], values: list, outs: list[int]) -> None:
        self.steps, self.values, self.outs = steps, values, set(outs)
        self.reindex()

    def reindex(self) -> None:
        self.maker: dict[int, _Step] = {o: s for s in self.steps for o in s.outs}
        self.readers: dict[int, list[_Step]] = {}
        for s in self.steps:
            for k in dict.fromkeys((*s.uses, *s.inplace)):
                self.readers.setdefault(k, []).append(s)
        self.written = {k for s in self.steps for k in s.inplace}

    def made_by(self, arg: Any, prim: Any) -> _Step | None:
        """The step of ``prim`` whose output the step argument ``arg`` is, if it is one."""
        if type(arg) is not _Ref:
            return None
        s = self.maker.get(arg.slot)
        return s if s is not None and s.prim is prim else None

    def read_only_by(self, slot: int, *steps: _Step) -> bool:
        """``slot`` is read by ``steps`` alone: no other step, no output, no write in place."""
        return slot not in self.outs and {id(s) for s in self.readers.get(slot, ())} <= \
            {id(s) for s in steps} and slot not in self.written

    def new_step(self, like: _Step, fn: Callable, args: list, kwargs: dict,
                 outs: tuple[int, ...] | None = None, multi: type | None = None,
                 name: str | None = None) -> _Step:
        """A step of ``fn`` over ``args``; its outputs are ``outs`` or one new slot, whose value
        (for the lifetimes pass: shape, dtype, size) is computed now from the trace's values.
        Named ``name`` (a fused step: no primitive), else ``like``'s primitive's step."""
        uses = [a.slot for a in args if type(a) is _Ref]
        st = _Step(fn, args, kwargs, uses, name or like.name)
        st.prim, st.multi = (None if name else like.prim), multi
        if outs is None:
            plain = [self.values[a.slot] if type(a) is _Ref else a for a in args]
            self.values.append(fn(*plain, **kwargs))
            outs = (len(self.values) - 1,)
            st.fresh = True
        st.outs = outs
        return st

    def replace(self, old: list[_Step], new: list[_Step]) -> bool:
        """Drop the steps ``old`` and put ``new`` where the last of them was; False (and nothing
        changed) where that would read a slot before a step makes it: a slot ``new`` reads made
        later, or an old step's output read in between."""
        ids = {id(s) for s in old}
        at = max(i for i, s in enumerate(self.steps) if id(s) in ids)
        head = [s for s in self.steps[:at] if id(s) not in ids]
        later = {o for s in self.steps[at:] for o in s.outs} - {o for s in old for o in s.outs}
        if any(later.intersection(s.uses) for s in new):
            return False
        outs = {o for s in new for o in s.outs}
        if any(outs.intersection(s.uses) or outs.intersection(s.inplace) for s in head):
            return False
        self.steps[:] = head + new + self.steps[at + 1:]
        self.reindex()
        return True


_REWRITES: list[Callable[[Graph], int]] = []


def register_rewrite(rule: Callable[[Graph], int]) -> Callable[[Graph], int]:
    """Register ``rule(graph) -> rewrites made``, run on every optimized program until no rule
    changes it. A rule replaces steps by others that compute the program's results to the same
    bits (``engine.nn.functional._fusions``: relu and max_pool's backward in the other order,
    a convolution's relu and max_pool done on its chunks)."""
    _REWRITES.append(rule)
    return rule


def _rewrite(steps: list[_Step], values: list, outs: list[int]) -> tuple[list[_Step], int]:
    g = Graph(list(steps), values, outs)
    total = 0
    for _ in range(len(steps) + 1):  # (a bound: a rule that kept matching would be a bug)
        made = sum(rule(g) for rule in _REWRITES)
        total += made
        if not made:
            break
    return g.steps, total


def _lifetimes(steps: list[_Step], outs: list[int], values: list, n_inputs: int,
               optimize: bool) -> tuple[list[tuple], dict]:
    """Which slots each step drops after it runs, and which dead buffer a step writes into.

    A large array is dropped at its last use, so only what later steps need stays alive (the
    forward values backward reads, and nothing else). An elementwise ufunc whose output has the
    shape and dtype of a dead buffer writes into it (``out=``) instead of allocating: only
    buffers that no one else can see qualify (fresh ufunc outputs read only by ufuncs, which
    return no views)."""
    kills: list[list[int]] = [[] for _ in steps]
    reuse: dict[int, int] = {}
    if not optimize:
        return [()] * len(steps), reuse
    keep = set(outs)
    last: dict[int, int] = {}
    for i, s in enumerate(steps):
        for k in (*s.uses, *s.inplace):
            last[k] = i
    owned = {s.outs[0] for s in steps if s.ufunc is not None and s.fresh and s.outs}
    for s in steps:
        if s.ufunc is None or s.inplace:
            owned.difference_update(s.uses)
            owned.difference_update(s.inplace)

    def nbytes(k: int) -> int:
        return getattr(values[k], "nbytes", 0)

    def kind(k: int) -> tuple:
        v = values[k]
        return v.shape, v.dtype.str

    dying: dict[int, list[int]] = {}
    for k, i in last.items():
        if k >= n_inputs and k not in keep:
            dying.setdefault(i, []).append(k)
    pool: dict[tuple, list[int]] = {}
    pooled: dict[int, int] = {}  # slot -> the step it died at
    for i, s in enumerate(steps):
        dead = dying.get(i, ())
        for k in dead:  # a buffer this step reads for the last time may take its output
            if k in owned and nbytes(k) >= REUSE_BYTES and values[k].ndim:
                pool.setdefault(kind(k), []).append(k)
                pooled[k] = i
        if s.ufunc is not None and s.outs and nbytes(s.outs[0]) >= REUSE_BYTES:
            free = pool.get(kind(s.outs[0]))
            if free:
                r = free.pop()
                reuse[i] = r
                del pooled[r]
                kills[i].append(r)  # the buffer lives on as this step's output
        kills[i].extend(k for k in dead if k not in pooled and k not in reuse.values()
                        and nbytes(k) >= FREE_BYTES)
    for k, i in pooled.items():  # never reused: dropped where it died
        if nbytes(k) >= FREE_BYTES:
            kills[i].append(k)
    return [tuple(dict.fromkeys(k)) for k in kills], reuse


def _resolve(x: Any, s: list) -> Any:
    t = type(x)
    if t is _Ref:
        return s[x.slot]
    if t is tuple or t is list:
        return t(_resolve(e, s) for e in x)
    if t is dict:
        return {k: _resolve(v, s) for k, v in x.items()}
    if t is slice:
        return slice(_resolve(x.start, s), _resolve(x.stop, s), _resolve(x.step, s))
    return x


def _is_dynamic(x: Any) -> bool:
    return _any_leaf(x, _Ref)


def _closure(st: _Step, kill: tuple, reuse_slot: int | None, as_array: bool,
             const: Callable[[Any], int]) -> Callable[[list], None]:
    """The step as one Python closure over the slot list, specialized for the common shapes.

    ``const(value)`` gives a constant argument a slot of its own, so that most calls read
    nothing but slots; ``as_array``: numpy's scalar result must be a 0-d array (written in place
    later)."""
    fn = st.fn
    if st.guard is not None:
        (k,) = st.uses
        kind, want, site = st.guard

        def guard(s: list) -> None:
            got = fn(s[k])
            if got != want and (got == got or want == want):  # NaN matches NaN
                raise _GuardFailed(site)
        return guard
    args, kwargs = st.args, st.kwargs
    if all(type(a) is _Ref or not _is_dynamic(a) for a in args):
        idx = [a.slot if type(a) is _Ref else const(a) for a in args]
    else:
        idx = None
    kw = dict(kwargs) if kwargs and not _is_dynamic(kwargs) else None
    if reuse_slot is not None:
        kw = dict(kw or {})
    if kill:
        core = _closure(st, (), reuse_slot, as_array, const)

        def release(s: list) -> None:
            core(s)
            for k in kill:
                s[k] = None
        return release
    fast = idx is not None and (kw is not None or not kwargs) and not st.multi \
        and len(st.outs) == 1 and not as_array and not st.shape_check
    if fast and reuse_slot is not None and len(idx) in (1, 2):
        o, r = st.outs[0], reuse_slot
        if len(idx) == 2:
            a, b = idx

            def run2o(s: list) -> None:
                s[o] = fn(s[a], s[b], out=s[r])
            return run2o
        (a,) = idx

        def run1o(s: list) -> None:
            s[o] = fn(s[a], out=s[r])
        return run1o
    if fast and reuse_slot is None:
        o = st.outs[0]
        if not kw:
            if len(idx) == 1:
                (a,) = idx

                def run1(s: list) -> None:
                    s[o] = fn(s[a])
                return run1
            if len(idx) == 2:
                a, b = idx

                def run2(s: list) -> None:
                    s[o] = fn(s[a], s[b])
                return run2
            if len(idx) == 3:
                a, b, c = idx

                def run3(s: list) -> None:
                    s[o] = fn(s[a], s[b], s[c])
                return run3
        else:
            if len(idx) == 1:
                (a,) = idx

                def run1k(s: list) -> None:
                    s[o] = fn(s[a], **kw)
                return run1k
            if len(idx) == 2:
                a, b = idx

                def run2k(s: list) -> None:
                    s[o] = fn(s[a], s[b], **kw)
                return run2k

            def runnk(s: list) -> None:
                s[o] = fn(*[s[i] for i in idx], **kw)
            return runnk

        def runn(s: list) -> None:
            s[o] = fn(*[s[i] for i in idx])
        return runn
    # the general form
    outs, multi, shape_check, name = st.outs, st.multi, st.shape_check, st.name

    def run(s: list) -> None:
        a = [s[i] for i in idx] if idx is not None else [_resolve(x, s) for x in args]
        k = kw if kw is not None else _resolve(kwargs, s) if kwargs else {}
        if reuse_slot is not None:
            k["out"] = s[reuse_slot]
        r = fn(*a, **k)
        if outs:
            if multi is None:
                if as_array:
                    r = np.asarray(r)
                s[outs[0]] = r
                if shape_check is not None and np.shape(r) != shape_check[0]:
                    raise _GuardFailed(f"the shape of {name}'s result")
            else:
                for o, e in zip(outs, r):
                    s[o] = e
                if shape_check is not None and tuple(np.shape(e) for e in r) != shape_check:
                    raise _GuardFailed(f"the shape of {name}'s result")
    return run


# ---------------------------------------------------------------- compile
_RNG_MODULE = None


def _rng_state() -> Any:
    global _RNG_MODULE
    if _RNG_MODULE is None:
        from .ops import creation
        _RNG_MODULE = creation
    rng = _RNG_MODULE._rng
    return rng, rng.bit_generator.state


class _Signature:
    """What one signature has: its programs (tried in order), or the reason it runs eagerly."""

    __slots__ = ("programs", "eager", "traces", "failed")

    def __init__(self) -> None:
        self.programs: list[tuple[Program, Any]] = []
        self.eager: str | None = None
        self.traces = 0
        self.failed = ""  # the last guard that failed


class CompiledFunction:
    """``fn`` compiled: see :func:`compile`."""

    def __init__(self, fn: Callable, optimize: bool = True) -> None:
        self.fn = fn
        self.optimize = optimize
        self._cache: dict[tuple, _Signature] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        functools.update_wrapper(self, fn)

    # -- introspection
    def programs(self) -> list[Program]:
        """Every program traced so far (for inspection and tests)."""
        return [p for sig in self._cache.values() for p, _ in sig.programs]

    def eager_reasons(self) -> list[str]:
        """Why signatures run eagerly (empty when every call is compiled)."""
        return [s.eager for s in self._cache.values() if s.eager]

    def _warn(self, msg: str) -> None:
        if msg not in self._warned:
            self._warned.add(msg)
            warnings.warn(f"engine.compile({_name(self.fn)}): {msg}", CompileWarning, stacklevel=3)

    # -- calls
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _tracer() is not None:  # inside another compiled function's trace: inlined there,
            return _detached(self.fn(*args, **kwargs))  # its results constants for autograd
        key: list = [_autograd._state.enabled, get_default_dtype(), (tuple, len(args))]
        # the common call, tensors only: the key _flatten would make, made inline
        for a in args:
            if type(a) is not Tensor:
                break
            d = a._data
            dt = d.dtype
            # (a builtin dtype by its id: numpy hashes a dtype afresh on every call; .grad would
            # warn on non-leaves)
            key.append((d.shape, d.strides, id(dt) if id(dt) in _BUILTIN_DTYPES else dt, a._rg,
                        a._grad is not None))
        else:
            if not kwargs:
                leaves = list(args)
        if kwargs or len(key) != len(args) + 3:
            leaves = []
            key = key[:2]
            try:
                _flatten(args, leaves, key)
                if kwargs:
                    _flatten(kwargs, leaves, key)
            except _Untraceable as e:
                self._warn(f"runs eagerly: {e}")
                return self.fn(*args, **kwargs)
        k = tuple(key)
        sig = self._cache.get(k)
        if sig is None:
            sig = self._cache.setdefault(k, _Signature())
        if sig.eager is not None:
            return self.fn(*args, **kwargs)
        arrays = [t._data for t in leaves] + [t._grad._data for t in leaves if t._grad is not None]
        for prog, tree in sig.programs:
            try:
                vals = _replay(prog, arrays)
            except _GuardFailed as e:
                sig.failed = str(e)
                continue
            return _finish(prog, tree, vals, leaves)
        return self._trace(sig, args, kwargs, leaves)

    def _trace(self, sig: _Signature, args: tuple, kwargs: dict, leaves: list[Tensor]) -> Any:
        if sig.traces >= MAX_PROGRAMS:
            sig.eager = (f"its guards failed {MAX_PROGRAMS} times (values read into Python with "
                         "bool(), .item(), ...; value-dependent shapes; tensors it captures replaced), "
                         f"last at {sig.failed}: it runs eagerly for this signature")
            self._warn(sig.eager)
            return self.fn(*args, **kwargs)
        sig.traces += 1
        tr = _Tracer()
        # the inputs: leaf tensors whose data are probes (their .grad too)
        wrapped = {}
        probes = []
        for t in leaves:
            if t._hooks:
                return self._go_eager(sig, "an argument has gradient hooks", args, kwargs)
            w = Tensor._make(t._data)
            w._data = tr.probe(t._data)  # set after _make, whose np.asarray would strip it
            w._rg = t._rg
            wrapped[id(t)] = w
            probes.append(w)
        for t, w in zip(leaves, probes):
            if t.grad is not None:
                w.grad = Tensor._make(t.grad._data)
                w.grad._data = tr.probe(t.grad._data)
        n_inputs = len(tr.values)
        if any(t.grad_fn is not None and t._rg for t in leaves):
            self._warn("an argument has a grad_fn: compiled functions see their arguments as "
                       "leaves (gradients stop there, as in jax.jit)")
        targs = _substitute(args, wrapped)
        tkwargs = _substitute(kwargs, wrapped)
        rng, state = _rng_state()
        initial_grads = [w.grad for w in probes]
        initial_data = [w._data for w in probes]
        _tls.tracer = tr
        hooks = _autograd._hooks
        prev_hook = hooks.trace
        hooks.trace = tr.apply_hook
        _patch()
        failed = None
        try:
            result = self.fn(*targs, **tkwargs)
            outs: list[int] = []
            note: list[str] = []
            tree = _out_tree(result, tr, outs, note)
            effects = []
            for i, (w, g0) in enumerate(zip(probes, initial_grads)):
                if w.grad is not g0:
                    if w.grad is None:
                        effects.append((i, None))
                    else:
                        _out_tree(w.grad, tr, outs, note)
                        effects.append((i, len(outs) - 1))
        except _Untraceable as e:
            failed = str(e)
        finally:
            hooks.trace = prev_hook
            _tls.tracer = None
            _unpatch()
        if failed is not None:
            return self._untraceable(sig, failed, tr, args, kwargs)
        rng2, state2 = _rng_state()
        if rng2 is not rng or state2 != state:
            _RNG_MODULE._rng = rng  # eager draws what it would have drawn without the trace
            rng.bit_generator.state = state
            return self._untraceable(sig, "it draws random numbers (rand, randn, dropout, ...)",
                                     tr, args, kwargs)
        for ref, data, _, grad in tr.captured.values():
            t = ref()
            if t is not None and t.grad is not grad:
                return self._untraceable(
                    sig, "backward() writes .grad of a tensor that is not an argument: pass it "
                    "as an argument", tr, args, kwargs)
            if t is not None and t._data is not data:
                return self._untraceable(sig, "it replaces the data of a tensor that is not an "
                                         "argument", tr, args, kwargs)
        if any(w._data is not d for w, d in zip(probes, initial_data)):
            return self._untraceable(sig, "it replaces an argument's data", tr, args, kwargs)
        if "requires_grad" in note:
            self._warn("an output requires grad eagerly; compiled outputs carry no graph (as in "
                       "jax.jit): call autograd_grad inside the compiled function")
        prog = Program(tr, n_inputs, outs, effects, self.optimize)
        sig.programs.insert(0, (prog, tree))
        vals = [tr.values[o] for o in outs]
        # the first call's results are the trace's own (copies of those the program keeps)
        return _finish(prog, tree, [np.array(v) if i in prog.copied else v for i, v in enumerate(vals)],
                       leaves)

    def _untraceable(self, sig: _Signature, why: str, tr: _Tracer, args: tuple, kwargs: dict) -> Any:
        for ref, data, _, grad in tr.captured.values():  # undo what the trace wrote
            t = ref()
            if t is not None:
                t.grad, t._data = grad, data
        return self._go_eager(sig, why, args, kwargs)

    def _go_eager(self, sig: _Signature, why: str, args: tuple, kwargs: dict) -> Any:
        sig.eager = why
        sig.programs.clear()
        self._warn(f"runs eagerly: {why}")
        return self.fn(*args, **kwargs)


def _detached(x: Any) -> Any:
    t = type(x)
    if isinstance(x, Tensor):
        return x.detach()
    if t is tuple or t is list:
        return t(_detached(e) for e in x)
    if t is dict:
        return {k: _detached(v) for k, v in x.items()}
    return x


def _substitute(x: Any, wrapped: dict) -> Any:
    t = type(x)
    if isinstance(x, Tensor):
        return wrapped[id(x)]
    if t is tuple or t is list:
        return t(_substitute(e, wrapped) for e in x)
    if t is dict:
        return {k: _substitute(v, wrapped) for k, v in x.items()}
    return x


def _replay(prog: Program, arrays: list) -> list:
    for ref, data, rg in prog.captured:
        t = ref()
        if t is None or t._data is not data or t._rg is not rg:
            raise _GuardFailed("a tensor the function uses was replaced")
    return prog.run(arrays)


def _finish(prog: Program, tree: Any, vals: list, leaves: list[Tensor]) -> Any:
    vals = [v if type(v) is np.ndarray else np.asarray(v) for v in vals]
    for i, o in prog.effects:
        leaves[i].grad = None if o is None else _tensor(vals[o])
    if type(tree) is tuple:  # the common result: a flat tuple of tensors
        return tuple(_tensor(vals[e.i]) if type(e) is _OutTensor else _build_out(e, vals) for e in tree)
    return _build_out(tree, vals)


def compile(fn: Callable | None = None, *, optimize: bool = True) -> Any:  # noqa: A001 (torch's name)
    """Compile ``fn`` into flat numpy programs, one per argument signature (``jax.jit``).

    >>> f = engine.compile(lambda x: engine.autograd_grad((x * x).sum(), x)[0])
    >>> f(engine.tensor([1.0, 2.0], requires_grad=True))
    tensor([2., 4.])
    """
    if fn is None:
        return lambda f: CompiledFunction(f, optimize)
    return CompiledFunction(fn, optimize)
