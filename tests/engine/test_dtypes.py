"""torch parity for dtypes: defaults, promotion (result_type / promote_types / op results), casts.

Torch promotes in tiers: dimensioned tensors, then 0-dim tensors, then Python scalars; a lower
tier only matters when it brings a higher category (bool < int < float). Every expectation here
is torch's answer in the same run.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import engine

from .parity import TDT, assert_same, assert_same_error, parity

# Division by a False/0 operand is part of the grid; numpy warns where torch is silent.
pytestmark = pytest.mark.filterwarnings("ignore:(divide by zero|invalid value):RuntimeWarning")
MAIN = ["float32", "float64", "int64", "int32", "bool"]
ALL = MAIN + ["float16", "int16", "int8", "uint8"]
VALUES = {"f": [0.5, 2.0], "i": [1, 2], "u": [1, 2], "b": [True, False]}


def make(m, dtype: str, ndim: int):
    kind = np.dtype(dtype).kind
    vals = np.array(VALUES[kind], dtype=dtype)
    return m.tensor(vals if ndim else vals[1], dtype=getattr(m, dtype))


OPERANDS = [(d, n) for d in MAIN for n in (1, 0)] + [("scalar", True), ("scalar", 3), ("scalar", 2.5)]


def operand(m, spec):
    kind, v = spec
    return v if kind == "scalar" else make(m, kind, v)


def _ids(spec):
    kind, v = spec
    return f"py{type(v).__name__}" if kind == "scalar" else f"{kind}_{v}d"


PAIRS = [(a, b) for a, b in itertools.product(OPERANDS, OPERANDS)
         if not (a[0] == "scalar" and b[0] == "scalar")]


# ---------------------------------------------------------------- defaults and names
@pytest.mark.parametrize("data", [1.5, [1.0, 2.0], 3, [1, 2], True, [True, False], [1, 2.5],
                                  [[1, 2], [3.5, 4]], [True, 2], [False, 1.5]])
def test_default_dtypes_of_python_data(data):
    parity(lambda m: m.tensor(data))


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "int16", "int8", "uint8",
                                   "bool", "float16"])
def test_numpy_dtypes_are_kept(dtype):
    parity(lambda m: m.tensor(np.array([1, 0, 2]).astype(dtype)))


def test_dtype_objects():
    for name in ALL:
        d = getattr(engine, name)
        t = getattr(torch, name)
        assert TDT[d] == t
        assert d.is_floating_point == t.is_floating_point
        assert d.is_signed == t.is_signed
        assert d.itemsize == t.itemsize
    for alias in ("float", "double", "long", "int", "half", "short"):
        assert TDT[getattr(engine, alias)] == getattr(torch, alias)
    assert TDT[engine.get_default_dtype()] == torch.get_default_dtype()


# ---------------------------------------------------------------- promotion
@pytest.mark.parametrize("a,b", list(itertools.product(ALL, ALL)))
def test_promote_types(a, b):
    assert TDT[engine.promote_types(getattr(engine, a), getattr(engine, b))] == \
        torch.promote_types(getattr(torch, a), getattr(torch, b))


@pytest.mark.parametrize("a,b", PAIRS, ids=[f"{_ids(a)}-{_ids(b)}" for a, b in PAIRS])
def test_result_type(a, b):
    expected = torch.result_type(operand(torch, a), operand(torch, b))
    assert TDT[engine.result_type(operand(engine, a), operand(engine, b))] == expected


@pytest.mark.parametrize("dims", [(1, 0, 0), (0, 0, 1), (0, 1, 1)])
@pytest.mark.parametrize("dtypes", [("int32", "float64", "float32"), ("bool", "int64", "float16"),
                                    ("int64", "int32", "uint8"), ("float16", "float64", "int64")])
def test_three_way_promotion_through_where(dims, dtypes):
    """torch.where promotes its two value operands; chain it to check 3-operand tiers via a sum."""
    def f(m):
        a, b, c = (make(m, d, n) for d, n in zip(dtypes, dims))
        return (a + b) * c, m.where(m.tensor(True), a, b)

    parity(f)


OPS = {
    "add": lambda m, a, b: a + b, "sub": lambda m, a, b: a - b, "mul": lambda m, a, b: a * b,
    "div": lambda m, a, b: a / b, "pow": lambda m, a, b: a ** b,
    "floordiv": lambda m, a, b: a // b,
    "maximum": lambda m, a, b: m.maximum(a, b) if not isinstance(b, (int, float)) else None,
    "where": lambda m, a, b: m.where(m.tensor([True, False]), a, b),
    "eq": lambda m, a, b: a == b, "lt": lambda m, a, b: a < b,
}


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("a,b", [p for p in PAIRS if p[0][0] != "scalar"],
                         ids=[f"{_ids(a)}-{_ids(b)}" for a, b in PAIRS if a[0] != "scalar"])
def test_binary_op_result_dtypes_and_values(op, a, b):
    """Each op's result (or error) for every dtype/ndim combination matches torch's."""
    def f(m):
        return OPS[op](m, operand(m, a), operand(m, b))

    try:
        expected = f(torch)
    except Exception:  # noqa: BLE001 - whatever torch refuses, we must refuse the same way
        assert_same_error(f)
    else:
        assert_same(f(engine), expected)


REFLECTED = {"radd": lambda x: 2 + x, "rmul": lambda x: 2.5 * x, "rsub": lambda x: 3 - x,
             "rdiv": lambda x: 1.5 / x, "rpow": lambda x: 2 ** x, "radd_bool": lambda x: True + x,
             "rsub_bool": lambda x: True - x, "rpow_float": lambda x: 2.5 ** x}


@pytest.mark.parametrize("op", sorted(REFLECTED))
@pytest.mark.parametrize("a", MAIN)
@pytest.mark.parametrize("ndim", [0, 1])
def test_reflected_scalar_operators(op, a, ndim):
    def f(m):
        return REFLECTED[op](make(m, a, ndim))

    try:
        expected = f(torch)
    except Exception:  # noqa: BLE001
        assert_same_error(f)
    else:
        assert_same(f(engine), expected)


def test_int_by_int_true_division_is_float32():
    parity(lambda m: (m.tensor([1, 2, 3]) / m.tensor([2, 2, 2]), m.tensor([7]) / 2,
                      m.tensor([1, 2], dtype=m.int32) / m.tensor(2), m.tensor(5) / m.tensor(2)))


def test_python_scalar_does_not_promote_a_float32_tensor():
    def f(m):
        x = m.tensor([1.0, 2.0], requires_grad=True)
        y = x * 2.5 + 1e300 * 0.0 - 3
        return y, m.autograd.grad(y.sum(), x)

    parity(f)


# ---------------------------------------------------------------- casts
@pytest.mark.parametrize("cast", ["to_f64", "to_f32_same", "double", "float", "type_f64", "to_other",
                                  "half"])
def test_float_casts_are_differentiable(cast):
    def f(m):
        x = m.tensor([0.5, -1.5, 2.0], requires_grad=True)
        y = {"to_f64": lambda: x.to(m.float64), "to_f32_same": lambda: x.to(m.float32),
             "double": lambda: x.double(), "float": lambda: x.double().float(),
             "type_f64": lambda: x.type(m.float64),
             "to_other": lambda: x.to(m.tensor([1.0], dtype=m.float64)),
             "half": lambda: x.half()}[cast]()
        return y, y.requires_grad, y.is_leaf, m.autograd.grad((y * y).sum(), x, create_graph=True)

    parity(f, rtol=2e-3)


def test_a_cast_to_the_same_dtype_returns_the_tensor_itself():
    def f(m):
        x = m.tensor([0.5], requires_grad=True)
        return x.to(m.float32) is x, x.float() is x, x.type(m.float32) is x

    parity(f)


@pytest.mark.parametrize("cast", ["long", "int", "bool", "to_int64", "to_int32", "to_bool",
                                  "type_int64"])
def test_casts_to_int_or_bool_do_not_require_grad(cast):
    def f(m):
        x = m.tensor([0.5, -1.5, 2.0], requires_grad=True)
        y = {"long": lambda: x.long(), "int": lambda: x.int(), "bool": lambda: x.bool(),
             "to_int64": lambda: x.to(m.int64), "to_int32": lambda: x.to(m.int32),
             "to_bool": lambda: x.to(m.bool), "type_int64": lambda: x.type(m.int64)}[cast]()
        return y, y.requires_grad, y.grad_fn is None, y.is_leaf

    parity(f)


def test_type_without_arguments_names_the_tensor_type():
    for name in MAIN:
        assert make(engine, name, 1).type() == make(torch, name, 1).type()


def test_gradient_of_a_cast_input_flows_back_in_the_input_dtype():
    def f(m):
        x = m.tensor([0.5, -1.5, 2.0], dtype=m.float64, requires_grad=True)
        w = m.tensor([1.0, 2.0, 3.0], requires_grad=True)
        y = (x.float() * w).sum() + (w.double() * x).sum()
        return y, m.autograd.grad(y, [x, w])

    parity(f)
