"""The expression form: what it compiles to, and that whitelisted syntax computes what torch does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from service.errors import ExpressionError
from service.expr import compile_source

from .helpers import read_tensor, wire_tensor


def test_compiles_the_issue_example_to_the_seed_nodes():
    out = compile_source("y = 2 * x + 1\nloss = mean((y - (w * x + b)) ** 2)\n", ["w", "b", "x"])
    ops = [(n["op"], n["inputs"]) for n in out.nodes]
    # temporaries have names no identifier can take; user names land on the node that computes them
    t1, t3, t4, t5, t6 = (out.nodes[i]["outputs"][0] for i in (0, 2, 3, 4, 5))
    assert not any(t.isidentifier() for t in (t1, t3, t4, t5, t6))
    assert t1 == "2 * x" and t6 == "(y - (w * x + b)) ** 2"  # named after the user's own text
    assert ops == [("mul", [2, "x"]), ("add", [t1, 1]), ("mul", ["w", "x"]), ("add", [t3, "b"]),
                   ("sub", ["y", t4]), ("pow", [t5, 2]), ("mean", [t6])]
    assert out.nodes[1]["outputs"] == ["y"] and out.nodes[6]["outputs"] == ["loss"]
    assert out.positions[0][:2] == (1, 5) and out.positions[6][:2] == (2, 8)
    assert out.positions[0].name == "y" and out.positions[6].name == "loss"


def test_compiles_grad_keywords_indexing_and_unpacking():
    src = ("g1, g2 = grad(l, [a, b], create_graph=True, allow_unused=None)\n"
           "v, i = max(a, dim=1, keepdim=True)\n"
           "s = a[0, 1:, ..., None]\n"
           "h = F.relu(a) // 2\n")
    n = compile_source(src, ["a", "b", "l"]).nodes
    assert n[0] == {"op": "grad", "outputs": ["g1", "g2"], "attributes": {
        "outputs": ["l"], "inputs": ["a", "b"], "create_graph": True, "allow_unused": None}}
    assert n[1] == {"op": "max", "inputs": ["a"], "attributes": {"dim": 1, "keepdim": True},
                    "outputs": ["v", "i"]}
    assert n[2] == {"op": "getitem", "outputs": ["s"], "inputs": [
        "a", {"tuple": [0, {"slice": [1, None, None]}, {"ellipsis": True}, None]}]}
    assert n[3]["op"] == "nn.functional.relu"
    assert n[4] == {"op": "div", "inputs": [n[3]["outputs"][0], 2], "outputs": ["h"],
                    "attributes": {"rounding_mode": "floor"}}


def test_string_literals_and_tensor_keywords_are_wrapped():
    n = compile_source("y = where(c > 0, input=a, other=b)\nz = einsum('ij->j', a)\n", ["a", "b", "c"]).nodes
    assert n[1]["attributes"] == {"input": {"ref": "a"}, "other": {"ref": "b"}}
    assert n[2]["inputs"] == [{"literal": "ij->j"}, "a"]


@pytest.mark.parametrize("src", [
    "import os", "from os import path", "y = x.__class__", "y = x.real", "y = (lambda: x)()",
    "y = [t for t in x]", "y = {t: t for t in x}", "y = (t for t in x)", "y = x if x else x",
    "y = x and x", "y = not x", "y = {1: 2}", "y = {x}", "y = f'{x}'", "y = (z := x)", "y = [*x]",
    "y = max(*x)", "y = max(**x)", "x.a = 1", "y += 1", "x[0][1] = 1",
    "x.T[0] = 1", "x @= x", "y: int = 1", "del x", "pass",
    "for t in x: pass", "while x: pass", "if x: pass", "with x: pass", "def f(): pass", "class A: pass",
    "y = z", "y = 1 < x < 2", "y = x is x", "y = x in x", "y = b'1'",
    "y = 1j", "y = x[x.shape]", "y = x[1:n]", "a = b = x", "y = __builtins__", "global x",
    "y = grad(x, x)", "y, = x", "(y, z), w = max(x, 0)",
    "y = x.sum.__call__()", "y = x[0].__class__", "assert x", "raise x", "y = yield x", "y = x.shape[0]",
])
def test_rejects_everything_outside_the_whitelist(src):
    with pytest.raises(ExpressionError) as e:
        compile_source(src, ["x"])
    assert e.value.line >= 1 and e.value.col >= 1
    assert e.value.errors[0]["loc"] == ["graph", "source"]


def run(client, inputs: dict, src: str, outputs=None, wrt=None, ret=()) -> dict:
    req = {"graph": {"inputs": [wire_tensor(k, v, requires_grad=v.dtype.kind == "f" and k in (wrt or []))
                                for k, v in inputs.items()], "source": src}, "return": list(ret)}
    if outputs:
        req.update(outputs=outputs, inputs=wrt)
    r = client.post("/v1/grad", json=req)
    assert r.status_code == 200, r.text
    return r.json()


def test_operators_and_method_calls_match_torch(client):
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))
    c = rng.normal(size=(3, 4)) + 3
    src = ("p = a @ b\n"
           "q = -a * c / 2 - +a ** 2 + c ** -1\n"
           "r = (c // 1.0) + (c % 2.0)\n"
           "m = where(a > 0, a, a * 0.1) + where(a <= c, 1.0, 0.0)\n"
           "s = p.sum() + q.mean() + (r * a).sum() + m.sum(dim=0).sum() + torch.tanh(a).sum(1, True).sum()\n"
           "t = a.t().reshape(2, 6)[1, ::2].exp().sum()\n"
           "l = s + t\n")
    out = run(client, {"a": a, "b": b, "c": c}, src, outputs="l", wrt=["a", "b"], ret=["l", "q"])
    at, bt, ct = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True), torch.tensor(c)
    p = at @ bt
    q = -at * ct / 2 - +at ** 2 + ct ** -1
    r = (ct // 1.0) + (ct % 2.0)
    m = torch.where(at > 0, at, at * 0.1) + torch.where(at <= ct, 1.0, 0.0)
    s = p.sum() + q.mean() + (r * at).sum() + m.sum(dim=0).sum() + torch.tanh(at).sum(1, True).sum()
    t = at.t().reshape(2, 6)[1, ::2].exp().sum()
    l_ = s + t
    ga, gb = torch.autograd.grad(l_, [at, bt])
    np.testing.assert_allclose(read_tensor(out["values"]["l"]), l_.item(), rtol=1e-12)
    np.testing.assert_allclose(read_tensor(out["values"]["q"]), q.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(read_tensor(out["grads"][0]), ga.numpy(), rtol=1e-10)
    np.testing.assert_allclose(read_tensor(out["grads"][1]), gb.numpy(), rtol=1e-10)


def test_constants_aliases_and_integer_index_tensors(client):
    a = np.arange(6.0).reshape(2, 3)
    idx = np.array([2, 0, 2])
    src = ("k = 3\nshape = [3, 2]\nal = a\ny = reshape(al * k, shape)\nz = a[:, idx]\n"
           "l = sum(y) + sum(z * z)\n")
    out = run(client, {"a": a, "idx": idx}, src, outputs="l", wrt=["a"], ret=["z"])
    at = torch.tensor(a, requires_grad=True)
    z = at[:, torch.from_numpy(idx)]
    ga, = torch.autograd.grad((at * 3).reshape(3, 2).sum() + (z * z).sum(), at)
    np.testing.assert_allclose(read_tensor(out["grads"][0]), ga.numpy())
    np.testing.assert_allclose(read_tensor(out["values"]["z"]), z.detach().numpy())


# ---------------------------------------------------------------- tensor attributes and functional calls
def test_transpose_attributes_match_torch(client):
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(2, 3, 4))
    src = ("p = a.T @ a\nq = b.mT @ b\nr = a.T.sum(0)\n"
           "l = sum(p * p) + sum(q) + sum(r * r) + sum(a.H) + sum(b.mH)\n")
    out = run(client, {"a": a, "b": b}, src, outputs="l", wrt=["a", "b"], ret=["p", "q", "r"])
    at, bt = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    p, q, r = at.T @ at, bt.mT @ bt, at.T.sum(0)
    l_ = (p * p).sum() + q.sum() + (r * r).sum() + at.H.sum() + bt.mH.sum()
    ga, gb = torch.autograd.grad(l_, [at, bt])
    for name, want in (("p", p), ("q", q), ("r", r)):
        np.testing.assert_allclose(read_tensor(out["values"][name]), want.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(read_tensor(out["grads"][0]), ga.numpy(), rtol=1e-10)
    np.testing.assert_allclose(read_tensor(out["grads"][1]), gb.numpy(), rtol=1e-10)


@pytest.mark.parametrize(("src", "hint"), [
    ("y = x.reshape(x.shape[0], -1)", "use -1 in reshape"),
    ("y = x.ndim", "shapes are not known"),
    ("y = x.dtype", "x.to(dtype="),
    ("y = x.foo", "tensor attributes are .T, .H, .mT, .mH"),
])
def test_shape_and_other_attributes_are_refused_with_a_hint(src, hint):
    with pytest.raises(ExpressionError) as e:
        compile_source(src, ["x"])
    assert hint in e.value.detail and e.value.line == 1


def _fx(a, w):
    return torch.tanh(a * w).sum() + (a ** 3).sum()


def test_functional_calls_match_torch_functional(client):
    """jacobian/hessian/vjp/jvp/hvp/vhp in the expression form, against torch.autograd.functional
    on the same function (the graph from the named inputs to the named outputs)."""
    import torch.autograd.functional as F

    rng = np.random.default_rng(7)
    a, w, v, u = (rng.normal(size=3) for _ in range(4))
    src = ("h = tanh(a * w)\n"
           "y = sum(h) + sum(a ** 3)\n"
           "J = jacobian(h, a)\n"
           "Ja, Jw = jacobian(h, (a, w))\n"
           "H = hessian(y, a)\n"
           "gv, = vjp(h, [a], v)\n"
           "jv = jvp(h, a, u)\n"
           "hv = hvp(y, a, u)\n"
           "vh = vhp(y, a, u, create_graph=False)\n"
           "k = jacobian(h, a, vectorize=True, strategy='forward-mode')[1]\n"
           "l = y + sum(J) + sum(H * H)\n")
    names = ["J", "Ja", "Jw", "H", "gv", "jv", "hv", "vh", "k"]
    out = run(client, {"a": a, "w": w, "v": v, "u": u}, src, outputs="l", wrt=["a"], ret=names)
    at, wt, vt, ut = (torch.tensor(z) for z in (a, w, v, u))
    fh = lambda x: torch.tanh(x * wt)
    fy = lambda x: _fx(x, wt)
    J = F.jacobian(fh, at)
    Ja, Jw = F.jacobian(lambda x, y: torch.tanh(x * y), (at, wt))
    want = {"J": J, "Ja": Ja, "Jw": Jw, "H": F.hessian(fy, at), "gv": F.vjp(fh, (at,), vt)[1][0],
            "jv": F.jvp(fh, at, ut)[1], "hv": F.hvp(fy, at, ut)[1], "vh": F.vhp(fy, at, ut)[1], "k": J[1]}
    for name, t in want.items():
        np.testing.assert_allclose(read_tensor(out["values"][name]), t.numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=name)
    # create_graph=False, as torch's default: J and H are constants to the top-level grad
    xt = at.clone().requires_grad_()
    g, = torch.autograd.grad(fy(xt), xt)
    np.testing.assert_allclose(read_tensor(out["grads"][0]), g.numpy(), rtol=1e-10)


def test_functional_calls_compile_to_the_json_nodes():
    n = compile_source("J = jacobian(y, x, vectorize=True)\nhv, = hvp(s, [x], v=u, strict=True)\n",
                       ["x", "y", "s", "u"]).nodes
    assert n[0] == {"op": "jacobian", "outputs": ["J"],
                    "attributes": {"outputs": "y", "inputs": "x", "vectorize": True}}
    assert n[1] == {"op": "hvp", "outputs": ["hv"],
                    "attributes": {"outputs": "s", "inputs": ["x"], "v": "u", "strict": True}}


@pytest.mark.parametrize(("src", "phrase"), [
    ("J = jacobian(y, (x, x))", "returns a tuple here"),
    ("a, b, c = jacobian(y, (x, x))", "returns 2 results but 3 names"),
    ("J = jacobian(y, x, vectorise=True)", "argument 'vectorise'; did you mean 'vectorize'?"),
    ("g, = grad(y, x, create_grpah=True)", "did you mean 'create_graph'"),
    ("J = hessian(y, x, strict=1)", "strict must be True or False"),
    ("g = vjp(y, 2, x)", "inputs must be tensors"),
])
def test_functional_call_errors(src, phrase):
    with pytest.raises(ExpressionError) as e:
        compile_source(src, ["x", "y"])
    assert phrase in e.value.detail


def test_assigning_a_value_to_a_name_makes_the_same_tensor_like_python(client):
    """`y = x`: y is x (torch: a gradient with respect to y is one with respect to x), and the top
    level and `return` can name it."""
    x = np.array([1.0, -2.0, 0.5])
    src = "y = x\nl = sum(x * y) + sum(tanh(y))"
    out = run(client, {"x": x}, src, outputs="l", wrt=["x", "y"], ret=["y"])
    xt = torch.tensor(x, requires_grad=True)
    yt = xt
    lt = (xt * yt).sum() + torch.tanh(yt).sum()
    gx, gy = torch.autograd.grad(lt, [xt, yt])
    np.testing.assert_allclose(read_tensor(out["grads"][0]), gx.numpy(), rtol=1e-12)
    np.testing.assert_allclose(read_tensor(out["grads"][1]), gy.numpy(), rtol=1e-12)
    np.testing.assert_allclose(read_tensor(out["values"]["y"]), x)
