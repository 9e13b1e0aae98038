"""POST /v1/grad answers match torch: seed example, expression form, higher order, multi-output ops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .helpers import read_tensor, seed_request, seed_torch, wire_tensor


def post(client, req: dict) -> dict:
    r = client.post("/v1/grad", json=req)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


@pytest.mark.parametrize("form", ["nodes", "source"])
def test_seed_example_matches_torch(client, x100, form):
    out = post(client, seed_request(x100, form=form, **{"return": ["loss"]}))
    gw, gb, loss = seed_torch(x100)
    assert [g["name"] for g in out["grads"]] == ["w", "b"]
    assert out["grads"][0]["datatype"] == "FP32" and out["grads"][0]["shape"] == [1]
    np.testing.assert_allclose(read_tensor(out["grads"][0]), gw, rtol=1e-6)
    np.testing.assert_allclose(read_tensor(out["grads"][1]), gb, rtol=1e-6)
    # value-and-grad: the loss comes back in the same round trip, as a 0-d tensor
    assert out["values"]["loss"]["shape"] == []
    np.testing.assert_allclose(read_tensor(out["values"]["loss"]), loss, rtol=1e-6)


def test_issue_expression_example_and_method_calls(client, x100):
    req = seed_request(x100, form="source")
    req["graph"]["source"] = "y = 2 * x + 1\nloss = ((y - (w * x + b)) ** 2).mean()"
    out = post(client, req)
    gw, gb, _ = seed_torch(x100)
    np.testing.assert_allclose(read_tensor(out["grads"][0]), gw, rtol=1e-6)
    np.testing.assert_allclose(read_tensor(out["grads"][1]), gb, rtol=1e-6)


def _mlp_torch(x, w1, w2, v):
    xt, w1t, w2t = (torch.from_numpy(a).requires_grad_(i > 0) for i, a in enumerate((x, w1, w2)))
    loss = (torch.tanh(xt @ w1t) @ w2t).pow(2).sum()
    g1, g2 = torch.autograd.grad(loss, [w1t, w2t], create_graph=True)
    gv = (g1 * torch.from_numpy(v)).sum()
    hv1, hv2 = torch.autograd.grad(gv, [w1t, w2t])
    return loss.item(), g1.detach().numpy(), hv1.numpy(), hv2.numpy()


@pytest.mark.parametrize("form", ["nodes", "source"])
def test_hessian_vector_product_with_a_grad_node(client, form):
    rng = np.random.default_rng(0)
    x, w1, w2, v = rng.normal(size=(4, 3)), rng.normal(size=(3, 5)), rng.normal(size=(5, 2)), \
        rng.normal(size=(3, 5))
    graph = {"inputs": [wire_tensor("x", x), wire_tensor("w1", w1, requires_grad=True),
                        wire_tensor("w2", w2, requires_grad=True), wire_tensor("v", v)]}
    if form == "nodes":
        graph["nodes"] = [
            {"op": "matmul", "inputs": ["x", "w1"], "outputs": ["h"]},
            {"op": "tanh", "inputs": ["h"], "outputs": ["a"]},
            {"op": "matmul", "inputs": ["a", "w2"], "outputs": ["o"]},
            {"op": "pow", "inputs": ["o", 2], "outputs": ["o2"]},
            {"op": "sum", "inputs": ["o2"], "outputs": ["loss"]},
            {"op": "grad", "attributes": {"outputs": ["loss"], "inputs": ["w1", "w2"], "create_graph": True},
             "outputs": ["g1", "g2"]},
            {"op": "mul", "inputs": ["g1", "v"], "outputs": ["gv_"]},
            {"op": "sum", "inputs": ["gv_"], "outputs": ["gv"]},
        ]
    else:
        graph["source"] = ("loss = sum(pow(matmul(tanh(x @ w1), w2), 2))\n"
                           "g1, g2 = grad(loss, [w1, w2], create_graph=True)\n"
                           "gv = (g1 * v).sum()\n")
    out = post(client, {"graph": graph, "outputs": "gv", "inputs": ["w1", "w2"], "return": ["loss", "g1"]})
    loss, g1, hv1, hv2 = _mlp_torch(x, w1, w2, v)
    assert out["grads"][0]["datatype"] == "FP64"
    np.testing.assert_allclose(read_tensor(out["grads"][0]), hv1, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(read_tensor(out["grads"][1]), hv2, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(read_tensor(out["values"]["g1"]), g1, rtol=1e-10)
    np.testing.assert_allclose(read_tensor(out["values"]["loss"]), loss, rtol=1e-12)


def test_second_derivative_of_a_scalar_function(client):
    # d2/dx2 of x^3 * sin(x) at 3 points, through two grad nodes (the second one over the first)
    xs = np.array([0.3, -1.2, 2.0])
    src = "y = sum(x ** 3 * sin(x))\ng, = grad(y, x, create_graph=True)\ngs = sum(g)\n"
    out = post(client, {"graph": {"inputs": [wire_tensor("x", xs, requires_grad=True)], "source": src},
                        "outputs": ["gs"], "inputs": ["x"], "return": ["g"]})
    xt = torch.tensor(xs, requires_grad=True)
    g, = torch.autograd.grad((xt ** 3 * torch.sin(xt)).sum(), xt, create_graph=True)
    h, = torch.autograd.grad(g.sum(), xt)
    np.testing.assert_allclose(read_tensor(out["grads"][0]), h.numpy(), rtol=1e-12)
    np.testing.assert_allclose(read_tensor(out["values"]["g"]), g.detach().numpy(), rtol=1e-12)


def test_gradient_penalty_style_request_and_top_level_create_graph(client):
    xs = np.array([[1.0, -2.0], [0.5, 3.0]])
    src = ("y = sum(tanh(x) * x)\n"
           "g = grad(y, [x], create_graph=True)[0]\n"
           "pen = sum(g * g)\n")
    out = post(client, {"graph": {"inputs": [wire_tensor("x", xs, requires_grad=True)], "source": src},
                        "outputs": "pen", "inputs": "x", "create_graph": True})
    xt = torch.tensor(xs, requires_grad=True)
    g, = torch.autograd.grad((torch.tanh(xt) * xt).sum(), xt, create_graph=True)
    gp, = torch.autograd.grad((g * g).sum(), xt)
    np.testing.assert_allclose(read_tensor(out["grads"][0]), gp.numpy(), rtol=1e-12)


def test_multi_output_ops_max_with_dim_and_split(client):
    a = np.array([[1.0, 5.0, 2.0], [7.0, 0.5, 3.0]])
    graph = {"inputs": [wire_tensor("a", a, requires_grad=True)], "nodes": [
        {"op": "max", "inputs": ["a"], "attributes": {"dim": 1}, "outputs": ["vals", "idx"]},
        {"op": "split", "inputs": ["a", [1, 2]], "attributes": {"dim": 1}, "outputs": ["left", "right"]},
        {"op": "mul", "inputs": ["right", 3.0], "outputs": ["r3"]},
        {"op": "sum", "inputs": ["r3"], "outputs": ["s1"]},
        {"op": "sum", "inputs": ["vals"], "outputs": ["s2"]},
        {"op": "add", "inputs": ["s1", "s2"], "outputs": ["loss"]},
    ]}
    out = post(client, {"graph": graph, "outputs": ["loss"], "inputs": ["a"],
                        "return": ["idx", "vals", "left"]})
    at = torch.tensor(a, requires_grad=True)
    vals, idx = torch.max(at, dim=1)
    left, right = torch.split(at, [1, 2], dim=1)
    ga, = torch.autograd.grad((right * 3.0).sum() + vals.sum(), at)
    np.testing.assert_allclose(read_tensor(out["grads"][0]), ga.numpy())
    assert out["values"]["idx"]["datatype"] == "INT64"
    np.testing.assert_array_equal(read_tensor(out["values"]["idx"]), idx.numpy())
    np.testing.assert_allclose(read_tensor(out["values"]["vals"]), vals.detach().numpy())
    np.testing.assert_allclose(read_tensor(out["values"]["left"]), left.detach().numpy())


def test_expression_multi_output_unpacking_indexing_and_keywords(client):
    a = np.arange(12, dtype=np.float64).reshape(3, 4) / 7.0
    src = ("v, i = max(a, dim=0)\n"
           "m = min(a, 1)\n"
           "p, = split(a, 3)\n"
           "c = chunk(a, 2, dim=1)\n"
           "z = a[1:, None, ..., -1] * m[0][:2, None, None]\n"
           "loss = sum(v) + sum(z) + sum(p[0]) + sum(c[1] ** 2)\n")
    out = post(client, {"graph": {"inputs": [wire_tensor("a", a, requires_grad=True)], "source": src},
                        "outputs": "loss", "inputs": "a", "return": ["i", "z"]})
    at = torch.tensor(a, requires_grad=True)
    v, i = torch.max(at, dim=0)
    m = torch.min(at, 1)
    p, = torch.split(at, 3)
    c = torch.chunk(at, 2, dim=1)
    z = at[1:, None, ..., -1] * m[0][:2, None, None]
    loss = v.sum() + z.sum() + p[0].sum() + (c[1] ** 2).sum()
    ga, = torch.autograd.grad(loss, at)
    np.testing.assert_allclose(read_tensor(out["grads"][0]), ga.numpy(), rtol=1e-12)
    np.testing.assert_array_equal(read_tensor(out["values"]["i"]), i.numpy())
    np.testing.assert_allclose(read_tensor(out["values"]["z"]), z.detach().numpy())


def test_attributes_refs_literals_slices_and_dtype(client):
    a = np.array([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]], np.float32)
    mask = np.array([[True, False, True], [False, False, True]])
    graph = {"inputs": [wire_tensor("a", a, requires_grad=True), wire_tensor("mask", mask)], "nodes": [
        {"op": "where", "inputs": ["mask", "a"], "attributes": {"other": {"ref": "a2"}}, "outputs": ["wh"]},
        {"op": "mul", "inputs": ["a", "a"], "outputs": ["a2"]},  # listed after its user: reordered
        {"op": "getitem", "inputs": ["wh", {"tuple": [{"ellipsis": True}, {"slice": [None, None, 2]}]}],
         "outputs": ["picked"]},
        {"op": "sum", "inputs": ["picked"], "attributes": {"dtype": "FP64"}, "outputs": ["loss"]},
    ]}
    r = client.post("/v1/grad", json={"graph": graph, "outputs": ["loss"], "inputs": ["a"],
                                      "return": ["loss"]})
    at = torch.tensor(a, requires_grad=True)
    loss = torch.where(torch.from_numpy(mask), at, at * at)[..., ::2].sum(dtype=torch.float64)
    ga, = torch.autograd.grad(loss, at)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["values"]["loss"]["datatype"] == "FP64"
    np.testing.assert_allclose(read_tensor(out["values"]["loss"]), loss.item(), rtol=1e-12)
    np.testing.assert_allclose(read_tensor(out["grads"][0]), ga.numpy())
    # a negative step is refused as torch refuses it (torch has no negative strides)
    graph["nodes"][2]["inputs"][1] = {"tuple": [{"slice": [None, None, -1]}, {"ellipsis": True}]}
    r = client.post("/v1/grad", json={"graph": graph, "outputs": ["loss"], "inputs": ["a"]})
    assert r.status_code == 422 and "step must be greater than zero" in r.json()["detail"], r.text


def test_grad_outputs_inline_and_named_allow_unused_and_materialize(client):
    x = np.array([1.0, 2.0, 3.0])
    graph = {"inputs": [wire_tensor("x", x, requires_grad=True), wire_tensor("u", x, requires_grad=True),
                        wire_tensor("go", np.array([1.0, 0.5, -1.0]))],
             "source": "y = x * x\nz = exp(x)\n"}
    base = {"graph": graph, "outputs": ["y", "z"], "inputs": ["x", "u"]}
    out = post(client, {**base, "grad_outputs": ["go", wire_tensor("g2", np.array([2.0, 0.0, 1.0]))],
                        "allow_unused": True})
    xt = torch.tensor(x, requires_grad=True)
    ut = torch.tensor(x, requires_grad=True)
    gx, gu = torch.autograd.grad([xt * xt, torch.exp(xt)], [xt, ut],
                                 [torch.tensor([1.0, 0.5, -1.0]), torch.tensor([2.0, 0.0, 1.0])],
                                 allow_unused=True)
    assert gu is None and out["grads"][1] is None
    np.testing.assert_allclose(read_tensor(out["grads"][0]), gx.numpy(), rtol=1e-12)
    out = post(client, {**base, "grad_outputs": ["go", "go"], "materialize_grads": True})
    np.testing.assert_array_equal(read_tensor(out["grads"][1]), np.zeros(3))


def test_non_finite_values_travel_as_strings_both_ways(client):
    x = np.array([1.0, np.inf, -np.inf, np.nan, 0.0], np.float32)
    req = {"graph": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [5],
                                 "data": [1.0, "Infinity", "-Infinity", "NaN", 0.0], "requires_grad": True}],
                     "source": "y = x * 2\nl = sum(log(x))\n"},
           "outputs": "l", "inputs": "x", "return": ["y", "l"], "allow_non_finite": True}
    out = post(client, req)
    xt = torch.tensor(x, requires_grad=True)
    g, = torch.autograd.grad(torch.log(xt).sum(), xt)
    assert out["values"]["y"]["data"] == [2.0, "Infinity", "-Infinity", "NaN", 0.0]
    assert out["values"]["l"]["data"] == ["NaN"]
    assert out["grads"][0]["data"][:2] == [1.0, 0.0] and out["grads"][0]["data"][4] == "Infinity"
    np.testing.assert_array_equal(read_tensor(out["grads"][0]), g.numpy())


def test_values_only_request_and_dtypes(client):
    ints = np.array([[1, 2], [3, 4]], np.int32)
    req = {"graph": {"inputs": [wire_tensor("i", ints), wire_tensor("h", np.array([1.5, 2.5], np.float16)),
                                wire_tensor("m", np.array([True, False]))],
                     "source": "s = sum(i, 0)\nhh = h * 2\nk = logical_not(m)\n"},
           "return": ["s", "hh", "k", "i"]}
    out = post(client, req)
    assert out["grads"] == []
    assert out["values"]["s"]["datatype"] == "INT64" and out["values"]["s"]["data"] == [4, 6]
    assert out["values"]["hh"]["datatype"] == "FP16" and out["values"]["hh"]["data"] == [3.0, 5.0]
    assert out["values"]["k"]["datatype"] == "BOOL" and out["values"]["k"]["data"] == [False, True]
    assert out["values"]["i"]["datatype"] == "INT32" and out["values"]["i"]["shape"] == [2, 2]


def test_numpy_datatype_aliases_and_nested_data(client):
    req = {"graph": {"inputs": [{"name": "x", "datatype": "float64", "shape": [2, 2],
                                 "data": [[1, 2], [3, 4]], "requires_grad": True}],
                     "source": "l = sum(x * x)"}, "outputs": "l", "inputs": "x"}
    out = post(client, req)
    assert out["grads"][0]["datatype"] == "FP64" and out["grads"][0]["shape"] == [2, 2]
    assert out["grads"][0]["data"] == [2.0, 4.0, 6.0, 8.0]


def test_retain_graph_error_on_a_second_pass_inside_one_request(client):
    # grad node 1 frees the graph (retain_graph defaults to create_graph=False); the top level then
    # backpropagates through it again: torch's "second time" RuntimeError, as a 422 autograd error
    src = "y = sum(exp(x) * x)\ng, = grad(y, x)\n"
    req = {"graph": {"inputs": [wire_tensor("x", np.array([0.5, 1.0]), requires_grad=True)], "source": src},
           "outputs": "y", "inputs": "x"}
    xt = torch.tensor([0.5, 1.0], requires_grad=True)
    y = (torch.exp(xt) * xt).sum()
    torch.autograd.grad(y, xt)
    with pytest.raises(RuntimeError) as te:
        torch.autograd.grad(y, xt)
    r = client.post("/v1/grad", json=req)
    assert r.status_code == 422
    body = r.json()
    assert body["exception"] == "RuntimeError"
    assert body["detail"].startswith("Trying to backward through the graph a second time")
    assert str(te.value).startswith(body["detail"][:60])
    # with retain_graph the same request works and matches torch
    req["graph"]["source"] = "y = sum(exp(x) * x)\ng, = grad(y, x, retain_graph=True)\n"
    out = post(client, {**req, "return": ["g"]})
    np.testing.assert_allclose(read_tensor(out["grads"][0]), read_tensor(out["values"]["g"]))
    xs = np.array([0.5, 1.0])
    np.testing.assert_allclose(read_tensor(out["grads"][0]), np.exp(xs) * (1 + xs))  # d/dx x e^x
