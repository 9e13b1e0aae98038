"""Host-side half of the Docker smoke test: wait for a Gradserve server, send the seed example, and
check its gradients against a closed form computed here with numpy.

    python deploy/docker/seed_check.py wait http://127.0.0.1:8000 --timeout 60 [--container NAME]
    python deploy/docker/seed_check.py seed http://127.0.0.1:8000 --api-key KEY
    python deploy/docker/seed_check.py unauthorized http://127.0.0.1:8000

Only the standard library and numpy: this runs on the host, outside the image, and never trusts
the server's arithmetic. Exit status 0 on success, 1 with a message on stderr otherwise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np


def _fail(msg: str) -> None:
    print(f"seed_check: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def _container_state(name: str) -> str:
    r = subprocess.run(["docker", "inspect", "--format", "{{.State.Status}}", name],
                       capture_output=True, text=True)
    return r.stdout.strip() or f"unknown ({r.stderr.strip()})"


def wait_ready(url: str, timeout: float, container: str | None = None) -> None:
    """Poll GET /health/ready until it answers 200, or fail after `timeout` seconds (or as soon as
    `container` stops running)."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if container and (state := _container_state(container)) != "running":
            _fail(f"container {container} is {state}, not running (last: {last})")
        try:
            with urllib.request.urlopen(f"{url}/health/ready", timeout=2) as r:
                if r.status == 200:
                    print(f"seed_check: {url}/health/ready answered 200")
                    return
                last = f"status {r.status}"
        except urllib.error.HTTPError as e:
            last = f"status {e.code}"
        except (urllib.error.URLError, OSError) as e:  # not listening yet, or reset during start-up
            last = repr(e)
        time.sleep(0.5)
    _fail(f"{url}/health/ready not ready after {timeout:.0f} s (last: {last})")


def seed_request(x: np.ndarray, w: float, b: float) -> dict:
    """The seed example of issue 3 in the JSON (nodes) form of wire format v1."""
    return {
        "graph": {
            "inputs": [
                {"name": "w", "datatype": "FP32", "shape": [1], "data": [w], "requires_grad": True},
                {"name": "b", "datatype": "FP32", "shape": [1], "data": [b], "requires_grad": True},
                {"name": "x", "datatype": "FP32", "shape": [len(x)], "data": x.tolist()},
            ],
            "nodes": [
                {"op": "mul", "inputs": [2, "x"], "outputs": ["t"]},
                {"op": "add", "inputs": ["t", 1], "outputs": ["y"]},
                {"op": "mul", "inputs": ["w", "x"], "outputs": ["p"]},
                {"op": "add", "inputs": ["p", "b"], "outputs": ["q"]},
                {"op": "sub", "inputs": ["y", "q"], "outputs": ["r"]},
                {"op": "pow", "inputs": ["r", 2], "outputs": ["s"]},
                {"op": "mean", "inputs": ["s"], "outputs": ["loss"]},
            ],
        },
        "outputs": ["loss"],
        "inputs": ["w", "b"],
        "grad_outputs": None,
        "retain_graph": None,
        "create_graph": False,
        "allow_unused": False,
        "return": ["loss"],
    }


def expected(x: np.ndarray, w: float, b: float) -> tuple[float, float, float]:
    """Closed form in float64 for loss = mean((y - (w x + b))^2), y = 2x + 1: (loss, dL/dw, dL/db)."""
    x = x.astype(np.float64)
    w, b = float(np.float32(w)), float(np.float32(b))  # the values the server actually receives
    r = (2 * x + 1) - (w * x + b)
    return float(np.mean(r**2)), float(np.mean(-2 * x * r)), float(np.mean(-2 * r))


def _tensor(obj: object, what: str) -> np.ndarray:
    if not isinstance(obj, dict) or "data" not in obj:
        _fail(f"{what} is not a tensor object with `data`: {obj!r}")
    try:
        return np.asarray(obj["data"], dtype=np.float64).reshape(obj.get("shape", [-1]))
    except (TypeError, ValueError) as e:
        _fail(f"{what} has unreadable data {obj['data']!r}: {e}")
    raise AssertionError("unreachable")


def check_seed(url: str, headers: dict[str, str]) -> None:
    """POST the seed example and compare the gradients and the returned loss with `expected`."""
    x = np.random.default_rng(20240503).random(100).astype(np.float32)
    w, b = 0.5, 0.9
    body = json.dumps(seed_request(x, w, b)).encode()
    req = urllib.request.Request(
        f"{url}/v1/grad", data=body, method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, payload = r.status, r.read()
    except urllib.error.HTTPError as e:
        _fail(f"POST /v1/grad answered {e.code}: {e.read()[:2000].decode(errors='replace')}")
    except (urllib.error.URLError, OSError) as e:
        _fail(f"POST /v1/grad failed: {e!r}")
    if status != 200:
        _fail(f"POST /v1/grad answered {status}")
    try:
        resp = json.loads(payload)
    except ValueError:
        _fail(f"POST /v1/grad answered non-JSON: {payload[:500]!r}")

    loss, gw, gb = expected(x, w, b)
    grads = resp.get("grads")
    if not isinstance(grads, list) or len(grads) != 2:
        _fail(f"`grads` should be a list of 2 tensors, got {grads!r}")
    got = {
        "dL/dw": (_tensor(grads[0], "grads[0]"), gw),
        "dL/db": (_tensor(grads[1], "grads[1]"), gb),
        "loss": (_tensor((resp.get("values") or {}).get("loss"), "values.loss"), loss),
    }
    for name, (value, want) in got.items():
        if value.size != 1:
            _fail(f"{name} should hold one element, got shape {value.shape}")
        # the server computes in float32; the closed form is float64
        if not np.allclose(value.item(), want, rtol=1e-5, atol=1e-6):
            _fail(f"{name} = {value.item()!r}, expected {want!r} (closed form on the host)")
        print(f"seed_check: {name} = {value.item():.7g} (expected {want:.7g}) ok")


def check_unauthorized(url: str) -> None:
    """POST without a key to a server that has keys configured: expect 401 problem+json."""
    req = urllib.request.Request(f"{url}/v1/grad", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            _fail(f"POST /v1/grad without a key answered {r.status}, expected 401")
    except urllib.error.HTTPError as e:
        ctype = e.headers.get("Content-Type", "")
        if e.code != 401 or not ctype.startswith("application/problem+json"):
            _fail(f"POST /v1/grad without a key answered {e.code} {ctype!r}, expected 401 problem+json")
    except (urllib.error.URLError, OSError) as e:
        _fail(f"POST /v1/grad failed: {e!r}")
    print("seed_check: request without the API key refused with 401 problem+json ok")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["wait", "seed", "unauthorized"])
    ap.add_argument("url", help="base URL, e.g. http://127.0.0.1:8000")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for readiness")
    ap.add_argument("--container", default=None, help="wait: give up when this container stops")
    ap.add_argument("--api-key", default=None, help="sent as `Authorization: Bearer <key>`")
    args = ap.parse_args(argv)
    url = args.url.rstrip("/")
    if args.command == "wait":
        wait_ready(url, args.timeout, args.container)
    elif args.command == "unauthorized":
        check_unauthorized(url)
    else:
        check_seed(url, {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {})


if __name__ == "__main__":
    main()
