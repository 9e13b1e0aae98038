"""Request ids, metrics, engine statistics, structured logs and tracing, in-process.

Prometheus counters are process-wide, so these tests compare values before and after their own
requests. Tracing installs a global tracer provider, so it is tested in a child process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from service import core, stats, tracing
from service.app import create_app
from service.gate import Gate
from service.logs import REQUEST_ID, JsonFormatter, TextFormatter, log_config
from service.settings import Settings

from .helpers import seed_request

ROOT = Path(__file__).resolve().parents[2]


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ---------------------------------------------------------------- request ids
def test_request_id_is_echoed_generated_or_replaced(client, x100):
    r = client.post("/v1/grad", json=seed_request(x100), headers={"X-Request-ID": "abc.DEF-123:4"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "abc.DEF-123:4"
    r = client.get("/health/live")
    assert len(r.headers["x-request-id"]) == 32 and int(r.headers["x-request-id"], 16) >= 0
    for bad in ("a b", "x" * 129, "caf\u00e9".encode(), "<script>"):  # bytes: non-ASCII on the wire
        r = client.get("/health/live", headers={"X-Request-ID": bad})
        assert len(r.headers["x-request-id"]) == 32 and r.headers["x-request-id"] != bad


def test_problem_bodies_carry_the_request_id(client):
    r = client.post("/v1/grad", json={"graph": {}}, headers={"X-Request-ID": "p-1"})
    assert r.status_code == 422 and r.json()["request_id"] == "p-1" == r.headers["x-request-id"]
    r = client.get("/nowhere", headers={"X-Request-ID": "p-2"})
    assert r.status_code == 404 and r.json()["request_id"] == "p-2"
    r = client.post("/v1/grad", content=b"{",
                    headers={"Content-Type": "application/json", "X-Request-ID": "p-3"})
    assert r.status_code == 400 and r.json()["request_id"] == "p-3"


def test_an_unexpected_500_is_counted_and_carries_the_request_id(monkeypatch, x100):
    def boom(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    # a bug in the engine run: every run (in place, compiled, or in a child process) goes there
    monkeypatch.setattr(core, "_execute", boom)
    app = create_app(Settings(api_keys=[]))
    before = _metric("gradserve_http_requests_total", route="/v1/grad", method="POST", status="500")
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/v1/grad", json=seed_request(x100), headers={"X-Request-ID": "bug-1"})
    assert r.status_code == 500, r.text
    assert r.headers["x-request-id"] == "bug-1" and r.json()["request_id"] == "bug-1"
    after = _metric("gradserve_http_requests_total", route="/v1/grad", method="POST", status="500")
    assert after == before + 1


# ---------------------------------------------------------------- metrics
def test_metrics_move_with_requests(client, x100):
    labels = {"route": "/v1/grad", "method": "POST"}
    before = {
        "ok": _metric("gradserve_http_requests_total", status="200", **labels),
        "bad": _metric("gradserve_http_requests_total", status="422", **labels),
        "lat": _metric("gradserve_http_request_duration_seconds_count", **labels),
        "runs": _metric("gradserve_engine_compute_seconds_count"),
        "nodes": _metric("gradserve_graph_nodes_sum"),
        "in": _metric("gradserve_tensor_bytes_in_total"),
        "out": _metric("gradserve_tensor_bytes_out_total"),
        "err": _metric("gradserve_errors_total", type="invalid-graph", status="422"),
        "hits": _metric("gradserve_plan_cache_hits_total"),
        "misses": _metric("gradserve_plan_cache_misses_total"),
    }
    for _ in range(3):
        assert client.post("/v1/grad", json=seed_request(x100, **{"return": ["loss"]})).status_code == 200
    bad = seed_request(x100)
    bad["graph"]["nodes"][0]["op"] = "nope"
    assert client.post("/v1/grad", json=bad).status_code == 422
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "# TYPE gradserve_http_requests_total counter" in r.text
    assert _metric("gradserve_http_requests_total", status="200", **labels) == before["ok"] + 3
    assert _metric("gradserve_http_requests_total", status="422", **labels) == before["bad"] + 1
    assert _metric("gradserve_http_request_duration_seconds_count", **labels) == before["lat"] + 4
    assert _metric("gradserve_engine_compute_seconds_count") == before["runs"] + 3
    assert _metric("gradserve_graph_nodes_sum") == before["nodes"] + 3 * 7
    assert _metric("gradserve_tensor_bytes_in_total") == before["in"] + 3 * 408
    assert _metric("gradserve_tensor_bytes_out_total") == before["out"] + 3 * 12
    assert _metric("gradserve_errors_total", type="invalid-graph", status="422") == before["err"] + 1
    lookups = (_metric("gradserve_plan_cache_hits_total") - before["hits"]) + (
        _metric("gradserve_plan_cache_misses_total") - before["misses"])
    assert lookups == 4  # every request looks its graph up once
    assert _metric("gradserve_plan_cache_hits_total") - before["hits"] == 2  # a fresh app: one miss first


def test_metrics_route_can_be_turned_off(make_client):
    c = make_client(metrics=False)
    assert c.get("/metrics").status_code == 404


# ---------------------------------------------------------------- engine statistics (service.stats)
class Recorder:
    def __init__(self) -> None:
        self.runs: list[stats.RunStats] = []
        self.lookups: list[bool] = []

    def on_run(self, s: stats.RunStats) -> None:
        self.runs.append(s)

    def on_plan_cache(self, hit: bool) -> None:
        self.lookups.append(hit)


@pytest.fixture
def recorder():
    rec = Recorder()
    stats.add_observer(rec)
    stats.add_observer(rec)  # idempotent
    yield rec
    stats.remove_observer(rec)


def test_core_reports_each_run(recorder, x100):
    core.evaluate(seed_request(x100, **{"return": ["loss"]}))
    (run,) = recorder.runs
    assert (run.nodes, run.bytes_in, run.bytes_out, run.ok) == (7, 4 + 4 + 400, 4 + 4 + 4, True)
    assert 0 < run.compute_s < 10
    req = seed_request(x100.astype(np.float64).astype(np.float32), allow_unused=False)
    req["inputs"] = ["w", "x"]  # x does not require grad: autograd_grad raises
    with pytest.raises(Exception):
        core.evaluate(req)
    assert recorder.runs[-1].ok is False and recorder.runs[-1].bytes_out == 0


# ---------------------------------------------------------------- logs
def _record(message: str, **fields) -> logging.LogRecord:
    rec = logging.LogRecord("gradserve.test", logging.INFO, __file__, 1, message, (), None)
    rec.fields = fields
    return rec


def test_json_formatter():
    token = REQUEST_ID.set("rid-9")
    try:
        line = JsonFormatter().format(_record("hello %s", status=200, msg="not overriding"))
    finally:
        REQUEST_ID.reset(token)
    out = json.loads(line)
    assert out["msg"] == "hello %s" and out["request_id"] == "rid-9" and out["status"] == 200
    assert out["level"] == "info" and out["logger"] == "gradserve.test" and out["ts"].endswith("Z")
    assert "request_id" not in json.loads(JsonFormatter().format(_record("outside a request")))


def test_text_formatter_and_config():
    token = REQUEST_ID.set("rid-10")
    try:
        line = TextFormatter().format(_record("hi", route="/v1/grad"))
    finally:
        REQUEST_ID.reset(token)
    assert line.endswith("hi [request_id=rid-10 route=/v1/grad]")
    cfg = log_config("debug", "text")
    assert cfg["formatters"]["gradserve"]["()"].endswith("TextFormatter")
    assert cfg["loggers"]["gradserve"]["level"] == "DEBUG"
    assert log_config()["formatters"]["gradserve"]["()"].endswith("JsonFormatter")


def test_the_gate_runs_jobs_in_the_requests_context():
    async def main() -> str | None:
        gate = Gate(1, 1)
        REQUEST_ID.set("ctx-1")
        try:
            return await gate.run(REQUEST_ID.get, timeout=5)
        finally:
            gate.shutdown()

    assert asyncio.run(main()) == "ctx-1"


# ---------------------------------------------------------------- tracing
def _child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def _spans(text: str) -> list[dict]:
    """The ConsoleSpanExporter's output: JSON objects one after another."""
    dec, spans, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        obj, i = dec.raw_decode(text, i)
        spans.append(obj)
    return spans


def test_tracing_spans_with_the_otel_sdk():
    """``otel_exporter="console"``: one server span per request, carrying the request id, with the
    engine span below it; a bare ASGI app (no framework tracing) gets our own server span."""
    proc = _child("""
        import warnings; warnings.simplefilter("ignore")
        import numpy as np
        from fastapi.testclient import TestClient
        from opentelemetry import trace
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route
        from service.app import create_app
        from service.observe import ObservabilityMiddleware
        from service.settings import Settings
        from tests.service.helpers import seed_request
        app = create_app(Settings(api_keys=[], otel_exporter="console"))
        with TestClient(app) as c:
            r = c.post("/v1/grad", json=seed_request(np.ones(100, np.float32)),
                       headers={"X-Request-ID": "tr-1"})
            assert r.status_code == 200, r.text
        bare = Starlette(routes=[Route("/ping/{n}", lambda req: PlainTextResponse("pong"))])
        with TestClient(ObservabilityMiddleware(bare)) as c:
            assert c.get("/ping/3", headers={"X-Request-ID": "tr-2"}).status_code == 200
        trace.get_tracer_provider().shutdown()  # flush the batch processor
    """)
    assert proc.returncode == 0, proc.stderr
    spans = _spans(proc.stdout)
    by_id = {s["context"]["span_id"]: s for s in spans}
    servers = [s for s in spans if s["kind"] == "SpanKind.SERVER"]
    assert len(servers) == 2, [s["name"] for s in servers]  # never two server spans for one request
    (grad,) = [s for s in servers if s["attributes"].get("gradserve.request_id") == "tr-1"]
    assert grad["attributes"]["http.response.status_code"] == 200
    assert grad["attributes"]["http.route"] == "/v1/grad"
    (engine,) = [s for s in spans if s["name"] == "gradserve.engine"]
    assert engine["attributes"]["gradserve.graph.nodes"] == 7
    assert engine["attributes"]["gradserve.tensor_bytes_in"] == 408
    parent, chain = engine["parent_id"], []
    while parent is not None:  # the engine thread's span hangs below the request's server span
        chain.append(by_id[parent]["name"])
        parent = by_id[parent]["parent_id"]
    assert chain[-1] == grad["name"] and engine["context"]["trace_id"] == grad["context"]["trace_id"]
    (ping,) = [s for s in servers if s["attributes"].get("gradserve.request_id") == "tr-2"]
    assert ping["name"] == "GET /ping/{n}" and ping["attributes"]["http.route"] == "/ping/{n}"


def test_tracing_is_a_no_op_without_the_otel_extra():
    proc = _child("""
        import sys, warnings; warnings.simplefilter("ignore")
        sys.modules["opentelemetry.sdk"] = None  # as if the otel extra were not installed
        import numpy as np
        from fastapi.testclient import TestClient
        from service import tracing
        from service.app import create_app
        from service.settings import Settings
        from tests.service.helpers import seed_request
        with TestClient(create_app(Settings(api_keys=[], otel_exporter="console"))) as c:
            assert c.post("/v1/grad", json=seed_request(np.ones(100, np.float32))).status_code == 200
        assert not tracing.active()
        print("ok")
    """)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    assert "opentelemetry-sdk is not installed" in proc.stderr  # the setting asked for it: say why not


def test_no_spans_without_a_tracer_provider():
    assert tracing.available() and not tracing.active()
    with tracing.server_span("GET", "/x", "r") as span:
        assert span is None


# ---------------------------------------------------------------- the CLI's metrics directory
def test_cli_metrics_dir(monkeypatch, tmp_path):
    from service import cli

    monkeypatch.delenv(cli.MULTIPROC_ENV, raising=False)
    with cli._metrics_dir(1) as d:
        assert d is None and cli.MULTIPROC_ENV not in os.environ  # one process: none
    with cli._metrics_dir(2) as d:
        assert Path(d).is_dir() and Path(d).name.startswith("gradserve-metrics-")
        assert os.environ[cli.MULTIPROC_ENV] == d
        (Path(d) / "counter_1.db").write_bytes(b"")
    assert not Path(d).exists() and cli.MULTIPROC_ENV not in os.environ
    monkeypatch.setenv(cli.MULTIPROC_ENV, str(tmp_path))  # the operator's own directory: kept
    with cli._metrics_dir(4) as d:
        assert d == str(tmp_path)
    assert tmp_path.is_dir()
