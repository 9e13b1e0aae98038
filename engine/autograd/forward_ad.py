"""Forward-mode AD (``torch.autograd.forward_ad``): dual tensors carry a tangent through every op.

>>> import engine.autograd.forward_ad as fwAD
>>> x = engine.tensor([1.0, 2.0])
>>> with fwAD.dual_level():
...     y = fwAD.make_dual(x, engine.ones(2)) ** 2
...     fwAD.unpack_dual(y).tangent
tensor([2., 4.])

Each primitive has a JVP rule written in engine ops (``Primitive.defjvp``), so forward mode
composes with reverse mode both ways (forward-over-reverse Hessian-vector products, and
gradients of tangents). As in torch, only one level may be open at a time here; the function
transforms (:mod:`engine.func`) nest levels of their own.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .. import _autograd
from ..tensor import Tensor
from ..tensor import forward_levels as _public

__all__ = ["UnpackedDualTensor", "enter_dual_level", "exit_dual_level", "make_dual", "unpack_dual",
           "dual_level"]

# The public levels (_public, engine.tensor's forward_levels: repr reads it too): torch numbers
# them from 0 and allows one at a time. Each maps to a core level id (engine._autograd), which
# engine.func's transforms also use, nested.


class UnpackedDualTensor(NamedTuple):
    """``(primal, tangent)`` of a dual tensor; tangent is None for a tensor without one."""

    primal: Tensor
    tangent: Tensor | None


def enter_dual_level() -> int:
    """Open the dual level and return its index (0); torch supports no nesting here.

    >>> lvl = fwAD.enter_dual_level(); fwAD.exit_dual_level(level=lvl)
    """
    if _public:
        raise RuntimeError("Nested forward mode AD is not supported at the moment")
    _public.append(_autograd._enter_level())
    return 0


def exit_dual_level(*, level: int | None = None) -> None:
    """Close the dual level: every tangent made at it is dropped."""
    if level is None:
        level = len(_public) - 1
    if level < 0:
        raise RuntimeError("Dual level must be a positive number.")
    if level >= len(_public):
        raise RuntimeError("Trying to exit a forward AD level that was not the last one that was created. "
                           "This is not supported.")
    _autograd._exit_level(_public.pop(level))


def _core_level(level: int | None, what: str) -> int | None:
    if level is None:
        level = len(_public) - 1
        if level < 0:
            return None
    if level < 0:
        raise RuntimeError("Dual level must be a positive number.")
    if level >= len(_public):
        raise RuntimeError("Trying to access a forward AD level with an invalid index. This index was either "
                           "not created or is already deleted." if what == "make" else
                           "Invalid level given to _fw_primal")
    return _public[level]


def make_dual(tensor: Tensor, tangent: Tensor, *, level: int | None = None) -> Tensor:
    """A new tensor with ``tensor``'s values and ``tangent`` as its tangent at ``level``.

    The result is a view of ``tensor`` for reverse mode (its gradient flows back to ``tensor``).

    >>> with fwAD.dual_level():
    ...     d = fwAD.make_dual(engine.tensor(3.0), engine.tensor(1.0))
    """
    lev = _core_level(level, "make")
    if lev is None:
        raise RuntimeError("Trying to create a dual Tensor for forward AD but no level exists, make sure to "
                           "enter_dual_level() first.")
    for what, t in (("primal", tensor), ("tangent", tangent)):
        if not isinstance(t, Tensor):
            raise AttributeError(f"'{type(t).__name__}' object has no attribute 'is_floating_point'")
        if t._data.dtype.kind != "f":
            raise ValueError(f"Expected {what} to be floating point or complex, but got: "
                             f"torch.{t.dtype.name}")
    if tangent._data.shape != tensor._data.shape:
        raise RuntimeError("Trying to set a forward gradient that has a different size than that of the "
                           f"original Tensor, this is not supported. Tensor is of size {list(tensor.shape)} "
                           f"while the given forward gradient is of size {list(tangent.shape)}.")
    if _autograd._get_tangent(tensor, lev) is not None:
        n = level if level is not None else len(_public) - 1
        raise RuntimeError("Making a dual Tensor based on a Tensor that already has a forward gradient at "
                           f"the same level {n} is not supported.")
    dual = _view(tensor)
    _autograd._set_tangent(dual, lev, tangent)
    return dual


def _view(t: Tensor) -> Tensor:
    """A new tensor object on the same values; differentiable back to ``t`` when it requires grad."""
    if t._rg:
        from ..ops.shape import _reshape  # an alias node, as torch's view
        prev = _autograd._state.fw
        _autograd._set_fw(())  # the alias itself carries no tangent: make_dual sets it
        try:
            v = _reshape(t, shape=t._data.shape)
        finally:
            _autograd._set_fw(prev)
        return v
    return t.detach()  # (under vmap, the same batch)


def unpack_dual(tensor: Any, *, level: int | None = None) -> UnpackedDualTensor:
    """``(primal, tangent)``: the primal is a view of ``tensor`` without its tangent at ``level``.

    >>> with fwAD.dual_level():
    ...     p, t = fwAD.unpack_dual(fwAD.make_dual(engine.ones(2), engine.zeros(2)))
    """
    lev = _core_level(level, "unpack")
    if not isinstance(tensor, Tensor):
        return UnpackedDualTensor(tensor, None)
    tangent = _autograd._get_tangent(tensor, lev) if lev is not None else None
    if tangent is None:
        return UnpackedDualTensor(tensor, None)
    primal = _view(tensor)
    fw = getattr(tensor, "_fw", None)
    others = {k: v for k, v in fw.items() if k != lev}
    if others:
        primal._fw = others
    return UnpackedDualTensor(primal, tangent)


class dual_level:
    """Context manager for a dual level: tangents made inside are dropped on exit.

    >>> with fwAD.dual_level():
    ...     pass
    """

    def __enter__(self) -> int:
        return enter_dual_level()

    def __exit__(self, *exc: object) -> None:
        exit_dual_level()


# ---------------------------------------------------------------- for the function transforms
def _dual_copy(t: Tensor) -> Tensor:
    """A new tensor object on ``t``'s values, differentiable back to ``t`` when it requires grad,
    with ``t``'s tangents at every level."""
    v = _view(t)
    fw = getattr(t, "_fw", None)
    if fw:
        v._fw = dict(fw)
    return v


def _detach(t: Tensor) -> Tensor:
    """``t.detach()`` keeping forward-mode tangents, for the transforms' fresh inputs and results:
    nested inside a forward-mode transform they must carry the outer tangents through."""
    d = t.detach()
    fw = getattr(t, "_fw", None)
    if fw:
        d._fw = dict(fw)
    return d


def _strip(t: Tensor, lev: int) -> Tensor:
    """``t`` without its tangent at ``lev`` (a new object when it had one)."""
    fw = getattr(t, "_fw", None)
    if not fw or lev not in fw:
        return t
    v = _view(t)
    others = {k: x for k, x in fw.items() if k != lev}
    if others:
        v._fw = others
    return v


def _jvp(fn: Any, primals: list[Tensor], tangents: list[Tensor]) -> tuple[Any, Any]:
    """``(fn(*duals), tangents of its tensor results)`` at a fresh (nestable) level: the forward
    mode behind ``engine.func.jvp``, ``jacfwd`` and ``hvp``. ``fn`` takes the dual tensors and
    returns a list of tensors; a result without a tangent gets None."""
    lev = _autograd._enter_level()
    try:
        duals = []
        for p, t in zip(primals, tangents):
            d = _dual_copy(p)
            _autograd._set_tangent(d, lev, t)
            duals.append(d)
        outs = fn(*duals)
        tans = [_autograd._get_tangent(o, lev) if isinstance(o, Tensor) else None for o in outs]
        outs = [_strip(o, lev) if isinstance(o, Tensor) else o for o in outs]
    finally:
        _autograd._exit_level(lev)
    return outs, tans


def _jvp_batched(fn: Any, primals: list[Tensor], basis: list[Any]) -> tuple[list, list] | None:
    """:func:`_jvp` for a whole batch of tangents at once (``basis[k]`` holds primal ``k``'s
    tangents along dimension 0), under vmap: the Jacobian's columns in one forward pass. Returns
    ``(outputs, per-output tangent arrays of shape (N, *out.shape) or None)``, or None where the
    vectorized pass cannot be exact (inside a vmap, a graph to keep, values read)."""
    core = _autograd
    if core._state.vm is not None or core._hooks.meta is not None:
        return None
    n = basis[0].shape[0]
    lev = core._enter_vmap()
    try:
        outs, tans = _jvp(fn, primals, [core.batched(b, lev) for b in basis])
        if any(isinstance(t, Tensor) and t._rg for t in tans):
            return None  # a batched result keeps no graph
        arrays = []
        for t in tans:
            a = None if t is None else core.batch_of(t)
            if t is not None and a is None:
                a = np.broadcast_to(t._data, (n, *t._data.shape))
            arrays.append(a)
    except core.VmapFallback:
        return None
    finally:
        core._exit_vmap(None)
    return outs, arrays
