"""torch parity for the Tensor's members, operators and indexing, and the engine's immutability.

Scenarios take the module ``m`` (``engine`` or ``torch``) and run on both; expected results come
from torch in the same run.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

import engine

from .parity import TDT, assert_same, assert_same_error, parity

RNG = np.random.default_rng(7)
A23 = RNG.standard_normal((2, 3)).astype(np.float32)
B23 = RNG.uniform(0.5, 2.0, (2, 3)).astype(np.float32)
A3 = RNG.standard_normal(3).astype(np.float32)
ARRAYS = {
    "f32_0d": np.array(1.5, np.float32), "f32_2d": A23, "f64_1d": np.arange(4.0),
    "i64_2d": np.arange(6).reshape(2, 3), "i32_1d": np.array([3, -1], np.int32),
    "bool_1d": np.array([True, False]), "f32_empty": np.zeros((0, 3), np.float32),
}
pytestmark = pytest.mark.filterwarnings("ignore:.*not a leaf Tensor:UserWarning")


def leaf(m, arr, rg=True):
    return m.tensor(arr, requires_grad=rg)


# ---------------------------------------------------------------- metadata and conversion
@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_shape_dtype_ndim_numel(name):
    arr = ARRAYS[name]
    e, t = engine.tensor(arr), torch.tensor(arr)
    assert e.shape == t.shape and tuple(e.shape) == tuple(t.shape)
    assert isinstance(e.shape, tuple)
    assert TDT[e.dtype] == t.dtype
    assert e.ndim == t.ndim and e.dim() == t.dim()
    assert e.numel() == t.numel()
    assert e.size() == t.size() and (not arr.ndim or e.size(-1) == t.size(-1))
    assert repr(e.shape) == repr(t.shape)


@pytest.mark.parametrize("data", [1.5, 3, True, [[2.25]], np.float64(0.1), [7]])
def test_item_value_and_type(data):
    e, t = engine.tensor(data).item(), torch.tensor(data).item()
    assert type(e) is type(t) and e == t


def test_item_of_a_tensor_that_requires_grad():
    parity(lambda m: (leaf(m, A3) * 2.0).sum().item())


def test_item_of_several_elements_raises():
    assert_same_error(lambda m: m.tensor([1.0, 2.0]).item())


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_numpy_and_tolist(name):
    arr = ARRAYS[name]
    e, t = engine.tensor(arr), torch.tensor(arr)
    np.testing.assert_array_equal(e.numpy(), t.numpy())
    assert e.numpy().dtype == t.numpy().dtype
    assert e.tolist() == t.tolist()
    assert [type(v) for v in np.ravel(np.array(e.tolist(), dtype=object))] == \
        [type(v) for v in np.ravel(np.array(t.tolist(), dtype=object))]


def test_numpy_of_a_tensor_that_requires_grad_raises():
    assert_same_error(lambda m: leaf(m, A3).numpy())
    parity(lambda m: m.tensor(leaf(m, A3).detach().numpy()))


def test_python_number_conversions():
    for data in ([2.5], 3, [True]):
        e, t = engine.tensor(data), torch.tensor(data)
        assert float(e) == float(t) and int(e) == int(t) and bool(e) == bool(t)
    assert_same_error(lambda m: bool(m.tensor([1.0, 2.0])))


# ---------------------------------------------------------------- autograd state
def test_requires_grad_flag_and_requires_grad_():
    def f(m):
        a = m.tensor(A3)
        before = a.requires_grad
        same = a.requires_grad_() is a
        after = a.requires_grad
        a.requires_grad_(False)
        b = m.tensor(A3, requires_grad=True)
        b.requires_grad = False
        return before, same, after, a.requires_grad, b.requires_grad, (a * 2.0).requires_grad

    parity(f)


@pytest.mark.parametrize("case", ["int_requires_grad_", "bool_requires_grad_", "tensor_int_rg",
                                  "non_leaf_false_", "non_leaf_setattr_false",
                                  "non_leaf_setattr_true"])
def test_requires_grad_errors(case):
    def f(m):
        if case == "int_requires_grad_":
            m.tensor([1, 2]).requires_grad_()
        elif case == "bool_requires_grad_":
            m.tensor([True]).requires_grad_()
        elif case == "tensor_int_rg":
            m.tensor([1, 2], requires_grad=True)
        else:
            y = leaf(m, A3) * 2.0
            if case == "non_leaf_false_":
                y.requires_grad_(False)
            else:
                y.requires_grad = case.endswith("true")

    assert_same_error(f)


def test_requires_grad_on_a_non_leaf_is_a_no_op():
    def f(m):
        y = leaf(m, A3) * 2.0
        return y.requires_grad_() is y, y.requires_grad, y.is_leaf

    parity(f)


def test_grad_is_none_until_backward_and_can_be_set():
    def f(m):
        x = leaf(m, A3)
        before = x.grad
        x.grad = m.ones(3)
        (x * 2.0).sum().backward()
        return before, x.grad

    parity(f)


def test_grad_fn_and_is_leaf():
    def f(m):
        x, c = leaf(m, A3), m.tensor(A3)
        with m.no_grad():
            n = x * 2.0
        y = x * 2.0
        return (x.grad_fn is None, c.grad_fn is None, (c * 2.0).grad_fn is None, n.grad_fn is None,
                y.grad_fn is None, y.grad_fn.name(), (x + 1.0).grad_fn.name(), x.sum().grad_fn.name(),
                x.exp().grad_fn.name(), (-x).grad_fn.name(), x.is_leaf, c.is_leaf, y.is_leaf,
                n.is_leaf, (c * 2.0).is_leaf, x.detach().is_leaf)

    parity(f)


def test_detach_cuts_the_graph_and_keeps_values():
    def f(m):
        x = leaf(m, A3)
        d = (x * 2.0).detach()
        w = leaf(m, B23)
        return d, d.requires_grad, d.is_leaf, d.grad_fn is None, \
            m.autograd.grad((d * w).sum(), [w, x], allow_unused=True)

    parity(f)


def test_retain_grad_on_a_leaf_is_a_no_op_and_needs_requires_grad():
    def f(m):
        x = leaf(m, A3)
        x.retain_grad()
        (x * 2.0).sum().backward()
        return x.grad, x.retains_grad

    parity(f)
    assert_same_error(lambda m: m.tensor(A3).retain_grad())


def test_register_hook_needs_requires_grad_and_returns_a_removable_handle():
    assert_same_error(lambda m: m.tensor(A3).register_hook(lambda g: g))

    def f(m):
        x = leaf(m, A3)
        h = x.register_hook(lambda g: g * 0.0)
        h.remove()
        h.remove()  # a second remove is harmless
        (x * 2.0).sum().backward()
        return x.grad

    parity(f)


def test_tensor_backward_signature_and_keywords():
    assert list(inspect.signature(engine.Tensor.backward).parameters) == \
        list(inspect.signature(torch.Tensor.backward).parameters)

    def f(m):
        x, w = leaf(m, A3), leaf(m, A3 + 1.0)
        y = x * w
        y.backward(gradient=m.tensor(A3), retain_graph=True, create_graph=False, inputs=[w])
        y.backward(m.ones(3), inputs=x)
        return x.grad, w.grad

    parity(f)


# ---------------------------------------------------------------- operators
BINARY = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "pow": lambda a, b: a ** b,
}


@pytest.mark.parametrize("op", sorted(BINARY))
@pytest.mark.parametrize("kind", ["tensor_tensor", "tensor_scalar", "scalar_tensor", "tensor_int"])
def test_arithmetic_operators(op, kind):
    def f(m):
        a, b = leaf(m, B23), leaf(m, B23[::-1].copy() + 0.5)
        if kind == "tensor_tensor":
            y, ins = BINARY[op](a, b), [a, b]
        elif kind == "tensor_scalar":
            y, ins = BINARY[op](a, 1.5), [a]
        elif kind == "scalar_tensor":
            y, ins = BINARY[op](1.5, b), [b]
        else:
            y, ins = BINARY[op](a, 2), [a]
        g = m.autograd.grad(y, ins, m.tensor(A23), create_graph=True)
        return y, g, m.autograd.grad(sum(gi.sum() for gi in g), ins, allow_unused=True) \
            if any(gi.requires_grad for gi in g) else None

    parity(f)


@pytest.mark.parametrize("shapes", [((2, 3), (3, 4)), ((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)),
                                    ((5, 2, 3), (3, 4)), ((5, 2, 3), (5, 3, 2))])
def test_matmul_operator(shapes):
    a_arr = RNG.standard_normal(shapes[0]).astype(np.float32)
    b_arr = RNG.standard_normal(shapes[1]).astype(np.float32)

    def f(m):
        a, b = leaf(m, a_arr), leaf(m, b_arr)
        y = a @ b
        return y, m.autograd.grad(y.sum(), [a, b])

    parity(f)


def test_unary_minus_and_plus():
    def f(m):
        x = leaf(m, A23)
        y = -x
        return y, (+x) is x, m.autograd.grad((y * m.tensor(B23)).sum(), x), -m.tensor([1, -2])

    parity(f)
    assert_same_error(lambda m: -m.tensor([True, False]))


@pytest.mark.parametrize("op", ["eq", "ne", "lt", "le", "gt", "ge"])
@pytest.mark.parametrize("other", ["tensor", "scalar", "int_tensor"])
def test_comparison_operators(op, other):
    sym = {"eq": "__eq__", "ne": "__ne__", "lt": "__lt__", "le": "__le__", "gt": "__gt__",
           "ge": "__ge__"}[op]
    a_arr = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 2.0]], np.float32)

    def f(m):
        a = leaf(m, a_arr)
        b = {"tensor": m.tensor(a_arr[::-1].copy()), "scalar": 2.0,
             "int_tensor": m.tensor([2, 2, 0])}[other]
        r = getattr(a, sym)(b)
        return r, r.requires_grad, r.grad_fn is None

    parity(f)


# ---------------------------------------------------------------- indexing
KEYS = {
    "int": lambda m: 1, "neg_int": lambda m: -1, "slice": lambda m: slice(1, None),
    "step": lambda m: (slice(None), slice(None, None, 2)), "tuple": lambda m: (1, slice(0, 2)),
    "none": lambda m: (None, 0), "ellipsis": lambda m: (Ellipsis, 1),
    "mask": lambda m: m.tensor([[True, False, True, False], [False, False, True, True],
                                [True, True, True, True]]),
    "row_mask": lambda m: m.tensor([True, False, True]),
    "int_list_dups": lambda m: [0, 2, 0, 0],
    "int_tensor_dups": lambda m: m.tensor([[2, 2], [1, 2]]),
    "two_arrays": lambda m: ([0, 2, 2], [3, 1, 1]),
    "array_and_slice": lambda m: (slice(None), [1, 1, 3]),
}


@pytest.mark.parametrize("key", sorted(KEYS))
def test_indexing_values_and_gradients(key):
    """Duplicate indices accumulate in backward."""
    arr = RNG.standard_normal((3, 4)).astype(np.float32)

    def f(m):
        x = leaf(m, arr)
        y = x[KEYS[key](m)]
        w = m.tensor(np.arange(1.0, 1.0 + y.numel(), dtype=np.float32).reshape(tuple(y.shape)))
        (g,) = m.autograd.grad((y * w).sum(), x, create_graph=True)
        return y, g

    parity(f)


@pytest.mark.parametrize("key", ["out_of_range", "float_tensor"])
def test_indexing_errors(key):
    def f(m):
        return m.tensor(A3)[5 if key == "out_of_range" else m.tensor([1.0])]

    assert_same_error(f)


def test_too_many_indices_raise_index_error():
    # torch says "too many indices for tensor of dimension 1"; numpy's wording differs, the type agrees.
    with pytest.raises(IndexError, match="too many indices"):
        torch.tensor(A3)[0, 0]
    with pytest.raises(IndexError, match="too many indices"):
        engine.tensor(A3)[0, 0]


def test_methods_for_ops():
    def f(m):
        x = leaf(m, A23)
        outs = [x.sum(1, True), x.sum(0), x.exp(), x.mean(1), x.amax(0), x.reshape(3, 2), x.t(),
                x.max(1)[0], x.abs().sqrt(), x.tanh(), x.sigmoid(), x.clamp(-0.5, 0.5)]
        return outs, m.autograd.grad(sum(o.sum() for o in outs), x)

    parity(f)


# ---------------------------------------------------------------- construction
@pytest.mark.parametrize("data", [1.5, 2, True, [1, 2.5], [[1, 2], [3, 4]], [True, False],
                                  np.arange(3, dtype=np.int32), np.arange(3.0), []])
def test_tensor_constructor_dtypes(data):
    parity(lambda m: m.tensor(data))


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "bool"])
def test_tensor_constructor_with_dtype(dtype):
    parity(lambda m: m.tensor([0.0, 1.5, 2.0], dtype=getattr(m, dtype)))


@pytest.mark.parametrize("args", [([1, 2],), ([[1.5]],), (2, 3), (4,)])
def test_legacy_tensor_class_constructor(args):
    e, t = engine.Tensor(*args), torch.Tensor(*args)
    assert tuple(e.shape) == tuple(t.shape) and TDT[e.dtype] == t.dtype
    if isinstance(args[0], list):
        np.testing.assert_array_equal(e.numpy(), t.numpy())


def test_manual_seed_makes_random_constructors_reproducible():
    def draw():
        return [engine.rand(3, 2), engine.randn(4), engine.rand(2, dtype=engine.float64),
                engine.randint(0, 10, (5,))]

    engine.manual_seed(1234)
    a = draw()
    engine.manual_seed(1234)
    b = draw()
    engine.manual_seed(4321)
    c = draw()
    for x, y, z in zip(a, b, c):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
        assert not np.array_equal(x.numpy(), z.numpy())
    # dtypes and ranges follow torch's constructors
    torch.manual_seed(1234)
    expected = [torch.rand(3, 2), torch.randn(4), torch.rand(2, dtype=torch.float64),
                torch.randint(0, 10, (5,))]
    for x, t in zip(a, expected):
        assert tuple(x.shape) == tuple(t.shape) and TDT[x.dtype] == t.dtype
    assert (a[0].numpy() >= 0).all() and (a[0].numpy() < 1).all()
    assert ((a[3].numpy() >= 0) & (a[3].numpy() < 10)).all()


# ---------------------------------------------------------------- mutation (more in test_inplace.py)
def test_item_assignment_writes_in_place_as_torch():
    out = {}
    for lib in (engine, torch):
        x = lib.tensor([1.0, 2.0, 3.0])
        y = x
        x[0] = 5.0
        x[1:] = lib.tensor([7.0])
        out[lib.__name__] = (y is x, x.tolist(), x._version)
    assert out["engine"] == out["torch"]


def test_in_place_methods_are_torchs():
    """Every in-place method the engine has is one torch has, and the common ones all exist."""
    mine = [n for n in dir(engine.Tensor) if n.endswith("_") and not n.startswith("_")]
    assert [n for n in mine if not hasattr(torch.Tensor, n)] == []
    for n in ("add_", "sub_", "mul_", "div_", "zero_", "fill_", "copy_", "clamp_", "masked_fill_",
              "index_put_", "scatter_", "scatter_add_", "detach_", "requires_grad_", "pow_", "exp_",
              "tanh_", "sigmoid_", "relu_", "neg_", "abs_", "sqrt_"):
        assert hasattr(engine.Tensor, n), n


def test_augmented_assignment_is_in_place_as_torch():
    out = {}
    for lib in (engine, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y = x * 1.0
        y0 = y
        y += 1.0
        y *= 3.0
        m = lib.ones(2, 2)
        m0 = m
        m @= lib.ones(2, 2)  # torch has no in-place matmul: this one rebinds
        (g,) = lib.autograd.grad(y.sum(), x)
        out[lib.__name__] = (y is y0, y0.tolist(), y.grad_fn.name(), g.tolist(), m is m0, m0.tolist())
    assert out["engine"] == out["torch"]


def test_numpy_views_are_read_only():
    """A write through numpy() would corrupt tensors saved for backward: it is refused."""
    x = engine.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x.exp()
    for arr in (y.detach().numpy(), np.asarray(y.detach()), x.detach().numpy()):
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 100.0
    (g,) = engine.autograd_grad(y.sum(), x)
    np.testing.assert_allclose(g.numpy(), np.exp([1.0, 2.0, 3.0]), rtol=1e-6)
    copy = np.array(y.detach())  # an explicit copy is writable
    copy[0] = 0.0


def test_tensor_copies_its_numpy_input():
    arr = np.array([1.0, 2.0], np.float32)
    x = engine.tensor(arr)
    arr[0] = 9.0
    assert x.tolist() == [1.0, 2.0]
    assert_same(engine.tensor(arr), torch.tensor(arr))


def test_tensor_from_python_floats_with_float64_dtype_is_exact() -> None:
    data = [0.3, 1.7, 1e-20]
    t = engine.tensor(data, dtype=engine.float64)
    expected = torch.tensor(data, dtype=torch.float64).numpy()
    assert t.numpy().tobytes() == expected.tobytes()
