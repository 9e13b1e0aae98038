"""Forward-mode AD: ``engine.autograd.forward_ad`` against torch's, and every primitive's JVP rule
checked on every op sample, against central finite differences (float64) and against torch's
forward mode."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.autograd.forward_ad as tfw

import engine
import engine.autograd.forward_ad as fw

from . import gradcheck as gc
from .opsamples import NO_TORCH, NO_VALUE_PARITY, SAMPLES
from .test_gradcheck import DIFF_CASES, UNIQUE, _id

# Where torch's forward mode is wrong, the JVP is checked against finite differences only.
TORCH_FORWARD_WRONG = {
    ("scatter_reduce", "prod"): "torch.func.jvp gives zeros for reduce='prod' (its double-backward jvp "
                                "and finite differences agree with the engine)",
    ("logcumsumexp", 1): "large magnitudes: torch's forward formula is off by 1e-2 in one entry; finite "
                         "differences agree with the engine",
}


def _torch_wrong(name: str, i: int, s: Any) -> str | None:
    reduce = s.args[4] if name == "scatter_reduce" else None
    return TORCH_FORWARD_WRONG.get((name, i)) or TORCH_FORWARD_WRONG.get((name, reduce))


# ---------------------------------------------------------------- the API, against torch
def _err(fn: Any) -> tuple[type, str]:
    try:
        fn()
    except Exception as e:  # noqa: BLE001  (comparing whatever both raise)
        return type(e), str(e)
    return type(None), ""


def test_messages_match_torch() -> None:
    x, tx = engine.randn(3), torch.randn(3)

    def both(f_e: Any, f_t: Any) -> None:
        e, t = _err(f_e), _err(f_t)
        assert e[0] is t[0] and e[1] == t[1], (e, t)

    both(lambda: fw.make_dual(x, engine.ones(3)), lambda: tfw.make_dual(tx, torch.ones(3)))
    with fw.dual_level(), tfw.dual_level():
        both(lambda: fw.make_dual(x, engine.ones(4)), lambda: tfw.make_dual(tx, torch.ones(4)))
        both(lambda: fw.make_dual(engine.arange(3), engine.arange(3)),
             lambda: tfw.make_dual(torch.arange(3), torch.arange(3)))
        both(lambda: fw.make_dual(x, engine.arange(3)), lambda: tfw.make_dual(tx, torch.arange(3)))
        both(lambda: fw.make_dual(x, 3), lambda: tfw.make_dual(tx, 3))
        both(fw.enter_dual_level, tfw.enter_dual_level)
        d, td = fw.make_dual(x, engine.ones(3)), tfw.make_dual(tx, torch.ones(3))
        both(lambda: fw.make_dual(d, engine.ones(3)), lambda: tfw.make_dual(td, torch.ones(3)))
        both(lambda: fw.unpack_dual(d, level=5), lambda: tfw.unpack_dual(td, level=5))
        both(lambda: fw.exit_dual_level(level=7), lambda: tfw.exit_dual_level(level=7))
    both(fw.exit_dual_level, tfw.exit_dual_level)
    both(lambda: fw.make_dual(x, engine.ones(3), level=0), lambda: tfw.make_dual(tx, torch.ones(3), level=0))


def test_dual_level_semantics() -> None:
    x = engine.tensor([1.0, 2.0])
    with fw.dual_level() as lvl:
        assert lvl == 0
        d = fw.make_dual(x, engine.tensor([1.0, 0.5]))
        p, t = fw.unpack_dual(d * d)
        assert p.tolist() == [1.0, 4.0] and t.tolist() == [2.0, 2.0]
        assert fw.unpack_dual(x).tangent is None          # make_dual returned a new tensor
        assert fw.unpack_dual(d.detach()).tangent is None  # as torch: detach drops the tangent
        assert fw.unpack_dual(engine.sign(d)).tangent.tolist() == [0.0, 0.0]
        assert fw.unpack_dual(engine.argmax(d)).tangent is None
        with engine.no_grad():  # forward mode does not depend on grad mode
            assert fw.unpack_dual(d * 3).tangent.tolist() == [3.0, 1.5]
        assert type(fw.unpack_dual(d)).__name__ == "UnpackedDualTensor"
        assert fw.unpack_dual(d)._fields == ("primal", "tangent")
    assert fw.unpack_dual(d).tangent is None  # the level's tangents are gone with it


def test_make_dual_keeps_the_reverse_graph() -> None:
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    xt = torch.tensor([1.0, 2.0], requires_grad=True)
    with fw.dual_level(), tfw.dual_level():
        d, td = fw.make_dual(x, engine.ones(2)), tfw.make_dual(xt, torch.ones(2))
        assert d.requires_grad and not d.is_leaf
        # reverse over forward: the tangent 3 x^2 is differentiable in x
        t = fw.unpack_dual(d ** 3).tangent
        tt = tfw.unpack_dual(td ** 3).tangent
        (g,) = engine.autograd_grad(t.sum(), x)
        (gt,) = torch.autograd.grad(tt.sum(), xt)
    np.testing.assert_allclose(g.numpy(), gt.numpy())


def test_forward_over_reverse_hvp() -> None:
    a = np.random.default_rng(0).standard_normal((4, 3))
    x0, v0 = np.array([0.3, -0.2, 0.5]), np.array([1.0, 2.0, -1.0])

    def f(lib: Any, x: Any) -> Any:
        return lib.tanh(lib.tensor(a) @ x).pow(2).sum() + (x * x * x).sum()

    with fw.dual_level():
        x = fw.make_dual(engine.tensor(x0), engine.tensor(v0))
        xr = x.detach().requires_grad_()  # the reverse pass differentiates a leaf...
        x = fw.make_dual(xr, engine.tensor(v0))  # ...that carries the tangent
        (g,) = engine.autograd_grad(f(engine, x), xr, create_graph=False)
        hv = fw.unpack_dual(g).tangent
    want = torch.func.jvp(torch.func.grad(lambda x: f(torch, x)), (torch.tensor(x0),), (torch.tensor(v0),))[1]
    np.testing.assert_allclose(hv.numpy(), want.numpy(), rtol=1e-10)


def test_nested_levels_in_the_core() -> None:
    # The core nests levels (engine.func uses it): d^2/dx^2 x^3 = 6x through two tangents.
    from engine import _autograd as core
    x = engine.tensor(2.0, dtype=engine.float64)
    outer = core._enter_level()
    try:
        xo = fw._view(x)
        core._set_tangent(xo, outer, engine.tensor(1.0, dtype=engine.float64))
        inner = core._enter_level()
        try:
            xi = fw._view(xo)
            xi._fw = dict(xo._fw)
            core._set_tangent(xi, inner, engine.tensor(1.0, dtype=engine.float64))
            y = xi ** 3
            dy = core._get_tangent(y, inner)  # 3 x^2 = 12, with its own outer tangent 6 x = 12
        finally:
            core._exit_level(inner)
        assert dy.item() == 12.0
        assert core._get_tangent(dy, outer).item() == 12.0
    finally:
        core._exit_level(outer)


# ---------------------------------------------------------------- every primitive, every sample
def test_every_primitive_has_a_jvp_rule() -> None:
    missing = sorted(n for n, p in engine.PRIMITIVES.items() if p.jvp is None)
    assert not missing, f"primitives without a JVP rule: {missing}"


def _build(sample: Any, lib: Any, make: Any) -> tuple[tuple, dict, list, list]:
    """Sample arguments as ``lib`` tensors, each differentiated float array passed through
    ``make(array, tangent)`` with a random tangent; returns (args, kwargs, primal arrays,
    tangent arrays)."""
    primals: list = []
    tangents: list = []
    r = np.random.default_rng(7)

    def leaf(x: np.ndarray) -> Any:
        x = x.astype(np.float64)
        primals.append(x)
        tangents.append(r.standard_normal(x.shape))
        return make(x, tangents[-1])

    args, kwargs, _ = gc.build(sample, lib, leaf=leaf)
    return args, kwargs, primals, tangents


def _engine_jvp(name: str, s: Any) -> tuple[list, list]:
    with fw.dual_level():
        args, kwargs, _, _ = _build(s, engine, lambda x, t: fw.make_dual(engine.tensor(x), engine.tensor(t)))
        out = gc.call(UNIQUE[name].fn, s, args, kwargs)
        outs = gc.float_outputs(out)
        return [gc.to_np(o) for o in outs], [fw.unpack_dual(o).tangent for o in outs]


# Random ops and samples at kinks or by-design points (s.fd False) have no finite-difference check.
FD_CASES = [c for c in DIFF_CASES if c[0] not in NO_VALUE_PARITY and SAMPLES[c[0]][c[1]].fd]


@pytest.mark.parametrize("case", FD_CASES, ids=_id)
def test_jvp_vs_finite_differences(case: tuple) -> None:
    name, i = case
    s = SAMPLES[name][i]
    try:
        _, tangents = _engine_jvp(name, s)
    except RuntimeError as e:
        if not s.second_order and "Double backward is unsupported" in str(e):
            return  # the rule transposes the VJP, whose own VJP torch lacks here too: torch's error
        raise
    _, _, x0, t0 = _build(s, engine, lambda x, t: engine.tensor(x))

    def at(h: float) -> list:
        arrays = [np.asarray(x + h * t) for x, t in zip(x0, t0)]
        args, kwargs, _ = gc.build(gc._with_leaves(s, arrays), engine)
        with engine.no_grad():
            return [gc.to_np(o) for o in gc.float_outputs(gc.call(UNIQUE[name].fn, s, args, kwargs))]

    plus, minus = at(gc.EPS), at(-gc.EPS)
    for k, (t, p, m) in enumerate(zip(tangents, plus, minus)):
        num = (p - m) / (2 * gc.EPS)
        got = np.zeros_like(num) if t is None else gc.to_np(t)
        np.testing.assert_allclose(got, num, rtol=s.rtol * 100, atol=s.atol * 100,
                                   err_msg=f"{name}: JVP of output {k}")


# Not compared with torch's forward mode: random ops (other values), kinks and by-design points (the
# engine's derivative follows torch's backward formulas, whose conventions differ from torch's
# forward formulas there), and TORCH_FORWARD_WRONG. Finite differences check the last two kinds.
TORCH_CASES = [c for c in FD_CASES if c[0] not in NO_TORCH and not _torch_wrong(*c, SAMPLES[c[0]][c[1]])]


@pytest.mark.parametrize("case", TORCH_CASES, ids=_id)
def test_jvp_vs_torch(case: tuple) -> None:
    name, i = case
    s = SAMPLES[name][i]
    tfn = gc.torch_callable(name, s)
    e_vals, e_tans = _engine_jvp(name, s)
    try:
        with tfw.dual_level():
            args, kwargs, _, _ = _build(s, torch,
                                        lambda x, t: tfw.make_dual(torch.tensor(x), torch.tensor(t)))
            outs = gc.float_outputs(gc.call(tfn, s, args, kwargs))
            t_tans = [tfw.unpack_dual(o).tangent for o in outs]
    except (NotImplementedError, RuntimeError) as e:
        if "forward AD" in str(e) or "forward-mode" in str(e) or "forward mode" in str(e):
            # torch has no forward formula for this op: finite differences are the oracle
            assert case in FD_CASES
            test_jvp_vs_finite_differences(case)
            return
        raise
    assert len(e_tans) == len(t_tans)
    for k, (a, b) in enumerate(zip(e_tans, t_tans)):
        ea = np.zeros_like(e_vals[k]) if a is None else gc.to_np(a)
        tb = np.zeros_like(e_vals[k]) if b is None else gc.to_np(b)
        gc.assert_close(ea, tb, s, f"{name}: JVP of output {k}")


# ---------------------------------------------------------------- the transforms on forward mode
def _f(lib: Any) -> Any:
    m = np.random.default_rng(5).standard_normal((3, 3))
    return lambda x: lib.sin(lib.tensor(m) @ x) * x


def test_func_jvp_nested_and_with_aux_against_torch() -> None:
    import engine.func as ef
    x0, v0 = np.array([0.3, -0.5, 0.8]), np.array([1.0, -1.0, 0.5])
    e_out, e_t, e_aux = ef.jvp(lambda x: (_f(engine)(x), x.sum()), (engine.tensor(x0),), (engine.tensor(v0),),
                               has_aux=True)
    t_out, t_t, t_aux = torch.func.jvp(lambda x: (_f(torch)(x), x.sum()), (torch.tensor(x0),),
                                       (torch.tensor(v0),), has_aux=True)
    for a, b in ((e_out, t_out), (e_t, t_t), (e_aux, t_aux)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)
    assert fw.unpack_dual(e_t).tangent is None  # nothing leaks out of the transform's level

    # jvp of jvp: a second directional derivative, by two nested levels
    def d2(mod: Any, lib: Any) -> Any:
        inner = lambda x: mod.jvp(_f(lib), (x,), (lib.tensor(v0),))[1]  # noqa: E731
        return mod.jvp(inner, (lib.tensor(x0),), (lib.tensor(v0),))[1]
    np.testing.assert_allclose(d2(ef, engine).numpy(), d2(torch.func, torch).numpy(), rtol=1e-12)


@pytest.mark.parametrize("create_graph", [False, True])
def test_functional_jvp_and_hvp_against_torch(create_graph: bool) -> None:
    from torch.autograd import functional as tf

    from engine.autograd import functional as ef
    x0, v0 = np.array([0.3, -0.5, 0.8]), np.array([1.0, -1.0, 0.5])

    def scalar(lib: Any) -> Any:
        return lambda x: (_f(lib)(x) ** 2).sum()

    for name, fn in (("jvp", _f), ("hvp", scalar)):
        ex, tx = engine.tensor(x0, requires_grad=True), torch.tensor(x0, requires_grad=True)
        e = getattr(ef, name)(fn(engine), ex, engine.tensor(v0), create_graph=create_graph)
        t = getattr(tf, name)(fn(torch), tx, torch.tensor(v0), create_graph=create_graph)
        for a, b in zip(e, t):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12)
            assert a.requires_grad == b.requires_grad, name
        if create_graph:  # the product differentiates again, in the input
            (ge,) = engine.autograd_grad(e[1].sum(), ex)
            (gt,) = torch.autograd.grad(t[1].sum(), tx)
            np.testing.assert_allclose(ge.numpy(), gt.numpy(), rtol=1e-10)
