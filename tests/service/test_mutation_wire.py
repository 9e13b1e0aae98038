"""Mutation over the wire: re-assignment, item assignment and in-place ops in graph.source, and the
in-place op names in JSON nodes, all with functional semantics. torch runs the same program with
real mutation and is the oracle for every value, gradient and error."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import engine
from engine._functional_inplace import FUNCTIONAL_INPLACE, TORCH_INPLACE_METHODS
from service.errors import ExpressionError
from service.expr import compile_source
from tests.service.helpers import read_tensor, wire_tensor

RNG = np.random.default_rng(7)
X = RNG.standard_normal(3)
W = RNG.standard_normal((3, 3))


def _post(client, source: str, inputs: dict[str, tuple[np.ndarray, bool]], outputs=None, wrt=None,
          ret=()):
    req = {"graph": {"inputs": [wire_tensor(k, a, requires_grad=rg) for k, (a, rg) in inputs.items()],
                     "source": source}, "return": list(ret)}
    if outputs is not None:  # unused inputs get zeros, as torch's allow_unused + materialize_grads
        req.update(outputs=outputs, inputs=wrt, allow_unused=True, materialize_grads=True)
    return client.post("/v1/grad", json=req)


def _ok(r) -> dict:
    assert r.status_code == 200, r.text
    return r.json()


def _problem(r, status: int = 422) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


# ---------------------------------------------------------------- re-assignment (SSA)
def test_rebinding_in_a_sequence_matches_torch(client) -> None:
    src = "h = tanh(x @ w)\nh = tanh(h @ w)\nh = tanh(h @ w)\nloss = (h * h).sum()"
    b = _ok(_post(client, src, {"x": (X, True), "w": (W, True)}, ["loss"], ["x", "w"], ["h", "loss"]))
    x, w = torch.tensor(X, requires_grad=True), torch.tensor(W, requires_grad=True)
    h = torch.tanh(x @ w)
    h = torch.tanh(h @ w)
    h = torch.tanh(h @ w)
    loss = (h * h).sum()
    gx, gw = torch.autograd.grad(loss, [x, w])
    np.testing.assert_allclose(read_tensor(b["values"]["h"]), h.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(read_tensor(b["grads"][0]), gx.numpy(), rtol=1e-10)
    np.testing.assert_allclose(read_tensor(b["grads"][1]), gw.numpy(), rtol=1e-10)


def test_internal_names_never_reach_the_user() -> None:
    c = compile_source("h = x * 2\nh = h + 1\nh = h.exp()", ["x"])
    assert c.nodes[-1]["outputs"] == ["h"]
    internal = [o for n in c.nodes for o in n["outputs"] if o.startswith("h'")]
    assert internal and all(c.user_names[o] == "h" for o in internal)
    assert all(p.name == "h" for p in c.positions)


def test_a_reassigned_input_differentiates_the_input_as_sent(client) -> None:
    # `x = x * 2` rebinds the name, as in Python: `inputs: ["x"]` is the tensor sent, `return`
    # and `outputs` see the last binding
    src = "x = x * 2\nx = x ** 3\nloss = x.sum()"
    b = _ok(_post(client, src, {"x": (X, True)}, ["loss"], ["x"], ["x"]))
    x0 = torch.tensor(X, requires_grad=True)
    x = x0 * 2
    x = x ** 3
    (g,) = torch.autograd.grad(x.sum(), x0)
    np.testing.assert_allclose(read_tensor(b["grads"][0]), g.numpy(), rtol=1e-12)
    np.testing.assert_allclose(read_tensor(b["values"]["x"]), x.detach().numpy(), rtol=1e-12)
    # outputs naming the input mean its last binding too: d(sum(3x))/dx
    b = _post(client, "x = (x * 3).sum()", {"x": (X, True)}, ["x"], ["x"])
    x0 = torch.tensor(X, requires_grad=True)
    (g,) = torch.autograd.grad((x0 * 3).sum(), x0)
    np.testing.assert_allclose(read_tensor(_ok(b)["grads"][0]), g.numpy())


def test_grad_inside_the_source_follows_the_current_binding(client) -> None:
    src = "y = x * x\ny = y.sum()\ng, = grad(y, x, create_graph=True)\ng = g * 2"
    b = _ok(_post(client, src, {"x": (X, True)}, ret=["g"]))
    x = torch.tensor(X, requires_grad=True)
    (g,) = torch.autograd.grad((x * x).sum(), x, create_graph=True)
    np.testing.assert_allclose(read_tensor(b["values"]["g"]), (g * 2).detach().numpy(), rtol=1e-12)


def test_internal_names_cannot_be_named_by_the_top_level(client) -> None:
    b = _problem(_post(client, "h = x * 2\nh = h + 1\nloss = h.sum()", {"x": (X, True)}, ["loss"], ["h'1"]))
    assert "h'1" in b["detail"]


# ---------------------------------------------------------------- item assignment
@pytest.mark.parametrize("stmt, key, value", [
    ("y[0] = 2 * x[1]", 0, lambda x: 2 * x[1]),
    ("y[:, 1:] = x[:2]", (slice(None), slice(1, None)), lambda x: x[:2]),
    ("y[idx] = x[0]", "idx", lambda x: x[0]),
    ("y[0, 2] = 7", (0, 2), lambda x: 7.0),
    ("y[...] = x", Ellipsis, lambda x: x),
])
def test_item_assignment_matches_torch(client, stmt, key, value) -> None:
    idx = np.array([1, 0])
    src = f"y = w * 1\n{stmt}\nloss = (y * y).sum()"
    b = _ok(_post(client, src, {"x": (X, True), "w": (W, True), "idx": (idx, False)},
                  ["loss"], ["x", "w"], ["y"]))
    x, w = torch.tensor(X, requires_grad=True), torch.tensor(W, requires_grad=True)
    y = w * 1
    y[torch.tensor(idx) if key == "idx" else key] = value(x)
    gx, gw = torch.autograd.grad((y * y).sum(), [x, w], allow_unused=True, materialize_grads=True)
    np.testing.assert_allclose(read_tensor(b["values"]["y"]), y.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(read_tensor(b["grads"][0]), gx.numpy(), rtol=1e-12)
    np.testing.assert_allclose(read_tensor(b["grads"][1]), gw.numpy(), rtol=1e-12)


@pytest.mark.parametrize("src", ["h = x * 1\nh += w[0]", "h = x * 1\nh *= 2\nh -= x",
                                 "h = x * 1\nh /= x.exp()", "h = w * 1\nh[0] += x",
                                 "h = w * 1\nh[:, 0] *= x", "h = x * 1\nh **= 2"])
def test_augmented_assignment_matches_torch(client, src) -> None:
    b = _ok(_post(client, src + "\nloss = h.sum()", {"x": (X, True), "w": (W, True)},
                  ["loss"], ["x", "w"], ["h"]))
    x, w = torch.tensor(X, requires_grad=True), torch.tensor(W, requires_grad=True)
    env = {"x": x, "w": w}
    for line in src.splitlines():  # the same statements, run by torch with real mutation
        _torch_stmt(line, env)
    gx, gw = torch.autograd.grad(env["h"].sum(), [x, w], allow_unused=True, materialize_grads=True)
    np.testing.assert_allclose(read_tensor(b["values"]["h"]), env["h"].detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(read_tensor(b["grads"][0]), gx.numpy(), rtol=1e-12)
    np.testing.assert_allclose(read_tensor(b["grads"][1]), gw.numpy(), rtol=1e-12)


def _torch_stmt(line: str, env: dict) -> None:
    """Run one test statement with torch (a fixed table, not eval: the test sources above)."""
    x, w = env["x"], env["w"]
    h = env.get("h")
    table = {
        "h = x * 1": lambda: x * 1, "h = w * 1": lambda: w * 1,
        "h += w[0]": lambda: h.add_(w[0]), "h *= 2": lambda: h.mul_(2), "h -= x": lambda: h.sub_(x),
        "h /= x.exp()": lambda: h.div_(x.exp()), "h **= 2": lambda: h.pow_(2),
        "h[0] += x": lambda: h[0].add_(x), "h[:, 0] *= x": lambda: h[:, 0].mul_(x),
    }
    res = table[line]()
    env["h"] = h if line.startswith("h[") else res  # h[0] += x changes h through the view h[0]


def test_augmented_assignment_keeps_torchs_dtype_rule(client) -> None:
    n = np.arange(3, dtype=np.int64)
    b = _problem(_post(client, "k = n * 1\nk += 0.5", {"n": (n, False)}, ret=["k"]))
    with pytest.raises(RuntimeError) as want:
        torch.tensor(n).mul(1).add_(0.5)
    assert str(want.value) in b["detail"]
    assert b["errors"][0]["line"] == 2 and b["errors"][0]["node"] == "k"
    # an int tensor keeps its dtype where torch's cast allows it
    b = _ok(_post(client, "k = n * 1\nk *= 3", {"n": (n, False)}, ret=["k"]))
    assert b["values"]["k"]["datatype"] == "INT64"
    # x //= y is torch's floor division in place
    f = np.array([7.5, -7.5, 3.0])
    b = _ok(_post(client, "k = f * 1\nk //= 2", {"f": (f, False)}, ret=["k"]))
    t = torch.tensor(f) * 1
    t //= 2
    np.testing.assert_array_equal(read_tensor(b["values"]["k"]), t.numpy())


@pytest.mark.parametrize("src", [
    "h = tanh(x * 1)\nh[0] = 5\nh += 1\nloss = h.sum()",      # tanh saved its output
    "h = x * 1\ny = h * h\nh *= 2\nloss = (y + h).sum()",     # mul saved h, then h changed
])
def test_a_saved_value_changed_in_place_gets_torchs_version_error(client, src) -> None:
    x = torch.tensor(X, requires_grad=True)
    program = _tanh_program if "tanh" in src else _mul_program  # the same statements in torch
    with pytest.raises(RuntimeError) as want:
        torch.autograd.grad(program(x), x)
    assert "modified by an inplace operation" in str(want.value)
    b = _problem(_post(client, src, {"x": (X, True)}, ["loss"], ["x"]))
    assert b["exception"] == "RuntimeError" and b["detail"] == str(want.value)


def _tanh_program(x):
    h = torch.tanh(x * 1)
    h[0] = 5
    h += 1
    return h.sum()


def _mul_program(x):
    h = x * 1
    y = h * h
    h *= 2
    return (y + h).sum()


def test_in_place_on_a_leaf_that_requires_grad_is_refused_as_torch(client) -> None:
    for src, torch_fn in [("x += 1", lambda x: x.add_(1)), ("x[0] = 1", lambda x: x.__setitem__(0, 1.0)),
                          ("x[[0]] = 1", lambda x: x.__setitem__([0], 1.0))]:
        with pytest.raises(RuntimeError) as want:
            torch_fn(torch.tensor(X, requires_grad=True))
        b = _problem(_post(client, src, {"x": (X, True)}, ret=["x"]))
        assert b["exception"] == "RuntimeError" and str(want.value) in b["detail"], (src, b)
        # without requires_grad the same statement is fine, as in torch
        t = torch.tensor(X)
        torch_fn(t)
        b = _ok(_post(client, src, {"x": (X, False)}, ret=["x"]))
        np.testing.assert_allclose(read_tensor(b["values"]["x"]), t.numpy())


# ---------------------------------------------------------------- errors at the user's line and name
@pytest.mark.parametrize("src, line, col, words", [
    ("h = x * 2\nh = h @ w2\nh = undefined + h", 3, 5, "'undefined' is not defined"),
    ("h = x * 2\nh = h.exp()\nh[0][1] = 3", 3, 1, "items of named tensors"),
    ("h = x * 2\nc = 3\nc[0] = h", 3, 1, "not a tensor"),
    ("h = x * 2\nz += h", 2, 1, "'z' is not defined"),
])
def test_compile_errors_name_the_users_line(client, src, line, col, words) -> None:
    with pytest.raises(ExpressionError) as e:
        compile_source(src, ["x", "w2"])
    assert (e.value.errors[0]["line"], e.value.errors[0]["col"]) == (line, col)
    assert words in e.value.detail and "'" + "h'" not in e.value.detail


def test_shape_errors_in_a_rebound_sequence_point_at_the_users_line(client) -> None:
    src = "h = x @ w\nh = tanh(h)\nh = h @ v\nloss = h.sum()"
    b = _problem(_post(client, src, {"x": (X, True), "w": (W, True), "v": (np.ones((2, 2)), True)},
                       ["loss"], ["x"]))
    with pytest.raises(RuntimeError) as want:
        torch.tanh(torch.tensor(X) @ torch.tensor(W)) @ torch.ones(2, 2)
    err = b["errors"][0]
    assert (err["line"], err["col"]) == (3, 5) and err["node"] == "h"
    assert str(want.value) in b["detail"]
    assert not re.search(r"h'\d", str(b))


def test_item_assignment_shape_error_is_torchs(client) -> None:
    b = _problem(_post(client, "y = w * 1\ny[0] = x[:2]", {"x": (X, True), "w": (W, True)}, ret=["y"]))
    with pytest.raises(RuntimeError) as want:
        torch.tensor(W)[0] = torch.tensor(X)[:2]
    assert str(want.value) in b["detail"]
    err = b["errors"][0]
    assert (err["line"], err["col"], err["node"]) == (2, 1, "y")


def test_check_finite_names_the_user_name(client) -> None:
    req = {"graph": {"inputs": [wire_tensor("x", X, requires_grad=True)],
                     "source": "h = x * 0\nh = h.log()\nh = h * 2"},
           "return": ["h"], "check_finite": True}
    b = _problem(client.post("/v1/grad", json=req))
    assert b["errors"][0]["line"] == 2 and "'h'" in b["errors"][0]["msg"]
    assert not re.search(r"h'\d", str(b))


# ---------------------------------------------------------------- JSON nodes
def _nodes(client, nodes, inputs, outputs=None, wrt=None, ret=()):
    req = {"graph": {"inputs": inputs, "nodes": nodes}, "return": list(ret)}
    if outputs:
        req.update(outputs=outputs, inputs=wrt, allow_unused=True, materialize_grads=True)
    return client.post("/v1/grad", json=req)


@pytest.mark.parametrize("op, args, kwargs", [
    ("add_", [{"ref": "v"}], {"alpha": 2}), ("mul_", [{"ref": "v"}], {}), ("sub_", [0.5], {}),
    ("div_", [{"ref": "v"}], {}), ("zero_", [], {}), ("fill_", [1.5], {}), ("copy_", [{"ref": "v"}], {}),
    ("clamp_", [], {"min": -0.2, "max": 0.3}), ("masked_fill_", [{"ref": "m"}, 9.0], {}),
    ("scatter_", [0, {"ref": "i"}], {"value": 2.0}), ("exp_", [], {}), ("tanh_", [], {}),
    ("index_fill_", [0, {"ref": "i"}, -1.0], {}), ("index_put_", [[{"ref": "i"}], {"ref": "v2"}], {}),
    ("index_put_", [[{"ref": "i"}], {"ref": "v2"}], {"accumulate": True}), ("t_", [], {}),
    ("unsqueeze_", [0], {}),
])
def test_in_place_json_nodes_have_functional_semantics(client, op, args, kwargs) -> None:
    x0, v0, v20 = RNG.standard_normal(4), RNG.standard_normal(4), RNG.standard_normal(2)
    m, i = np.array([True, False, True, False]), np.array([2, 0])

    def wire(a):
        return a["ref"] if isinstance(a, dict) else [wire(b) for b in a] if isinstance(a, list) else a

    wire_args = [wire(a) for a in args]
    nodes = [{"op": "mul", "inputs": ["x", 1.0], "outputs": ["h"]},
             {"op": op, "inputs": ["h", *wire_args], "attributes": kwargs, "outputs": ["h2"]},
             {"op": "mul", "inputs": ["h2", "h2"], "outputs": ["sq"]},
             {"op": "sum", "inputs": ["sq"], "outputs": ["loss"]}]
    inputs = [wire_tensor("x", x0, requires_grad=True), wire_tensor("v", v0, requires_grad=True),
              wire_tensor("m", m), wire_tensor("i", i), wire_tensor("v2", v20, requires_grad=True)]
    b = _ok(_nodes(client, nodes, inputs, ["loss"], ["x", "v", "v2"], ["h", "h2"]))
    x, v = torch.tensor(x0, requires_grad=True), torch.tensor(v0, requires_grad=True)
    v2 = torch.tensor(v20, requires_grad=True)
    env = {"v": v, "m": torch.tensor(m), "i": torch.tensor(i), "v2": v2}

    def arg(a):
        return env[a["ref"]] if isinstance(a, dict) else [arg(b) for b in a] if isinstance(a, list) else a

    h = x * 1.0
    h_before = h.detach().clone()
    getattr(h, op)(*[arg(a) for a in args], **kwargs)
    gx, gv, gv2 = torch.autograd.grad((h * h).sum(), [x, v, v2], allow_unused=True, materialize_grads=True)
    np.testing.assert_allclose(read_tensor(b["values"]["h"]), h_before.numpy())  # h is unchanged
    np.testing.assert_allclose(read_tensor(b["values"]["h2"]), h.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(read_tensor(b["grads"][0]), gx.numpy(), rtol=1e-12)
    np.testing.assert_allclose(read_tensor(b["grads"][1]), gv.numpy(), rtol=1e-12)
    np.testing.assert_allclose(read_tensor(b["grads"][2]), gv2.numpy(), rtol=1e-12)


def test_setitem_json_node(client) -> None:
    nodes = [{"op": "mul", "inputs": ["w", 1.0], "outputs": ["y"]},
             {"op": "setitem", "inputs": ["y", {"tuple": [{"slice": [None, None]}, 1]}, "x"],
              "outputs": ["y2"]},
             {"op": "sum", "inputs": ["y2"], "outputs": ["loss"]}]
    inputs = [wire_tensor("x", X, requires_grad=True), wire_tensor("w", W, requires_grad=True)]
    b = _ok(_nodes(client, nodes, inputs, ["loss"], ["x", "w"], ["y2"]))
    x, w = torch.tensor(X, requires_grad=True), torch.tensor(W, requires_grad=True)
    y = w * 1.0
    y[:, 1] = x
    gx, gw = torch.autograd.grad(y.sum(), [x, w])
    np.testing.assert_allclose(read_tensor(b["values"]["y2"]), y.detach().numpy())
    np.testing.assert_allclose(read_tensor(b["grads"][0]), gx.numpy())
    np.testing.assert_allclose(read_tensor(b["grads"][1]), gw.numpy())


def test_unknown_in_place_name_gets_did_you_mean(client) -> None:
    nodes = [{"op": "ad_", "inputs": ["x", 1.0], "outputs": ["y"]}]
    b = _problem(_nodes(client, nodes, [wire_tensor("x", X)], ret=["y"]))
    assert b["errors"][0]["loc"] == ["graph", "nodes", 0, "op"] and "'add_'" in b["detail"]


def test_in_place_errors_are_located_and_torchs(client) -> None:
    nodes = [{"op": "mul", "inputs": ["x", 1.0], "outputs": ["h"]},
             {"op": "add_", "inputs": ["h", "w"], "outputs": ["h2"]}]
    b = _problem(_nodes(client, nodes, [wire_tensor("x", X), wire_tensor("w", W)], ret=["h2"]))
    with pytest.raises(RuntimeError) as want:
        torch.tensor(X).add_(torch.tensor(W))
    assert str(want.value) in b["detail"] and b["errors"][0]["loc"][:3] == ["graph", "nodes", 1]


def test_ops_listing_shows_the_in_place_names(client) -> None:
    body = client.get("/v1/ops").json()
    listed = {o["name"]: o for o in body["inplace"]}
    for name in ("add_", "mul_", "sub_", "div_", "zero_", "fill_", "copy_", "clamp_", "masked_fill_",
                 "scatter_", "setitem"):
        assert name in listed, name
    assert listed["add_"]["canonical"] == "add"


def test_in_place_table_is_torchs_for_the_engines_ops() -> None:
    torch_names = {n for n in dir(torch.Tensor) if n.endswith("_") and not n.startswith("_")}
    assert set(TORCH_INPLACE_METHODS) <= torch_names
    have = {n for n in torch_names if n[:-1] in engine.OPS and not n.endswith("__")}
    assert have <= set(FUNCTIONAL_INPLACE), sorted(have - set(FUNCTIONAL_INPLACE))
