"""The functional autodiff API against torch's: ``engine.autograd.functional`` vs
``torch.autograd.functional``, ``engine.func`` vs ``torch.func``, ``autograd_grad(...,
is_grads_batched=True)`` and ``engine.autograd.Function``.

Every check runs the same function written for both libraries on the same float64 inputs and
compares values, shapes, result nesting (tuple vs tensor, list vs tuple) and ``requires_grad``;
errors are compared by type and message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.autograd.functional as TAF
import torch.func as TF

import engine
import engine.autograd.functional as EAF
import engine.func as EF

from .opsamples import SAMPLES

rng = np.random.default_rng(20240611)

# ---------------------------------------------------------------- comparison helpers


def assert_same(ours: Any, theirs: Any, path: str = "result", *, check_rg: bool = True,
                rtol: float = 1e-7, atol: float = 1e-9) -> None:
    """Same nesting (container types included), shapes, dtypes, values and requires_grad."""
    if isinstance(theirs, (tuple, list)):
        assert type(ours) is type(theirs), f"{path}: {type(ours).__name__} vs torch's {type(theirs).__name__}"
        assert len(ours) == len(theirs), f"{path}: {len(ours)} vs torch's {len(theirs)} entries"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{path}[{i}]", check_rg=check_rg, rtol=rtol, atol=atol)
        return
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and list(ours) == list(theirs), path
        for k in theirs:
            assert_same(ours[k], theirs[k], f"{path}[{k!r}]", check_rg=check_rg, rtol=rtol, atol=atol)
        return
    if theirs is None:
        assert ours is None, f"{path}: expected None"
        return
    assert isinstance(ours, engine.Tensor), f"{path}: {type(ours).__name__}"
    assert tuple(ours.shape) == tuple(theirs.shape), f"{path}: {tuple(ours.shape)} vs {tuple(theirs.shape)}"
    assert str(ours.dtype).split(".")[-1] == str(theirs.dtype).split(".")[-1], f"{path}: dtype"
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=rtol, atol=atol,
                               err_msg=path)
    if check_rg:
        assert ours.requires_grad == theirs.requires_grad, (
            f"{path}: requires_grad {ours.requires_grad} vs torch's {theirs.requires_grad}")


def same_error(ours: Callable[[], Any], theirs: Callable[[], Any], *, exact: bool = True,
               phrase: str | None = None) -> None:
    """Both raise the same exception type; the same message (or both contain ``phrase``)."""
    with pytest.raises(Exception) as te:
        theirs()
    with pytest.raises(type(te.value)) as oe:
        ours()
    assert type(oe.value) is type(te.value), (type(oe.value), type(te.value))
    if phrase is not None:
        assert phrase in str(te.value), f"torch's message changed: {te.value}"
        assert phrase in str(oe.value), str(oe.value)
    elif exact:
        assert str(oe.value) == str(te.value)


def E(a: np.ndarray, rg: bool = False) -> engine.Tensor:
    return engine.tensor(a, requires_grad=rg)


def T(a: np.ndarray, rg: bool = False) -> torch.Tensor:
    return torch.tensor(a, requires_grad=rg)


def both(*arrays: np.ndarray, rg: bool = False) -> tuple[tuple, tuple]:
    return tuple(E(a, rg) for a in arrays), tuple(T(a, rg) for a in arrays)


# ---------------------------------------------------------------- the functions (engine, torch)
W1, B1 = rng.standard_normal((5, 4)), rng.standard_normal(5)
W2, B2 = rng.standard_normal((3, 5)), rng.standard_normal(3)
X, Y = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)


def mlp_loss(lib: Any) -> Callable:
    """Cross-entropy of a tanh MLP: a scalar function of (W1, b1, W2, b2)."""
    F = lib.nn.functional
    x, y = (engine.tensor(X), engine.tensor(Y)) if lib is engine else (torch.tensor(X), torch.tensor(Y))

    def f(w1, b1, w2, b2):
        h = lib.tanh(x @ w1.T + b1)
        return F.cross_entropy(h @ w2.T + b2, y)

    return f


def several_inputs(lib: Any) -> Callable:
    """A scalar function of three tensors of different shapes, with cross terms."""

    def f(a, m, c):
        return (lib.sin(m @ a) * c).sum() + (a ** 3).sum() * c.prod() + lib.exp(-m ** 2).mean()

    return f


def vector_valued(lib: Any) -> Callable:
    """A vector-valued function of one vector (R^4 -> R^5)."""

    def f(x):
        return lib.stack([x[0] * x[1], lib.sin(x[2]) * x[3], (x ** 2).sum(), lib.exp(x[1] - x[3]),
                          lib.tanh(x).sum() * x[0]])

    return f


def two_outputs(lib: Any) -> Callable:
    """A tuple of outputs from a tuple of inputs (one output ignores the second input)."""

    def f(x, m):
        return m @ lib.tanh(x), (x * x).sum()

    return f


MLP_PARAMS = (W1, B1, W2, B2)
SEVERAL = (rng.standard_normal(3), rng.standard_normal((2, 3)), rng.standard_normal(2))
VEC = (rng.standard_normal(4),)
TWO = (rng.standard_normal(3), rng.standard_normal((2, 3)))

SCALAR_FUNCS = {"mlp_loss": (mlp_loss, MLP_PARAMS), "several_inputs": (several_inputs, SEVERAL)}
ALL_FUNCS = {**SCALAR_FUNCS, "vector_valued": (vector_valued, VEC), "two_outputs": (two_outputs, TWO)}


def call_both(api_e: Callable, api_t: Callable, name: str, *, single: bool = False, v: str | None = None,
              **kw: Any) -> tuple[Any, Any, tuple, tuple]:
    """Run ``api(func, inputs[, v], **kw)`` for the engine and torch; inputs as a tuple, or as a
    bare tensor when ``single`` (only one-input functions)."""
    make, arrays = ALL_FUNCS[name]
    ie, it = both(*arrays)
    args_e: list[Any] = [make(engine), ie[0] if single else ie]
    args_t: list[Any] = [make(torch), it[0] if single else it]
    if v is not None:
        if v == "inputs":
            vs = [rng.standard_normal(a.shape) for a in arrays]
        else:  # shaped like the outputs
            with torch.no_grad():
                out = make(torch)(*it)
            vs = [rng.standard_normal(tuple(o.shape)) for o in (out if isinstance(out, tuple) else (out,))]
        args_e.append(E(vs[0]) if single or (v == "outputs" and len(vs) == 1 and name != "two_outputs")
                      else tuple(E(a) for a in vs))
        args_t.append(T(vs[0]) if single or (v == "outputs" and len(vs) == 1 and name != "two_outputs")
                      else tuple(T(a) for a in vs))
    return api_e(*args_e, **kw), api_t(*args_t, **kw), ie, it


# ---------------------------------------------------------------- autograd.functional: values
@pytest.mark.parametrize("name", list(ALL_FUNCS))
@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("create_graph", [False, True])
def test_jacobian_reverse_mode(name: str, vectorize: bool, create_graph: bool) -> None:
    ours, theirs, _, _ = call_both(EAF.jacobian, TAF.jacobian, name, vectorize=vectorize,
                                   create_graph=create_graph)
    assert_same(ours, theirs)


@pytest.mark.parametrize("name", list(ALL_FUNCS))
def test_jacobian_forward_mode(name: str) -> None:
    ours, theirs, _, _ = call_both(EAF.jacobian, TAF.jacobian, name, vectorize=True, strategy="forward-mode")
    assert_same(ours, theirs)  # lists of lists where torch gives them


def test_jacobian_single_tensor_input_and_output() -> None:
    for vectorize in (False, True):
        ours, theirs, _, _ = call_both(EAF.jacobian, TAF.jacobian, "vector_valued", single=True,
                                       vectorize=vectorize)
        assert_same(ours, theirs)
    ours, theirs, _, _ = call_both(EAF.jacobian, TAF.jacobian, "vector_valued", single=True,
                                   vectorize=True, strategy="forward-mode")
    assert_same(ours, theirs)


@pytest.mark.parametrize("name", list(SCALAR_FUNCS))
@pytest.mark.parametrize(("vectorize", "outer"), [(False, "reverse-mode"), (True, "reverse-mode"),
                                                  (True, "forward-mode")])
def test_hessian(name: str, vectorize: bool, outer: str) -> None:
    ours, theirs, _, _ = call_both(EAF.hessian, TAF.hessian, name, vectorize=vectorize,
                                   outer_jacobian_strategy=outer)
    # torch's forward-over-reverse Hessian leaks requires_grad from its inner graph; values count.
    assert_same(ours, theirs, check_rg=outer == "reverse-mode", rtol=1e-6)


def test_hessian_single_input_and_create_graph() -> None:
    ours, theirs, _, _ = call_both(EAF.hessian, TAF.hessian, "mlp_loss", create_graph=True)
    assert_same(ours, theirs, rtol=1e-6)
    f_e = lambda x: (engine.sin(x) ** 3).sum()
    f_t = lambda x: (torch.sin(x) ** 3).sum()
    x = rng.standard_normal(4)
    assert_same(EAF.hessian(f_e, E(x)), TAF.hessian(f_t, T(x)))


@pytest.mark.parametrize(("api", "name"), [(a, n) for a in ("vjp", "jvp", "hvp", "vhp") for n in ALL_FUNCS
                                             if a in ("vjp", "jvp") or n in SCALAR_FUNCS])
@pytest.mark.parametrize("create_graph", [False, True])
def test_vector_products(api: str, name: str, create_graph: bool) -> None:
    v = "outputs" if api == "vjp" else "inputs"
    ours, theirs, _, _ = call_both(getattr(EAF, api), getattr(TAF, api), name, v=v, create_graph=create_graph)
    assert_same(ours, theirs, rtol=1e-6)


def test_v_may_be_none_for_one_element() -> None:
    f_e, f_t = (lambda x: (x ** 3).sum()), (lambda x: (x ** 3).sum())
    x = np.array([0.7])
    for api in ("vjp", "jvp", "hvp", "vhp"):
        assert_same(getattr(EAF, api)(f_e, E(x)), getattr(TAF, api)(f_t, T(x)))
    assert_same(EAF.vjp(f_e, E(x), None), TAF.vjp(f_t, T(x), None))


@pytest.mark.parametrize("api", ["vjp", "jvp", "hvp", "vhp", "jacobian", "hessian"])
def test_create_graph_results_differentiate_back_to_the_inputs(api: str) -> None:
    """With create_graph=True and inputs that require grad, the results are differentiable with
    respect to those inputs (torch's view_as trick): their gradients match torch's."""
    make, arrays = SCALAR_FUNCS["several_inputs"]
    ie, it = both(*arrays, rg=True)
    vs = [rng.standard_normal(a.shape) for a in arrays]
    if api == "vjp":
        ve, vt = E(np.array(1.3)), T(np.array(1.3))
    else:
        ve, vt = tuple(E(a) for a in vs), tuple(T(a) for a in vs)
    extra_e = () if api in ("jacobian", "hessian") else (ve,)
    extra_t = () if api in ("jacobian", "hessian") else (vt,)
    re_ = getattr(EAF, api)(make(engine), ie, *extra_e, create_graph=True)
    rt = getattr(TAF, api)(make(torch), it, *extra_t, create_graph=True)
    assert_same(re_, rt, rtol=1e-6)
    flat_e = [t for t in _flat(re_) if t.requires_grad]
    flat_t = [t for t in _flat(rt) if t.requires_grad]
    assert len(flat_e) == len(flat_t) > 0
    se = sum((t * t).sum() for t in flat_e)
    st = sum((t * t).sum() for t in flat_t)
    assert_same(engine.autograd_grad(se, ie, allow_unused=True),
                torch.autograd.grad(st, it, allow_unused=True), rtol=1e-6)


def _flat(x: Any) -> list:
    if isinstance(x, (tuple, list)):
        return [t for e in x for t in _flat(e)]
    return [x]


def test_outputs_not_requiring_grad_give_zeros() -> None:
    f_e = lambda x, y: (x * 2, engine.ones(2, dtype=engine.float64))
    f_t = lambda x, y: (x * 2, torch.ones(2, dtype=torch.float64))
    ie, it = both(rng.standard_normal(2), rng.standard_normal(3))
    assert_same(EAF.jacobian(f_e, ie), TAF.jacobian(f_t, it))
    ones = np.ones(2)
    assert_same(EAF.vjp(f_e, ie, (E(ones), E(ones))), TAF.vjp(f_t, it, (T(ones), T(ones))))
    assert_same(EAF.jvp(f_e, ie, ie), TAF.jvp(f_t, it, it))


# ---------------------------------------------------------------- autograd.functional: errors
def _lin_e(x):
    return 2 * x


def _lin_t(x):
    return 2 * x


def _sq_e(x):
    return (x * x).sum()


def _sq_t(x):
    return (x * x).sum()


x3 = rng.standard_normal(3)
ERROR_CASES = {
    # strict mode
    "jacobian: output independent of input": (
        lambda m: m.jacobian(lambda x, y: x * 2, (_a(m, x3), _a(m, x3)), strict=True)),
    "jacobian: output does not require grad": (
        lambda m: m.jacobian(lambda x: _c(m, x3), _a(m, x3), strict=True)),
    "jacobian: strict + create_graph on a linear function": (
        lambda m: m.jacobian(lambda x: x.sum() * 1.0, _a(m, x3), strict=True, create_graph=True)),
    "jacobian: strict + vectorize": (
        lambda m: m.jacobian(_fn(m, "lin"), _a(m, x3), strict=True, vectorize=True)),
    "jacobian: forward-mode + strict": (
        lambda m: m.jacobian(_fn(m, "lin"), _a(m, x3), strict=True, strategy="forward-mode")),
    "jacobian: forward-mode + create_graph": (
        lambda m: m.jacobian(_fn(m, "lin"), _a(m, x3), create_graph=True, strategy="forward-mode")),
    "jacobian: forward-mode without vectorize": (
        lambda m: m.jacobian(_fn(m, "lin"), _a(m, x3), strategy="forward-mode")),
    "jacobian: unknown strategy": (lambda m: m.jacobian(_fn(m, "lin"), _a(m, x3), strategy="sideways")),
    "hessian: unknown strategy": (lambda m: m.hessian(_fn(m, "sq"), _a(m, x3), outer_jacobian_strategy="up")),
    "hessian: strict on a linear function": (
        lambda m: m.hessian(lambda x: x.sum() * 3.0, _a(m, x3), strict=True)),
    "hessian: strict, linear in one input": (
        lambda m: m.hessian(lambda x, y: (x * x).sum() + y.sum(), (_a(m, x3), _a(m, x3)), strict=True)),
    "hessian: vector output": (lambda m: m.hessian(_fn(m, "lin"), _a(m, x3))),
    "hessian: tuple output": (lambda m: m.hessian(lambda x: (x.sum(), x.sum()), _a(m, x3))),
    "vjp: strict, independent input": (
        lambda m: m.vjp(lambda x, y: x.sum(), (_a(m, x3), _a(m, x3)), strict=True)),
    "vjp: v of the wrong size": (lambda m: m.vjp(_fn(m, "lin"), _a(m, x3), _a(m, np.ones(4)))),
    "vjp: v tuple of the wrong length": (
        lambda m: m.vjp(lambda x: (x, x), _a(m, x3), (_a(m, x3),))),
    "vjp: v entry of the wrong size": (
        lambda m: m.vjp(lambda x: (x, x), _a(m, x3), (_a(m, x3), _a(m, np.ones(2))))),
    "vjp: v missing for a vector output": (lambda m: m.vjp(_fn(m, "lin"), _a(m, x3))),
    "vjp: v given for one output as a pair": (lambda m: m.vjp(_fn(m, "lin"), _a(m, x3), (_a(m, x3),) * 2)),
    "jvp: v missing for a vector input": (lambda m: m.jvp(_fn(m, "lin"), _a(m, x3))),
    "jvp: strict, constant output": (lambda m: m.jvp(lambda x: _c(m, x3), _a(m, x3), _a(m, x3), strict=True)),
    "jvp: strict, gradient independent of the inputs": (
        lambda m: m.jvp(lambda x, y: x * 1.0, (_a(m, x3), _a(m, x3)), (_a(m, x3), _a(m, x3)), strict=True)),
    "hvp: strict on a linear function": (lambda m: m.hvp(lambda x: x.sum() * 2.0, _a(m, x3), _a(m, x3),
                                                         strict=True)),
    "hvp: vector output": (lambda m: m.hvp(_fn(m, "lin"), _a(m, x3), _a(m, x3))),
    "vhp: strict, independent input": (
        lambda m: m.vhp(lambda x, y: (x * x).sum(), (_a(m, x3), _a(m, x3)), (_a(m, x3), _a(m, x3)),
                        strict=True)),
    "vhp: tuple output": (lambda m: m.vhp(lambda x: (x.sum(),), _a(m, x3), _a(m, x3))),
    "vhp: output with several elements": (lambda m: m.vhp(lambda x: x * x, _a(m, x3), _a(m, x3))),
    "inputs not tensors": (lambda m: m.jacobian(_fn(m, "lin"), (_a(m, x3), 3.0))),
    "input not a tensor": (lambda m: m.vjp(_fn(m, "lin"), [1.0, 2.0])),
    "function output not a tensor": (lambda m: m.jacobian(lambda x: 3.0, _a(m, x3))),
}


def _a(m: Any, a: np.ndarray) -> Any:
    return E(a) if m is EAF else T(a)


def _c(m: Any, a: np.ndarray) -> Any:
    return E(a) if m is EAF else T(a)


def _fn(m: Any, which: str) -> Callable:
    return {("lin", True): _lin_e, ("lin", False): _lin_t, ("sq", True): _sq_e, ("sq", False): _sq_t}[
        (which, m is EAF)]


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_functional_errors_match_torch(case: str) -> None:
    fn = ERROR_CASES[case]
    with pytest.raises(Exception) as te:
        fn(TAF)
    with pytest.raises(Exception) as oe:
        fn(EAF)
    assert type(oe.value) is type(te.value), (type(oe.value), te.value)
    # torch prints types as "<class 'torch.Tensor'>"-style reprs; ours name engine's classes
    assert str(oe.value).replace("engine.tensor.Tensor", "torch.Tensor") == str(te.value)


# ---------------------------------------------------------------- is_grads_batched
def test_is_grads_batched_gives_the_jacobian_in_one_call() -> None:
    x0, m0 = rng.standard_normal(3), rng.standard_normal((4, 3))
    (xe, me), (xt, mt) = both(x0, m0, rg=True)
    ye, yt = engine.tanh(me @ xe) * xe.sum(), torch.tanh(mt @ xt) * xt.sum()
    eye = np.eye(4)
    ours = engine.autograd_grad(ye, (xe, me), E(eye), is_grads_batched=True)
    theirs = torch.autograd.grad(yt, (xt, mt), T(eye), is_grads_batched=True)
    assert_same(ours, theirs)
    assert_same(ours[0], TAF.jacobian(lambda x: torch.tanh(mt.detach() @ x) * x.sum(), xt.detach()))


def test_is_grads_batched_several_outputs_unused_and_create_graph() -> None:
    (xe, we), (xt, wt) = both(rng.standard_normal(3), rng.standard_normal(3), rg=True)
    outs_e, outs_t = (xe * xe, (xe * 3).sum()), (xt * xt, (xt * 3).sum())
    g = rng.standard_normal((5, 3)), rng.standard_normal(5)
    kw = {"retain_graph": True, "is_grads_batched": True}
    assert_same(engine.autograd_grad(outs_e, (xe, we), (E(g[0]), E(g[1])), allow_unused=True, **kw),
                torch.autograd.grad(outs_t, (xt, wt), (T(g[0]), T(g[1])), allow_unused=True, **kw))
    assert_same(engine.autograd_grad(outs_e, (xe, we), (E(g[0]), E(g[1])), materialize_grads=True, **kw),
                torch.autograd.grad(outs_t, (xt, wt), (T(g[0]), T(g[1])), materialize_grads=True, **kw))
    same_error(lambda: engine.autograd_grad(outs_e, (xe, we), (E(g[0]), E(g[1])), **kw),
               lambda: torch.autograd.grad(outs_t, (xt, wt), (T(g[0]), T(g[1])), **kw))
    ge = engine.autograd_grad(outs_e[0], xe, E(np.eye(3)), create_graph=True, **kw)
    gt = torch.autograd.grad(outs_t[0], xt, T(np.eye(3)), create_graph=True, **kw)
    assert_same(ge, gt)
    assert_same(engine.autograd_grad(ge[0].sum(), xe), torch.autograd.grad(gt[0].sum(), xt))


def test_is_grads_batched_errors_match_torch() -> None:
    (xe,), (xt,) = both(rng.standard_normal(3), rg=True)
    ye, yt = xe * 2, xt * 2
    kw = {"retain_graph": True, "is_grads_batched": True}
    # the batched shape check, in torch's words
    same_error(lambda: engine.autograd_grad(ye, xe, E(np.ones(3)), **kw),
               lambda: torch.autograd.grad(yt, xt, T(np.ones(3)), **kw))
    same_error(lambda: engine.autograd_grad(ye, xe, E(np.ones((2, 4))), **kw),
               lambda: torch.autograd.grad(yt, xt, T(np.ones((2, 4))), **kw))
    # batch sizes that disagree, and a scalar output's implicit (unbatched) gradient
    same_error(lambda: engine.autograd_grad((ye, ye.sum()), xe, (E(np.ones((4, 3))), E(np.ones(5))), **kw),
               lambda: torch.autograd.grad((yt, yt.sum()), xt, (T(np.ones((4, 3))), T(np.ones(5))), **kw))
    same_error(lambda: engine.autograd_grad(ye.sum(), xe, None, **kw),
               lambda: torch.autograd.grad(yt.sum(), xt, None, **kw))


def test_is_grads_batched_frees_the_graph_after_the_last_row() -> None:
    (xe,), (xt,) = both(rng.standard_normal(3), rg=True)
    ye, yt = engine.exp(xe), torch.exp(xt)
    engine.autograd_grad(ye, xe, E(np.eye(3)), is_grads_batched=True)
    torch.autograd.grad(yt, xt, T(np.eye(3)), is_grads_batched=True)
    same_error(lambda: engine.autograd_grad(ye, xe, E(np.eye(3)), is_grads_batched=True),
               lambda: torch.autograd.grad(yt, xt, T(np.eye(3)), is_grads_batched=True))


# ---------------------------------------------------------------- engine.func
def mlp_params(lib: Any) -> dict:
    conv = engine.tensor if lib is engine else torch.tensor
    return {"w1": conv(W1), "b1": conv(B1), "w2": conv(W2), "b2": conv(B2)}


def mlp_dict_loss(lib: Any) -> Callable:
    f = mlp_loss(lib)
    return lambda p: f(p["w1"], p["b1"], p["w2"], p["b2"])


@pytest.mark.parametrize("transform", ["grad", "grad_and_value"])
def test_grad_of_mlp_loss_over_a_dict_of_params(transform: str) -> None:
    ours = getattr(EF, transform)(mlp_dict_loss(engine))(mlp_params(engine))
    theirs = getattr(TF, transform)(mlp_dict_loss(torch))(mlp_params(torch))
    assert_same(ours, theirs)


@pytest.mark.parametrize("argnums", [0, 1, 2, -1, (0, 2), (2, 0, 1)])
@pytest.mark.parametrize("has_aux", [False, True])
def test_grad_argnums_and_has_aux(argnums: Any, has_aux: bool) -> None:
    def mk(lib: Any) -> Callable:
        f = several_inputs(lib)
        if not has_aux:
            return f
        return lambda a, m, c: (f(a, m, c), {"double": a * 2, "sq": (m ** 2,)})

    ie, it = both(*SEVERAL)
    for name in ("grad", "grad_and_value"):
        ours = getattr(EF, name)(mk(engine), argnums=argnums, has_aux=has_aux)(*ie)
        theirs = getattr(TF, name)(mk(torch), argnums=argnums, has_aux=has_aux)(*it)
        assert_same(ours, theirs) if not has_aux else _same_with_aux(ours, theirs)


def _same_with_aux(ours: Any, theirs: Any) -> None:
    g_o, rest_o = ours
    g_t, rest_t = theirs
    assert_same(g_o, g_t)
    aux_o = rest_o[1] if isinstance(rest_o, tuple) else rest_o
    aux_t = rest_t[1] if isinstance(rest_t, tuple) else rest_t
    if isinstance(rest_t, tuple):
        assert_same(rest_o[0], rest_t[0])
    assert_same(aux_o, aux_t)


def test_per_sample_gradients_with_vmap_of_grad() -> None:
    def per_example(lib: Any) -> Callable:
        F = lib.nn.functional

        def loss(p, x, y):
            h = lib.tanh(x @ p["w1"].T + p["b1"])
            return F.cross_entropy((h @ p["w2"].T + p["b2"])[None], y[None])

        return loss

    xs, ys = (engine.tensor(X), engine.tensor(Y)), (torch.tensor(X), torch.tensor(Y))
    ours = EF.vmap(EF.grad(per_example(engine)), in_dims=(None, 0, 0))(mlp_params(engine), *xs)
    theirs = TF.vmap(TF.grad(per_example(torch)), in_dims=(None, 0, 0))(mlp_params(torch), *ys)
    assert_same(ours, theirs)
    # and they average to the batch gradient
    full = EF.grad(mlp_dict_loss(engine))(mlp_params(engine))
    for k in full:
        np.testing.assert_allclose(ours[k].numpy().mean(0), full[k].numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(ALL_FUNCS))
@pytest.mark.parametrize("transform", ["jacrev", "jacfwd"])
def test_jacrev_jacfwd(name: str, transform: str) -> None:
    make, arrays = ALL_FUNCS[name]
    ie, it = both(*arrays)
    argnums = tuple(range(len(arrays)))
    assert_same(getattr(EF, transform)(make(engine), argnums=argnums)(*ie),
                getattr(TF, transform)(make(torch), argnums=argnums)(*it))
    assert_same(getattr(EF, transform)(make(engine))(*ie), getattr(TF, transform)(make(torch))(*it))


@pytest.mark.parametrize("transform", ["jacrev", "jacfwd"])
def test_jacobian_transforms_with_has_aux_and_pytree_outputs(transform: str) -> None:
    def mk(lib: Any) -> Callable:
        return lambda x, y: ({"a": lib.sin(x) * y.sum(), "b": (x * y[:3]).sum()}, x.mean())

    ie, it = both(rng.standard_normal(3), rng.standard_normal(5))
    ours = getattr(EF, transform)(mk(engine), argnums=(0, 1), has_aux=True)(*ie)
    theirs = getattr(TF, transform)(mk(torch), argnums=(0, 1), has_aux=True)(*it)
    assert_same(ours, theirs)


@pytest.mark.parametrize("name", list(SCALAR_FUNCS))
def test_func_hessian(name: str) -> None:
    make, arrays = SCALAR_FUNCS[name]
    ie, it = both(*arrays)
    assert_same(EF.hessian(make(engine), argnums=(0, 1))(*ie), TF.hessian(make(torch), argnums=(0, 1))(*it),
                rtol=1e-6)


@pytest.mark.parametrize("name", list(ALL_FUNCS))
def test_func_vjp_and_jvp(name: str) -> None:
    make, arrays = ALL_FUNCS[name]
    ie, it = both(*arrays)
    out_e, fn_e = EF.vjp(make(engine), *ie)
    out_t, fn_t = TF.vjp(make(torch), *it)
    assert_same(out_e, out_t)
    for _ in range(2):  # vjp_fn can be called again
        cts = [rng.standard_normal(tuple(o.shape)) for o in _flat(out_t)]
        ct_e = tuple(E(c) for c in cts) if isinstance(out_t, tuple) else E(cts[0])
        ct_t = tuple(T(c) for c in cts) if isinstance(out_t, tuple) else T(cts[0])
        assert_same(fn_e(ct_e), fn_t(ct_t))
    tans = [rng.standard_normal(a.shape) for a in arrays]
    assert_same(EF.jvp(make(engine), ie, tuple(E(t) for t in tans)),
                TF.jvp(make(torch), it, tuple(T(t) for t in tans)))


def test_func_vjp_and_jvp_with_aux() -> None:
    f_e = lambda x: (engine.sin(x), {"c": engine.cos(x)})
    f_t = lambda x: (torch.sin(x), {"c": torch.cos(x)})
    (xe,), (xt,) = both(rng.standard_normal(3))
    oe, fe, ae = EF.vjp(f_e, xe, has_aux=True)
    ot, ft, at = TF.vjp(f_t, xt, has_aux=True)
    assert_same((oe, ae), (ot, at))
    assert_same(fe(E(np.ones(3))), ft(T(np.ones(3))))
    assert_same(EF.jvp(f_e, (xe,), (E(np.ones(3)),), has_aux=True),
                TF.jvp(f_t, (xt,), (T(np.ones(3)),), has_aux=True))


def test_transforms_nest_and_compose_with_autograd_grad() -> None:
    (xe,), (xt,) = both(rng.standard_normal(3))
    cube_e, cube_t = (lambda x: (x ** 3).sum()), (lambda x: (x ** 3).sum())
    # grad of grad, and a closure over the outer variable (no perturbation confusion)
    assert_same(EF.grad(lambda x: EF.grad(cube_e)(x).sum())(xe),
                TF.grad(lambda x: TF.grad(cube_t)(x).sum())(xt))
    inner_e = lambda x: EF.grad(lambda y: (x * y ** 2).sum())(x).sum()
    inner_t = lambda x: TF.grad(lambda y: (x * y ** 2).sum())(x).sum()
    assert_same(EF.grad(inner_e)(xe), TF.grad(inner_t)(xt))
    # grad of grad through ops that save intermediate results (the inner backward's graph reads them)
    (se,), (st,) = both(np.array(0.7))
    assert_same(EF.grad(EF.grad(lambda s: s ** 3 * engine.sin(s)))(se),
                TF.grad(TF.grad(lambda s: s ** 3 * torch.sin(s)))(st))
    assert_same(EF.grad(EF.grad(lambda s: engine.tanh(s) ** 2))(se),
                TF.grad(TF.grad(lambda s: torch.tanh(s) ** 2))(st))
    # a transform's result stays differentiable for autograd_grad when its input requires grad
    (xe,), (xt,) = both(rng.standard_normal(3), rg=True)
    ge, gt = EF.grad(cube_e)(xe), TF.grad(cube_t)(xt)
    assert_same(ge, gt)
    assert_same(engine.autograd_grad(ge.sum(), xe), torch.autograd.grad(gt.sum(), xt))
    # ... and when a captured tensor requires grad
    (we,), (wt,) = both(rng.standard_normal(3), rg=True)
    (ze,), (zt,) = both(rng.standard_normal(3))
    ge, gt = EF.grad(lambda z: (z * z * we).sum())(ze), TF.grad(lambda z: (z * z * wt).sum())(zt)
    assert_same(ge, gt)
    assert_same(engine.autograd_grad(ge.sum(), we), torch.autograd.grad(gt.sum(), wt))
    # ... but not under no_grad
    with engine.no_grad():
        assert not EF.grad(cube_e)(xe).requires_grad
    # vmap of jacrev, jacfwd of jacrev
    xs = rng.standard_normal((4, 3))
    assert_same(EF.vmap(EF.jacrev(engine.sin))(E(xs)), TF.vmap(TF.jacrev(torch.sin))(T(xs)))
    assert_same(EF.jacfwd(EF.jacrev(cube_e))(E(xs[0])), TF.jacfwd(TF.jacrev(cube_t))(T(xs[0])))


def test_vmap_in_dims_out_dims_and_kwargs() -> None:
    a, b, m = rng.standard_normal((4, 3)), rng.standard_normal(3), rng.standard_normal((3, 5))
    cases = [
        (lambda lib: (lambda x, y: x @ y), dict(in_dims=(0, None)), (a, b)),
        (lambda lib: (lambda x, y: x * y), dict(in_dims=(1, None)), (m.T.copy(), np.ones(5))),
        (lambda lib: (lambda x: (x, x.sum())), dict(out_dims=(1, 0)), (a,)),
        (lambda lib: (lambda x: {"s": x.sum(), "t": x * 2}), dict(out_dims={"s": 0, "t": 1}), (a,)),
        (lambda lib: (lambda x, y: x + y), dict(in_dims=(0, -1)), (a, m[:, :4].copy())),
        (lambda lib: (lambda t: t[0] * t[1]), dict(in_dims=((0, None),)), ((a, b),)),
        (lambda lib: (lambda x: x.sum()), dict(), (np.zeros((0, 3)),)),
    ]
    for mk, kw, args in cases:
        ae = tuple(tuple(E(x) for x in y) if isinstance(y, tuple) else E(y) for y in args)
        at = tuple(tuple(T(x) for x in y) if isinstance(y, tuple) else T(y) for y in args)
        assert_same(EF.vmap(mk(engine), **kw)(*ae), TF.vmap(mk(torch), **kw)(*at))
    assert_same(EF.vmap(lambda x, s=1.0: x * s)(E(a), s=E(b)), TF.vmap(lambda x, s=1.0: x * s)(T(a), s=T(b)))


FUNC_ERRORS = {
    "grad: vector output": lambda m, lib: m.grad(lambda x: x * 2)(_v(lib)),
    "grad: list output": lambda m, lib: m.grad(lambda x: [x.sum()])(_v(lib)),
    "grad: has_aux without a pair": lambda m, lib: m.grad(lambda x: x.sum(), has_aux=True)(_v(lib)),
    "grad: aux not tensors": lambda m, lib: m.grad(lambda x: (x.sum(), 3), has_aux=True)(_v(lib)),
    "grad: argnums out of range": lambda m, lib: m.grad(lambda x: x.sum(), argnums=1)(_v(lib)),
    "grad: argnums of a bad type": lambda m, lib: m.grad(lambda x: x.sum(), argnums=1.0)(_v(lib)),
    "grad: empty argnums": lambda m, lib: m.grad(lambda x: x.sum(), argnums=())(_v(lib)),
    "grad: repeated argnums": lambda m, lib: m.grad(lambda x, y: x.sum(), argnums=(0, 0))(_v(lib), _v(lib)),
    "grad: a float argument": lambda m, lib: m.grad(lambda x: x)(3.0),
    "grad: an integer tensor": lambda m, lib: m.grad(lambda x: x.sum())(lib.ones(3, dtype=lib.int64)),
    "jvp: primals not a tuple": lambda m, lib: m.jvp(lambda x: x, _v(lib), (_v(lib),)),
    "jvp: tangent of another size": lambda m, lib: m.jvp(lambda x: x, (_v(lib),), (lib.ones(4),)),
    "jvp: a float primal": lambda m, lib: m.jvp(lambda x: x, (3.0,), (_v(lib),)),
    "jvp: no primals": lambda m, lib: m.jvp(lambda: lib.ones(()), (), ()),
    "jvp: output not a tensor": lambda m, lib: m.jvp(lambda x: 3, (_v(lib),), (_v(lib),)),
    "vjp: output not a tensor": lambda m, lib: m.vjp(lambda x: 3.0, _v(lib)),
    "vjp: has_aux without a pair": lambda m, lib: m.vjp(lambda x: x, _v(lib), has_aux=True),
    "vjp_fn: cotangent of another size": lambda m, lib: m.vjp(lambda x: x * 2, _v(lib))[1](lib.ones(4)),
    "vmap: sizes disagree": lambda m, lib: m.vmap(lambda a, b: a + b)(lib.ones(2), lib.ones(3)),
    "vmap: in_dims out of range": lambda m, lib: m.vmap(lambda a: a, in_dims=1)(_v(lib)),
    "vmap: in_dims of a bad type": lambda m, lib: m.vmap(lambda a: a, in_dims=0.0)(_v(lib)),
    "vmap: a 0-d input": lambda m, lib: m.vmap(lambda a: a)(lib.ones(())),
    "vmap: a float input": lambda m, lib: m.vmap(lambda a: a)(3.0),
    "vmap: non-tensor output": lambda m, lib: m.vmap(lambda a: 3.0)(_v(lib)),
    "vmap: out_dims out of range": lambda m, lib: m.vmap(lambda a: a, out_dims=2)(lib.ones(2, 3)),
    "vmap: bad randomness": lambda m, lib: m.vmap(lambda a: a, randomness="foo")(_v(lib)),
}
# torch's message embeds its pytree reprs or its own type names there; the type and phrase match.
FUNC_ERROR_PHRASES = {
    "vjp_fn: cotangent of another size": "Mismatch in shape",
    "vmap: in_dims of a bad type": "expected `in_dims` to be int or a (potentially nested) tuple",
    "jvp: tangent of another size": "Trying to set a forward gradient that has a different size",
}


def _v(lib: Any) -> Any:
    return lib.tensor([1.0, 2.0, 3.0])


@pytest.mark.parametrize("case", list(FUNC_ERRORS))
def test_func_errors_match_torch(case: str) -> None:
    fn = FUNC_ERRORS[case]
    phrase = FUNC_ERROR_PHRASES.get(case)
    same_error(lambda: fn(EF, engine), lambda: fn(TF, torch), phrase=phrase)


# ---------------------------------------------------------------- autograd.Function
class CubeE(engine.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(x)
        ctx.scale = scale
        return x ** 3 * scale

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * g * x ** 2 * ctx.scale, None


class CubeT(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(x)
        ctx.scale = scale
        return x ** 3 * scale

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * g * x ** 2 * ctx.scale, None


class ExpE(engine.autograd.Function):
    """Saves its output: backward reaches the node again through it (double backward)."""

    @staticmethod
    def forward(ctx, x):
        y = engine.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y


class ExpT(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y


def test_custom_function_first_and_second_order() -> None:
    (xe,), (xt,) = both(rng.standard_normal(4), rg=True)
    for (fe, ft) in ((lambda x: CubeE.apply(x, 2.5), lambda x: CubeT.apply(x, 2.5)),
                     (ExpE.apply, ExpT.apply)):
        ye, yt = fe(xe), ft(xt)
        assert_same(ye, yt)
        ge, gt = engine.autograd_grad(ye.sum(), xe, create_graph=True), torch.autograd.grad(yt.sum(), xt,
                                                                                             create_graph=True)
        assert_same(ge, gt)
        assert_same(engine.autograd_grad((ge[0] ** 2).sum(), xe), torch.autograd.grad((gt[0] ** 2).sum(), xt))
    x0 = xe.detach().numpy()
    assert_same(EAF.hessian(lambda x: ExpE.apply(x).sum() * CubeE.apply(x, 1.0).sum(), E(x0)),
                TAF.hessian(lambda x: ExpT.apply(x).sum() * CubeT.apply(x, 1.0).sum(), T(x0)))
    # (torch.func needs setup_context-style Functions; the plain function gives the reference)
    assert_same(EF.grad(lambda x: CubeE.apply(x, 0.5).sum())(E(xe.detach().numpy())),
                TF.grad(lambda x: (x ** 3 * 0.5).sum())(T(xt.detach().numpy())))
    assert ye.grad_fn.name().startswith("ExpE")


def test_custom_function_ctx_flags_and_outputs() -> None:
    seen: dict[str, Any] = {}

    def make(base: Any, lib: Any) -> type:
        class Split(base):
            @staticmethod
            def forward(ctx, x, y, k):
                seen[lib.__name__] = (ctx.needs_input_grad, lib.is_grad_enabled())
                a, idx = x * y * k, (x > 0)
                ctx.mark_non_differentiable(idx)
                ctx.save_for_backward(x, y)
                return a, idx, "tag"

            @staticmethod
            def backward(ctx, ga, gidx, gtag):
                x, y = ctx.saved_tensors
                seen[lib.__name__ + ".bwd"] = gtag
                return ga * y * 2.0, ga * x * 2.0, None

        return Split

    (xe, ye), (xt, yt) = both(rng.standard_normal(3), rng.standard_normal(3), rg=False)
    xe.requires_grad_()
    xt.requires_grad_()
    oe = make(engine.autograd.Function, engine).apply(xe, ye, 2.0)
    ot = make(torch.autograd.Function, torch).apply(xt, yt, 2.0)
    assert seen["engine"] == seen["torch"] == ((True, False, False), False)
    assert oe[2] == ot[2] == "tag"
    assert_same(oe[:2], ot[:2])
    assert_same(engine.autograd_grad(oe[0].sum(), xe), torch.autograd.grad(ot[0].sum(), xt))
    assert seen["engine.bwd"] is seen["torch.bwd"] is None


def test_custom_function_setup_context_style_and_no_grad() -> None:
    class MulE(engine.autograd.Function):
        @staticmethod
        def forward(x, k):
            return x * k

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.k = inputs[1]

        @staticmethod
        def backward(ctx, g):
            return g * ctx.k, None

    (xe,), _ = both(rng.standard_normal(3), rg=True)
    assert_same(engine.autograd_grad(MulE.apply(xe, 4.0).sum(), xe), (T(np.full(3, 4.0)),), check_rg=False)
    with engine.no_grad():
        assert not MulE.apply(xe, 4.0).requires_grad
    assert not MulE.apply(xe.detach(), 4.0).requires_grad


def test_custom_function_errors_match_torch() -> None:
    def mk(base: Any, body: Callable, fwd: Callable = lambda ctx, x: x * 2) -> type:
        return type("Bad", (base,), {"forward": staticmethod(fwd), "backward": staticmethod(body)})

    (xe,), (xt,) = both(rng.standard_normal(2), rg=True)

    def run(base: Any, x: Any, body: Callable, lib: Any, fwd: Any = None) -> Any:
        cls = mk(base, body) if fwd is None else mk(base, body, fwd)
        return lib.autograd.grad(cls.apply(x).sum(), x)

    E_, T_ = engine.autograd.Function, torch.autograd.Function
    bodies = [
        lambda ctx, g: (g, g),                      # too many gradients
        lambda ctx, g: 3.0,                         # not a tensor
    ]
    for body in bodies:
        same_error(lambda: run(E_, xe, body, engine), lambda: run(T_, xt, body, torch))
    same_error(lambda: run(E_, xe, lambda ctx, g: engine.ones(5), engine, fwd=lambda ctx, x: x.sum()),
               lambda: run(T_, xt, lambda ctx, g: torch.ones(5), torch, fwd=lambda ctx, x: x.sum()))
    # forward or backward missing
    same_error(lambda: type("F", (E_,), {}).apply(xe), lambda: type("F", (T_,), {}).apply(xt))
    nob_e = type("NoBackward", (E_,), {"forward": staticmethod(lambda ctx, x: x * 2)})
    nob_t = type("NoBackward", (T_,), {"forward": staticmethod(lambda ctx, x: x * 2)})
    same_error(lambda: engine.autograd_grad(nob_e.apply(xe).sum(), xe),
               lambda: torch.autograd.grad(nob_t.apply(xt).sum(), xt))


def test_custom_function_saved_tensors_are_freed_after_backward() -> None:
    (xe,), (xt,) = both(rng.standard_normal(2), rg=True)
    ye, yt = CubeE.apply(xe, 1.0), CubeT.apply(xt, 1.0)
    engine.autograd_grad(ye.sum(), xe)
    torch.autograd.grad(yt.sum(), xt)
    same_error(lambda: engine.autograd_grad(ye.sum(), xe), lambda: torch.autograd.grad(yt.sum(), xt))
    ye, yt = CubeE.apply(xe, 1.0), CubeT.apply(xt, 1.0)
    engine.autograd_grad(ye.sum(), xe, retain_graph=True)
    torch.autograd.grad(yt.sum(), xt, retain_graph=True)
    assert_same(engine.autograd_grad(ye.sum(), xe), torch.autograd.grad(yt.sum(), xt))


def test_function_primitive_sets_every_primitive_slot() -> None:
    """The per-call primitive is built without Primitive.__init__ (it must not be registered):
    it has to set every slot the core may read."""
    from engine._autograd import Primitive
    from engine.autograd.function import _FunctionPrim
    p = _FunctionPrim("x", 1, False)
    for slot in Primitive.__slots__:
        assert hasattr(p, slot), slot


# ---------------------------------------------------------------- the double-backward trick, op by op
def _jvp_cases() -> list[tuple[str, int]]:
    from . import gradcheck as gc
    infos = {i.name: i for i in engine.OPS.values()}
    return [(n, k) for n in sorted(SAMPLES) if n in infos and infos[n].is_differentiable
            for k, s in enumerate(SAMPLES[n]) if s.second_order and s.fd and gc.build(s, engine)[2]]


@pytest.mark.parametrize("case", _jvp_cases(), ids=lambda c: f"{c[0]}-{c[1]}")
def test_forward_mode_by_double_backward_matches_finite_differences(case: tuple[str, int]) -> None:
    """jvp and jacfwd rest on every VJP being linear in, and differentiable with respect to, its
    cotangent (engine ops all the way). For each op sample: J t by the double-backward trick
    equals the central finite difference of the op along t."""
    from . import gradcheck as gc
    name, k = case
    s = SAMPLES[name][k]
    fn = {i.name: i for i in engine.OPS.values()}[name].fn
    args, kwargs, leaves = gc.build(s, engine)
    out = gc.call(fn, s, args, kwargs)
    outs = [o for o in gc.float_outputs(out) if o.requires_grad]
    assert outs, f"{name}: no differentiable output"
    r = np.random.default_rng(7)
    tangents = [r.standard_normal(tuple(t.shape)) for t in leaves]
    us = [engine.ones_like(o).requires_grad_() for o in outs]  # the point jvp uses
    g = engine.autograd_grad(outs, leaves, us, create_graph=True, allow_unused=True)
    live = [(gi, engine.tensor(t)) for gi, t in zip(g, tangents) if gi is not None and gi.requires_grad]
    jv = engine.autograd_grad([gi for gi, _ in live], us, [t for _, t in live], allow_unused=True) if live \
        else [None] * len(us)
    arrays = gc.leaf_arrays(s)
    eps = 1e-6

    def at(sign: float) -> list[np.ndarray]:
        shifted = gc._with_leaves(s, [np.asarray(a + sign * eps * t) for a, t in zip(arrays, tangents)])
        a2, kw2, _ = gc.build(shifted, engine)
        with engine.no_grad():
            o2 = gc.call(fn, shifted, a2, kw2)
        return [gc.to_np(o) for o in gc.float_outputs(o2)]

    plus, minus = at(1.0), at(-1.0)
    idx = [i for i, o in enumerate(gc.float_outputs(out)) if o.requires_grad]
    for j, (i, v) in enumerate(zip(idx, jv)):
        fd = (plus[i] - minus[i]) / (2 * eps)
        ours = np.zeros_like(fd) if v is None else gc.to_np(v)
        np.testing.assert_allclose(ours, fd, rtol=s.rtol * 100, atol=s.atol * 100,
                                   err_msg=f"{name}: J t of output {j}")
