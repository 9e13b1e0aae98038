"""The ops built on matmul (addmm, addmv, addbmm, baddbmm, tensordot, inner, F.linear,
F.bilinear, linalg.multi_dot) against torch (the oracle, run here): same result dtype and
values, or the same exception type and message, over every f32/f64/i64 combination of the
operands (the bias / input operand included) plus a few wrong shapes.

torch never promotes in these ops: each raises its own dtype error, whose wording and operand
order differ from matmul's. The same grid runs in meta mode (the service's preflight), whose
result dtype and shape, or error, must be the same.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import engine
import engine.nn.functional as F
from engine import Tensor, _meta

DT = ["float32", "float64", "int64"]

# name -> (callable taking a module-like namespace and tensors, operand shapes, wrong shapes)
CASES = {
    "addmm": (lambda m, a, b, c: m.addmm(a, b, c), [(2, 4), (2, 3), (3, 4)],
              [[(2, 4), (2, 3), (2, 4)], [(5,), (2, 3), (3, 4)]]),
    "addmm_beta0": (lambda m, a, b, c: m.addmm(a, b, c, beta=0, alpha=2), [(4,), (2, 3), (3, 4)],
                    []),
    "addmv": (lambda m, a, b, c: m.addmv(a, b, c), [(2,), (2, 3), (3,)],
              [[(2,), (2, 3), (2,)], [(3,), (2, 3), (3,)]]),
    "addbmm": (lambda m, a, b, c: m.addbmm(a, b, c), [(2, 4), (5, 2, 3), (5, 3, 4)],
               [[(2, 4), (5, 2, 3), (5, 2, 4)], [(2, 4), (5, 2, 3), (4, 3, 4)]]),
    "baddbmm": (lambda m, a, b, c: m.baddbmm(a, b, c), [(5, 2, 4), (5, 2, 3), (5, 3, 4)],
                [[(5, 2, 4), (5, 2, 3), (5, 2, 4)], [(3, 4), (5, 2, 3), (5, 3, 4)]]),
    "tensordot": (lambda m, a, b: m.tensordot(a, b, dims=1), [(2, 3), (3, 4)],
                  [[(2, 3), (2, 4)]]),
    "tensordot2": (lambda m, a, b: m.tensordot(a, b, dims=([1, 2], [0, 1])),
                   [(2, 3, 4), (3, 4, 5)], []),
    "inner1d": (lambda m, a, b: m.inner(a, b), [(3,), (3,)], [[(3,), (2,)]]),
    "inner2d": (lambda m, a, b: m.inner(a, b), [(2, 3), (4, 3)], [[(2, 3), (4, 2)]]),
    "inner_nd": (lambda m, a, b: m.inner(a, b), [(2, 2, 3), (3,)], []),
    "inner_scalar": (lambda m, a, b: m.inner(a, b), [(), (2, 3)], []),
    "linear": (lambda m, x, w, b: _ns(m).linear(x, w, b), [(2, 3), (4, 3), (4,)],
               [[(2, 3), (4, 2), (4,)], [(2, 3), (4, 3), (3,)]]),
    "linear_nobias": (lambda m, x, w: _ns(m).linear(x, w), [(5, 2, 3), (4, 3)], []),
    "linear_1d": (lambda m, x, w, b: _ns(m).linear(x, w, b), [(3,), (4, 3), (4,)], []),
    "bilinear": (lambda m, x1, x2, w, b: _ns(m).bilinear(x1, x2, w, b),
                 [(2, 3), (2, 4), (5, 3, 4), (5,)], [[(2, 3), (2, 4), (5, 3, 2), (5,)]]),
    "bilinear_nobias": (lambda m, x1, x2, w: _ns(m).bilinear(x1, x2, w),
                        [(2, 3), (2, 4), (5, 3, 4)], []),
    "multi_dot": (lambda m, *ts: m.linalg.multi_dot(list(ts)), [(2, 3), (3, 4), (4,)],
                  [[(2, 3), (2, 4), (4,)]]),
}


def _ns(m):
    return torch.nn.functional if m is torch else F


def _values(shape: tuple, dtype: str, k: int) -> np.ndarray:
    # small integers: every dtype holds them exactly and every product is exact
    x = ((np.arange(int(np.prod(shape)), dtype=np.int64) + k) % 3 - 1).reshape(shape)
    return x.astype(dtype)


def _grid() -> list:
    out = []
    for name, (_, shapes, bad) in CASES.items():
        for dts in itertools.product(DT, repeat=len(shapes)):
            out.append(pytest.param(name, shapes, dts, id=f"{name}-{'-'.join(dts)}"))
        for j, sh in enumerate(bad):
            for dts in [("float32",) * len(sh), ("float64",) + ("float32",) * (len(sh) - 1)]:
                out.append(pytest.param(name, sh, dts, id=f"{name}-bad{j}-{'-'.join(dts)}"))
    return out


def _run(mod, fn, arrays):
    make = torch.from_numpy if mod is torch else engine.from_numpy
    try:
        return fn(mod, *(make(a.copy()) for a in arrays)), None
    except Exception as e:  # noqa: BLE001 - compared as (type, message) below
        return None, e


@pytest.mark.parametrize("name,shapes,dtypes", _grid())
def test_matches_torch(name: str, shapes: list, dtypes: tuple) -> None:
    fn = CASES[name][0]
    arrays = [_values(s, d, k) for k, (s, d) in enumerate(zip(shapes, dtypes))]
    want, werr = _run(torch, fn, arrays)
    got, gerr = _run(engine, fn, arrays)
    if werr is not None:
        assert gerr is not None, f"torch raised {type(werr).__name__}: {werr}; engine returned"
        assert (type(gerr), str(gerr)) == (type(werr), str(werr))
        return
    assert gerr is None, f"engine raised {type(gerr).__name__}: {gerr}"
    assert str(got.dtype).split(".")[-1] == str(want.dtype).split(".")[-1]
    assert tuple(got.shape) == tuple(want.shape)
    np.testing.assert_array_equal(got.detach().numpy(), want.detach().numpy())


def _outcome(out, err) -> tuple:
    if err is not None:
        return ("raises", type(err).__name__, str(err))
    return ("ok", str(out.dtype).split(".")[-1], tuple(out.shape))


@pytest.mark.parametrize("name,shapes,dtypes", _grid())
def test_meta_mode_matches_torch(name: str, shapes: list, dtypes: tuple) -> None:
    fn = CASES[name][0]
    arrays = [_values(s, d, k) for k, (s, d) in enumerate(zip(shapes, dtypes))]
    want = _outcome(*_run(torch, fn, arrays))
    with _meta.meta_mode() as m:
        ts = [Tensor._make(m.array(s, d)) for s, d in zip(shapes, dtypes)]
        try:
            got = _outcome(fn(engine, *ts), None)
        except Exception as e:  # noqa: BLE001 - compared as (type, message)
            got = _outcome(None, e)
    assert got == want
