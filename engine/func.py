"""Composable function transforms (``torch.func``): grad, grad_and_value, vjp, jvp, jacrev,
jacfwd, hessian and vmap.

Each transform is built on :func:`engine.autograd_grad`. A transformed function differentiates
with respect to fresh copies of its arguments (aliases when an argument already requires grad),
and keeps the graph of its results only when something outside can still differentiate them:
an argument that requires grad, or a captured tensor that does. So transforms nest (``grad`` of
``grad``, ``jacfwd`` of ``jacrev``, ``vmap`` of ``grad``) and compose with ``autograd_grad``.
Arguments and results may be pytrees (tuples, lists, dicts of tensors).

How they run:

- ``jvp`` and ``jacfwd`` are forward mode: dual tensors carry tangents through every op, each
  primitive's JVP rule written in engine ops (:mod:`engine.autograd.forward_ad`), at a level of
  their own so that they nest (``jacfwd(jacfwd(f))``) and compose with reverse mode
  (``jvp(grad(f))`` is a forward-over-reverse Hessian-vector product). ``jacfwd`` pays one
  forward pass per input element, ``jacrev`` one backward pass per output element.
- ``vmap`` runs the function once on batched tensors: each primitive runs on the whole batch by
  its batching rule (``Primitive.defbatch``), so per-sample gradients cost one batched backward
  pass. Where that cannot be exact (values read outside the primitives, random ops with
  ``randomness="different"``, inputs or results that require grad, nesting) it runs the
  function once per element instead, with a one-time warning.

>>> def loss(w, x):
...     return ((x @ w) ** 2).mean()
>>> w, xs = engine.ones(3), engine.randn(8, 3)
>>> per_sample = vmap(grad(loss), in_dims=(None, 0))(w, xs)   # shape (8, 3)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _autograd
from ._autograd import enable_grad, is_grad_enabled
from .autograd import forward_ad as _fw
from .tensor import Size, Tensor, VmapFallback

__all__ = ["grad", "grad_and_value", "vjp", "jvp", "jacrev", "jacfwd", "hessian", "vmap"]


# ---------------------------------------------------------------- pytrees
class _Spec:
    """The structure of a pytree: a leaf (``kind`` None) or a container of sub-structures."""

    __slots__ = ("kind", "meta", "children")

    def __init__(self, kind: Any = None, meta: Any = None, children: tuple = ()) -> None:
        self.kind, self.meta, self.children = kind, meta, children

    @property
    def num_leaves(self) -> int:
        return 1 if self.kind is None else sum(c.num_leaves for c in self.children)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, _Spec) and self.kind == other.kind and self.meta == other.meta
                and self.children == other.children)

    def __repr__(self) -> str:
        if self.kind is None:
            return "*"
        name = self.kind.__name__ if isinstance(self.kind, type) else str(self.kind)
        inner = ", ".join(map(repr, self.children))
        return f"{name}({inner})" if self.kind is not dict else f"dict({list(self.meta)}: {inner})"


def _flatten(tree: Any) -> tuple[list[Any], _Spec]:
    leaves: list[Any] = []

    def go(t: Any) -> _Spec:
        if isinstance(t, (tuple, list)) and not isinstance(t, Size):
            return _Spec(type(t), None, tuple(go(x) for x in t))  # namedtuples keep their type
        if isinstance(t, dict):
            return _Spec(dict, tuple(t), tuple(go(v) for v in t.values()))
        if t is None:
            return _Spec("None")
        leaves.append(t)
        return _Spec()

    return leaves, go(tree)


def _unflatten(leaves: list[Any], spec: _Spec) -> Any:
    it = iter(leaves)

    def go(s: _Spec) -> Any:
        if s.kind is None:
            return next(it)
        if s.kind == "None":
            return None
        items = [go(c) for c in s.children]
        if s.kind is dict:
            return dict(zip(s.meta, items))
        if s.kind in (tuple, list):
            return s.kind(items)
        return s.kind(*items)  # a namedtuple

    return go(spec)


def _tree_map(fn: Callable, tree: Any) -> Any:
    leaves, spec = _flatten(tree)
    return _unflatten([fn(x) for x in leaves], spec)


# ---------------------------------------------------------------- levels
class _Level:
    """One application of a transform: the fresh tensors it differentiates with respect to."""

    def __init__(self) -> None:
        self.grad_enabled = is_grad_enabled()
        self.inputs: list[Tensor] = []
        self.outer = False  # does an input come from outside (an argument that requires grad)?

    def wrap(self, x: Any) -> Tensor:
        if not isinstance(x, Tensor):
            raise ValueError(f"Thing passed to transform API must be Tensor, got {type(x)}")
        if x._rg:
            from .ops.shape import _reshape  # an alias node: differentiable back to x
            t = _reshape(x, shape=x._data.shape)
            self.outer = True
        else:
            t = _detached(x).requires_grad_()
        self.inputs.append(t)
        return t

    def keeps_graph(self, roots: list[Any]) -> bool:
        """Whether results must stay differentiable: only when grad mode was on at the call and
        something outside this level (an argument or a captured tensor) requires grad."""
        if not self.grad_enabled:
            return False
        return self.outer or _reaches_outside([r for r in roots if isinstance(r, Tensor)], self.inputs)

    def release(self, tree: Any, keep: bool) -> Any:
        """Results handed back to the caller: without an outer graph they are plain tensors."""
        if keep:
            return tree
        return _tree_map(lambda t: _detached(t) if isinstance(t, Tensor) and t._rg else t, tree)


# ``t.detach()`` that keeps forward-mode tangents: a transform's inputs and results inside
# ``jvp`` (as in ``jvp(grad(f))``) carry theirs through.
_detached = _fw._detach


def _reaches_outside(roots: list[Tensor], own: list[Tensor]) -> bool:
    """True if the graph of ``roots`` reaches a tensor that requires grad other than ``own``."""
    own_ids = {id(t) for t in own}
    own_nodes = {id(t.grad_fn) for t in own if t.grad_fn is not None}
    if any(r._rg and r.grad_fn is None and id(r) not in own_ids for r in roots):
        return True
    starts = [r.grad_fn for r in roots if r._rg and r.grad_fn is not None]
    return any(e is not None and isinstance(e[0], Tensor) and id(e[0]) not in own_ids
               for node in _autograd.walk_nodes(starts, skip=own_nodes) for e in node.edges)


def _zeros(t: Tensor) -> Tensor:
    return Tensor._make(np.zeros_like(t._data))


def _argnums(argnums: Any, n: int) -> tuple[tuple[int, ...], bool]:
    """Normalized positions and whether a single int was given (torch's errors)."""
    single = isinstance(argnums, int) and not isinstance(argnums, bool)
    nums = (argnums,) if single else argnums
    if not single:
        if not isinstance(argnums, tuple) or not all(isinstance(a, int) for a in argnums):
            raise RuntimeError(f"argnums must be int or Tuple[int, ...], got: {type(argnums)}")
        if not argnums:
            raise RuntimeError("argnums must be non-empty")
    out = []
    for a in nums:
        if not -n <= a < n:
            raise RuntimeError(f"Got argnum={a}, but only {n} positional inputs")
        out.append(a % n)
    if len(set(out)) != len(out):
        raise RuntimeError(f"argnums elements must be unique, got {argnums}")
    return tuple(out), single


def _wrap_args(level: _Level, args: tuple, nums: tuple[int, ...]) -> tuple[tuple, list[list[Tensor]],
                                                                        list[_Spec]]:
    """Replace the differentiated arguments by fresh tensors; per argnum, its leaves and spec."""
    new = list(args)
    leaves_per, specs = [], []
    for i in nums:
        leaves, spec = _flatten(args[i])
        wrapped = [level.wrap(x) for x in leaves]
        new[i] = _unflatten(wrapped, spec)
        leaves_per.append(wrapped)
        specs.append(spec)
    return tuple(new), leaves_per, specs


def _pack(per_arg: list[list[Any]], specs: list[_Spec], single: bool) -> Any:
    res = tuple(_unflatten(v, s) for v, s in zip(per_arg, specs))
    return res[0] if single else res


def _split_aux(out: Any, has_aux: bool, api: str) -> tuple[Any, Any]:
    if not has_aux:
        return out, None
    if not (isinstance(out, tuple) and len(out) == 2):
        raise RuntimeError(f"{api}: output of function f should be a tuple: (output, aux) if has_aux is True")
    for t in _flatten(out[1])[0]:
        if not isinstance(t, Tensor):
            raise RuntimeError(f"Expected tensors, got unsupported type {type(t)}")
    return out


def _grads_of(outs: list[Tensor], targets: list[Tensor], cotangents: list[Tensor] | None,
              create_graph: bool, retain_graph: bool = False) -> list[Tensor]:
    """``autograd_grad`` over the outputs that require grad; zeros where nothing depends."""
    pairs = [(o, None if cotangents is None else c) for o, c in
             zip(outs, cotangents if cotangents is not None else outs) if o._rg]
    if not pairs:
        return [_zeros(t) for t in targets]
    # create_graph keeps the forward graph too (torch's retain_graph default): the gradient's own
    # graph reads what the forward saved, and an outer transform differentiates through it
    res = _autograd.grad([o for o, _ in pairs], targets, [c for _, c in pairs],
                         retain_graph=retain_graph or create_graph, create_graph=create_graph,
                         allow_unused=True)
    return [_zeros(t) if g is None else g for g, t in zip(res, targets)]


# ---------------------------------------------------------------- grad
def grad_and_value(func: Callable, argnums: int | tuple[int, ...] = 0, has_aux: bool = False) -> Callable:
    """Like :func:`grad`, returning ``(gradient, value)`` (``((gradient, (value, aux))`` with
    ``has_aux``).

    >>> g, v = grad_and_value(lambda x: (x ** 2).sum())(engine.tensor([1.0, 2.0]))
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        api = "grad_and_value(f)(*args)"
        nums, single = _argnums(argnums, len(args))
        level = _Level()
        with enable_grad():
            new_args, leaves_per, specs = _wrap_args(level, args, nums)
            out, aux = _split_aux(func(*new_args, **kwargs), has_aux, api)
            if not isinstance(out, Tensor):
                raise RuntimeError(f"{api}: Expected f(*args) to return a Tensor, got {type(out)}")
            if out._data.ndim != 0:
                raise RuntimeError(f"{api}: Expected f(*args) to return a scalar Tensor, got tensor with "
                                   f"{out._data.ndim} dims. Maybe you wanted to use the vjp or jacrev APIs "
                                   "instead?")
            keep = level.keeps_graph([out, *_flatten(aux)[0]])
            flat = [t for leaves in leaves_per for t in leaves]
            g = _grads_of([out], flat, None, create_graph=keep)
        it = iter(g)
        grads = _pack([[next(it) for _ in leaves] for leaves in leaves_per], specs, single)
        value = level.release(out, keep)
        if has_aux:
            return grads, (value, level.release(aux, keep))
        return grads, value

    return wrapper


def grad(func: Callable, argnums: int | tuple[int, ...] = 0, has_aux: bool = False) -> Callable:
    """The gradient of a scalar function with respect to its ``argnums`` arguments
    (``torch.func.grad``); with ``has_aux``, ``func`` returns ``(value, aux)`` and the transform
    ``(gradient, aux)``.

    >>> grad(lambda x: (x ** 3).sum())(engine.tensor([1.0, 2.0]))
    tensor([ 3., 12.])
    >>> grad(grad(lambda x: x ** 3))(engine.tensor(2.0))
    tensor(12.)
    """
    gv = grad_and_value(func, argnums, has_aux)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g, value = gv(*args, **kwargs)
        return (g, value[1]) if has_aux else g

    return wrapper


# ---------------------------------------------------------------- vjp and jvp
def _tensor_outputs(out: Any, api: str) -> tuple[list[Tensor], _Spec]:
    leaves, spec = _flatten(out)
    for t in leaves:
        if not isinstance(t, Tensor):
            raise RuntimeError(f"{api}: expected f(*primals) to return only tensors, got unsupported type "
                               f"{type(t)}")
    return leaves, spec


def vjp(func: Callable, *primals: Any, has_aux: bool = False) -> tuple:
    """``(func(*primals), vjp_fn)`` where ``vjp_fn(cotangents)`` gives the vector-Jacobian product
    with respect to each primal (``torch.func.vjp``); ``(output, vjp_fn, aux)`` with ``has_aux``.
    ``vjp_fn`` may be called several times.

    >>> out, vjp_fn = vjp(engine.sin, engine.tensor([0.0, 1.0]))
    >>> (g,) = vjp_fn(engine.ones(2))
    """
    api = "vjp(f, *primals)"
    level = _Level()
    with enable_grad():
        leaves_in, spec_in = _flatten(primals)
        wrapped = [level.wrap(x) for x in leaves_in]
        out, aux = _split_aux(func(*_unflatten(wrapped, spec_in)), has_aux, api)
        outs, spec_out = _tensor_outputs(out, api)
        keep = level.keeps_graph([*outs, *_flatten(aux)[0]])
    grad_enabled = level.grad_enabled

    def vjp_fn(cotangents: Any) -> tuple:
        cts, spec_ct = _flatten(cotangents)
        if spec_ct != spec_out:
            raise RuntimeError("Expected pytree structure of cotangents to be the same as pytree structure "
                               f"of outputs to the function. cotangents: {spec_ct}, primal output: "
                               f"{spec_out}")
        for c in cts:
            if not isinstance(c, Tensor):
                raise ValueError(f"Thing passed to transform API must be Tensor, got {type(c)}")
        create = grad_enabled and is_grad_enabled() and (keep or any(c._rg for c in cts))
        with enable_grad():
            g = _grads_of(outs, wrapped, cts, create_graph=create, retain_graph=True)
        return tuple(_unflatten(g, spec_in))

    res = (level.release(out, keep), vjp_fn)
    return (*res, level.release(aux, keep)) if has_aux else res


def jvp(func: Callable, primals: Any, tangents: Any, *, strict: bool = False,
        has_aux: bool = False) -> tuple:
    """``(func(*primals), J tangents)`` (``torch.func.jvp``); ``(output, jvp_out, aux)`` with
    ``has_aux``. Forward mode: one pass carrying the tangents. ``strict`` is accepted and, as in
    torch, has no effect.

    >>> out, tangent = jvp(engine.sin, (engine.tensor([0.0]),), (engine.tensor([2.0]),))
    """
    api = "jvp(f, primals, tangents)"
    if not isinstance(primals, tuple):
        raise RuntimeError(f"{api}: Expected primals to be a tuple. E.g. it should be valid to call "
                           "f(*primals).")
    leaves_in, spec_in = _flatten(primals)
    tans, spec_t = _flatten(tangents)
    if spec_t != spec_in:
        raise RuntimeError(f"{api}: Expected primals and tangents to have the same python structure. For "
                           "example, if primals is a tuple of 3 tensors, tangents also must be. Got "
                           f"primals with structure {spec_in} and tangents with structure {spec_t}")
    for what, leaves in (("primals", leaves_in), ("tangents", tans)):
        if not leaves:
            raise RuntimeError(f"{api}: Expected {what} to contain at least one Tensor.")
        for t in leaves:
            if not isinstance(t, Tensor):
                raise RuntimeError(f"{api}: Expected {what} to only contain Tensors, got {type(t)}")
    for p, t in zip(leaves_in, tans):
        if p.shape != t.shape:
            raise RuntimeError("Trying to set a forward gradient that has a different size than that of the "
                               f"original Tensor, this is not supported. Tensor is of size {list(p.shape)} "
                               f"while the given forward gradient is of size {list(t.shape)}.")
    box: dict[str, Any] = {}

    def run(*duals: Tensor) -> list:
        out, aux = _split_aux(func(*_unflatten(list(duals), spec_in)), has_aux, api)
        outs, box["spec"] = _tensor_outputs(out, api)
        aux_leaves, box["aux_spec"] = _flatten(aux)
        box["n"] = len(outs)
        return [*outs, *aux_leaves]

    res, jv = _fw._jvp(run, leaves_in, tans)
    n = box["n"]
    outs = res[:n]
    jv = [_zeros(o) if j is None else j for j, o in zip(jv[:n], outs)]
    pair = (_unflatten(outs, box["spec"]), _unflatten(jv, box["spec"]))
    return (*pair, _unflatten(res[n:], box["aux_spec"])) if has_aux else pair


# ---------------------------------------------------------------- Jacobians
def _jac(func: Callable, argnums: Any, has_aux: bool, mode: str, api: str) -> Callable:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nums, single = _argnums(argnums, len(args))
        if mode == "fwd":
            return _jacfwd_call(func, args, kwargs, nums, single, has_aux, api)
        level = _Level()
        with enable_grad():
            new_args, leaves_per, specs = _wrap_args(level, args, nums)
            out, aux = _split_aux(func(*new_args, **kwargs), has_aux, api)
            outs, spec_out = _tensor_outputs(out, api)
            keep = level.keeps_graph([*outs, *_flatten(aux)[0]])
            xs = [t for leaves in leaves_per for t in leaves]
            blocks = _jacrev_blocks(outs, xs, keep)
        per_out = []
        for row in blocks:  # one row of blocks per output leaf, one block per input leaf
            it = iter(row)
            per_out.append(_pack([[next(it) for _ in leaves] for leaves in leaves_per], specs, single))
        jac = level.release(_unflatten(per_out, spec_out), keep)
        return (jac, level.release(aux, keep)) if has_aux else jac

    return wrapper


def _identity_rows(outs: list[Tensor]) -> list[Tensor]:
    """The standard basis of the concatenated outputs, split per output: ``(M, *out.shape)``."""
    numels = [o.numel() for o in outs]
    total = sum(numels)
    offsets = np.cumsum([0, *numels])
    rows = []
    for o, a, b in zip(outs, offsets[:-1], offsets[1:]):
        eye = np.zeros((total, b - a), dtype=o._data.dtype)
        eye[a:b] = np.eye(b - a, dtype=o._data.dtype)
        rows.append(Tensor._make(eye.reshape((total, *o._data.shape))))
    return rows


def _jacrev_blocks(outs: list[Tensor], xs: list[Tensor], keep: bool) -> list[list[Tensor]]:
    live = [(o, r) for o, r in zip(outs, _identity_rows(outs)) if o._rg]
    numels = [o.numel() for o in outs]
    offsets = np.cumsum([0, *numels])
    if live:
        res = _autograd.grad([o for o, _ in live], xs, [r for _, r in live], retain_graph=True,
                             create_graph=keep, allow_unused=True, is_grads_batched=True)
    else:
        res = [None] * len(xs)
    blocks = []
    for o, a, b in zip(outs, offsets[:-1], offsets[1:]):
        shape = o._data.shape
        row = []
        for x, r in zip(xs, res):
            if r is None:
                row.append(Tensor._make(np.zeros(shape + x._data.shape, dtype=x._data.dtype)))
            else:
                row.append(r[a:b].reshape(shape + x._data.shape))
        blocks.append(row)
    return blocks


def _jacfwd_call(func: Callable, args: tuple, kwargs: dict, nums: tuple[int, ...], single: bool,
                 has_aux: bool, api: str) -> Any:
    """jacfwd: forward mode over the standard basis of the concatenated inputs, one column (a
    JVP) per input element; then each output's columns are cut into one block per input."""
    leaves_per, specs = [], []
    for i in nums:
        leaves, spec = _flatten(args[i])
        for x in leaves:
            if not isinstance(x, Tensor):
                raise ValueError(f"Thing passed to transform API must be Tensor, got {type(x)}")
        leaves_per.append(leaves)
        specs.append(spec)
    xs = [t for leaves in leaves_per for t in leaves]
    box: dict[str, Any] = {}

    def run(*duals: Tensor) -> list:
        it = iter(duals)
        new = list(args)
        for i, leaves, spec in zip(nums, leaves_per, specs):
            new[i] = _unflatten([next(it) for _ in leaves], spec)
        out, aux = _split_aux(func(*new, **kwargs), has_aux, api)
        outs, box["spec"] = _tensor_outputs(out, api)
        aux_leaves, box["aux_spec"] = _flatten(aux)
        box["n"] = len(outs)
        return [*outs, *aux_leaves]

    basis = _identity_rows(xs)
    total = sum(x.numel() for x in xs)
    columns = _forward_columns(run, xs, basis, total)
    if columns is None:  # no input element: learn the outputs from one plain call
        res, columns = run(*xs), [None] * box["n"]
    else:
        res, columns = columns
    n = box["n"]
    outs = res[:n]
    numels = [x.numel() for x in xs]
    offsets = np.cumsum([0, *numels])
    per_out = []
    for k, o in enumerate(outs):
        shape = o._data.shape
        nd = len(shape)
        c = columns[k]  # (N, *out.shape)
        row = []
        for x, a, b in zip(xs, offsets[:-1], offsets[1:]):
            if c is None or a == b:
                row.append(Tensor._make(np.zeros(shape + x._data.shape, dtype=o._data.dtype)))
                continue
            part = c[a:b]  # (n_x, *out.shape): input axis last, then unflatten it
            if nd:
                part = part.permute(*range(1, nd + 1), 0)
            row.append(part.reshape(shape + x._data.shape))
        it = iter(row)
        per_out.append(_pack([[next(it) for _ in leaves] for leaves in leaves_per], specs, single))
    jac = _unflatten(per_out, box["spec"])
    return (jac, _unflatten(res[n:], box["aux_spec"])) if has_aux else jac


def _forward_columns(run: Callable, xs: list[Tensor], basis: list[Tensor], total: int
                     ) -> tuple[list, list] | None:
    """The outputs of ``run`` and, per output, its JVPs along every basis vector, ``(N, *shape)``:
    one vectorized forward pass, else one pass per column. None when there is no column."""
    if not total:
        return None
    done = _fw._jvp_batched(run, xs, [b._data for b in basis])
    if done is not None:
        res, arrays = done
        return res, [Tensor._make(np.zeros((total, *o._data.shape), o._data.dtype)) if a is None
                     else Tensor._make(np.ascontiguousarray(a)) for a, o in zip(arrays, res)]
    cols: list[list[Tensor]] = []
    res: list = []
    for j in range(total):
        res, jv = _fw._jvp(run, xs, [b[j] for b in basis])
        cols.append([_zeros(o) if t is None else t for t, o in zip(jv, res)])
    from .ops.shape import stack
    return res, [stack([c[k] for c in cols]) for k in range(len(res))]


def jacrev(func: Callable, argnums: int | tuple[int, ...] = 0, *, has_aux: bool = False,
           chunk_size: int | None = None, _preallocate_and_copy: bool = False) -> Callable:
    """The Jacobian by reverse mode (``torch.func.jacrev``): one backward pass per output element.
    Each output leaf gets blocks of shape ``out.shape + input.shape``.

    >>> jacrev(engine.sin)(engine.tensor([0.0, 1.0])).shape
    torch.Size([2, 2])
    """
    _check_chunk(chunk_size, "jacrev")
    return _jac(func, argnums, has_aux, "rev", "vjp(f, *primals)")


def jacfwd(func: Callable, argnums: int | tuple[int, ...] = 0, has_aux: bool = False, *,
           randomness: str = "error") -> Callable:
    """The Jacobian by forward mode (``torch.func.jacfwd``): one forward pass per input element.
    Same results as :func:`jacrev`; cheaper when inputs are fewer.

    >>> jacfwd(engine.sin)(engine.tensor([0.0, 1.0])).shape
    torch.Size([2, 2])
    """
    _check_randomness(randomness)
    return _jac(func, argnums, has_aux, "fwd", "jvp(f, primals, tangents)")


def hessian(func: Callable, argnums: int | tuple[int, ...] = 0) -> Callable:
    """``jacfwd(jacrev(func, argnums), argnums)`` (``torch.func.hessian``).

    >>> hessian(lambda x: (x ** 3).sum())(engine.tensor([1.0, 2.0]))
    tensor([[ 6.,  0.],
            [ 0., 12.]])
    """
    return jacfwd(jacrev(func, argnums), argnums)


def _check_chunk(chunk_size: int | None, api: str) -> None:
    if chunk_size is not None and not (isinstance(chunk_size, int) and chunk_size > 0):
        raise ValueError(f"{api}: `chunk_size` should be greater than 0.")


def _check_randomness(randomness: str) -> None:
    if randomness not in ("error", "different", "same"):
        raise RuntimeError("Only allowed values for randomness are 'error', 'different', or 'same'. "
                           f"Got {randomness}")


# ---------------------------------------------------------------- vmap

def mapped_size(shapes: Sequence[tuple | type], dims: Sequence[int | None], api: str) -> int:
    """The size of vmap's mapped dimension over inputs of these ``shapes`` (a non-tensor input's
    type instead of its shape), mapped along ``dims``, with ``torch.func.vmap``'s errors; the
    service's static check of a vmap node asks it too.

    >>> mapped_size([(3, 2), (5,)], [0, None], "vmap(f)")
    3
    """
    sizes = []
    for shape, d in zip(shapes, dims):
        if d is None:
            continue
        if not isinstance(shape, tuple):
            raise ValueError(f"{api}: Got in_dim={d} for an input but the input is of type {shape}. We "
                             "cannot vmap over non-Tensor arguments, please use None as the respective "
                             "in_dim")
        nd = len(shape)
        if not -nd <= d < nd:
            raise ValueError(f"{api}: Got in_dim={d} for some input, but that input is a Tensor of "
                             f"dimensionality {nd} so expected in_dim to satisfy -{nd} <= in_dim < {nd}.")
        sizes.append(shape[d])
    if not sizes:
        raise ValueError(f"{api}: at least one input must be a Tensor with a non-None in_dim; got "
                         "nothing to map over")
    if len(set(sizes)) > 1:
        raise ValueError("vmap: Expected all tensors to have the same size in the mapped dimension, got "
                         f"sizes {sizes} for the mapped dimension")
    return sizes[0]

def vmap(func: Callable, in_dims: Any = 0, out_dims: Any = 0, randomness: str = "error", *,
         chunk_size: int | None = None) -> Callable:
    """Map ``func`` over a dimension of its inputs (``torch.func.vmap``), vectorized.

    ``in_dims`` is an int, or a (nested) tuple matching the positional arguments, with None for
    arguments passed whole; ``out_dims`` places the mapped dimension in each output. Keyword
    arguments are passed whole. ``func`` runs once, on batched tensors: each primitive runs on
    the whole batch by its batching rule (a primitive without one runs once per element, with a
    one-time warning naming it). ``chunk_size`` runs the batch in chunks of that many elements.
    Random ops follow ``randomness``: an error (``"error"``, as torch), one draw for the whole
    batch (``"same"``) or one per element (``"different"``, by running ``func`` once per element).

    ``func`` runs once per element instead, with a one-time warning, where the vectorized run
    cannot be exact: when ``func`` reads a batched tensor's values outside the primitives
    (``.item()``, data-dependent Python control flow), for inputs that require grad or results
    that do (the graph of a batched result is not kept), and inside another vmap (the outer one
    stays vectorized).

    >>> vmap(engine.dot)(engine.ones(4, 3), engine.ones(4, 3))
    tensor([3., 3., 3., 3.])
    """
    _check_randomness(randomness)
    _check_chunk(chunk_size, "vmap")
    name = getattr(func, "__name__", repr(func))

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        api = f"vmap({name}, in_dims={in_dims}, ...)(<inputs>)"
        if not (isinstance(in_dims, (int, tuple)) and not isinstance(in_dims, bool)):
            raise ValueError(f"{api}: expected `in_dims` to be int or a (potentially nested) tuple matching "
                             f"the structure of inputs, got: {type(in_dims)}.")
        leaves, spec = _flatten(args)
        dims = _dims_for(in_dims, args, f"{api}: in_dims is not compatible with the structure of `inputs`.",
                         "in_dims", "inputs")
        n = mapped_size([x._data.shape if isinstance(x, Tensor) else type(x) for x in leaves], dims, api)
        if n == 0:  # no element to run on: learn the output shapes from one of zeros
            sl = [x if d is None else _zeros_slice(x, d) for x, d in zip(leaves, dims)]
            return _stack_outputs([func(*_unflatten(sl, spec), **kwargs)], out_dims, name, empty=True)
        dims = [None if d is None else d % x._data.ndim for x, d in zip(leaves, dims)]
        step = n if chunk_size is None else chunk_size
        parts = []
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            part = [x if d is None or (lo, hi) == (0, n) else x.narrow(d, lo, hi - lo)
                    for x, d in zip(leaves, dims)]
            parts.append(_vmap_part(func, part, dims, spec, kwargs, hi - lo, out_dims, randomness, name))
        if len(parts) == 1:
            return parts[0]
        return _cat_parts(parts, out_dims, name)

    return wrapper


_RANDOM_MSG = ("vmap: called random operation while in randomness error mode. Please either use the 'same' "
               "or 'different' randomness flags on vmap or perform the randomness operation out of vmap")


def _vmap_part(func: Callable, leaves: list, dims: list, spec: _Spec, kwargs: dict, n: int, out_dims: Any,
               randomness: str, name: str) -> Any:
    """One chunk: vectorized when it can be exact, else the loop."""
    if _vectorizable(leaves, dims):
        try:
            return _vmap_vectorized(func, leaves, dims, spec, kwargs, n, out_dims, randomness, name)
        except _autograd.RandomInVmap:
            if randomness == "error":
                raise RuntimeError(_RANDOM_MSG) from None
        except VmapFallback as e:
            _warn_once(f"vmap({name}): the function reads batched values outside the primitives ({e}); "
                       "it runs once per batch element.")
    results = []
    for b in range(n):
        sl = [x if d is None else x.select(d, b) for x, d in zip(leaves, dims)]
        results.append(func(*_unflatten(sl, spec), **kwargs))
    return _stack_outputs(results, out_dims, name)


def _vectorizable(leaves: list, dims: list) -> bool:
    if _autograd._state.vm is not None or _autograd._hooks.meta is not None:
        return False  # nested: the outer vmap is the vectorized one
    return not any(d is not None and (x._rg or getattr(x, "_fw", None)) for x, d in zip(leaves, dims))


_warned: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        import warnings
        warnings.warn(msg, stacklevel=4)


class _Unbatchable(Exception):
    pass


def _vmap_vectorized(func: Callable, leaves: list, dims: list, spec: _Spec, kwargs: dict, n: int,
                     out_dims: Any, randomness: str, name: str) -> Any:
    prev = _autograd._state.vm
    lev = _autograd._enter_vmap(randomness)
    try:
        xs = [x if d is None else _autograd.batched(np.moveaxis(x._data, d, 0), lev)
              for x, d in zip(leaves, dims)]
        out = func(*_unflatten(xs, spec), **kwargs)
        flat, ospec = _flatten(out)
        for t in flat if ospec.kind != "None" else [None]:
            if not isinstance(t, Tensor):
                raise ValueError(f"vmap({name}, ...): `{name}` must only return Tensors, got type {type(t)}. "
                                 "Did you mean to set out_dims= to None for output?")
            if t._rg or getattr(t, "_fw", None):
                raise VmapFallback("a result that requires grad")
        batches = [_autograd.batch_of(t) for t in flat]
    finally:
        _autograd._exit_vmap(prev)
    if isinstance(out_dims, tuple) and len(out_dims) == 1 and ospec.kind is None:
        out_dims = out_dims[0]  # torch accepts (d,) for a single output
    odims = _dims_for(out_dims, out, f"vmap({name}, ..., out_dims={out_dims})(<inputs>): out_dims is not "
                      "compatible with the structure of `outputs`.", "out_dims", "outputs")
    res = []
    for t, b, d in zip(flat, batches, odims):
        if d is None:
            if b is not None:
                raise ValueError(f"vmap({name}, ...): `{name}` can not return a BatchedTensor when out_dim "
                                 "is None")
            res.append(t)
            continue
        if b is None:  # the same for every element: broadcast, as torch
            b = np.broadcast_to(t._data, (n, *t._data.shape))
        nd = b.ndim
        if not -nd <= d < nd:
            raise IndexError(f"Dimension out of range (expected to be in range of [{-nd}, {nd - 1}], but got "
                             f"{d})")
        res.append(Tensor._make(np.ascontiguousarray(np.moveaxis(b, 0, d))))
    return _unflatten(res, ospec)


def _cat_parts(parts: list, out_dims: Any, name: str) -> Any:
    flats = [_flatten(p) for p in parts]
    leaves0, spec = flats[0]
    if isinstance(out_dims, tuple) and len(out_dims) == 1 and spec.kind is None:
        out_dims = out_dims[0]
    odims = _dims_for(out_dims, parts[0], f"vmap({name}, ..., out_dims={out_dims})(<inputs>): out_dims is "
                      "not compatible with the structure of `outputs`.", "out_dims", "outputs")
    from .ops.shape import cat
    res = [leaves0[k] if d is None else cat([f[0][k] for f in flats], d) for k, d in enumerate(odims)]
    return _unflatten(res, spec)


def _zeros_slice(x: Tensor, d: int) -> Tensor:
    shape = list(x._data.shape)
    del shape[d]
    return Tensor._make(np.zeros(shape, dtype=x._data.dtype))


def _dims_for(dims: Any, tree: Any, msg: str, dname: str, tname: str) -> list[int | None]:
    """One dim (or None) per leaf of ``tree``: an int or None applies to a whole subtree,
    containers must match the tree's containers."""

    def go(d: Any, t: Any) -> list[int | None]:
        if d is None or (isinstance(d, int) and not isinstance(d, bool)):
            return [d] * _flatten(t)[1].num_leaves
        if isinstance(d, (tuple, list)) and type(d) is type(t) and len(d) == len(t):
            return [x for di, ti in zip(d, t) for x in go(di, ti)]
        if isinstance(d, dict) and isinstance(t, dict) and list(d) == list(t):
            return [x for k in t for x in go(d[k], t[k])]
        raise ValueError(f"{msg} {dname} has structure {_flatten(dims)[1]} but {tname} has structure "
                         f"{_flatten(tree)[1]}.")

    return go(dims, tree)


def _stack_outputs(results: list[Any], out_dims: Any, name: str, empty: bool = False) -> Any:
    flat = [_flatten(r) for r in results]
    leaves0, spec = flat[0]
    if spec.kind == "None":
        leaves0 = [None]
    for lv, _ in flat:
        for t in lv or leaves0:
            if not isinstance(t, Tensor):
                raise ValueError(f"vmap({name}, ...): `{name}` must only return Tensors, got type {type(t)}. "
                                 "Did you mean to set out_dims= to None for output?")
    out_tree = results[0]
    if isinstance(out_dims, tuple) and len(out_dims) == 1 and spec.kind is None:
        out_dims = out_dims[0]  # torch accepts (d,) for a single output
    dims = _dims_for(out_dims, out_tree, f"vmap({name}, ..., out_dims={out_dims})(<inputs>): out_dims is not "
                     "compatible with the structure of `outputs`.", "out_dims", "outputs")
    from .ops.shape import stack
    out = []
    for k, d in enumerate(dims):
        items = [lv[k] for lv, _ in flat]
        if d is None:
            out.append(items[0])
        elif empty:
            t = items[0]
            shape = list(t._data.shape)
            nd = len(shape) + 1
            if not -nd <= d < nd:
                raise IndexError(f"Dimension out of range (expected to be in range of [{-nd}, {nd - 1}], but "
                                 f"got {d})")
            shape.insert(d % nd, 0)
            out.append(Tensor._make(np.zeros(shape, dtype=t._data.dtype)))
        else:
            out.append(stack(items, d))
    return _unflatten(out, spec)
