"""The autograd core: grad mode, graph nodes, primitive application and the backward pass.

A primitive is a numpy forward plus a VJP written in engine ops, so that running the VJP with
grad mode on (``create_graph=True``) records a graph of its own: any order of derivative comes
free. Unbroadcasting and dtype casts of gradients happen here, once, not in every VJP.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import operator
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .tensor import Size, Tensor


# ---------------------------------------------------------------- grad mode (thread-local)
class _GradState(threading.local):
    enabled = True  # the class attribute is every new thread's default: reading it never raises


_state = _GradState()


class _Hooks(threading.local):
    """Per-thread hooks for callers that run untrusted graphs; None (the default) costs one test.

    ``meta``: meta mode (:mod:`engine._meta`), called as ``meta(prim, arrays, params)`` instead of
    a primitive's numpy forward; it returns outputs of the right shape and dtype without computing.
    ``backward``: called as ``backward(node, grads)`` after each node's VJP in a backward pass
    (cooperative deadlines, anomaly checks); whatever it raises ends the pass.
    """

    meta: Callable | None = None
    backward: Callable | None = None


_hooks = _Hooks()


def is_grad_enabled() -> bool:
    """True when operations record a graph (``torch.is_grad_enabled``)."""
    return _state.enabled


def _set_enabled(mode: bool) -> None:
    _state.enabled = mode


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
    """One differentiable operation: a numpy forward and a VJP over engine ops.

    ``save`` names what backward needs: input positions (ints >= 0) and outputs (-1 is output 0,
    -2 output 1, ...). Only those are kept, and they are freed after backward unless
    ``retain_graph``. With ``aux=True`` the forward returns ``(out, aux)`` and ``aux`` (plain
    numpy data such as argmax indices) is saved too.
    """

    __slots__ = ("name", "fwd", "bwd", "save", "n_out", "aux", "saves_output", "pick_saved")

    def __init__(self, name: str, fwd: Callable, save: tuple[int, ...] = (), n_out: int = 1,
                 aux: bool = False) -> None:
        self.name, self.fwd, self.save, self.n_out, self.aux = name, fwd, save, n_out, aux
        self.saves_output = any(i < 0 for i in save)
        # several saved inputs: picked from the arguments in one C call (a tuple)
        self.pick_saved = operator.itemgetter(*save) if len(save) > 1 else None
        self.bwd: Callable | None = None
        if name in PRIMITIVES:
            raise ValueError(f"primitive {name!r} defined twice")
        PRIMITIVES[name] = self

    def defvjp(self, fn: Callable) -> Callable:
        self.bwd = fn
        return fn

    def __call__(self, *args: Any, **params: Any) -> Any:
        return apply(self, args, params)

    def __repr__(self) -> str:
        return f"<primitive {self.name}>"


def primitive(save: tuple[int, ...] = (), n_out: int = 1, aux: bool = False,
              name: str | None = None) -> Callable[[Callable], Primitive]:
    """Decorator turning a numpy forward into a :class:`Primitive`; add its VJP with ``.defvjp``."""

    def deco(fwd: Callable) -> Primitive:
        return Primitive(name or fwd.__name__.strip("_"), fwd, save, n_out, aux)

    return deco


class _SavedOutput:
    __slots__ = ("array", "idx")

    def __init__(self, array: np.ndarray, idx: int) -> None:
        self.array, self.idx = array, idx


class Node:
    """A recorded application of a primitive (torch's ``grad_fn``)."""

    __slots__ = ("prim", "edges", "params", "saved", "aux", "in_meta", "out_meta", "seq", "hooks",
                 "retains", "__weakref__")

    def __init__(self, prim: Primitive, edges: list, params: dict | None, saved: tuple | None,
                 aux: Any, in_meta: list) -> None:
        self.prim = prim
        self.edges = edges          # per input: None, or (Node | leaf Tensor, output index)
        self.params = params
        self.saved = saved          # () when nothing is saved; None once freed
        self.aux = aux
        self.in_meta = in_meta      # per input: (shape, numpy dtype) or None
        self.out_meta: tuple | None = None  # multi-output primitives: (shape, dtype) per output
        self.seq = next(_seq)       # creation order: a valid topological order
        self.hooks: dict[int, list] | None = None
        self.retains: dict[int, Any] | None = None

    def name(self) -> str:
        return "".join(p.capitalize() for p in self.prim.name.split("_")) + "Backward0"

    @property
    def next_functions(self) -> tuple:
        return tuple((e[0] if e is not None and isinstance(e[0], Node) else None,
                      e[1] if e is not None else 0) for e in self.edges)

    @property
    def needs_input_grad(self) -> tuple[bool, ...]:
        return tuple(e is not None for e in self.edges)

    def __repr__(self) -> str:
        return f"<{self.name()} object at {hex(id(self))}>"

    def _unpack(self) -> tuple:
        saved = self.saved
        if saved is None:
            raise RuntimeError(FREED_MSG)
        if not self.prim.saves_output:
            return saved
        return tuple(Tensor._make(s.array, self, s.idx, True) if type(s) is _SavedOutput else s
                     for s in saved)


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
    # backward pass without create_graph).
    enabled = _state.enabled
    arrays = []
    edges = in_meta = None
    for a in args:
        if isinstance(a, Tensor):
            x = a._data
            if a._rg and enabled:
                if edges is None:
                    edges = [None] * len(arrays)
                    in_meta = edges.copy()
                edges.append((a.grad_fn or a, a._out))
                in_meta.append((x.shape, x.dtype))
            elif edges is not None:
                edges.append(None)
                in_meta.append(None)
            if dtype is not None and x.dtype is not dtype and x.dtype != dtype:
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
        if _hooks.meta is None:
            out = prim.fwd(*arrays, **params) if params else prim.fwd(*arrays)
        else:
            out = _hooks.meta(prim, arrays, params)
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


# ---------------------------------------------------------------- backward
def _accumulate(a: Tensor | None, b: Tensor, create_graph: bool, owned: set[int]) -> Tensor:
    """``a + b`` for a gradient buffer.

    Without a graph to record, a sum made here belongs to this backward pass alone (its id is in
    ``owned`` until the buffer is consumed), so later contributions are added into it in place.
    """
    if a is None:
        return b
    if create_graph and (a._rg or b._rg):
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
    stack = [n for n in buffers]
    seen.update(stack)
    while stack:
        n = stack.pop()
        nodes.append(n)
        for e in n.edges:
            if e is not None:
                t = e[0]
                if type(t) is Node and t not in seen:
                    seen.add(t)
                    stack.append(t)
    nodes.sort(key=_seq_key)

    if targets is not None:
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
            params = node.params
            g = buf[0] if prim.n_out == 1 else _output_grads(node, buf)
            out_grads = prim.bwd(node, g, *saved, **params) if params else prim.bwd(node, g, *saved)
            if not retain_graph and (prim.save or (params and _holds_index(params))):
                node.saved = node.aux = None  # free what backward has used, as soon as it has
            edges = node.edges
            if len(edges) == 1:
                out_grads = (out_grads,)
            if monitor is not None:
                monitor(node, out_grads)
            for e, g, meta in zip(edges, out_grads, node.in_meta):
                if e is None or g is None:
                    continue
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
        from .autograd.functional import _batched_grad
        res = _batched_grad(outputs, inputs, grads, retain_graph, create_graph, allow_unused,
                            materialize_grads)
    else:
        res = _run_backward(outputs, grads, inputs, retain_graph, create_graph, accumulate=False)
        res = _finish(res, inputs, allow_unused, materialize_grads, create_graph)
    return dict(zip(keys, res)) if keys is not None else res


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
