"""Finite-difference and torch-parity checks over op samples (used by test_gradcheck.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import engine
from engine import Tensor

EPS = 1e-6


# ---------------------------------------------------------------- building inputs
def build(sample: Any, lib: Any, float_tensor: Callable[[np.ndarray], Any] | None = None,
          leaf: Callable[[np.ndarray], Any] | None = None) -> tuple[tuple, dict, list]:
    """Convert a sample's numpy arguments to ``lib`` tensors; returns (args, kwargs, leaves).

    ``float_tensor`` makes the tensor for a float array (default: a float64 ``lib`` tensor);
    ``leaf`` makes it for a differentiated one (default: ``float_tensor``'s, requiring grad).
    leaves lists what ``leaf`` returned, in argument order."""
    leaves: list = []
    if float_tensor is None:
        float_tensor = lambda x: lib.tensor(x.astype(np.float64))
    if leaf is None:
        def leaf(x: np.ndarray) -> Any:
            t = float_tensor(x)
            t.requires_grad_(True)
            return t

    def conv(x: Any, diff: bool) -> Any:
        if isinstance(x, np.ndarray):
            if x.dtype.kind != "f":
                return lib.tensor(x)
            if not diff:
                return float_tensor(x)
            leaves.append(leaf(x))
            return leaves[-1]
        if isinstance(x, list):
            return [conv(v, diff) for v in x]
        if isinstance(x, tuple):
            return tuple(conv(v, diff) for v in x)
        return x

    args = tuple(conv(a, i not in sample.nondiff) for i, a in enumerate(sample.args))
    kwargs = {k: conv(v, k not in sample.nondiff) for k, v in sample.kwargs.items()}
    return args, kwargs, leaves


def call(fn: Callable, sample: Any, args: tuple, kwargs: dict) -> Any:
    """Run the op, inside the sample's ``wrap`` composition when it has one."""
    return fn(*args, **kwargs) if sample.wrap is None else sample.wrap(fn, *args, **kwargs)


def float_outputs(out: Any) -> list:
    """The differentiable (floating) tensors among an op's outputs."""
    if isinstance(out, (Tensor, torch.Tensor)):
        outs = [out]
    elif isinstance(out, (tuple, list)):
        outs = [o for o in out if isinstance(o, (Tensor, torch.Tensor))]
    else:
        return []
    return [o for o in outs if o.dtype in (engine.float64, engine.float32, torch.float64, torch.float32)]


def to_np(t: Any) -> np.ndarray:
    if isinstance(t, Tensor):
        return np.asarray(t.detach()._data)
    return t.detach().numpy(force=True)


def cotangents(outs: list, seed: int = 1) -> list[np.ndarray]:
    r = np.random.default_rng(seed)
    return [r.standard_normal(tuple(o.shape)) for o in outs]


# ---------------------------------------------------------------- the scalar functions checked
def first_order(fn: Callable, lib: Any, sample: Any) -> tuple[list, list, list, Any]:
    """Run fn; return (leaves, outputs, grads of <v, out> wrt leaves, raw output)."""
    args, kwargs, leaves = build(sample, lib)
    out = call(fn, sample, args, kwargs)
    outs = [o for o in float_outputs(out) if o.requires_grad]
    if not leaves or not outs:
        return leaves, outs, [], out
    vs = [lib.tensor(v) for v in cotangents(outs)]
    grads = lib.autograd.grad(outs, leaves, vs, allow_unused=True, materialize_grads=True)
    return leaves, outs, list(grads), out


def scalar_L(fn: Callable, sample: Any, arrays: list[np.ndarray]) -> float:
    """<v, f(x)> evaluated at leaf values ``arrays`` (engine, no graph)."""
    s = _with_leaves(sample, arrays)
    args, kwargs, _ = build(s, engine)
    with engine.no_grad():
        out = call(fn, s, args, kwargs)
    outs = float_outputs(out)
    return float(sum((to_np(o) * v).sum() for o, v in zip(outs, cotangents(outs))))


def second_scalar(fn: Callable, lib: Any, sample: Any, create: bool = True) -> tuple[list, Any]:
    """G(x) = <u, grad_x <v, f(x)>>; returns (leaves, G) with G differentiable (create_graph)."""
    args, kwargs, leaves = build(sample, lib)
    out = call(fn, sample, args, kwargs)
    outs = [o for o in float_outputs(out) if o.requires_grad]
    vs = [lib.tensor(v) for v in cotangents(outs)]
    grads = lib.autograd.grad(outs, leaves, vs, allow_unused=True, materialize_grads=True,
                              create_graph=create)
    r = np.random.default_rng(2)
    G = None
    for g in grads:
        term = (g * lib.tensor(r.standard_normal(tuple(g.shape)))).sum()
        G = term if G is None else G + term
    return leaves, G


def _with_leaves(sample: Any, arrays: list[np.ndarray]) -> Any:
    """A copy of ``sample`` whose differentiated float arrays are replaced, in order, by ``arrays``."""
    it = iter(arrays)

    def sub(x: Any, diff: bool) -> Any:
        if isinstance(x, np.ndarray) and x.dtype.kind == "f" and diff:
            return next(it)
        if isinstance(x, list):
            return [sub(v, diff) for v in x]
        if isinstance(x, tuple):
            return tuple(sub(v, diff) for v in x)
        return x

    import copy
    s = copy.copy(sample)
    s.args = tuple(sub(a, i not in sample.nondiff) for i, a in enumerate(sample.args))
    s.kwargs = {k: sub(v, k not in sample.nondiff) for k, v in sample.kwargs.items()}
    return s


def leaf_arrays(sample: Any) -> list[np.ndarray]:
    _, _, leaves = build(sample, engine)
    return [to_np(t).copy() for t in leaves]


def numerical_grad(f: Callable[[list[np.ndarray]], float], arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Central differences of scalar f over every element of every array."""
    grads = []
    for k, a in enumerate(arrays):
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            plus = [x.copy() for x in arrays]
            minus = [x.copy() for x in arrays]
            plus[k][idx] += EPS
            minus[k][idx] -= EPS
            g[idx] = (f(plus) - f(minus)) / (2 * EPS)
        grads.append(g)
    return grads


def G_value(fn: Callable, sample: Any, arrays: list[np.ndarray]) -> float:
    s = _with_leaves(sample, arrays)
    _, G = second_scalar(fn, engine, s, create=False)
    return float(to_np(G)) if G is not None else 0.0


# ---------------------------------------------------------------- torch resolution
def torch_callable(name: str, sample: Any) -> Callable | None:
    from .opsamples import AUTO
    if sample.torch_fn is not AUTO:
        return sample.torch_fn
    obj: Any = torch
    for part in name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            break
    if obj is not None:
        return obj
    meth = getattr(torch.Tensor, name, None)
    if meth is not None:
        return lambda self, *a, **k: getattr(self, name)(*a, **k)
    return None


def assert_close(actual: np.ndarray, expected: np.ndarray, sample: Any, what: str) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), np.asarray(expected, np.float64),
                               rtol=sample.rtol * 10, atol=sample.atol * 10, err_msg=what)
