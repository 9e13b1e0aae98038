"""Metrics, request ids and logs of a real server, with one worker and with ``--workers 2``.

Each test starts its own server, so every counter starts at zero and can be checked exactly after
a known mix of requests. With two workers the requests go over fresh connections and the test
makes sure both processes served some, so ``/metrics`` must add up both processes' counters.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.service.helpers import seed_request

from ._procs import children, environ


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _oip_seed(x: np.ndarray) -> dict:
    v1 = seed_request(x)
    graph = {"inputs": [{"name": t["name"], "requires_grad": t.get("requires_grad", False)}
                        for t in v1["graph"]["inputs"]], "nodes": v1["graph"]["nodes"]}
    tensors = [{"name": t["name"], "datatype": t["datatype"], "shape": t["shape"], "data": t["data"]}
               for t in v1["graph"]["inputs"]]
    return {"inputs": [{"name": "graph", "datatype": "BYTES", "shape": [1], "data": [json.dumps(graph)]},
                       *tensors],
            "parameters": {"outputs": "loss"},
            "outputs": [{"name": "grad:w"}, {"name": "grad:b"}, {"name": "loss"}]}


def _post(url: str, path: str, **kw) -> httpx.Response:
    # A fresh connection per request, so that the kernel can hand it to either worker.
    return httpx.post(url + path, headers={"Connection": "close", **kw.pop("headers", {})}, timeout=30, **kw)


def _get(url: str, path: str) -> httpx.Response:
    return httpx.get(url + path, headers={"Connection": "close"}, timeout=30)


@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_move_as_expected_after_a_mix_of_requests(make_server, workers):
    srv = make_server(env={"GRADSERVE_PID_HEADER": "1"}, args=["--workers", str(workers)])
    url = srv.url
    x = np.random.default_rng(5).random(100).astype(np.float32)
    pids: Counter[str] = Counter()

    # Until every worker has answered (bounded): makes the sum over processes matter.
    live = 0
    while len(pids) < workers or live < 4:
        r = _get(url, "/health/live")
        assert r.status_code == 200
        pids[r.headers["x-gradserve-pid"]] += 1
        live += 1
        assert live < 400, f"only {len(pids)} of {workers} workers answered in {live} requests"

    for _ in range(6):  # 6 seed requests over v1: 7 nodes, 408 bytes in, 12 out (2 grads + loss)
        r = _post(url, "/v1/grad", json=seed_request(x, **{"return": ["loss"]}))
        assert r.status_code == 200, r.text
        pids[r.headers["x-gradserve-pid"]] += 1
    for _ in range(3):  # the same graph over the Open Inference Protocol
        r = _post(url, "/v2/models/gradserve/infer", json=_oip_seed(x))
        assert r.status_code == 200, r.text
        pids[r.headers["x-gradserve-pid"]] += 1
    bad_graph = seed_request(x)
    bad_graph["graph"]["nodes"][0]["op"] = "mull"
    for _ in range(2):
        assert _post(url, "/v1/grad", json=bad_graph).status_code == 422
    assert _post(url, "/v1/grad", content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    assert _post(url, "/v2/models/nope/infer", json=_oip_seed(x)).status_code == 404
    for _ in range(2):
        assert _get(url, "/no/such/path").status_code == 404

    text = _get(url, "/metrics").text
    s = _samples(text)
    req = "gradserve_http_requests_total"
    assert _value(s, req, route="/health/live", method="GET", status="200") == live
    assert _value(s, req, route="/v1/grad", method="POST", status="200") == 6
    assert _value(s, req, route="/v1/grad", method="POST", status="422") == 2
    assert _value(s, req, route="/v1/grad", method="POST", status="415") == 1
    assert _value(s, req, route="/v2/models/{model_name}/infer", method="POST", status="200") == 3
    assert _value(s, req, route="/v2/models/{model_name}/infer", method="POST", status="404") == 1
    assert _value(s, req, route="unmatched", method="GET", status="404") == 2
    lat = "gradserve_http_request_duration_seconds"
    assert _value(s, lat + "_count", route="/v1/grad", method="POST") == 9
    assert _value(s, lat + "_bucket", route="/v1/grad", method="POST", le="+Inf") == 9
    assert 0 < _value(s, lat + "_sum", route="/v1/grad", method="POST") < 9 * 30

    # The engine ran 9 graphs of 7 nodes (the invalid ones never reached it).
    assert _value(s, "gradserve_engine_compute_seconds_count") == 9
    assert _value(s, "gradserve_graph_nodes_count") == 9
    assert _value(s, "gradserve_graph_nodes_sum") == 9 * 7
    assert _value(s, "gradserve_graph_nodes_bucket", le="5.0") == 0
    assert _value(s, "gradserve_graph_nodes_bucket", le="10.0") == 9
    assert _value(s, "gradserve_tensor_bytes_in_total") == 9 * (4 + 4 + 400)
    assert _value(s, "gradserve_tensor_bytes_out_total") == 9 * (4 + 4 + 4)

    err = "gradserve_errors_total"
    assert _value(s, err, type="invalid-graph", status="422") == 2
    assert _value(s, err, type="unsupported-media-type", status="415") == 1
    assert _value(s, err, type="not-found", status="404") == 1
    assert _value(s, err, type="http-404", status="404") == 2

    # One cache per process: the seed graph misses once in each process that saw it first, and
    # the invalid graph (never cached) misses every time; v1 and v2 share the plan.
    hits = _value(s, "gradserve_plan_cache_hits_total")
    misses = _value(s, "gradserve_plan_cache_misses_total")
    assert hits + misses == 6 + 3 + 2
    assert 2 + 1 <= misses <= 2 + workers

    # Every worker contributes: the request counters add up over processes.
    assert len(pids) == workers
    if workers > 1:
        assert all(n >= 1 for n in pids.values())
        # A second scrape, likely from the other worker, sees the same totals.
        for _ in range(4):
            again = _samples(_get(url, "/metrics").text)
            assert _value(again, req, route="/v1/grad", method="POST", status="200") == 6


def test_the_cli_manages_the_workers_metrics_directory(make_server):
    """``--workers 2``: the CLI hands both workers one fresh directory, and removes it on exit."""
    srv = make_server(args=["--workers", "2"])
    assert _get(srv.url, "/health/live").status_code == 200
    dirs = {environ(c).get("PROMETHEUS_MULTIPROC_DIR") for c in children(srv.proc.pid)}
    assert len(dirs) == 1, dirs
    (d,) = dirs
    assert Path(d).name.startswith("gradserve-metrics-")
    assert any(f.suffix == ".db" for f in Path(d).iterdir())  # the workers' metric files
    srv.stop()
    assert not Path(d).exists()


def test_request_ids_and_json_logs(make_server):
    srv = make_server(env={"GRADSERVE_API_KEYS": "s3cret-key-1"}, args=["--log-level", "info"])
    url = srv.url
    auth = {"Authorization": "Bearer s3cret-key-1"}
    bad = {"graph": {"inputs": [], "nodes": [{"op": "mull", "inputs": [1, 2], "outputs": ["y"]}]},
           "outputs": "y", "inputs": "y"}
    r = httpx.post(url + "/v1/grad", json=bad, headers={**auth, "X-Request-ID": "e2e-log-42"})
    assert r.status_code == 422
    assert r.headers["x-request-id"] == "e2e-log-42" and r.json()["request_id"] == "e2e-log-42"

    r2 = httpx.get(url + "/v1/ops", headers=auth)  # no id sent: one is generated
    generated = r2.headers["x-request-id"]
    assert r2.status_code == 200 and len(generated) == 32 and generated != "e2e-log-42"

    r3 = httpx.post(url + "/v1/grad", json=bad, headers={"Authorization": "Bearer wrong-key-9",
                                                         "X-Request-ID": "has spaces and ; stuff"})
    assert r3.status_code == 401  # a malformed id is replaced by a generated one, never echoed
    rid3 = r3.headers["x-request-id"]
    assert len(rid3) == 32 and rid3 not in (generated, "e2e-log-42") and r3.json()["request_id"] == rid3

    r4 = httpx.post(url + "/v2/models/gradserve/infer", json={"inputs": []},
                    headers={**auth, "X-Request-ID": "oip-err-7"})
    assert r4.status_code == 422 and r4.json()["request_id"] == "oip-err-7" and "error" in r4.json()

    wanted = {"e2e-log-42", generated, rid3, "oip-err-7"}
    deadline = time.monotonic() + 10
    while True:  # an access line is written just after its response went out
        lines = [ln for ln in srv.output().splitlines() if ln.strip()]
        records = [json.loads(ln) for ln in lines]  # every line is one JSON object
        access = {rec.get("request_id"): rec for rec in records if rec["logger"] == "gradserve.access"}
        if wanted <= access.keys() or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert all({"ts", "level", "logger", "msg", "pid"} <= rec.keys() for rec in records)
    a = access["e2e-log-42"]
    assert (a["method"], a["route"], a["status"]) == ("POST", "/v1/grad", 422) and a["duration_ms"] > 0
    assert access[generated]["route"] == "/v1/ops" and access[generated]["status"] == 200
    assert access["oip-err-7"]["status"] == 422
    assert access[rid3]["status"] == 401
    assert any(rec["logger"].startswith("uvicorn") for rec in records)
    text = srv.output()
    assert "s3cret-key-1" not in text and "wrong-key-9" not in text  # keys never reach the logs
