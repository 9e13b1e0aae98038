"""torch parity for the semantics of ``autograd_grad`` / ``autograd_backward`` (issue 2, "Semantics").

Each scenario is written once against a module ``m`` (``torch`` or ``engine``: the engine mirrors
torch's API) and run on both. Expected values, gradients, ``requires_grad`` flags and error
messages all come from torch in the same run; nothing is copied from our own output.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import engine

from .parity import assert_same, assert_same_error, parity

RNG = np.random.default_rng(20240601)
A3 = RNG.standard_normal(3).astype(np.float32)
A23 = RNG.standard_normal((2, 3)).astype(np.float32)
A34 = RNG.standard_normal((3, 4)).astype(np.float32)
# torch warns about reading a non-leaf's .grad and about backward(create_graph=True); both on purpose.
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*(not a leaf Tensor|create_graph=True will create):UserWarning")


def leaf(m: Any, arr: np.ndarray, rg: bool = True) -> Any:
    return m.tensor(arr, requires_grad=rg)


def grad(m: Any, *args: Any, **kw: Any) -> Any:
    return m.autograd.grad(*args, **kw)


# ---------------------------------------------------------------- outputs and inputs
def test_single_tensor_output_and_input_give_a_one_tuple():
    def f(m):
        x = leaf(m, A3)
        return grad(m, (x * x).sum(), x)

    parity(f)


def test_sequences_of_outputs_and_inputs():
    def f(m):
        x, w = leaf(m, A3), leaf(m, A23)
        y1 = (w * x).sum()
        y2 = (w.exp() * 2.0).sum()
        return grad(m, [y1, y2], [x, w], retain_graph=True), grad(m, (y1,), (w,))

    parity(f)


def test_contributions_of_several_outputs_add_up():
    def f(m):
        x = leaf(m, A3)
        ys = [x.sin().sum(), (x * x * 3.0).sum(), x.exp()]
        return grad(m, ys, x, grad_outputs=[None, m.tensor(2.0), m.tensor(A3)])

    parity(f)


def test_duplicated_input_gets_the_full_gradient_in_each_place():
    def f(m):
        x, w = leaf(m, A3), leaf(m, A3[::-1].copy())
        return grad(m, (x * w * x).sum(), [x, w, x, x])

    parity(f)


def test_a_duplicated_output_contributes_twice():
    def f(m):
        x = leaf(m, A3)
        y = (x * x).sum()
        return grad(m, [y, y, x.exp()], x, [None, m.tensor(3.0), m.ones(3)])

    parity(f)


def test_hooks_and_retain_grad_on_a_root_see_its_grad_output():
    def f(m):
        x = leaf(m, A3)
        y = x.exp()
        y.register_hook(lambda g: g * 3.0)
        y.retain_grad()
        r = grad(m, y, x, m.tensor(A3 + 1.0), retain_graph=True)
        y.backward(m.tensor(A3))
        return r, y.grad, x.grad

    parity(f)


def test_inputs_as_a_dict_return_a_dict():
    def f(m):
        x, w = leaf(m, A3), leaf(m, A23)
        return grad(m, (w * x).sum(), {"w": w, "x": x})

    parity(f)


def test_multiple_outputs_only_some_depending_on_an_input():
    def f(m):
        a, b = leaf(m, A3), leaf(m, A3 + 1)
        return grad(m, [(a * a).sum(), (b * 3.0).sum()], [a, b])

    parity(f)


# ---------------------------------------------------------------- grad_outputs
@pytest.mark.parametrize("shape", [(), (1,), (1, 1)])
def test_none_grad_output_for_a_one_element_output_is_ones(shape):
    def f(m):
        x = leaf(m, A3)
        return grad(m, (x * x).sum().reshape(shape), x)

    parity(f)


def test_none_grad_output_for_a_non_scalar_output_raises():
    def f(m):
        x = leaf(m, A3)
        return grad(m, x * 2.0, x)

    assert_same_error(f, key="grad can be implicitly created only for scalar outputs")


def test_a_single_tensor_grad_output_is_accepted():
    def f(m):
        x = leaf(m, A3)
        return grad(m, x * x, x, m.tensor(A3 + 2))

    parity(f)


def test_fewer_grad_outputs_than_outputs_raises():
    def f(m):
        x = leaf(m, A3)
        return grad(m, [x * 2.0, x * 3.0], x, [m.ones(3)])

    assert_same_error(f, key="got 2 tensors and 1 gradients")


def test_extra_grad_outputs_are_ignored_like_torch():
    def f(m):
        x = leaf(m, A3)
        return grad(m, [x * 2.0], x, [m.ones(3), m.ones(3)])

    parity(f)


def test_grad_output_shape_mismatch_raises():
    # (torch itself fails to format this message for an index > 0: it calls list.index on tensors)
    def f(m):
        x = leaf(m, A23)
        return grad(m, [x * 2.0, x.sum()], x, [m.ones(3, 2), None])

    exc = assert_same_error(f)  # the whole message, torch.Size([...]) and all
    assert "Mismatch in shape: grad_output[0] has a shape of" in str(exc)


def test_a_non_tensor_grad_output_raises_type_error():
    def f(m):
        x = leaf(m, A3)
        return grad(m, x * 2.0, x, [[1.0, 1.0, 1.0]])

    assert_same_error(f, key="gradients can be either Tensors or None, but got list")


@pytest.mark.parametrize("go_dtype", ["float64", "float32", "int64", "int32", "bool"])
@pytest.mark.parametrize("out_dtype", ["float32", "float64"])
def test_grad_output_of_another_dtype_is_cast_to_the_output_dtype(go_dtype, out_dtype):
    def f(m):
        x = leaf(m, A3.astype(out_dtype))
        go = m.tensor(np.array([1.5, -2.0, 3.25]).astype(go_dtype))
        y = x * x
        (g,) = grad(m, y, x, go)
        return g

    parity(f)


@pytest.mark.parametrize("case", ["f32_through_f64", "f64_times_f32", "f32_times_0dim_f64",
                                  "f32_with_int", "f64_through_f32"])
def test_each_gradient_has_its_inputs_dtype(case):
    def f(m):
        x32 = leaf(m, A3)
        x64 = leaf(m, A3.astype(np.float64) + 1)
        s64 = leaf(m, np.array(1.5))
        if case == "f32_through_f64":
            y = (x32.double() * x64).sum()
            ins = [x32, x64]
        elif case == "f64_times_f32":
            y = (x64 * x32).sum()
            ins = [x64, x32]
        elif case == "f32_times_0dim_f64":  # dimensioned float32 wins over a 0-dim float64
            out = x32 * s64
            return out, grad(m, out.sum(), [x32, s64])
        elif case == "f32_with_int":
            y = (x32 * m.tensor([1, 2, 3])).sum()
            ins = [x32]
        else:
            y = (x64.float() * x32).sum()
            ins = [x64, x32]
        return grad(m, y, ins)

    parity(f)


# ---------------------------------------------------------------- requires_grad errors
def test_an_output_that_does_not_require_grad_raises():
    def f(m):
        x = leaf(m, A3)
        return grad(m, m.tensor(A3).sum(), x)

    assert_same_error(f, key="element 0 of tensors does not require grad and does not have a grad_fn")


def test_the_index_of_the_output_that_does_not_require_grad_is_named():
    def f(m):
        x = leaf(m, A3)
        return grad(m, [x.sum(), m.ones(())], x)

    assert_same_error(f, key="element 1 of tensors does not require grad and does not have a grad_fn")


def test_an_input_that_does_not_require_grad_raises():
    def f(m):
        x, c = leaf(m, A3), leaf(m, A3, rg=False)
        return grad(m, (x * c).sum(), [x, c])

    assert_same_error(f, key="One of the differentiated Tensors does not require grad")


@pytest.mark.parametrize("empty", [[], ()])
def test_empty_inputs_raise(empty):
    def f(m):
        x = leaf(m, A3)
        return grad(m, (x * x).sum(), empty)

    assert_same_error(f, key="`inputs` argument to `grad()` cannot be empty.")


@pytest.mark.parametrize("case", ["nonscalar_no_rg_out_and_no_rg_input",
                                  "nonscalar_rg_out_and_no_rg_input",
                                  "scalar_rg_out_and_no_rg_input", "shape_mismatch_and_no_rg_out",
                                  "count_mismatch_and_no_rg_input"])
def test_error_precedence_matches_torch(case):
    def f(m):
        x, c = leaf(m, A3), leaf(m, A3, rg=False)
        if case == "nonscalar_no_rg_out_and_no_rg_input":
            return grad(m, c * 2.0, c)
        if case == "nonscalar_rg_out_and_no_rg_input":
            return grad(m, x * 2.0, c)
        if case == "scalar_rg_out_and_no_rg_input":
            return grad(m, x.sum(), c)
        if case == "shape_mismatch_and_no_rg_out":
            return grad(m, c * 2.0, x, m.ones(2))
        return grad(m, [x.sum(), x.sum()], c, [m.ones(())])

    assert_same_error(f)


# ---------------------------------------------------------------- unused inputs
def _unused(m, **kw):
    x, u = leaf(m, A3), leaf(m, A23)
    return grad(m, (x * x).sum(), [x, u], **kw)


def test_unused_input_raises_with_its_index():
    exc = assert_same_error(_unused)
    assert "The differentiated Tensor at index 1 appears to not have been used in the graph. " \
           "Set allow_unused=True if this is the desired behavior." in str(exc)


def test_unused_input_gets_none_with_allow_unused():
    parity(lambda m: _unused(m, allow_unused=True))


@pytest.mark.parametrize("create_graph", [False, True])
def test_unused_input_gets_zeros_with_materialize_grads(create_graph):
    parity(lambda m: _unused(m, materialize_grads=True, create_graph=create_graph))


def test_materialize_grads_with_allow_unused_false_raises_value_error():
    assert_same_error(lambda m: _unused(m, allow_unused=False, materialize_grads=True),
                      key="Expected allow_unused to be True or not passed when materialize_grads=True")


@pytest.mark.parametrize("cut", ["detach", "compare", "int_cast", "argmax", "bool_cast", "no_grad"])
def test_an_input_used_only_through_graph_cutting_ops_is_unused(cut):
    def f(m, allow_unused):
        x, w = leaf(m, A3), leaf(m, A3 + 1)
        if cut == "detach":
            z = x.detach() * w
        elif cut == "compare":
            z = (x > 0) * w
        elif cut == "int_cast":
            z = (x * 10).to(m.int64) * w
        elif cut == "argmax":
            z = w[x.argmax()]
        elif cut == "bool_cast":
            z = x.bool() * w
        else:
            with m.no_grad():
                xx = x * 2.0
            z = xx * w
        return grad(m, z.sum(), [w, x], allow_unused=allow_unused)

    assert_same_error(f, False, key="The differentiated Tensor at index 1 appears to not have been "
                                    "used in the graph")
    parity(f, True)


@pytest.mark.parametrize("zero", ["mul_zero", "self_sub", "zero_mul", "where_other_branch"])
def test_an_input_used_with_zero_coefficient_gets_zeros_not_none(zero):
    def f(m):
        x, w = leaf(m, A3), leaf(m, A3 + 1)
        if zero == "mul_zero":
            y = (x * 0.0 + w).sum()
        elif zero == "self_sub":
            y = (x - x + w).sum()
        elif zero == "zero_mul":
            y = (m.zeros(3) * x * w).sum()
        else:
            y = m.where(m.tensor([True, True, True]), w, x).sum()
        return grad(m, y, [x, w])

    parity(f)


# ---------------------------------------------------------------- retain_graph and freed graphs
RERUN_OPS = {
    "add": lambda m, x: (x + 1.0).sum(),
    "sub": lambda m, x: (1.0 - x).sum(),
    "neg": lambda m, x: (-x).sum(),
    "sum": lambda m, x: x.sum(),
    "mean": lambda m, x: x.mean(),
    "reshape": lambda m, x: x.reshape(3, 2).sum(),
    "transpose": lambda m, x: x.t().sum(),
    "expand": lambda m, x: x.reshape(1, 2, 3).expand(4, 2, 3).sum(),
    "slice": lambda m, x: x[:, 1:].sum(),
    "cat": lambda m, x: m.cat([x, x]).sum(),
    "stack": lambda m, x: m.stack([x, x]).sum(),
    "float_cast": lambda m, x: x.double().sum(),
    "flip": lambda m, x: x.flip(0).sum(),
    "cumsum": lambda m, x: x.cumsum(1).sum(),
    "mul_scalar": lambda m, x: (x * 2.0).sum(),
    "div_scalar": lambda m, x: (x / 2.0).sum(),
    "mul": lambda m, x: (x * x).sum(),
    "max_dim": lambda m, x: x.max(1)[0].sum(),
    "gather": lambda m, x: x.gather(1, m.tensor([[0, 0], [1, 2]])).sum(),
    "int_index": lambda m, x: x[[0, 1, 1]].sum(),
    "mask_index": lambda m, x: x[x > 0].sum(),
    "index_select": lambda m, x: x.index_select(1, m.tensor([0, 2])).sum(),
    "select_int": lambda m, x: x[1].sum(),
    "split": lambda m, x: x.split(1, 1)[0].sum(),
    "pow": lambda m, x: (x ** 2).sum(),
    "exp": lambda m, x: x.exp().sum(),
    "tanh": lambda m, x: x.tanh().sum(),
    "relu": lambda m, x: x.relu().sum(),
    "abs": lambda m, x: x.abs().sum(),
    "clamp": lambda m, x: x.clamp(-0.5, 0.5).sum(),
    "where": lambda m, x: m.where(x > 0, x, 0.0).sum(),
    "amax": lambda m, x: x.amax(),
    "matmul": lambda m, x: (x @ m.ones(3, 2)).sum(),
    "maximum": lambda m, x: m.maximum(x, m.zeros(2, 3)).sum(),
}


@pytest.mark.parametrize("op", sorted(RERUN_OPS))
def test_second_backward_without_retain_graph_matches_torch(op):
    """Nodes that saved tensors raise on a second run; nodes that saved nothing run again."""
    def f(m):
        x = leaf(m, A23)
        y = RERUN_OPS[op](m, x)
        first = grad(m, y, x)
        return first, grad(m, y, x)

    try:
        expected = f(torch)
    except RuntimeError:
        assert_same_error(f, key="Trying to backward through the graph a second time (or directly "
                                 "access saved tensors after they have already been freed).")
    else:
        assert_same(f(engine), expected)


def test_the_freed_graph_message_is_torchs():
    def f(m):
        x = leaf(m, A3)
        y = x.exp().sum()
        y.backward()
        y.backward()

    assert_same_error(f)


@pytest.mark.parametrize("kw", [{"retain_graph": True}, {"create_graph": True}])
def test_retain_graph_keeps_the_graph_and_defaults_to_create_graph(kw):
    def f(m):
        x = leaf(m, A23)
        y = (x.exp() * x).sum()
        return grad(m, y, x, **kw), grad(m, y, x)

    parity(f)


def test_create_graph_with_retain_graph_false_frees():
    def f(m):
        x = leaf(m, A3)
        y = (x.exp() * x).sum()
        grad(m, y, x, create_graph=True, retain_graph=False)
        return grad(m, y, x)

    assert_same_error(f, key="Trying to backward through the graph a second time")


def test_second_backward_on_a_partly_used_graph():
    """Only nodes that ran are freed: a branch not needed for the inputs can still be used."""
    def f(m):
        a, b = leaf(m, A3), leaf(m, A3 + 1)
        h = a.exp()
        y = (h * b.sin()).sum()
        first = grad(m, y, b)  # runs MulBackward and SinBackward, not ExpBackward
        return first, grad(m, h.sum() * 1.0, a)

    parity(f)


# ---------------------------------------------------------------- create_graph
def test_double_backward():
    def f(m):
        x = leaf(m, A3.astype(np.float64))
        y = (x ** 3 * x.sin()).sum()
        (g,) = grad(m, y, x, create_graph=True)
        (gg,) = grad(m, g.sum(), x)
        return g, gg

    parity(f)


def test_hessian_vector_product():
    W = RNG.standard_normal((4, 3))
    v = RNG.standard_normal(3)

    def f(m):
        x = leaf(m, A3.astype(np.float64))
        w = m.tensor(W)
        loss = (w @ x).tanh().pow(2).sum() + (x * x * x).sum()
        (g,) = grad(m, loss, x, create_graph=True)
        (hv,) = grad(m, g, x, m.tensor(v))
        return g, hv

    parity(f)


def test_gradient_penalty():
    W = RNG.standard_normal((4, 3))
    X = RNG.standard_normal((5, 3))

    def f(m):
        w = leaf(m, W)
        x = leaf(m, X)
        d = (x @ w.t()).tanh().sum(1)
        (gx,) = grad(m, d.sum(), x, create_graph=True)
        penalty = ((gx.pow(2).sum(1).sqrt() - 1.0) ** 2).mean()
        return penalty, grad(m, penalty, w)

    parity(f)


def test_third_order():
    def f(m):
        x = leaf(m, A3.astype(np.float64))
        y = (x ** 4 + x.exp()).sum()
        (g1,) = grad(m, y, x, create_graph=True)
        (g2,) = grad(m, g1.sum(), x, create_graph=True)
        (g3,) = grad(m, g2.sum(), x)
        return g1, g2, g3

    parity(f)


RG_CASES = {
    "mul_scalar": lambda m, x: (x * 2.0).sum(),
    "add": lambda m, x: (x + 1.0).sum(),
    "sum": lambda m, x: x.sum(),
    "mean": lambda m, x: x.mean(),
    "mul_self": lambda m, x: (x * x).sum(),
    "pow3": lambda m, x: (x ** 3).sum(),
    "exp": lambda m, x: x.exp().sum(),
    "tanh": lambda m, x: x.tanh().sum(),
    "sigmoid": lambda m, x: x.sigmoid().sum(),
    "relu": lambda m, x: x.relu().sum(),
    "abs": lambda m, x: x.abs().sum(),
    "clamp": lambda m, x: x.clamp(-0.5, 0.5).sum(),
    "max": lambda m, x: x.max(),
    "max_dim": lambda m, x: x.reshape(1, 3).max(1)[0].sum(),
    "amax": lambda m, x: x.amax(),
    "where": lambda m, x: m.where(x > 0, x, 0.0).sum(),
    "maximum": lambda m, x: m.maximum(x, m.zeros(3)).sum(),
    "floor": lambda m, x: x.floor().sum(),
    "index": lambda m, x: x[[0, 0, 1]].sum(),
    "div_scalar": lambda m, x: (x / 2.0).sum(),
    "rdiv": lambda m, x: (2.0 / x).sum(),
    "double": lambda m, x: x.double().sum(),
    "matmul_const": lambda m, x: x @ m.ones(3),
    "sqrt_abs": lambda m, x: x.abs().sqrt().sum(),
}


@pytest.mark.parametrize("case", sorted(RG_CASES))
def test_requires_grad_of_create_graph_gradients_matches_torch(case):
    """A gradient that is constant does not require grad; one that depends on x does."""
    def f(m):
        x = leaf(m, A3)
        (g,) = grad(m, RG_CASES[case](m, x), x, create_graph=True)
        if g.requires_grad:  # and its own derivative matches
            return g, grad(m, g.sum(), x, allow_unused=True)
        return g

    parity(f)


@pytest.mark.parametrize("create_graph", [False, True])
def test_a_grad_output_that_requires_grad(create_graph):
    def f(m):
        x, v = leaf(m, A3), leaf(m, A3 * 0 + 2)
        (g,) = grad(m, x * 3.0, x, v, create_graph=create_graph)
        if create_graph:
            return g, grad(m, g.sum(), v)
        return g

    parity(f)


def test_gradients_do_not_require_grad_without_create_graph():
    def f(m):
        x = leaf(m, A3)
        return grad(m, (x * x.exp()).sum(), x)

    parity(f)


def test_create_graph_works_inside_no_grad():
    def f(m):
        x = leaf(m, A3)
        y = (x * x * x).sum()
        with m.no_grad():
            (g,) = grad(m, y, x, create_graph=True)
        return g, grad(m, g.sum(), x)

    parity(f)


# ---------------------------------------------------------------- non-leaf inputs
def test_gradient_with_respect_to_intermediate_tensors():
    def f(m):
        x = leaf(m, A3)
        h = x.exp() * 2.0
        k = h.sin()
        y = (k * h).sum()
        return grad(m, y, [h, k, x])

    parity(f)


def test_an_input_that_is_also_an_output_gets_its_grad_output():
    def f(m):
        x = leaf(m, A3)
        y = x * 2.0
        z = (y * y).sum()
        return (grad(m, y, y, m.tensor(A3 + 5), retain_graph=True),
                grad(m, [y, z], [y, x], [m.tensor(A3), None], retain_graph=True),
                grad(m, x, x, m.tensor(A3 - 1)),
                grad(m, [z, x], x, [None, m.ones(3)]))

    parity(f)


# ---------------------------------------------------------------- broadcasting
@pytest.mark.parametrize("sa,sb", [((3, 1), (1, 4)), ((4,), (3, 4)), ((), (2, 3)), ((2, 1, 3), (4, 3)),
                                   ((1, 1), (5,)), ((2, 3), (2, 3)), ((1,), ())])
def test_broadcast_gradients_are_summed_back_keeping_size_one_dims(sa, sb):
    a_arr = RNG.standard_normal(sa).astype(np.float32)
    b_arr = RNG.standard_normal(sb).astype(np.float32)

    def f(m):
        a, b = leaf(m, a_arr), leaf(m, b_arr)
        y = a * b + a / (b * b + 1.0) - b
        return grad(m, y.sum(), [a, b], create_graph=True)

    parity(f)


# ---------------------------------------------------------------- .grad, backward and hooks
def test_autograd_grad_does_not_touch_leaf_grad():
    def f(m):
        x = leaf(m, A3)
        g = grad(m, (x * x).sum(), x)
        return g, x.grad

    parity(f)


def test_autograd_grad_keeps_an_existing_grad():
    def f(m):
        x = leaf(m, A3)
        (x * 3.0).sum().backward()
        grad(m, (x * x).sum(), x)
        return x.grad

    parity(f)


def test_backward_accumulates_into_grad():
    def f(m):
        x, w = leaf(m, A3), leaf(m, A23)
        y = (w * x.exp()).sum()
        y.backward(retain_graph=True)
        first = x.grad.clone()
        y.backward()
        return first, x.grad, w.grad

    parity(f)


def test_non_leaf_grad_is_none_unless_retained():
    def f(m):
        x = leaf(m, A3)
        h, k = x * 2.0, x.exp()
        k.retain_grad()
        (h * k).sum().backward()
        return h.grad, k.grad, x.grad, h.is_leaf, k.retains_grad, h.retains_grad, x.retains_grad

    parity(f)


def test_retained_non_leaf_grad_is_filled_by_autograd_grad_too():
    def f(m):
        x = leaf(m, A3)
        y = x * 2.0
        y.retain_grad()
        return grad(m, (y * y).sum(), x), y.grad, x.grad

    parity(f)


def test_leaf_hook_return_value_replaces_the_gradient():
    def f(m):
        x = leaf(m, A3)
        x.register_hook(lambda g: g * 10.0)
        g = grad(m, (x * x).sum(), x)
        (x * 3.0).sum().backward()
        return g, x.grad

    parity(f)


def test_non_leaf_hook_changes_what_flows_downstream():
    def f(m):
        x = leaf(m, A3)
        y = x * 2.0
        seen = []
        y.register_hook(lambda g: seen.append(g.detach().clone()) or g * 10.0)
        y.retain_grad()
        (y * y).sum().backward()
        return seen[0], y.grad, x.grad

    parity(f)


def test_hook_returning_none_keeps_the_gradient():
    def f(m):
        x = leaf(m, A3)
        calls = []
        x.register_hook(lambda g: calls.append(1))
        r = grad(m, (x * x).sum(), x)
        return r, len(calls)

    parity(f)


def test_hooks_run_once_on_the_summed_gradient():
    def f(m):
        x = leaf(m, A3)
        seen = []
        x.register_hook(lambda g: seen.append(g.detach().clone()))
        grad(m, (x * x + x.exp() + x).sum(), [x, x])
        return seen

    parity(f)


def test_removed_hook_no_longer_runs():
    def f(m):
        x = leaf(m, A3)
        h = x.register_hook(lambda g: g * 100.0)
        y = x * 2.0
        hy = y.register_hook(lambda g: g * 7.0)
        h.remove()
        hy.remove()
        return grad(m, (y * x).sum(), x)

    parity(f)


@pytest.mark.parametrize("inputs", ["y_only", "x_and_y"])
def test_hook_on_a_captured_non_leaf_input(inputs):
    """torch applies a non-leaf's hook to its captured gradient only when nothing upstream is needed."""
    def f(m):
        x = leaf(m, A3)
        y = x * 2.0
        y.register_hook(lambda g: g * 10.0)
        x.register_hook(lambda g: g + 1.0)
        ins = [y] if inputs == "y_only" else [x, y]
        return grad(m, (y * y).sum(), ins)

    parity(f)


def test_hooks_of_tensors_off_the_path_to_the_inputs_do_not_run():
    def f(m):
        a, b = leaf(m, A3), leaf(m, A3 + 1)
        calls = []
        b.register_hook(lambda g: calls.append("b"))
        h = b * 3.0
        h.register_hook(lambda g: calls.append("h"))
        grad(m, (a * h).sum(), a)
        return calls

    parity(f)


def test_backward_with_inputs_accumulates_only_there():
    def f(m):
        x, w = leaf(m, A3), leaf(m, A23)
        y = x * 2.0
        loss = (w * y.exp()).sum()
        loss.backward(inputs=[w, y], retain_graph=True)
        out = [x.grad, w.grad, y.grad, y.retains_grad]
        m.autograd.backward(loss, inputs=x)
        return out + [x.grad]

    parity(f)


def test_backward_with_duplicated_inputs_accumulates_once():
    def f(m):
        x = leaf(m, A3)
        y = x * 3.0
        (x * y).sum().backward(inputs=[x, x, y, y])
        return x.grad, y.grad

    parity(f)


def test_backward_with_an_unused_input_leaves_its_grad_none():
    def f(m):
        x, u = leaf(m, A3), leaf(m, A23)
        (x * x).sum().backward(inputs=[x, u])
        return x.grad, u.grad

    parity(f)


def test_backward_with_an_input_that_does_not_require_grad_raises():
    def f(m):
        x = leaf(m, A3)
        (x * x).sum().backward(inputs=[m.tensor(A3)])

    assert_same_error(f, key="can't retain_grad on Tensor that has requires_grad=False")


def test_backward_with_empty_inputs_raises():
    def f(m):
        x = leaf(m, A3)
        (x * x).sum().backward(inputs=[])

    assert_same_error(f, key="`inputs` argument to `backward()` cannot be empty.")


def test_backward_with_a_gradient_for_a_non_scalar():
    def f(m):
        x = leaf(m, A23)
        y = x.exp()
        y.backward(m.tensor(A23 * 2))
        return x.grad

    parity(f)


@pytest.mark.parametrize("case", ["implicit_nonscalar", "no_grad_output", "shape"])
def test_backward_errors(case):
    def f(m):
        x = leaf(m, A23)
        if case == "implicit_nonscalar":
            (x * 2.0).backward()
        elif case == "no_grad_output":
            m.tensor(A23).sum().backward()
        else:
            (x * 2.0).backward(m.ones(3, 2))

    assert_same_error(f)


def test_backward_with_create_graph_makes_grad_differentiable():
    def f(m):
        x = leaf(m, A3)
        (x ** 3).sum().backward(create_graph=True)
        g = x.grad
        return g, grad(m, g.sum(), x)

    parity(f)


def test_autograd_backward_with_sequences():
    def f(m):
        x = leaf(m, A3)
        y1, y2 = x.exp(), (x * x).sum()
        m.autograd.backward([y1, y2], [m.tensor(A3), None])
        return x.grad

    parity(f)


def test_autograd_backward_inputs_as_dict():
    def f(m):
        x, w = leaf(m, A3), leaf(m, A3 + 1)
        m.autograd.backward((x * w).sum(), inputs={"x": x})
        return x.grad, w.grad

    parity(f)


# ---------------------------------------------------------------- numeric conventions
def test_relu_and_abs_have_zero_derivative_at_zero():
    arr = np.array([-1.0, 0.0, 2.0, 0.0], np.float32)

    def f(m):
        x = leaf(m, arr)
        return grad(m, [x.relu().sum(), x.abs().sum()], x), grad(m, x.relu().sum(), x), \
            grad(m, x.abs().sum(), x)

    parity(f)


TIES = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], np.float32)


@pytest.mark.parametrize("red", ["max", "min", "amax", "amin", "amax_dim", "amin_dim", "amax_keepdim"])
def test_whole_tensor_and_amax_ties_split_evenly(red):
    def f(m):
        x = leaf(m, TIES)
        y = {"max": lambda: x.max(), "min": lambda: x.min(), "amax": lambda: x.amax(),
             "amin": lambda: x.amin(), "amax_dim": lambda: x.amax(1), "amin_dim": lambda: x.amin(0),
             "amax_keepdim": lambda: x.amax(1, keepdim=True)}[red]()
        return y, grad(m, y, x, m.ones_like(y) * m.tensor(2.0) if y.ndim else None)

    parity(f)


@pytest.mark.parametrize("fn", ["max", "min"])
@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_with_dim_sends_the_gradient_to_the_returned_index(fn, dim, keepdim):
    def f(m):
        x = leaf(m, TIES)
        values, indices = getattr(x, fn)(dim, keepdim)
        return values, indices, grad(m, values, x, m.ones_like(values) * 3.0)

    parity(f)


def test_maximum_and_minimum_ties_split_evenly():
    a_arr = np.array([1.0, 2.0, 3.0], np.float32)
    b_arr = np.array([1.0, 5.0, 3.0], np.float32)

    def f(m):
        a, b = leaf(m, a_arr), leaf(m, b_arr)
        return grad(m, [m.maximum(a, b).sum(), (m.minimum(a, b) * 3.0).sum()], [a, b])

    parity(f)


@pytest.mark.parametrize("bounds", [(-1.0, 1.0), (None, 1.0), (-1.0, None), (0.5, 0.5)])
def test_clamp_passes_the_gradient_at_the_boundary(bounds):
    arr = np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0], np.float32)

    def f(m):
        x = leaf(m, arr)
        y = x.clamp(*bounds)
        return y, grad(m, (y * m.tensor(arr + 10)).sum(), x)

    parity(f)


# ---------------------------------------------------------------- public entry points
def test_the_entry_points_are_the_same_functions():
    assert engine.autograd_grad is engine.autograd.grad
    assert engine.autograd_backward is engine.autograd.backward
    assert callable(engine.autograd.no_grad) and callable(engine.autograd.enable_grad)


@pytest.mark.parametrize("ours,theirs", [(engine.autograd.grad, torch.autograd.grad),
                                         (engine.autograd.backward, torch.autograd.backward),
                                         (engine.Tensor.backward, torch.Tensor.backward)])
def test_entry_point_signatures_match_torch(ours, theirs):
    import inspect
    p_ours = list(inspect.signature(ours).parameters.values())
    p_theirs = list(inspect.signature(theirs).parameters.values())
    assert [p.name for p in p_ours] == [p.name for p in p_theirs]
    assert [p.default for p in p_ours] == [p.default for p in p_theirs]


@pytest.mark.parametrize("shapes", [((100,), (2,)), ((3, 4), (2, 1, 5)), ((2, 3), (3, 2))])
def test_broadcast_mismatch_matches_torch(shapes: tuple) -> None:
    a, b = shapes
    with pytest.raises(RuntimeError) as t_err:
        torch.ones(*a) + torch.ones(*b)
    with pytest.raises(RuntimeError) as e_err:
        engine.ones(*a) + engine.ones(*b)
    assert str(e_err.value) == str(t_err.value)
