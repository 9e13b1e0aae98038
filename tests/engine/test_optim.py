"""engine.optim against torch.optim: the Optimizer base (param groups, state, state_dict, errors)
and each algorithm's updates, fed the same parameters and the same gradient sequence on both sides.

float32 results are compared with rtol 1e-6 and atol 1e-6: the engine reproduces torch's rounding
of add/addcmul/lerp (fused multiply-add) and addcdiv, but torch's float32 ``sqrt`` on CPU is not
correctly rounded (MKL's), so a last bit of Adam's or RMSprop's denominator may differ, and
centered RMSprop's ``sqrt(E[g^2] - E[g]^2)`` amplifies that. float64: rtol 1e-12.
"""

from __future__ import annotations

import importlib
import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch

import engine
import engine.optim
from tests.engine.parity import TDT, assert_same_error

SHAPES = [(3, 4), (5,), (2, 2, 3)]
TOL = {np.float32: {"rtol": 1e-6, "atol": 1e-6}, np.float64: {"rtol": 1e-12, "atol": 1e-14}}


def _data(dtype: Any, steps: int, seed: int = 0) -> tuple[list[np.ndarray], list[list[np.ndarray | None]]]:
    """Initial values of three parameters and a gradient per step (None now and then: skipped)."""
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[None if (k + j) % 4 == 3 else rng.standard_normal(s).astype(dtype)
              for j, s in enumerate(SHAPES)] for k in range(steps)]
    return init, grads


def _params(m: Any, init: list[np.ndarray]) -> list[Any]:
    return [m.tensor(a.copy(), requires_grad=True) for a in init]


def _groups(params: list[Any], two_groups: bool) -> list[Any]:
    if two_groups:
        return [{"params": params[:2]}, {"params": params[2:], "lr": 0.03}]
    return params


def _feed(m: Any, params: list[Any], grads: list[np.ndarray | None]) -> None:
    for p, g in zip(params, grads):
        p.grad = None if g is None else m.tensor(g.copy())


def _run(m: Any, name: str, kw: dict, init: list[np.ndarray], grads: list[list], two_groups: bool = True,
         **torch_kw: Any) -> tuple[list[Any], Any]:
    params = _params(m, init)
    extra = torch_kw if m is torch else {}
    opt = getattr(m.optim, name)(_groups(params, two_groups), **kw, **extra)
    for g in grads:
        _feed(m, params, g)
        opt.step()
    return params, opt


def _np(x: Any) -> np.ndarray:
    return x.detach().numpy() if isinstance(x, engine.Tensor) else x.detach().numpy()


def assert_state_dict_same(e: dict, t: dict, tol: dict) -> None:
    """The same structure; tensors of the same shape and dtype and (within ``tol``) values."""
    assert list(e) == list(t) == ["state", "param_groups"]
    assert list(e["state"]) == list(t["state"])
    for k in t["state"]:
        es, ts = e["state"][k], t["state"][k]
        assert list(es) == list(ts), (k, list(es), list(ts))
        for key in ts:
            ev, tv = es[key], ts[key]
            if isinstance(tv, torch.Tensor):
                assert isinstance(ev, engine.Tensor), (key, ev)
                assert tuple(ev.shape) == tuple(tv.shape) and TDT[ev.dtype] == tv.dtype, (key, ev, tv)
                np.testing.assert_allclose(_np(ev), tv.numpy(), **tol, err_msg=key)
            else:
                assert ev == tv, (key, ev, tv)
    assert len(e["param_groups"]) == len(t["param_groups"])
    for eg, tg in zip(e["param_groups"], t["param_groups"]):
        assert list(eg) == list(tg)
        assert eg == tg


# ----------------------------------------------------------------------------- the base class


def _sgd(m: Any, *params: Any, **kw: Any) -> Any:
    return m.optim.SGD(list(params), **kw)


def test_param_groups_defaults_state_and_repr() -> None:
    out = {}
    for m in (engine, torch):
        a = m.zeros(2, requires_grad=True)
        b = m.zeros(3, requires_grad=True)
        opt = m.optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5, "momentum": 0.9}], lr=0.1)
        assert isinstance(opt.state, type(torch.optim.SGD([torch.zeros(1, requires_grad=True)]).state))
        assert opt.param_groups[0]["params"][0] is a and opt.param_groups[1]["params"] == [b]
        out[m] = opt
    e, t = out[engine], out[torch]
    assert e.defaults == t.defaults
    assert [{k: v for k, v in g.items() if k != "params"} for g in e.param_groups] == \
        [{k: v for k, v in g.items() if k != "params"} for g in t.param_groups]
    assert repr(e) == repr(t)
    assert isinstance(e, engine.optim.Optimizer)


def test_state_keyed_by_parameter() -> None:
    p = engine.ones(2, requires_grad=True)
    opt = engine.optim.SGD([p], lr=0.1, momentum=0.9)
    assert len(opt.state) == 0 and opt.state[p] == {}  # a defaultdict, as torch's
    p.grad = engine.ones(2)
    opt.step()
    assert list(opt.state) == [p] and set(opt.state[p]) == {"momentum_buffer"}


BASE_ERRORS = {
    "empty list": lambda m: m.optim.SGD([], lr=0.1),
    "tensor as params": lambda m: m.optim.SGD(m.zeros(2, requires_grad=True), lr=0.1),
    "set in a group": lambda m: m.optim.SGD([{"params": {m.zeros(2, requires_grad=True)}}], lr=0.1),
    "non-leaf": lambda m: m.optim.SGD([m.zeros(2, requires_grad=True) * 2], lr=0.1),
    "not a tensor": lambda m: m.optim.SGD([m.zeros(2, requires_grad=True), 1.5], lr=0.1),
    "param in two groups": lambda m: (lambda p: m.optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1))(
        m.zeros(2, requires_grad=True)),
    "add_param_group overlap": lambda m: (lambda p: _sgd(m, p, lr=0.1).add_param_group({"params": p}))(
        m.zeros(2, requires_grad=True)),
    "add_param_group not a dict": lambda m: _sgd(m, m.zeros(2, requires_grad=True)).add_param_group([1]),
    "names missing": lambda m: m.optim.SGD([("a", m.zeros(2, requires_grad=True)),
                                            m.zeros(2, requires_grad=True)]),
    "groups with and without names": lambda m: m.optim.SGD(
        [{"params": [("a", m.zeros(2, requires_grad=True))]}, {"params": [m.zeros(2, requires_grad=True)]}]),
}


@pytest.mark.parametrize("case", list(BASE_ERRORS))
def test_base_errors(case: str) -> None:
    fn = BASE_ERRORS[case]
    # the type name in torch's message names torch's tensor type; the engine's says the same
    assert_same_error(fn)


def test_error_messages_exact() -> None:
    # the phrases users search for, spelled out
    for fn, msg in [(BASE_ERRORS["empty list"], "optimizer got an empty parameter list"),
                    (BASE_ERRORS["non-leaf"], "can't optimize a non-leaf Tensor"),
                    (BASE_ERRORS["param in two groups"],
                     "some parameters appear in more than one parameter group")]:
        with pytest.raises(ValueError, match="^" + msg + "$"):
            fn(engine)
    with pytest.raises(TypeError, match="ordering of tensors in sets"):
        BASE_ERRORS["set in a group"](engine)
    # a set given directly is listed first (torch checks the groups' 'params' only)
    assert len(engine.optim.SGD({engine.zeros(2, requires_grad=True)}).param_groups[0]["params"]) == 1


def test_duplicate_parameter_warns_as_torch() -> None:
    msgs = {}
    for m in (engine, torch):
        p = m.zeros(2, requires_grad=True)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            m.optim.SGD([p, p], lr=0.1)
        msgs[m] = [str(x.message) for x in w if "duplicate" in str(x.message)]
    assert msgs[engine] == msgs[torch] and len(msgs[torch]) == 1


def test_named_parameters() -> None:
    sds = {}
    for m in (engine, torch):
        opt = m.optim.Adam([("w", m.ones(2, requires_grad=True)), ("b", m.ones(1, requires_grad=True))])
        assert opt.param_groups[0]["param_names"] == ["w", "b"]
        sds[m] = opt.state_dict()
    assert sds[engine]["param_groups"] == sds[torch]["param_groups"]


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad(set_to_none: bool) -> None:
    res = {}
    for m in (engine, torch):
        p = m.ones(3, requires_grad=True)
        q = m.ones(2, requires_grad=True)
        (p * 2).sum().backward()
        g = p.grad
        opt = m.optim.SGD([p, q], lr=0.1)
        opt.zero_grad(set_to_none=set_to_none)
        res[m] = (p.grad is None, q.grad is None, None if p.grad is None else p.grad.tolist(),
                  p.grad is g)
    assert res[engine] == res[torch]


def test_step_runs_without_recording_and_bumps_versions() -> None:
    res = {}
    for m in (engine, torch):
        p = m.tensor([1.0, -2.0], requires_grad=True)
        opt = m.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.1)
        versions = []
        for _ in range(3):
            p.grad = m.tensor([0.5, 0.25])
            opt.step()
            versions.append(p._version)
        assert p.grad_fn is None and p.is_leaf and p.requires_grad and m.is_grad_enabled()
        res[m] = versions, opt.state[p]["momentum_buffer"]._version
    assert res[engine] == res[torch]


def test_closure_reevaluated_under_grad_mode() -> None:
    res = {}
    for m in (engine, torch):
        x = m.tensor([1.0, 2.0, 3.0])
        w = m.tensor([0.5, -0.5, 0.25], requires_grad=True)
        opt = m.optim.SGD([w], lr=0.05, momentum=0.5)
        calls = []

        def closure(m=m, x=x, w=w, opt=opt, calls=calls):
            opt.zero_grad()
            loss = ((w * x).sum() - 1.0) ** 2
            loss.backward()
            calls.append(m.is_grad_enabled())
            return loss

        losses = []
        with m.no_grad():  # the closure still records
            for _ in range(4):
                losses.append(opt.step(closure).item())
        res[m] = losses, calls, w.detach().numpy().copy()
    assert res[engine][1] == res[torch][1] == [True] * 4
    np.testing.assert_allclose(res[engine][0], res[torch][0], rtol=1e-6)
    np.testing.assert_allclose(res[engine][2], res[torch][2], rtol=1e-6)


def test_step_returns_none_without_closure() -> None:
    p = engine.ones(1, requires_grad=True)
    assert engine.optim.SGD([p]).step() is None
    with pytest.raises(NotImplementedError):
        engine.optim.Optimizer([p], {}).step()


LOAD_ERRORS = {
    "group count": lambda m: m.optim.SGD([m.zeros(2, requires_grad=True)], lr=0.1).load_state_dict(
        m.optim.SGD([{"params": [m.zeros(2, requires_grad=True)]},
                     {"params": [m.zeros(2, requires_grad=True)]}], lr=0.1).state_dict()),
    "group size": lambda m: m.optim.SGD([m.zeros(2, requires_grad=True)], lr=0.1).load_state_dict(
        m.optim.SGD([m.zeros(2, requires_grad=True), m.zeros(1, requires_grad=True)], lr=0.1).state_dict()),
}


@pytest.mark.parametrize("case", list(LOAD_ERRORS))
def test_load_state_dict_errors(case: str) -> None:
    exc = assert_same_error(LOAD_ERRORS[case])
    assert isinstance(exc, ValueError)


def test_load_state_dict_casts_to_param_dtype() -> None:
    res = {}
    for m in (engine, torch):
        p64 = m.ones(3, dtype=m.float64, requires_grad=True)
        src = m.optim.Adam([p64], lr=0.1)
        p64.grad = m.tensor([0.1, 0.2, 0.3], dtype=m.float64)
        src.step()
        p32 = m.ones(3, requires_grad=True)
        dst = m.optim.Adam([p32], lr=0.5)
        dst.load_state_dict(src.state_dict())
        st = dst.state[p32]
        res[m] = ({k: (v.dtype, v.shape) for k, v in st.items()}, dst.param_groups[0]["lr"],
                  dst.param_groups[0]["params"][0] is p32)
    e, t = res[engine], res[torch]
    assert {k: (TDT[d], tuple(s)) for k, (d, s) in e[0].items()} == \
        {k: (d, tuple(s)) for k, (d, s) in t[0].items()}
    assert e[1:] == t[1:] == (0.1, True)


def test_state_dict_format() -> None:
    init, grads = _data(np.float32, 2)
    (_, e), (_, t) = (_run(m, "Adam", {"lr": 0.01, "amsgrad": True}, init, grads) for m in (engine, torch))
    esd, tsd = e.state_dict(), t.state_dict()
    assert esd["param_groups"][0]["params"] == [0, 1] and esd["param_groups"][1]["params"] == [2]
    step = esd["state"][0]["step"]
    assert isinstance(step, engine.Tensor) and step.dim() == 0 and step.dtype == engine.float32
    assert_state_dict_same(esd, tsd, TOL[np.float32])
    # the state's own dicts and tensors, not copies (as torch)
    assert esd["state"][0] is e.state[e.param_groups[0]["params"][0]]


# ----------------------------------------------------------------------------- the algorithms

GRID: dict[str, list[dict]] = {
    "SGD": [{"lr": 0.1}, {"lr": 0.1, "momentum": 0.9}, {"lr": 0.1, "momentum": 0.9, "dampening": 0.3},
            {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
            {"lr": 0.1, "weight_decay": 0.01, "maximize": True}],
    "Adam": [{"lr": 0.01}, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1},
             {"lr": 0.01, "amsgrad": True},
             {"lr": 0.02, "maximize": True, "amsgrad": True, "weight_decay": 0.05},
             {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}],
    "AdamW": [{"lr": 0.01}, {"lr": 0.01, "weight_decay": 0.3, "amsgrad": True},
              {"lr": 0.01, "maximize": True}],
    "RMSprop": [{"lr": 0.01}, {"lr": 0.01, "alpha": 0.9, "eps": 1e-6, "weight_decay": 0.1},
                {"lr": 0.01, "momentum": 0.9}, {"lr": 0.01, "centered": True},
                {"lr": 0.01, "centered": True, "momentum": 0.5, "maximize": True}],
    "Adagrad": [{"lr": 0.1}, {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.1},
                {"lr": 0.1, "initial_accumulator_value": 0.5, "eps": 1e-6, "maximize": True}],
    "Adamax": [{"lr": 0.01}, {"lr": 0.01, "betas": (0.8, 0.9), "weight_decay": 0.1, "maximize": True}],
    "NAdam": [{"lr": 0.01}, {"lr": 0.01, "weight_decay": 0.1, "momentum_decay": 0.01},
              {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}],
    "RAdam": [{"lr": 0.01}, {"lr": 0.01, "betas": (0.8, 0.9), "weight_decay": 0.1},
              {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}],
    "Adadelta": [{}, {"lr": 0.5, "rho": 0.8, "eps": 1e-5, "weight_decay": 0.1, "maximize": True}],
    "Rprop": [{"lr": 0.01}, {"lr": 0.02, "etas": (0.3, 1.5), "step_sizes": (1e-3, 0.05), "maximize": True}],
    "ASGD": [{"lr": 0.01}, {"lr": 0.05, "lambd": 0.01, "alpha": 0.5, "t0": 3, "weight_decay": 0.1}],
}


def _grid() -> list[tuple[str, dict]]:
    return [(name, kw) for name, kws in GRID.items() for kw in kws]


def _grid_ids() -> list[str]:
    return [f"{name}-{i}" for name, kws in GRID.items() for i in range(len(kws))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("two_groups", [True, False], ids=["2groups", "1group"])
@pytest.mark.parametrize("name,kw", _grid(), ids=_grid_ids())
def test_updates_match_torch(name: str, kw: dict, two_groups: bool, dtype: Any) -> None:
    init, grads = _data(dtype, 10)
    pe, oe = _run(engine, name, kw, init, grads, two_groups)
    pt, ot = _run(torch, name, kw, init, grads, two_groups, foreach=False)
    for a, b in zip(pe, pt):
        assert a.dtype == engine.float32 if dtype is np.float32 else engine.float64
        np.testing.assert_allclose(_np(a), b.detach().numpy(), **TOL[dtype])
    tsd = ot.state_dict()
    for g in tsd["param_groups"]:
        g["foreach"] = None  # the torch side ran with foreach=False spelled out
    assert_state_dict_same(oe.state_dict(), tsd, TOL[dtype])


@pytest.mark.parametrize("name,kw", _grid(), ids=_grid_ids())
def test_version_counters_match_torch(name: str, kw: dict) -> None:
    """The in-place updates bump the parameters' and the state tensors' versions as torch's do."""
    init, grads = _data(np.float32, 4)
    versions = {}
    for m in (engine, torch):
        params, opt = _run(m, name, kw, init, grads, **({"foreach": False} if m is torch else {}))
        versions[m] = ([p._version for p in params],
                       [{k: v._version for k, v in opt.state[p].items() if k != "step"} for p in params])
    assert versions[engine] == versions[torch]


ARG_ERRORS: dict[str, list[dict]] = {
    "SGD": [{"lr": -0.1}, {"momentum": -0.5}, {"weight_decay": -1e-3}, {"nesterov": True},
            {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, {"lr": -1}],
    "Adam": [{"lr": -1e-3}, {"eps": -1.0}, {"betas": (1.0, 0.999)}, {"betas": (0.9, -0.1)},
             {"weight_decay": -0.1}, {"betas": (0.9, 1)}],
    "AdamW": [{"lr": -1.0}, {"betas": (-0.5, 0.9)}, {"weight_decay": -1.0}],
    "RMSprop": [{"lr": -0.01}, {"eps": -1e-8}, {"momentum": -0.9}, {"weight_decay": -1}, {"alpha": -0.5}],
    "Adagrad": [{"lr": -0.1}, {"lr_decay": -1.0}, {"weight_decay": -0.1}, {"initial_accumulator_value": -1.0},
                {"eps": -1e-10}],
    "Adamax": [{"lr": -1.0}, {"eps": -1.0}, {"betas": (0.9, 1.5)}, {"weight_decay": -2}],
    "NAdam": [{"lr": -1.0}, {"momentum_decay": -0.1}, {"betas": (1.2, 0.9)}],
    "RAdam": [{"lr": -1.0}, {"eps": -1.0}, {"betas": (0.9, 1.0)}],
    "Adadelta": [{"lr": -1.0}, {"rho": 1.5}, {"eps": -1.0}, {"weight_decay": -1.0}],
    "Rprop": [{"lr": -1.0}, {"etas": (1.5, 2.0)}, {"etas": (0.5, 0.9)}],
    "ASGD": [{"lr": -1.0}, {"weight_decay": -0.5}],
}


@pytest.mark.parametrize("name,kw", [(n, kw) for n, kws in ARG_ERRORS.items() for kw in kws],
                         ids=[f"{n}-{'-'.join(kw)}" for n, kws in ARG_ERRORS.items() for kw in kws])
def test_argument_errors(name: str, kw: dict) -> None:
    exc = assert_same_error(lambda m: getattr(m.optim, name)([m.zeros(2, requires_grad=True)], **kw))
    assert str(exc) == str(torch_error(name, kw))


def torch_error(name: str, kw: dict) -> BaseException:
    try:
        getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **kw)
    except Exception as exc:  # noqa: BLE001
        return exc
    raise AssertionError("torch did not raise")


@pytest.mark.parametrize("name", list(GRID))
def test_defaults_match_torch(name: str) -> None:
    e = getattr(engine.optim, name)([engine.zeros(1, requires_grad=True)])
    t = getattr(torch.optim, name)([torch.zeros(1, requires_grad=True)])
    assert e.defaults == t.defaults
    assert repr(e) == repr(t)


@pytest.mark.parametrize("name,kw", [(n, kws[-1]) for n, kws in GRID.items()])
def test_state_dict_round_trip(name: str, kw: dict) -> None:
    """Save after 5 steps, load into a new optimizer over copies of the parameters, continue 5:
    the same as 10 uninterrupted steps, and as torch's round trip."""
    init, grads = _data(np.float32, 10, seed=1)
    whole, _ = _run(engine, name, kw, init, grads)
    out = {}
    for m in (engine, torch):
        params, opt = _run(m, name, kw, init, grads[:5])
        sd = opt.state_dict()
        params2 = [m.tensor(p.detach().numpy().copy(), requires_grad=True) for p in params]
        # constructed with other hyper-parameters: load_state_dict restores the saved ones
        opt2 = getattr(m.optim, name)(_groups(params2, True), lr=0.5)
        opt2.load_state_dict(sd)
        for g in grads[5:]:
            _feed(m, params2, g)
            opt2.step()
        out[m] = params2
    for a, w, b in zip(out[engine], whole, out[torch]):
        np.testing.assert_array_equal(_np(a), _np(w))
        np.testing.assert_allclose(_np(a), b.detach().numpy(), **TOL[np.float32])


# ----------------------------------------------------------------------------- a training loop


@pytest.mark.parametrize("name,kw", [("SGD", {"lr": 0.05, "momentum": 0.9}), ("Adam", {"lr": 0.02}),
                                     ("AdamW", {"lr": 0.02, "amsgrad": True}),
                                     ("RMSprop", {"lr": 0.005, "centered": True}), ("Adagrad", {"lr": 0.1})])
def test_training_loop_matches_torch(name: str, kw: dict) -> None:
    """A two-layer regression net written with engine ops: forward, backward, step, as torch."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 4)).astype(np.float32)
    y = (np.sin(x[:, :1]) + 0.5 * x[:, 1:2] * x[:, 2:3]).astype(np.float32)
    w1 = (rng.standard_normal((4, 8)) / 2).astype(np.float32)
    b1 = np.zeros(8, np.float32)
    w2 = (rng.standard_normal((8, 1)) / math.sqrt(8)).astype(np.float32)
    b2 = np.zeros(1, np.float32)
    out = {}
    for m in (engine, torch):
        params = _params(m, [w1, b1, w2, b2])
        opt = getattr(m.optim, name)([{"params": params[:2]}, {"params": params[2:]}], **kw)
        X, Y = m.tensor(x), m.tensor(y)
        losses = []
        for _ in range(25):
            opt.zero_grad()
            h = m.tanh(X @ params[0] + params[1])
            loss = ((h @ params[2] + params[3] - Y) ** 2).mean()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        out[m] = losses, [p.detach().numpy().copy() for p in params]
    (le, pe), (lt, pt) = out[engine], out[torch]
    assert lt[-1] < lt[0]
    np.testing.assert_allclose(le, lt, rtol=1e-5)
    for a, b in zip(pe, pt):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- tensor lr, hooks, capturable


@pytest.mark.parametrize("name,kw", [("SGD", {"momentum": 0.9}), ("Adam", {}), ("AdamW", {"amsgrad": True}),
                                     ("RMSprop", {"momentum": 0.5}), ("Adagrad", {"lr_decay": 0.1}),
                                     ("Adamax", {}), ("NAdam", {}), ("RAdam", {}), ("Adadelta", {}),
                                     ("Rprop", {}), ("ASGD", {"t0": 2})])
def test_tensor_lr(name: str, kw: dict) -> None:
    """A 0-d tensor lr (stepped in float32 where torch computes with it as a tensor)."""
    init, grads = _data(np.float32, 8, seed=2)
    out = {}
    for m in (engine, torch):
        params = _params(m, init)
        opt = getattr(m.optim, name)(params, lr=m.tensor(0.01), **kw)
        for g in grads:
            _feed(m, params, g)
            opt.step()
        out[m] = params
    for a, b in zip(out[engine], out[torch]):
        np.testing.assert_allclose(_np(a), b.detach().numpy(), **TOL[np.float32])
    assert_same_error(lambda m: getattr(m.optim, name)([m.zeros(1, requires_grad=True)], lr=m.ones(2)))


@pytest.mark.parametrize("name", ["Adam", "AdamW", "RMSprop", "Adamax", "NAdam", "RAdam", "Adadelta", "Rprop",
                                  "ASGD"])
def test_capturable_needs_an_accelerator(name: str) -> None:
    def fn(m):
        p = m.zeros(2, requires_grad=True)
        opt = getattr(m.optim, name)([p], capturable=True)
        opt.step()  # no gradient yet: nothing to update, no complaint
        p.grad = m.ones(2)
        opt.step()
    assert_same_error(fn)


def test_step_hooks() -> None:
    calls = {}
    for m in (engine, torch):
        log = []
        p = m.ones(2, requires_grad=True)
        opt = m.optim.Adam([p], lr=0.1)
        h1 = opt.register_step_pre_hook(lambda o, a, k, log=log: log.append(("pre", len(a), sorted(k))))
        opt.register_step_post_hook(lambda o, a, k, log=log: log.append(("post", a[0] is o, sorted(k))))
        module = importlib.import_module(f"{m.__name__}.optim.optimizer")
        g = module.register_optimizer_step_pre_hook(lambda o, a, k, log=log: log.append(("global",)))
        p.grad = m.ones(2)
        opt.step()
        h1.remove()
        g.remove()
        opt.step(closure=None)
        # a pre-hook may replace the arguments
        opt.register_step_pre_hook(lambda o, a, k: ((o,), {"closure": lambda: 7.0}))
        log.append(opt.step())
        calls[m] = log
    assert calls[engine] == calls[torch]


def test_state_dict_hooks() -> None:
    out = {}
    for m in (engine, torch):
        log = []
        p = m.ones(2, requires_grad=True)
        opt = m.optim.SGD([p], lr=0.1, momentum=0.9)
        p.grad = m.ones(2)
        opt.step()
        opt.register_state_dict_pre_hook(lambda o, log=log: log.append("sd pre"))
        opt.register_state_dict_post_hook(lambda o, sd, log=log: log.append(("sd post", sorted(sd))))
        opt.register_state_dict_post_hook(lambda o, sd: {**sd, "extra": 1}, prepend=False)
        sd = opt.state_dict()
        log.append(sd["extra"])

        def pre(o, sd, log=log):
            log.append(("load pre", sorted(sd)))
            sd = dict(sd)
            sd.pop("extra")
            sd["param_groups"] = [{**g, "lr": 0.5} for g in sd["param_groups"]]
            return sd

        opt.register_load_state_dict_pre_hook(pre)
        opt.register_load_state_dict_post_hook(
            lambda o, log=log: log.append(("load post", o.param_groups[0]["lr"])))
        opt.load_state_dict(sd)
        out[m] = log
    assert out[engine] == out[torch]


def test_deepcopy_and_getstate() -> None:
    import copy
    init, grads = _data(np.float32, 3)
    params, opt = _run(engine, "Adam", {"lr": 0.01}, init, grads)
    dup = copy.deepcopy(opt)
    assert sorted(opt.__getstate__()) == ["defaults", "param_groups", "state"]
    assert isinstance(dup, engine.optim.Adam)
    assert dup.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    for k in opt.state_dict()["state"]:
        np.testing.assert_array_equal(_np(dup.state_dict()["state"][k]["exp_avg"]),
                                      _np(opt.state_dict()["state"][k]["exp_avg"]))


def test_exported_without_import_cycles() -> None:
    """``engine.optim`` is an attribute of ``engine`` and importable on its own; no module of the
    engine's core imports it (it builds on the core, never the reverse)."""
    import ast
    import pathlib
    import sys

    assert engine.optim is sys.modules["engine.optim"] and "optim" in engine.__all__
    assert engine.optim.lr_scheduler is sys.modules["engine.optim.lr_scheduler"]
    root = pathlib.Path(engine.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if rel.parts[0] == "optim" or rel == pathlib.Path("__init__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and "optim" in (node.module or "").split("."):
                offenders.append(str(rel))
            elif isinstance(node, ast.ImportFrom) and any(a.name == "optim" for a in node.names):
                offenders.append(str(rel))
            elif isinstance(node, ast.Import) and any("optim" in a.name.split(".") for a in node.names):
                offenders.append(str(rel))
    assert offenders == []


def test_subclass_step_hooks_run_once() -> None:
    """A subclass whose step calls super().step() runs the step hooks once. (torch hooks the step
    of each class it has instantiated, so there the count depends on whether a plain SGD was made
    earlier in the process: once in a fresh process, twice after; the engine always runs them once.)"""
    class Clipped(engine.optim.SGD):
        def step(self, closure=None):
            for g in self.param_groups:
                for p in g["params"]:
                    p.grad.clamp_(-1.0, 1.0)
            return super().step(closure)

    p = engine.tensor([1.0, 2.0], requires_grad=True)
    opt = Clipped([p], lr=0.5)
    log = []
    opt.register_step_pre_hook(lambda o, a, k: log.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: log.append("post"))
    p.grad = engine.tensor([3.0, -0.5])
    opt.step()
    assert log == ["pre", "post"] and p.tolist() == [0.5, 2.25]


FLAG_CASES = [(name, flag) for name in GRID for flag in ("foreach", "fused")
              if flag in getattr(torch.optim, name)([torch.zeros(1, requires_grad=True)]).defaults]


@pytest.mark.parametrize("name,flag", FLAG_CASES, ids=[f"{n}-{f}" for n, f in FLAG_CASES])
def test_foreach_and_fused_flags(name: str, flag: str) -> None:
    """foreach=True / fused=True are kept in the groups; the engine runs its one implementation,
    within float32 tolerance of torch's multi-tensor and fused kernels."""
    kw = GRID[name][0]
    init, grads = _data(np.float32, 10)
    pe, oe = _run(engine, name, {**kw, flag: True}, init, grads)
    pt, ot = _run(torch, name, {**kw, flag: True}, init, grads)
    assert oe.param_groups[0][flag] is True and oe.defaults == ot.defaults
    for a, b in zip(pe, pt):
        np.testing.assert_allclose(_np(a), b.detach().numpy(), **TOL[np.float32])


FLAG_ERRORS = {
    "fused and foreach": lambda m: m.optim.Adam([m.ones(1, requires_grad=True)], fused=True, foreach=True),
    "SGD fused and foreach": lambda m: m.optim.SGD([m.ones(1, requires_grad=True)], fused=True, foreach=True),
    "Adagrad fused differentiable": lambda m: m.optim.Adagrad([m.ones(1, requires_grad=True)], fused=True,
                                                              differentiable=True),
    "tensor lr with foreach": lambda m: m.optim.AdamW([m.ones(1, requires_grad=True)], lr=m.tensor(0.01),
                                                      foreach=True),
    "betas half tensors": lambda m: m.optim.Adam([m.ones(1, requires_grad=True)],
                                                 betas=(m.tensor(0.9), 0.99)),
}


@pytest.mark.parametrize("case", list(FLAG_ERRORS))
def test_flag_errors(case: str) -> None:
    assert_same_error(FLAG_ERRORS[case])


def test_adagrad_accumulator_starts_from_the_constructor_value() -> None:
    """Every accumulator starts at the constructor's ``initial_accumulator_value``, also for a group
    that overrides it or is added later (as torch)."""
    res = {}
    for m in (engine, torch):
        a, b, c = (m.ones(2, requires_grad=True) for _ in range(3))
        opt = m.optim.Adagrad([{"params": [a]}, {"params": [b], "initial_accumulator_value": 0.3}], lr=0.1,
                              initial_accumulator_value=0.5)
        opt.add_param_group({"params": [c], "lr": 0.2, "initial_accumulator_value": 0.7})
        for p in (a, b, c):
            p.grad = m.ones(2)
        opt.step()
        res[m] = [opt.state[p]["sum"].tolist() for p in (a, b, c)], [p.tolist() for p in (a, b, c)]
    assert res[engine] == res[torch]


def test_repr_and_state_dict_details() -> None:
    res = {}
    for m in (engine, torch):
        p, q = m.ones(2, requires_grad=True), m.ones(2, requires_grad=True)
        opt = m.optim.SGD([p, q], lr=m.tensor(0.01), momentum=0.9)
        opt.state[q]  # an entry made by looking, as in torch's defaultdict
        p.grad = m.ones(2)
        opt.step()
        res[m] = repr(opt), list(opt.state_dict()["state"]), p.tolist()
    assert res[engine] == res[torch]
