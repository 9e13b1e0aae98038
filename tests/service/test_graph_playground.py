"""POST /v1/graph (a graph's nodes, edges and shapes, checked but not run) and the playground page.

Shapes, dtypes and requires_grad are checked against torch running the same expression; the page
itself is driven in a real browser by tests/e2e/test_playground.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from service.routers.graph import GraphDescription
from service.routers.playground import CSP

SEED = "y = 2 * x + 1\nloss = mean((y - (w * x + b)) ** 2)"


def _seed(source: str = SEED, **top) -> dict:
    return {"graph": {"inputs": [
        {"name": "w", "datatype": "FP32", "shape": [], "data": 0.5, "requires_grad": True},
        {"name": "b", "datatype": "FP32", "shape": [], "data": 0.9, "requires_grad": True},
        {"name": "x", "datatype": "FP64", "shape": [2, 2], "data": [[0.1, 0.4], [0.7, 0.9]]}],
        "source": source}, **top}


def test_graph_lists_nodes_edges_and_each_values_shape_dtype_and_requires_grad(client):
    r = client.post("/v1/graph", json=_seed(outputs=["loss"], inputs=["w", "b"]))
    assert r.status_code == 200, r.text
    d = r.json()
    GraphDescription.model_validate(d)  # what the OpenAPI schema says
    assert d["hash"].startswith("sha256:")
    assert d["inputs"] == [{"name": "w", "shape": [], "datatype": "FP32", "requires_grad": True},
                           {"name": "b", "shape": [], "datatype": "FP32", "requires_grad": True},
                           {"name": "x", "shape": [2, 2], "datatype": "FP64", "requires_grad": False}]
    # torch, the same computation step by step: shape, dtype and requires_grad of each value
    w = torch.tensor(0.5, requires_grad=True)
    b = torch.tensor(0.9, requires_grad=True)
    x = torch.tensor([[0.1, 0.4], [0.7, 0.9]], dtype=torch.float64)
    t1 = 2 * x
    y = t1 + 1
    t3 = w * x
    t4 = t3 + b
    t5 = y - t4
    t6 = t5 ** 2
    loss = t6.mean()
    # (op, operands, torch's result): "#k" is step k's result (the compiler names temporaries as it
    # likes), other strings are inputs, numbers are literals
    steps = [("mul", [2, "x"], t1), ("add", ["#0", 1], y), ("mul", ["w", "x"], t3), ("add", ["#2", "b"], t4),
             ("sub", ["#1", "#3"], t5), ("pow", ["#4", 2], t6), ("mean", ["#5"], loss)]
    names = {"float32": "FP32", "float64": "FP64"}
    assert len(d["nodes"]) == len(steps)
    made = [n["outputs"][0]["name"] for n in d["nodes"]]
    for n, (op, operands, t) in zip(d["nodes"], steps):
        args = [made[int(a[1:])] if isinstance(a, str) and a[0] == "#" else a for a in operands]
        assert n["op"] == op
        assert n["call"] == f"{op}({', '.join(map(str, args))})"
        assert n["inputs"] == [a for a in args if isinstance(a, str)]
        (out,) = n["outputs"]
        assert out["shape"] == list(t.shape)
        assert out["datatype"] == names[str(t.dtype).removeprefix("torch.")]
        assert out["requires_grad"] == t.requires_grad
    assert [n["outputs"][0]["name"] for n in d["nodes"]][1::5] == ["y", "loss"]
    # where each node is in the source: the operator's or call's first character
    lines = SEED.splitlines()
    for n in d["nodes"]:
        assert 1 <= n["col"] <= len(lines[n["line"] - 1])
    assert (d["nodes"][-1]["line"], d["nodes"][-1]["col"]) == (2, lines[1].index("mean") + 1)
    assert d["memory_bytes"] > 0


def test_graph_names_grad_and_functional_nodes_and_value_dependent_shapes(client):
    body = {"graph": {"inputs": [{"name": "x", "datatype": "FP64", "shape": [3], "data": [1, 2, 3],
                                  "requires_grad": True}],
                      "source": "f = sum(x ** 3)\ng, = grad(f, x, create_graph=True)\nm = x[x > 1]"}}
    d = client.post("/v1/graph", json=body).json()
    grad = next(n for n in d["nodes"] if n["op"] == "grad")
    assert grad["call"] == "grad([f], [x], create_graph=True)" and grad["inputs"] == ["f", "x"]
    assert grad["outputs"] == [{"name": "g", "shape": [3], "datatype": "FP64", "requires_grad": True}]
    m = next(o for n in d["nodes"] for o in n["outputs"] if o["name"] == "m")
    assert m["datatype"] == "FP64"  # its shape is an upper bound or unknown until it runs
    assert m["shape"] in (None, [3])


@pytest.mark.parametrize("source, line, at, what", [
    ("y = 2 * x + 1\nloss = mean((y - (w * x + bias)) ** 2)", 2, "bias", "bias"),  # unknown name
    ("h = x @ w", 1, "x @", "matmul"),                                                # shapes (meta check)
    ("loss = sum(x) +", 1, None, "syntax"),                                           # Python's parser
])
def test_graph_errors_are_those_of_grad_with_their_source_location(client, source, line, at, what):
    text = source.splitlines()[line - 1]
    col = text.index(at) + 1 if at else len(text) + 1
    for path in ("/v1/graph", "/v1/grad"):
        r = client.post(path, json=_seed(source))
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        err = r.json()["errors"][0]
        assert (err["line"], err["col"]) == (line, col) and what in r.json()["detail"] + err["msg"], r.text


def test_graph_refuses_what_it_cannot_describe(client, make_client):
    r = client.post("/v1/graph", json={"graph": {"hash": "sha256:" + "0" * 64, "inputs": []}})
    assert r.status_code == 400 and r.json()["errors"][0]["loc"] == ["graph", "hash"]
    r = client.post("/v1/graph", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = client.post("/v1/graph", content=b"{}", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    keyed = make_client(api_keys=["k"])
    assert keyed.post("/v1/graph", json=_seed()).status_code == 401
    assert keyed.post("/v1/graph", json=_seed(), headers={"Authorization": "Bearer k"}).status_code == 200


def test_graph_is_documented(client):
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/graph"]["post"]
    assert "422" in op["responses"] and "application/json" in op["requestBody"]["content"]
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/GraphDescription"}
    props = spec["components"]["schemas"]["GraphNode"]["properties"]
    assert {"op", "call", "inputs", "outputs", "line", "col"} <= set(props)


def test_the_root_redirects_to_the_playground_which_loads_nothing_from_elsewhere(make_client):
    client = make_client(api_keys=["k"])  # the page itself needs no key
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/playground"
    page = client.get("/playground")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CSP
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert {"/playground/playground.js", "/playground/playground.css", "/docs", "/redoc"} <= set(assets)
    for url in assets:
        if url.startswith("data:"):
            continue
        assert url.startswith("/"), url
        assert client.get(url).status_code == 200, url
    for url in ("/playground", "/playground/playground.js", "/playground/playground.css"):
        text = client.get(url).text.replace("http://www.w3.org/2000/svg", "")  # a namespace, not a load
        assert re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text) == [], url
    assert client.get("/playground/app.py").status_code == 404
    assert client.get("/playground/..%2Fapp.py").status_code == 404


def test_the_readme_shows_the_playground_and_says_how_to_run_it():
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    assert "## The playground" in readme and "http://127.0.0.1:8000/" in readme
    assert "](docs/playground.png)" in readme
    assert (root / "docs" / "playground.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
