"""The OpenAPI document, true to what the service sends.

FastAPI's generated document is the start; this module adds what it cannot know: every status
each route answers, with the media type it really has (``application/problem+json`` on the
v1 and health routes, the protocol's ``{"error"}`` JSON on ``/v2``), a schema for each body,
response headers, request constraints pydantic does not put in a JSON Schema (exactly one of
``nodes``/``source``/``hash``, node kinds that exclude each other, datatypes), the binary
body's ``Inference-Header-Content-Length``, the bearer scheme when API keys are configured,
and links between operations. A test runs Schemathesis against it (tests/e2e/test_openapi_fuzz.py).

>>> from service.app import create_app, Settings
>>> doc = create_app(Settings(api_keys=[])).openapi()  # with keys, 401 is listed too
>>> sorted(doc["paths"]["/v1/grad"]["post"]["responses"])[:3]
['200', '400', '408']
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from . import core, oip
from .errors import PROBLEM_MEDIA_TYPE
from .observe import REQUEST_ID_HEADER
from .wire import DATATYPE_ALIASES, DATATYPES, NODE_KINDS, GradRequest, Graph

__all__ = ["build_openapi"]

_REF = "#/components/schemas/{model}"
_PHRASES = {400: "Malformed body or headers", 401: "Missing or invalid API key (when keys are configured)",
            404: "Unknown model or version", 408: "The request body did not arrive within request_timeout_s",
            409: "graph.hash names a graph whose plan this process does not hold: send the whole graph",
            413: "Over a size limit (the limit is named)",
            415: "Unsupported Content-Type or Content-Encoding",
            422: "Well-formed but invalid: schema, graph, expression or engine error (located)",
            503: "Overloaded: retry after Retry-After seconds (or not ready)", 504: "Past request_timeout_s"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _not_null(schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**(schema or {}), "not": {"type": "null"}}


# ---------------------------------------------------------------- component schemas
_ERROR_ITEM = {
    "type": "object", "required": ["loc", "msg"], "additionalProperties": True,
    "description": "One located error: `loc` is the path to the field (`[\"graph\", \"nodes\", 3, "
                   "\"op\"]`, `[\"graph\", \"source\"]` with `line`/`col`, `[\"headers\", ...]`, ...).",
    "properties": {
        "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
        "msg": {"type": "string"},
        "line": {"type": "integer", "minimum": 1}, "col": {"type": "integer", "minimum": 1},
        "node": {"type": "string", "description": "The value (or the statement's name) at fault."},
        "shapes": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "integer"}}},
    },
}
_PROBLEM_COMMON = {
    "type": {"type": "string", "description": "urn:gradserve:problem:<slug>, or about:blank"},
    "title": {"type": "string"},
    "status": {"type": "integer"},
    "errors": {"type": "array", "items": _ref("ErrorItem"),
               "description": "At least one located error for every 4xx."},
    "exception": {"type": "string", "description": "Engine and autograd errors: torch's exception type."},
    "limit": {"type": "string", "description": "413: the setting whose limit was exceeded."},
    "request_id": {"type": "string", "description": f"The response's {REQUEST_ID_HEADER}."},
}
_PROBLEM = {"type": "object", "additionalProperties": True, "title": "Problem",
            "description": "RFC 9457 problem details (application/problem+json).",
            "required": ["type", "title", "status", "detail", "errors"],
            "properties": {**_PROBLEM_COMMON, "detail": {"type": "string"}}}
_OIP_ERROR = {"type": "object", "additionalProperties": True, "title": "OipError",
              "description": "The Open Inference Protocol's error body, with the problem's members.",
              "required": ["error", "type", "title", "status", "errors"],
              "properties": {"error": {"type": "string"}, **_PROBLEM_COMMON}}
_OP_INFO = {
    "type": "object", "additionalProperties": False,
    "required": ["name", "canonical", "signature", "parameters", "differentiable", "n_outputs", "doc"],
    "properties": {
        "name": {"type": "string"}, "canonical": {"type": "string"}, "signature": {"type": "string"},
        "parameters": {"type": "array", "items": {
            "type": "object", "required": ["name", "kind"], "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "kind": {"type": "string", "enum": [
                "positional_only", "positional_or_keyword", "var_positional", "keyword_only", "var_keyword"]},
                "default": {}}}},
        "differentiable": {"type": "array", "items": {"type": "string"}},
        "n_outputs": {"type": ["integer", "null"]},
        "doc": {"type": "string"},
    },
}
_OPS = {"type": "object", "additionalProperties": False,
        "required": ["count", "node_kinds", "ops", "inplace"],
        "properties": {"count": {"type": "integer", "minimum": 0},
                       "node_kinds": {"type": "array", "items": {"type": "string", "enum": list(NODE_KINDS)}},
                       "ops": {"type": "array", "items": _ref("OpInfo")},
                       "inplace": {"type": "array", "items": _ref("OpInfo"),
                                   "description": "torch's in-place op names and setitem, run with "
                                                  "functional semantics (the node's output is the "
                                                  "mutated value); canonical is the out-of-place op"}}}
_LIVE = {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}
_READY = {"type": "object", "required": ["status", "ops", "active", "queued"],
          "properties": {"status": {"const": "ready"}, "ops": {"type": "integer"},
                         "active": {"type": "integer"}, "queued": {"type": "integer"}}}
_UNAVAILABLE = {"type": "object", "required": ["status"], "properties": {"status": {"const": "unavailable"}}}
_V2_SERVER = {"type": "object", "required": ["name", "version", "extensions"],
              "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                             "extensions": {"type": "array", "items": {"type": "string"}}}}
_V2_TENSOR_META = {"type": "object", "required": ["name", "datatype", "shape"],
                   "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                                  "shape": {"type": "array", "items": {"type": "integer"}}}}
_V2_MODEL = {"type": "object", "required": ["name", "versions", "platform", "inputs", "outputs"],
             "properties": {"name": {"type": "string"},
                            "versions": {"type": "array", "items": {"type": "string"}},
                            "platform": {"type": "string"},
                            "inputs": {"type": "array", "items": _V2_TENSOR_META},
                            "outputs": {"type": "array", "items": _V2_TENSOR_META}}}
_V2_INFER_RESPONSE = {
    "type": "object", "required": ["model_name", "model_version", "outputs"],
    "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"},
                   "id": {"type": "string"},
                   "outputs": {"type": "array", "items": {
                       "type": "object", "required": ["name", "datatype", "shape"],
                       "properties": {**_V2_TENSOR_META["properties"], "data": {"type": "array"},
                                      "parameters": {"type": "object"}}}}}}


def _flag(name: str) -> dict[str, Any]:
    return {"type": "object", "required": [name], "properties": {name: {"type": "boolean"}}}


def _patch_request_schemas(comps: dict[str, Any]) -> None:
    """What the validators of service.wire check, where JSON Schema can say it."""
    # node kinds exclude each other: an engine op node's op is none of the special kinds
    reserved = [k for k in NODE_KINDS if k != "op"]
    comps["OpNode"]["properties"]["op"]["not"] = {"enum": reserved}
    # exactly one body of a graph (null is absent); every field but the inputs is a body
    bodies = [k for k in Graph.model_fields if k != "inputs"]
    graph = comps["Graph"]
    graph["oneOf"] = [{"required": [k], "properties": {k: _not_null()}} for k in bodies]
    graph["properties"]["inputs"]["items"] = {"allOf": [_ref("TensorIn"), {  # graph inputs are named
        "required": ["name"], "properties": {"name": {"type": "string"}}}]}
    # a tensor: a known datatype, exactly one of data, b64, parameters.binary_data_size
    tensor = comps["TensorIn"]
    tensor["properties"]["datatype"] = {"type": "string", "enum": [*DATATYPES, *DATATYPE_ALIASES],
                                        "description": "An Open Inference Protocol name or its numpy alias."}
    tensor["properties"]["data"] = _not_null({"description": "A number or a nested list, row-major."})
    tensor["properties"]["b64"] = {"type": "string", "description": "Little-endian bytes, base64."}
    tensor["oneOf"] = [
        {"required": ["data"]},
        {"required": ["b64"]},
        {"required": ["parameters"], "properties": {"parameters": {
            "required": ["binary_data_size"], "properties": {"binary_data_size": {"type": "integer"}}}}},
    ]
    # the top level: outputs and inputs go together (leave both out to compute values only)
    top = comps["GradRequest"]
    top["anyOf"] = [
        {"required": ["outputs", "inputs"], "properties": {"outputs": _not_null(), "inputs": _not_null()}},
        {"properties": {"outputs": {"type": "null"}, "inputs": {"type": "null"}}},
    ]


# ---------------------------------------------------------------- responses
def _json(schema: dict[str, Any], media: str = core.JSON_MEDIA_TYPE) -> dict[str, Any]:
    return {media: {"schema": schema}}


def _headers(status: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    h: dict[str, Any] = {REQUEST_ID_HEADER: {"description": "The request id (the client's, if it sent "
                                                           "a plain token, or a new one).",
                                            "required": True, "schema": {"type": "string"}}}
    if status == 503:
        h["Retry-After"] = {"description": "Seconds to wait (overload); absent while not ready",
                            "schema": {"type": "string"}}
    if status == 401:
        h["WWW-Authenticate"] = {"required": True, "schema": {"type": "string"}}
    return {**h, **(extra or {})}


def _errors(statuses: tuple[int, ...], oip_style: bool) -> dict[str, Any]:
    content = _json(_ref("OipError")) if oip_style else _json(_ref("Problem"), PROBLEM_MEDIA_TYPE)
    return {str(s): {"description": _PHRASES[s], "content": copy.deepcopy(content), "headers": _headers(s)}
            for s in statuses}


_GRAD_ERRORS = (400, 401, 408, 409, 413, 415, 422, 503, 504)
_GRAPH_ERRORS = (400, 401, 408, 413, 415, 422, 503, 504)
_INFER_ERRORS = (400, 401, 404, 408, 409, 413, 415, 422, 503, 504)
_HEADER_LENGTH_PARAM = {
    "name": core.HEADER_LENGTH, "in": "header", "required": False,
    "description": "With a binary body (application/octet-stream): the byte length of the JSON header "
                   "that starts the body; the tensor blobs follow it, in tensor order. Ignored otherwise.",
    "schema": {"type": "string"},
}


_BINARY_HEADER_LENGTH = {"description": "Binary responses: the length of the JSON header.",
                         "schema": {"type": "string"}}


def _binary_body(what: str) -> dict[str, Any]:
    return {"schema": {"type": "string", "format": "binary",
                       "description": f"{core.HEADER_LENGTH} bytes of {what} JSON, then the tensor "
                                      "blobs (binary_data_size bytes each, in tensor order)"}}


def _ok(description: str, content: dict[str, Any], headers: dict[str, Any] | None = None,
        links: dict[str, Any] | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"description": description, "content": content, "headers": _headers(200, headers)}
    if links:
        r["links"] = links
    return r


def _grad_ok() -> dict[str, Any]:
    headers = {core.GRAPH_HASH_HEADER: {
        "description": "The graph's hash when this process cached its plan: send it as graph.hash "
                       "(with the inputs) instead of the graph next time.",
        "schema": {"type": "string", "pattern": r"^sha256:[0-9a-f]{64}$"}},
        core.HEADER_LENGTH: _BINARY_HEADER_LENGTH}
    links = {"GradByHash": {
        "operationId": "grad",
        "description": "The same graph again, by the hash of its cached plan.",
        "requestBody": {"graph": {"hash": f"$response.header.{core.GRAPH_HASH_HEADER}",
                                  "inputs": "$request.body#/graph/inputs"}},
    }}
    return _ok("Gradients (`grads`, lined up with `inputs`) and requested `values`",
               {**_json(_ref("GradResponse")), **{core.BINARY_MEDIA_TYPE: _binary_body("response")}},
               headers, links)


def _responses(app: FastAPI) -> dict[tuple[str, str], dict[str, Any]]:
    """Every route's responses: (path, method) -> OpenAPI responses object."""
    model_links = {
        "ModelInfer": {"operationId": "infer", "parameters": {"model_name": "$response.body#/name"}},
        "ModelReady": {"operationId": "model_ready", "parameters": {"model_name": "$response.body#/name"}},
        "ModelVersion": {"operationId": "model_version_metadata",
                         "parameters": {"model_name": "$response.body#/name",
                                        "model_version": "$response.body#/versions/0"}},
    }
    v2_model = {"200": _ok("Model metadata", _json(_ref("V2ModelMetadata")), links=model_links),
                **_errors((401, 404), True)}
    v2_model_ready = {"200": _ok("The model is ready", _json(_ref("V2ModelReady"))),
                      "503": {"description": "Not ready (starting or draining)",
                              "content": _json(_ref("V2ModelReady")), "headers": _headers(503)},
                      **_errors((404,), True)}
    infer = {"200": _ok("Outputs: gradients (grad:<input>) and values",
                        {**_json(_ref("V2InferResponse")), core.BINARY_MEDIA_TYPE: _binary_body("response")},
                        {core.HEADER_LENGTH: _BINARY_HEADER_LENGTH}),
             **_errors(_INFER_ERRORS, True)}
    out = {
        ("/v1/grad", "post"): {"200": _grad_ok(), **_errors(_GRAD_ERRORS, False)},
        ("/v1/graph", "post"): {"200": _ok("The graph's inputs and nodes (execution order), each value "
                                           "with shape, datatype and requires_grad",
                                           _json(_ref("GraphDescription"))),
                                **_errors(_GRAPH_ERRORS, False)},
        ("/v1/ops", "get"): {"200": _ok("The op catalogue", _json(_ref("OpsListing"))),
                             **_errors((401,), False)},
        ("/health/live", "get"): {"200": _ok("The process is up", _json(_ref("Live")))},
        ("/health/ready", "get"): {"200": _ok("Ready", _json(_ref("Ready"))),
                                   "503": {"description": "Not ready (starting or draining)",
                                           "content": _json(_ref("Unavailable")), "headers": _headers(503)}},
        ("/metrics", "get"): {"200": _ok("Prometheus text exposition format",
                                         {"text/plain": {"schema": {"type": "string"}}})},
        ("/v2", "get"): {"200": _ok("Server metadata", _json(_ref("V2ServerMetadata")), links={
            "Model": {"operationId": "model_metadata", "parameters": {"model_name": "$response.body#/name"}},
        }),
                         **_errors((401,), True)},
        ("/v2/health/live", "get"): {"200": _ok("Live", _json(_ref("V2Live")))},
        ("/v2/health/ready", "get"): {"200": _ok("Ready", _json(_ref("V2Ready"))),
                                      "503": {"description": "Not ready (starting or draining)",
                                              "content": _json(_ref("V2Ready")), "headers": _headers(503)}},
        ("/v2/models/{model_name}", "get"): v2_model,
        ("/v2/models/{model_name}/versions/{model_version}", "get"): v2_model,
        ("/v2/models/{model_name}/ready", "get"): v2_model_ready,
        ("/v2/models/{model_name}/versions/{model_version}/ready", "get"): v2_model_ready,
        ("/v2/models/{model_name}/infer", "post"): infer,
        ("/v2/models/{model_name}/versions/{model_version}/infer", "post"): infer,
    }
    return out


_OPERATION_IDS = {("/v1/grad", "post"): "grad", ("/v1/graph", "post"): "graph",
                  ("/v1/ops", "get"): "list_ops",
                  ("/v2/models/{model_name}/infer", "post"): "infer",
                  ("/v2/models/{model_name}/versions/{model_version}/infer", "post"): "infer_version",
                  ("/v2/models/{model_name}", "get"): "model_metadata",
                  ("/v2/models/{model_name}/versions/{model_version}", "get"): "model_version_metadata",
                  ("/v2/models/{model_name}/ready", "get"): "model_ready",
                  ("/v2/models/{model_name}/versions/{model_version}/ready", "get"): "model_version_ready"}


_PATH_ENUMS = {"model_name": oip.MODEL_NAME, "model_version": oip.MODEL_VERSION}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document (cached on the app)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    comps = doc.setdefault("components", {}).setdefault("schemas", {})
    models = GradRequest.model_json_schema(ref_template=_REF, by_alias=True)
    comps.update(models.pop("$defs", {}))
    comps["GradRequest"] = models
    infer_models = oip.InferRequest.model_json_schema(ref_template=_REF, by_alias=True)
    comps.update(infer_models.pop("$defs", {}))
    comps["V2InferRequest"] = infer_models
    for name in ("HTTPValidationError", "ValidationError"):
        comps.pop(name, None)  # validation errors are problems (Problem), never FastAPI's shape
    comps.update(ErrorItem=_ERROR_ITEM, Problem=_PROBLEM, OipError=_OIP_ERROR, OpInfo=_OP_INFO,
                 OpsListing=_OPS, Live=_LIVE, Ready=_READY, Unavailable=_UNAVAILABLE,
                 V2ServerMetadata=_V2_SERVER, V2ModelMetadata=_V2_MODEL,
                 V2Live=_flag("live"), V2Ready=_flag("ready"),
                 V2ModelReady={"type": "object", "required": ["name", "ready"],
                               "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}},
                 V2InferResponse=_V2_INFER_RESPONSE)
    _patch_request_schemas(comps)

    secured = bool(getattr(app.state.settings, "api_keys", None))
    if secured:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    open_paths = {"/health/live", "/health/ready", "/metrics", "/v2/health/live", "/v2/health/ready",
                  "/v2/models/{model_name}/ready", "/v2/models/{model_name}/versions/{model_version}/ready"}
    table = _responses(app)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            responses = table.get((path, method))
            if responses is None:
                continue
            if path in open_paths or not secured:  # no key needed: no 401
                responses = {k: v for k, v in responses.items() if k != "401"}
            op["responses"] = copy.deepcopy(responses)
            if (path, method) in _OPERATION_IDS:
                op["operationId"] = _OPERATION_IDS[(path, method)]
            if secured and path not in open_paths:
                op["security"] = [{"bearer": []}]
            for param in op.get("parameters", []):  # this server has one model, one version
                if param["name"] in _PATH_ENUMS:
                    param["schema"] = {"type": "string", "enum": [_PATH_ENUMS[param["name"]]]}
            if method == "post":
                op.setdefault("parameters", []).append(dict(_HEADER_LENGTH_PARAM))
            if path.endswith("/infer"):
                op["requestBody"] = {"required": True, "content": {
                    core.JSON_MEDIA_TYPE: {"schema": _ref("V2InferRequest")},
                    core.BINARY_MEDIA_TYPE: _binary_body("$inference_request")}}
            elif path == "/v1/grad":
                op["requestBody"] = {"required": True, "content": {
                    core.JSON_MEDIA_TYPE: {"schema": _ref("GradRequest")},
                    core.BINARY_MEDIA_TYPE: _binary_body("GradRequest")}}
            elif path == "/v1/graph":  # JSON only: nothing is run, so no big tensors to carry
                op["requestBody"] = {"required": True, "content": {
                    core.JSON_MEDIA_TYPE: {"schema": _ref("GradRequest")}}}
    app.openapi_schema = doc
    return doc
