"""The OpenAPI document tells the truth: request schemas accept what the server accepts (the
README's examples included) and refuse what it refuses; every status has its media type and a
schema. Schemathesis fuzzes the live server against it in tests/e2e/test_openapi_fuzz.py."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest

from service.app import create_app
from service.errors import PROBLEM_MEDIA_TYPE
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def doc() -> dict:
    return create_app(Settings(api_keys=[])).openapi()


def validator(doc: dict, name: str) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema)


def _readme_requests() -> list[str]:
    """The JSON bodies of the README's curl examples of POST /v1/grad."""
    text = (ROOT / "README.md").read_text()
    pattern = r"curl -s localhost:8000/v1/grad [^\n]*-d '(\{.*?\})'"
    return [m.group(1) for m in re.finditer(pattern, text, re.S)]


def test_the_readme_requests_are_schema_valid_and_accepted(doc, client):
    import json

    bodies = _readme_requests()
    assert len(bodies) >= 4  # the seed example, the expression form, higher order, functional nodes
    v = validator(doc, "GradRequest")
    for body in bodies:
        req = json.loads(body)
        errors = [e.message for e in v.iter_errors(req)]
        assert not errors, (body[:200], errors)
        r = client.post("/v1/grad", json=req)
        assert r.status_code == 200, r.text


X = {"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}
XG = {**X, "requires_grad": True}


@pytest.mark.parametrize(("req", "valid"), [
    ({"graph": {"inputs": [X], "source": "y = x"}}, True),
    ({"graph": {"inputs": [X], "source": "y = x", "hash": None}}, True),
    ({"graph": {"inputs": [X], "hash": "sha256:" + "a" * 64}}, True),
    ({"graph": {"inputs": [XG], "nodes": [{"op": "grad", "attributes": {"outputs": "x", "inputs": "x",
                                                                       "allow_unused": True},
                                           "outputs": ["g"]}]}}, True),
    ({"graph": {"inputs": [XG], "source": "y = x * 1"}, "outputs": "y", "inputs": "x"}, True),
    ({"graph": {"inputs": [X], "source": "y = x", "nodes": []}}, False),    # two bodies
    ({"graph": {"inputs": [X]}}, False),                                     # no body
    ({"graph": {"inputs": [{**X, "name": None}], "source": "y = 1"}}, False),  # an unnamed input
    ({"graph": {"inputs": [{**X, "datatype": "FP8"}], "source": "y = x"}}, False),
    ({"graph": {"inputs": [{**X, "b64": "AAAAAA=="}], "source": "y = x"}}, False),  # data and b64
    ({"graph": {"inputs": [{**X, "data": None}], "source": "y = x"}}, False),
    ({"graph": {"inputs": [X], "nodes": [{"op": "grad", "inputs": ["x"], "outputs": ["g"]}]}}, False),
    ({"graph": {"inputs": [X], "nodes": [{"op": "jacobian", "attributes": {"outputs": "x", "inputs": "x",
                                                                              "vectorise": True},
                                          "outputs": ["j"]}]}}, False),
    ({"graph": {"inputs": [X], "source": "y = x"}, "outputs": "y"}, False),  # outputs without inputs
])
def test_request_schema_agrees_with_the_server(doc, client, req, valid):
    ok = validator(doc, "GradRequest").is_valid(req)
    assert ok == valid
    r = client.post("/v1/grad", json=req)
    if valid:
        assert r.status_code in (200, 409), r.text  # 409: a hash this process never saw
    else:
        assert r.status_code == 422, r.text


def test_every_response_has_a_media_type_and_a_schema(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert "422" not in op["responses"] or method == "post", (path, method)
            for status, resp in op["responses"].items():
                assert resp.get("content"), (path, method, status)
                for media, body in resp["content"].items():
                    assert body.get("schema"), (path, method, status, media)
                    if int(status) >= 400 and not path.startswith(("/v2", "/health")):
                        assert media == PROBLEM_MEDIA_TYPE, (path, method, status)
    grad = doc["paths"]["/v1/grad"]["post"]
    assert {"400", "408", "409", "413", "415", "422", "503", "504"} <= set(grad["responses"])
    assert "Retry-After" in grad["responses"]["503"]["headers"]
    assert any(p["name"] == "Inference-Header-Content-Length" for p in grad["parameters"])
    infer = doc["paths"]["/v2/models/{model_name}/infer"]["post"]
    assert set(infer["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert {"400", "404"} <= set(infer["responses"])
    assert "links" in grad["responses"]["200"]


def test_api_keys_are_declared_only_when_configured(doc):
    assert "securitySchemes" not in doc["components"]
    assert "401" not in doc["paths"]["/v1/grad"]["post"]["responses"]
    keyed = create_app(Settings(api_keys=["k"])).openapi()
    grad = keyed["paths"]["/v1/grad"]["post"]
    assert grad["security"] == [{"bearer": []}] and "401" in grad["responses"]
    assert "security" not in keyed["paths"]["/health/ready"]["get"]


def test_documented_error_bodies_match_what_is_sent(doc, client):
    problem = validator(doc, "Problem")
    for req in ({"graph": {}}, {"graph": {"inputs": [X], "source": "y = x +"}}):
        r = client.post("/v1/grad", json=req)
        assert r.headers["content-type"] == PROBLEM_MEDIA_TYPE
        problem.validate(r.json())
    r = client.post("/v2/models/nope/infer", json={})
    assert r.status_code == 404
    validator(doc, "OipError").validate(r.json())
    validator(doc, "OpsListing").validate(client.get("/v1/ops").json())
    validator(doc, "Ready").validate(client.get("/health/ready").json())
    validator(doc, "V2ModelMetadata").validate(client.get("/v2/models/gradserve").json())
