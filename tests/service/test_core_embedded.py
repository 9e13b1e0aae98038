"""service.core: the transport-free entry point the client's embedded mode calls."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from service import errors
from service.core import evaluate, evaluate_binary
from service.settings import Settings

from .helpers import read_tensor, seed_request, seed_torch, wire_tensor


def test_core_imports_no_web_framework():
    code = ("import sys, service.core, service.wire, service.errors, service.expr, service.executor\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette', 'uvicorn'))\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize("encoding", ["json", "b64"])
def test_evaluate_seed_example(x100, encoding):
    out = evaluate(seed_request(x100, form="source", response_encoding=encoding, **{"return": ["loss"]}))
    gw, gb, loss = seed_torch(x100)
    assert set(out) == {"grads", "values"}
    key = "data" if encoding == "json" else "b64"
    assert key in out["grads"][0] and isinstance(out["grads"][0][key], (list, str))
    np.testing.assert_allclose(read_tensor(out["grads"][0]), gw, rtol=1e-6)
    np.testing.assert_allclose(read_tensor(out["grads"][1]), gb, rtol=1e-6)
    np.testing.assert_allclose(read_tensor(out["values"]["loss"]), loss, rtol=1e-6)


def test_evaluate_with_blobs_and_binary_output(x100):
    req = seed_request(x100, encoding="binary")
    blobs = [np.float32(0.5).tobytes(), np.float32(0.9).tobytes(), x100.tobytes()]
    out = evaluate(req, blobs)
    gw, gb, _ = seed_torch(x100)
    np.testing.assert_allclose(read_tensor(out["grads"][0]), gw, rtol=1e-6)
    header, out_blobs = evaluate_binary(req, blobs)
    assert [t["parameters"]["binary_data_size"] for t in header["grads"]] == [4, 4]
    np.testing.assert_allclose(read_tensor(header["grads"][1], bytes(out_blobs[1])), gb, rtol=1e-6)
    with pytest.raises(errors.BadRequest):
        evaluate(req, blobs[:2])
    with pytest.raises(errors.BadRequest):
        evaluate(req, [blobs[0], blobs[1], blobs[2][:-4]])


def test_evaluate_raises_the_domain_errors():
    x = wire_tensor("x", np.array([1.0, 2.0]), requires_grad=True)
    with pytest.raises(errors.AutogradError) as e:
        evaluate({"graph": {"inputs": [x], "source": "y = x * 2"}, "outputs": "y", "inputs": "x"})
    assert e.value.exception == "RuntimeError"
    assert str(e.value) == "grad can be implicitly created only for scalar outputs"
    with pytest.raises(errors.ExpressionError) as e2:
        evaluate({"graph": {"inputs": [x], "source": "import os"}})
    assert (e2.value.line, e2.value.col) == (1, 1)
    with pytest.raises(errors.InvalidGraph):
        evaluate({"graph": {"inputs": [x], "nodes": [{"op": "nope", "inputs": ["x"], "outputs": ["y"]}]}})
    with pytest.raises(errors.InvalidRequest):
        evaluate({"graph": {"inputs": [x]}})
    with pytest.raises(errors.PayloadTooLarge) as e3:
        evaluate({"graph": {"inputs": [x], "source": "y = x"}}, settings=Settings(max_tensor_elements=1))
    assert e3.value.limit == "max_tensor_elements"
    assert isinstance(e3.value, errors.GradserveError)


def test_problem_rendering_of_each_class():
    cases = [(errors.BadRequest("x"), 400), (errors.Unauthorized("x"), 401),
             (errors.PayloadTooLarge("x", limit="max_nodes"), 413), (errors.UnsupportedMediaType("x"), 415),
             (errors.InvalidRequest("x"), 422), (errors.InvalidGraph("x"), 422),
             (errors.ExpressionError("x", line=1, col=2), 422), (errors.EngineError("x"), 422),
             (errors.AutogradError("x", exception="ValueError"), 422), (errors.Overloaded("x"), 503),
             (errors.RequestTimeout("x"), 504)]
    types = set()
    for exc, status in cases:
        p = errors.to_problem(exc)
        assert p["status"] == status and p["detail"] and p["title"]
        types.add(p["type"])
    assert len(types) == len(cases)  # each class has its own problem type
    assert errors.to_problem(cases[8][0])["exception"] == "ValueError"
    assert errors.problem_headers(errors.Overloaded("x", retry_after=3)) == {"Retry-After": "3"}


def test_engine_exception_types_map_to_builtin_names():
    class Weird(IndexError):
        pass

    assert errors.EngineError.from_exception(Weird("boom")).exception == "IndexError"
    assert errors.EngineError.from_exception(np.linalg.LinAlgError("x")).exception == "ValueError"
    assert errors.EngineError.from_exception(AttributeError("x")).exception == "RuntimeError"
