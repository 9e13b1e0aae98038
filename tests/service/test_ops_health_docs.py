"""GET /v1/ops mirrors engine.OPS; health probes; OpenAPI at /docs."""

from __future__ import annotations

import inspect

import engine


def test_ops_lists_every_engine_op_with_signature_and_differentiable_args(client):
    r = client.get("/v1/ops")
    assert r.status_code == 200
    body = r.json()
    by_name = {o["name"]: o for o in body["ops"]}
    assert set(by_name) == set(engine.OPS) and body["count"] == len(engine.OPS)
    assert body["node_kinds"] == ["op", "grad", "jacobian", "hessian", "vjp", "jvp", "hvp", "vhp",
                                  "func.grad", "func.grad_and_value", "func.jacrev", "func.jacfwd",
                                  "func.hessian", "func.vjp", "func.jvp", "vmap", "func.vmap"]
    for name, info in engine.OPS.items():
        o = by_name[name]
        assert o["canonical"] == info.name
        assert o["differentiable"] == list(info.differentiable)
        assert o["n_outputs"] == info.n_outputs
        assert [p["name"] for p in o["parameters"]] == list(info.signature.parameters)
        assert o["signature"] == f"{info.name}{info.signature}"
    mean = by_name["mean"]
    dim = next(p for p in mean["parameters"] if p["name"] == "dim")
    assert dim["default"] is None and dim["kind"] == "positional_or_keyword"
    assert by_name["max"]["n_outputs"] is None


def test_ops_listing_follows_new_registrations(client, monkeypatch):
    def shiny(input, alpha=2.5):
        """A test op."""
        return input * alpha

    monkeypatch.setitem(engine.OPS, "test.shiny", engine.OpInfo("test.shiny", shiny, ("input",),
                                                                 inspect.signature(shiny), 1))
    ops = {o["name"]: o for o in client.get("/v1/ops").json()["ops"]}
    assert ops["test.shiny"]["parameters"][1] == {"name": "alpha", "kind": "positional_or_keyword",
                                                  "default": 2.5}
    assert ops["test.shiny"]["doc"] == "A test op."


def test_health(client):
    assert client.get("/health/live").json() == {"status": "ok"}
    r = client.get("/health/ready")
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_openapi_and_docs(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/grad", "/v1/ops", "/health/live", "/health/ready"} <= set(spec["paths"])
    body = spec["paths"]["/v1/grad"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/GradRequest"}
    assert "application/octet-stream" in body
    schemas = spec["components"]["schemas"]
    assert {"GradRequest", "Graph", "TensorIn", "OpNode", "GradNode", "Problem"} <= set(schemas)
    assert "return" in schemas["GradRequest"]["properties"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
