"""Ray Serve: deploy/ray/gradserve_app.py on a local Ray cluster with two replicas.

A batch of seed-example requests, each with its own w and b, goes through Serve's HTTP proxy;
every answer must match torch, and both replicas (two process ids, neither this process) must
have answered some. The cluster is started once for the module and shut down afterwards.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import ray
import torch
from ray import serve

from deploy.ray.gradserve_app import REPLICA_HEADER, RaySettings, build, deployment_options, replica_env
from tests.service.helpers import SEED_NODES

X = np.random.default_rng(7).random(100).astype(np.float32)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- settings (no cluster needed)
def test_replicas_and_autoscaling_come_from_settings(monkeypatch):
    monkeypatch.setenv("GRADSERVE_RAY_NUM_REPLICAS", "3")
    monkeypatch.setenv("GRADSERVE_RAY_NUM_CPUS", "0.5")
    opts = deployment_options(RaySettings(), {})
    assert opts["num_replicas"] == 3 and "autoscaling_config" not in opts
    assert opts["ray_actor_options"]["num_cpus"] == 0.5
    monkeypatch.setenv("GRADSERVE_RAY_AUTOSCALING", "true")
    monkeypatch.setenv("GRADSERVE_RAY_MAX_REPLICAS", "6")
    opts = deployment_options(RaySettings(), {})
    assert "num_replicas" not in opts
    assert opts["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 6,
                                          "target_ongoing_requests": 2.0}


def test_replicas_get_server_settings_but_never_the_api_keys():
    env = replica_env({"GRADSERVE_MAX_NODES": "50", "GRADSERVE_API_KEYS": "secret", "GRADSERVE_RAY_NAME": "x",
                       "HOME": "/root"})
    assert env == {"GRADSERVE_MAX_NODES": "50"}


# ---------------------------------------------------------------- a real local cluster
_RAY_PATIENCE = {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "300",
                 "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "300"}


@pytest.fixture(scope="module")
def ray_url() -> Iterator[str]:
    port = _free_port()
    # Ray Serve's controller kills an HTTP proxy not ready within 5 s (and the driver waits 60 s):
    # figures of speed, missed on a machine busy with other work (seen with both cores loaded).
    # Here they are hang guards only. The cluster's processes inherit this environment.
    from ray.serve._private import api as serve_api
    proxy_timeout = serve_api.HTTP_PROXY_TIMEOUT
    serve_api.HTTP_PROXY_TIMEOUT = 900
    saved_env = {k: os.environ.get(k) for k in _RAY_PATIENCE}
    os.environ.update(_RAY_PATIENCE)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        # Replicas inherit this process's environment: pin what the test relies on.
        env = {"GRADSERVE_API_KEYS": "", "GRADSERVE_MAX_CONCURRENCY": "1", "GRADSERVE_MAX_NODES": "50"}
        serve.run(build(RaySettings(num_replicas=2, num_cpus=0.5), env=env), name="gradserve",
                  route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve_api.HTTP_PROXY_TIMEOUT = proxy_timeout
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def _seed_request(w: float, b: float) -> dict:
    return {"graph": {"inputs": [
        {"name": "w", "datatype": "FP32", "shape": [1], "data": [w], "requires_grad": True},
        {"name": "b", "datatype": "FP32", "shape": [1], "data": [b], "requires_grad": True},
        {"name": "x", "datatype": "FP32", "shape": [100], "data": X.tolist()}], "nodes": SEED_NODES},
        "outputs": ["loss"], "inputs": ["w", "b"], "return": ["loss"]}


def _torch_seed(w: float, b: float) -> tuple[float, float, float]:
    wt = torch.tensor([w], requires_grad=True)
    bt = torch.tensor([b], requires_grad=True)
    xt = torch.from_numpy(X)
    loss = ((2 * xt + 1 - (wt * xt + bt)) ** 2).mean()
    gw, gb = torch.autograd.grad(loss, (wt, bt))
    return gw.item(), gb.item(), loss.item()


def test_two_replicas_answer_a_batch_correctly(ray_url):
    params = [(0.5 + 0.05 * i, 0.9 - 0.03 * i) for i in range(64)]

    def call(client: httpx.Client, wb: tuple[float, float]) -> tuple[tuple[float, float], httpx.Response]:
        return wb, client.post(f"{ray_url}/v1/grad", json=_seed_request(*wb), timeout=60)

    pids: Counter[str] = Counter()
    replicas: set[str] = set()
    answered = 0
    with httpx.Client() as client, ThreadPoolExecutor(8) as pool:
        for start in range(0, len(params), 16):  # batches of 16 in flight, until both replicas answered
            for (w, b), r in pool.map(lambda wb: call(client, wb), params[start:start + 16]):
                assert r.status_code == 200, r.text
                body = r.json()
                gw, gb, loss = _torch_seed(w, b)
                np.testing.assert_allclose(body["grads"][0]["data"], [gw], rtol=1e-5)
                np.testing.assert_allclose(body["grads"][1]["data"], [gb], rtol=1e-5)
                np.testing.assert_allclose(body["values"]["loss"]["data"], [loss], rtol=1e-5)
                pids[r.headers["x-gradserve-pid"]] += 1
                replicas.add(r.headers[REPLICA_HEADER])
                answered += 1
            if len(pids) >= 2 and answered >= 32:
                break
    assert len(pids) == 2 and len(replicas) == 2, (pids, replicas)
    assert str(os.getpid()) not in pids  # answered by the replica processes, not in-process
    assert all(n >= 1 for n in pids.values())


def test_the_replicas_serve_the_whole_app(ray_url):
    """The same create_app(): limits from the forwarded settings, problem+json with a request id,
    the Open Inference Protocol and /metrics."""
    with httpx.Client(timeout=60) as client:
        big = {"graph": {"inputs": [], "nodes": [{"op": "neg", "inputs": [1.0], "outputs": [f"n{i}"]}
                                                 for i in range(51)]}}
        r = client.post(f"{ray_url}/v1/grad", json=big, headers={"X-Request-ID": "ray-req-1"})
        assert r.status_code == 413 and r.json()["limit"] == "max_nodes"  # GRADSERVE_MAX_NODES=50
        assert r.headers["x-request-id"] == "ray-req-1" and r.json()["request_id"] == "ray-req-1"
        assert client.get(f"{ray_url}/v2/health/ready").status_code == 200
        meta = client.get(f"{ray_url}/v2").json()
        assert "binary_tensor_data" in meta["extensions"]
        assert "gradserve_http_requests_total" in client.get(f"{ray_url}/metrics").text
