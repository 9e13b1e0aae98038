"""The client's autograd record: which saved tensors a backward has freed, as torch tracks them.

The server rebuilds the graph for every request, so it cannot know that an earlier call already
went backward through it. torch does: a second ``autograd.grad`` through a graph whose saved
tensors were freed (no ``retain_graph=True``) raises. To say the same, each recorded tensor gets a
*meta twin* (:mod:`engine._meta`: shape and dtype, no values, nothing allocated), built by running
its node with the engine, and each ``autograd_grad`` runs backward over the twins first. The
engine frees exactly what it (and torch) saves, so the error comes only where torch raises it:
``(x * 2).sum()`` saves no tensor and may go backward twice, ``(x * x).sum()`` may not.

Twins are built in program order (a ``grad`` node's when it is recorded), once per tensor. Any
failure to build one (an op the meta mode cannot size, an ONNX model) skips the check: the server
then answers as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import engine
from engine import _meta
from engine._autograd import FREED_MSG

from ._recording import Tensor, collect, run_node

__all__ = ["twins", "check_backward"]


def _is_freed(e: BaseException) -> bool:
    return isinstance(e, RuntimeError) and str(e) == FREED_MSG


def twins(tensors: Sequence[Tensor]) -> list[Any] | None:
    """The meta twins of ``tensors`` (built for them and their ancestors as needed), or None if
    one cannot be built. RuntimeError (torch's) if building one goes backward through freed
    tensors (a ``grad`` node recorded after a backward that freed its graph)."""
    if all(t._shadow is not None or t._node is not None and t._node.shadowed for t in tensors):
        return [t._shadow for t in tensors]
    leaves, nodes = collect(tensors)
    env: dict[int, Any] = {}
    try:
        with _meta.meta_mode():
            for t in leaves:
                if t._shadow is None:
                    tw = engine.from_numpy(_meta.meta_array(t._value.shape, t._value.dtype))
                    t._shadow = tw.requires_grad_() if t._rg else tw
                env[id(t)] = t._shadow
            for n in nodes:
                if not n.shadowed:  # once: a grad node goes backward when it is recorded
                    for o, r in zip(n.outputs, run_node(n, env), strict=False):
                        o._shadow = r
                    n.shadowed = True
                env.update((id(o), o._shadow) for o in n.outputs)
    except RuntimeError as e:
        if _is_freed(e):
            raise RuntimeError(FREED_MSG) from None
        return None
    except (Exception, _meta.MetaAbort):  # the server will say what is wrong, with its location
        return None
    return [t._shadow for t in tensors]


def check_backward(outputs: Sequence[Tensor], inputs: Sequence[Tensor],
                   grad_outputs: Sequence[Tensor | None] | None, flags: dict[str, Any]) -> None:
    """Go backward over the twins as ``autograd_grad(outputs, inputs, ...)`` will on the server,
    freeing what it frees; torch's RuntimeError if that needs tensors an earlier call freed."""
    gos = [g for g in grad_outputs or () if g is not None]
    tw = twins([*outputs, *inputs, *gos])
    if tw is None:
        return
    it = iter(tw)
    outs = [next(it) for _ in outputs]
    ins = [next(it) for _ in inputs]
    go_tw = None if grad_outputs is None else [None if g is None else next(it) for g in grad_outputs]
    try:
        with _meta.meta_mode():
            engine.autograd_grad(outs, ins, go_tw, **flags)
    except RuntimeError as e:
        if _is_freed(e):
            raise RuntimeError(FREED_MSG) from None
    except (Exception, _meta.MetaAbort):
        pass
