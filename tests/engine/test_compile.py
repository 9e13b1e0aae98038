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
            assert (a.dtype, a.shape) == (b.dtype, b.shape), f"{what} [{k}]"
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


# ---------------------------------------------------------------- signatures, guards, fallbacks
def _t(values, dtype=None, requires_grad=False) -> Tensor:
    return engine.tensor(values, dtype=dtype, requires_grad=requires_grad)


def _grad_of_square(x: Tensor) -> tuple:
    y = (x * x).sum()
    return y.detach(), engine.autograd_grad(y, x)[0]


def _no_warnings():
    w = warnings.catch_warnings()
    w.__enter__()
    warnings.simplefilter("error", CompileWarning)
    return w


def test_same_signature_replays_one_program() -> None:
    cf = engine.compile(_grad_of_square)
    for v in ([1.0, 2.0], [3.0, -1.0], [0.5, 0.25]):
        x = _t(v, requires_grad=True)
        assert_identical(cf(x), _grad_of_square(x))
    assert len(cf.programs()) == 1 and not cf.eager_reasons()


@pytest.mark.parametrize("second", [
    lambda: _t([1.0, 2.0, 3.0], requires_grad=True),                 # shape
    lambda: _t([1.0, 2.0], dtype=engine.float64, requires_grad=True),  # dtype
])
def test_new_shape_or_dtype_retraces(second) -> None:
    cf = engine.compile(_grad_of_square)
    cf(_t([1.0, 2.0], requires_grad=True))
    x = second()
    assert_identical(cf(x), _grad_of_square(x))
    assert len(cf.programs()) == 2


def test_requires_grad_flag_is_part_of_the_signature() -> None:
    def f(x):
        return (x * 2).requires_grad

    cf = engine.compile(lambda x: x * 2 + 1)
    a, b = _t([1.0, 2.0], requires_grad=True), _t([1.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompileWarning)
        assert_identical(cf(a), a * 2 + 1)
    assert_identical(cf(b), b * 2 + 1)
    assert len(cf.programs()) == 2


def test_non_tensor_arguments_are_part_of_the_signature() -> None:
    def f(x, k, mode="sum"):
        y = x * k
        return y.sum() if mode == "sum" else y.mean()

    cf = engine.compile(f)
    x = _t([1.0, 2.0, 4.0])
    for k, mode in ((2, "sum"), (3, "sum"), (2, "mean"), (2, "sum")):
        assert_identical(cf(x, k, mode=mode), f(x, k, mode=mode))
    assert len(cf.programs()) == 3


def test_strides_are_part_of_the_signature() -> None:
    # matmul's VJP lays a gradient out as its operand is (W.T's gradient column by column), so a
    # program traced for one layout must not replay for another of the same shape.
    def f(a, b):
        return engine.autograd_grad((a @ b).sum(), (a, b))

    cf = engine.compile(f)
    rng = np.random.default_rng(0)
    a_c, a_f = rng.standard_normal((4, 3)), rng.standard_normal((3, 4)).T  # C- and F-ordered
    b_c, b_f = rng.standard_normal((3, 4)), rng.standard_normal((4, 3)).T
    for av, bv in ((a_c, b_c), (a_f, b_c), (a_c, b_f), (a_f, b_f)):
        a, b = (engine.from_numpy(v).requires_grad_() for v in (av, bv))  # layouts kept
        got, want = cf(a, b), f(a, b)
        assert_identical(got, want)
        assert [g._data.flags.c_contiguous for g in got] == [g._data.flags.c_contiguous for g in want]
    assert len(cf.programs()) == 4


def test_grad_mode_is_part_of_the_signature() -> None:
    cf = engine.compile(lambda x: x.exp())
    x = _t([1.0, 2.0], requires_grad=True)
    with engine.no_grad():
        assert_identical(cf(x), x.exp())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompileWarning)
        assert_identical(cf(x), x.exp())
    assert len(cf.programs()) == 2


def test_python_control_flow_on_values_retraces_keyed_by_the_value() -> None:
    def f(x):
        if x.sum() > 0:
            return x * 2
        return x * 3

    cf = engine.compile(f)
    w = _no_warnings()
    try:
        for v in ([1.0, 2.0], [-1.0, -2.0], [3.0, 1.0], [-5.0, 1.0]):
            assert_identical(cf(_t(v)), f(_t(v)))
    finally:
        w.__exit__(None, None, None)
    assert len(cf.programs()) == 2  # one per branch: the guards pick the program


def test_values_read_into_python_never_go_stale() -> None:
    def f(x):
        return x * float(x.max()) + int(x.argmin())

    cf = engine.compile(f)
    for v in ([1.0, 2.0], [1.0, 2.0], [4.0, 2.0], [1.0, 2.0]):
        assert_identical(cf(_t(v)), f(_t(v)))
    assert len(cf.programs()) == 2


def test_too_many_values_fall_back_to_eager_with_one_warning() -> None:
    def f(x):
        return x * x.sum().item()

    cf = engine.compile(f)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(MAX_PROGRAMS + 4):
            x = _t([float(i), 1.0])
            assert_identical(cf(x), f(x))
    mine = [c for c in caught if issubclass(c.category, CompileWarning)]
    assert len(mine) == 1 and "guards failed" in str(mine[0].message)
    assert "test_compile.py" in str(mine[0].message)  # the line that read the value
    assert cf.eager_reasons()


def test_value_dependent_shapes_are_guarded() -> None:
    def f(x):
        y = x[x > 0]
        return y * 2, engine.autograd_grad(y.sum(), x)[0]

    cf = engine.compile(f)
    for v in ([1.0, -2.0, 3.0], [1.0, 2.0, 3.0], [-1.0, -2.0, 3.0], [1.0, -2.0, 3.0]):
        x = _t(v, requires_grad=True)
        assert_identical(cf(x), f(x))


def test_random_ops_fall_back_to_eager_with_one_warning() -> None:
    def f(x):
        return x * engine.rand(3)

    cf = engine.compile(f)
    x = _t([1.0, 2.0, 3.0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            engine.manual_seed(7)
            want = f(x)
            engine.manual_seed(7)
            assert_identical(cf(x), want)  # the trace's draws are undone: eager draws the same
    mine = [c for c in caught if issubclass(c.category, CompileWarning)]
    assert len(mine) == 1 and "random" in str(mine[0].message)


def test_dropout_falls_back_to_eager() -> None:
    import engine.nn.functional as F

    cf = engine.compile(lambda x: F.dropout(x, 0.5, training=True))
    x = _t(np.ones(16, np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompileWarning)
        engine.manual_seed(1)
        a = cf(x)
        engine.manual_seed(1)
        b = cf(x)
    engine.manual_seed(1)
    assert_identical(a, F.dropout(x, 0.5, training=True))
    assert_identical(a, b)
    assert "random" in cf.eager_reasons()[0]


def test_backward_into_argument_grads_accumulates_like_eager() -> None:
    def step(w, x):
        loss = ((w * x).tanh() ** 2).sum()
        loss.backward()
        return loss.detach()

    cf = engine.compile(step)
    x = _t([0.5, -1.0, 2.0])
    we, wc = _t([0.1, 0.2, 0.3], requires_grad=True), _t([0.1, 0.2, 0.3], requires_grad=True)
    for _ in range(3):  # .grad accumulates across calls; the second call has .grad as an input
        assert_identical(cf(wc, x), step(we, x))
        assert_identical(wc.grad, we.grad)
    assert not cf.eager_reasons()


def test_backward_into_a_captured_tensor_falls_back() -> None:
    w = _t([0.1, 0.2], requires_grad=True)

    def step(x):
        (w * x).sum().backward()
        return x * 1

    cf = engine.compile(step)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cf(_t([1.0, 2.0]))
        cf(_t([1.0, 2.0]))
    assert any("not an argument" in str(c.message) for c in caught)
    assert_identical(w.grad, _t([2.0, 4.0]))  # accumulated twice, like eager: never by the trace


def test_a_replaced_captured_tensor_retraces() -> None:
    state = {"w": _t([1.0, 2.0])}
    f = lambda x: x * state["w"]  # noqa: E731
    cf = engine.compile(f)
    x = _t([3.0, 4.0])
    assert_identical(cf(x), f(x))
    state["w"] = _t([5.0, 6.0])
    assert_identical(cf(x), f(x))


def test_higher_order_gradients_inside_the_compiled_function() -> None:
    def f(x):
        y = (x.sin() * x).sum()
        (g,) = engine.autograd_grad(y, x, create_graph=True)
        (h,) = engine.autograd_grad((g * g).sum(), x)
        return g.detach(), h

    cf = engine.compile(f)
    for v in ([0.3, -1.2, 2.0], [1.0, 0.5, -0.25]):
        x = _t(v, dtype=engine.float64, requires_grad=True)
        assert_identical(cf(x), f(x))
    assert len(cf.programs()) == 1


def test_outputs_that_require_grad_warn_once() -> None:
    cf = engine.compile(lambda x: x * 2)
    x = _t([1.0], requires_grad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = [cf(x) for _ in range(3)]
    assert len([c for c in caught if issubclass(c.category, CompileWarning)]) == 1
    assert not out[-1].requires_grad


def test_errors_propagate_and_leave_eager_untouched() -> None:
    from engine._autograd import _hooks

    def f(x):
        return x + engine.ones(3)

    cf = engine.compile(f)
    with pytest.raises(RuntimeError):
        cf(_t([1.0, 2.0]))
    assert _hooks.trace is None and np.asarray is engine._compile._ORIG["asarray"]
    assert_identical(cf(_t([1.0, 2.0, 3.0])), f(_t([1.0, 2.0, 3.0])))


def test_pytree_arguments_and_results() -> None:
    def f(params, batch):
        h = batch["x"] @ params[0] + params[1]
        loss = (h * h).mean()
        return {"loss": loss.detach(), "grads": engine.autograd_grad(loss, list(params))}

    cf = engine.compile(f)
    rng = np.random.default_rng(0)
    params = (_t(rng.standard_normal((4, 3)).astype(np.float32), requires_grad=True),
              _t(rng.standard_normal(3).astype(np.float32), requires_grad=True))
    for _ in range(2):
        batch = {"x": _t(rng.standard_normal((5, 4)).astype(np.float32))}
        assert_identical(cf(params, batch), f(params, batch))


def test_optimizations_keep_results_and_shrink_the_program() -> None:
    def f(x, w):
        h = (x @ w).tanh()
        loss = (h * h).mean() + (engine.ones(3) * 2).sum()  # a constant term: folded
        return engine.autograd_grad(loss, w)[0]

    rng = np.random.default_rng(1)
    x = _t(rng.standard_normal((256, 64)).astype(np.float32))
    w = _t(rng.standard_normal((64, 128)).astype(np.float32), requires_grad=True)
    plain, opt = engine.compile(f, optimize=False), engine.compile(f)
    for _ in range(2):
        assert_identical(plain(x, w), f(x, w))
        assert_identical(opt(x, w), f(x, w))
    p, q = plain.programs()[0], opt.programs()[0]
    assert len(q.steps) < len(p.steps)
    assert q.stats["freed"] > 0


def test_constant_results_are_fresh_arrays_each_call() -> None:
    cf = engine.compile(lambda x: engine.autograd_grad((x * 3.0).sum(), x)[0])  # a constant gradient
    x = _t([1.0, 2.0], requires_grad=True)
    a, b, c = cf(x), cf(x), cf(x)
    assert_identical(a, _t([3.0, 3.0]))
    assert not np.shares_memory(a._data, b._data) and not np.shares_memory(b._data, c._data)


@pytest.mark.parametrize("n", [1 << 10, 1 << 16])
def test_a_constant_repeating_one_value_is_held_as_that_value(n: int) -> None:
    # the gradient of sum(x * x) multiplies x by a folded array of 2s: one value, whatever n
    cf = engine.compile(lambda x: engine.autograd_grad((x * x).sum(), x)[0])
    x = _t(np.random.default_rng(n).standard_normal(n).astype(np.float32), requires_grad=True)
    for _ in range(2):
        assert_identical(cf(x), _t(2 * x._data))
    (prog,) = cf.programs()
    assert prog.held_bytes() <= 64  # not 4 * n
    g = cf(x)._data  # a result of its own, writable, not the constant
    g[0] = 0.0
    assert_identical(cf(x), _t(2 * x._data))


def test_constants_that_differ_in_bits_alone_stay_whole() -> None:
    c = np.zeros(4096, np.float32)
    c[1::2] = -0.0  # equal to 0.0, but not the same bits: x * c keeps the signs
    cf = engine.compile(lambda x: x * engine.tensor(c))
    x = _t(np.ones(4096, np.float32))
    for _ in range(2):
        got = cf(x)._data
        assert np.array_equal(np.signbit(got), np.signbit(c))
    assert cf.programs()[0].held_bytes() >= c.nbytes


def test_a_compiled_function_inside_another_is_inlined() -> None:
    inner = engine.compile(lambda x: (x * x).sum())

    def outer(x):
        y = inner(x) * 2 + (x * 3).sum()  # inner's result is a constant for autograd, as eagerly
        return y.detach(), engine.autograd_grad(y, x)[0]

    cf = engine.compile(outer)
    for v in ([1.0, 2.0], [3.0, -1.0]):
        x = _t(v, requires_grad=True)
        assert_identical(cf(x), outer(x))
    assert len(cf.programs()) == 1 and not cf.eager_reasons()


def test_item_of_one_element_is_guarded() -> None:
    def f(x):
        return x * x[1].item()

    cf = engine.compile(f)
    for v in ([1.0, 2.0], [1.0, 3.0], [5.0, 2.0]):
        assert_identical(cf(_t(v)), f(_t(v)))
    assert len(cf.programs()) == 2


def test_replacing_an_arguments_data_falls_back() -> None:
    # how an in-place op that rebinds a tensor's array would look to the tracer
    def f(x):
        x._data = x._data * 2
        return x + 1

    cf = engine.compile(f)
    a, b = _t([1.0, 2.0]), _t([1.0, 2.0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = cf(a)
    assert_identical(got, f(b))
    assert_identical(a, b)  # the argument changed once, as eagerly
    assert any("argument's data" in str(c.message) for c in caught)
