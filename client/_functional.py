"""``jacobian``, ``hessian``, ``vjp``, ``jvp``, ``hvp`` and ``vhp`` on the client, with
``torch.autograd.functional``'s argument names and result layout.

``func`` is called once, here, on fresh views of the input tensors: that records the function
as part of the graph. The request carries a functional node (``{"op": "jacobian", ...}``) naming
the function's inputs and outputs; the server re-runs that part of the graph as the function,
exactly as ``engine.autograd.functional`` would, and returns the blocks. Results are numpy arrays
nested as torch nests its tensors; with ``create_graph=True`` they are client tensors instead,
recorded in the graph and differentiable again (their values come on demand).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._recording import Node, Tensor, _BaseClient
from ._wire import Plan, Result

__all__ = ["FUNCTIONAL_OPS", "SyncFunctional", "AsyncFunctional"]

FUNCTIONAL_OPS = ("jacobian", "hessian", "vjp", "jvp", "hvp", "vhp")


def _tupled(client: _BaseClient, x: Any, what: str, fn: str) -> tuple[bool, tuple[Tensor, ...]]:
    """torch's rule: a tuple of tensors or one tensor (TypeError, in torch's words, otherwise)."""
    is_tuple = isinstance(x, tuple)
    items = x if is_tuple else (x,)
    for i, t in enumerate(items):
        if not isinstance(t, Tensor):
            where = f"the value at index {i}" if is_tuple else f"the given {what}"
            raise TypeError(f"The {what} given to {fn} must be either a Tensor or a tuple of Tensors but "
                            f"{where} has type {type(t)}.")
        if t._client is not client:
            raise ValueError(f"tensor {t.name!r} was recorded by another client")
    return is_tuple, items


def _nest(flat: list[Any], outer: int, inner: int, keep_outer: bool, keep_inner: bool) -> Any:
    """Row-major ``flat`` (outer x inner) nested as torch returns it: a level is a tuple when the
    corresponding argument was a tuple, and dropped otherwise."""
    rows = [tuple(flat[i * inner:(i + 1) * inner]) for i in range(outer)]
    rows = [r if keep_inner else r[0] for r in rows]
    return tuple(rows) if keep_outer else rows[0]


def plan_functional(client: _BaseClient, kind: str, func: Callable, inputs: Any, v: Any,
                    flags: dict[str, Any]) -> Plan:
    """Record ``func`` and a ``kind`` node; the plan's finish gives torch's result layout."""
    in_tuple, given = _tupled(client, inputs, "inputs", kind)
    # As torch does, the function gets new tensor objects (here identity views): a tensor it
    # captures is then a constant, even when the same tensor is also passed as an input.
    ins = tuple(client._record("view_as", (t, t), {}) for t in given)
    out_tuple, outs = _tupled(client, func(*ins), "outputs of the user-provided function", kind)
    attrs: dict[str, Any] = {
        "outputs": [t.name for t in outs] if out_tuple else outs[0].name,
        "inputs": [t.name for t in ins] if in_tuple else ins[0].name,
    }
    vs: tuple[Tensor, ...] = ()
    if kind not in ("jacobian", "hessian"):
        if v is not None:
            v_tuple = isinstance(v, tuple)
            items = tuple(x if isinstance(x, Tensor) else client._constant(x)  # arrays: constants
                          for x in (v if v_tuple else (v,)))
            _, vs = _tupled(client, items if v_tuple else items[0], "v", kind)
            attrs["v"] = [t.name for t in vs] if v_tuple else vs[0].name
        else:
            attrs["v"] = None
    attrs.update(flags)
    n_out, n_in = len(outs), len(ins)
    n_results = {"jacobian": n_out * n_in, "hessian": n_in * n_in, "jvp": n_out}.get(kind, n_in)
    node = Node(kind, -1, [], attrs, (*outs, *ins, *vs), (),
                {"kind": kind, "outputs": outs, "inputs": ins, "v": vs if v is not None else None,
                 "out_tuple": out_tuple, "in_tuple": in_tuple, "v_tuple": isinstance(v, tuple),
                 "flags": flags})
    create_graph = bool(flags.get("create_graph"))
    for _ in range(n_results):
        label, seq = client._recorder.name(kind)
        node.outputs.append(Tensor(client, label, seq, node=node, requires_grad=create_graph))
    node.seq = node.outputs[0]._seq
    results = list(node.outputs)

    def shape(flat: list[Any]) -> Any:
        if kind == "jacobian":
            return _nest(flat, n_out, n_in, out_tuple, in_tuple)
        if kind == "hessian":
            return _nest(flat, n_in, n_in, in_tuple, in_tuple)
        return tuple(flat) if (out_tuple if kind == "jvp" else in_tuple) else flat[0]

    def product(value: Any, flat: list[Any]) -> Any:
        return shape(flat) if kind in ("jacobian", "hessian") else (value, shape(flat))

    if create_graph:  # lazy: client tensors in the graph, values on demand
        value = outs if out_tuple else outs[0]
        return Plan(None, [], lambda _: product(value, results))
    returns = [*results, *(outs if kind not in ("jacobian", "hessian") else ())]
    payload, blobs, binary, names = client._payload([*outs, *ins, *vs, *results], top={}, returns=returns)

    def finish(result: Result | None) -> Any:
        assert result is not None
        client._store(result, names)
        flat = [t._value for t in results]
        vals = tuple(t._value for t in outs)
        return product(vals if out_tuple else vals[0], flat)

    return Plan(payload, blobs, finish, binary)


class SyncFunctional:
    """The functional API of :class:`~client.Client` (one request per call)."""

    def _functional(self, kind: str, func: Callable, inputs: Any, v: Any, flags: dict[str, Any]) -> Any:
        plan = plan_functional(self, kind, func, inputs, v, flags)  # type: ignore[arg-type]
        return plan.finish(self._send(plan) if plan.payload is not None else None)  # type: ignore[attr-defined]

    def jacobian(self, func: Callable, inputs: Any, create_graph: bool = False, strict: bool = False,
                 vectorize: bool = False, strategy: str = "reverse-mode") -> Any:
        """``torch.autograd.functional.jacobian`` of ``func`` (called here on client tensors, to
        record it) at ``inputs``: numpy blocks ``[output][input]`` of shape ``out.shape +
        in.shape``, a level dropped where torch drops it.

        >>> J = c.jacobian(lambda x: c.tanh(W @ x), x)
        """
        return self._functional("jacobian", func, inputs, None, {
            "create_graph": create_graph, "strict": strict, "vectorize": vectorize, "strategy": strategy})

    def hessian(self, func: Callable, inputs: Any, create_graph: bool = False, strict: bool = False,
                vectorize: bool = False, outer_jacobian_strategy: str = "reverse-mode") -> Any:
        """``torch.autograd.functional.hessian`` of a scalar ``func`` at ``inputs``.

        >>> H = c.hessian(lambda w: ((x @ w - y) ** 2).mean(), w)
        """
        return self._functional("hessian", func, inputs, None, {
            "create_graph": create_graph, "strict": strict, "vectorize": vectorize,
            "outer_jacobian_strategy": outer_jacobian_strategy})

    def vjp(self, func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
            strict: bool = False) -> Any:
        """``(func(inputs), v^T J)`` (``torch.autograd.functional.vjp``)."""
        return self._functional("vjp", func, inputs, v, {"create_graph": create_graph, "strict": strict})

    def jvp(self, func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
            strict: bool = False) -> Any:
        """``(func(inputs), J v)`` (``torch.autograd.functional.jvp``)."""
        return self._functional("jvp", func, inputs, v, {"create_graph": create_graph, "strict": strict})

    def hvp(self, func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
            strict: bool = False) -> Any:
        """``(func(inputs), H v)`` for a scalar ``func`` (``torch.autograd.functional.hvp``).

        >>> loss_value, hv = c.hvp(loss_fn, w, v)
        """
        return self._functional("hvp", func, inputs, v, {"create_graph": create_graph, "strict": strict})

    def vhp(self, func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
            strict: bool = False) -> Any:
        """``(func(inputs), v^T H)`` for a scalar ``func`` (``torch.autograd.functional.vhp``)."""
        return self._functional("vhp", func, inputs, v, {"create_graph": create_graph, "strict": strict})


class AsyncFunctional:
    """The functional API of :class:`~client.AsyncClient`: the same methods, awaitable."""

    async def _functional(self, kind: str, func: Callable, inputs: Any, v: Any, flags: dict[str, Any]) -> Any:
        plan = plan_functional(self, kind, func, inputs, v, flags)  # type: ignore[arg-type]
        return plan.finish(await self._send(plan) if plan.payload is not None else None)  # type: ignore[attr-defined]

    async def jacobian(self, func: Callable, inputs: Any, create_graph: bool = False, strict: bool = False,
                       vectorize: bool = False, strategy: str = "reverse-mode") -> Any:
        """Async :meth:`Client.jacobian`."""
        return await self._functional("jacobian", func, inputs, None, {
            "create_graph": create_graph, "strict": strict, "vectorize": vectorize, "strategy": strategy})

    async def hessian(self, func: Callable, inputs: Any, create_graph: bool = False, strict: bool = False,
                      vectorize: bool = False, outer_jacobian_strategy: str = "reverse-mode") -> Any:
        """Async :meth:`Client.hessian`."""
        return await self._functional("hessian", func, inputs, None, {
            "create_graph": create_graph, "strict": strict, "vectorize": vectorize,
            "outer_jacobian_strategy": outer_jacobian_strategy})

    async def vjp(self, func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
                  strict: bool = False) -> Any:
        """Async :meth:`Client.vjp`."""
        flags = {"create_graph": create_graph, "strict": strict}
        return await self._functional("vjp", func, inputs, v, flags)

    async def jvp(self, func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
                  strict: bool = False) -> Any:
        """Async :meth:`Client.jvp`."""
        flags = {"create_graph": create_graph, "strict": strict}
        return await self._functional("jvp", func, inputs, v, flags)

    async def hvp(self, func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
                  strict: bool = False) -> Any:
        """Async :meth:`Client.hvp`."""
        flags = {"create_graph": create_graph, "strict": strict}
        return await self._functional("hvp", func, inputs, v, flags)

    async def vhp(self, func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
                  strict: bool = False) -> Any:
        """Async :meth:`Client.vhp`."""
        flags = {"create_graph": create_graph, "strict": strict}
        return await self._functional("vhp", func, inputs, v, flags)
