"""In-place ops against torch: values, gradients, grad_fn names, versions, dtype and shape rules,
the version-counter errors, forward mode, vmap, meta mode and compile (engine.ops.inplace).

Each test runs the same code on both libraries (``lib`` is engine or torch) and compares."""

from __future__ import annotations

import contextlib
import tracemalloc
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch

import engine
from engine import _meta

r = np.random.default_rng(0)
A = r.uniform(0.5, 1.5, (3, 4))      # positive: sqrt_, log_, pow_ stay smooth
B = r.uniform(-1.0, 1.0, (3, 4))
MASK = B > 0


def both(fn: Callable) -> tuple:
    """``fn(lib)`` on engine and on torch; an exception becomes (type name, message)."""
    out = []
    for lib in (engine, torch):
        try:
            out.append(fn(lib))
        except Exception as e:  # noqa: BLE001 (compared with torch's)
            out.append((type(e).__name__, str(e)))
    return tuple(out)


def same(fn: Callable, rtol: float = 1e-7, atol: float = 1e-9) -> None:
    e, t = both(fn)
    _compare(e, t, rtol, atol)


def _compare(e: object, t: object, rtol: float, atol: float) -> None:
    if isinstance(t, torch.Tensor):
        assert isinstance(e, engine.Tensor), (e, t)
        assert str(e.dtype).split(".")[-1] == str(t.dtype).split(".")[-1]
        np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), rtol=rtol, atol=atol)
    elif isinstance(t, (tuple, list)):
        assert isinstance(e, (tuple, list)) and len(e) == len(t), (e, t)
        for a, b in zip(e, t):
            _compare(a, b, rtol, atol)
    else:
        assert e == t, (e, t)


def leaf(lib, a: np.ndarray = A):
    return lib.tensor(a, requires_grad=True)


# ---------------------------------------------------------------- every in-place method
# (method, extra args built from lib): the destination is a non-leaf, so the op is recorded.
METHODS: list[tuple[str, Callable]] = [
    ("add_", lambda lib: (lib.tensor(B),)), ("add_", lambda lib: (2.5,)),
    ("sub_", lambda lib: (leaf(lib, B),)), ("mul_", lambda lib: (leaf(lib, B),)),
    ("div_", lambda lib: (leaf(lib, A + 1),)), ("pow_", lambda lib: (2.0,)),
    ("pow_", lambda lib: (leaf(lib, B),)), ("clamp_", lambda lib: (0.7, 1.2)),
    ("clamp_min_", lambda lib: (0.8,)), ("clamp_max_", lambda lib: (0.9,)),
    ("masked_fill_", lambda lib: (lib.tensor(MASK), 0.25)), ("zero_", lambda lib: ()),
    ("fill_", lambda lib: (1.5,)), ("copy_", lambda lib: (leaf(lib, B[0]),)),
    ("lerp_", lambda lib: (leaf(lib, B), 0.3)),
    ("addcmul_", lambda lib: (leaf(lib, B), leaf(lib, A), 0.5)),
    ("scatter_", lambda lib: (0, lib.tensor([[0, 1, 2, 0]]), leaf(lib, B[:1]))),
    ("scatter_add_", lambda lib: (1, lib.tensor([[0, 0, 3]] * 3), leaf(lib, B[:, :3]))),
    ("index_put_", lambda lib: ((lib.tensor([0, 2, 0]),), leaf(lib, B[:3]), True)),
    ("index_fill_", lambda lib: (1, lib.tensor([0, 3]), -1.0)),
    ("index_add_", lambda lib: (0, lib.tensor([2, 0]), leaf(lib, B[:2]))),
] + [(f"{n}_", lambda lib: ()) for n in (
    "exp", "tanh", "sigmoid", "relu", "neg", "abs", "sqrt", "sin", "cos", "log", "log1p", "expm1",
    "reciprocal", "rsqrt", "square", "sinh", "atan", "erf", "floor", "sign", "trunc", "frac")]


@pytest.mark.parametrize("name,extra", METHODS, ids=[f"{m}-{i}" for i, (m, _) in enumerate(METHODS)])
def test_in_place_method_as_torch(name: str, extra: Callable) -> None:
    def run(lib):
        x = leaf(lib)
        args = extra(lib)
        y = x * 1.0
        y0 = y
        out = getattr(y, name)(*args)
        loss = (y * lib.tensor(B)).sum()
        inputs = [x] + [a for a in args if isinstance(a, (torch.Tensor, engine.Tensor)) and a.requires_grad]
        grads = lib.autograd.grad(loss, inputs, allow_unused=True)
        plain = getattr(x * 1.0, name[:-1], None)
        plain = plain(*args).grad_fn.name() if plain is not None and name != "zero_" else None
        return (out is y0, y._version, y.detach(), list(grads)), (y.grad_fn.name(), plain)

    (e, e_names), (t, t_names) = both(run)
    _compare(e, t, 1e-7, 1e-9)
    # grad_fn: torch's name, or the engine's out-of-place op's where that one already differs
    assert e_names[0] == t_names[0] or (e_names[0] == e_names[1] and t_names[0] == t_names[1]), \
        (e_names, t_names)


@pytest.mark.parametrize("name", ["exp_", "tanh_", "mul_", "clamp_", "setitem", "copy_"])
def test_second_order_through_an_in_place_op(name: str) -> None:
    def run(lib):
        x = leaf(lib)
        w = leaf(lib, B)
        y = (x * x).sin()
        if name == "mul_":
            y.mul_(w)
        elif name == "clamp_":
            y.clamp_(-0.5, 0.9)
        elif name == "setitem":
            y[1, 1:3] = w[0, :2] * x[2, :2]
        elif name == "copy_":
            y[0].copy_(w[1] * w[2])
        else:
            getattr(y, name)()
        (gx, gw) = lib.autograd.grad((y * y).sum(), (x, w), create_graph=True, allow_unused=True)
        total = gx.pow(2).sum() + (gw.pow(2).sum() if gw is not None else 0)
        return lib.autograd.grad(total, (x, w), allow_unused=True)

    same(run, rtol=1e-6)


# ---------------------------------------------------------------- dtype and shape rules
@pytest.mark.parametrize("code", [
    lambda lib: lib.zeros(3, dtype=lib.long).add_(1.5),
    lambda lib: lib.zeros(3, dtype=lib.bool).add_(1),
    lambda lib: lib.zeros(3, dtype=lib.long).mul_(lib.ones(3)),
    lambda lib: lib.zeros(3, dtype=lib.int32).add_(lib.ones(3, dtype=lib.int64)),
    lambda lib: lib.zeros(3).add_(lib.ones(3, dtype=lib.float64)),
    lambda lib: lib.zeros(3, 4).add_(lib.ones(2, 3, 4)),
    lambda lib: lib.zeros(3).mul_(lib.ones(2, 1)),
    lambda lib: lib.zeros(3, dtype=lib.long).copy_(lib.tensor([1.7, -2.5, 3.2])),
    lambda lib: lib.zeros(3).copy_(lib.ones(2)),
    lambda lib: lib.zeros(3).copy_(lib.ones(2, 3)),
    lambda lib: lib.zeros(2, 3).fill_(lib.tensor([1.0, 2.0])),
    lambda lib: lib.zeros(2, 3).fill_(lib.tensor(2, dtype=lib.long)),
    lambda lib: lib.zeros(3, dtype=lib.long).fill_(2.9),
    lambda lib: lib.zeros(3).expand(2, 3).add_(1),
], ids=lambda f: "")
def test_dtype_and_shape_rules_as_torch(code: Callable) -> None:
    same(code)


def test_item_assignment_casts_and_broadcasts_as_torch() -> None:
    def run(lib):
        x = lib.zeros(3, 4, dtype=lib.long)
        x[0] = 2.7
        x[1, 1:] = lib.tensor([1.9, -1.9, 3.0])
        x[2] = lib.ones(1, 4)  # leading 1s of the value are dropped
        return x

    same(run)
    for key, value in [(0, lambda lib: lib.ones(3)), ((slice(None), [0, 1]), lambda lib: lib.ones(3)),
                       (5, lambda lib: 1.0), ((0, 0, 0), lambda lib: 1.0)]:
        same(lambda lib, k=key, v=value: lib.zeros(3, 4).__setitem__(k, v(lib)))


# Item assignment that records nothing (no gradient on either side, or no_grad) writes into the
# buffer; what torch shows must not change: values, views, versions, saved-tensor errors, history.
@pytest.mark.parametrize("grad", ["enabled", "no_grad"])
def test_item_assignment_that_records_nothing_as_torch(grad: str) -> None:
    def run(lib):
        ctx = lib.no_grad() if grad == "no_grad" else contextlib.nullcontext()
        w = leaf(lib)
        x = lib.tensor(A)
        v = x[1]               # a view: sees the writes
        s = (x * w).sum()      # mul saved x: a later write breaks this backward
        with ctx:
            x[0, 1] = 5.0
            x[1] += 1.0        # a view's in-place op, then the write back through x
            x[2, [0, 2, 0]] = lib.tensor([1.0, 2.0, 3.0], dtype=lib.float64)  # the last wins
            x[lib.tensor(MASK)] = -x[lib.tensor(MASK)]
            x[0] = w[0] * 2       # a value requiring grad: recorded unless no_grad
        out = [x.detach().clone(), v.detach().clone(), x._version, v._version, x.requires_grad,
               x.grad_fn.name() if x.grad_fn is not None else None]
        try:
            s.backward()
            out.append(None)
        except RuntimeError as e:
            out.append(str(e))
        return out

    same(run)


def test_recorded_writes_compute_into_the_destination() -> None:
    # an in-place write that autograd records donates the destination's buffer to the forward
    # (index_put, copy_slices) instead of copying the whole tensor first; backward is as before
    w = engine.tensor([3.0], requires_grad=True)
    y = engine.zeros(1 << 22, requires_grad=True)  # 16 MiB
    z = y * 1.0
    tracemalloc.start()
    try:
        z[3] = w[0] * 2.0         # index_put
        z[5:6].mul_(w)            # a view's in-place op: copy_slices
        z[[7, 9]] = w * 4.0       # advanced
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak
    gy, gw = engine.autograd_grad((z * z).sum(), (y, w))
    assert gw.tolist() == [2 * 6.0 * 2.0 + 2 * 2 * 12.0 * 4.0]
    assert gy[3].item() == 0.0 and gy[7].item() == 0.0 and gy[0].item() == 0.0


_MASK_ROWS, _MASK_COLS = [True, False, True], [True, False, True, False]


@pytest.mark.parametrize("key, value", [
    ([0, 1], lambda lib: lib.tensor(1.0)), ([0, 1], lambda lib: lib.ones(4)),
    ([0, 1], lambda lib: lib.tensor(1)), ([0, 1], lambda lib: lib.ones(4, dtype=lib.float64)),
    ((0, [1, 2]), lambda lib: lib.ones(2)), ([0], lambda lib: lib.tensor(1.0)),
    ("rows", lambda lib: lib.tensor(1.0)), ("rows", lambda lib: lib.ones(4)),
    ("rows", lambda lib: lib.ones(1)), ("rows", lambda lib: lib.tensor(3)),
    (("rows", slice(None)), lambda lib: lib.tensor(1.0)),
    ((slice(None), "cols"), lambda lib: lib.tensor(1.0)),
    (("rows", "cols"), lambda lib: lib.tensor(1.0)), ("0-d", lambda lib: lib.tensor(1.0)),
], ids=lambda v: "value" if callable(v) else str(v))
def test_item_assignment_casts_where_torch_copies_or_fills(key: object, value: Callable) -> None:
    # torch casts the value where it copies (basic keys, 0-d integer tensors) or fills (one bool
    # mask, one value); its index_put refuses any other dtype
    def run(lib):
        def one(k):
            if k == "rows":
                return lib.tensor(_MASK_ROWS)
            if k == "cols":
                return lib.tensor(_MASK_COLS)
            if k == "0-d":
                return lib.tensor(0)
            return lib.tensor(k) if isinstance(k, list) else k
        k = tuple(one(k) for k in key) if isinstance(key, tuple) else one(key)
        x = lib.zeros(3, 4, dtype=lib.float64)
        x[k] = value(lib)
        return x

    same(run)


def test_item_assignment_that_records_nothing_copies_only_the_region() -> None:
    # the functional path copied the whole tensor on every write (x[i] += 1 on a million
    # entries: 34x torch's time); counted as bytes allocated, not as time
    x = engine.zeros(1 << 22)  # 16 MiB
    tracemalloc.start()
    try:
        for i in range(4):
            x[i] += 1.0
            x[i + 8] = 2.0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak
    assert x[:12].tolist() == [1.0] * 4 + [0.0] * 4 + [2.0] * 4


@pytest.mark.parametrize("key", [
    0, (slice(1, None), 2), (Ellipsis, 1), [0, 2], (slice(None), [1, 3]), (0, [1, 1, 3]),
    "mask", ([0, 2], [1, 3]), (None, 1),
], ids=str)
def test_item_assignment_grads_and_names_as_torch(key: object) -> None:
    def run(lib):
        k = lib.tensor(MASK) if key == "mask" else tuple(lib.tensor(i) if isinstance(i, list) else i
                                                         for i in (key if isinstance(key, tuple) else (key,)))
        x = leaf(lib)
        v = leaf(lib, np.array(0.75))
        y = x * 2.0
        y[k] = v * 3.0
        gx, gv = lib.autograd.grad((y * lib.tensor(B)).sum(), (x, v))
        return y.grad_fn.name(), y._version, y.detach(), gx, gv

    same(run)


def test_index_put_functional_and_in_place_as_torch() -> None:
    def run(lib):
        x = leaf(lib)
        v = leaf(lib, B[0, :3])
        idx = (lib.tensor([0, 2, 0]), lib.tensor([1, 1, 1]))
        a = lib.index_put(x, idx, v, accumulate=True)
        b = x.index_put(idx, v)
        c = x * 1.0
        c.index_put_(idx, v * 2.0, accumulate=True)
        grads = lib.autograd.grad((a * b * c).sum(), (x, v))
        return a.grad_fn.name(), a, b, c, grads

    same(run)
    for bad in [lambda lib: lib.index_put(lib.zeros(3, 4), (lib.tensor([0, 1]),),
                                          lib.ones(4, dtype=lib.float64)),
                lambda lib: lib.index_put(lib.zeros(3, 4), (lib.tensor([0, 1]),), lib.ones(3)),
                lambda lib: lib.index_put(lib.zeros(3, 4), (lib.tensor([0, 5]),), lib.ones(4)),
                lambda lib: lib.index_put(lib.zeros(3, 4), (lib.tensor([0.0]),), lib.ones(4)),
                lambda lib: lib.index_put(lib.zeros(3, 4), (lib.tensor([0]),) * 3, lib.ones(1)),
                lambda lib: lib.index_put(lib.zeros(3, 4), lib.tensor([0]), lib.ones(4)),
                lambda lib: lib.index_put(lib.zeros(3, 4), (lib.tensor([0]),), 1.0)]:
        same(bad)


# ---------------------------------------------------------------- autograd's refusals
def test_leaf_requiring_grad_is_refused_outside_no_grad() -> None:
    same(lambda lib: leaf(lib).add_(1))
    same(lambda lib: leaf(lib).zero_())
    same(lambda lib: leaf(lib).__setitem__(0, 1.0))
    same(lambda lib: leaf(lib).__iadd__(1.0))


def test_no_grad_in_place_on_a_leaf_is_an_optimizer_step() -> None:
    def run(lib):
        w = leaf(lib)
        (w * w).sum().backward()
        with lib.no_grad():
            w -= 0.1 * w.grad
            w.mul_(2.0)
        ok = (w.is_leaf, w.requires_grad, w.grad_fn, w._version)
        w.grad.zero_()
        (w * w).sum().backward()
        return ok, w.detach(), w.grad

    same(run)


@pytest.mark.parametrize("case", ["input", "output", "leaf", "double", "scalar", "int", "view", "copyslices"])
def test_modified_saved_tensor_error_as_torch(case: str) -> None:
    def run(lib):
        a = leaf(lib, A[0].astype(np.float32))
        if case == "input":
            b = a * 2
            c = b * b
            b.add_(1)
        elif case == "output":
            b = a.exp()
            c = b
            b.mul_(2)
        elif case == "leaf":
            x = lib.ones(4)
            c = a * x
            x.add_(1)
        elif case == "double":
            b = a.double() * 1
            c = b.sin()
            b.zero_()
        elif case == "scalar":
            b = a.sum()
            c = b.tanh()
            b.sub_(1)
        elif case == "int":
            idx = lib.tensor([0, 1])
            b = a * 1
            c = b.sigmoid()
            b[idx] = 0.5
        elif case == "view":
            b = a * 1
            v = b[1:]
            c = v.sin()
            v.mul_(2)
        else:
            b = a * 1
            v = b[1:]
            c = b.sin()
            v.mul_(2)
        c.sum().backward()
        return a.grad

    same(run, rtol=1e-5, atol=1e-7)  # float32


def test_a_later_version_saved_again_is_fine() -> None:
    def run(lib):
        a = leaf(lib)
        b = a * 1
        b.add_(1)
        c = b * b  # saved at version 1: no error
        b2 = a * 1
        b2.mul_(3).add_(1)  # chained in-place ops: each saves the tensor as it was
        return lib.autograd.grad((c + b2 * b2).sum(), a)

    same(run)


def test_detach_in_place_as_torch() -> None:
    def run(lib):
        a = leaf(lib)
        b = a * 2
        r = b.detach_()
        return r is b, b.requires_grad, b.grad_fn, b.is_leaf

    same(run)
    same(lambda lib: (leaf(lib) * 1)[0].detach_())


# ---------------------------------------------------------------- .grad accumulates in place
def test_grad_reference_sees_accumulation_as_torch() -> None:
    def run(lib):
        x = leaf(lib)
        (x * x).sum().backward()
        g = x.grad
        (x * 3).sum().backward()
        return g is x.grad, g.clone()

    same(run)


def test_grad_with_create_graph_is_replaced_as_torch() -> None:
    def run(lib):
        x = leaf(lib)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (x * x).sum().backward(create_graph=True)
            g = x.grad
            (x * x * x).sum().backward(create_graph=True)
        return g is x.grad, g.detach().clone(), x.grad.detach().clone(), x.grad.requires_grad

    same(run)


# ---------------------------------------------------------------- forward mode, vmap, meta, compile
def test_forward_ad_through_in_place_ops_as_torch() -> None:
    def run(lib):
        fw = lib.autograd.forward_ad
        with fw.dual_level():
            x = fw.make_dual(lib.tensor(A), lib.tensor(B))
            y = x * 1.0
            y.mul_(x).sin_()
            y[0] = x[1].exp()
            y[:, 1].add_(x[:, 2])
            return fw.unpack_dual(y).tangent

    same(run)


def test_vmap_of_a_function_with_in_place_ops_as_torch() -> None:
    def f(x, w):
        y = x * 1.0
        y.mul_(w)
        y[0] = w[1]
        y.add_(1.0).tanh_()
        return y

    x = r.standard_normal((5, 3))

    def run(lib):
        return lib.func.vmap(f, in_dims=(0, None))(lib.tensor(x), lib.tensor(B[0, :3]))

    same(run)


def test_vmap_with_in_place_ops_on_views_as_torch() -> None:
    def f(x):
        y = x * 1.0
        y[:, 1].mul_(2.0)
        y.t()[0].add_(x[0, 0])
        y[1:].exp_()
        return y

    x = r.standard_normal((2, 3, 4))
    same(lambda lib: lib.func.vmap(f)(lib.tensor(x)))


@pytest.mark.parametrize("how", ["add_", "setitem"])
def test_vmap_refuses_a_batched_write_into_an_unbatched_tensor_as_torch(how: str) -> None:
    def f(lib):
        def g(x):
            y = lib.zeros(3)
            if how == "add_":
                y.add_(x)
            else:
                y[0] = x[1]
            return y
        return lib.func.vmap(g)(lib.ones(4, 3))

    same(f)


def test_meta_mode_sees_the_same_shapes() -> None:
    x = engine.Tensor._make(_meta.meta_array((2000, 3000), np.float32))
    with _meta.meta_mode():
        y = x * 1.0
        y.mul_(2).exp_()
        y[5] = 1.0
        y[:, 2].add_(y[:, 3])
        y.index_put_((engine.tensor([0, 1]),), engine.ones(3000))
        with pytest.raises(RuntimeError, match="doesn't match the broadcast shape"):
            y.add_(engine.Tensor._make(_meta.meta_array((2, 2000, 3000), np.float32)))
    assert y.shape == (2000, 3000) and y._version == 5 and y.dtype == engine.float32


def test_compile_runs_a_mutating_function_eagerly_with_the_right_answer() -> None:
    def f(x):
        y = x * 2.0
        y[0] = 5.0
        y.mul_(x)
        return y

    cf = engine.compile(f)
    x = engine.tensor(A)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = [cf(x), cf(x)]
    assert any("in-place" in str(m.message) for m in w)
    t = torch.tensor(A) * 2.0
    t[0] = 5.0
    t.mul_(torch.tensor(A))
    for o in out:
        np.testing.assert_allclose(o.numpy(), t.numpy())


def test_compile_of_batch_norm_training_updates_running_stats_once_per_call() -> None:
    x = np.random.default_rng(3).standard_normal((4, 3)).astype(np.float32)
    rm, rv = engine.zeros(3), engine.ones(3)
    cf = engine.compile(lambda x: engine.nn.functional.batch_norm(x, rm, rv, training=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ys = [cf(engine.tensor(x)) for _ in range(3)]
    trm, trv = torch.zeros(3), torch.ones(3)
    for _ in range(3):
        ty = torch.nn.functional.batch_norm(torch.tensor(x), trm, trv, training=True)
    np.testing.assert_allclose(ys[-1].numpy(), ty.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rm.numpy(), trm.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rv.numpy(), trv.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,args,check", [
    ("uniform_", (-2.0, 3.0), lambda v: v.min() >= -2 and v.max() < 3 and abs(v.mean() - 0.5) < 0.2),
    ("normal_", (5.0, 0.5), lambda v: abs(v.mean() - 5) < 0.1 and abs(v.std() - 0.5) < 0.1),
    ("bernoulli_", (0.3,), lambda v: set(np.unique(v)) <= {0.0, 1.0} and abs(v.mean() - 0.3) < 0.05),
    ("exponential_", (2.0,), lambda v: v.min() >= 0 and abs(v.mean() - 0.5) < 0.05),
    ("log_normal_", (0.0, 0.25), lambda v: v.min() > 0 and abs(np.log(v).mean()) < 0.05),
    ("geometric_", (0.5,), lambda v: v.min() >= 1 and abs(v.mean() - 2) < 0.2),
])
def test_random_fills_as_torch(name: str, args: tuple, check: Callable) -> None:
    """Distributions by their moments (the streams differ); history, version and gradient as torch."""
    def run(lib):
        w = lib.ones(4000, dtype=lib.float64, requires_grad=True)
        b = w * 1.0
        getattr(b, name)(*args)
        v = b.detach().numpy().copy()
        (g,) = lib.autograd.grad((b * 3.0).sum(), w)
        return bool(check(v)), b.grad_fn.name(), b._version, g

    same(run)


@pytest.mark.parametrize("name,args", [("t_", ()), ("transpose_", (0, 1)), ("swapaxes_", (1, 0)),
                                       ("unsqueeze_", (1,)), ("squeeze_", ()), ("swapdims_", (0, 1))])
def test_shape_changing_in_place_methods_as_torch(name: str, args: tuple) -> None:
    def run(lib):
        a = leaf(lib, A[:1] if name == "squeeze_" else A)
        b = a * 1.0
        r = getattr(b, name)(*args)
        loss = (b * lib.arange(float(b.numel()), dtype=lib.float64).reshape(b.shape)).sum()
        return r is b, tuple(b.shape), b._version, b.detach(), lib.autograd.grad(loss, a)

    same(run)
    same(lambda lib: getattr(leaf(lib, A[:1] if name == "squeeze_" else A), name)(*args))


@pytest.mark.parametrize("case", ["x*3.0", "x*c", "c*x", "x/c", "c/x", "x@W", "W@x", "x*x"])
def test_a_saved_input_modified_in_place_breaks_backward_only_if_a_gradient_reads_it(case):
    # torch saves an operand of mul/div/matmul only for the other operand's gradient
    def run(lib):
        a = lib.ones(3, requires_grad=True)
        W = lib.arange(9.0).reshape(3, 3)
        c = W[1]
        x = a * 1.0
        y = {"x*3.0": lambda: x * 3.0, "x*c": lambda: x * c, "c*x": lambda: c * x, "x/c": lambda: x / c,
             "c/x": lambda: c / x, "x@W": lambda: x @ W, "W@x": lambda: W @ x, "x*x": lambda: x * x}[case]()
        x.add_(1)
        try:
            y.sum().backward()
        except RuntimeError as e:
            return type(e), str(e)
        return a.grad.tolist()

    assert run(engine) == run(torch)
