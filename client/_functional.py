"""``jacobian``, ``hessian``, ``vjp``, ``jvp``, ``hvp`` and ``vhp`` on the client, with
``torch.autograd.functional``'s argument names and result layout; and ``c.func``, torch.func's
transforms (:class:`Func`).

``func`` is called once, here, on fresh views of the input tensors: that records the function
as part of the graph. The request carries a functional node (``{"op": "jacobian", ...}``) naming
the function's inputs and outputs; the server re-runs that part of the graph as the function,
exactly as ``engine.autograd.functional`` would, and returns the blocks. Results are numpy arrays
nested as torch nests its tensors; with ``create_graph=True`` they are client tensors instead,
recorded in the graph and differentiable again (their values come on demand).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import engine

from ._recording import Node, Tensor, _BaseClient, sub_function
from ._wire import Plan, Result

__all__ = ["FUNCTIONAL_OPS", "FUNC_OPS", "Func", "SyncFunctional", "AsyncFunctional"]

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


# ---------------------------------------------------------------- torch.func
FUNC_OPS = ("func.grad", "func.grad_and_value", "func.vjp", "func.jvp", "func.jacrev", "func.jacfwd",
            "func.hessian", "vmap")


def _is_tensor(client: _BaseClient, x: Any) -> bool:
    if not isinstance(x, Tensor):
        return False
    if x._client is not client:
        raise ValueError(f"tensor {x.name!r} was recorded by another client")
    return True


def _tensors(client: _BaseClient, xs: Any, api: str,
             what: str = "Thing passed to transform API") -> list[Tensor]:
    for x in xs:
        if not _is_tensor(client, x):
            raise ValueError(f"{what} must be Tensor, got {type(x)}")
    return list(xs)


def _leaves(client: _BaseClient, out: Any, api: str) -> tuple[list[Tensor], bool]:
    """A function's result: one tensor, or a tuple (or list) of them (torch's pytrees beyond
    that are not recorded)."""
    many = isinstance(out, (tuple, list))
    items = list(out) if many else [out]
    for t in items:
        if not _is_tensor(client, t):
            raise RuntimeError(f"{api}: expected f(*primals) to return only tensors (one, or a tuple of "
                               f"them), got unsupported type {type(t)}")
    return items, many


class _Traced:
    """A function recorded once on placeholders: its inputs, outputs and aux values."""

    def __init__(self, client: _BaseClient, func: Callable, placeholders: list[Tensor], kwargs: dict,
                 has_aux: bool, api: str) -> None:
        self.ins = placeholders
        out = func(*placeholders, **kwargs)
        self.aux: list[Tensor] = []
        self.aux_many = False
        self.aux_value: Any = None
        if has_aux:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise RuntimeError(f"{api}: output of function f should be a tuple: (output, aux) if has_aux "
                                   "is True")
            out, self.aux_value = out
            self.aux, self.aux_many = _leaves(client, self.aux_value, api)
        self.value = out
        self.outs, self.many = _leaves(client, out, api)
        if has_aux and self.many:
            raise RuntimeError(f"{api}: with has_aux, the client records a function whose output is one "
                               "tensor")

    def attrs(self) -> dict[str, Any]:
        names = [t.name for t in self.outs]
        outputs: Any = [*names, *(t.name for t in self.aux)] if self.aux else names if self.many else names[0]
        return {"outputs": outputs, "inputs": [t.name for t in self.ins]}

    def aux_result(self, tensors: list[Tensor]) -> Any:
        return tuple(tensors) if self.aux_many else tensors[0]


def _nested(flat: list[Any], sizes: list[int], keep: list[bool]) -> Any:
    """Row-major ``flat`` nested by ``sizes``; a level is a tuple where ``keep`` says torch makes one."""
    if not sizes:
        return flat[0]
    step = len(flat) // sizes[0]
    items = [_nested(flat[i * step:(i + 1) * step], sizes[1:], keep[1:]) for i in range(sizes[0])]
    return tuple(items) if keep[0] else items[0]


def _argnums(argnums: Any, n: int) -> tuple[list[int], bool]:
    """Positions and whether a single int was given, with torch's errors."""
    single = isinstance(argnums, int) and not isinstance(argnums, bool)
    if not single:
        if not isinstance(argnums, tuple) or not all(isinstance(a, int) for a in argnums):
            raise RuntimeError(f"argnums must be int or Tuple[int, ...], got: {type(argnums)}")
        if not argnums:
            raise RuntimeError("argnums must be non-empty")
    nums = [argnums] if single else list(argnums)
    for a in nums:
        if not -n <= a < n:
            raise RuntimeError(f"Got argnum={a}, but only {n} positional inputs")
    return nums, single


class Func:
    """``torch.func``'s transforms on client tensors, with its names and signatures: ``c.func.grad(f)``
    is a function of client tensors. Calling it records ``f`` once, on placeholders of the
    arguments, and a node that applies the transform to the recorded function (the server, or the
    engine in this process, re-runs it); the results are client tensors, recorded in the graph:
    their values come in one request (``.numpy()``, ``c.values(...)``, ``await c.values(...)``
    with an :class:`~client.AsyncClient`), and transforms nest (``vmap(grad(f))``).

    >>> per_sample = c.func.vmap(c.func.grad(loss), in_dims=(None, 0))(w, xs)
    >>> per_sample.numpy().shape
    (64, 4, 3)
    """

    def __init__(self, client: _BaseClient) -> None:
        self._client = client

    # -- recording
    def _views(self, args: tuple, api: str) -> list[Tensor]:
        """Fresh identity views of the arguments, as torch.func hands the function new tensors."""
        return [self._client._record("view_as", (t, t), {}) for t in _tensors(self._client, args, api)]

    def _node(self, op: str, attrs: dict[str, Any], parents: list[Tensor], n: int, flags: dict[str, Any],
              traced: _Traced, vs: list[Tensor] = (), args: list[Tensor] = ()) -> list[Tensor]:  # type: ignore[assignment]
        client = self._client
        rg = any(t._rg for t in parents)
        node = Node(op, -1, [], {**attrs, **flags}, tuple(parents), (),
                    {"kind": op, "flags": flags, "traced": traced, "v": attrs.get("v"), "vs": list(vs),
                     "args": list(args), "run": _run_func_node})
        prefix = op.rsplit(".", 1)[-1]
        for _ in range(n):
            label, seq = client._recorder.name(prefix)
            node.outputs.append(Tensor(client, label, seq, node=node, requires_grad=rg))
        node.seq = node.outputs[0]._seq
        return list(node.outputs)

    def _grads(self, op: str, func: Callable, argnums: Any, has_aux: bool, flags: dict[str, Any],
               args: tuple, kwargs: dict) -> tuple[_Traced, list[Tensor], list[int], bool]:
        api = f"{op[5:]}(f)(*args)"
        nums, single = _argnums(argnums, len(args))
        t = _Traced(self._client, func, self._views(args, api), kwargs, has_aux, api)
        k = len(nums)
        n_main = {"func.grad": k, "func.grad_and_value": k + 1, "func.hessian": len(t.outs) * k * k}.get(
            op, len(t.outs) * k)
        wire_flags = {"argnums": argnums if single else list(argnums), **flags}
        if op != "func.hessian":
            wire_flags["has_aux"] = has_aux
        res = self._node(op, t.attrs(), [*t.outs, *t.aux, *t.ins], n_main + len(t.aux), wire_flags, t)
        return t, res, nums, single

    # -- the transforms
    def grad(self, func: Callable, argnums: int | tuple[int, ...] = 0, has_aux: bool = False) -> Callable:
        """``torch.func.grad``: the gradient of a scalar ``func`` with respect to its ``argnums``
        arguments (``(gradient, aux)`` with ``has_aux``).

        >>> g = c.func.grad(lambda x: (x ** 3).sum())(x)       # a client tensor
        """
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t, res, nums, single = self._grads("func.grad", func, argnums, has_aux, {}, args, kwargs)
            g = res[0] if single else tuple(res[:len(nums)])
            return (g, t.aux_result(res[len(nums):])) if has_aux else g

        return wrapper

    def grad_and_value(self, func: Callable, argnums: int | tuple[int, ...] = 0,
                       has_aux: bool = False) -> Callable:
        """``torch.func.grad_and_value``: ``(gradient, value)`` (``(gradient, (value, aux))``).

        >>> g, value = c.func.grad_and_value(lambda x: (x ** 3).sum())(x)
        """
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t, res, nums, single = self._grads("func.grad_and_value", func, argnums, has_aux, {}, args,
                                               kwargs)
            k = len(nums)
            g = res[0] if single else tuple(res[:k])
            return (g, (res[k], t.aux_result(res[k + 1:]))) if has_aux else (g, res[k])

        return wrapper

    def jacrev(self, func: Callable, argnums: int | tuple[int, ...] = 0, *, has_aux: bool = False,
               chunk_size: int | None = None) -> Callable:
        """``torch.func.jacrev``: Jacobian blocks ``out.shape + input.shape`` by reverse mode.

        >>> J = c.func.jacrev(lambda x: c.tanh(W @ x))(x)
        """
        return self._jac("func.jacrev", func, argnums, has_aux, {"chunk_size": chunk_size})

    def jacfwd(self, func: Callable, argnums: int | tuple[int, ...] = 0, has_aux: bool = False, *,
               randomness: str = "error") -> Callable:
        """``torch.func.jacfwd``: the Jacobian by forward mode.

        >>> J = c.func.jacfwd(lambda x: c.tanh(W @ x))(x)
        """
        return self._jac("func.jacfwd", func, argnums, has_aux, {"randomness": randomness})

    def hessian(self, func: Callable, argnums: int | tuple[int, ...] = 0) -> Callable:
        """``torch.func.hessian``: ``jacfwd(jacrev(func))``.

        >>> H = c.func.hessian(lambda x: (x ** 3).sum())(x)
        """
        return self._jac("func.hessian", func, argnums, False, {})

    def _jac(self, op: str, func: Callable, argnums: Any, has_aux: bool, flags: dict[str, Any]) -> Callable:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t, res, nums, single = self._grads(op, func, argnums, has_aux, flags, args, kwargs)
            k = len(nums)
            sizes = [len(t.outs), k] + ([k] if op == "func.hessian" else [])
            keep = [t.many, not single] + ([not single] if op == "func.hessian" else [])
            n_main = len(res) - len(t.aux)
            jac = _nested(res[:n_main], sizes, keep)
            return (jac, t.aux_result(res[n_main:])) if has_aux else jac

        return wrapper

    def vjp(self, func: Callable, *primals: Any, has_aux: bool = False) -> tuple:
        """``torch.func.vjp``: ``(func(*primals), vjp_fn)`` (``(output, vjp_fn, aux)``);
        ``vjp_fn(cotangents)`` records the products, a tuple with one per primal.

        >>> out, vjp_fn = c.func.vjp(c.sin, x)
        >>> (g,) = vjp_fn(c.ones(3))
        """
        api = "vjp(f, *primals)"
        t = _Traced(self._client, func, self._views(primals, api), {}, has_aux, api)

        def vjp_fn(cotangents: Any) -> tuple:
            many = isinstance(cotangents, (tuple, list))
            cts = list(cotangents) if many else [cotangents]
            cts = [self._client._constant(c) if not isinstance(c, Tensor) else c for c in cts]
            _tensors(self._client, cts, api)
            if many != t.many or len(cts) != len(t.outs):
                raise RuntimeError("Expected pytree structure of cotangents to be the same as pytree "
                                   f"structure of outputs to the function. cotangents: {len(cts)} tensor(s) "
                                   f"({'tuple' if many else 'one'}), primal output: {len(t.outs)} tensor(s) "
                                   f"({'tuple' if t.many else 'one'})")
            attrs = {**t.attrs(), "v": [c.name for c in cts] if many else cts[0].name}
            return tuple(self._node("func.vjp", attrs, [*t.outs, *t.aux, *t.ins, *cts], len(t.ins),
                                    {"has_aux": has_aux}, t, vs=cts))

        res = (t.value, vjp_fn)
        return (*res, t.aux_value) if has_aux else res

    def jvp(self, func: Callable, primals: Any, tangents: Any, *, strict: bool = False,
            has_aux: bool = False) -> tuple:
        """``torch.func.jvp``: ``(func(*primals), J @ tangents)`` (``(output, jvp_out, aux)``).

        >>> out, jv = c.func.jvp(c.sin, (x,), (v,))
        """
        api = "jvp(f, primals, tangents)"
        if not isinstance(primals, tuple):
            raise RuntimeError(f"{api}: Expected primals to be a tuple. E.g. it should be valid to call "
                               "f(*primals).")
        if not isinstance(tangents, tuple) or len(tangents) != len(primals):
            raise RuntimeError(f"{api}: Expected primals and tangents to have the same python structure. "
                               "For example, if primals is a tuple of 3 tensors, tangents also must be. "
                               f"Got primals with structure of {len(primals)} tensor(s) and tangents "
                               f"with structure {type(tangents).__name__}")
        t = _Traced(self._client, func, self._views(primals, api), {}, has_aux, api)
        vs = [self._client._constant(v) if not isinstance(v, Tensor) else v for v in tangents]
        _tensors(self._client, vs, api)
        attrs = {**t.attrs(), "v": [v.name for v in vs]}
        res = self._node("func.jvp", attrs, [*t.outs, *t.aux, *t.ins, *vs], len(t.outs),
                         {"has_aux": has_aux}, t, vs=vs)
        out = (t.value, tuple(res) if t.many else res[0])
        return (*out, t.aux_value) if has_aux else out

    def vmap(self, func: Callable, in_dims: Any = 0, out_dims: Any = 0, randomness: str = "error", *,
             chunk_size: int | None = None) -> Callable:
        """``torch.func.vmap``: ``func`` mapped over a dimension of its arguments (tensors; None in
        ``in_dims`` passes one whole). ``func`` is recorded on one element of the batch.

        >>> ps = c.func.vmap(c.func.grad(loss), in_dims=(None, 0))(w, xs)
        """
        name = getattr(func, "__name__", repr(func))

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            api = f"vmap({name}, in_dims={in_dims}, ...)(<inputs>)"
            if not (isinstance(in_dims, (int, tuple)) and not isinstance(in_dims, bool)):
                raise ValueError(f"{api}: expected `in_dims` to be int or a (potentially nested) tuple "
                                 f"matching the structure of inputs, got: {type(in_dims)}.")
            msg = f"{api}: in_dims is not compatible with the structure of `inputs`."
            dims = engine.func._dims_for(in_dims, args, msg, "in_dims", "inputs")
            for x, d in zip(args, dims):
                if d is not None and not isinstance(x, Tensor):
                    raise ValueError(f"{api}: Got in_dim={d} for an input but the input is of type "
                                     f"{type(x)}. We cannot vmap over non-Tensor arguments, please use None "
                                     "as the respective in_dim")
            xs = _tensors(self._client, args, api, "vmap: every argument")
            t = _Traced(self._client, func, [self._sample(x, d, api) for x, d in zip(xs, dims)], kwargs,
                        False, api)
            attrs = {**t.attrs(), "args": [x.name for x in xs],
                     "in_dims": list(in_dims) if isinstance(in_dims, tuple) else in_dims,
                     "out_dims": list(out_dims) if isinstance(out_dims, tuple) else out_dims}
            res = self._node("vmap", attrs, [*t.outs, *t.ins, *xs], len(t.outs),
                             {"randomness": randomness, "chunk_size": chunk_size}, t, args=xs)
            return tuple(res) if t.many else res[0]

        return wrapper

    def _sample(self, x: Tensor, d: int | None, api: str) -> Tensor:
        """The function's placeholder for one batch element: ``x.select(d, 0)`` (a view of the
        first), zeros of its shape for an empty batch, a view of ``x`` when it is not mapped."""
        c = self._client
        if d is None:
            return c._record("view_as", (x, x), {})
        if x._meta is not None:  # known without a request: torch's errors here, not select's
            shape = x._meta[0]
            nd = len(shape)
            if not -nd <= d < nd:
                raise ValueError(f"{api}: Got in_dim={d} for some input, but that input is a Tensor of "
                                 f"dimensionality {nd} so expected in_dim to satisfy -{nd} <= in_dim < {nd}.")
            if shape[d] == 0:
                one = list(shape)
                del one[d]
                return c.tensor(engine.zeros(*one, dtype=engine._dtype.from_numpy_dtype(x._meta[1])).numpy())
        return c._record("select", (x, d, 0), {})


def _run_func_node(node: Node, env: dict[int, Any]) -> tuple[Any, ...]:
    """A torch.func node run by the engine (local shapes, as the server runs it)."""
    a = node.kwargs
    t: _Traced = a["traced"]
    flags = dict(a["flags"])
    kind = a["kind"]
    has_aux = bool(flags.get("has_aux"))
    inner = sub_function(t.ins, [*t.outs, *t.aux], env)

    def func(*xs: Any) -> Any:
        res = inner(*xs)
        if has_aux:
            return res[0], res[1] if len(res) == 2 else tuple(res[1:])
        return tuple(res) if t.many else res[0]

    xs = [env[id(x)] for x in t.ins]
    tf = engine.func
    if kind == "vmap":
        dims = node.attributes["in_dims"]
        odims = node.attributes["out_dims"]
        res = tf.vmap(func, in_dims=tuple(dims) if isinstance(dims, list) else dims,
                      out_dims=tuple(odims) if isinstance(odims, list) else odims, **flags)(
            *[env[id(x)] for x in a["args"]])
    elif kind in ("func.vjp", "func.jvp"):
        vs = [env[id(v)] for v in a["vs"]]
        if kind == "func.vjp":
            res = tf.vjp(func, *xs, has_aux=has_aux)[1](tuple(vs) if isinstance(a["v"], list) else vs[0])
        else:
            res = tf.jvp(func, tuple(xs), tuple(vs), has_aux=has_aux)[1]
    else:
        if isinstance(flags.get("argnums"), list):
            flags["argnums"] = tuple(flags["argnums"])
        res = getattr(tf, kind[5:])(func, **flags)(*xs)
        if kind == "func.grad_and_value" and has_aux:
            res = (res[0], res[1][0], res[1][1])
    return tuple(_flat_results(res))


def _flat_results(res: Any) -> list[Any]:
    if isinstance(res, (tuple, list)):
        return [x for r in res for x in _flat_results(r)]
    return [res]


class SyncFunctional:
    """The functional API of :class:`~client.Client` (one request per call)."""

    @property
    def func(self) -> Func:
        """``torch.func``'s transforms on client tensors (:class:`~client._functional.Func`)."""
        return Func(self)  # type: ignore[arg-type]

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

    @property
    def func(self) -> Func:
        """``torch.func``'s transforms on client tensors: recording only, so the same as
        :attr:`Client.func`; fetch the results with ``await c.values(...)``."""
        return Func(self)  # type: ignore[arg-type]

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
