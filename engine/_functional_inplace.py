"""torch's in-place methods as functions: what ``x.add_(y)`` leaves in ``x``, as a new tensor.

Over the wire a value is never changed after it is made: the service's JSON nodes and
expression form (``h += x``, ``y[0] = v``) and the client's recorded tensors turn each in-place
op into its functional twin here, and bind the result to the mutated name. The twin keeps torch's
in-place rules: the result has ``input``'s shape (no broadcasting ``input`` up) and dtype (a result
type that cannot be cast back is refused), a leaf that requires grad (or a view of one) cannot be
the ``input`` while grad mode is on, and the result shares ``input``'s version counter, one step
on, so that a backward through a value saved before the change raises torch's "modified by an
inplace operation" error. No value is changed, so these are not Tensor methods.

:data:`FUNCTIONAL_INPLACE` maps torch's ``*_`` method names (for the engine's ops) to
:class:`~engine.ops.OpInfo` records; :func:`wire_op` is how the service and the client look an op
name up (the functional twin first, so that a mutating method never runs on a shared value).

>>> import engine
>>> x = engine.tensor([1.0, 2.0])
>>> FUNCTIONAL_INPLACE["add_"].fn(x, 1.0), x
(tensor([2., 3.]), tensor([1., 2.]))
>>> setitem(x, 0, 5.0)
tensor([5., 2.])
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _autograd as _ag
from ._autograd import is_grad_enabled
from .ops import OPS, OpInfo
from .ops.elementwise import type_name
from .ops.indexing import _put
from .ops.indexing import setitem as _setitem
from .ops.inplace import _LEAF_MSG, _TORCH_INPLACE, _VIEW_LEAF_MSG, _can_cast, _snapshot_saved_self
from .ops.shape import _is_basic, _normalize_key, detach, expand
from .tensor import Tensor

__all__ = ["FUNCTIONAL_INPLACE", "SETITEM", "setitem", "wire_op", "TORCH_INPLACE_METHODS",
           "LEAF_MSG", "VIEW_OF_LEAF_MSG"]

LEAF_MSG, VIEW_OF_LEAF_MSG = _LEAF_MSG, _VIEW_LEAF_MSG

# in-place ops that change the shape (torch changes the tensor's metadata in place) or drop history
_RESHAPING = ("squeeze_", "unsqueeze_", "transpose_", "t_", "swapaxes_", "swapdims_")
# torch's in-place methods: the value ops of engine.ops.inplace (those whose out-of-place op the
# engine has become twins), the shape changes, and those without an out-of-place op of their name
TORCH_INPLACE_METHODS: tuple[str, ...] = (*(n + "_" for n in _TORCH_INPLACE), *_RESHAPING,
                                          "detach_", "index_put_", "zero_", "fill_", "copy_")
_NO_CHECK = frozenset({*_RESHAPING, "detach_"})


def _check_leaf(input: Any, key: tuple | None = None) -> None:
    if not isinstance(input, Tensor) or not is_grad_enabled():
        return
    base = input._base
    if base is not None and base.is_leaf and base.requires_grad:
        raise RuntimeError(VIEW_OF_LEAF_MSG)
    if input.is_leaf and input.requires_grad:
        view = key is not None and _is_basic(key) and any(k is not Ellipsis for k in key)
        raise RuntimeError(VIEW_OF_LEAF_MSG if view else LEAF_MSG)


def _mutation_of(input: Any, out: Any, seq0: int, bump: bool = True) -> Any:
    """``out`` stands for ``input`` after an in-place op: ``input``'s version counter moves on
    and ``out`` shares it, as torch's tensor would be one object. So a backward through a value
    saved before the change raises torch's "modified by an inplace operation" error, with torch's
    version numbers, though no value was changed. The op's own nodes (after ``seq0``) that saved
    ``input`` keep it as it was (torch saves ``original_self``)."""
    if not isinstance(input, Tensor) or not isinstance(out, Tensor):
        return out
    _snapshot_saved_self(input, out, seq0)
    vc = _ag.version_counter(input)
    _ag.mutation_seen = True
    vc[0] += bump
    if out is not input:
        out._vc = vc
        _ag.link_saved_output(out)
    return out


def _as_inplace(name: str, input: Tensor, out: Any) -> Any:
    """``out`` as the value ``input`` would hold after ``input.<name>(...)``."""
    if name in _NO_CHECK or not isinstance(out, Tensor):
        return out
    dst, src = input._data.dtype, out._data.dtype
    if tuple(out.shape) != tuple(input.shape):
        raise RuntimeError(f"output with shape {list(input.shape)} doesn't match the broadcast shape "
                           f"{list(out.shape)}")
    if src != dst:
        if not _can_cast(src, dst):
            raise RuntimeError(f"result type {type_name(src)} can't be cast to the desired output type "
                               f"{type_name(dst)}")
        out = out.to(dtype=_dtype_of(dst))
    return out


def _dtype_of(dt: np.dtype) -> Any:
    from ._dtype import from_numpy_dtype
    return from_numpy_dtype(dt)


def _twin(name: str, base: OpInfo) -> OpInfo:
    def fn(input: Any, *args: Any, **kwargs: Any) -> Any:
        _check_leaf(input)
        seq0 = next(_ag._seq)
        out = _as_inplace(name, input, base.fn(input, *args, **kwargs))
        return _mutation_of(input, out, seq0, bump=name != "detach_")

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"The value ``input.{name}(...)`` leaves in ``input``, as a new tensor (``{base.name}``)."
    return OpInfo(name, fn, base.differentiable, base.signature, base.n_outputs)


# ---------------------------------------------------------------- item assignment and friends
def setitem(input: Tensor, key: Any, value: Any) -> Tensor:
    """A copy of ``input`` with ``input[key] = value`` (:func:`engine.ops.indexing.setitem`), and
    torch's refusal of a leaf that requires grad (or a view of one) while grad mode is on.

    >>> import engine
    >>> setitem(engine.zeros(2, 2), (slice(None), 1), engine.tensor([1.0, 2.0]))
    tensor([[0., 1.],
            [0., 2.]])
    """
    _check_leaf(input, _normalize_key(key))
    if isinstance(value, str):
        raise TypeError(f"can't assign a str to a torch.{type_name(input._data.dtype)}Tensor")
    seq0 = next(_ag._seq)
    return _mutation_of(input, _setitem(input, key, value), seq0)


def zero_(input: Tensor) -> Tensor:
    """``input.zero_()``: zeros of ``input``'s shape and dtype (no gradient reaches ``input``)."""
    _check_leaf(input)
    seq0 = next(_ag._seq)
    return _mutation_of(input, _put(input, 0, key=(Ellipsis,)), seq0)


def fill_(input: Tensor, value: Any) -> Tensor:
    """``input.fill_(value)``: ``value`` a number or a 0-d tensor (which gets the summed gradient)."""
    _check_leaf(input)
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise RuntimeError(f"fill_ only supports 0-dimension value tensor but got tensor with "
                               f"{value.ndim} dimensions.")
        value = value.to(dtype=_dtype_of(input._data.dtype))
    seq0 = next(_ag._seq)
    return _mutation_of(input, _put(input, value, key=(Ellipsis,)), seq0)


def copy_(input: Tensor, src: Any, non_blocking: bool = False) -> Tensor:
    """``input.copy_(src)``: ``src`` broadcast to ``input``'s shape and cast to its dtype."""
    _check_leaf(input)
    if not isinstance(src, Tensor):
        raise TypeError(f"copy_(): argument 'src' must be Tensor, not {type(src).__name__}")
    a, b = tuple(input.shape), tuple(src.shape)
    n = max(len(a), len(b))
    for i in range(1, min(len(a), len(b)) + 1):
        if a[-i] != b[-i] and 1 not in (a[-i], b[-i]):
            raise RuntimeError(f"The size of tensor a ({a[-i]}) must match the size of tensor b ({b[-i]}) "
                               f"at non-singleton dimension {n - i}")
    if np.broadcast_shapes(a, b) != a:
        raise RuntimeError(f"output with shape {list(a)} doesn't match the broadcast shape "
                           f"{list(np.broadcast_shapes(a, b))}")
    seq0 = next(_ag._seq)
    out = _put(input, expand(src.to(dtype=_dtype_of(input._data.dtype)), tuple(input.shape)),
               key=(Ellipsis,))
    return _mutation_of(input, out, seq0)


def detach_(input: Tensor) -> Tensor:
    """``input.detach_()``: the value without history."""
    return detach(input)


def _info(fn: Callable, differentiable: tuple[str, ...]) -> OpInfo:
    return OpInfo(fn.__name__, fn, differentiable, inspect.signature(fn))


SETITEM = _info(setitem, ("input", "value"))
_SPECIAL: dict[str, OpInfo] = {
    "zero_": _info(zero_, ("input",)), "fill_": _info(fill_, ("input", "value")),
    "copy_": _info(copy_, ("input", "src")), "detach_": _info(detach_, ()),
}


def _build() -> dict[str, OpInfo]:
    table: dict[str, OpInfo] = {}
    for name in TORCH_INPLACE_METHODS:
        if name in _SPECIAL:
            table[name] = _SPECIAL[name]
        elif name[:-1] in OPS:
            table[name] = _twin(name, OPS[name[:-1]])
    return table


FUNCTIONAL_INPLACE: dict[str, OpInfo] = _build()


def wire_op(name: str) -> OpInfo | None:
    """The op a wire node's ``op`` names: a functional in-place twin, ``setitem``, or an engine op."""
    if name == "setitem":
        return SETITEM
    return FUNCTIONAL_INPLACE.get(name) or OPS.get(name)
