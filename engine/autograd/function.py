"""User-defined differentiable operations (``torch.autograd.Function``).

A subclass gives a ``forward`` and a ``backward`` written with engine ops; ``apply`` runs the
forward without recording and puts one node in the graph whose VJP calls the user's backward
with the same ``ctx`` forward received (saved tensors, flags, any attribute set on it). With
``create_graph=True`` the backward runs with grad mode on: a backward written in engine ops is
differentiable again (double backward).

>>> class Cube(engine.autograd.Function):
...     @staticmethod
...     def forward(ctx, x):
...         ctx.save_for_backward(x)
...         return x ** 3
...     @staticmethod
...     def backward(ctx, g):
...         (x,) = ctx.saved_tensors
...         return 3 * g * x ** 2
>>> x = engine.tensor(2.0, requires_grad=True)
>>> engine.autograd_grad(Cube.apply(x), x)
(tensor(12.),)
"""

from __future__ import annotations

import inspect
import re
import weakref
from typing import Any

import numpy as np

from .._autograd import FREED_MSG, PRIMITIVES, Node, Primitive, is_grad_enabled, no_grad
from ..tensor import Tensor

__all__ = ["Function", "FunctionCtx"]


class FunctionCtx:
    """What ``forward`` and ``backward`` share: saved tensors, flags and any attribute set on it."""

    needs_input_grad: tuple[bool, ...] = ()

    def save_for_backward(self, *tensors: Tensor | None) -> None:
        """Keep tensors (inputs, outputs or intermediates) for backward; read them with
        :attr:`saved_tensors`. Call it at most once, from forward."""
        for t in tensors:
            if t is not None and not isinstance(t, Tensor):
                raise TypeError("save_for_backward can only save variables, but argument "
                                f"{tensors.index(t)} is of type {type(t).__name__}")
        self.to_save = tensors

    def mark_non_differentiable(self, *tensors: Tensor) -> None:
        """Outputs that never require grad (indices, masks); backward gets zeros for them."""
        self.non_differentiable = tensors

    @property
    def saved_tensors(self) -> tuple[Tensor | None, ...]:
        node = self._node() if self._node is not None else None
        if node is None:  # forward ran without recording: nothing was freed
            return tuple(getattr(self, "to_save", ()))
        if node.saved is None:
            raise RuntimeError(FREED_MSG)
        ins, outs = self._io
        res = []
        for t in getattr(self, "to_save", ()):
            if t is not None and id(t) in outs and not any(t is a for a in ins):
                # A saved output comes back pointing at the node, so double backward reaches it.
                t = Tensor._make(t._data, node, outs[id(t)], True)
            res.append(t)
        return tuple(res)

    _node: Any = None  # weakref to the graph node once recorded (the node holds the ctx)


class _FunctionPrim(Primitive):
    """A per-call primitive for one ``apply``: its forward has already run, and it is not kept in
    the registry of primitives (those are the engine's own ops)."""

    __slots__ = ()

    def __init__(self, name: str, n_out: int, saves: bool) -> None:
        # Primitive.__init__ sets every slot the core reads; undo its registration at once.
        key = f"<autograd.Function {id(self):x}>"
        super().__init__(key, None, (0,) if saves else (), n_out)  # type: ignore[arg-type]
        PRIMITIVES.pop(key, None)
        self.name = name
        self.bwd = _call_backward


def _call_backward(node: Node, g: Any, *saved: Any, ctx: FunctionCtx) -> Any:
    positions = ctx._out_pos
    grads: list[Any] = [None] * ctx._n_results
    gs = (g,) if node.prim.n_out == 1 else g
    for pos, gi in zip(positions, gs):
        grads[pos] = gi
    cls = ctx._forward_cls
    res = cls._backward_fn()(ctx, *grads)
    if not isinstance(res, tuple):
        res = (res,)
    n_in = len(node.edges)
    if len(res) != n_in:
        if len(res) > n_in and all(r is None for r in res[n_in:]):
            res = res[:n_in]
        else:
            raise RuntimeError(f"function {ctx._name} returned an incorrect number of gradients "
                               f"(expected {n_in}, got {len(res)})")
    out = []
    for i, (r, e, meta) in enumerate(zip(res, node.edges, node.in_meta)):
        if r is None:
            out.append(None)
            continue
        if not isinstance(r, Tensor):
            raise RuntimeError(f"expected Variable or None (got {type(r).__name__})")
        if e is None:
            if not ctx._arg_is_tensor[i]:
                raise RuntimeError(f"function {ctx._name} returned a gradient different than None at "
                                   f"position {i + 1}, but the corresponding forward input was not a "
                                   "Variable")
            out.append(None)  # an input that does not require grad: its gradient is dropped
            continue
        shape = meta[0]
        if r._data.shape != shape and not _expandable(shape, r._data.shape):
            raise RuntimeError(f"Function {ctx._name} returned an invalid gradient at index {i} - got "
                               f"{list(r._data.shape)} but expected shape compatible with {list(shape)}")
        out.append(r)
    return out[0] if n_in == 1 else tuple(out)


def _expandable(shape: tuple, to: tuple) -> bool:
    try:
        return np.broadcast_shapes(shape, to) == tuple(to)
    except ValueError:
        return False


class Function:
    """Base class for custom differentiable operations (``torch.autograd.Function``).

    Define ``forward(ctx, *args)`` (or ``forward(*args)`` plus ``setup_context(ctx, inputs,
    output)``) and ``backward(ctx, *grad_outputs)`` as staticmethods; call ``Cls.apply(*args)``.
    ``backward`` returns one gradient (or None) per forward argument. Forward runs in no-grad
    mode; backward runs with grad mode on exactly when ``create_graph=True``.
    """


    @staticmethod
    def forward(ctx: Any, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("You must implement the forward function for custom autograd.Function.")

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Any) -> Any:
        raise NotImplementedError("setup_context is not implemented.")

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Any) -> Any:
        raise NotImplementedError("You must implement either the backward or vjp method for your custom "
                                  "autograd.Function to use it with backward mode AD.")

    vjp = backward

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        import warnings
        warnings.warn(f"{type(self)} should not be instantiated. Methods on autograd functions are all "
                      "static, so you should invoke them on the class itself. Instantiating an autograd "
                      "function will raise an error in a future version of PyTorch.",
                      DeprecationWarning, stacklevel=2)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            "Legacy autograd function with non-static forward method is deprecated. Please use new-style "
            "autograd function with static forward method. (Example: "
            "https://pytorch.org/docs/stable/autograd.html#torch.autograd.Function)")

    @classmethod
    def _backward_fn(cls) -> Any:
        # torch accepts either name; an overridden backward wins.
        if cls.backward is not Function.backward or cls.vjp is Function.backward:
            return cls.backward
        return cls.vjp

    @classmethod
    def _uses_setup_context(cls) -> bool:
        return cls.setup_context is not Function.setup_context

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        """Run ``forward`` and, if an input requires grad, record the backward node."""
        if cls is Function:
            raise RuntimeError("Function.apply must be called on a subclass of Function")
        if kwargs:  # bind keywords to forward's parameters (the ctx parameter excluded)
            sig = inspect.signature(cls.forward)
            params = list(sig.parameters.values())
            if not cls._uses_setup_context():
                params = params[1:]
            bound = sig.replace(parameters=params).bind(*args, **kwargs)
            bound.apply_defaults()
            args = bound.args
        edges = []
        in_meta = []
        for a in args:
            if isinstance(a, Tensor) and a._rg:
                edges.append((a.grad_fn or a, a._out))
                in_meta.append((a._data.shape, a._data.dtype))
            else:
                edges.append(None)
                in_meta.append(None)
        record = is_grad_enabled() and any(e is not None for e in edges)
        ctx = FunctionCtx()
        ctx._forward_cls = cls
        ctx.needs_input_grad = tuple(e is not None for e in edges) if record else (False,) * len(args)
        with no_grad():
            if cls._uses_setup_context():
                out = cls.forward(*args)
                cls.setup_context(ctx, args, out)
            else:
                out = cls.forward(ctx, *args)
        if not record:
            return out
        return _record(ctx, args, out, tuple(edges), tuple(in_meta))


def _record(ctx: FunctionCtx, args: tuple, out: Any, edges: tuple, in_meta: tuple) -> Any:
    """Put the node in the graph and give the forward's tensor outputs to it."""
    is_tuple = isinstance(out, tuple)
    results = out if is_tuple else (out,)
    positions = [i for i, r in enumerate(results) if isinstance(r, Tensor)]
    if not positions:
        return out  # nothing differentiable came out
    cls = ctx._forward_cls
    saves = any(t is not None for t in getattr(ctx, "to_save", ()))
    # Snake case, so that the node is named like torch's: MyFunc -> "MyFuncBackward0".
    prim = _FunctionPrim(re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower(), len(positions), saves)
    # The ctx rides in the node's params (handed to the VJP as a keyword); the node's saved slot
    # only marks whether saved tensors were freed by a backward without retain_graph.
    node = Node(prim, edges, {"ctx": ctx}, (None,) if saves else (), None, in_meta)
    ctx._node = weakref.ref(node)
    ctx._name = cls.__name__ + "Backward"  # torch's name for it, in torch's messages
    non_diff = {id(t) for t in getattr(ctx, "non_differentiable", ())}
    wrapped: list[Any] = list(results)
    outs: dict[int, int] = {}
    first: dict[int, Any] = {}
    for k, pos in enumerate(positions):
        r = results[pos]
        if id(r) in first:  # the same tensor returned twice: torch gives the same object twice
            wrapped[pos] = first[id(r)]
            continue
        outs[id(r)] = k
        wrapped[pos] = first[id(r)] = Tensor._make(r._data, node, k, id(r) not in non_diff)
    ctx._io = (args, outs)
    ctx._out_pos = positions
    ctx._n_results = len(results)
    ctx._arg_is_tensor = tuple(isinstance(a, Tensor) for a in args)
    if len(positions) > 1:
        node.out_meta = tuple((results[p]._data.shape, results[p]._data.dtype) for p in positions)
    return tuple(wrapped) if is_tuple else wrapped[0]



_ONCE_MSG = "trying to differentiate twice a function that was marked with @once_differentiable"


def once_differentiable(fn: Any) -> Any:
    """Mark a custom Function's ``backward`` as not differentiable (torch's decorator of the same
    name): it runs without recording, and differentiating its result (``create_graph``) raises.

    >>> class Square(Function):
    ...     @staticmethod
    ...     def forward(ctx, x): ctx.save_for_backward(x); return x * x
    ...     @staticmethod
    ...     @once_differentiable
    ...     def backward(ctx, g): return 2 * ctx.saved_tensors[0] * g
    """
    import functools

    @functools.wraps(fn)
    def wrapper(ctx: Any, *args: Any) -> Any:
        with no_grad():
            outputs = fn(ctx, *args)
        if not is_grad_enabled() or not any(isinstance(a, Tensor) and a.requires_grad for a in args):
            return outputs
        # As torch's DelayedError: each gradient is recorded through a node whose backward raises.
        delayed = PRIMITIVES["delayed_error"]
        single = not isinstance(outputs, tuple)
        wrapped = tuple(_delay(delayed, o) for o in ((outputs,) if single else outputs))
        return wrapped[0] if single else wrapped

    return wrapper


def _delay(prim: Primitive, out: Any) -> Any:
    if not isinstance(out, Tensor) or out._data.dtype.kind != "f":
        return out
    # As torch: the node's input is a detached alias that requires grad (so the result has a
    # grad_fn); a backward pass that runs the node raises.
    alias = Tensor._make(out._data)
    alias._rg = True
    node = Node(prim, [(alias, 0)], {"msg": _ONCE_MSG}, (), None, [(out._data.shape, out._data.dtype)])
    return Tensor._make(out._data, node, 0, True)
