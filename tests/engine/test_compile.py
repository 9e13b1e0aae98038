"""engine.compile: compiled programs give eager's results to the last bit.

Every op's gradcheck sample runs compiled (the forward plus first-order gradients through
``autograd_grad`` inside the compiled function): the tracing call, a replay, and a replay on new
values must all equal eager, bitwise, dtype and shape included. Eager is the oracle here (its
agreement with torch is test_gradcheck.py's job).
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

import engine
from engine import Tensor
from engine._compile import MAX_PROGRAMS, CompileWarning

from . import gradcheck as gc
from .opsamples import SAMPLES

UNIQUE = {info.name: info for info in engine.OPS.values()}
CASES = [(n, i) for n in sorted(UNIQUE) for i in range(len(SAMPLES.get(n, ())))]


def _id(case: tuple) -> str:
    return f"{case[0]}-{case[1]}"


def _tensors(x: object) -> list[Tensor]:
    if isinstance(x, Tensor):
        return [x]
    if isinstance(x, (tuple, list)):
        return [t for e in x for t in _tensors(e)]
    if isinstance(x, dict):
        return [t for e in x.values() for t in _tensors(e)]
    return []


def _leaves(x: object) -> list:
    """Every value of a result, tensors as (values, dtype, shape)."""
    if isinstance(x, Tensor):
        return [x._data]
    if isinstance(x, (tuple, list)):
        return [v for e in x for v in _leaves(e)]
    if isinstance(x, dict):
        return [v for e in x.values() for v in _leaves(e)]
    return [x]


def assert_identical(got: object, want: object, what: str = "") -> None:
    g, w = _leaves(got), _leaves(want)
    assert len(g) == len(w), what
    for k, (a, b) in enumerate(zip(g, w)):
        if isinstance(b, np.ndarray):
            a = np.asarray(a)
            assert type(a) is np.ndarray, f"{what} [{k}]: {type(a)}"
            assert a.dtype == b.dtype and a.shape == b.shape, f"{what} [{k}]: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
            assert a.tobytes() == b.tobytes(), f"{what} [{k}]: values differ"
        else:
            assert type(a) is type(b) and (a == b or a != a and b != b), f"{what} [{k}]: {a!r} vs {b!r}"


def _sample_fn(name: str, s: object):
    op = UNIQUE[name].fn

    def f(args: tuple, kwargs: dict) -> tuple:
        out = gc.call(op, s, args, kwargs)
        leaves = [t for t in _tensors((args, kwargs)) if t.requires_grad]
        outs = [o for o in gc.float_outputs(out) if o.requires_grad]
        grads = ()
        if leaves and outs:
            vs = [engine.tensor(v) for v in gc.cotangents(outs)]
            grads = engine.autograd_grad(outs, leaves, vs, allow_unused=True, materialize_grads=True)
        return out, grads

    return f


def _perturbed(s: object) -> object:
    """The sample with every array's elements in reverse order (values stay in the op's domain)."""

    def sub(x: object) -> object:
        if isinstance(x, np.ndarray) and x.size > 1:
            return x.reshape(-1)[::-1].reshape(x.shape).copy()
        if isinstance(x, list):
            return [sub(v) for v in x]
        if isinstance(x, tuple):
            return tuple(sub(v) for v in x)
        return x

    p = copy.copy(s)
    p.args = tuple(sub(a) for a in s.args)
    p.kwargs = {k: sub(v) for k, v in s.kwargs.items()}
    return p


def _eager(f, s):
    engine.manual_seed(0)
    args, kwargs, _ = gc.build(s, engine)
    try:
        return f(args, kwargs), None
    except Exception as e:  # noqa: BLE001 (the compiled run must raise it too)
        return None, e


def _compiled(cf, s):
    engine.manual_seed(0)
    args, kwargs, _ = gc.build(s, engine)
    try:
        return cf(args, kwargs), None
    except Exception as e:  # noqa: BLE001
        return None, e


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_op_samples_compiled_equal_eager(case: tuple) -> None:
    name, i = case
    s = SAMPLES[name][i]
    f = _sample_fn(name, s)
    want, err = _eager(f, s)
    if err is not None:
        pytest.skip(f"eager raises on this sample: {err}")
    cf = engine.compile(f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompileWarning)
        for call in ("trace", "replay", "replay again"):
            got, gerr = _compiled(cf, s)
            assert gerr is None, f"{call}: {gerr!r}"
            assert_identical(got, want, f"{name}[{i}] {call}")
        # new values, same signature: the program (or a retrace) must give eager's answer
        p = _perturbed(s)
        want2, err2 = _eager(f, p)
        got2, gerr2 = _compiled(cf, p)
        if err2 is not None:
            assert gerr2 is not None and type(gerr2) is type(err2), f"new values: {gerr2!r} vs {err2!r}"
        else:
            assert gerr2 is None, f"new values: {gerr2!r}"
            assert_identical(got2, want2, f"{name}[{i}] new values")
