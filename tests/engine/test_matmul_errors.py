"""engine.matmul against torch.matmul (the oracle, run here): result dtype, shape and values, or
the same exception type and message, over a grid of shapes and dtype pairs.

torch takes a different kernel per case (dot, mv, mm on a folded matrix, bmm after broadcasting
the batch dims), each with its own shape and dtype errors in its own order; it never promotes
mixed dtypes. The same grid runs in meta mode (the service's preflight), whose errors must be
the real ones.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import engine
from engine import Tensor, _meta

SHAPES_A = [(3,), (2, 3), (4, 2, 3), (2, 4, 2, 3)]
SHAPES_B = [(2,), (3,), (2, 2), (3, 2), (4, 2, 2), (4, 3, 2), (5, 3, 2), (2, 1, 3, 2)]
DTYPE_PAIRS = [("float32", "float32"), ("float32", "float64"), ("int64", "float32"),
               ("float64", "int64"), ("int64", "int64"), ("bool", "bool"), ("float16", "float16"),
               ("float16", "float32")]
GRID = list(itertools.product(SHAPES_A, SHAPES_B, DTYPE_PAIRS))

# Every engine dtype, same and mixed (names in errors: Char/Byte, signed char/unsigned char...),
# on one case per kernel: dot, mv, mm, folded mv/mm, bmm.
ALL_DTYPES = ["float16", "float32", "float64", "int8", "uint8", "int16", "int32", "int64", "bool"]
PER_KERNEL = [((3,), (3,)), ((2, 3), (3,)), ((2, 3), (3, 2)), ((3,), (3, 2)), ((4, 2, 3), (3,)),
              ((4, 2, 3), (3, 2)), ((4, 2, 3), (4, 3, 2)), ((2, 3), (4, 3, 2))]
DTYPE_GRID = [(sa, sb, (x, y)) for sa, sb in PER_KERNEL for x in ALL_DTYPES for y in ALL_DTYPES]

# Empty operands and results: torch skips some kernels (and so some checks) for them.
EMPTY = [((0,), (0,)), ((2, 0), (0,)), ((4, 0, 3), (3,)), ((4, 0, 3), (2,)), ((0, 3), (3, 2)),
         ((2, 0), (0, 2)), ((0,), (0, 2)), ((3,), (3, 0)), ((4, 2, 3), (3, 0)), ((0, 3), (4, 3, 2)),
         ((4, 0, 3), (4, 3, 2)), ((4, 2, 0), (4, 0, 2)), ((2, 3), (0, 3, 2)), ((0,), (4, 0, 2)),
         ((2,), (4, 0, 2)), ((3,), (0, 3, 2)), ((2,), (0, 3, 2)), ((0, 3), (4, 2, 2)),
         ((2, 1, 0, 3), (4, 3, 2)), ((2, 4, 2, 3), (0, 1, 3, 2)), ((3, 0), (2, 3))]
EMPTY_GRID = [(sa, sb, p) for sa, sb in EMPTY
              for p in [("float32", "float64"), ("bool", "bool"), ("bool", "float32"),
                        ("float32", "bool"), ("int64", "float32")]]

# torch folds a 1-D/2-D left operand times a batched right one into mv/mm (other transposed)
# when an operand requires grad or the fold needs no copy, else it runs bmm: the errors differ.
RG_SHAPES = [((3,), (4, 3, 2)), ((2,), (4, 3, 2)), ((2, 3), (4, 3, 2)), ((2, 2), (4, 3, 2)),
             ((2,), (4, 1, 2)), ((3,), (2, 4, 1, 2)), ((4, 2, 3), (2,)), ((4, 2, 3), (4, 2, 2)),
             ((3,), (3,)), ((2, 3), (5, 3, 2))]
RG_GRID = [(sa, sb, p, rg) for sa, sb in RG_SHAPES
           for p in [("float32", "float32"), ("float32", "float64"), ("float64", "float32")]
           for rg in [(True, False), (False, True), (True, True)]]


def _values(shape: tuple, dtype: str) -> np.ndarray:
    # small integers: every dtype holds them and every product is exact
    x = (np.arange(int(np.prod(shape)), dtype=np.int64) % 3).reshape(shape)
    return x.astype(dtype)


def _outcome(fn) -> tuple:
    try:
        out = fn()
    except Exception as e:  # the comparison is on type and message
        return ("raises", type(e).__name__, str(e))
    return ("ok", str(out.dtype).split(".")[-1], tuple(out.shape))


def _torch(sa, sb, da, db, rg=(False, False)) -> tuple:
    x, y = torch.from_numpy(_values(sa, da)), torch.from_numpy(_values(sb, db))
    x.requires_grad_(rg[0])
    y.requires_grad_(rg[1])
    return _outcome(lambda: x @ y)


def _engine(sa, sb, da, db, rg=(False, False)) -> tuple:
    x, y = engine.from_numpy(_values(sa, da)), engine.from_numpy(_values(sb, db))
    x.requires_grad_(rg[0])
    y.requires_grad_(rg[1])
    return _outcome(lambda: x @ y)


def _meta_run(sa, sb, da, db, rg=(False, False)) -> tuple:
    with _meta.meta_mode() as m:
        x = Tensor._make(m.array(sa, da)).requires_grad_(rg[0])
        y = Tensor._make(m.array(sb, db)).requires_grad_(rg[1])
        return _outcome(lambda: engine.matmul(x, y))


def _ids(case) -> str:
    return "-".join(str(c) for c in case)


@pytest.mark.parametrize("sa,sb,dts", GRID + DTYPE_GRID + EMPTY_GRID, ids=_ids)
def test_matches_torch(sa, sb, dts) -> None:
    assert _engine(sa, sb, *dts) == _torch(sa, sb, *dts)


@pytest.mark.parametrize("sa,sb,dts,rg", RG_GRID, ids=_ids)
def test_matches_torch_when_an_operand_requires_grad(sa, sb, dts, rg) -> None:
    assert _engine(sa, sb, *dts, rg) == _torch(sa, sb, *dts, rg)


@pytest.mark.parametrize("sa,sb,dts", GRID + EMPTY_GRID, ids=_ids)
def test_meta_mode_matches_torch(sa, sb, dts) -> None:
    assert _meta_run(sa, sb, *dts) == _torch(sa, sb, *dts)


@pytest.mark.parametrize("sa,sb,dts,rg", RG_GRID, ids=_ids)
def test_meta_mode_matches_torch_when_an_operand_requires_grad(sa, sb, dts, rg) -> None:
    assert _meta_run(sa, sb, *dts, rg) == _torch(sa, sb, *dts, rg)


@pytest.mark.parametrize("sa,sb", [(sa, sb) for sa, sb, _ in GRID[::len(DTYPE_PAIRS)]], ids=_ids)
@pytest.mark.parametrize("dt", ["float32", "int64", "float16"])
def test_values_match_torch(sa, sb, dt) -> None:
    x, y = _values(sa, dt), _values(sb, dt)
    try:
        want = (torch.from_numpy(x) @ torch.from_numpy(y)).numpy()
    except RuntimeError as e:
        with pytest.raises(RuntimeError) as got:
            engine.matmul(engine.from_numpy(x), engine.from_numpy(y))
        assert str(got.value) == str(e)
        return
    got = engine.matmul(engine.from_numpy(x), engine.from_numpy(y)).numpy()
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_grid_has_both_outcomes() -> None:
    # the grid exercises valid products and every kernel's errors, not one kind only
    kinds = {_torch(sa, sb, *dts)[2].split(" ")[0] if _torch(sa, sb, *dts)[0] == "raises" else "ok"
             for sa, sb, dts in GRID}
    assert {"ok", "dot", "inconsistent", "size", "addmv", "mat1", "expected", "Expected", "The",
            '"dot"', '"addmm_impl_cpu_"', '"addmv_impl_cpu"', '"bmm"'} <= kinds
