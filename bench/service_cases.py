"""Service cases: Gradserve over HTTP on loopback, timed side by side with the floor of its stack.

One real uvicorn server (``--workers 2``) serves :func:`bench.service_app.create_bench_app`:
Gradserve's own app plus ``POST /bench/floor`` (an empty route) and ``POST /bench/echo`` (the body
sent back). Every served case is timed interleaved with its floor on the same keep-alive
connection, so noise from the shared machine hits both alike; the client is ``http.client`` with
request bodies built in advance and responses read but not decoded (decoding is the client's
work, not the service's), so the ratios are the server's.

Before anything is timed, each served case's answer is checked against torch.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import gc
import http.client
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ._harness import WORKER_ENV, Case, Result, register, wait_ready
from .service_app import ECHO_PATH, FLOOR_PATH

ROOT = Path(__file__).resolve().parent.parent
GRAD_PATH = "/v1/grad"
JSON = {"Content-Type": "application/json"}
WORKERS = 2
MiB = 1 << 20

# served and floor: wall-clock medians (what the targets are about); CPU: the server processes'
# CPU time per request (from /proc), which other processes on a busy machine barely disturb.
SERVICE_HEADER = ("service case", "served ms", "floor ms", "CPU us s/f", "served/floor", "CPU ratio",
                  "reps", "targets")


# ---------------------------------------------------------------- the server and a client
class Server:
    """``uvicorn --factory bench.service_app:create_bench_app`` on a free loopback port, with the
    malloc policy of ``gradserve serve`` (``python -m bench.service_app``)."""

    def __init__(self, workers: int = WORKERS) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRADSERVE_")}
        env["GRADSERVE_LOG_LEVEL"] = "warning"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.service_app", "--factory", "bench.service_app:create_bench_app",
             "--http", "service.http:Protocol",  # the protocol `gradserve serve` runs
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers),
             "--log-level", "warning", "--no-access-log"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(self.port, self.proc)
        except RuntimeError:
            self.stop()
            raise

    def _pids(self) -> list[int]:
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                return [self.proc.pid, *map(int, f.read().split())]
        except OSError:
            return []

    def cpu_s(self) -> float | None:
        """CPU seconds the server's processes (every thread) have used, or None without /proc."""
        total, pids = 0, self._pids()
        for pid in pids:
            try:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                        total += int(f.read().split()[0])
            except OSError:
                continue  # a thread that just ended
        return total / 1e9 if pids else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


_SERVER: Server | None = None


class _Shared:
    """The bench server a worker process's parent started (``bench._harness.WORKER_ENV``)."""

    def __init__(self, port: int) -> None:
        self.port = port


def server() -> Server:
    """The one bench server of this run, started on first use and stopped at exit; in a worker
    process of ``bench._harness`` the parent's."""
    global _SERVER
    if _SERVER is None:
        if os.environ.get("BENCH_SERVER_PORT"):
            return _Shared(int(os.environ["BENCH_SERVER_PORT"]))  # type: ignore[return-value]
        _SERVER = Server()
        atexit.register(_SERVER.stop)
        WORKER_ENV["BENCH_SERVER_PORT"] = str(_SERVER.port)
    return _SERVER


class Conn:
    """One keep-alive connection; ``post`` returns (status, headers, body)."""

    def __init__(self, port: int) -> None:
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        self.http.request("POST", path, body=body, headers=headers)
        resp = self.http.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()

    def caller(self, path: str, body: bytes, headers: dict[str, str]) -> Callable[[], Any]:
        """A zero-argument repetition for :func:`bench._harness.measure` (fails on non-200)."""
        def run() -> None:
            status, _, content = self.post(path, body, headers)
            if status != 200:
                raise RuntimeError(f"POST {path}: HTTP {status}: {content[:300]!r}")
        return run


def measure(runs: dict[str, Callable[[], Any]], reps: int, warmup: int,
            budget_s: float | None = None) -> Result:
    """Time each run ``reps`` times, interleaved, the starting one rotating every round; the
    bench process's garbage collector is paused (it would otherwise strike mid-request).

    Returns a Result without its case: wall seconds per repetition in ``times``, and in
    ``extra["cpu"]`` the server's CPU seconds per repetition (mean), read between requests.
    """
    names = list(runs)
    for _ in range(warmup):
        for n in names:
            runs[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, float] = dict.fromkeys(names, 0.0)
    cpu_now = server().cpu_s
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for r in range(reps):
            k = r % len(names)
            for n in names[k:] + names[:k]:
                c0 = cpu_now()
                t0 = time.perf_counter()
                runs[n]()
                times[n].append(time.perf_counter() - t0)
                c1 = cpu_now()
                if c0 is not None and c1 is not None:
                    cpu[n] += c1 - c0
            if budget_s is not None and r >= 2 and time.perf_counter() - start > budget_s:
                break
    finally:
        gc.enable()
    done = {n: len(t) for n, t in times.items()}
    per_rep = {n: cpu[n] / done[n] for n in names} if cpu_now() is not None else {}
    return Result(None, times, extra={"cpu": per_rep})  # type: ignore[arg-type]


def ok(status: int, content: bytes) -> None:
    if status != 200:
        raise AssertionError(f"HTTP {status}: {content[:500]!r}")


# ---------------------------------------------------------------- requests and their checks
def tensor(name: str, a: np.ndarray, enc: str, requires_grad: bool = False) -> tuple[dict, bytes | None]:
    t: dict[str, Any] = {"name": name, "datatype": {"float32": "FP32"}[a.dtype.name], "shape": list(a.shape)}
    blob = None
    if enc == "json":
        t["data"] = a.reshape(-1).tolist()
    elif enc == "b64":
        t["b64"] = base64.b64encode(a.tobytes()).decode()
    else:
        t["parameters"] = {"binary_data_size": a.nbytes}
        blob = a.tobytes()
    if requires_grad:
        t["requires_grad"] = True
    return t, blob


def body_of(req: dict, blobs: list[bytes], binary_response: bool = False) -> tuple[bytes, dict[str, str]]:
    """A JSON body, or Triton's binary layout when there are blobs."""
    header = orjson.dumps(req)
    accept = "application/octet-stream" if binary_response else "application/json"
    if not blobs:
        return header, {**JSON, "Accept": accept}
    return header + b"".join(blobs), {"Content-Type": "application/octet-stream", "Accept": accept,
                                      "Inference-Header-Content-Length": str(len(header))}


def read_json_tensor(t: dict) -> np.ndarray:
    if "b64" in t:
        return np.frombuffer(base64.b64decode(t["b64"]), np.float32).reshape(t["shape"])
    return np.asarray(t["data"], np.float32).reshape(t["shape"])


def read_binary(content: bytes, headers: dict[str, str]) -> list[np.ndarray]:
    n = int(headers["inference-header-content-length"])
    head, out, off = orjson.loads(content[:n]), [], n
    for t in head["grads"]:
        size = t["parameters"]["binary_data_size"]
        out.append(np.frombuffer(content[off:off + size], np.float32).reshape(t["shape"]))
        off += size
    return out


SEED_NODES = [
    {"op": "mul", "inputs": [2, "x"], "outputs": ["t"]},
    {"op": "add", "inputs": ["t", 1], "outputs": ["y"]},
    {"op": "mul", "inputs": ["w", "x"], "outputs": ["p"]},
    {"op": "add", "inputs": ["p", "b"], "outputs": ["q"]},
    {"op": "sub", "inputs": ["y", "q"], "outputs": ["r"]},
    {"op": "pow", "inputs": ["r", 2], "outputs": ["s"]},
    {"op": "mean", "inputs": ["s"], "outputs": ["loss"]},
]


def seed_request(x: np.ndarray) -> dict:
    """Issue 3's seed example, exactly as its JSON: w = 0.5, b = 0.9, x = 100 uniforms."""
    w, _ = tensor("w", np.array([0.5], np.float32), "json", True)
    b, _ = tensor("b", np.array([0.9], np.float32), "json", True)
    xt, _ = tensor("x", x, "json")
    return {"graph": {"inputs": [w, b, xt], "nodes": SEED_NODES}, "outputs": ["loss"],
            "inputs": ["w", "b"], "grad_outputs": None, "retain_graph": None, "create_graph": False,
            "allow_unused": False, "return": ["loss"]}


def check_seed(content: bytes, x: np.ndarray) -> None:
    import torch
    w = torch.tensor([0.5], requires_grad=True)
    b = torch.tensor([0.9], requires_grad=True)
    xt = torch.from_numpy(x)
    gw, gb = torch.autograd.grad(((2 * xt + 1 - (w * xt + b)) ** 2).mean(), [w, b])
    grads = orjson.loads(content)["grads"]
    np.testing.assert_allclose(read_json_tensor(grads[0]), gw.numpy(), rtol=1e-5)
    np.testing.assert_allclose(read_json_tensor(grads[1]), gb.numpy(), rtol=1e-5)


# ---------------------------------------------------------------- seed example: latency
def run_seed(case: Case, quick: bool) -> Result:
    conn = Conn(server().port)
    x = np.random.default_rng(0).random(100).astype(np.float32)
    body, headers = body_of(seed_request(x), [])
    status, _, content = conn.post(GRAD_PATH, body, headers)
    ok(status, content)
    check_seed(content, x)
    runs = {"service": conn.caller(GRAD_PATH, body, headers), "floor": conn.caller(FLOOR_PATH, body, headers)}
    return _with_case(case, measure(runs, case.quick_reps if quick else case.reps, warmup=20,
                                    budget_s=5.0 if quick else None))


# ---------------------------------------------------------------- seed example: throughput
async def _load(port: int, path: str, body: bytes, headers: dict[str, str], conns: int,
                seconds: float) -> float:
    """Requests per second that ``conns`` keep-alive connections get through in ``seconds``."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}Content-Length: {len(body)}\r\n\r\n"
               ).encode() + body
    loop = asyncio.get_running_loop()
    done = 0

    async def client(end: float) -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while loop.time() < end:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"POST {path}: {head[:200]!r}")
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
                done += 1
        finally:
            writer.close()

    start = loop.time()
    await asyncio.gather(*(client(start + seconds) for _ in range(conns)))
    return done / (loop.time() - start)


def run_seed_throughput(case: Case, quick: bool) -> Result:
    port = server().port
    x = np.random.default_rng(0).random(100).astype(np.float32)
    body, headers = body_of(seed_request(x), [])
    conns, window = (8, 0.5) if quick else (16, 2.0)
    rounds = case.quick_reps if quick else case.reps
    rates: dict[str, list[float]] = {"service": [], "floor": []}
    paths = {"service": GRAD_PATH, "floor": FLOOR_PATH}
    asyncio.run(_load(port, GRAD_PATH, body, headers, conns, 0.3))  # warm both workers' plan caches
    for r in range(rounds):
        order = list(paths) if r % 2 == 0 else list(paths)[::-1]
        for k in order:
            rates[k].append(asyncio.run(_load(port, paths[k], body, headers, conns, window)))
    return Result(case, {}, extra={"rates": rates, "conns": conns})


# ---------------------------------------------------------------- 16 MiB in, 16 MiB gradient out
BIG_ELEMENTS = 4 * MiB  # 16 MiB of float32


def _big_request(x: np.ndarray, enc: str) -> tuple[bytes, dict[str, str]]:
    t, blob = tensor("x", x, enc, requires_grad=True)
    req: dict[str, Any] = {"graph": {"inputs": [t], "nodes": [
        {"op": "mul", "inputs": ["x", "x"], "outputs": ["y"]},
        {"op": "sum", "inputs": ["y"], "outputs": ["l"]}]}, "outputs": "l", "inputs": "x"}
    if enc == "b64":
        req["response_encoding"] = "b64"
    return body_of(req, [blob] if blob is not None else [], binary_response=enc == "binary")


def run_big(enc: str) -> Callable[[Case, bool], Result]:
    def run(case: Case, quick: bool) -> Result:
        conn = Conn(server().port)
        x = np.random.default_rng(0).standard_normal(BIG_ELEMENTS).astype(np.float32)
        body, headers = _big_request(x, enc)
        status, rh, content = conn.post(GRAD_PATH, body, headers)
        ok(status, content)
        (g,) = read_binary(content, rh) if enc == "binary" else \
            [read_json_tensor(t) for t in orjson.loads(content)["grads"]]
        np.testing.assert_array_equal(g, 2 * x)  # d/dx sum(x*x), exact in float32
        echo = x.tobytes()
        runs = {"service": conn.caller(GRAD_PATH, body, headers),
                "floor": conn.caller(ECHO_PATH, echo, {"Content-Type": "application/octet-stream"})}
        return _with_case(case, measure(runs, case.quick_reps if quick else case.reps,
                                        warmup=1 if quick else 2))
    return run


# ---------------------------------------------------------------- a 1000-node graph, sent again
CHAIN_LINKS = 333  # (mul, add, tanh) x 333 + sum = 1000 nodes


def graph1000(x: np.ndarray, variant: int) -> dict:
    """h = tanh(h * w + b), 333 times, then sum: 1000 nodes. ``variant`` renames the loss, which
    makes a graph the server has not seen (same work, another hash)."""
    nodes, h = [], "x"
    for i in range(CHAIN_LINKS):
        nodes += [{"op": "mul", "inputs": [h, "w"], "outputs": [f"m{i}"]},
                  {"op": "add", "inputs": [f"m{i}", "b"], "outputs": [f"a{i}"]},
                  {"op": "tanh", "inputs": [f"a{i}"], "outputs": [f"h{i}"]}]
        h = f"h{i}"
    loss = f"loss{variant}"
    nodes.append({"op": "sum", "inputs": [h], "outputs": [loss]})
    inputs = [tensor("x", x, "json")[0], tensor("w", np.array(0.9, np.float32), "json", True)[0],
              tensor("b", np.array(0.1, np.float32), "json", True)[0]]
    return {"graph": {"inputs": inputs, "nodes": nodes}, "outputs": [loss], "inputs": ["w", "b"]}


def check_graph1000(content: bytes, x: np.ndarray) -> None:
    import torch
    w = torch.tensor(0.9, requires_grad=True)
    b = torch.tensor(0.1, requires_grad=True)
    h = torch.from_numpy(x)
    for _ in range(CHAIN_LINKS):
        h = torch.tanh(h * w + b)
    gw, gb = torch.autograd.grad(h.sum(), [w, b])
    grads = orjson.loads(content)["grads"]
    np.testing.assert_allclose(read_json_tensor(grads[0]), gw.numpy(), rtol=1e-4)
    np.testing.assert_allclose(read_json_tensor(grads[1]), gb.numpy(), rtol=1e-4)


def run_graph1000(case: Case, quick: bool) -> Result:
    conn = Conn(server().port)
    rng = np.random.default_rng(0)
    new_x = lambda: rng.random(256).astype(np.float32)  # noqa: E731
    reps = case.quick_reps if quick else case.reps
    warmup = 1 if quick else 2
    # "first": a graph this server has never seen, every time (variants 1, 2, ...)
    firsts = iter([orjson.dumps(graph1000(new_x(), v)) for v in range(1, reps + warmup + 2)])
    x0 = new_x()
    status, rh, content = conn.post(GRAD_PATH, orjson.dumps(graph1000(x0, 0)), JSON)
    ok(status, content)
    check_graph1000(content, x0)
    h = rh["gradserve-graph-hash"]
    # "again": the same graph with new inputs; "by hash": the same, naming the graph by its hash
    agains, by_hash = [], []
    for _ in range(3):
        x = new_x()
        req = graph1000(x, 0)
        agains.append((orjson.dumps(req), x))
        req["graph"] = {"inputs": req["graph"]["inputs"], "hash": h}
        by_hash.append((orjson.dumps(req), x))
    for b, x in agains[:1] + by_hash[:1]:
        status, _, content = conn.post(GRAD_PATH, b, JSON)
        ok(status, content)
        check_graph1000(content, x)

    def cycle(bodies: list) -> Callable[[], None]:
        it = iter(bodies * (reps + warmup + 2))
        return lambda: conn.caller(GRAD_PATH, next(it)[0], JSON)()

    runs = {"again": cycle(agains), "hash": cycle(by_hash),
            "first": lambda: conn.caller(GRAD_PATH, next(firsts), JSON)()}
    return _with_case(case, measure(runs, reps, warmup=warmup))


def _with_case(case: Case, result: Result) -> Result:
    result.case = case
    return result


# ---------------------------------------------------------------- latency against payload size
SWEEP_BYTES = (1 << 10, 1 << 14, 1 << 18, 1 << 22, 1 << 24)  # 1 KiB .. 16 MiB of float32
QUICK_SWEEP_BYTES = (1 << 10, 1 << 18)
JSON_MAX_BYTES = 1 << 22  # a JSON number list of 16 MiB takes seconds a request


def run_transports(case: Case, quick: bool) -> Result:
    """The gradient of sum(x*x) for x of each size, per transport, and a byte echo of x."""
    conn = Conn(server().port)
    reps = case.quick_reps if quick else case.reps
    sweep: dict[str, dict[int, float]] = {"json": {}, "b64": {}, "binary": {}, "echo": {}}
    for nbytes in QUICK_SWEEP_BYTES if quick else SWEEP_BYTES:
        x = np.random.default_rng(nbytes).standard_normal(nbytes // 4).astype(np.float32)
        runs = {"echo": conn.caller(ECHO_PATH, x.tobytes(), {"Content-Type": "application/octet-stream"})}
        for enc in ("json", "b64", "binary"):
            if enc != "json" or nbytes <= JSON_MAX_BYTES:
                runs[enc] = conn.caller(GRAD_PATH, *_big_request(x, enc))
        timed = measure(runs, reps if nbytes < (1 << 22) else max(2, reps // 3), warmup=1)
        for enc, t in timed.times.items():
            sweep[enc][nbytes] = statistics.median(t)
    return Result(case, {}, extra={"sweep": sweep})


def transports_rows(r: Result) -> list[tuple]:
    sweep = r.extra["sweep"]
    n = max(sweep["json"])
    s, f = sweep["json"][n], sweep["echo"][n]
    return [(r.case.name, _ms(s), _ms(f), "n/a", f"{s / f:.2f}", "n/a", "",
             f"JSON data, {n >> 10} KiB each way, vs byte echo (all: docs/bench_service_transports.png)")]


def plot_transports(r: Result, outdir: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    labels = {"json": "JSON data", "b64": "base64 in JSON", "binary": "binary body",
              "echo": "byte echo (floor)"}
    for enc, points in r.extra["sweep"].items():
        sizes = sorted(points)
        ax.plot(sizes, [points[n] * 1e3 for n in sizes], marker="o", label=labels[enc],
                linestyle="--" if enc == "echo" else "-")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("float32 payload each way (bytes)")
    ax.set_ylabel("median latency (ms)")
    ax.set_title("POST /v1/grad, gradient of sum(x*x), per transport")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = outdir / "bench_service_transports.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- table rows
def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 1e3:.3f}"


def _target(source: str, ratio: float | None, op: str, bound: float, what: str) -> str:
    good = ratio is not None and (ratio <= bound if op == "<=" else ratio >= bound)
    return f"{source} {'ok' if good else 'MISS'} ({op}{bound:g}x {what})"


def _targets(ratio: float | None, op: str, bounds: tuple[tuple[str, float], ...], what: str) -> str:
    """Each issue's bound on one ratio, e.g. ``#5 ok (<=1.5x floor, p50); #11 MISS (...)``."""
    return "; ".join(_target(source, ratio, op, bound, what) for source, bound in bounds)


def _latency_row(name: str, result: Result, served: str, floor: str, bounds: tuple[tuple[str, float], ...],
                 what: str) -> tuple:
    s, f = result.median(served), result.median(floor)
    ratio = s / f if s is not None and f else None
    reps = str(min(len(result.times[served]), len(result.times[floor])))
    cpu = result.extra.get("cpu", {})
    cs, cf = cpu.get(served), cpu.get(floor)
    cpu_cells = (f"{cs * 1e6:.0f}/{cf * 1e6:.0f}", f"{cs / cf:.2f}") if cs and cf else ("n/a", "n/a")
    return (name, _ms(s), _ms(f), cpu_cells[0], "n/a" if ratio is None else f"{ratio:.2f}", cpu_cells[1],
            reps, _targets(ratio, "<=", bounds, what))


def seed_rows(r: Result) -> list[tuple]:
    return [_latency_row(r.case.name, r, "service", "floor", (("#5", 1.5), ("#11", 1.3)), "floor, p50")]


def throughput_rows(r: Result) -> list[tuple]:
    rates = r.extra["rates"]
    s, f = statistics.median(rates["service"]), statistics.median(rates["floor"])
    return [(r.case.name, f"{s:.0f}/s", f"{f:.0f}/s", "n/a", f"{s / f:.2f}", "n/a",
             str(len(rates["service"])), _targets(s / f, ">=", (("#5", 0.6), ("#11", 0.6)),
                                                  f"floor, workers={WORKERS}"))]


def echo_rows(*bounds: tuple[str, float]) -> Callable[[Result], list[tuple]]:
    return lambda r: [_latency_row(r.case.name, r, "service", "floor", bounds, "byte echo")]


def graph_rows(r: Result) -> list[tuple]:
    return [_latency_row(r.case.name, r, "again", "first", (("#5", 0.5),), "first request"),
            _latency_row(r.case.name + "_by_hash", r, "hash", "first", (("#5", 0.5),), "first request")]


def _service_case(name: str, title: str, runner: Callable[[Case, bool], Result], rows: Callable,
                  reps: int, quick_reps: int, plot: Callable | None = None) -> Case:
    return register(Case(name, title, build=lambda quick: {}, reps=reps, quick_reps=quick_reps,
                         runner=runner, header=SERVICE_HEADER, rows=rows, plot=plot))


_service_case("svc_seed", "seed example (issue 3's JSON), keep-alive, vs an empty POST route",
              run_seed, seed_rows, reps=600, quick_reps=40)
_service_case("svc_seed_rps", f"seed example throughput, {WORKERS} workers, vs the empty route",
              run_seed_throughput, throughput_rows, reps=4, quick_reps=1)
_service_case("svc_16mib_binary", "16 MiB float32 in, its gradient out (sum(x*x)), binary body, "
              "vs a 16 MiB byte echo", run_big("binary"), echo_rows(("#5", 1.3), ("#11", 1.2)),
              reps=60, quick_reps=2)  # ~50 ms a round: many rounds are cheap, and a loaded machine needs them
_service_case("svc_16mib_b64", "the same with base64 in JSON both ways, vs the same echo",
              run_big("b64"), echo_rows(("#5", 3.0), ("#11", 2.0)), reps=15, quick_reps=2)
_service_case("svc_graph1000", "1000-node graph sent again with new inputs (full graph; and by "
              "hash), vs its first request", run_graph1000, graph_rows, reps=20, quick_reps=2)
_service_case("svc_transports", "latency against payload size per transport (JSON data, base64, "
              "binary) and a byte echo", run_transports, transports_rows, reps=9, quick_reps=2,
              plot=plot_transports)
