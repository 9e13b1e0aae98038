"""The autograd core: grad mode, graph nodes, primitive application and the backward pass.

A primitive is a numpy forward plus a VJP written in engine ops, so that running the VJP with
grad mode on (``create_graph=True``) records a graph of its own: any order of derivative comes
free. Unbroadcasting and dtype casts of gradients happen here, once, not in every VJP.

Beside its VJP each primitive states a JVP rule (forward mode: dual tensors carry tangents, see
:func:`_apply_dual`), also in engine ops, so forward and reverse mode compose both ways; and a
batching rule (vmap: the primitive on a whole batch at once, see :func:`_apply_batched`). Both
cost ``apply`` one test while no dual level and no vmap is active.

One record per primitive, as JAX's ``lax`` and HIPS autograd define theirs: the numpy forward, VJP,
JVP, batching rule and shape rule with its cost (meta mode, :mod:`engine._meta`) are stated
together in the module that defines the primitive, so adding an op touches that one place::

    @primitive(save=(0, 1, -1))               # engine/ops/elementwise.py
    def _hypot(a, b):
        return np.hypot(a, b)

    _hypot.defvjp(lambda ctx, g, a, b, out: (g * a / out, g * b / out))
    _hypot.defjvp(diagonal_jvp)               # elementwise: the VJP serves as the JVP
    _hypot.defbatch(elementwise_batch)        # vmap: numpy broadcasting carries the batch
    _hypot.defshape(elementwise_shape)        # meta mode; a rule of its own: @p.defshape(work=...)

This core knows none of the rules' contents (the shape rules and their helpers live above it).
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import operator
import sys
import threading
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from . import _dtype
from . import tensor as _tensor_module
from .tensor import Shadow, Size, Tensor, VmapFallback


# ---------------------------------------------------------------- grad mode (thread-local)
class _GradState(threading.local):
    enabled = True  # the class attribute is every new thread's default: reading it never raises
    fw: tuple = ()  # active forward-AD (dual) levels, outermost first: see _apply_dual
    vm: int | None = None  # the active vmap level: see _apply_batched
    vm_random = "different"  # the active vmap's randomness
    ext = False  # fw or vm: apply's one test for both
    # The one thread-local read of the hot paths (apply, the scalar operators), kept by
    # _refresh_mode whenever enabled, ext or the meta hook changes: 0 grad mode on, 1 grad mode
    # off, 2 forward mode, vmap or meta mode (read the others).
    mode = 0
    # A buffer an in-place op is about to overwrite with the result it computes (see donated)
    donated: np.ndarray | None = None


_state = _GradState()


def donated(x: np.ndarray) -> bool:
    """Whether ``x``'s buffer is about to be overwritten with the result of the primitive now
    running, so that its forward may write into it instead of into a copy (``jax.jit``'s
    ``donate_argnums``). Only forwards that save nothing ask: writing early changes no saved value.
    The in-place ops donate their destination for the write they would make anyway."""
    return _state.donated is x


class donating:
    """Donate ``x``'s buffer to the primitive forwards run inside (see :func:`donated`)."""

    __slots__ = ("x", "prev")

    def __init__(self, x: np.ndarray | None) -> None:
        self.x = x

    def __enter__(self) -> None:
        self.prev, _state.donated = _state.donated, self.x

    def __exit__(self, *exc: object) -> None:
        _state.donated = self.prev


class _Hooks(threading.local):
    """Per-thread hooks for callers that run untrusted graphs; None (the default) costs one test.

    ``meta``: meta mode (:mod:`engine._meta`), called as ``meta(prim, arrays, params)`` instead of
    a primitive's numpy forward; it returns outputs of the right shape and dtype without computing.
    ``backward``: called as ``backward(node, grads)`` after each node's VJP in a backward pass
    (cooperative deadlines, anomaly checks); whatever it raises ends the pass.
    ``trace``: tracing (:mod:`engine._compile`), called as ``trace(prim, args, arrays, params)``
    instead of a primitive's numpy forward; it records the application and returns the outputs.
    """

    _meta: Callable | None = None
    backward: Callable | None = None
    trace: Callable | None = None

    @property
    def meta(self) -> Callable | None:
        return self._meta

    @meta.setter
    def meta(self, fn: Callable | None) -> None:
        self._meta = fn
        _refresh_mode()


_hooks = _Hooks()
# Traces running in any thread: while 0, apply skips the trace hook on a global's test, cheaper
# than a thread-local's lookup (engine._compile counts them).
_tracing = 0


def is_grad_enabled() -> bool:
    """True when operations record a graph (``torch.is_grad_enabled``)."""
    return _state.enabled


def _set_enabled(mode: bool) -> None:
    _state.enabled = mode
    _refresh_mode()


def _set_ext(ext: bool) -> None:
    _state.ext = ext
    _refresh_mode()


def _refresh_mode() -> None:
    st = _state
    st.mode = 2 if st.ext or _hooks._meta is not None else 0 if st.enabled else 1


class _GradMode:
    """Base for the grad-mode switches: usable as context manager and as decorator."""

    _mode: bool

    def __enter__(self) -> None:
        self._prev = is_grad_enabled()
        _set_enabled(self._mode)

    def __exit__(self, *exc: object) -> None:
        _set_enabled(self._prev)

    def __call__(self, fn: Callable) -> Callable:
        mode = self._mode
        if inspect.isclass(fn):
            import warnings
            warnings.warn(
                "Decorating classes is deprecated and will be disabled in future versions. You should "
                "only decorate functions or methods. To preserve the current behavior of class "
                "decoration, you can directly decorate the `__init__` method and nothing else.",
                FutureWarning, stacklevel=2)
            cls = fn
            fn = lambda *args, **kwargs: cls(*args, **kwargs)  # construction runs in the mode
        if inspect.isgeneratorfunction(fn):
            return _wrap_generator(fn, mode)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            prev = is_grad_enabled()
            _set_enabled(mode)
            try:
                return fn(*args, **kwargs)
            finally:
                _set_enabled(prev)

        return wrapper


def _wrap_generator(fn: Callable, mode: bool) -> Callable:
    """As torch's decorators: the mode holds while the generator's body runs, and the caller's
    own mode is back in force between the yields."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        gen = fn(*args, **kwargs)
        step = functools.partial(gen.send, None)
        while True:
            prev = is_grad_enabled()
            _set_enabled(mode)
            try:
                out = step()
            except StopIteration as stop:
                return stop.value
            finally:
                _set_enabled(prev)
            try:
                sent = yield out
            except GeneratorExit:  # as torch: the generator's cleanup runs in the decorator's mode
                prev = is_grad_enabled()
                _set_enabled(mode)
                try:
                    gen.close()
                finally:
                    _set_enabled(prev)
                raise
            except BaseException as exc:  # thrown in by the caller: hand it to the generator
                step = functools.partial(gen.throw, exc)
            else:
                step = functools.partial(gen.send, sent)

    return wrapper


class _NoParamGradMode(_GradMode):
    # torch accepts both ``@no_grad()`` and a bare ``@no_grad``.
    def __new__(cls, orig_func: Callable | None = None) -> Any:
        if orig_func is None:
            return super().__new__(cls)
        return cls()(orig_func)


class no_grad(_NoParamGradMode):
    """Disable graph recording. ``with engine.no_grad(): y = x * 2``"""

    _mode = False


class inference_mode(_GradMode):
    """``torch.inference_mode``: no graph is recorded inside (``mode=False``: nothing changes).
    The engine has no inference tensors: this is :class:`no_grad` by another name.

    >>> with engine.inference_mode(): y = x * 2
    """

    def __new__(cls, mode: Any = True) -> Any:
        if callable(mode) and not isinstance(mode, bool):  # a bare @inference_mode
            return cls()(mode)
        return super().__new__(cls)

    def __init__(self, mode: bool = True) -> None:
        self._mode = False
        self._on = bool(mode)

    def __enter__(self) -> None:
        self._prev = is_grad_enabled()
        if self._on:
            _set_enabled(False)

    def __call__(self, fn: Callable) -> Callable:
        return super().__call__(fn) if self._on else fn


class enable_grad(_NoParamGradMode):
    """Enable graph recording inside a ``no_grad`` region."""

    _mode = True


class set_grad_enabled(_GradMode):
    """Set grad mode now; restore the previous mode when used as a context manager.

    >>> with engine.set_grad_enabled(False): y = x * 2
    """

    def __init__(self, mode: bool) -> None:
        self._prev = is_grad_enabled()
        self._mode = bool(mode)
        _set_enabled(self._mode)

    def __enter__(self) -> None:
        pass

    def __call__(self, fn: Callable) -> Callable:
        # As a decorator the mode applies inside ``fn`` only: undo the switch made by __init__.
        _set_enabled(self._prev)
        return super().__call__(fn)


# ---------------------------------------------------------------- primitives and nodes
PRIMITIVES: dict[str, Primitive] = {}
_seq = itertools.count()

FREED_MSG = (
    "Trying to backward through the graph a second time (or directly access saved tensors after "
    "they have already been freed). Saved intermediate values of the graph are freed when you call "
    ".backward() or autograd.grad(). Specify retain_graph=True if you need to backward through the "
    "graph a second time or if you need to access saved tensors after calling backward."
)


class Primitive:
    """One differentiable operation: a numpy forward, a VJP and a JVP over engine ops, a
    batching rule and a shape rule with its cost (``defvjp``, ``defjvp``, ``defbatch``,
    ``defshape``), stated together where it is defined: one record per primitive.

    ``save`` names what backward needs: input positions (ints >= 0) and outputs (-1 is output 0,
    -2 output 1, ...). Only those are kept, and they are freed after backward unless
    ``retain_graph``. With ``aux=True`` the forward returns ``(out, aux)`` and ``aux`` (plain
    numpy data such as argmax indices) is saved too. ``save_if`` says, per saved input, which
    input's gradient is the only one to read its values (None: any gradient may): as in torch, a
    saved input modified in place then breaks backward only when that gradient is wanted
    (``y = x * 3.0; x.add_(1)`` is fine when only ``x`` requires grad).
    """

    __slots__ = ("name", "fwd", "bwd", "jvp", "batch", "save", "save_if", "n_out", "aux", "saves_output",
                 "pick_saved", "shape_rule", "work_rule", "scratch_rule")

    def __init__(self, name: str, fwd: Callable, save: tuple[int, ...] = (), n_out: int = 1,
                 aux: bool = False, save_if: tuple[int | None, ...] | None = None) -> None:
        self.name, self.fwd, self.save, self.n_out, self.aux = name, fwd, save, n_out, aux
        self.save_if = save_if
        self.saves_output = any(i < 0 for i in save)
        # several saved inputs: picked from the arguments in one C call (a tuple)
        self.pick_saved = operator.itemgetter(*save) if len(save) > 1 else None
        self.bwd: Callable | None = None
        self.jvp: Callable | None = None
        self.batch: Callable | None = None
        self.shape_rule: Callable | None = None
        self.work_rule: Callable | None = None
        self.scratch_rule: Callable | None = None
        if name in PRIMITIVES:
            raise ValueError(f"primitive {name!r} defined twice")
        PRIMITIVES[name] = self

    def defvjp(self, fn: Callable) -> Callable:
        self.bwd = fn
        return fn

    def defjvp(self, fn: Callable) -> Callable:
        """Set the JVP rule: ``fn(ctx, tangents, *args, **params)`` returns the output's tangent
        (a tuple for several outputs, None for zero), written in engine ops. ``tangents`` has one
        entry per argument (None where it has no tangent); ``ctx.out`` holds the output(s). The
        generic rules below (:func:`linear_jvp`, :func:`multilinear_jvp`, :func:`diagonal_jvp`,
        :func:`transpose_jvp`) cover most primitives."""
        self.jvp = fn
        return fn

    def defbatch(self, fn: Callable) -> Callable:
        """Set the batching rule: ``fn(prim, arrays, batched, **params)`` runs the primitive on
        numpy arrays of which those flagged in ``batched`` carry a leading batch dimension, and
        returns the output(s) with the batch dimension leading. See :func:`elementwise_batch`,
        :func:`dims_batch` and :func:`leading_batch`; a primitive without one runs under vmap
        once per batch element (with a one-time warning)."""
        self.batch = fn
        return fn

    def defshape(self, fn: Callable | None = None, *, work: Callable | None = None,
                 scratch: Callable | None = None) -> Callable:
        """Set the shape rule and its cost rule, read by meta mode (:mod:`engine._meta`).

        ``fn(prim, arrays, params)`` returns the output(s) as meta arrays of the right shape and
        dtype without computing (the shared rules and helpers are in :mod:`engine._meta`, e.g.
        ``elementwise_shape``); it raises what the forward would raise. ``work(prim, arrays,
        params, outs)`` is the units of work (None: every operand read and every output written
        once), ``scratch(prim, arrays, params, outs)`` the bytes of transient memory (None: none).
        Used bare (``@p.defshape``) or with costs (``@p.defshape(work=...)``)."""
        if fn is None:
            return lambda f: self.defshape(f, work=work, scratch=scratch)
        self.shape_rule, self.work_rule, self.scratch_rule = fn, work, scratch
        return fn

    def __call__(self, *args: Any, **params: Any) -> Any:
        return apply(self, args, params)

    def __repr__(self) -> str:
        return f"<primitive {self.name}>"


def primitive(save: tuple[int, ...] = (), n_out: int = 1, aux: bool = False,
              name: str | None = None, save_if: tuple[int | None, ...] | None = None
              ) -> Callable[[Callable], Primitive]:
    """Decorator turning a numpy forward into a :class:`Primitive`; add its VJP with ``.defvjp``."""

    def deco(fwd: Callable) -> Primitive:
        return Primitive(name or fwd.__name__.strip("_"), fwd, save, n_out, aux, save_if)

    return deco


class _SavedOutput:
    __slots__ = ("array", "idx", "fw", "bat", "vc", "ver")

    def __init__(self, array: np.ndarray, idx: int) -> None:
        self.array, self.idx = array, idx
        self.fw = None  # the output's tangents, when it was computed under a dual level
        self.bat = None  # the output's batch, when it was computed under vmap
        self.vc = None  # the output's version counter, once it has one (see version_counter)
        self.ver = 0


class Node:
    """A recorded application of a primitive (torch's ``grad_fn``)."""

    # ``versions``: the saved tensors' versions at save time, set only once some tensor has been
    # mutated (before that every version is 0); see check_versions.
    __slots__ = ("prim", "edges", "params", "saved", "aux", "in_meta", "out_meta", "seq", "hooks",
                 "retains", "versions", "__weakref__")

    def __init__(self, prim: Primitive, edges: Sequence, params: dict | None, saved: tuple | None,
                 aux: Any, in_meta: Sequence) -> None:
        self.prim = prim
        self.edges = edges          # per input: None, or (Node | leaf Tensor, output index)
        self.params = params
        self.saved = saved          # () when nothing is saved; None once freed
        self.aux = aux
        self.in_meta = in_meta      # per input: (shape, numpy dtype) or None
        self.out_meta: tuple | None = None  # multi-output primitives: (shape, dtype) per output
        self.seq = next(_seq)       # creation order: a valid topological order
        # (scalar_operator builds its nodes inline: a slot added here is set there too)
        self.hooks: dict[int, list] | None = None
        self.retains: dict[int, Any] | None = None

    def name(self) -> str:
        special = NODE_NAMES.get(self.prim.name)
        if special is not None:
            return special
        return "".join(p.capitalize() for p in self.prim.name.split("_")) + "Backward0"

    @property
    def next_functions(self) -> tuple:
        return tuple((e[0] if e is not None and isinstance(e[0], Node) else None,
                      e[1] if e is not None else 0) for e in self.edges)

    @property
    def needs_input_grad(self) -> tuple[bool, ...]:
        return tuple(e is not None for e in self.edges)

    def __repr__(self) -> str:
        return f"<{self.name().rpartition('::')[2]} object at {hex(id(self))}>"

    def _unpack(self) -> tuple:
        saved = self.saved
        if saved is None:
            raise RuntimeError(FREED_MSG)
        if mutation_seen:
            check_versions(self)
        if not self.prim.saves_output:
            return saved
        return tuple(_saved_output(s, self) if type(s) is _SavedOutput else s for s in saved)


# Nodes whose torch name does not follow the primitive's (``grad_fn.name()``).
NODE_NAMES: dict[str, str] = {}

# ---------------------------------------------------------------- version counters
# Set by the first in-place op of the process: until then no tensor has a version other than 0,
# so apply records no versions and backward checks none.
mutation_seen = False

_HINT = ("Hint: enable anomaly detection to find the operation that failed to compute its gradient, "
         "with torch.autograd.set_detect_anomaly(True, check_nan=False).")


def version_counter(t: Tensor) -> list:
    """``t``'s version counter, made on first need; an output saved by its node shares it."""
    vc = getattr(t, "_vc", None)
    if vc is None:
        base = getattr(t, "_vbase", None)
        if base is not None:  # a view counts with its base
            vc = t._vc = version_counter(base)
            return vc
        vc = t._vc = [0]
        link_saved_output(t)
    return vc


def link_saved_output(t: Tensor) -> None:
    """Let the node that saved ``t`` as its output see ``t``'s version from now on."""
    node = t.grad_fn
    if node is not None and node.prim.saves_output and node.saved:
        for s in node.saved:
            if type(s) is _SavedOutput and s.idx == t._out:
                s.vc, s.ver = t._vc, t._vc[0]


def _versions(saved: tuple) -> tuple:
    return tuple(vc[0] if (vc := getattr(s, "_vc", None)) else 0 for s in saved)


def check_versions(node: Node) -> None:
    """torch's error when a tensor saved by ``node`` was modified in place since."""
    versions = getattr(node, "versions", None)
    need = node.prim.save_if
    for i, s in enumerate(node.saved):
        if need is not None and need[i] is not None and node.edges[need[i]] is None:
            continue  # only a gradient this node does not compute reads these values
        if type(s) is _SavedOutput:
            if s.vc is None or s.vc[0] == s.ver:
                continue
            now, want, arr = s.vc[0], s.ver, s.array
            what = f", which is output {s.idx} of {_short_name(node)},"
        elif isinstance(s, Tensor):
            vc = getattr(s, "_vc", None)
            want = versions[i] if versions else 0
            if vc is None or vc[0] == want:
                continue
            now, arr = vc[0], s._data
            what = f", which is output {s._out} of {_short_name(s.grad_fn)}," if s.grad_fn is not None \
                else ""
        else:
            continue
        raise RuntimeError(
            "one of the variables needed for gradient computation has been modified by an inplace "
            f"operation: [torch.{_dtype.tensor_type(arr.dtype)} {list(arr.shape)}]{what} is "
            f"at version {now}; expected version {want} instead. {_HINT}")


def _short_name(node: Node) -> str:
    name = node.name()
    head, sep, tail = name.rpartition("Backward")
    return head if sep and tail.isdigit() else name


def _saved_output(s: _SavedOutput, node: Node) -> Tensor:
    t = Tensor._make(s.array, node, s.idx, True)
    if s.fw is not None:  # forward-over-reverse: the VJP needs the output's tangents too
        t._fw = s.fw
    if s.bat is not None:
        t._bat = s.bat
    return t


# ---------------------------------------------------------------- forward: applying a primitive
def _is_tensor(a: object) -> bool:
    return isinstance(a, Tensor)


def apply(prim: Primitive, args: Sequence, params: dict | None = None,
          dtype: np.dtype | None = None) -> Any:
    """Run ``prim`` on tensors/constants and record a node if any input requires grad.

    ``dtype`` casts tensor inputs and Python scalars to a common numpy dtype first (type
    promotion); gradients are cast back to each input's dtype in backward.
    """
    # This is the forward hot path (and, with VJPs written in engine ops, half the backward):
    # one pass over the arguments, no per-call closures or generators. The per-input edge lists
    # are made only once an input that requires grad is met (never under no_grad, nor in a
    # backward pass without create_graph). Forward mode costs one test here when no dual
    # level is active.
    mode = _state.mode
    if mode == 2:
        if _state.ext:  # forward mode or vmap
            if _state.fw:
                return _apply_dual(prim, args, params, dtype)
            return _apply_batched(prim, args, params, dtype)
        meta = _hooks.meta
        enabled = _state.enabled
    else:
        meta = None
        enabled = not mode
    arrays = []
    edges = in_meta = None
    for a in args:
        if isinstance(a, Tensor):
            x = a._data
            xdt = x.dtype
            if a._rg and enabled:
                if edges is None:
                    if arrays:
                        edges = [None] * len(arrays)
                        in_meta = edges.copy()
                    else:  # the first argument: the common case
                        edges, in_meta = [], []
                edges.append((a.grad_fn or a, a._out))
                in_meta.append((x.shape, xdt))
            elif edges is not None:
                edges.append(None)
                in_meta.append(None)
            if dtype is not None and xdt is not dtype and xdt != dtype:
                x = x.astype(dtype)
        else:
            if edges is not None:
                edges.append(None)
                in_meta.append(None)
            # A Python number becomes a 0-d array: cheaper to make than a numpy scalar, and
            # ufuncs take it faster.
            x = _array(a, dtype) if dtype is not None and isinstance(a, _PY_SCALARS) else a
        arrays.append(x)
    try:
        if meta is None:
            if not _tracing or _hooks.trace is None:
                out = prim.fwd(*arrays, **params) if params else prim.fwd(*arrays)
            else:
                out = _hooks.trace(prim, args, arrays, params)
        else:
            out = meta(prim, arrays, params)
    except ValueError as e:
        if "broadcast" not in str(e):
            raise
        raise _broadcast_error(arrays) or e from None
    aux = None
    if prim.aux:
        out, aux = out
    if edges is None:
        if prim.n_out == 1:
            return _make(out, None, 0, False)  # every argument given: Python's fastest call
        return tuple(_make(o) for o in out)
    save = prim.save
    if not save or prim.saves_output:
        saved = ()
    elif len(save) == 1:
        saved = (args[save[0]],)
    else:
        saved = prim.pick_saved(args)
    node = Node(prim, edges, params, saved, aux, in_meta)
    if mutation_seen and saved:
        node.versions = _versions(saved)
    if prim.n_out == 1:
        result = _make(out, node, 0, True)
        outs = (result,)
    else:
        result = outs = tuple(_make(o, node, i, True) for i, o in enumerate(out))
        node.out_meta = tuple((o._data.shape, o._data.dtype) for o in outs)
    if save and prim.saves_output:  # outputs are kept as arrays: a tensor would point back at the node
        node.saved = tuple(args[i] if i >= 0 else _SavedOutput(outs[-1 - i]._data, -1 - i)
                           for i in save)
    return result


_PY_SCALARS = (int, float, bool)
_array = np.array
_make = Tensor._make  # bound once: apply is the hot path
_new = object.__new__


# Python numbers of the scalar operators as 0-d arrays of the tensor's dtype (read-only: ufunc
# inputs only), made once per value: the chain multiplies by the same few numbers every time.
_consts: dict[float, np.ndarray] = {}
# per shape, for the scalar operators: (dtype, in_meta of tensor <op> c, in_meta of c <op> tensor)
_in_metas: dict[tuple, tuple] = {}


def _const(c: float, dt: np.dtype) -> np.ndarray:
    k = _array(c, dt)
    # -0.0 == 0.0 as keys: zeros are not kept; nor is a number that overflows the dtype, as
    # each use of it warns (or raises, under np.errstate) like the cast here
    if c and not (math.isinf(k) and not math.isinf(c)):
        k.flags.writeable = False
        if len(_consts) >= 256:
            _consts.clear()
        _consts[c] = k
    return k


def _scalar_metas(shape: tuple, dt: np.dtype) -> tuple:
    meta = (shape, dt)
    metas = (dt, (meta, None), (None, meta))
    if len(_in_metas) >= 256:
        _in_metas.clear()
    _in_metas[shape] = metas
    return metas


def scalar_operator(prim: Primitive, general: Callable, reflected: bool = False) -> Callable:
    """The Tensor operator for ``tensor <op> number`` (``number <op> tensor`` when
    ``reflected``): :func:`apply` of ``prim`` to ``(t, c)`` with the tensor's dtype, by a shorter
    path when the tensor is floating and the number a Python float or int (such a number never
    promotes a floating tensor: no dtype to work out, no unbroadcasting, no check that can fail);
    anything else is ``general(t, c)`` (``general(c, t)``), the public op.

    The scalar chain (``x * a + b``) is nothing but these, so the operator is the whole forward:
    no call to ``apply``, no ``_make``. Anything unusual (forward mode, vmap, meta mode, tracing)
    takes :func:`apply`, which records the same node. Bound by :mod:`engine.ops`::

        Tensor.__mul__ = scalar_operator(_mul, mul)
        Tensor.__rmul__ = scalar_operator(_mul, mul, reflected=True)
    """
    if prim.saves_output or prim.aux or prim.n_out != 1 or prim.save not in ((), (0,), (1,), (0, 1)):
        raise ValueError(f"{prim.name}: no scalar operator for this primitive")
    save = prim.save
    save_both = len(save) == 2  # (0, 1): the arguments as they are
    # numpy ufuncs return a 0-d array rather than a numpy scalar when given out=... (as _make
    # would convert it): one conversion less for 0-d tensors (the keyword costs the others more).
    # A forward that cuts big operands across threads (engine._kernels.threaded_ufunc) keeps its
    # ufunc as .ufunc: a 0-d tensor is never cut, so that is what it calls.
    ufunc = isinstance(getattr(prim.fwd, "ufunc", prim.fwd), np.ufunc)
    ndarray, asarray = np.ndarray, np.asarray

    def method(self: Tensor, other: Any) -> Any:
        tp = type(other)
        x = self._data
        dt = x.dtype
        if (tp is not float and tp is not int) or dt.kind != "f":
            return general(other, self) if reflected else general(self, other)
        mode = _state.mode
        if mode == 2 or _tracing:
            return apply(prim, (other, self) if reflected else (self, other), None, dt)
        k = _consts.get(other)
        if k is None or k.dtype is not dt:
            k = _const(other, dt)
        if ufunc and not x.ndim:  # a 0-d array, not a numpy scalar: no conversion after
            f = prim.fwd
            f = getattr(f, "ufunc", f)
            out = f(k, x, out=...) if reflected else f(x, k, out=...)
        else:
            out = prim.fwd(k, x) if reflected else prim.fwd(x, k)
            if type(out) is not ndarray:
                out = asarray(out)
        r = _new(Tensor)  # Tensor._make, inline
        r._data = out
        r._out = 0
        r._grad = r._hooks = None
        if mode or not self._rg:
            r._rg = False
            r.grad_fn = None
            return r
        # The inputs' metadata comes from a cache (tuples are immutable: nodes can share them):
        # two objects fewer per node for the garbage collector to count and scan.
        shape = x.shape
        metas = _in_metas.get(shape)
        if metas is None or metas[0] is not dt:
            metas = _scalar_metas(shape, dt)
        edge = (self.grad_fn or self, self._out)
        if reflected:
            args, edges, in_meta = (other, self), (None, edge), metas[2]
        else:
            args, edges, in_meta = (self, other), (edge, None), metas[1]
        saved = args if save_both else (args[save[0]],) if save else ()
        node = _new(Node)  # Node(prim, edges, None, saved, None, in_meta), inline
        node.prim = prim
        node.edges = edges
        node.saved = saved
        node.in_meta = in_meta
        node.params = node.aux = node.out_meta = node.hooks = node.retains = None
        node.seq = next(_seq)
        if mutation_seen and saved:
            node.versions = _versions(saved)
        r._rg = True
        r.grad_fn = node
        return r

    method.__name__ = method.__qualname__ = general.__name__
    method.__doc__ = general.__doc__
    return method


# ---------------------------------------------------------------- forward mode: dual levels and JVPs
# A tensor's tangents live in its ``_fw`` slot, a dict {level: tangent}, unset on the tensors that
# never had one (reading goes through getattr: _make stays as it is). Levels are numbered by a
# counter and never reused, so an exited level's stale entries are never mistaken for a live one.
_level_ids = itertools.count()
_level_duals: dict[int, dict[int, weakref.ref]] = {}  # level -> {id(tensor): ref}: cleared on exit


def _set_fw(levels: tuple) -> None:
    _state.fw = levels
    _set_ext(bool(levels) or _state.vm is not None)


def _is_dual(t: Tensor) -> bool:
    fw = getattr(t, "_fw", None)
    return bool(fw) and any(lev in fw for lev in _state.fw)


def _enter_level() -> int:
    """Open a dual level (innermost); returns its id."""
    lev = next(_level_ids)
    _level_duals[lev] = {}
    _set_fw((*_state.fw, lev))
    return lev


def _exit_level(lev: int) -> None:
    """Close ``lev``: every tangent at that level is dropped, as torch's exit_dual_level does."""
    _set_fw(tuple(x for x in _state.fw if x != lev))
    for ref in list(_level_duals.pop(lev, {}).values()):
        t = ref()
        fw = getattr(t, "_fw", None) if t is not None else None
        if fw:
            fw.pop(lev, None)


def _set_tangent(t: Tensor, lev: int, tangent: Tensor) -> None:
    fw = getattr(t, "_fw", None)
    if fw is None:
        fw = t._fw = {}
    fw[lev] = tangent
    duals = _level_duals.get(lev)
    if duals is not None:
        duals[id(t)] = weakref.ref(t, lambda _, k=id(t), d=duals: d.pop(k, None))


def _get_tangent(t: Tensor, lev: int) -> Tensor | None:
    fw = getattr(t, "_fw", None)
    return fw.get(lev) if fw else None


class JvpCtx:
    """What a JVP rule sees besides tangents and arguments: the output(s), and VJP-style
    ``edges``/``in_meta`` (an edge per argument with a tangent) for rules that reuse the VJP."""

    __slots__ = ("prim", "out", "edges", "in_meta", "aux", "out_meta")

    def __init__(self, prim: Primitive, out: Any, tangents: list, args: Sequence) -> None:
        self.prim, self.out, self.aux = prim, out, None
        self.edges = [True if t is not None else None for t in tangents]
        self.in_meta = [(a._data.shape, a._data.dtype) if isinstance(a, Tensor) else None for a in args]
        outs = out if type(out) is tuple else (out,)
        self.out_meta = tuple((o._data.shape, o._data.dtype) for o in outs)

    @property
    def outs(self) -> tuple:
        return self.out if type(self.out) is tuple else (self.out,)


def _apply_dual(prim: Primitive, args: Sequence, params: dict | None, dtype: np.dtype | None) -> Any:
    """``apply`` under dual levels: the primal as usual, then each level's tangent by the
    primitive's JVP rule. Levels go outermost first, each rule running with only the outer levels
    active, so that a tangent computed at an inner level carries its own outer tangents (nested
    forward mode: jacfwd of jacfwd) and no level sees its own perturbation twice."""
    levels = _state.fw
    fws = [getattr(a, "_fw", None) if isinstance(a, Tensor) else None for a in args]
    _set_fw(())
    try:
        out = apply(prim, args, params, dtype)
    finally:
        _set_fw(levels)
    if not any(fws):
        return out
    outs = out if type(out) is tuple else (out,)
    for k, lev in enumerate(levels):
        tangents = [fw.get(lev) if fw else None for fw in fws]
        if not any(t is not None for t in tangents):
            continue
        if prim.jvp is None:
            raise NotImplementedError(f"Trying to use forward AD with {prim.name} that does not support it")
        _set_fw(levels[:k])
        try:
            ctx = JvpCtx(prim, out, tangents, args)
            res = prim.jvp(ctx, tangents, *args, **params) if params else prim.jvp(ctx, tangents, *args)
        finally:
            _set_fw(levels)
        res = res if type(res) is tuple else (res,)
        for o, t in zip(outs, res):
            d = o._data
            if d.dtype.kind != "f":
                continue
            if t is None:
                t = Tensor._make(np.zeros_like(d))
            elif t._data.shape != d.shape:
                t = t.expand(d.shape)
            if t._data.dtype != d.dtype:
                t = t.to(d.dtype)
            _set_tangent(o, lev, t)
    node = outs[0].grad_fn
    if node is not None and node.prim is prim and prim.saves_output and node.saved:
        for s in node.saved:  # the backward of a saved output must see its tangents
            if type(s) is _SavedOutput:
                s.fw = getattr(outs[s.idx], "_fw", None)
    return out


# ---------------------------------------------------------------- vmap: batched tensors
# Under a vectorized vmap a batched tensor keeps the whole batch in ``_bat = (level, array)``,
# batch dimension first, and a Shadow (the shape and dtype of one element, no values) in
# ``_data``: op code between primitives sees one element's shape, as it would in the loop, and
# any read of values there raises VmapFallback (vmap then loops). Primitives run on the batch by
# their batching rules.
_vm_ids = itertools.count()
_warned: set[str] = set()


def _enter_vmap(randomness: str = "different") -> int:
    lev = next(_vm_ids)
    _state.vm = lev
    _state.vm_random = randomness
    _set_ext(True)
    return lev


def _exit_vmap(prev: int | None) -> None:
    _state.vm = prev
    _state.vm_random = "different"  # (vmap does not nest vectorized)
    _set_ext(bool(_state.fw) or prev is not None)


class RandomInVmap(VmapFallback):
    """A random op under a vectorized vmap whose randomness is not "same"."""


def random_op() -> None:
    """Called by every random op: under a vectorized vmap (this thread's) a random draw is one for
    the whole batch, right only for ``randomness="same"``; otherwise vmap raises (``"error"``)
    or runs once per element (``"different"``)."""
    if _state.vm is not None and _state.vm_random != "same":
        raise RandomInVmap()


def batched(array: np.ndarray, lev: int, rg: bool = False) -> Tensor:
    """A tensor batched at vmap level ``lev`` over dimension 0 of ``array``."""
    t = Tensor._make(Shadow(array.shape[1:], array.dtype))
    t._bat = (lev, array)
    return t


def batch_of(t: Tensor) -> np.ndarray | None:
    """The whole batch of a tensor batched at the active vmap level, else None."""
    bat = getattr(t, "_bat", None)
    if bat is not None and bat[0] == _state.vm:
        return bat[1]
    if type(t._data) is Shadow:  # a batched tensor's Shadow, taken out of its tensor
        raise VmapFallback("a tensor made from a batched tensor's data")
    return None


def _apply_batched(prim: Primitive, args: Sequence, params: dict | None, dtype: np.dtype | None) -> Any:
    """``apply`` under vmap: the primitive's batching rule on the batches, then the usual node
    (recorded with one element's shapes, as the loop would)."""
    arrays, flags = [], []
    for a in args:
        b = batch_of(a) if isinstance(a, Tensor) else None
        if b is None:
            x = a._data if isinstance(a, Tensor) else a
            if dtype is not None and isinstance(a, _PY_SCALARS):
                x = _array(a, dtype)
        else:
            x = b
        if dtype is not None and isinstance(x, np.ndarray) and x.dtype != dtype:
            x = x.astype(dtype)
        arrays.append(x)
        flags.append(b is not None)
    if not any(flags):
        _set_ext(False)
        try:
            return apply(prim, args, params, dtype)
        finally:
            _set_ext(True)
    p = params or {}
    if prim.batch is not None:
        out = prim.batch(prim, arrays, flags, **p)
    else:
        out = _loop_batch(prim, arrays, flags, p)
    outs = out if prim.n_out > 1 else (out,)
    shadows = tuple(Shadow(o.shape[1:], o.dtype) for o in outs)
    prev_meta = _hooks.meta
    _hooks.meta = lambda prim, arrays, params: shadows if prim.n_out > 1 else shadows[0]
    _set_ext(False)
    try:
        result = apply(prim, args, params, dtype)
    finally:
        _hooks.meta = prev_meta
        _set_ext(True)
    res = result if prim.n_out > 1 else (result,)
    lev = _state.vm
    for t, o in zip(res, outs):
        t._bat = (lev, o)
    node = res[0].grad_fn
    if node is not None and prim.saves_output and node.saved:
        for sv in node.saved:
            if type(sv) is _SavedOutput:
                sv.bat = res[sv.idx]._bat
    return result


def _loop_batch(prim: Primitive, arrays: list, flags: list, params: dict) -> Any:
    """The fallback for a primitive without a batching rule: once per batch element (torch's
    vmap fallback), with a one-time warning naming it."""
    if prim.name not in _warned:
        _warned.add(prim.name)
        import warnings
        warnings.warn(f"There is a performance drop because we have not yet implemented the batching rule "
                      f"for {prim.name}: vmap runs it once per batch element.", stacklevel=4)
    n = next(a.shape[0] for a, f in zip(arrays, flags) if f)
    res = [prim.fwd(*[a[i] if f else a for a, f in zip(arrays, flags)], **params) for i in range(n)]
    if prim.n_out > 1:
        return tuple(np.stack([r[k] for r in res]) for k in range(prim.n_out))
    return np.stack(res)


def _ndim(a: Any, flag: bool) -> int:
    return np.ndim(a) - 1 if flag else np.ndim(a)


def _align(arrays: list, flags: list, rank: int | None = None) -> list:
    """Batched arrays reshaped to ``(B, 1, ..., 1, *element shape)`` so that, batch dimension
    first, they broadcast against the unbatched ones as their elements would."""
    if rank is None:
        rank = max(_ndim(a, f) for a, f in zip(arrays, flags))
    out = []
    for a, f in zip(arrays, flags):
        if f:
            k = rank - (a.ndim - 1)
            if k > 0:
                a = a.reshape(a.shape[:1] + (1,) * k + a.shape[1:])
        out.append(a)
    return out


def elementwise_batch(prim: Primitive, arrays: list, flags: list, **params: Any) -> Any:
    """Broadcasting primitives: batched operands aligned, then the primitive as it is."""
    out = prim.fwd(*_align(arrays, flags), **params)
    n = next(a.shape[0] for a, f in zip(arrays, flags) if f)
    if prim.n_out > 1:
        return tuple(np.broadcast_to(o, (n,) + o.shape[1:]) if o.shape[0] != n else o for o in out)
    return out if out.shape[0] == n else np.broadcast_to(out, (n,) + out.shape[1:])


def leading_batch(prim: Primitive, arrays: list, flags: list, **params: Any) -> Any:
    """Primitives that broadcast over leading dimensions (matrix ops on the last two): aligned,
    then as they are."""
    return elementwise_batch(prim, arrays, flags, **params)


def _shift(d: Any, nd: int) -> Any:
    """One element's dim(s) as dims of the batch: non-negative ones move right by one; None (all
    dims) becomes every element dim."""
    if d is None:
        return tuple(range(1, nd + 1))
    if isinstance(d, (tuple, list)):
        return tuple(x + 1 if x >= 0 else x for x in d)
    return d + 1 if d >= 0 else d


def dims_batch(*names: str, all_if_none: bool = True) -> Callable:
    """Single-operand primitives whose parameters ``names`` are dims of the element (sum's dims,
    softmax's dim, ...): the batched operand is the first; the dims shift by one."""

    def rule(prim: Primitive, arrays: list, flags: list, **params: Any) -> Any:
        nd = arrays[0].ndim - 1 if flags[0] else np.ndim(arrays[0])
        arrays = _align(arrays, flags, nd)
        for name in names:
            if name in params and (params[name] is not None or all_if_none):
                params[name] = _shift(params[name], nd)
        n = next(a.shape[0] for a, f in zip(arrays, flags) if f)
        arrays = [a if f else np.broadcast_to(a, (n,) + np.shape(a)) if isinstance(a, np.ndarray) else a
                  for a, f in zip(arrays, flags)]
        return prim.fwd(*arrays, **params)

    return rule


def batched_values(fn: Callable, *args: Any) -> Tensor | None:
    """For ops outside the primitives that read values (comparisons, masks): ``fn`` applied to
    the batches as an elementwise op, as a batched tensor; None when no argument is batched."""
    if _state.vm is None:
        return None
    arrays, flags = [], []
    for a in args:
        b = batch_of(a) if isinstance(a, Tensor) else None
        arrays.append(b if b is not None else a._data if isinstance(a, Tensor) else a)
        flags.append(b is not None)
    if not any(flags):
        return None
    out = fn(*_align(arrays, flags))
    n = next(a.shape[0] for a, f in zip(arrays, flags) if f)
    if out.shape[0] != n:
        out = np.broadcast_to(out, (n,) + out.shape[1:])
    return batched(np.asarray(out), _state.vm)


# Generic JVP rules. Each is exact for the class of primitives it names; a primitive states its
# rule next to its VJP (``prim.defjvp(linear_jvp)``), so the choice is made, and read, per record.
def _float_tensor(a: object) -> bool:
    return isinstance(a, Tensor) and a._data.dtype.kind == "f"


def linear_jvp(ctx: JvpCtx, tangents: list, *args: Any, **params: Any) -> Any:
    """Primitives linear in their floating arguments jointly (add, sum, reshape, cat, gather's
    source...): the primitive itself applied to the tangents, zeros for arguments without one."""
    new = []
    for a, t in zip(args, tangents):
        if t is not None:
            new.append(t)
        elif isinstance(a, Tensor) and a._data.dtype.kind != "b":  # (a bool tensor is a mask)
            new.append(Tensor._make(np.zeros_like(a._data)))
        elif isinstance(a, (int, float)) and not isinstance(a, bool):
            new.append(0.0)  # a constant term: it has no tangent
        else:
            new.append(a)
    return apply(ctx.prim, new, params)


def multilinear_jvp(ctx: JvpCtx, tangents: list, *args: Any, **params: Any) -> Any:
    """Primitives linear in each argument separately (mul, matmul, linear, convolution): the sum
    over arguments with a tangent of the primitive with that argument replaced by its tangent."""
    total = None
    for i, t in enumerate(tangents):
        if t is None:
            continue
        new = list(args)
        new[i] = t
        term = apply(ctx.prim, new, params)
        total = term if total is None else _add_tangents(total, term)
    return total


def _add_tangents(a: Any, b: Any) -> Any:
    if type(a) is tuple:
        return tuple(x if y is None else y if x is None else x + y for x, y in zip(a, b))
    return a + b


def _saved_for(prim: Primitive, args: Sequence, outs: tuple) -> tuple:
    return tuple(args[i] if i >= 0 else outs[-1 - i] for i in prim.save)


def diagonal_jvp(ctx: JvpCtx, tangents: list, *args: Any, **params: Any) -> Any:
    """Elementwise primitives (a diagonal Jacobian per argument, after broadcasting): the VJP
    multiplies its cotangent by the local derivative, and so, applied to a tangent broadcast to
    the output's shape, gives that argument's share of the JVP."""
    prim = ctx.prim
    saved = _saved_for(prim, args, ctx.outs)
    shape = ctx.outs[0]._data.shape
    total = None
    edges = ctx.edges
    for i, t in enumerate(tangents):
        if t is None:
            continue
        if t._data.shape != shape:
            t = t.expand(shape)
        ctx.edges = [True if j == i else None for j in range(len(args))]
        g = prim.bwd(ctx, t, *saved, **params) if params else prim.bwd(ctx, t, *saved)
        g = g[i] if type(g) is tuple else g
        if g is not None:
            total = g if total is None else total + g
    ctx.edges = edges
    return total


def transpose_jvp(ctx: JvpCtx, tangents: list, *args: Any, **params: Any) -> Any:
    """Any primitive, from its VJP: ``u -> J^T u`` is linear, so its VJP against the tangent is
    ``J t`` (the double-backward trick, for one primitive). It costs the VJP and its backward;
    primitives on the hot paths have direct rules instead."""
    prim = ctx.prim
    saved = _saved_for(prim, args, ctx.outs)
    us = [Tensor._make(np.ones_like(o._data)).requires_grad_() if o._data.dtype.kind == "f" else None
          for o in ctx.outs]
    create = _state.enabled and any(
        (isinstance(a, Tensor) and a._rg) or (t is not None and t._rg) for a, t in zip(args, tangents))
    prev = _state.enabled
    _set_enabled(True)
    try:
        live = [u for u in us if u is not None]
        g = us[0] if prim.n_out == 1 else _output_grads_of(us, ctx)
        gs = prim.bwd(ctx, g, *saved, **params) if params else prim.bwd(ctx, g, *saved)
        gs = (gs,) if len(args) == 1 else gs
        roots, cots = [], []
        for gi, t, meta in zip(gs, tangents, ctx.in_meta):
            if gi is None or t is None or not gi._rg:
                continue
            roots.append(_fit(gi, meta))
            cots.append(t)
        if not roots:
            return None
        res = _run_backward(roots, [c.to(r.dtype) if c._data.dtype != r._data.dtype else c
                                    for r, c in zip(roots, cots)],
                            live, retain_graph=create, create_graph=create, accumulate=False)
    finally:
        _set_enabled(prev)
    it = iter(res)
    outs = [next(it) if u is not None else None for u in us]
    return outs[0] if prim.n_out == 1 else tuple(outs)


def _output_grads_of(us: list, ctx: JvpCtx) -> tuple:
    return tuple(u if u is not None else Tensor._make(np.zeros(*m)) for u, m in zip(us, ctx.out_meta))


def zeros_jvp(ctx: JvpCtx, tangents: list, *args: Any, **params: Any) -> None:
    """Piecewise-constant primitives (sign, floor, round, ...): a zero tangent."""
    return None


# ---------------------------------------------------------------- backward
def _accumulate(a: Tensor | None, b: Tensor, create_graph: bool, owned: set[int]) -> Tensor:
    """``a + b`` for a gradient buffer.

    Without a graph to record, a sum made here belongs to this backward pass alone (its id is in
    ``owned`` until the buffer is consumed), so later contributions are added into it in place.
    """
    if a is None:
        return b
    # (under forward mode or vmap the buffers carry tangents or a batch: no in-place adds)
    if create_graph and (a._rg or b._rg) or _state.ext:
        return a + b
    if id(a) in owned:
        np.add(a._data, b._data, out=a._data)
        return a
    s = Tensor._make(a._data + b._data)
    owned.add(id(s))
    return s


def _broadcast_error(arrays: list) -> RuntimeError | None:
    """torch's wording for operands that do not broadcast (numpy raises a ValueError)."""
    shapes = [np.shape(a) for a in arrays]
    n = max((len(s) for s in shapes), default=0)
    for dim in reversed(range(n)):  # torch names the last mismatching dim
        sizes = [(i, s[len(s) - n + dim]) for i, s in enumerate(shapes) if len(s) - n + dim >= 0]
        big = [(i, k) for i, k in sizes if k != 1]
        for (i, a), (j, b) in zip(big, big[1:]):
            if a != b:
                names = "abcdefghijklmnopqrstuvwxyz"
                return RuntimeError(f"The size of tensor {names[i]} ({a}) must match the size of "
                                    f"tensor {names[j]} ({b}) at non-singleton dimension {dim}")
    return None


def _fit(g: Tensor, meta: tuple) -> Tensor:
    """Sum a gradient back to its input's shape and cast it to its input's dtype."""
    shape, dt = meta
    if g._data.shape != shape:
        g = g.sum_to_size(shape)
    if g._data.dtype != dt:
        g = g.to(dt)
    return g


def _output_grads(node: Node, buf: list) -> tuple:
    """A multi-output node's gradients: outputs that received none get zeros."""
    return tuple(b if b is not None else Tensor._make(np.zeros(*meta))
                 for b, meta in zip(buf, node.out_meta))


def _holds_index(params: dict) -> bool:
    """Integer or bool arrays among a node's parameters are index tensors (gather, advanced
    indexing, ...). torch saves those, so like saved tensors they are freed after backward."""
    for v in params.values():
        for a in (v if type(v) is tuple else (v,)):
            if type(a) is np.ndarray and a.dtype.kind in "iub":
                return True
    return False


def _run_backward(roots: Sequence[Tensor], grads: Sequence[Tensor], targets: Sequence[Tensor] | None,
                  retain_graph: bool, create_graph: bool, accumulate: bool) -> list:
    """Propagate ``grads`` from ``roots``. Returns the gradients of ``targets`` (None if unused);
    with ``accumulate`` it also adds them (or all leaf gradients) into ``.grad``.

    With ``targets`` only the nodes on a path to them run, as in torch: the others keep their
    saved tensors and their hooks are not called.
    """
    buffers: dict[Node, list] = {}
    leaf_grads: dict[int, list] = {}
    needed: set[Node] | None = None
    capture_nodes: dict[tuple, list[int]] = {}
    capture_leaves: dict[int, list[int]] = {}
    owned: set[int] = set()  # ids of buffer sums this pass made (see _accumulate)

    def send(target: Node | Tensor, idx: int, g: Tensor) -> None:
        if type(target) is Node:
            if needed is not None and target not in needed and (target, idx) not in capture_nodes:
                return
            buf = buffers.get(target)
            if buf is None:
                buf = buffers[target] = [None] * target.prim.n_out
            buf[idx] = _accumulate(buf[idx], g, create_graph, owned)
        elif needed is None or id(target) in capture_leaves:
            entry = leaf_grads.get(id(target))
            if entry is None:
                leaf_grads[id(target)] = [target, g]
            else:
                entry[1] = _accumulate(entry[1], g, create_graph, owned)

    for t, g in zip(roots, grads):
        if g is not None:
            send(t.grad_fn or t, t._out, g)

    # Discover the graph; creation order (seq) is a topological order.
    nodes: list[Node] = []
    seen: set[Node] = set()
    leaves: set[int] = set()  # ids of the leaves the graph reaches
    stack = [n for n in buffers]
    seen.update(stack)
    pop, push, visit, see = stack.pop, stack.append, nodes.append, seen.add  # once per node
    while stack:
        n = pop()
        visit(n)
        for e in n.edges:
            if e is not None:
                t = e[0]
                if type(t) is Node:
                    if t not in seen:
                        see(t)
                        push(t)
                else:
                    leaves.add(id(t))
    nodes.sort(key=_seq_key)

    if targets is not None and all(t.grad_fn is None for t in targets) \
            and leaves.issubset(map(id, targets)):
        # Every path ends at a leaf and every leaf reached is a target: every node is on a path
        # to one, so none is left out (the common grad(loss, params)); capture them all.
        for pos, t in enumerate(targets):
            capture_leaves.setdefault(id(t), []).append(pos)
        results = [None] * len(targets)
        targets_all = True
    else:
        targets_all = False

    if targets is not None and not targets_all:
        for pos, t in enumerate(targets):
            if t.grad_fn is not None:
                capture_nodes.setdefault((t.grad_fn, t._out), []).append(pos)
            else:
                capture_leaves.setdefault(id(t), []).append(pos)
        needed = set()
        for n in nodes:  # ascending: inputs of n are decided before n
            for e in n.edges:
                if e is not None:
                    t = e[0]
                    if type(t) is Node:
                        if t in needed or (capture_nodes and (t, e[1]) in capture_nodes):
                            needed.add(n)
                            break
                    elif id(t) in capture_leaves:
                        needed.add(n)
                        break
        if accumulate:  # torch runs a non-leaf input's own grad_fn in backward(inputs=...)
            needed.update(n for n, _ in capture_nodes)
    captured = {n for n, _ in capture_nodes} if capture_nodes and not accumulate else ()
    if not targets_all:
        results: list = [None] * (len(targets) if targets is not None else 0)

    monitor = _hooks.backward
    prev = is_grad_enabled()
    _set_enabled(create_graph)
    try:
        for node in reversed(nodes):
            buf = buffers.pop(node, None)
            if buf is None:
                continue
            if owned:  # the buffer leaves this pass's hands: no more in-place adds into it
                for g in buf:
                    owned.discard(id(g))
            if needed is not None and node not in needed:
                # Captured but not needed upstream: torch runs the tensor hooks, then captures.
                if node.hooks or node.retains:
                    _run_tensor_hooks(node, buf, create_graph)
                if node in captured:
                    _capture(node, buf, capture_nodes, results)
                continue
            if node in captured:  # torch captures a needed node's gradient before its hooks
                _capture(node, buf, capture_nodes, results)
            if node.hooks or node.retains:
                _run_tensor_hooks(node, buf, create_graph)
            # The node's VJP, inline: this loop body runs once per node.
            prim = node.prim
            saved = node.saved
            if saved is None:
                raise RuntimeError(FREED_MSG)
            if prim.saves_output:
                saved = node._unpack()
            elif mutation_seen and saved:
                check_versions(node)
            params = node.params
            g = buf[0] if prim.n_out == 1 else _output_grads(node, buf)
            if params:
                out_grads = prim.bwd(node, g, *saved, **params)
            else:
                out_grads = prim.bwd(node, g, *saved) if saved else prim.bwd(node, g)
            if not retain_graph and (prim.save or (params and _holds_index(params))):
                node.saved = node.aux = None  # free what backward has used, as soon as it has
            edges = node.edges
            n = len(edges)
            if n == 1:
                out_grads = (out_grads,)
            if monitor is not None:
                monitor(node, out_grads)
            if type(out_grads) is not tuple or len(out_grads) != n:
                out_grads = _per_input(out_grads, n)
            # by index, not zip(edges, out_grads, in_meta): most nodes have one or two inputs
            i = -1
            for e in edges:
                i += 1
                if e is None:
                    continue
                g = out_grads[i]
                if g is None:
                    continue
                meta = node.in_meta[i]
                d = g._data
                if d.shape != meta[0] or (d.dtype is not meta[1] and d.dtype != meta[1]):
                    g = _fit(g, meta)
                t = e[0]
                # Fast path, the commonest case: the first gradient for a single-output node.
                if type(t) is Node and t.prim.n_out == 1 and (needed is None or t in needed) \
                        and t not in buffers:
                    buffers[t] = [g]
                else:
                    send(t, e[1], g)
        for leaf, g in leaf_grads.values():
            for hook in leaf._hooks or ():
                r = hook(g)
                if r is not None:
                    g = r
            positions = capture_leaves.get(id(leaf)) if targets is not None else None
            if not accumulate:
                for pos in positions or ():
                    results[pos] = g
            elif targets is None or positions:
                _accumulate_grad(leaf, g, create_graph)
    finally:
        _set_enabled(prev)
    return results


def _per_input(out_grads: Iterable, n: int) -> tuple:
    """A VJP's gradients as a tuple of ``n``, as zip with the edges would read them."""
    return tuple(itertools.islice(itertools.chain(out_grads, itertools.repeat(None)), n))


def _capture(node: Node, buf: list, capture_nodes: dict, results: list) -> None:
    for idx, g in enumerate(buf):
        for pos in capture_nodes.get((node, idx), ()):
            results[pos] = g


_seq_key = operator.attrgetter("seq")


def _run_tensor_hooks(node: Node, buf: list, create_graph: bool) -> None:
    for idx in range(len(buf)):
        g = buf[idx]
        if g is None:
            continue
        for hook in (node.hooks or {}).get(idx, ()):
            r = hook(g)
            if r is not None:
                g = r
        buf[idx] = g
        ref = (node.retains or {}).get(idx)
        t = ref() if ref is not None else None
        if t is not None:
            _accumulate_grad(t, g, create_graph)


def _accumulate_grad(t: Tensor, g: Tensor, create_graph: bool) -> None:
    if not create_graph:
        g = g.detach() if g._rg else g
    old = t._grad
    if old is None:
        t._grad = g if create_graph else Tensor._make(g._data.copy())
    elif create_graph or old._rg:
        t._grad = old + g
    elif t.grad_fn is None and old._data.flags.writeable and old._data.shape == g._data.shape \
            and old._data.dtype == g._data.dtype:
        # a leaf's .grad grows in place, as torch's AccumulateGrad (a retained non-leaf's does not)
        np.add(old._data, g._data, out=old._data)
    else:
        t._grad = Tensor._make(old._data + g._data)


def _as_tuple(x: Any) -> tuple:
    if isinstance(x, Tensor):
        return (x,)
    if x is None:
        return ()
    return tuple(x)


def _make_grads(outputs: tuple, grad_outputs: Sequence, is_grads_batched: bool = False) -> list:
    """torch's ``_make_grads``: check each given gradient's shape and create the implicit ones.

    Like torch it zips, so surplus gradients are ignored and a shortfall is reported later by
    :func:`_check_roots`.
    """
    grads = []
    for i, (out, g) in enumerate(zip(outputs, grad_outputs)):
        if not isinstance(out, Tensor):
            raise TypeError(f"expected a Tensor for output {i}, got {type(out).__name__}")
        if isinstance(g, Tensor):
            shape = g._data.shape[1:] if is_grads_batched else g._data.shape
            if shape != out._data.shape:
                found = (f"grad_output[{i}] has a shape of {Size(shape)} and output[{i}] has a shape "
                         f"of {Size(out._data.shape)}.")
                if is_grads_batched:
                    # torch's wording drops one dimension more than its check: grad[0].shape[1:]
                    found = (f"grad_output[{i}] has a shape of {Size(g._data.shape[2:])} and output[{i}] "
                             f"has a shape of {Size(out._data.shape)}.")
                    raise RuntimeError(
                        "If `is_grads_batched=True`, we interpret the first dimension of each "
                        "grad_output as the batch dimension. The sizes of the remaining dimensions are "
                        f"expected to match the shape of corresponding output, but a mismatch was "
                        f"detected: {found} If you only want some tensors in `grad_output` to be "
                        "considered batched, consider using vmap.")
                raise RuntimeError("Mismatch in shape: " + found)
        elif g is None:
            if out._rg:  # an output that does not require grad is reported by _check_roots
                if out._data.size != 1:
                    raise RuntimeError("grad can be implicitly created only for scalar outputs")
                g = Tensor._make(np.ones_like(out._data))
        else:
            raise TypeError(f"gradients can be either Tensors or None, but got {type(g).__name__}")
        grads.append(g)
    return grads


def _check_roots(outputs: tuple, grads: list) -> list:
    """The engine-side checks, in torch's order; casts each gradient to its output's dtype."""
    if len(outputs) != len(grads):
        raise RuntimeError(f"got {len(outputs)} tensors and {len(grads)} gradients")
    for i, out in enumerate(outputs):
        if not out._rg:
            raise RuntimeError(
                f"element {i} of tensors does not require grad and does not have a grad_fn")
    return [g.to(out.dtype) if g._data.dtype != out._data.dtype else g
            for out, g in zip(outputs, grads)]


def _inputs_tuple(inputs: Any, fn: str) -> tuple[tuple, list | None]:
    """Inputs as a tuple, plus the keys when they came as a dict (torch then returns a dict)."""
    if type(inputs) is dict:
        return tuple(inputs.values()), list(inputs)
    inputs = _as_tuple(inputs)
    for t in inputs:
        if not isinstance(t, Tensor):
            raise TypeError(f"{fn}() expects Tensors as inputs, got {type(t).__name__}")
    return inputs, None


# ---------------------------------------------------------------- public entry points
def grad(outputs: Tensor | Sequence[Tensor], inputs: Tensor | Sequence[Tensor] | dict[str, Tensor],
         grad_outputs: Tensor | Sequence[Tensor | None] | None = None,
         retain_graph: bool | None = None, create_graph: bool = False,
         only_inputs: bool = True, allow_unused: bool | None = None,
         is_grads_batched: bool = False, materialize_grads: bool = False) -> tuple | dict:
    """Gradients of ``outputs`` with respect to ``inputs`` (``torch.autograd.grad``).

    >>> x = engine.tensor([1.0, 2.0], requires_grad=True)
    >>> engine.autograd_grad((x * x).sum(), x)
    (tensor([2., 4.]),)
    """
    if materialize_grads and allow_unused is False:
        raise ValueError("Expected allow_unused to be True or not passed when materialize_grads=True, "
                         "but got: allow_unused=False.")
    if allow_unused is None:
        allow_unused = materialize_grads
    outputs = _as_tuple(outputs)
    inputs, keys = _inputs_tuple(inputs, "grad")
    if not inputs:
        raise RuntimeError("`inputs` argument to `grad()` cannot be empty.")
    if grad_outputs is None:
        grad_outputs = (None,) * len(outputs)
    else:
        grad_outputs = _as_tuple(grad_outputs) if not isinstance(grad_outputs, Tensor) else (grad_outputs,)
    grads = _check_roots(outputs, _make_grads(outputs, grad_outputs, is_grads_batched))
    for t in inputs:
        if not t._rg:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    if retain_graph is None:
        retain_graph = create_graph
    if is_grads_batched:
        res = _batched_grad(outputs, inputs, grads, retain_graph, create_graph, allow_unused,
                            materialize_grads)
    else:
        res = _run_backward(outputs, grads, inputs, retain_graph, create_graph, accumulate=False)
        res = _finish(res, inputs, allow_unused, materialize_grads, create_graph)
    return dict(zip(keys, res)) if keys is not None else res


def _batched_grad(outputs: tuple[Tensor, ...], inputs: tuple[Tensor, ...], grads: Sequence[Tensor],
                  retain_graph: bool, create_graph: bool, allow_unused: bool,
                  materialize_grads: bool) -> tuple[Tensor | None, ...]:
    """``grad(..., is_grads_batched=True)``: dimension 0 of every grad_output indexes a batch of
    independent backward passes, whose results are stacked along a new dimension 0.

    One backward pass under vmap (the VJPs' primitives run on the batch by their batching
    rules); once per row where that cannot be exact: with ``create_graph`` (a batched result
    keeps no graph), inside a vmap or forward mode (results would lose their batch or their
    tangents), or when a VJP reads batched values outside the primitives.
    """
    sizes = []
    for g in grads:
        if g._data.ndim == 0:
            raise ValueError("vmap(vjp, in_dims=0, ...)(<inputs>): Got in_dim=0 for some input, but that "
                             "input is a Tensor of dimensionality 0 so expected in_dim to satisfy "
                             "0 <= in_dim < 0.")
        sizes.append(g._data.shape[0])
    if len(set(sizes)) > 1:
        raise ValueError("vmap: Expected all tensors to have the same size in the mapped dimension, got "
                         f"sizes {sizes} for the mapped dimension")
    batch = sizes[0] if sizes else 0
    out: list[Tensor | None] | None = None
    if batch and not create_graph and not _state.ext and _hooks.meta is None \
            and not any(g._rg or getattr(g, "_fw", None) for g in grads):
        out = _batched_pass(outputs, inputs, grads, retain_graph, batch)
    if out is None:
        out = _rows_pass(outputs, inputs, grads, retain_graph, create_graph, batch)
    return _finish(out, inputs, allow_unused, materialize_grads, create_graph)


def _batched_pass(outputs: tuple, inputs: tuple, grads: Sequence[Tensor], retain_graph: bool,
                  batch: int) -> list | None:
    """The vectorized backward pass; None if it cannot be exact."""
    prev = _state.vm
    lev = _enter_vmap()
    try:
        seeds = [batched(g._data, lev) for g in grads]
        # keep the graph: should a VJP need the loop, the rows pass runs through it again
        res = _run_backward(outputs, seeds, inputs, True, False, accumulate=False)
        arrays = [None if r is None else batch_of(r) for r in res]
    except VmapFallback:
        return None
    finally:
        _exit_vmap(prev)
    if not retain_graph:
        _free_graph(outputs)
    out: list[Tensor | None] = []
    for r, a in zip(res, arrays):
        if r is None:
            out.append(None)
        elif a is None:  # the same for every row
            out.append(Tensor._make(np.ascontiguousarray(np.broadcast_to(r._data, (batch, *r._data.shape)))))
        else:
            out.append(Tensor._make(a))
    return out


def walk_nodes(starts: Iterable[Node], skip: Collection[int] = ()) -> Iterator[Node]:
    """Every node reachable from ``starts`` (themselves included) through edges, once each,
    depth first; a node whose id is in ``skip`` is neither yielded nor entered."""
    stack = [n for n in starts if id(n) not in skip]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        stack.extend(e[0] for e in node.edges
                     if e is not None and type(e[0]) is Node and id(e[0]) not in skip)


def _free_graph(roots: Sequence[Tensor]) -> None:
    """What a backward pass without retain_graph frees, for the graph of ``roots``."""
    for node in walk_nodes(t.grad_fn for t in roots if t.grad_fn is not None):
        if node.prim.save or (node.params and _holds_index(node.params)):
            node.saved = node.aux = None


def _rows_pass(outputs: tuple, inputs: tuple, grads: Sequence[Tensor], retain_graph: bool,
               create_graph: bool, batch: int) -> list:
    """One backward pass per row, each retaining the graph but the last."""
    rows: list[list[Tensor | None]] = [[] for _ in inputs]
    take, reshape, cat = PRIMITIVES["index"], PRIMITIVES["reshape"], PRIMITIVES["cat"]
    for b in range(batch):
        gb = [apply(take, (g,), {"key": (b,)}) if g._rg else Tensor._make(g._data[b]) for g in grads]
        res = grad(outputs, inputs, gb, retain_graph=retain_graph or b < batch - 1,
                   create_graph=create_graph, allow_unused=True)
        for k, r in enumerate(res):
            rows[k].append(r)
    out: list[Tensor | None] = []
    for x, rs in zip(inputs, rows):
        if batch and all(r is None for r in rs):
            out.append(None)  # unused: reported (or materialized, unbatched as in torch) by _finish
            continue
        if not batch:
            out.append(Tensor._make(np.zeros((0, *x._data.shape), x._data.dtype)))
            continue
        # stacked by the primitives themselves (the core imports no ops)
        shape = x._data.shape
        parts = [apply(reshape, (Tensor._make(np.zeros(shape, x._data.dtype)) if r is None else r,),
                       {"shape": (1, *shape)}) for r in rs]
        out.append(apply(cat, parts, {"dim": 0, "sizes": (1,) * batch}) if batch > 1 else parts[0])
    return out


def _finish(res: list, inputs: tuple, allow_unused: bool, materialize_grads: bool,
            create_graph: bool = False) -> tuple:
    for i, r in enumerate(res):
        if r is None:
            if not allow_unused:
                raise RuntimeError(
                    f"The differentiated Tensor at index {i} appears to not have been used in the "
                    "graph. Set allow_unused=True if this is the desired behavior.")
            if materialize_grads:  # torch: zeros_like(input, requires_grad=create_graph)
                res[i] = Tensor._make(np.zeros_like(inputs[i]._data))
                res[i]._rg = create_graph
    return tuple(res)


_WARNED = {"create_graph": False}


def backward(tensors: Tensor | Sequence[Tensor], grad_tensors: Any = None,
             retain_graph: bool | None = None, create_graph: bool = False,
             grad_variables: Any = None,
             inputs: Tensor | Sequence[Tensor] | dict[str, Tensor] | None = None) -> None:
    """Accumulate gradients of ``tensors`` into the ``.grad`` of leaves (``torch.autograd.backward``).

    ``grad_variables`` is torch's deprecated alias of ``grad_tensors``.

    >>> x = engine.tensor(3.0, requires_grad=True)
    >>> engine.autograd_backward(x * x); x.grad
    tensor(6.)
    """
    if create_graph and inputs is None and not _WARNED["create_graph"]:
        _WARNED["create_graph"] = True  # once per process, as torch (TORCH_WARN_ONCE)
        import warnings
        warnings.warn(
            "Using backward() with create_graph=True will create a reference cycle between the "
            "parameter and its gradient which can cause a memory leak. We recommend using "
            "autograd.grad when creating the graph to avoid this. If you have to use this function, "
            "make sure to reset the .grad fields of your parameters to None after use to break the "
            "cycle and avoid the leak.", UserWarning, stacklevel=2)
    if grad_variables is not None:
        if grad_tensors is not None:
            raise RuntimeError("'grad_tensors' and 'grad_variables' (deprecated) arguments both "
                               "passed to backward(). Please only use 'grad_tensors'.")
        grad_tensors = grad_variables
    targets = None
    if inputs is not None:
        targets, _ = _inputs_tuple(inputs, "backward")
        if not targets:
            raise RuntimeError("`inputs` argument to `backward()` cannot be empty.")
    tensors = _as_tuple(tensors)
    if grad_tensors is None:
        grad_tensors = (None,) * len(tensors)
    else:
        grad_tensors = (grad_tensors,) if isinstance(grad_tensors, Tensor) else _as_tuple(grad_tensors)
    grads = _check_roots(tensors, _make_grads(tensors, grad_tensors))
    for t in targets or ():
        # As torch does: a non-leaf input's gradient lands in .grad through retain_grad (which
        # also gives the error for an input that does not require grad).
        retain_tensor_grad(t)
    if retain_graph is None:
        retain_graph = create_graph
    _run_backward(tensors, grads, targets, retain_graph, create_graph, accumulate=True)


def register_tensor_hook(t: Tensor, fn: Callable) -> Any:
    if not t._rg:
        raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
    if t.grad_fn is None:
        if t._hooks is None:
            t._hooks = []
        hooks = t._hooks
    else:
        node = t.grad_fn
        if node.hooks is None:
            node.hooks = {}
        hooks = node.hooks.setdefault(t._out, [])
    hooks.append(fn)
    return RemovableHandle(hooks, fn)


def retain_tensor_grad(t: Tensor) -> None:
    if not t._rg:
        raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
    if t.grad_fn is None:
        return
    node = t.grad_fn
    if node.retains is None:
        node.retains = {}
    node.retains[t._out] = weakref.ref(t)


class RemovableHandle:
    """Returned by ``register_hook``; ``remove()`` unregisters the hook."""

    __slots__ = ("_hooks", "_fn")

    def __init__(self, hooks: list, fn: Callable) -> None:
        self._hooks, self._fn = hooks, fn

    def remove(self) -> None:
        try:
            self._hooks.remove(self._fn)
        except ValueError:
            pass

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


# Tensor's backward, register_hook and retain_grad call this module through the slot it keeps.
_tensor_module._engine = sys.modules[__name__]
