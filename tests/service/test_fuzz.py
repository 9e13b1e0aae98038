"""Fuzzing the service with hypothesis.

(a) Random valid graphs: the service's values and gradients equal the engine's, run directly
    in this process (and where the engine raises, the service answers 422 with the same
    exception type and message).
(b) Random invalid graphs (any engine op, any arguments), random JSON grafted into a valid
    request, and byte-level mutations of valid JSON and binary bodies: never a 5xx, never an
    exception out of the app, and afterwards the app still answers a valid request correctly.

CI runs a bounded number of examples. For a longer run:

    HYPOTHESIS_PROFILE=long python -m pytest tests/service/test_fuzz.py -p no:xdist

(``HYPOTHESIS_PROFILE=long`` gives each test 2000 examples; ``GRADSERVE_FUZZ_EXAMPLES=N`` sets N.)
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import engine
from service.errors import EngineError

from .helpers import binary_body, read_tensor, seed_request, seed_torch, wire_tensor

_EXAMPLES = int(os.environ.get("GRADSERVE_FUZZ_EXAMPLES", 0)) or \
    {"long": 2000}.get(os.environ.get("HYPOTHESIS_PROFILE", ""), 40)
settings.register_profile("fuzz", max_examples=_EXAMPLES, deadline=None, derandomize=False,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                 HealthCheck.function_scoped_fixture,
                                                 HealthCheck.filter_too_much])
fuzz = settings(settings.get_profile("fuzz"))

X = np.random.default_rng(1234).random(8).astype(np.float32)
LIMITS = {"max_tensor_elements": 100_000, "max_memory_bytes": 64 * 2**20, "request_timeout_s": 10.0,
          "max_nodes": 200, "max_body_bytes": 2**20}


@pytest.fixture(scope="module")
def app():
    """One app for the module (hypothesis calls each test many times)."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = TestClient(create_app(Settings(api_keys=[], **LIMITS)))
    with c:
        yield c


def serves_correctly(app) -> None:
    r = app.post("/v1/grad", json=seed_request(X))
    assert r.status_code == 200, r.text
    gw, gb, _ = seed_torch(X)
    np.testing.assert_allclose(read_tensor(r.json()["grads"][0]), gw, rtol=1e-6)
    np.testing.assert_allclose(read_tensor(r.json()["grads"][1]), gb, rtol=1e-6)


def no_server_error(r) -> None:
    assert r.status_code < 500 or r.status_code in (503, 504), (r.status_code, r.text[:500])
    if r.status_code >= 400:
        assert r.headers["content-type"] == "application/problem+json", r.headers
        body = r.json()
        assert body["status"] == r.status_code and body["detail"], body


# ---------------------------------------------------------------- (a) random valid graphs
UNARY = ["exp", "tanh", "sin", "sigmoid", "relu", "neg", "abs", "square", "cos", "atan"]
BINARY = ["add", "sub", "mul", "maximum", "minimum", "atan2"]
REDUCE = ["sum", "mean", "amax", "logsumexp"]


@st.composite
def graphs(draw):
    """A request (b64 tensors) and a recipe the test replays with engine functions."""
    n_in = draw(st.integers(1, 3))
    dims = draw(st.lists(st.integers(1, 4), min_size=0, max_size=3))
    inputs = {}
    for i in range(n_in):
        shape = tuple(d if draw(st.booleans()) else 1 for d in dims)  # all broadcast together
        dt = draw(st.sampled_from([np.float64, np.float32]))
        arr = draw(st.integers(0, 2**16).map(lambda s, shape=shape, dt=dt:
                                              np.random.default_rng(s).standard_normal(shape).astype(dt)))
        inputs[f"x{i}"] = (arr, draw(st.booleans()) or i == 0)
    values = dict.fromkeys(inputs)  # name -> None (shape tracked by the engine replay)
    nodes, recipe = [], []
    for j in range(draw(st.integers(1, 8))):
        name = f"v{j}"
        kind = draw(st.sampled_from(["unary", "binary", "binary", "scalar", "reduce", "shape", "grad"]))
        a = draw(st.sampled_from(list(values)))
        if kind == "unary":
            op = draw(st.sampled_from(UNARY))
            nodes.append({"op": op, "inputs": [a], "outputs": [name]})
            recipe.append((name, op, [a], {}))
        elif kind == "binary":
            op = draw(st.sampled_from(BINARY))
            b = draw(st.sampled_from(list(values)))
            nodes.append({"op": op, "inputs": [a, b], "outputs": [name]})
            recipe.append((name, op, [a, b], {}))
        elif kind == "scalar":
            op = draw(st.sampled_from(["add", "mul", "pow", "div"]))
            c = draw(st.sampled_from([0.5, 2.0, -1.5, 3]))
            nodes.append({"op": op, "inputs": [a, c], "outputs": [name]})
            recipe.append((name, op, [a, ("lit", c)], {}))
        elif kind == "reduce":
            op = draw(st.sampled_from(REDUCE))
            attrs = {} if op == "sum" and draw(st.booleans()) else {"dim": -1, "keepdim": draw(st.booleans())}
            nodes.append({"op": op, "inputs": [a], "attributes": attrs, "outputs": [name]})
            recipe.append((name, op, [a], attrs))
        elif kind == "shape":
            op, attrs, extra = draw(st.sampled_from([
                ("reshape", {}, [-1]), ("unsqueeze", {}, [0]), ("flip", {"dims": [0]}, []),
                ("transpose", {}, [0, -1]), ("getitem", {}, [{"slice": [None, None, -1]}]),
            ]))
            if op == "getitem":
                nodes.append({"op": op, "inputs": [a, extra[0]], "outputs": [name]})
                recipe.append((name, op, [a, ("lit", slice(None, None, -1))], {}))
            else:
                nodes.append({"op": op, "inputs": [a, *extra], "attributes": attrs, "outputs": [name]})
                recipe.append((name, op, [a, *[("lit", e) for e in extra]], attrs))
        else:  # a grad node: d sum(a) / d x0, differentiable again
            s = f"s{j}"
            nodes.append({"op": "sum", "inputs": [a], "outputs": [s]})
            recipe.append((s, "sum", [a], {}))
            nodes.append({"op": "grad", "attributes": {"outputs": [s], "inputs": ["x0"], "create_graph": True,
                                                        "allow_unused": True, "materialize_grads": True},
                          "outputs": [name]})
            recipe.append((name, "grad", [s], {}))
            values[s] = None
        values[name] = None
    last = list(values)[-1]
    nodes.append({"op": "sum", "inputs": [last], "outputs": ["loss"]})
    recipe.append(("loss", "sum", [last], {}))
    wrt = [k for k, (_, rg) in inputs.items() if rg]
    req = {"graph": {"inputs": [wire_tensor(k, arr, requires_grad=rg, encoding="b64")
                                for k, (arr, rg) in inputs.items()], "nodes": nodes},
           "outputs": ["loss"], "inputs": wrt, "allow_unused": True, "allow_non_finite": True,
           "return": [k for k in values if not k.startswith("x")] + ["loss"]}
    return req, inputs, recipe, wrt


def replay(inputs: dict, recipe: list, wrt: list) -> tuple[dict, tuple]:
    env = {k: engine.tensor(arr, requires_grad=rg) for k, (arr, rg) in inputs.items()}
    with np.errstate(all="ignore"):
        for name, op, args, attrs in recipe:
            vals = [a[1] if isinstance(a, tuple) else env[a] for a in args]
            if op == "grad":
                env[name], = engine.autograd_grad(vals[0], env["x0"], create_graph=True, allow_unused=True,
                                                  materialize_grads=True)
            elif op == "getitem":
                env[name] = vals[0][vals[1]]
            else:
                env[name] = engine.OPS[op].fn(*vals, **attrs)
        grads = engine.autograd_grad(env["loss"], [env[k] for k in wrt], allow_unused=True)
    return env, grads


def same(a: np.ndarray | None, b) -> None:
    if b is None:
        assert a is None
        return
    want = b.detach().numpy() if isinstance(b, engine.Tensor) else np.asarray(b)
    assert a is not None and a.shape == want.shape and a.dtype == want.dtype, (a, want)
    np.testing.assert_array_equal(a, want)  # the same engine, the same operations: exactly equal


@fuzz
@given(graphs())
def test_random_valid_graphs_match_the_engine(app, case):
    req, inputs, recipe, wrt = case
    try:
        env, grads = replay(inputs, recipe, wrt)
    except Exception as e:  # the engine refuses it: so must the service, in the same words
        r = app.post("/v1/grad", json=req)
        assert r.status_code in (413, 422), r.text
        if r.status_code == 422:
            body = r.json()
            want = EngineError.from_exception(e)  # torch's type names (numpy's AxisError is a ValueError)
            assert (body.get("exception"), body["detail"]) == (want.exception, want.detail), body
        return
    r = app.post("/v1/grad", json=req)
    assert r.status_code == 200, r.text
    out = r.json()
    for name in req["return"]:
        same(read_tensor(out["values"][name]), env[name])
    for got, want in zip(out["grads"], grads):
        same(read_tensor(got), want)


# ---------------------------------------------------------------- (b) random invalid graphs
OP_NAMES = sorted(engine.OPS)
_scalars = st.one_of(st.integers(-3, 5), st.sampled_from([10**9, -(10**9), 2**31, 2**63 - 1]),
                     st.floats(allow_nan=False, allow_infinity=False, width=32), st.booleans(), st.none(),
                     st.sampled_from(["x", "y", "m", "i", "mean", "sum", "none", "float64", "L", "ij"]))
_bounds = st.lists(st.one_of(st.none(), st.integers(-3, 3)), min_size=1, max_size=3)
_args = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.builds(lambda v: {"ref": v}, st.sampled_from(["x", "y", "i", "m", "q"])),
    st.builds(lambda v: {"slice": v}, _bounds),
    st.builds(lambda v: {"tuple": v}, st.lists(inner, max_size=3)), st.just({"ellipsis": True})),
    max_leaves=8)


@st.composite
def invalid_graphs(draw):
    inputs = [wire_tensor("x", np.random.default_rng(0).standard_normal((3, 4)), requires_grad=True),
              wire_tensor("y", np.arange(4.0), requires_grad=draw(st.booleans())),
              wire_tensor("i", np.array([0, 2, 1], np.int64)),
              wire_tensor("m", np.array([True, False, True]))]
    nodes = []
    for j in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(OP_NAMES))
        args = draw(st.lists(st.one_of(st.sampled_from(["x", "y", "i", "m", *[f"o{k}" for k in range(j)]]),
                                       _args), max_size=4))
        attrs = draw(st.dictionaries(st.sampled_from(["dim", "keepdim", "dtype", "p", "size", "out", "k"]),
                                     _args, max_size=2))
        n_out = draw(st.integers(1, 2))
        nodes.append({"op": op, "inputs": args, "attributes": attrs,
                      "outputs": [f"o{j}"] + [f"o{j}_{k}" for k in range(1, n_out)]})
    names = [o for n in nodes for o in n["outputs"]]
    returns = draw(st.lists(st.sampled_from(names), max_size=2))
    req = {"graph": {"inputs": inputs, "nodes": nodes}, "return": returns}
    if draw(st.booleans()):
        req.update(outputs=draw(st.sampled_from(names)), inputs=draw(st.sampled_from(["x", "y", names[0]])),
                   create_graph=draw(st.booleans()), allow_unused=draw(st.booleans()))
    return req


@fuzz
@given(invalid_graphs())
def test_random_ops_and_arguments_never_break_the_server(app, req):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        no_server_error(app.post("/v1/grad", json=req))
    serves_correctly(app)


_json = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(width=64),
                               st.text(max_size=12)),
                     lambda inner: st.one_of(st.lists(inner, max_size=4),
                                             st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                     max_leaves=12)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


@fuzz
@given(st.data())
def test_random_json_grafted_into_a_valid_request(app, data):
    req = seed_request(X, form=data.draw(st.sampled_from(["nodes", "source"])))
    paths = [p for p in _paths(req) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        node = req
        for k in path[:-1]:
            node = node[k] if not isinstance(node, (int, float, str, type(None))) and k in (
                node if isinstance(node, dict) else range(len(node))) else None
            if node is None:
                break
        if isinstance(node, (dict, list)):
            try:
                node[path[-1]] = data.draw(_json)
            except (IndexError, KeyError, TypeError):
                pass
    try:
        body = orjson.dumps(req)
    except (TypeError, orjson.JSONEncodeError):
        assume(False)
    no_server_error(app.post("/v1/grad", content=body, headers={"content-type": "application/json"}))
    serves_correctly(app)


# ---------------------------------------------------------------- (b) byte-level mutations
@st.composite
def mutated(draw, body: bytes):
    b = bytearray(body)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "duplicate"]))
        if not b:
            break
        i = draw(st.integers(0, len(b) - 1))
        if kind == "flip":
            b[i] = draw(st.integers(0, 255))
        elif kind == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del b[i:i + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del b[i:]
        else:
            j = draw(st.integers(i, min(len(b), i + 32)))
            b[j:j] = b[i:j]
    return bytes(b)


_JSON_BODIES = [orjson.dumps(seed_request(X, form=f, encoding=e)) for f in ("nodes", "source")
                for e in ("data", "b64")]


@fuzz
@given(st.sampled_from(_JSON_BODIES).flatmap(mutated))
def test_mutated_json_bodies(app, body):
    no_server_error(app.post("/v1/grad", content=body, headers={"content-type": "application/json"}))
    serves_correctly(app)


def _binary() -> tuple[bytes, int]:
    body, headers = binary_body(seed_request(X, encoding="binary"),
                                [np.array([0.5], np.float32), np.array([0.9], np.float32), X])
    return body, int(headers["inference-header-content-length"])


@fuzz
@given(st.data())
def test_mutated_binary_bodies(app, data):
    body, n = _binary()
    which = data.draw(st.sampled_from(["header", "blobs", "anywhere", "length"]))
    if which == "header":
        head = data.draw(mutated(body[:n]))
        body, n = head + body[n:], len(head)
    elif which == "blobs":
        body = body[:n] + data.draw(mutated(body[n:]))
    elif which == "anywhere":
        body = data.draw(mutated(body))
    else:
        n = data.draw(st.one_of(st.integers(-5, len(body) + 5), st.just(2**64)))
    length = data.draw(st.sampled_from([str(n), str(n) + " ", "0x10", "", "1e3", "-0"])) \
        if which == "length" else str(n)
    r = app.post("/v1/grad", content=body, headers={"content-type": "application/octet-stream",
                                                    "inference-header-content-length": length})
    no_server_error(r)
    serves_correctly(app)


def test_profile_is_bounded_in_ci() -> None:
    # CI's bounded run; the long run is one environment variable away (module docstring)
    assert settings.get_profile("fuzz").max_examples == _EXAMPLES
    assert math.isfinite(_EXAMPLES) and _EXAMPLES >= 1
