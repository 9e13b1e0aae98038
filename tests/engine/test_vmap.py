"""vmap's batching rules: every op sample vectorized against the loop (values, and the VJP's
primitives under a batch of cotangents), the list of primitives that still fall back, and the
transforms built on it against torch.func."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch

import engine
from engine.func import grad, jacfwd, jacrev, vjp, vmap

from . import gradcheck as gc
from .opsamples import NO_VALUE_PARITY, SAMPLES
from .test_gradcheck import CASES, DIFF_CASES, UNIQUE, _id

# Primitives without a batching rule: under vmap they run once per batch element (with a
# one-time warning). Adding a rule removes the name here.
FALLS_BACK = {
    "cholesky_solve", "conv_wgrad", "diag_scatter", "fold_windows", "linalg_cross", "linalg_pinv",
    "linalg_solve_ex", "linalg_solve_triangular", "median_all", "put", "scatter_reduce", "windows",
}


def test_primitives_without_a_batching_rule() -> None:
    missing = {n for n, p in engine.PRIMITIVES.items() if p.batch is None}
    assert missing == FALLS_BACK, (f"new rules: {sorted(FALLS_BACK - missing)}; "
                                   f"new primitives without one: {sorted(missing - FALLS_BACK)}")


def test_fallback_warns_once_naming_the_primitive() -> None:
    from engine import _autograd
    _autograd._warned.discard("median_all")
    x = engine.randn(3, 5)
    with pytest.warns(UserWarning, match="batching rule for median_all"):
        out = vmap(engine.median)(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vmap(engine.median)(x)
    assert out.tolist() == [engine.median(r).item() for r in x]


# ---------------------------------------------------------------- every op sample
_R = np.random.default_rng(3)


def _batch_args(s: Any, n: int = 3) -> tuple[list, list, dict]:
    """``n`` perturbed copies of each float array of the sample's positional arguments, stacked
    on dimension 0 (with in_dim 0), other arguments passed whole."""
    def conv(x: Any) -> tuple[Any, Any]:
        if isinstance(x, np.ndarray) and x.dtype.kind == "f":
            xs = np.stack([x + 1e-3 * k * _R.standard_normal(x.shape) for k in range(n)])
            return engine.tensor(xs.astype(np.float64)), 0
        if isinstance(x, np.ndarray):
            return engine.tensor(x), None
        if isinstance(x, (list, tuple)):
            pairs = [conv(v) for v in x]
            return type(x)(p[0] for p in pairs), type(x)(p[1] for p in pairs)
        return x, None

    pairs = [conv(a) for a in s.args]
    kwargs = {k: (engine.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in s.kwargs.items()}
    return [p[0] for p in pairs], [p[1] for p in pairs], kwargs


def _select(args: list, dims: list, b: int) -> list:
    def sel(x: Any, d: Any) -> Any:
        if isinstance(x, (list, tuple)):
            return type(x)(sel(v, e) for v, e in zip(x, d))
        return x if d is None else x.select(d, b)
    return [sel(x, d) for x, d in zip(args, dims)]


def _floats(out: Any) -> list:
    if isinstance(out, engine.Tensor):
        return [out]
    return [o for o in out if isinstance(o, engine.Tensor)] if isinstance(out, (tuple, list)) else []


def _has_batched(dims: list) -> bool:
    return any(d == 0 or (isinstance(d, (list, tuple)) and _has_batched(list(d))) for d in dims)


def _has_float_arg(x: Any) -> bool:
    if isinstance(x, np.ndarray):
        return x.dtype.kind == "f"
    return isinstance(x, (list, tuple)) and any(_has_float_arg(v) for v in x)


# Samples with no float positional argument have nothing to batch: not test cases.
VMAP_CASES = [c for c in CASES
              if c[0] not in NO_VALUE_PARITY and _has_float_arg(list(SAMPLES[c[0]][c[1]].args))]


# Output sizes that depend on each element's values: torch's vmap refuses them, and so does ours.
DYNAMIC_SHAPE = {"nonzero", "argwhere", "unique"}


@pytest.mark.parametrize("case", VMAP_CASES, ids=_id)
def test_vmap_matches_the_loop(case: tuple) -> None:
    name, i = case
    s = SAMPLES[name][i]
    args, dims, kwargs = _batch_args(s)
    assert _has_batched(dims)
    fn = UNIQUE[name].fn

    def f(*a: Any) -> Any:
        return gc.call(fn, s, a, kwargs)

    if name in DYNAMIC_SHAPE:
        with pytest.raises(RuntimeError, match="batching operators that can output dynamic shape"):
            vmap(f, in_dims=tuple(dims))(*args)
        return

    try:
        loop = [f(*_select(args, dims, b)) for b in range(3)]
    except (ValueError, RuntimeError, IndexError) as e:
        # a perturbed sample outside the op's domain: vmap refuses it as the loop does
        with warnings.catch_warnings(), pytest.raises(type(e)):
            warnings.simplefilter("ignore")
            vmap(f, in_dims=tuple(dims))(*args)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = vmap(f, in_dims=tuple(dims))(*args)
    for k, o in enumerate(_floats(out)):
        want = np.stack([gc.to_np(_floats(r)[k]) for r in loop])
        np.testing.assert_allclose(gc.to_np(o), want, rtol=1e-9, atol=1e-12, err_msg=f"{name}: output {k}")


@pytest.mark.parametrize("case", [c for c in DIFF_CASES if c[0] not in NO_VALUE_PARITY], ids=_id)
def test_vmap_of_vjp_matches_the_loop(case: tuple) -> None:
    # A batch of cotangents through the VJP: the primitives of every VJP under their rules.
    name, i = case
    s = SAMPLES[name][i]
    fn = UNIQUE[name].fn
    args, kwargs, leaves = gc.build(s, engine)
    if not leaves:
        pytest.skip("nothing differentiable")
    ids = {id(t) for t in leaves}

    def f(*ls: engine.Tensor) -> Any:
        it = iter(ls)

        def sub(x: Any) -> Any:
            if isinstance(x, (list, tuple)):
                return type(x)(sub(v) for v in x)
            return next(it) if isinstance(x, engine.Tensor) and id(x) in ids else x
        a = [sub(x) for x in args]
        return tuple(o for o in gc.float_outputs(gc.call(fn, s, a, kwargs)))

    plain = [t.detach() for t in leaves]
    outs, vjp_fn = vjp(f, *plain)
    cts = tuple(engine.tensor(_R.standard_normal((3, *o.shape))) for o in outs)
    loop = [vjp_fn(tuple(c[b] for c in cts)) for b in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = vmap(vjp_fn)(cts)
    for k, g in enumerate(got):
        want = np.stack([gc.to_np(r[k]) for r in loop])
        np.testing.assert_allclose(gc.to_np(g), want, rtol=1e-9, atol=1e-12, err_msg=f"{name}: leaf {k}")


# ---------------------------------------------------------------- the transforms, against torch.func
def _mlp(lib: Any) -> Any:
    def loss(w1: Any, w2: Any, x: Any, y: Any) -> Any:
        h = lib.tanh(x @ w1.T)
        return ((h @ w2.T - y) ** 2).mean()
    return loss


def test_per_sample_gradients_against_torch_func() -> None:
    r = np.random.default_rng(0)
    w1, w2, x, y = r.standard_normal((8, 5)), r.standard_normal((2, 8)), r.standard_normal((6, 5)), \
        r.standard_normal((6, 2))
    e = vmap(grad(_mlp(engine), argnums=(0, 1)), in_dims=(None, None, 0, 0))(
        *(engine.tensor(a) for a in (w1, w2, x, y)))
    t = torch.func.vmap(torch.func.grad(_mlp(torch), argnums=(0, 1)), in_dims=(None, None, 0, 0))(
        *(torch.tensor(a) for a in (w1, w2, x, y)))
    for a, b in zip(e, t):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10)


@pytest.mark.parametrize("jac", ["jacrev", "jacfwd", "hessian", "jacfwd_jacfwd"])
def test_jacobians_against_torch_func(jac: str) -> None:
    r = np.random.default_rng(1)
    m, x0 = r.standard_normal((4, 4)), r.standard_normal(4)

    def f(lib: Any) -> Any:
        return lambda x: lib.tanh(lib.tensor(m) @ x) * x

    def tr(mod: Any) -> Any:
        return {"jacrev": mod.jacrev, "jacfwd": mod.jacfwd, "hessian": mod.hessian,
                "jacfwd_jacfwd": lambda g: mod.jacfwd(mod.jacfwd(g))}[jac]

    import engine.func as ef
    e = tr(ef)(f(engine) if jac.startswith("jac") else lambda x: f(engine)(x).sum())(engine.tensor(x0))
    t = tr(torch.func)(f(torch) if jac.startswith("jac") else lambda x: f(torch)(x).sum())(torch.tensor(x0))
    np.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-10, atol=1e-12)


def test_jacfwd_of_jacrev_and_vmap_of_grad_compose() -> None:
    r = np.random.default_rng(2)
    xs = r.standard_normal((3, 4))

    def f(lib: Any) -> Any:
        return lambda x: (lib.sin(x) * x.sum()).sum()

    e = vmap(jacfwd(jacrev(f(engine))))(engine.tensor(xs))
    t = torch.func.vmap(torch.func.jacfwd(torch.func.jacrev(f(torch))))(torch.tensor(xs))
    np.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-10, atol=1e-12)


def test_vmap_options_against_torch() -> None:
    x = np.arange(24.0).reshape(2, 3, 4)
    for kw in ({"in_dims": 1}, {"in_dims": 2, "out_dims": 1}, {"in_dims": -1, "chunk_size": 2}):
        e = vmap(lambda a: a.sum(0) * 2, **kw)(engine.tensor(x))
        t = torch.func.vmap(lambda a: a.sum(0) * 2, **kw)(torch.tensor(x))
        np.testing.assert_allclose(e.numpy(), t.numpy())
    # nesting: the inner vmap runs per element, the outer one stays vectorized
    e = vmap(vmap(lambda a, b: a @ b, in_dims=(0, None)), in_dims=(None, 0))(engine.tensor(x[0]),
                                                                          engine.tensor(x[1]))
    t = torch.func.vmap(torch.func.vmap(lambda a, b: a @ b, in_dims=(0, None)), in_dims=(None, 0))(
        torch.tensor(x[0]), torch.tensor(x[1]))
    np.testing.assert_allclose(e.numpy(), t.numpy())


def test_randomness() -> None:
    x = engine.ones(4, 3)
    with pytest.raises(RuntimeError, match="randomness error mode"):
        vmap(lambda a: a + engine.rand(3))(x)
    same = vmap(lambda a: a + engine.rand(3), randomness="same")(x)
    assert np.allclose(same.numpy(), same.numpy()[0])
    diff = vmap(lambda a: a + engine.rand(3), randomness="different")(x)
    assert not np.allclose(diff.numpy(), diff.numpy()[0])


def test_value_reads_fall_back_to_the_loop() -> None:
    # Data-dependent Python control flow reads values: vmap runs per element, exactly.
    def f(a: engine.Tensor) -> engine.Tensor:
        return a * 2 if a.sum().item() > 0 else a * 3

    import engine.func
    engine.func._warned.clear()  # the warning is once per message
    x = engine.tensor([[1.0, 2.0], [-1.0, -2.0]])
    with pytest.warns(UserWarning, match="once per batch element"):
        out = vmap(f)(x)
    assert out.tolist() == [[2.0, 4.0], [-3.0, -6.0]]
