"""Functional nodes over the wire (jacobian, hessian, vjp, jvp, hvp, vhp): one request gives what
``torch.autograd.functional`` gives for the function the graph computes, and bad nodes get 4xx
problems naming the field."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.autograd.functional as TAF

from .helpers import read_tensor, wire_tensor

rng = np.random.default_rng(7)
X = rng.normal(size=(4, 3))
W1, B1, W2 = rng.normal(size=(3, 5)), rng.normal(size=5), rng.normal(size=(5, 2))
V1, VB, VY = rng.normal(size=(3, 5)), rng.normal(size=5), rng.normal(size=(4, 2))

MLP_NODES = [
    {"op": "matmul", "inputs": ["x", "w1"], "outputs": ["h"]},
    {"op": "add", "inputs": ["h", "b1"], "outputs": ["hb"]},
    {"op": "tanh", "inputs": ["hb"], "outputs": ["a"]},
    {"op": "matmul", "inputs": ["a", "w2"], "outputs": ["y"]},
    {"op": "pow", "inputs": ["y", 2], "outputs": ["y2"]},
    {"op": "mean", "inputs": ["y2"], "outputs": ["loss"]},
]


def mlp_torch(x: Any, w1: Any, b1: Any, w2: Any) -> tuple[Any, Any]:
    y = torch.tanh(x @ w1 + b1) @ w2
    return y, (y ** 2).mean()


def graph(*extra_nodes: dict, requires_grad: bool = False) -> dict:
    return {"inputs": [wire_tensor("x", X), wire_tensor("w1", W1, requires_grad=requires_grad),
                       wire_tensor("b1", B1, requires_grad=requires_grad), wire_tensor("w2", W2),
                       wire_tensor("v1", V1), wire_tensor("vb", VB), wire_tensor("vy", VY)],
            "nodes": [*MLP_NODES, *extra_nodes]}


def post(client: Any, req: dict, status: int = 200) -> dict:
    r = client.post("/v1/grad", json=req)
    assert r.status_code == status, r.text
    return r.json()


def values(out: dict) -> dict[str, np.ndarray]:
    return {k: read_tensor(v) for k, v in out["values"].items()}


def close(ours: np.ndarray, theirs: torch.Tensor, rtol: float = 1e-10) -> None:
    t = theirs.detach().numpy()
    assert ours.shape == t.shape, (ours.shape, t.shape)
    np.testing.assert_allclose(ours, t, rtol=rtol, atol=1e-12)


T = torch.tensor
w2_t = T(W2)


def loss_of(w1: Any, b1: Any) -> Any:
    return mlp_torch(T(X), w1, b1, w2_t)[1]


def out_of(w1: Any, b1: Any) -> Any:
    return mlp_torch(T(X), w1, b1, w2_t)[0]


# ---------------------------------------------------------------- results vs torch
def test_jacobian_hessian_hvp_and_jvp_in_one_request(client: Any) -> None:
    nodes = [
        {"op": "jacobian", "attributes": {"outputs": "y", "inputs": ["w1", "b1"]},
         "outputs": ["J_w1", "J_b1"]},
        {"op": "hessian", "attributes": {"outputs": "loss", "inputs": ["w1", "b1"]},
         "outputs": ["H_ww", "H_wb", "H_bw", "H_bb"]},
        {"op": "hvp", "attributes": {"outputs": "loss", "inputs": ["w1", "b1"], "v": ["v1", "vb"]},
         "outputs": ["Hv_w1", "Hv_b1"]},
        {"op": "jvp", "attributes": {"outputs": "y", "inputs": ["w1", "b1"], "v": ["v1", "vb"]},
         "outputs": ["Jv"]},
        {"op": "vjp", "attributes": {"outputs": "y", "inputs": ["w1", "b1"], "v": "vy"},
         "outputs": ["vJ_w1", "vJ_b1"]},
        {"op": "vhp", "attributes": {"outputs": "loss", "inputs": "b1", "v": "vb"}, "outputs": ["vH_b1"]},
    ]
    names = [name for n in nodes for name in n["outputs"]] + ["loss"]
    out = values(post(client, {"graph": graph(*nodes), "return": names}))
    w, b = T(W1), T(B1)
    J = TAF.jacobian(out_of, (w, b))
    close(out["J_w1"], J[0])
    close(out["J_b1"], J[1])
    H = TAF.hessian(loss_of, (w, b))
    for name, block in zip(["H_ww", "H_wb", "H_bw", "H_bb"], [H[0][0], H[0][1], H[1][0], H[1][1]]):
        close(out[name], block)
    _, hv = TAF.hvp(loss_of, (w, b), (T(V1), T(VB)))
    close(out["Hv_w1"], hv[0])
    close(out["Hv_b1"], hv[1])
    _, jv = TAF.jvp(out_of, (w, b), (T(V1), T(VB)))
    close(out["Jv"], jv)
    _, vj = TAF.vjp(out_of, (w, b), T(VY))
    close(out["vJ_w1"], vj[0])
    close(out["vJ_b1"], vj[1])
    _, vh = TAF.vhp(lambda b_: loss_of(w, b_), b, T(VB))
    close(out["vH_b1"], vh)
    close(out["loss"], loss_of(w, b))


@pytest.mark.parametrize(("vectorize", "strategy"), [(False, "reverse-mode"), (True, "reverse-mode"),
                                                     (True, "forward-mode")])
def test_jacobian_layouts_and_strategies(client: Any, vectorize: bool, strategy: str) -> None:
    """Outputs x inputs blocks, row-major, for every combination of single names and lists."""
    flags = {"vectorize": vectorize, "strategy": strategy}
    nodes = [
        {"op": "jacobian", "attributes": {"outputs": ["y", "loss"], "inputs": ["w1", "b1"], **flags},
         "outputs": ["yw", "yb", "lw", "lb"]},
        {"op": "jacobian", "attributes": {"outputs": ["y"], "inputs": "b1", **flags}, "outputs": ["yb1"]},
        {"op": "jacobian", "attributes": {"outputs": "loss", "inputs": "b1", **flags}, "outputs": ["lb1"]},
    ]
    out = values(post(client, {"graph": graph(*nodes), "return": ["yw", "yb", "lw", "lb", "yb1", "lb1"]}))
    J = TAF.jacobian(lambda w, b: mlp_torch(T(X), w, b, w2_t), (T(W1), T(B1)), vectorize=vectorize,
                     strategy=strategy)
    for name, block in zip(["yw", "yb", "lw", "lb"], [J[0][0], J[0][1], J[1][0], J[1][1]]):
        close(out[name], block)
    close(out["yb1"], J[0][1])
    close(out["lb1"], J[1][1])


def test_hessian_forward_over_reverse(client: Any) -> None:
    node = {"op": "hessian", "attributes": {"outputs": "loss", "inputs": "w1", "vectorize": True,
                                            "outer_jacobian_strategy": "forward-mode"}, "outputs": ["H"]}
    out = values(post(client, {"graph": graph(node), "return": ["H"]}))
    close(out["H"], TAF.hessian(lambda w: loss_of(w, T(B1)), T(W1)), rtol=1e-9)


def test_the_function_starts_at_intermediate_values(client: Any) -> None:
    """Inputs may be any values of the graph: the part between them and the outputs is re-run;
    what feeds the inputs is not (here the Jacobian is with respect to the hidden activation)."""
    node = {"op": "jacobian", "attributes": {"outputs": "loss", "inputs": ["a", "w2"]},
            "outputs": ["Ja", "Jw2"]}
    out = values(post(client, {"graph": graph(node), "return": ["Ja", "Jw2", "a"]}))
    a = torch.tanh(T(X) @ T(W1) + T(B1))
    J = TAF.jacobian(lambda a_, w2_: ((a_ @ w2_) ** 2).mean(), (a, T(W2)))
    close(out["Ja"], J[0])
    close(out["Jw2"], J[1])
    close(out["a"], a)


def test_create_graph_results_are_differentiated_again(client: Any) -> None:
    """With create_graph the blocks stay in the graph: the top-level grad differentiates them
    (here the gradient of ||J||^2 with respect to the parameters, which require grad)."""
    nodes = [
        {"op": "jacobian", "attributes": {"outputs": "y", "inputs": "b1", "create_graph": True},
         "outputs": ["J"]},
        {"op": "pow", "inputs": ["J", 2], "outputs": ["J2"]},
        {"op": "sum", "inputs": ["J2"], "outputs": ["n"]},
    ]
    out = post(client, {"graph": graph(*nodes, requires_grad=True), "outputs": "n", "inputs": ["w1", "b1"],
                        "return": ["n"]})
    w, b = T(W1, requires_grad=True), T(B1, requires_grad=True)
    J = TAF.jacobian(lambda b_: out_of(w, b_), b, create_graph=True)
    gw, gb = torch.autograd.grad((J ** 2).sum(), (w, b))
    close(read_tensor(out["grads"][0]), gw)
    close(read_tensor(out["grads"][1]), gb)
    close(read_tensor(out["values"]["n"]), (J ** 2).sum())


def test_results_in_b64_and_binary_responses(client: Any) -> None:
    node = {"op": "hvp", "attributes": {"outputs": "loss", "inputs": "b1", "v": "vb"}, "outputs": ["hv"]}
    req = {"graph": graph(node), "return": ["hv"], "response_encoding": "b64"}
    out = post(client, req)
    assert "b64" in out["values"]["hv"]
    _, hv = TAF.hvp(lambda b_: loss_of(T(W1), b_), T(B1), T(VB))
    close(read_tensor(out["values"]["hv"]), hv)


# ---------------------------------------------------------------- errors
def problem(client: Any, req: dict, status: int = 422) -> dict:
    r = client.post("/v1/grad", json=req)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


@pytest.mark.parametrize(("node", "loc", "phrase"), [
    ({"op": "hvp", "attributes": {"outputs": "loss", "inputs": "b1", "v": "vb", "strategy": "forward-mode"},
      "outputs": ["hv"]}, ["graph", "nodes", 6, "attributes", "strategy"], "unknown field"),
    ({"op": "jacobian", "attributes": {"outputs": "y", "inputs": "b1", "strategy": "sideways"},
      "outputs": ["J"]}, ["graph", "nodes", 6, "attributes", "strategy"], "reverse-mode"),
    ({"op": "jacobian", "attributes": {"inputs": "b1"}, "outputs": ["J"]},
     ["graph", "nodes", 6, "attributes", "outputs"], "Field required"),
    ({"op": "hessian", "inputs": ["loss"], "attributes": {"outputs": "loss", "inputs": "b1"},
      "outputs": ["H"]},
     ["graph", "nodes", 6, "inputs"], "at most 0 items"),
])
def test_schema_errors_name_the_field(client: Any, node: dict, loc: list, phrase: str) -> None:
    body = problem(client, {"graph": graph(node), "return": ["y"]})
    assert body["errors"][0]["loc"] == loc, body
    assert phrase in body["errors"][0]["msg"]


@pytest.mark.parametrize(("node", "loc", "phrase"), [
    ({"op": "jacobian", "attributes": {"outputs": ["y", "loss"], "inputs": ["w1", "b1"]}, "outputs": ["a1"]},
     ["graph", "nodes", 6, "outputs"], "needs 4 output names, got 1"),
    ({"op": "hessian", "attributes": {"outputs": "loss", "inputs": ["w1", "b1"]}, "outputs": ["h1", "h2"]},
     ["graph", "nodes", 6, "outputs"], "needs 4 output names, got 2"),
    ({"op": "jvp", "attributes": {"outputs": ["y", "loss"], "inputs": "b1", "v": "vb"}, "outputs": ["j"]},
     ["graph", "nodes", 6, "outputs"], "one product per function output"),
    ({"op": "vjp", "attributes": {"outputs": "loss", "inputs": ["w1", "b1"]}, "outputs": ["g"]},
     ["graph", "nodes", 6, "outputs"], "one product per function input"),
    ({"op": "hvp", "attributes": {"outputs": "loss", "inputs": "b1", "v": "nope"}, "outputs": ["hv"]},
     ["graph", "nodes", 6, "attributes", "v"], "unknown name 'nope'"),
    ({"op": "jacobian", "attributes": {"outputs": "y", "inputs": []}, "outputs": ["J"]},
     ["graph", "nodes", 6, "attributes", "inputs"], "must name at least one value"),
])
def test_graph_errors_name_the_field(client: Any, node: dict, loc: list, phrase: str) -> None:
    body = problem(client, {"graph": graph(node), "return": ["y"]})
    assert body["errors"][0]["loc"] == loc, body
    assert phrase in body["detail"]


def _torch_message(fn: Any) -> tuple[str, str]:
    with pytest.raises(Exception) as ei:
        fn()
    return type(ei.value).__name__, str(ei.value)


@pytest.mark.parametrize("case", ["strict_unused", "hessian_vector_output", "v_size", "v_missing",
                                  "forward_mode_without_vectorize"])
def test_engine_errors_carry_torch_type_message_and_field(client: Any, case: str) -> None:
    w, b = T(W1), T(B1)
    node, loc, theirs = {
        "strict_unused": (
            {"op": "jacobian", "attributes": {"outputs": "y", "inputs": ["b1", "vb"], "strict": True},
             "outputs": ["J1", "J2"]},
            ["graph", "nodes", 6, "attributes", "inputs", 1],
            lambda: TAF.jacobian(lambda b_, v_: out_of(w, b_), (b, T(VB)), strict=True)),
        "hessian_vector_output": (
            {"op": "hessian", "attributes": {"outputs": "y", "inputs": "b1"}, "outputs": ["H"]},
            ["graph", "nodes", 6, "attributes", "outputs"],
            lambda: TAF.hessian(lambda b_: out_of(w, b_), b)),
        "v_size": (
            {"op": "hvp", "attributes": {"outputs": "loss", "inputs": "b1", "v": "v1"}, "outputs": ["hv"]},
            ["graph", "nodes", 6, "attributes", "v"],
            lambda: TAF.hvp(lambda b_: loss_of(w, b_), b, T(V1))),
        "v_missing": (
            {"op": "jvp", "attributes": {"outputs": "y", "inputs": "b1"}, "outputs": ["jv"]},
            ["graph", "nodes", 6, "attributes", "v"],
            lambda: TAF.jvp(lambda b_: out_of(w, b_), b)),
        "forward_mode_without_vectorize": (
            {"op": "jacobian", "attributes": {"outputs": "y", "inputs": "b1", "strategy": "forward-mode"},
             "outputs": ["J"]},
            ["graph", "nodes", 6, "attributes", "vectorize"],  # forward mode needs vectorize=True
            lambda: TAF.jacobian(lambda b_: out_of(w, b_), b, strategy="forward-mode")),
    }[case]
    exc, msg = _torch_message(theirs)
    body = problem(client, {"graph": graph(node), "return": ["y"]})
    assert body["exception"] == exc
    assert body["detail"] == msg
    assert body["errors"][0]["loc"] == loc, body
    # the server keeps serving
    post(client, {"graph": graph(), "return": ["loss"]})


def test_jacobian_blocks_over_the_element_limit_are_refused_before_running(make_client: Any) -> None:
    c = make_client(max_tensor_elements=100)
    node = {"op": "jacobian", "attributes": {"outputs": "y", "inputs": "w1"}, "outputs": ["J"]}
    body = problem(c, {"graph": graph(node), "return": ["J"]}, status=413)
    assert body["limit"] == "max_tensor_elements"
    assert "8 x 15 = 120" in body["detail"]


def test_is_grads_batched_at_the_top_level_and_in_a_grad_node(client: Any) -> None:
    """A batch of cotangents (here the identity) in one call: the Jacobian, as torch gives it."""
    eye = np.eye(8).reshape(8, 4, 2)
    node = {"op": "grad", "attributes": {"outputs": "y", "inputs": ["b1"], "grad_outputs": ["eye"],
                                         "is_grads_batched": True, "retain_graph": True},
            "outputs": ["Jb"]}
    g = graph(node, requires_grad=True)
    g["inputs"].append(wire_tensor("eye", eye))
    out = post(client, {"graph": g, "outputs": "y", "inputs": ["w1", "b1"],
                        "grad_outputs": [wire_tensor("go", eye)], "is_grads_batched": True, "return": ["Jb"]})
    w, b = T(W1, requires_grad=True), T(B1, requires_grad=True)
    gw, gb = torch.autograd.grad(out_of(w, b), (w, b), T(eye), is_grads_batched=True)
    close(read_tensor(out["grads"][0]), gw)
    close(read_tensor(out["grads"][1]), gb)
    close(read_tensor(out["values"]["Jb"]), gb)
