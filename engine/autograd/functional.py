"""Higher-level autodiff of Python functions (``torch.autograd.functional``).

``vjp``, ``jvp``, ``jacobian``, ``hessian``, ``vhp`` and ``hvp`` take a function of tensors and
the point to differentiate at, with torch's signatures, results (a tuple where torch gives one,
a bare tensor where it does not) and errors, including every ``strict`` message. Everything is a
composition of :func:`engine.autograd_grad`:

- ``jvp`` is forward mode (:mod:`engine.autograd.forward_ad`): one pass carrying the tangent.
  ``hvp`` is forward-over-reverse: the gradient computed on dual inputs carries ``H v`` as its
  tangent. With ``strict=True`` both keep torch's own method, the double-backward trick (with
  ``u`` a dummy cotangent, ``g(u) = J^T u`` is linear in ``u``, so differentiating ``g`` with
  respect to ``u`` against ``v`` gives ``J v``), whose checks the strict messages describe.
- ``jacobian`` runs one backward pass per output element (``strategy="reverse-mode"``) or, with
  ``strategy="forward-mode"``, forward mode over the *input* basis: the cheaper choice
  when inputs are fewer than outputs. ``vectorize=True`` goes through
  ``autograd_grad(..., is_grads_batched=True)``: one backward pass over the whole basis by the
  batching rules (vmap), where ``vectorize=False`` loops over the rows; the numbers are the same.
  Forward mode runs the basis under vmap too. torch's argument rules
  (``vectorize`` needed by forward mode, ``strict`` and ``create_graph`` limits) are kept.

>>> def f(x):
...     return (x ** 3).sum()
>>> engine.autograd.functional.hessian(f, engine.tensor([1.0, 2.0]))
tensor([[ 6.,  0.],
        [ 0., 12.]])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import _autograd
from .._autograd import enable_grad, is_grad_enabled, set_grad_enabled
from ..tensor import Tensor
from . import forward_ad as _fw

__all__ = ["vjp", "jvp", "jacobian", "hessian", "hvp", "vhp"]

_STRATEGIES = ("forward-mode", "reverse-mode")


# ---------------------------------------------------------------- tuple handling
def _tupled(x: Any, what: str, fn: str) -> tuple[bool, tuple[Tensor, ...]]:
    """``(was_a_tuple, x as a tuple)``; TypeError, in torch's words, for anything not a tensor."""
    is_tuple = isinstance(x, tuple)
    items = x if is_tuple else (x,)
    for i, el in enumerate(items):
        if not isinstance(el, Tensor):
            where = f"the value at index {i}" if is_tuple else f"the given {what}"
            raise TypeError(f"The {what} given to {fn} must be either a Tensor or a tuple of Tensors but "
                            f"{where} has type {type(el)}.")
    return is_tuple, items


def _untuple(res: Any, keep: bool | tuple[bool, bool]) -> Any:
    """Undo :func:`_tupled` on a result: ``keep`` says, per nesting level, whether it was a tuple."""
    if isinstance(keep, tuple):
        outer, inner = keep
        if not inner:
            res = tuple(r[0] for r in res)
        return res if outer else res[0]
    return res if keep else res[0]


def _leaves_for(inputs: tuple[Tensor, ...], create_graph: bool, need_graph: bool) -> tuple[Tensor, ...]:
    """Fresh tensor objects to differentiate with respect to.

    A new object each time, so that the same tensor captured by the user's function is not
    mistaken for the argument. With ``create_graph`` an input that requires grad stays connected
    (an alias node), so the results are differentiable with respect to it.
    """
    out = []
    for t in inputs:
        if create_graph and t._rg:
            out.append(_alias(t))
        else:
            d = _fw._detach(t)
            if need_graph:
                d.requires_grad_()
            out.append(d)
    return tuple(out)


def _alias(t: Tensor) -> Tensor:
    from ..ops.shape import _reshape  # a same-shape reshape: a view, and a node of its own
    return _reshape(t, shape=t._data.shape)


def _detached(res: Any, create_graph: bool) -> Any:
    if create_graph:
        return res
    if isinstance(res, Tensor):
        return _fw._detach(res)
    return tuple(_detached(r, create_graph) for r in res)


def _check_v(v: tuple[Tensor, ...], ref: tuple[Tensor, ...], ref_is_tuple: bool) -> None:
    if len(v) != len(ref):
        if ref_is_tuple:
            raise RuntimeError(f"v is a tuple of invalid length: should be {len(ref)} but got {len(v)}.")
        raise RuntimeError("The given v should contain a single Tensor.")
    for i, (a, b) in enumerate(zip(v, ref)):
        if a.shape != b.shape:
            pre = f"Entry {i} in " if ref_is_tuple else ""
            raise RuntimeError(f"{pre}v has invalid size: should be {b.shape} but got {a.shape}.")


def _prepare_v(v: Any, ref: tuple[Tensor, ...], ref_is_tuple: bool, fn: str, none_msg: str,
               create_graph: bool) -> tuple[Tensor, ...] | None:
    if v is None:
        if len(ref) != 1 or ref[0].numel() != 1:
            raise RuntimeError(none_msg)
        return None
    _, vt = _tupled(v, "v", fn)
    vt = _leaves_for(vt, create_graph, need_graph=False)
    _check_v(vt, ref, ref_is_tuple)
    return vt


_V_NONE_OUT = ("The vector v can only be None if the user-provided function returns a single Tensor "
               "with a single element.")
_V_NONE_IN = ("The vector v can only be None if the input to the user-provided function is a single "
              "Tensor with a single element.")


# ---------------------------------------------------------------- strict-mode checks
_NOT_RG = {
    "outputs": ("Output {i} of the user-provided function does not require gradients. The outputs "
                "must be computed in a differentiable manner from the input when running in strict "
                "mode."),
    "grad_inputs": ("The gradient with respect to input {i} is independent of the inputs of the "
                    "user-provided function. This is not allowed in strict mode."),
    "jacobian": ("While computing the hessian, found that the jacobian of the user-provided function "
                 "with respect to input {i} is independent of the input. This is not allowed in strict "
                 "mode. You should ensure that your function is twice differentiable and that the "
                 "jacobian depends on the inputs (this would be violated by a linear function for "
                 "example)."),
    "hessian": ("The hessian of the user-provided function with respect to input {i} is independent of "
                "the input. This is not allowed in strict mode. You should ensure that your function "
                "is thrice differentiable and that the hessian depends on the inputs."),
}


def _require_grad(ts: Sequence[Tensor | None], kind: str, strict: bool) -> None:
    if not strict:
        return
    for i, t in enumerate(ts):
        if t is None:
            raise RuntimeError(f"The output of the user-provided function is independent of input {i}. "
                               "This is not allowed in strict mode.")
        if not t._rg:
            raise RuntimeError(_NOT_RG[kind].format(i=i))


_NONE_MSG = {
    "back": ("The output of the user-provided function is independent of input {i}. This is not "
             "allowed in strict mode."),
    "back_trick": ("The gradient with respect to the input is independent of entry {i} in the "
                   "grad_outputs when using the double backward trick to compute forward mode "
                   "gradients. This is not allowed in strict mode."),
    "double_back": ("The jacobian of the user-provided function is independent of input {i}. This is "
                    "not allowed in strict mode."),
    "double_back_trick": ("The hessian of the user-provided function is independent of entry {i} in "
                          "the grad_jacobian. This is not allowed in strict mode as it prevents from "
                          "using the double backward trick to replace forward mode AD."),
}


def _zeros_for_none(grads: Sequence[Tensor | None], refs: Sequence[Tensor], strict: bool,
                    create_graph: bool, stage: str) -> tuple[Tensor, ...]:
    """Unused inputs get zeros (their true derivative), or torch's strict-mode error."""
    out = []
    for i, (g, ref) in enumerate(zip(grads, refs)):
        if g is None:
            if strict:
                raise RuntimeError(_NONE_MSG[stage].format(i=i))
            g = _zeros_like(ref)
        elif strict and create_graph and not g._rg:
            what = "hessian" if "double" in stage else "jacobian"
            raise RuntimeError(f"The {what} of the user-provided function is independent of input {i}. "
                               "This is not allowed in strict mode when create_graph=True.")
        out.append(g)
    return tuple(out)


def _dummy_cotangent(t: Tensor) -> Tensor:
    """The point ``u`` at which the double-backward trick differentiates ``u -> J^T u``. Any
    point gives the same (linear) derivative; ones rather than torch's zeros, because some VJPs
    take logarithms of their cotangent (logcumsumexp, for one) and are NaN at zero."""
    return Tensor._make(np.ones_like(t._data)).requires_grad_()


def _zeros_like(t: Tensor, shape: tuple | None = None) -> Tensor:
    return Tensor._make(np.zeros(t._data.shape if shape is None else shape, dtype=t._data.dtype))


# ---------------------------------------------------------------- the one call into the engine
def _grads(outputs: Sequence[Tensor | None], inputs: tuple[Tensor, ...],
           grad_outputs: Sequence[Tensor | None] | None = None, create_graph: bool = False,
           retain_graph: bool | None = None, is_grads_batched: bool = False) -> tuple[Tensor | None, ...]:
    """``autograd_grad`` over the outputs that require grad (None per input when none does)."""
    if grad_outputs is None:
        grad_outputs = (None,) * len(outputs)
    outs, gos = [], []
    for o, g in zip(outputs, grad_outputs):
        if o is not None and o._rg:
            outs.append(o)
            gos.append(g)
    if not outs:
        return (None,) * len(inputs)
    return _autograd.grad(outs, inputs, gos, retain_graph=retain_graph, create_graph=create_graph,
                          allow_unused=True, is_grads_batched=is_grads_batched)


def _run(func: Callable, inputs: tuple[Tensor, ...], fn: str) -> tuple[bool, tuple[Tensor, ...]]:
    return _tupled(func(*inputs), "outputs of the user-provided function", fn)


# ---------------------------------------------------------------- vjp and jvp
def vjp(func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple[Any, Any]:
    """``(func(inputs), v^T J)``: the vector-Jacobian product (``torch.autograd.functional.vjp``).

    >>> vjp(lambda x: 2 * x, engine.tensor([1.0, 2.0]), engine.tensor([1.0, 1.0]))
    (tensor([2., 4.]), tensor([2., 2.]))
    """
    with enable_grad():
        in_tuple, inputs = _tupled(inputs, "inputs", "vjp")
        inputs = _leaves_for(inputs, create_graph, need_graph=True)
        out_tuple, outputs = _run(func, inputs, "vjp")
        _require_grad(outputs, "outputs", strict)
        vt = _prepare_v(v, outputs, out_tuple, "vjp", _V_NONE_OUT, create_graph)
    with set_grad_enabled(True if create_graph else is_grad_enabled()):
        res = _zeros_for_none(_grads(outputs, inputs, vt, create_graph), inputs, strict, create_graph,
                              "back")
    return (_untuple(_detached(outputs, create_graph), out_tuple),
            _untuple(_detached(res, create_graph), in_tuple))


def jvp(func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple[Any, Any]:
    """``(func(inputs), J v)``: the Jacobian-vector product (``torch.autograd.functional.jvp``),
    by forward mode (the double-backward trick with ``strict=True``).

    >>> jvp(lambda x: x ** 2, engine.tensor([1.0, 2.0]), engine.tensor([1.0, 0.0]))
    (tensor([1., 4.]), tensor([2., 0.]))
    """
    if not strict:
        return _jvp_forward(func, inputs, v, create_graph)
    with enable_grad():
        in_tuple, inputs = _tupled(inputs, "inputs", "jvp")
        inputs = _leaves_for(inputs, create_graph, need_graph=True)
        vt = _prepare_v(v, inputs, in_tuple, "jvp", _V_NONE_IN, create_graph)
        out_tuple, outputs = _run(func, inputs, "jvp")
        _require_grad(outputs, "outputs", strict)
        # g(u) = J^T u is linear in u: its value at u is irrelevant, its graph is what counts.
        us = tuple(_dummy_cotangent(o) for o in outputs)
        g = _grads(outputs, inputs, us, create_graph=True)
        _require_grad(g, "grad_inputs", strict)
    with set_grad_enabled(True if create_graph else is_grad_enabled()):
        res = _zeros_for_none(_grads(g, us, vt, create_graph), outputs, strict, create_graph, "back_trick")
    return (_untuple(_detached(outputs, create_graph), out_tuple),
            _untuple(_detached(res, create_graph), out_tuple))


def _forward_inputs(inputs: Any, v: Any, create_graph: bool, need_graph: bool,
                    name: str) -> tuple[bool, tuple[Tensor, ...], tuple[Tensor, ...]]:
    """The prologue of the forward-mode transforms (run in grad mode): ``(in_tuple, inputs, vt)``,
    the inputs as fresh leaves (see :func:`_leaves_for`) and ``v`` checked against them; the
    implicit v (a single one-element input) is ones, as a tangent must be a tensor."""
    in_tuple, inputs = _tupled(inputs, "inputs", name)
    inputs = _leaves_for(inputs, create_graph, need_graph=need_graph)
    vt = _prepare_v(v, inputs, in_tuple, name, _V_NONE_IN, create_graph)
    if vt is None:
        vt = tuple(Tensor._make(np.ones_like(x._data)) for x in inputs)
    return in_tuple, inputs, vt


def _jvp_forward(func: Callable, inputs: Any, v: Any, create_graph: bool) -> tuple[Any, Any]:
    with enable_grad():
        # with create_graph the results are differentiable in the inputs (as torch's, always)
        in_tuple, inputs, vt = _forward_inputs(inputs, v, create_graph, create_graph, "jvp")
        box: dict[str, bool] = {}

        def run(*xs: Tensor) -> list:
            box["tuple"], outs = _run(func, xs, "jvp")
            return list(outs)

        outputs, tans = _fw._jvp(run, list(inputs), list(vt))
        res = _zeros_for_none(tans, outputs, False, create_graph, "back_trick")
    return (_untuple(_detached(tuple(outputs), create_graph), box["tuple"]),
            _untuple(_detached(res, create_graph), box["tuple"]))


# ---------------------------------------------------------------- jacobian
def jacobian(func: Callable, inputs: Any, create_graph: bool = False, strict: bool = False,
             vectorize: bool = False, strategy: str = "reverse-mode") -> Any:
    """The Jacobian of ``func`` at ``inputs`` (``torch.autograd.functional.jacobian``).

    Entry ``[i][j]`` has shape ``outputs[i].shape + inputs[j].shape``; a level is dropped where
    outputs or inputs were a single tensor rather than a tuple, as in torch.

    >>> jacobian(lambda x: x ** 2, engine.tensor([1.0, 2.0]))
    tensor([[2., 0.],
            [0., 4.]])
    """
    if strategy not in _STRATEGIES:
        raise AssertionError('Expected strategy to be either "forward-mode" or "reverse-mode". Hint: If '
                             'your function has more outputs than inputs, "forward-mode" tends to be more '
                             'performant. Otherwise, prefer to use "reverse-mode".')
    if strategy == "forward-mode":
        if create_graph:
            raise NotImplementedError(
                "torch.autograd.functional.jacobian: `create_graph=True` and `strategy=\"forward-mode\"` "
                "are not supported together (yet). Please either set `create_graph=False` or "
                "`strategy=\"reverse-mode\"`.")
        return _jacfwd(func, inputs, strict, vectorize)
    with enable_grad():
        in_tuple, inputs = _tupled(inputs, "inputs", "jacobian")
        inputs = _leaves_for(inputs, create_graph, need_graph=True)
        out_tuple, outputs = _run(func, inputs, "jacobian")
        _require_grad(outputs, "outputs", strict)
        if vectorize and strict:
            raise RuntimeError("torch.autograd.functional.jacobian: `strict=True` and `vectorized=True` "
                               "are not supported together. Please either set `strict=False` or "
                               "`vectorize=False`.")
        jac = _jac_reverse(outputs, inputs, create_graph, strict, vectorize)
    return _untuple(_detached(jac, create_graph), (out_tuple, in_tuple))


def _basis(shape: tuple, dtype: Any) -> Tensor:
    """The standard basis of a tensor space: shape ``(numel, *shape)``."""
    n = int(np.prod(shape, dtype=np.int64))
    return Tensor._make(np.eye(n, dtype=dtype).reshape((n, *shape)))


def _jac_reverse(outputs: tuple[Tensor, ...], inputs: tuple[Tensor, ...], create_graph: bool,
                 strict: bool, vectorize: bool) -> tuple[tuple[Tensor, ...], ...]:
    """One backward pass per output element, against each standard basis vector."""
    if vectorize:
        return _jac_batched(outputs, inputs, create_graph)
    jac = []
    for i, out in enumerate(outputs):
        shape = out._data.shape
        rows = _rows_one_by_one(i, out, inputs, create_graph, strict)
        jac.append(tuple(_zeros_like(x, shape + x._data.shape) if r is None
                         else r.reshape(shape + x._data.shape) for x, r in zip(inputs, rows)))
    return tuple(jac)


def _jac_batched(outputs: tuple[Tensor, ...], inputs: tuple[Tensor, ...], create_graph: bool
                 ) -> tuple[tuple[Tensor, ...], ...]:
    """All outputs in one ``is_grads_batched`` call: the identity over the concatenated output
    elements, split into one block of rows per output."""
    numels = [o.numel() for o in outputs]
    total = sum(numels)
    offsets = np.cumsum([0, *numels])
    gos = []
    for o, start, stop in zip(outputs, offsets[:-1], offsets[1:]):
        eye = np.zeros((total, stop - start), dtype=o._data.dtype)
        eye[start:stop] = np.eye(stop - start, dtype=o._data.dtype)
        gos.append(Tensor._make(eye.reshape((total, *o._data.shape))))
    rows = _grads(outputs, inputs, gos, create_graph, retain_graph=True, is_grads_batched=True)
    jac = []
    for o, start, stop in zip(outputs, offsets[:-1], offsets[1:]):
        shape = o._data.shape
        jac.append(tuple(_zeros_like(x, shape + x._data.shape) if r is None
                         else r[start:stop].reshape(shape + x._data.shape) for x, r in zip(inputs, rows)))
    return tuple(jac)


def _rows_one_by_one(i: int, out: Tensor, inputs: tuple[Tensor, ...], create_graph: bool,
                     strict: bool) -> list[Tensor | None]:
    """The rows of ``d out / d inputs`` one backward pass at a time, with torch's strict checks;
    None for an input no row depends on."""
    n = out.numel()
    per_input: list[list[Tensor]] = [[] for _ in inputs]
    used = [False] * len(inputs)
    basis = np.eye(n, dtype=out._data.dtype).reshape((n, *out._data.shape))
    for j in range(n):
        grads = _grads((out,), inputs, (Tensor._make(basis[j]),), create_graph, retain_graph=True)
        for k, (g, x) in enumerate(zip(grads, inputs)):
            if g is None:
                if strict:
                    raise RuntimeError(f"Output {i} of the user-provided function is independent of input "
                                       f"{k}. This is not allowed in strict mode.")
                g = _zeros_like(x)
            else:
                if strict and create_graph and not g._rg:
                    raise RuntimeError(f"The jacobian of the user-provided function is independent of "
                                       f"input {i}. This is not allowed in strict mode when "
                                       "create_graph=True.")
                used[k] = True
            per_input[k].append(g)
    from ..ops.shape import stack
    return [stack(rows) if used[k] else None for k, rows in enumerate(per_input)]


def _jacfwd(func: Callable, inputs: Any, strict: bool, vectorize: bool) -> Any:
    """Forward-mode Jacobian: one backward pass per input element through the graph of
    ``u -> J^T u`` (the double-backward trick), batched over the input basis."""
    if strict:
        raise RuntimeError("torch.autograd.functional.jacobian: `strict=True` and "
                           "`strategy=\"forward-mode\"` are not supported together (yet). Please either "
                           "set `strict=False` or `strategy=\"reverse-mode\"`.")
    in_tuple, inputs = _tupled(inputs, "inputs", "jacobian")
    if not vectorize:
        raise NotImplementedError("Computing Jacobian using forward-AD or forward-over-reverse Hessian is"
                                  "only implemented for `vectorize=True`.")
    xs = _leaves_for(inputs, create_graph=False, need_graph=False)
    out_tuple, outputs, columns = _forward_columns(func, xs)
    # Lists, not tuples: torch's forward-mode jacobian returns lists of lists.
    jac = [[c.detach() for c in _split_columns(cols, xs, out)] for out, cols in zip(outputs, columns)]
    return _untuple(jac, (out_tuple, in_tuple))


def _forward_columns(func: Callable, xs: tuple[Tensor, ...]) -> tuple[bool, tuple, list]:
    """Per output, ``J_out`` applied to every input basis vector: shape ``(N, *out.shape)`` with
    ``N`` the total number of input elements (None when ``N`` is 0), in one forward pass under
    vmap (one per column where that cannot be exact). Also returns whether the outputs were a
    tuple, and the outputs."""
    total = sum(x.numel() for x in xs)
    offsets = np.cumsum([0] + [x.numel() for x in xs])
    basis = []
    for k, x in enumerate(xs):
        eye = np.zeros((total, x.numel()), dtype=x._data.dtype)
        eye[offsets[k]:offsets[k + 1]] = np.eye(x.numel(), dtype=x._data.dtype)
        basis.append(eye.reshape((total, *x._data.shape)))
    box: dict[str, bool] = {}

    def run(*ds: Tensor) -> list:
        box["tuple"], outs = _tupled(func(*ds), "outputs", "jacobian")
        return list(outs)

    with enable_grad():
        done = _fw._jvp_batched(run, list(xs), basis) if total else None
        if done is not None:  # one vectorized pass
            outputs, arrays = done
            return box["tuple"], tuple(outputs), [
                _zeros_like(o, (total, *o._data.shape)) if a is None
                else Tensor._make(np.ascontiguousarray(a)) for a, o in zip(arrays, outputs)]
        cols: list[list[Tensor]] = []
        outputs: list = []
        for j in range(total):
            outputs, tans = _fw._jvp(run, list(xs), [Tensor._make(b[j]) for b in basis])
            cols.append([_zeros_like(o) if t is None else t for t, o in zip(tans, outputs)])
        if not total:
            outputs = run(*xs)
    from ..ops.shape import stack
    columns = [stack([c[k] for c in cols]) if total else None for k in range(len(outputs))]
    return box["tuple"], tuple(outputs), columns


def _split_columns(cols: Tensor | None, xs: tuple[Tensor, ...], out: Tensor) -> list[Tensor]:
    """``(N, *out.shape)`` columns -> one ``out.shape + x.shape`` block per input."""
    shape = out._data.shape
    if cols is None:
        return [_zeros_like(x, shape + x._data.shape) for x in xs]
    blocks = []
    start = 0
    nd = len(shape)
    for x in xs:
        n = x.numel()
        c = cols[start:start + n]  # (n, *out.shape): move the input axis last, then unflatten it
        c = c.permute(*range(1, nd + 1), 0) if nd else c
        blocks.append(c.reshape(shape + x._data.shape))
        start += n
    return blocks


# ---------------------------------------------------------------- second order
def hessian(func: Callable, inputs: Any, create_graph: bool = False, strict: bool = False,
            vectorize: bool = False, outer_jacobian_strategy: str = "reverse-mode") -> Any:
    """The Hessian of a scalar function (``torch.autograd.functional.hessian``): the Jacobian of
    its gradient. Entry ``[i][j]`` has shape ``inputs[i].shape + inputs[j].shape``.

    >>> hessian(lambda x: (x ** 3).sum(), engine.tensor([1.0, 2.0]))
    tensor([[ 6.,  0.],
            [ 0., 12.]])
    """
    in_tuple, inputs = _tupled(inputs, "inputs", "hessian")
    if outer_jacobian_strategy not in _STRATEGIES:
        raise AssertionError('Expected strategy to be either "forward-mode" or "reverse-mode".')

    def scalar_func(*xs: Tensor) -> Tensor:
        out = func(*xs)
        out_tuple, outs = _tupled(out, "outputs of the user-provided function", "hessian")
        _require_grad(outs, "outputs", strict)
        if out_tuple or not isinstance(out, Tensor):
            raise RuntimeError("The function given to hessian should return a single Tensor")
        if out.numel() != 1:
            raise RuntimeError("The Tensor returned by the function given to hessian should contain a "
                               "single element")
        return out.squeeze()

    def gradient(*xs: Tensor) -> tuple[Tensor, ...]:
        g = jacobian(scalar_func, xs, create_graph=True)
        _require_grad(g, "jacobian", strict)
        return g

    res = jacobian(gradient, inputs, create_graph=create_graph, strict=strict, vectorize=vectorize,
                   strategy=outer_jacobian_strategy)
    return _untuple(res, (in_tuple, in_tuple))


def _scalar_output(outputs: tuple[Tensor, ...], out_tuple: bool, fn: str) -> None:
    if out_tuple or not isinstance(outputs[0], Tensor):
        raise RuntimeError(f"The function given to {fn} should return a single Tensor")
    if outputs[0].numel() != 1:
        raise RuntimeError(f"The Tensor returned by the function given to {fn} should contain a single "
                           "element")


def _scalar_gradient(func: Callable, inputs: Any, v: Any, create_graph: bool, strict: bool,
                     name: str) -> tuple:
    """The shared first half of vhp and hvp (run in grad mode): checked inputs and ``v``, the
    scalar output, and its gradient with a graph for the second pass."""
    in_tuple, inputs = _tupled(inputs, "inputs", name)
    inputs = _leaves_for(inputs, create_graph, need_graph=True)
    vt = _prepare_v(v, inputs, in_tuple, name, _V_NONE_IN, create_graph)
    out_tuple, outputs = _run(func, inputs, name)
    _require_grad(outputs, "outputs", strict)
    _scalar_output(outputs, out_tuple, name)
    jac = _grads(outputs, inputs, create_graph=True)
    _require_grad(jac, "jacobian", strict)
    return in_tuple, inputs, vt, out_tuple, outputs, jac


def vhp(func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple[Any, Any]:
    """``(func(inputs), v^T H)`` for a scalar function (``torch.autograd.functional.vhp``): two
    backward passes.

    >>> vhp(lambda x: (x ** 3).sum(), engine.tensor([1.0, 2.0]), engine.tensor([1.0, 1.0]))
    (tensor(9.), tensor([ 6., 12.]))
    """
    with enable_grad():
        in_tuple, inputs, vt, out_tuple, outputs, jac = _scalar_gradient(
            func, inputs, v, create_graph, strict, "vhp")
    with set_grad_enabled(True if create_graph else is_grad_enabled()):
        res = _zeros_for_none(_grads(jac, inputs, vt, create_graph), inputs, strict, create_graph,
                              "double_back")
    return (_untuple(_detached(outputs, create_graph), out_tuple),
            _untuple(_detached(res, create_graph), in_tuple))


def hvp(func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple[Any, Any]:
    """``(func(inputs), H v)`` for a scalar function (``torch.autograd.functional.hvp``).

    Forward-over-reverse: the gradient, computed on inputs that carry ``v`` as their tangent,
    carries ``H v`` (one backward pass with tangents). ``H v`` is what torch's double-backward
    trick computes too, also where the engine's Hessian is not symmetric; ``strict=True`` uses
    that trick, for torch's checks. For a twice continuously differentiable function :func:`vhp`
    gives the same numbers.

    >>> hvp(lambda x: (x ** 3).sum(), engine.tensor([1.0, 2.0]), engine.tensor([1.0, 1.0]))
    (tensor(9.), tensor([ 6., 12.]))
    """
    if not strict:
        return _hvp_forward_over_reverse(func, inputs, v, create_graph)
    with enable_grad():
        in_tuple, inputs, vt, out_tuple, outputs, jac = _scalar_gradient(
            func, inputs, v, create_graph, strict, "hvp")
        us = tuple(_dummy_cotangent(x) for x in inputs)
        double_back = _grads(jac, inputs, us, create_graph=True)
        _require_grad(jac, "hessian", strict)
    with set_grad_enabled(True if create_graph else is_grad_enabled()):
        res = _zeros_for_none(_grads(double_back, us, vt, create_graph), inputs, strict, create_graph,
                              "double_back_trick")
    return (_untuple(_detached(outputs, create_graph), out_tuple),
            _untuple(_detached(res, create_graph), in_tuple))


def _hvp_forward_over_reverse(func: Callable, inputs: Any, v: Any, create_graph: bool) -> tuple[Any, Any]:
    with enable_grad():
        in_tuple, inputs, vt = _forward_inputs(inputs, v, create_graph, True, "hvp")
        box: dict[str, Any] = {}

        def run(*xs: Tensor) -> list:
            out_tuple, outputs = _run(func, xs, "hvp")
            _scalar_output(outputs, out_tuple, "hvp")
            box["tuple"] = out_tuple
            return [outputs[0], *_grads(outputs, xs, create_graph=create_graph)]

        res, tans = _fw._jvp(run, list(inputs), list(vt))
        hv = _zeros_for_none(tans[1:], inputs, False, create_graph, "double_back_trick")
    return (_untuple(_detached((res[0],), create_graph), box["tuple"]),
            _untuple(_detached(hv, create_graph), in_tuple))
