"""The Open Inference Protocol routes in-process: the mapping onto v1, Triton's binary tensor data
(built here by hand, independently of tritonclient), and every error as ``{"error": ...}``."""

from __future__ import annotations

import gzip
import struct
import zlib

import numpy as np
import orjson
import pytest
import torch

from service import oip

from .helpers import SEED_NODES, seed_torch

INFER = "/v2/models/gradserve/infer"
SEED_GRAPH = {
    "inputs": [{"name": "w", "requires_grad": True}, {"name": "b", "requires_grad": True}, {"name": "x"}],
    "nodes": SEED_NODES,
}


def bytes_tensor(*items: bytes) -> bytes:
    """Triton's BYTES serialization, written here from the spec: uint32 LE length, then bytes."""
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def graph_json(graph: dict) -> dict:
    return {"name": "graph", "datatype": "BYTES", "shape": [1], "data": [orjson.dumps(graph).decode()]}


def tensor(name: str, a: np.ndarray, **params) -> dict:
    t = {
        "name": name,
        "datatype": {
            "float32": "FP32",
            "float64": "FP64",
            "int64": "INT64",
            "int32": "INT32",
            "bool": "BOOL",
            "float16": "FP16",
        }[a.dtype.name],
        "shape": list(a.shape),
        "data": a.reshape(-1).tolist(),
    }
    if params:
        t["parameters"] = params
    return t


def seed_inputs(x: np.ndarray) -> list[dict]:
    return [
        graph_json(SEED_GRAPH),
        tensor("w", np.array([0.5], np.float32)),
        tensor("b", np.array([0.9], np.float32)),
        tensor("x", x),
    ]


def binary_request(header: dict, blobs: list[bytes]) -> tuple[bytes, dict[str, str]]:
    js = orjson.dumps(header)
    return js + b"".join(blobs), {"Inference-Header-Content-Length": str(len(js))}


def split_response(r) -> tuple[dict, dict[str, np.ndarray]]:
    """Decode a response (JSON or binary) into its header and arrays by output name."""
    dt = {"FP32": "<f4", "FP64": "<f8", "INT64": "<i8", "INT32": "<i4", "BOOL": "?", "FP16": "<f2"}
    n = r.headers.get("inference-header-content-length")
    content = r.content
    header = orjson.loads(content if n is None else content[: int(n)])
    off, arrays = (len(content) if n is None else int(n)), {}
    for o in header["outputs"]:
        size = (o.get("parameters") or {}).get("binary_data_size")
        if size is None:
            arrays[o["name"]] = np.array(o["data"], dtype=dt[o["datatype"]]).reshape(o["shape"])
        else:
            arrays[o["name"]] = np.frombuffer(content[off : off + size], dtype=dt[o["datatype"]]).reshape(
                o["shape"]
            )
            off += size
    assert off == len(content), "trailing or missing bytes in the response"
    return header, arrays


# ---------------------------------------------------------------- health and metadata
def test_health_routes_stay_open_with_api_keys(make_client):
    c = make_client(api_keys=["k1"])
    assert c.get("/v2/health/live").json() == {"live": True}
    assert c.get("/v2/health/ready").json() == {"ready": True}
    assert c.get("/v2/models/gradserve/ready").status_code == 200
    for path in ("/v2", "/v2/models/gradserve"):
        r = c.get(path)
        assert r.status_code == 401 and r.headers["content-type"] == "application/json"
        assert "API key" in r.json()["error"]
        assert c.get(path, headers={"Authorization": "Bearer k1"}).status_code == 200
    r = c.post(INFER, json={"inputs": [graph_json({"inputs": [], "source": "y = 1"})]})
    assert r.status_code == 401 and "error" in r.json() and r.headers["www-authenticate"].startswith("Bearer")


def test_readiness_follows_the_app(client):
    client.app.state.ready = False
    try:
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get("/v2/models/gradserve/ready").status_code == 503
        assert client.get("/v2/health/live").status_code == 200
    finally:
        client.app.state.ready = True


def test_metadata(client):
    meta = client.get("/v2").json()
    assert meta["name"] == "gradserve" and set(meta["extensions"]) >= {"binary_tensor_data"}
    model = client.get("/v2/models/gradserve/versions/1").json()
    assert model["versions"] == ["1"] and model["inputs"][0]["name"] == "graph"
    for path in ("/v2/models/other", "/v2/models/gradserve/versions/2", "/v2/models/other/ready"):
        r = client.get(path)
        assert r.status_code == 404 and r.json()["error"] and r.json()["type"].endswith("not-found")


# ---------------------------------------------------------------- infer: JSON
def test_seed_json(client, x100):
    r = client.post(
        INFER,
        json={
            "id": "q-1",
            "inputs": seed_inputs(x100),
            "parameters": {"outputs": "loss"},
            "outputs": [{"name": "loss"}, {"name": "grad:b"}, {"name": "grad:w"}],
        },
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    header, arrays = split_response(r)
    gw, gb, loss = seed_torch(x100)
    assert header["id"] == "q-1" and header["model_name"] == "gradserve"
    assert [o["name"] for o in header["outputs"]] == ["loss", "grad:b", "grad:w"]  # the order asked for
    np.testing.assert_allclose(arrays["grad:w"], gw, rtol=1e-6)
    np.testing.assert_allclose(arrays["grad:b"], gb, rtol=1e-6)
    np.testing.assert_allclose(arrays["loss"], loss, rtol=1e-6)


def test_graph_input_may_be_an_object_and_nested_data(client):
    graph = {"inputs": [{"name": "m", "requires_grad": True}], "source": "y = sum(m * m)"}
    m = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = tensor("m", m)
    t["data"] = m.tolist()  # nested, row-major
    r = client.post(
        INFER,
        json={
            "inputs": [{"name": "graph", "datatype": "BYTES", "shape": [1], "data": [graph]}, t],
            "parameters": {"outputs": ["y"]},
        },
    )
    _, arrays = split_response(r)
    np.testing.assert_array_equal(arrays["grad:m"], 2 * m)
    assert arrays["grad:m"].dtype == np.float64


def test_requires_grad_as_a_tensor_parameter_and_unlisted_inputs(client):
    graph = {"inputs": [], "source": "y = sum(a * b)"}
    a, b = np.array([1.0, 2.0], np.float32), np.array([3.0, 5.0], np.float32)
    r = client.post(
        INFER,
        json={
            "inputs": [graph_json(graph), tensor("a", a, requires_grad=True), tensor("b", b)],
            "parameters": {"outputs": "y", "inputs": "a"},
        },
    )
    _, arrays = split_response(r)
    np.testing.assert_array_equal(arrays["grad:a"], b)
    r = client.post(
        INFER,
        json={
            "inputs": [graph_json(graph), tensor("a", a), tensor("b", b)],
            "parameters": {"outputs": "y", "inputs": "a"},
        },
    )
    assert r.status_code == 422 and "does not require grad" in r.json()["error"]  # torch's error
    assert r.json()["exception"] == "RuntimeError"


def test_constants_may_stay_inside_the_graph(client):
    graph = {
        "inputs": [
            {"name": "c", "datatype": "FP32", "shape": [2], "data": [2.0, 4.0]},
            {"name": "a", "requires_grad": True},
        ],
        "source": "y = sum(a * c)",
    }
    r = client.post(
        INFER,
        json={
            "inputs": [graph_json(graph), tensor("a", np.ones(2, np.float32))],
            "parameters": {"outputs": "y"},
            "outputs": [{"name": "grad:a"}],
        },
    )
    np.testing.assert_array_equal(split_response(r)[1]["grad:a"], [2.0, 4.0])


def test_grad_outputs_and_flags(client):
    x = np.array([0.2, -0.4, 1.5])
    v = np.array([1.0, -1.0, 0.5])
    graph = {"inputs": [{"name": "x", "requires_grad": True}], "source": "y = exp(x) * x\nz = sum(y)"}
    body = {
        "inputs": [graph_json(graph), tensor("x", x), tensor("grad_output:y", v)],
        "parameters": {"outputs": "y,z", "create_graph": True},
        "outputs": [{"name": "grad:x"}],
    }
    r = client.post(INFER, json=body)
    assert r.status_code == 200, r.text
    xt = torch.tensor(x, requires_grad=True)
    y = torch.exp(xt) * xt
    (g,) = torch.autograd.grad([y, y.sum()], xt, [torch.tensor(v), None])  # z's grad_output: implicit ones
    np.testing.assert_allclose(split_response(r)[1]["grad:x"], g.numpy(), rtol=1e-12)


# ---------------------------------------------------------------- infer: binary tensor data
@pytest.mark.parametrize("binary_out", [True, False])
def test_seed_binary_both_ways(client, x100, binary_out):
    w, b = np.array([0.5], np.float32), np.array([0.9], np.float32)
    graph = orjson.dumps(SEED_GRAPH)
    blobs = [bytes_tensor(graph), w.tobytes(), b.tobytes(), x100.tobytes()]
    header = {
        "inputs": [
            {
                "name": "graph",
                "datatype": "BYTES",
                "shape": [1],
                "parameters": {"binary_data_size": len(blobs[0])},
            },
            {"name": "w", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}},
            {"name": "b", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}},
            {"name": "x", "datatype": "FP32", "shape": [100], "parameters": {"binary_data_size": 400}},
        ],
        "parameters": {"outputs": "loss", "binary_data_output": binary_out},
        "outputs": [{"name": "grad:w"}, {"name": "grad:b", "parameters": {"binary_data": not binary_out}}],
    }
    body, headers = binary_request(header, blobs)
    r = client.post(INFER, content=body, headers={**headers, "Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    out, arrays = split_response(r)
    binary = ["binary_data_size" in (o.get("parameters") or {}) for o in out["outputs"]]
    assert binary == [binary_out, not binary_out]  # per-output flag over the request default
    assert ("inference-header-content-length" in r.headers) is True  # one of them is binary
    gw, gb, _ = seed_torch(x100)
    np.testing.assert_allclose(arrays["grad:w"], gw, rtol=1e-6)
    np.testing.assert_allclose(arrays["grad:b"], gb, rtol=1e-6)


def test_mixed_json_and_binary_inputs_and_dtypes(client):
    a = np.array([[1, 2], [3, 4]], np.int64)
    m = np.array([True, False, True, True])
    f = np.array([0.5, -1.0, 2.0, 3.0], np.float16)
    graph = {
        "inputs": [{"name": "f", "requires_grad": True}],
        "source": "y = sum(where(m, f * f, f)) + sum(a)",
    }
    header = {
        "inputs": [
            graph_json(graph),
            tensor("a", a),
            {"name": "m", "datatype": "BOOL", "shape": [4], "parameters": {"binary_data_size": 4}},
            {"name": "f", "datatype": "FP16", "shape": [4], "parameters": {"binary_data_size": 8}},
        ],
        "parameters": {"outputs": "y", "return": "y"},
    }
    body, headers = binary_request(header, [m.tobytes(), f.astype("<f2").tobytes()])
    r = client.post(INFER, content=body, headers=headers)  # no Content-Type: as tritonclient sends it
    assert r.status_code == 200, r.text
    out, arrays = split_response(r)
    assert [o["name"] for o in out["outputs"]] == [
        "grad:f",
        "y",
    ] and "inference-header-content-length" not in r.headers
    np.testing.assert_array_equal(arrays["grad:f"], np.where(m, 2 * f, 1).astype(np.float16))
    assert arrays["grad:f"].dtype == np.float16
    np.testing.assert_allclose(arrays["y"], np.where(m, f * f, f).astype(np.float32).sum() + 10, rtol=1e-3)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_request_body(client, x100, encoding):
    body = orjson.dumps({"inputs": seed_inputs(x100), "parameters": {"outputs": "loss"}})
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    r = client.post(INFER, content=packed, headers={"Content-Encoding": encoding})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(split_response(r)[1]["grad:w"], seed_torch(x100)[0], rtol=1e-6)


def test_decompression_is_bounded(make_client):
    c = make_client(max_body_bytes=10_000)
    bomb = gzip.compress(b"{" + b" " * 1_000_000 + b"}")
    assert len(bomb) < 10_000
    r = c.post(INFER, content=bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413 and r.json()["limit"] == "max_body_bytes"


def test_bytes_elements():
    assert oip.bytes_elements(bytes_tensor(b"ab", b""), 2) == [b"ab", b""]
    for bad, msg in [
        (b"\x05\x00\x00\x00ab", "declares 5 bytes"),
        (b"\x01\x00", "ends inside"),
        (bytes_tensor(b"a") + b"x", "after its 1 element"),
    ]:
        with pytest.raises(Exception, match=msg):
            oip.bytes_elements(bad, 1)


def test_an_unused_gradient_is_left_out(client):
    graph = {
        "inputs": [{"name": "a", "requires_grad": True}, {"name": "b", "requires_grad": True}],
        "source": "y = sum(a)",
    }
    r = client.post(
        INFER,
        json={
            "inputs": [graph_json(graph), tensor("a", np.ones(2)), tensor("b", np.ones(2))],
            "parameters": {"outputs": "y", "allow_unused": True},
            "outputs": [{"name": "grad:a"}, {"name": "grad:b"}],
        },
    )
    out, arrays = split_response(r)
    assert [o["name"] for o in out["outputs"]] == ["grad:a"]
    r = client.post(
        INFER,
        json={
            "inputs": [graph_json(graph), tensor("a", np.ones(2)), tensor("b", np.ones(2))],
            "parameters": {"outputs": "y", "allow_unused": True, "materialize_grads": True},
            "outputs": [{"name": "grad:a"}, {"name": "grad:b"}],
        },
    )
    np.testing.assert_array_equal(split_response(r)[1]["grad:b"], [0.0, 0.0])  # torch's zeros


def test_deadline_from_the_timeout_parameter(client):
    graph = {
        "inputs": [{"name": "x", "requires_grad": True}],
        "nodes": [
            {"op": "sin", "inputs": ["x" if i == 0 else f"y{i - 1}"], "outputs": [f"y{i}"]}
            for i in range(2000)
        ]
        + [{"op": "sum", "inputs": ["y1999"], "outputs": ["s"]}],
    }
    body = {
        "inputs": [graph_json(graph), tensor("x", np.ones(1000))],
        "parameters": {"outputs": "s", "timeout": 1000},
    }  # 1 ms, in microseconds
    r = client.post(INFER, json=body)
    assert r.status_code == 504 and r.json()["error"]


# ---------------------------------------------------------------- errors
def _err(client, body=None, **kw):
    r = client.post(INFER, json=body, **kw) if body is not None else client.post(INFER, **kw)
    assert r.headers["content-type"] == "application/json"
    j = r.json()
    assert isinstance(j["error"], str) and j["error"] and j["request_id"] == r.headers["x-request-id"]
    return r.status_code, j


GOOD = {
    "inputs": [
        graph_json({"inputs": [{"name": "a", "requires_grad": True}], "source": "y = sum(a)"}),
        tensor("a", np.ones(2)),
    ],
    "parameters": {"outputs": "y"},
}


def _with(**changes) -> dict:
    body = orjson.loads(orjson.dumps(GOOD))
    for k, v in changes.items():
        body[k] = v
    return body


@pytest.mark.parametrize(
    ("body", "status", "phrase"),
    [
        ({"inputs": []}, 422, "inputs"),
        ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}]}, 422, "'graph'"),
        (_with(parameters={"outputs": "y", "create_grpah": True}), 422, "unknown parameter 'create_grpah'"),
        (_with(parameters={"outputs": "y", "create_graph": "yes"}), 422, "parameters.create_graph"),
        (_with(parameters={"outputs": 3}), 422, "parameters.outputs"),
        (_with(outputs=[{"name": "grad:zz"}], parameters={"outputs": "y", "inputs": "a"}), 422, "grad:zz"),
        (_with(outputs=[{"name": "y"}, {"name": "y"}]), 422, "requested twice"),
        (_with(outputs=[{"name": "y", "parameters": {"classification": 2}}]), 422, "classification"),
        (
            {
                "inputs": [GOOD["inputs"][0], tensor("a", np.ones(2)), tensor("a", np.ones(2))],
                "parameters": {"outputs": "y"},
            },
            422,
            "given twice",
        ),
        (
            {
                "inputs": [
                    GOOD["inputs"][0],
                    {"name": "a", "datatype": "UINT8", "shape": [2], "data": [1, 2]},
                ],
                "parameters": {"outputs": "y"},
            },
            422,
            "UINT8 is not supported",
        ),
        (
            {"inputs": [{"name": "graph", "datatype": "FP32", "shape": [1], "data": [1.0]}]},
            422,
            "must be BYTES",
        ),
        (
            {"inputs": [{"name": "graph", "datatype": "BYTES", "shape": [2], "data": ["{}", "{}"]}]},
            422,
            "one element",
        ),
        (
            {"inputs": [{"name": "graph", "datatype": "BYTES", "shape": [1], "data": ["{not json"]}]},
            400,
            "not valid JSON",
        ),
        (
            {"inputs": [{"name": "graph", "datatype": "BYTES", "shape": [1], "data": ["[1, 2]"]}]},
            422,
            "JSON object",
        ),
        (
            {
                "inputs": [graph_json({"inputs": [{"name": "a"}], "source": "y = sum(a)"})],
                "parameters": {"outputs": "y"},
            },
            422,
            "graph input 'a' has no data",
        ),
        (
            {
                "inputs": [
                    graph_json(
                        {
                            "inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": [1.0]}],
                            "source": "y = sum(a)",
                        }
                    ),
                    tensor("a", np.ones(1)),
                ]
            },
            422,
            "send it once",
        ),
        (
            {
                "inputs": [
                    graph_json({"inputs": [{"name": "a", "shape": [3]}], "source": "y = sum(a)"}),
                    tensor("a", np.ones(2)),
                ]
            },
            422,
            "declares shape",
        ),
        (
            _with(inputs=[GOOD["inputs"][0], tensor("a", np.ones(2)), tensor("grad_output:q", np.ones(1))]),
            422,
            "names no autograd output",
        ),
        (
            {
                "inputs": [
                    graph_json({"inputs": [{"name": "a", "requires_grad": True}], "source": "y = sum(a)"}),
                    {"name": "a", "datatype": "FP32", "shape": [3], "data": [1.0, 2.0]},
                ],
                "parameters": {"outputs": "y"},
            },
            422,
            "shape [3] needs 3",
        ),
        (_with(parameters={"outputs": "y", "timeout": -1}), 422, "microseconds"),
        (_with(extra_field=1), 422, "extra_field"),
    ],
)
def test_bad_requests(client, body, status, phrase):
    code, j = _err(client, body)
    assert code == status, j
    assert phrase in j["error"] or any(phrase in str(e) for e in j["errors"]), j


def test_engine_errors_carry_torch_type(client):
    graph = {
        "inputs": [{"name": "a", "requires_grad": True}],
        "nodes": [{"op": "matmul", "inputs": ["a", "a"], "outputs": ["y"]}],
    }
    code, j = _err(
        client, {"inputs": [graph_json(graph), tensor("a", np.ones((2, 3)))], "parameters": {"outputs": "y"}}
    )
    assert code == 422 and j["exception"] == "RuntimeError" and "2x3" in j["error"]
    assert j["errors"][0]["loc"][:3] == ["graph", "nodes", 0]  # v1 locations inside the graph JSON


@pytest.mark.parametrize(
    ("header", "blobs", "phrase"),
    [
        (
            {
                "inputs": [
                    {
                        "name": "graph",
                        "datatype": "BYTES",
                        "shape": [1],
                        "parameters": {"binary_data_size": 10},
                    }
                ]
            },
            [b"\x02\x00\x00\x00{}"],
            "needs 10 binary bytes",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "graph",
                        "datatype": "BYTES",
                        "shape": [1],
                        "parameters": {"binary_data_size": 6},
                    }
                ]
            },
            [b"\x02\x00\x00\x00{}", b"extra"],
            "add up to 6",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "graph",
                        "datatype": "BYTES",
                        "shape": [1],
                        "parameters": {"binary_data_size": 6},
                    }
                ]
            },
            [b"\x09\x00\x00\x00{}"],
            "declares 9 bytes",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "graph",
                        "datatype": "BYTES",
                        "shape": [1],
                        "data": ["{}"],
                        "parameters": {"binary_data_size": 0},
                    }
                ]
            },
            [],
            "both data and binary_data_size",
        ),
    ],
)
def test_bad_binary_bodies(client, header, blobs, phrase):
    body, headers = binary_request(header, blobs)
    code, j = _err(client, content=body, headers=headers)
    assert code in (400, 422) and phrase in j["error"], j


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Inference-Header-Content-Length": "9999"}, 400),
        ({"Inference-Header-Content-Length": "x"}, 400),
        ({"Content-Type": "text/plain"}, 415),
        ({"Content-Encoding": "br"}, 415),
        ({"Content-Encoding": "gzip"}, 400),
    ],
)
def test_bad_headers(client, headers, status):
    code, j = _err(client, content=orjson.dumps(GOOD), headers=headers)
    assert code == status, j


def test_body_limit(make_client):
    c = make_client(max_body_bytes=100)
    code, j = _err(c, GOOD)
    assert code == 413 and j["limit"] == "max_body_bytes"


def test_v1_and_v2_share_the_plan_cache(client, x100):
    cache = client.app.state.plan_cache
    before = cache.stats()
    v1 = {
        "graph": {
            "inputs": [
                {"name": n, "datatype": "FP32", "shape": s, "data": d, "requires_grad": n != "x"}
                for n, s, d in [("w", [1], [0.5]), ("b", [1], [0.9]), ("x", [100], x100.tolist())]
            ],
            "nodes": SEED_NODES,
        },
        "outputs": "loss",
        "inputs": ["w", "b"],
    }
    assert client.post("/v1/grad", json=v1).status_code == 200
    assert (
        client.post(INFER, json={"inputs": seed_inputs(x100), "parameters": {"outputs": "loss"}}).status_code
        == 200
    )
    after = cache.stats()
    assert after["misses"] - before["misses"] == 1 and after["hits"] - before["hits"] == 1
