"""engine.optim.lr_scheduler against torch.optim.lr_scheduler: the lr (and momentum) sequences of
every scheduler equal torch's exactly, in chainable and closed form, through state_dict round
trips; ReduceLROnPlateau's modes; torch's errors and warnings."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch

import engine
import engine.optim
from tests.engine.parity import assert_same_error


def _opt(m: Any, name: str = "SGD", **kw: Any) -> Any:
    a = m.zeros(2, requires_grad=True)
    b = m.zeros(3, requires_grad=True)
    kw = {"momentum": 0.9, **kw} if name == "SGD" else kw
    return getattr(m.optim, name)([{"params": [a]}, {"params": [b], "lr": 0.05}], lr=0.1, **kw)


def _lambda(epoch: int) -> float:
    return 0.95 ** epoch


# id -> (optimizer name, fn(S, opt) making the scheduler)
SCHEDULERS: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "LambdaLR": ("SGD", lambda S, o: S.LambdaLR(o, _lambda)),
    "LambdaLR per group": ("SGD", lambda S, o: S.LambdaLR(o, [_lambda, lambda e: 1.0 / (e + 1)])),
    "MultiplicativeLR": ("SGD", lambda S, o: S.MultiplicativeLR(o, lambda e: 0.9)),
    "StepLR": ("SGD", lambda S, o: S.StepLR(o, step_size=4, gamma=0.5)),
    "StepLR default gamma": ("SGD", lambda S, o: S.StepLR(o, step_size=7)),
    "MultiStepLR": ("SGD", lambda S, o: S.MultiStepLR(o, milestones=[3, 8, 8, 20], gamma=0.3)),
    "ConstantLR": ("SGD", lambda S, o: S.ConstantLR(o, factor=0.25, total_iters=6)),
    "ConstantLR defaults": ("SGD", lambda S, o: S.ConstantLR(o)),
    "LinearLR": ("SGD", lambda S, o: S.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=12)),
    "LinearLR defaults": ("SGD", lambda S, o: S.LinearLR(o)),
    "ExponentialLR": ("SGD", lambda S, o: S.ExponentialLR(o, gamma=0.87)),
    "CosineAnnealingLR": ("SGD", lambda S, o: S.CosineAnnealingLR(o, T_max=10)),
    "CosineAnnealingLR eta_min": ("SGD", lambda S, o: S.CosineAnnealingLR(o, T_max=7, eta_min=0.001)),
    "PolynomialLR": ("SGD", lambda S, o: S.PolynomialLR(o, total_iters=20, power=2.0)),
    "CosineAnnealingWarmRestarts": ("SGD", lambda S, o: S.CosineAnnealingWarmRestarts(o, T_0=5)),
    "CosineAnnealingWarmRestarts T_mult": (
        "SGD", lambda S, o: S.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.002)),
    "OneCycleLR": ("SGD", lambda S, o: S.OneCycleLR(o, max_lr=1.0, total_steps=31)),
    "OneCycleLR linear three-phase": ("Adam", lambda S, o: S.OneCycleLR(
        o, max_lr=[0.5, 0.2], epochs=4, steps_per_epoch=8, anneal_strategy="linear", three_phase=True)),
    "CyclicLR": ("SGD", lambda S, o: S.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=4)),
    "CyclicLR triangular2": ("SGD", lambda S, o: S.CyclicLR(
        o, base_lr=[0.01, 0.02], max_lr=0.1, step_size_up=3, step_size_down=5, mode="triangular2")),
    "CyclicLR exp_range Adam": ("Adam", lambda S, o: S.CyclicLR(
        o, base_lr=0.001, max_lr=0.01, step_size_up=5, mode="exp_range", gamma=0.97)),
    "SequentialLR": ("SGD", lambda S, o: S.SequentialLR(
        o, [S.LinearLR(o, start_factor=0.2, total_iters=5), S.CosineAnnealingLR(o, T_max=12)],
        milestones=[5])),
    "ChainedScheduler": ("SGD", lambda S, o: S.ChainedScheduler(
        [S.ConstantLR(o, factor=0.5, total_iters=4), S.ExponentialLR(o, gamma=0.9)])),
}

STEPS = 30


def _snapshot(opt: Any, sched: Any) -> tuple:
    """The scheduler's last lrs and every group's lr and momentum (or betas)."""
    groups = [(g["lr"], g.get("momentum"), g.get("betas")) for g in opt.param_groups]
    return tuple(sched.get_last_lr()), tuple(groups)


def _sequence(m: Any, case: str, steps: int = STEPS) -> list[tuple]:
    name, make = SCHEDULERS[case]
    opt = _opt(m, name)
    sched = make(m.optim.lr_scheduler, opt)
    seq = [_snapshot(opt, sched)]
    for _ in range(steps):
        opt.step()
        sched.step()
        seq.append(_snapshot(opt, sched))
    return seq


@pytest.mark.parametrize("case", list(SCHEDULERS))
def test_lr_sequence_equals_torch(case: str) -> None:
    e, t = _sequence(engine, case), _sequence(torch, case)
    assert e == t  # exactly: the same float formulas in the same order


@pytest.mark.parametrize("case", ["StepLR", "MultiStepLR", "ConstantLR", "LinearLR", "ExponentialLR",
                                  "CosineAnnealingLR", "PolynomialLR", "CosineAnnealingWarmRestarts T_mult"])
def test_closed_form_with_epoch_equals_torch(case: str) -> None:
    """``step(epoch)`` (deprecated) uses the closed form, with torch's warning."""
    out = {}
    for m in (engine, torch):
        name, make = SCHEDULERS[case]
        opt = _opt(m, name)
        sched = make(m.optim.lr_scheduler, opt)
        seq = []
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            for epoch in [3, 1, 7, 7, 15, 2, 25]:
                opt.step()
                sched.step(epoch)
                seq.append(tuple(sched.get_last_lr()))
        out[m] = seq, sorted({str(x.message) for x in w})
    assert out[engine] == out[torch]


def test_initial_lr_and_base_lrs() -> None:
    for m in (engine, torch):
        opt = _opt(m)
        sched = m.optim.lr_scheduler.StepLR(opt, step_size=2)
        assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.05] == sched.base_lrs
        assert sched.last_epoch == 0 and sched.get_last_lr() == [0.1, 0.05]
    # a second scheduler keeps the first one's initial_lr
    opt = _opt(engine)
    opt.param_groups[0]["lr"] = 0.7
    engine.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
    assert opt.param_groups[0]["initial_lr"] == 0.7


@pytest.mark.parametrize("case", ["LambdaLR", "StepLR", "MultiStepLR", "LinearLR", "CosineAnnealingLR",
                                  "CosineAnnealingWarmRestarts T_mult", "OneCycleLR", "CyclicLR triangular2",
                                  "SequentialLR", "ChainedScheduler"])
def test_state_dict_round_trip(case: str) -> None:
    """Save optimizer and scheduler after 10 steps, rebuild both, load, continue: the same lrs as
    without the interruption (and as torch's round trip); the state_dict has torch's keys."""
    name, make = SCHEDULERS[case]
    whole = _sequence(engine, case)
    out = {}
    for m in (engine, torch):
        opt = _opt(m, name)
        sched = make(m.optim.lr_scheduler, opt)
        for _ in range(10):
            opt.step()
            sched.step()
        osd, ssd = opt.state_dict(), sched.state_dict()
        opt2 = _opt(m, name)
        sched2 = make(m.optim.lr_scheduler, opt2)
        opt2.load_state_dict(osd)
        sched2.load_state_dict(ssd)
        seq = [_snapshot(opt2, sched2)]
        for _ in range(STEPS - 10):
            opt2.step()
            sched2.step()
            seq.append(_snapshot(opt2, sched2))
        out[m] = seq, sorted(ssd)
    assert out[engine] == out[torch]
    assert out[engine][0] == whole[10:]


def _plateau(m: Any, metrics: list[float], **kw: Any) -> list[tuple]:
    opt = _opt(m)
    sched = m.optim.lr_scheduler.ReduceLROnPlateau(opt, **kw)
    seq = []
    for x in metrics:
        opt.step()
        sched.step(x)
        seq.append((tuple(sched.get_last_lr()), sched.num_bad_epochs, sched.cooldown_counter, sched.best,
                    sched.last_epoch, sched.in_cooldown))
    return seq


LOSSES = [1.0, 0.9, 0.95, 0.9, 0.92, 0.91, 0.899, 0.9, 0.95, 0.97, 0.8, 0.81, 0.8, 0.82, 0.83, 0.84,
          0.85, 0.79, 0.79, 0.79, 0.78, 0.78, 0.78, 0.78, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
PLATEAU = {
    "min rel": {"patience": 2},
    "min abs cooldown": {"patience": 1, "threshold": 0.01, "threshold_mode": "abs", "cooldown": 2},
    "max rel": {"mode": "max", "patience": 1, "factor": 0.5},
    "max abs min_lr": {"mode": "max", "patience": 0, "factor": 0.5, "threshold_mode": "abs",
                       "min_lr": [0.01, 0.02]},
    "min eps": {"patience": 0, "factor": 0.9, "eps": 0.004, "min_lr": 0.03},
}


@pytest.mark.parametrize("case", list(PLATEAU))
def test_reduce_lr_on_plateau(case: str) -> None:
    e, t = _plateau(engine, LOSSES, **PLATEAU[case]), _plateau(torch, LOSSES, **PLATEAU[case])
    assert e == t
    assert e[-1][0] != e[0][0] or case.startswith("max")  # the lr moved (max mode: losses fall)


def test_reduce_lr_on_plateau_state_dict_and_tensor_metric() -> None:
    out = {}
    for m in (engine, torch):
        opt = _opt(m)
        sched = m.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", patience=1)
        for x in LOSSES[:8]:
            sched.step(m.tensor(x))  # a 0-d tensor metric, as a loss is
        sd = sched.state_dict()
        sched2 = m.optim.lr_scheduler.ReduceLROnPlateau(opt)
        sched2.load_state_dict(sd)
        for x in LOSSES[8:]:
            sched2.step(x)
        out[m] = sorted(sd), sched2.mode, sched2.mode_worse, sched2.get_last_lr(), sched2.best
    assert out[engine] == out[torch]


def _sched(m: Any) -> Any:
    return m.optim.lr_scheduler


def _step_past_total(m: Any) -> None:
    opt = _opt(m)
    sched = _sched(m).OneCycleLR(opt, 0.1, total_steps=2)
    for _ in range(3):
        opt.step()
        sched.step()


ERRORS: dict[str, Callable[[Any], Any]] = {
    "not an optimizer": lambda m: m.optim.lr_scheduler.StepLR(object(), step_size=1),
    "ConstantLR factor": lambda m: m.optim.lr_scheduler.ConstantLR(_opt(m), factor=1.5),
    "LinearLR start_factor": lambda m: m.optim.lr_scheduler.LinearLR(_opt(m), start_factor=0),
    "LinearLR end_factor": lambda m: m.optim.lr_scheduler.LinearLR(_opt(m), end_factor=2.0),
    "LambdaLR count": lambda m: m.optim.lr_scheduler.LambdaLR(_opt(m), [_lambda]),
    "MultiplicativeLR not callable": lambda m: m.optim.lr_scheduler.MultiplicativeLR(_opt(m), [0.5, 0.5]),
    "resume without initial_lr": lambda m: m.optim.lr_scheduler.StepLR(_opt(m), step_size=1, last_epoch=3),
    "plateau factor": lambda m: m.optim.lr_scheduler.ReduceLROnPlateau(_opt(m), factor=1.0),
    "plateau mode": lambda m: m.optim.lr_scheduler.ReduceLROnPlateau(_opt(m), mode="avg"),
    "plateau threshold mode": lambda m: m.optim.lr_scheduler.ReduceLROnPlateau(_opt(m), threshold_mode="x"),
    "plateau min_lr count": lambda m: m.optim.lr_scheduler.ReduceLROnPlateau(_opt(m), min_lr=[0.1]),
    "warm restarts T_0": lambda m: m.optim.lr_scheduler.CosineAnnealingWarmRestarts(_opt(m), T_0=0),
    "warm restarts T_mult": lambda m: m.optim.lr_scheduler.CosineAnnealingWarmRestarts(_opt(m), 2, T_mult=0),
    "one cycle no steps": lambda m: m.optim.lr_scheduler.OneCycleLR(_opt(m), max_lr=0.1),
    "one cycle pct_start": lambda m: _sched(m).OneCycleLR(_opt(m), 0.1, total_steps=5, pct_start=2.0),
    "one cycle stepped too far": _step_past_total,
    "one cycle no momentum": lambda m: _sched(m).OneCycleLR(_opt(m, "Adagrad"), 0.1, total_steps=5),
    "cyclic max_lr count": lambda m: m.optim.lr_scheduler.CyclicLR(_opt(m), 0.01, [0.1, 0.2, 0.3]),
    "cyclic mode": lambda m: m.optim.lr_scheduler.CyclicLR(_opt(m), 0.01, 0.1, mode="sawtooth"),
    "sequential milestones": lambda m: (lambda o: _sched(m).SequentialLR(
        o, [_sched(m).StepLR(o, 2), _sched(m).StepLR(o, 3)], milestones=[1, 2]))(_opt(m)),
    "sequential empty": lambda m: m.optim.lr_scheduler.SequentialLR(_opt(m), [], milestones=[]),
    "chained plateau": lambda m: (lambda o: m.optim.lr_scheduler.ChainedScheduler(
        [m.optim.lr_scheduler.ReduceLROnPlateau(o)]))(_opt(m)),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_match_torch(case: str) -> None:
    exc = assert_same_error(ERRORS[case])
    with pytest.raises(type(exc)) as info:
        ERRORS[case](torch)
    assert str(exc) == str(info.value)


def test_step_before_optimizer_step_warns_as_torch() -> None:
    msgs = {}
    for m in (engine, torch):
        opt = _opt(m)
        sched = m.optim.lr_scheduler.StepLR(opt, step_size=2)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            sched.step()
        msgs[m] = [str(x.message) for x in w]
    assert msgs[engine] == msgs[torch] and len(msgs[torch]) == 1


def test_schedule_drives_training() -> None:
    """The scheduled lr reaches the update: SGD steps with StepLR against torch's."""
    out = {}
    for m in (engine, torch):
        w = m.tensor([1.0, -1.0], requires_grad=True)
        opt = m.optim.SGD([w], lr=0.5)
        sched = m.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        for _ in range(6):
            opt.zero_grad()
            (w * w).sum().backward()
            opt.step()
            sched.step()
        out[m] = w.detach().numpy().tolist()
    assert out[engine] == out[torch]


RESUMED: dict[str, Callable[[Any, Any, int], Any]] = {
    "StepLR": lambda S, o, e: S.StepLR(o, 2, last_epoch=e),
    "ExponentialLR": lambda S, o, e: S.ExponentialLR(o, 0.5, last_epoch=e),
    "LinearLR": lambda S, o, e: S.LinearLR(o, 0.5, total_iters=6, last_epoch=e),
    "ConstantLR": lambda S, o, e: S.ConstantLR(o, 0.5, total_iters=4, last_epoch=e),
    "MultiStepLR": lambda S, o, e: S.MultiStepLR(o, [2, 4], last_epoch=e),
    "PolynomialLR": lambda S, o, e: S.PolynomialLR(o, 8, last_epoch=e),
    "CosineAnnealingLR": lambda S, o, e: S.CosineAnnealingLR(o, 5, last_epoch=e),
    "MultiplicativeLR": lambda S, o, e: S.MultiplicativeLR(o, lambda x: 0.9, last_epoch=e),
    "LambdaLR": lambda S, o, e: S.LambdaLR(o, _lambda, last_epoch=e),
    "CosineAnnealingWarmRestarts": lambda S, o, e: S.CosineAnnealingWarmRestarts(o, 3, last_epoch=e),
    "CyclicLR": lambda S, o, e: S.CyclicLR(o, 0.01, 0.1, step_size_up=3, last_epoch=e),
}


@pytest.mark.parametrize("last_epoch", [0, 1, 3, 4])
@pytest.mark.parametrize("case", list(RESUMED))
def test_resumed_schedule_equals_torch(case: str, last_epoch: int) -> None:
    """Constructed with ``last_epoch >= 0`` over groups that carry ``initial_lr`` and a current lr
    of their own: the first (initial) step and the ones after give torch's lrs."""
    out = {}
    for m in (engine, torch):
        opt = _opt(m)
        for g in opt.param_groups:
            g["initial_lr"], g["lr"] = g["lr"], g["lr"] * 0.7
        sched = RESUMED[case](m.optim.lr_scheduler, opt, last_epoch)
        seq = [_snapshot(opt, sched)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(10):
                opt.step()
                sched.step()
                seq.append(_snapshot(opt, sched))
        out[m] = seq, sched.last_epoch
    assert out[engine] == out[torch]


SEQUENTIAL: dict[str, Callable[[Any, Any], Any]] = {
    "then MultiplicativeLR": lambda S, o: S.SequentialLR(
        o, [S.ExponentialLR(o, 0.5), S.MultiplicativeLR(o, lambda e: 0.9)], milestones=[3]),
    "then ConstantLR": lambda S, o: S.SequentialLR(
        o, [S.ExponentialLR(o, 0.5), S.ConstantLR(o, 0.5, total_iters=2)], milestones=[3]),
    "three": lambda S, o: S.SequentialLR(
        o, [S.ConstantLR(o, 0.5, total_iters=2), S.StepLR(o, 2), S.LambdaLR(o, _lambda)], milestones=[3, 7]),
    "then warm restarts": lambda S, o: S.SequentialLR(
        o, [S.LinearLR(o, 0.5, total_iters=3), S.CosineAnnealingWarmRestarts(o, 3)], milestones=[3]),
    "then MultiStepLR": lambda S, o: S.SequentialLR(
        o, [S.LinearLR(o, 0.5, total_iters=3), S.MultiStepLR(o, [2, 5])], milestones=[4]),
}


@pytest.mark.parametrize("case", list(SEQUENTIAL))
def test_sequential_restarts_each_schedule_as_torch(case: str) -> None:
    """At a milestone the next schedule starts over from its epoch 0 (its closed form where it has
    one), without the deprecation warning ``step(0)`` would give."""
    out = {}
    for m in (engine, torch):
        opt = _opt(m)
        sched = SEQUENTIAL[case](m.optim.lr_scheduler, opt)
        seq = [_snapshot(opt, sched)]
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            for _ in range(15):
                opt.step()
                sched.step()
                seq.append(_snapshot(opt, sched))
        out[m] = seq, [str(x.message) for x in w]
    assert out[engine] == out[torch]
    assert out[engine][1] == []
