"""torch.func's transforms over the wire: the ``vmap`` node kind and ``func.grad``,
``func.grad_and_value``, ``func.vjp``, ``func.jvp``, ``func.jacrev``, ``func.jacfwd`` and
``func.hessian``. One request gives what ``torch.func`` gives for the function the graph
computes (torch is the oracle); vmap is checked statically (batch size x one element's cost);
bad nodes get 4xx problems naming the node and field, in torch's words."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.func as TF

from .helpers import read_tensor, wire_tensor

rng = np.random.default_rng(11)
W = rng.normal(size=(4, 3))
XS = rng.normal(size=(6, 3))
V4, V3 = rng.normal(size=4), rng.normal(size=3)

# loss(w, x) = sum(tanh(w @ x) ** 2), recorded at x = xs[0] (one element of the batch)
LOSS = [
    {"op": "select", "inputs": ["xs", 0, 0], "outputs": ["x"]},
    {"op": "matmul", "inputs": ["w", "x"], "outputs": ["h"]},
    {"op": "tanh", "inputs": ["h"], "outputs": ["y"]},
    {"op": "pow", "inputs": ["y", 2], "outputs": ["y2"]},
    {"op": "sum", "inputs": ["y2"], "outputs": ["loss"]},
]
N_LOSS = len(LOSS)


def t(a: Any) -> torch.Tensor:
    return torch.tensor(a)


def y_of(w: Any, x: Any) -> Any:
    return torch.tanh(w @ x)


def loss_of(w: Any, x: Any) -> Any:
    return (torch.tanh(w @ x) ** 2).sum()


def graph(*nodes: dict, source: str | None = None, xs: Any = XS) -> dict:
    g: dict[str, Any] = {"inputs": [wire_tensor("w", W), wire_tensor("xs", np.asarray(xs), encoding="b64"),
                                    wire_tensor("v4", V4), wire_tensor("v3", V3)]}
    if source is not None:
        g["source"] = source
    else:
        g["nodes"] = [*LOSS, *nodes]
    return g


def post(client: Any, req: dict, status: int = 200) -> dict:
    r = client.post("/v1/grad", json=req)
    assert r.status_code == status, r.text
    if status != 200:
        assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


def values(client: Any, *nodes: dict, ret: list[str]) -> dict[str, np.ndarray]:
    out = post(client, {"graph": graph(*nodes), "return": ret})
    return {k: read_tensor(v) for k, v in out["values"].items()}


def close(a: Any, b: Any) -> None:
    np.testing.assert_allclose(a, b.detach().numpy() if isinstance(b, torch.Tensor) else b, rtol=1e-9,
                               atol=1e-12)


# ---------------------------------------------------------------- results equal torch.func's
WX = ["w", "x"]


def test_per_sample_gradients_are_vmap_of_grad(client: Any) -> None:
    got = values(client,
                 {"op": "func.grad", "attributes": {"outputs": "loss", "inputs": WX}, "outputs": ["g"]},
                 {"op": "vmap", "attributes": {"outputs": "g", "inputs": ["w", "x"], "args": ["w", "xs"],
                                               "in_dims": [None, 0]}, "outputs": ["per_sample"]},
                 ret=["per_sample", "g"])
    close(got["per_sample"], TF.vmap(TF.grad(loss_of), in_dims=(None, 0))(t(W), t(XS)))
    close(got["g"], TF.grad(loss_of)(t(W), t(XS[0])))  # the node itself, at the recorded element


def test_grad_argnums_has_aux_and_grad_and_value(client: Any) -> None:
    got = values(client,
                 {"op": "func.grad", "attributes": {"outputs": "loss", "inputs": WX, "argnums": [0, 1]},
                  "outputs": ["gw", "gx"]},
                 {"op": "func.grad", "attributes": {"outputs": ["loss", "y"], "inputs": WX, "argnums": 1,
                                                    "has_aux": True}, "outputs": ["gx2", "aux"]},
                 {"op": "func.grad_and_value", "attributes": {"outputs": ["loss", "y", "h"], "inputs": WX,
                                                              "has_aux": True},
                  "outputs": ["gw3", "value", "aux1", "aux2"]},
                 ret=["gw", "gx", "gx2", "aux", "gw3", "value", "aux1", "aux2"])
    w, x = t(W), t(XS[0])
    gw, gx = TF.grad(loss_of, argnums=(0, 1))(w, x)
    close(got["gw"], gw)
    close(got["gx"], gx)
    gx2, aux = TF.grad(lambda w, x: (loss_of(w, x), y_of(w, x)), argnums=1, has_aux=True)(w, x)
    close(got["gx2"], gx2)
    close(got["aux"], aux)
    gw3, (value, (a1, a2)) = TF.grad_and_value(lambda w, x: (loss_of(w, x), (y_of(w, x), w @ x)),
                                               has_aux=True)(w, x)
    close(got["gw3"], gw3)
    close(got["value"], value)
    close(got["aux1"], a1)
    close(got["aux2"], a2)


def test_vjp_jvp_jacrev_jacfwd_hessian(client: Any) -> None:
    got = values(client,
                 {"op": "func.vjp", "attributes": {"outputs": "y", "inputs": ["w", "x"], "v": "v4"},
                  "outputs": ["vw", "vx"]},
                 {"op": "func.jvp", "attributes": {"outputs": ["y", "loss"], "inputs": "x", "v": "v3"},
                  "outputs": ["jy", "jl"]},
                 {"op": "func.jacrev", "attributes": {"outputs": ["y", "loss"], "inputs": ["w", "x"],
                                                      "argnums": [0, 1], "chunk_size": 2},
                  "outputs": ["Jyw", "Jyx", "Jlw", "Jlx"]},
                 {"op": "func.jacfwd", "attributes": {"outputs": "y", "inputs": ["w", "x"], "argnums": 1},
                  "outputs": ["Jf"]},
                 {"op": "func.hessian", "attributes": {"outputs": "loss", "inputs": ["w", "x"], "argnums": 1},
                  "outputs": ["H"]},
                 ret=["vw", "vx", "jy", "jl", "Jyw", "Jyx", "Jlw", "Jlx", "Jf", "H"])
    w, x = t(W), t(XS[0])
    _, vjp_fn = TF.vjp(y_of, w, x)
    vw, vx = vjp_fn(t(V4))
    close(got["vw"], vw)
    close(got["vx"], vx)
    _, (jy, jl) = TF.jvp(lambda x: (y_of(w, x), loss_of(w, x)), (x,), (t(V3),))
    close(got["jy"], jy)
    close(got["jl"], jl)
    (jyw, jyx), (jlw, jlx) = TF.jacrev(lambda w, x: (y_of(w, x), loss_of(w, x)), argnums=(0, 1))(w, x)
    for k, v in {"Jyw": jyw, "Jyx": jyx, "Jlw": jlw, "Jlx": jlx}.items():
        close(got[k], v)
    close(got["Jf"], TF.jacfwd(y_of, argnums=1)(w, x))
    close(got["H"], TF.hessian(loss_of, argnums=1)(w, x))


@pytest.mark.parametrize(("in_dims", "out_dims", "chunk_size"), [(0, 0, None), (1, 1, 2), (-1, -1, 4)])
def test_vmap_in_dims_out_dims_and_chunks(client: Any, in_dims: int, out_dims: int, chunk_size: Any) -> None:
    xs = np.moveaxis(XS, 0, in_dims)  # the batch along in_dims
    nodes = [{"op": "select", "inputs": ["xs", in_dims, 0], "outputs": ["x"]},
             {"op": "mul", "inputs": ["x", "x"], "outputs": ["xx"]},
             {"op": "outer", "inputs": ["xx", "x"], "outputs": ["o"]},
             {"op": "vmap", "attributes": {"outputs": "o", "inputs": "x", "args": "xs", "in_dims": in_dims,
                                           "out_dims": out_dims, "chunk_size": chunk_size},
              "outputs": ["O"]}]
    out = post(client, {"graph": {"inputs": [wire_tensor("xs", xs)], "nodes": nodes}, "return": ["O"]})
    expected = TF.vmap(lambda x: torch.outer(x * x, x), in_dims=in_dims, out_dims=out_dims,
                       chunk_size=chunk_size)(t(xs))
    close(read_tensor(out["values"]["O"]), expected)


def test_nested_vmap_and_vmap_of_jacrev(client: Any) -> None:
    batch = rng.normal(size=(2, 5, 3))
    nodes = [{"op": "select", "inputs": ["bb", 0, 0], "outputs": ["b"]},    # one batch: (5, 3)
             {"op": "select", "inputs": ["b", 0, 0], "outputs": ["x"]},     # one element: (3,)
             {"op": "matmul", "inputs": ["w", "x"], "outputs": ["h"]},
             {"op": "tanh", "inputs": ["h"], "outputs": ["y"]},
             {"op": "func.jacrev", "attributes": {"outputs": "y", "inputs": ["w", "x"], "argnums": 1},
              "outputs": ["J"]},
             {"op": "vmap", "attributes": {"outputs": "J", "inputs": ["w", "x"], "args": ["w", "b"],
                                           "in_dims": [None, 0]}, "outputs": ["Jb"]},
             {"op": "func.vmap", "attributes": {"outputs": "Jb", "inputs": ["w", "b"], "args": ["w", "bb"],
                                                "in_dims": [None, 0]}, "outputs": ["Jbb"]}]
    out = post(client, {"graph": {"inputs": [wire_tensor("w", W), wire_tensor("bb", batch)], "nodes": nodes},
                        "return": ["Jbb"]})
    jac = TF.jacrev(y_of, argnums=1)
    expected = TF.vmap(TF.vmap(jac, in_dims=(None, 0)), in_dims=(None, 0))(t(W), t(batch))
    close(read_tensor(out["values"]["Jbb"]), expected)


def test_vmap_results_are_differentiated_by_the_top_level_call(client: Any) -> None:
    """The final autograd_grad goes through the vmap node to an argument passed whole."""
    req = {"graph": graph(
        {"op": "vmap", "attributes": {"outputs": "loss", "inputs": ["w", "x"], "args": ["w", "xs"],
                                      "in_dims": [None, 0]}, "outputs": ["losses"]},
        {"op": "sum", "inputs": ["losses"], "outputs": ["total"]}), "outputs": "total", "inputs": "w"}
    req["graph"]["inputs"][0]["requires_grad"] = True
    out = post(client, req)
    w = t(W).requires_grad_()
    (g,) = torch.autograd.grad(torch.func.vmap(loss_of, in_dims=(None, 0))(w, t(XS)).sum(), w)
    close(read_tensor(out["grads"][0]), g)


def test_expression_form(client: Any) -> None:
    src = ("x = xs[0]\nloss = sum(tanh(w @ x) ** 2)\ng = func.grad(loss, (w, x))\n"
           "per_sample = vmap(g, (w, x), (w, xs), in_dims=(None, 0))\n"
           "H = torch.func.hessian(loss, (w, x), argnums=1)\n"
           "gw, gx = func.grad(loss, (w, x), argnums=(0, 1))\n"
           "J = func.jacfwd(tanh(w @ x), x)\nvx, = func.vjp(tanh(w @ x), x, v4)\n"
           "jv = func.jvp((tanh(w @ x), w @ x), x, v3, has_aux=True)")
    out = post(client, {"graph": graph(source=src), "return": ["per_sample", "H", "gx", "J", "vx", "jv"]})
    got = {k: read_tensor(v) for k, v in out["values"].items()}
    w, x = t(W), t(XS[0])
    close(got["per_sample"], TF.vmap(TF.grad(loss_of), in_dims=(None, 0))(w, t(XS)))
    close(got["H"], TF.hessian(loss_of, argnums=1)(w, x))
    close(got["gx"], TF.grad(loss_of, argnums=1)(w, x))
    close(got["J"], TF.jacfwd(lambda x: y_of(w, x))(x))
    close(got["vx"], TF.vjp(lambda x: y_of(w, x), x)[1](t(V4))[0])
    close(got["jv"], TF.jvp(lambda x: (y_of(w, x), w @ x), (x,), (t(V3),), has_aux=True)[1])


def test_graph_listing_shows_batched_shapes(client: Any) -> None:
    r = client.post("/v1/graph", json={"graph": graph(
        {"op": "func.grad", "attributes": {"outputs": "loss", "inputs": ["w", "x"]}, "outputs": ["g"]},
        {"op": "vmap", "attributes": {"outputs": "g", "inputs": ["w", "x"], "args": ["w", "xs"],
                                      "in_dims": [None, 0]}, "outputs": ["ps"]})})
    assert r.status_code == 200, r.text
    last = r.json()["nodes"][-1]
    assert last["op"] == "vmap"
    assert last["call"] == "vmap(outputs=g, inputs=[w, x], args=[w, xs], in_dims=[None, 0])"
    assert last["outputs"][0]["shape"] == [6, 4, 3]
    kinds = set(client.get("/v1/ops").json()["node_kinds"])
    assert {"vmap", "func.vmap", "func.grad", "func.jacrev"} <= kinds


# ---------------------------------------------------------------- errors
VMAP = {"op": "vmap", "attributes": {"outputs": "loss", "inputs": ["w", "x"], "args": ["w", "xs"],
                                     "in_dims": [None, 0]}, "outputs": ["L"]}


def vmap_node(**attrs: Any) -> dict:
    return {**VMAP, "attributes": {**VMAP["attributes"], **attrs}}


def torch_error(fn: Any) -> tuple[str, str]:
    with pytest.raises(Exception) as ei:
        fn()
    return type(ei.value).__name__, str(ei.value)


def after_api(msg: str) -> str:
    """torch's message past its ``vmap(<function name>, in_dims=..., ...)(<inputs>): `` prefix."""
    return msg.split("(<inputs>): ", 1)[-1]


@pytest.mark.parametrize("case", ["in_dim_range", "in_dims_structure", "batch_sizes", "nothing_mapped",
                                  "out_dim_range", "out_dim_none_batched"])
def test_vmap_errors_are_torchs_located_at_the_field(client: Any, case: str) -> None:
    w, xs = t(W), t(XS)
    node, field, theirs = {
        "in_dim_range": (vmap_node(in_dims=[None, 2]), "in_dims",
                         lambda: TF.vmap(loss_of, in_dims=(None, 2))(w, xs)),
        "in_dims_structure": (vmap_node(in_dims=[None, 0, 0]), "in_dims",
                              lambda: TF.vmap(loss_of, in_dims=(None, 0, 0))(w, xs)),
        "batch_sizes": (vmap_node(in_dims=[1, 0]), "args",
                        lambda: TF.vmap(loss_of, in_dims=(1, 0))(w, xs)),
        "nothing_mapped": (vmap_node(in_dims=None), "in_dims",
                           lambda: TF.vmap(loss_of, in_dims=None)(w, xs)),
        "out_dim_range": (vmap_node(out_dims=1), "out_dims",
                          lambda: TF.vmap(loss_of, in_dims=(None, 0), out_dims=1)(w, xs)),
        "out_dim_none_batched": (vmap_node(out_dims=None), "out_dims",
                                 lambda: TF.vmap(loss_of, in_dims=(None, 0), out_dims=None)(w, xs)),
    }[case]
    exc, msg = torch_error(theirs)
    body = post(client, {"graph": graph(node), "return": ["L"]}, 422)
    assert body["exception"] == exc, body
    if case == "batch_sizes":
        assert body["detail"] == msg  # no function name in this one
    elif case == "in_dims_structure":  # (the engine prints pytree structures its own way)
        assert after_api(body["detail"]).split(". ")[0] == after_api(msg).split(". ")[0]
    elif case != "out_dim_none_batched":  # torch words that one in its C++ layer
        assert after_api(body["detail"]) == after_api(msg), (body["detail"], msg)
    else:
        assert "out_dim" in body["detail"] and "None" in body["detail"]
    assert body["errors"][0]["loc"] == ["graph", "nodes", N_LOSS, "attributes", field], body
    assert body["errors"][0]["node"] == "L"


def test_random_ops_follow_randomness(client: Any) -> None:
    noisy = [{"op": "randn_like", "inputs": ["x"], "outputs": ["noise"]},
             {"op": "add", "inputs": ["x", "noise"], "outputs": ["xn"]}]
    node = {"op": "vmap", "attributes": {"outputs": "xn", "inputs": "x", "args": "xs"}, "outputs": ["XN"]}
    body = post(client, {"graph": graph(*noisy, node), "return": ["XN"]}, 422)
    exc, msg = torch_error(lambda: TF.vmap(lambda x: x + torch.randn_like(x))(t(XS)))
    assert (body["exception"], body["detail"]) == (exc, msg)
    assert body["errors"][0]["loc"] == ["graph", "nodes", N_LOSS + 2, "attributes", "randomness"]
    same = {**node, "attributes": {**node["attributes"], "randomness": "same"}}
    out = read_tensor(post(client, {"graph": graph(*noisy, same), "return": ["XN"]})["values"]["XN"])
    noise = out - XS
    assert np.allclose(noise, noise[0])  # one draw for the whole batch


@pytest.mark.parametrize(("node", "loc", "phrase"), [
    (vmap_node(randomness="sometimes"), ["attributes", "randomness"], "'error', 'different' or 'same'"),
    (vmap_node(chunk_size=0), ["attributes", "chunk_size"], "greater than or equal to 1"),
    (vmap_node(in_dim=0), ["attributes", "in_dim"], "unknown field; did you mean 'in_dims'?"),
    ({"op": "func.grad", "attributes": {"outputs": "loss", "inputs": ["w", "x"], "argnums": "0"},
      "outputs": ["g"]}, ["attributes", "argnums"], "int"),
])
def test_schema_errors_name_the_field(client: Any, node: dict, loc: list, phrase: str) -> None:
    body = post(client, {"graph": graph(node), "return": ["x"]}, 422)
    assert body["errors"][0]["loc"][:3] == ["graph", "nodes", N_LOSS], body
    assert [x for x in body["errors"][0]["loc"][3:] if x not in ("vmap", "func.grad")][:2] == loc, body
    assert phrase in body["errors"][0]["msg"], body


@pytest.mark.parametrize(("node", "field", "phrase"), [
    ({"op": "func.grad", "attributes": {"outputs": "loss", "inputs": ["w", "x"], "argnums": 2},
      "outputs": ["g"]}, ["attributes", "argnums"], "Got argnum=2, but only 2 positional inputs"),
    ({"op": "func.jacrev", "attributes": {"outputs": "y", "inputs": ["w", "x"], "argnums": [0, -2]},
      "outputs": ["a", "b"]}, ["attributes", "argnums"], "argnums elements must be unique, got (0, -2)"),
    ({"op": "func.grad", "attributes": {"outputs": "loss", "inputs": ["w", "x"], "argnums": []},
      "outputs": ["g"]}, ["attributes", "argnums"], "argnums must be non-empty"),
    ({"op": "func.grad", "attributes": {"outputs": "loss", "inputs": ["w", "x"], "has_aux": True},
      "outputs": ["g"]}, ["attributes", "outputs"], "with has_aux, outputs names the function's output"),
    ({"op": "func.jacfwd", "attributes": {"outputs": ["y", "loss"], "inputs": ["w", "x"], "argnums": [0, 1]},
      "outputs": ["a", "b", "c"]}, ["outputs"], "needs 4 output names, got 3"),
    (vmap_node(args=["xs"]), ["attributes", "args"], "args gives the function's 2 inputs"),
    (vmap_node(args=["w", "nope"]), ["attributes", "args", 1], "unknown name 'nope'"),
])
def test_graph_errors_name_the_field(client: Any, node: dict, field: list, phrase: str) -> None:
    body = post(client, {"graph": graph(node), "return": ["x"]}, 422)
    assert body["errors"][0]["loc"] == ["graph", "nodes", N_LOSS, *field], body
    assert phrase in body["detail"], body


def test_func_engine_errors_carry_torchs_message(client: Any) -> None:
    node = {"op": "func.grad", "attributes": {"outputs": "y", "inputs": ["w", "x"]}, "outputs": ["g"]}
    body = post(client, {"graph": graph(node), "return": ["x"]}, 422)
    exc, msg = torch_error(lambda: TF.grad(y_of)(t(W), t(XS[0])))
    assert (body["exception"], body["detail"]) == (exc, msg)
    assert body["errors"][0]["loc"][:4] == ["graph", "nodes", N_LOSS, "attributes"]


# ---------------------------------------------------------------- static costs
def _vmap_request(batch: int, chunk_size: int | None = None) -> dict:
    xs = np.zeros((batch, 3))
    return {"graph": graph(vmap_node(chunk_size=chunk_size), xs=xs)}


def test_vmap_work_counts_batch_times_one_element(make_client: Any) -> None:
    """One element costs ~1e4 units (a few primitives): 4 fit in 2e6, 4000 do not."""
    small = make_client(max_work=2e6)
    post(small, _vmap_request(4))
    body = post(small, _vmap_request(4000), 413)
    assert body["errors"][0]["loc"][0] == "graph"
    assert "max_work" in body["detail"]


def test_vmap_memory_counts_the_batch(make_client: Any) -> None:
    """One element's intermediates are small; the vectorized batch holds them all at once."""
    c = make_client(max_memory_bytes=4_000_000)
    post(c, _vmap_request(100))
    # the inputs and the results fit (3.8 MB), one element's intermediates times the batch do not
    body = post(c, _vmap_request(60_000), 413)
    assert "max_memory_bytes" in body["detail"], body
    assert body["errors"][0]["loc"] == ["graph", "nodes", N_LOSS], body  # at the vmap node
    post(c, _vmap_request(60_000, chunk_size=100))  # a chunk's intermediates at once


@pytest.mark.parametrize(("source", "col", "phrase"), [
    ("x = xs[0]\ny = vmap(x * 2, x, xs, in_dims='0')", 32, "vmap(): in_dims must be integers or None"),
    ("x = xs[0]\ny = func.grad(sum(x), x, argnums=None)", 34, "func.grad(): argnums must be integers"),
    ("x = xs[0]\ny = func.grad(sum(x), x, has_aux=True)", 15, "with has_aux=True, outputs is (output, aux)"),
    ("x = xs[0]\ny = func.grad(sum(x), x, argnum=0)", 5, "did you mean 'argnums'?"),
    ("x = xs[0]\ny = func.jacrev(x * 2, x, argnums=(0,))", 5, "func.jacrev() returns a tuple here"),
    ("x = xs[0]\ny = vmap(x * 2, x, xs, in_dims=3)", 5, "Got in_dim=3 for some input"),
])
def test_expression_form_errors_are_located(client: Any, source: str, col: int, phrase: str) -> None:
    body = post(client, {"graph": graph(source=source), "return": ["x"]}, 422)
    item = body["errors"][0]
    assert item["loc"] == ["graph", "source"] and item["line"] == 2, body
    assert item["col"] == col, body
    assert phrase in item["msg"], body


def test_vmap_over_an_empty_batch(client: Any) -> None:
    """The function's inputs are any values of one element's shape (here an input, not a row of
    the empty batch); torch's result is empty along out_dims."""
    req = {"graph": {"inputs": [wire_tensor("x0", V3), wire_tensor("xs", np.zeros((0, 3)))],
                     "nodes": [{"op": "outer", "inputs": ["x0", "x0"], "outputs": ["o"]},
                               {"op": "vmap", "attributes": {"outputs": "o", "inputs": "x0", "args": "xs",
                                                             "out_dims": 1}, "outputs": ["O"]}]},
           "return": ["O"]}
    got = read_tensor(post(client, req)["values"]["O"])
    close(got, TF.vmap(lambda x: torch.outer(x, x), out_dims=1)(torch.zeros(0, 3, dtype=torch.float64)))
