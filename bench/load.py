"""Load test: a real server, N concurrent clients, a mix of valid, invalid and too-slow requests.

    python -m bench.load --workers 2 --clients 16 --requests 25000
    python -m bench.load --quick          # a few hundred requests: the smoke test CI runs
    python -m bench.load --weight valid-big=1   # with ~10 MB bodies: RSS under the malloc policy

It starts ``gradserve serve --workers N`` on a free loopback port (nothing leaves 127.0.0.1),
drives it with ``--clients`` keep-alive connections (plain asyncio sockets, so the load
generator stays light) until ``--requests`` are answered or ``--duration`` seconds pass, and
reports: requests served, statuses by kind of request, p50/p99 latency, and the resident memory
(RSS) of the server processes after the warm-up and at the end.

Every kind of request has one expected status: valid requests 200 (and the exact bytes of the
expected answer), each invalid kind its 4xx, the deadline-exceeding kind 504. Anything else is
unexpected; a request without an answer is lost. The exit status is 1 when there is an
unexpected status, a wrong answer, a lost request, or RSS growth of 10 % or more after the
warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from bench.work import DEBUG_ENV, sleep_chain
from bench.work import wire_tensor as _tensor

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- the request mix
X = np.random.default_rng(1234).random(100).astype(np.float32)


_SEED_INPUTS = [_tensor("w", np.array([0.5], np.float32), True),
                _tensor("b", np.array([0.9], np.float32), True), _tensor("x", X)]
_SEED_SOURCE = "y = 2 * x + 1\nloss = mean((y - (w * x + b)) ** 2)"


def _seed(**top: object) -> dict:
    return {"graph": {"inputs": _SEED_INPUTS, "source": _SEED_SOURCE}, "outputs": ["loss"],
            "inputs": ["w", "b"], **top}


def _json(obj: dict) -> tuple[bytes, str]:
    return orjson.dumps(obj), "application/json"


def _hvp() -> dict:
    v = np.linspace(-1, 1, 8)
    src = ("y = sum(sin(x) * x ** 2)\ng, = grad(y, x, create_graph=True)\n"
           "h, = grad(g, x, grad_outputs=[v])\n")
    return {"graph": {"inputs": [_tensor("x", np.linspace(0.1, 2, 8), True), _tensor("v", v)], "source": src},
            "return": ["h"]}


@dataclass(frozen=True)
class Kind:
    name: str
    body: bytes
    content_type: str
    expect: int
    weight: float


def _big() -> dict:
    # a ~10 MB body (an 8 MB matrix in b64) and little work: the request body, its decoded input
    # and the body buffer are megabyte blocks freed at the end of every such request
    w = np.random.default_rng(0).standard_normal((1000, 1000)) / np.sqrt(1000)
    inputs = [_tensor("x", np.ones((1, 1000)), True, b64=True), _tensor("w", w, b64=True)]
    return {"graph": {"inputs": inputs, "source": "loss = sum(tanh(x @ w))"}, "outputs": ["loss"],
            "inputs": ["x"]}


def request_mix(timeout: float = 1.0) -> list[Kind]:
    """The kinds of request; the deadline kind sleeps 10x ``timeout`` (``debug.sleep`` steps).
    ``valid-big`` (~10 MB bodies) is off unless given a weight (``--weight valid-big=1``)."""
    seed, seed_ct = _json(_seed(**{"return": ["loss"]}))
    bad_shape = _seed()
    bad_shape["graph"] = {"inputs": _SEED_INPUTS, "source": "loss = sum(x @ w)"}
    nan = _seed()
    nan["graph"] = {"inputs": [*_SEED_INPUTS[:2], {**_SEED_INPUTS[2], "data": ["NaN"] * 100}],
                    "source": _SEED_SOURCE}
    huge = {"graph": {"inputs": [], "source": "y = ones(100000, 100000)"}, "return": ["y"]}
    unknown = _seed()
    unknown["graph"] = {"inputs": _SEED_INPUTS, "source": "loss = mean(mull(x, w))"}
    return [
        Kind("valid-seed", seed, seed_ct, 200, 50),
        Kind("valid-seed-b64-answer", *_json(_seed(response_encoding="b64")), 200, 15),
        Kind("valid-hvp", *_json(_hvp()), 200, 15),
        Kind("malformed-json", seed[: len(seed) // 2], seed_ct, 400, 3),
        Kind("wrong-content-type", seed, "text/plain", 415, 2),
        Kind("unknown-op", *_json(unknown), 422, 3),
        Kind("shape-mismatch", *_json(bad_shape), 422, 3),
        Kind("non-finite-input", *_json(nan), 422, 3),
        Kind("too-large", *_json(huge), 413, 3),
        Kind("deadline", *_json(sleep_chain(10 * timeout)), 504, 0.12),
        Kind("valid-big", *_json(_big()), 200, 0),
    ]


# ---------------------------------------------------------------- a minimal HTTP/1.1 client
class Connection:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def post(self, body: bytes, content_type: str) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(b"POST /v1/grad HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                          + content_type.encode() + b"\r\nContent-Length: " + str(len(body)).encode()
                          + b"\r\n\r\n" + body)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, close = 0, False
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                length = int(v)
            elif k == b"connection" and v.strip().lower() == b"close":
                close = True
        data = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, data


# ---------------------------------------------------------------- the server and its memory
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d))
    return out


def server_pids(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(_children(p))
    return pids


def rss(pids: list[int]) -> dict[int, int]:
    out = {}
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        out[p] = int(line.split()[1]) * 1024
        except OSError:
            pass
    return out


def start_server(workers: int, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRADSERVE_")}
    cmd = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**base, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if b" 200 " in s.recv(100):
                    # every worker must be up: uvicorn starts them one after another
                    if len(server_pids(proc.pid)) >= workers + (workers > 1):
                        return proc, port
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in 60 s")


# ---------------------------------------------------------------- the run
@dataclass
class Stats:
    statuses: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    unexpected: list[tuple[str, int, str]] = field(default_factory=list)
    wrong: int = 0
    lost: int = 0
    done: int = 0


async def run_clients(port: int, kinds: list[Kind], expected: dict[str, bytes], clients: int, total: int,
                      duration: float, stats: Stats, seed: int) -> None:
    rng = random.Random(seed)
    weights = [k.weight for k in kinds]
    end = time.monotonic() + duration
    issued = 0

    async def client() -> None:
        nonlocal issued
        conn = Connection(port)
        while issued < total and time.monotonic() < end:
            # every kind at least once, then the weighted mix
            kind = kinds[issued] if issued < len(kinds) else rng.choices(kinds, weights)[0]
            issued += 1
            t0 = time.perf_counter()
            try:
                status, data = await asyncio.wait_for(conn.post(kind.body, kind.content_type), 60)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                stats.lost += 1
                conn.close()
                continue
            stats.latencies[kind.name].append(time.perf_counter() - t0)
            stats.statuses[kind.name][status] += 1
            stats.done += 1
            if status != kind.expect:
                stats.unexpected.append((kind.name, status, data[:300].decode(errors="replace")))
            elif status == 200 and kind.name in expected and data != expected[kind.name]:
                stats.wrong += 1
        conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))


def expected_answers(kinds: list[Kind]) -> dict[str, bytes]:
    """The exact bytes each valid kind must get back, computed in this process by service.core."""
    from service import core
    from service.settings import Settings
    out = {}
    for k in kinds:
        if k.expect == 200:
            content, _, _ = core.process_body(k.body, k.content_type, None, False, Settings())
            out[k.name] = content
    return out


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) * 1e3 if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=25_000, help="stop after this many requests")
    p.add_argument("--duration", type=float, default=1200.0, help="... or after this many seconds")
    p.add_argument("--warmup", type=float, default=0.1, help="fraction of the requests before the first RSS")
    p.add_argument("--timeout", type=float, default=1.0, help="GRADSERVE_REQUEST_TIMEOUT_S of the server")
    p.add_argument("--concurrency", type=int, default=8, help="GRADSERVE_MAX_CONCURRENCY of the server")
    p.add_argument("--quick", action="store_true", help="400 requests, 4 clients: a smoke run")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--phases", type=int, default=5, help="RSS samples after the warm-up")
    p.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra environment of the server processes")
    p.add_argument("--weight", action="append", default=[], metavar="KIND=W",
                   help="change a kind's weight in the mix (e.g. deadline=0)")
    args = p.parse_args(argv)
    if args.quick:
        args.requests, args.clients = 400, 4

    kinds = request_mix(args.timeout)
    for item in args.weight:
        name, _, w = item.partition("=")
        kinds = [Kind(k.name, k.body, k.content_type, k.expect, float(w)) if k.name == name else k
                 for k in kinds]
    kinds = [k for k in kinds if k.weight > 0]
    expected = expected_answers(kinds)
    # Room for every client in the queue (no 503 expected), and engine threads enough that the few
    # requests running into the deadline do not hold every slot of a worker while others wait.
    env = {"GRADSERVE_REQUEST_TIMEOUT_S": str(args.timeout), "GRADSERVE_MAX_QUEUE": str(4 * args.clients),
           "GRADSERVE_MAX_CONCURRENCY": str(args.concurrency), **DEBUG_ENV,
           **dict(item.partition("=")[::2] for item in args.server_env)}
    proc, port = start_server(args.workers, env)
    stats = Stats()
    t0 = time.monotonic()
    try:
        pids = server_pids(proc.pid)
        rss_start = rss(pids)
        warm = max(1, int(args.requests * args.warmup))
        asyncio.run(run_clients(port, kinds, expected, args.clients, warm, args.duration, stats, args.seed))
        pids = server_pids(proc.pid)
        rss_warm = rss(pids)
        samples = [(warm, sum(rss_warm.values()))]
        rest = args.requests - warm
        for k in range(args.phases):  # RSS along the way: a leak grows, a warm-up levels off
            n = rest // args.phases + (k < rest % args.phases)
            left = args.duration - (time.monotonic() - t0)
            asyncio.run(run_clients(port, kinds, expected, args.clients, n, left, stats, args.seed + 1 + k))
            samples.append((stats.done, sum(rss(server_pids(proc.pid)).values())))
        rss_end = rss(server_pids(proc.pid))
        elapsed = time.monotonic() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()

    every = [x for xs in stats.latencies.values() for x in xs]
    warm_total, end_total = sum(rss_warm.values()), sum(rss_end.values())
    growth = (end_total - warm_total) / warm_total if warm_total else float("nan")
    print(f"# {args.workers} workers, {args.clients} clients, {elapsed:.1f} s, "
          f"GRADSERVE_REQUEST_TIMEOUT_S={args.timeout:g}, GRADSERVE_MAX_CONCURRENCY={args.concurrency}, "
          f"loopback port {port}")
    print(f"requests served: {stats.done} ({stats.done / elapsed:.0f}/s); lost: {stats.lost}; "
          f"unexpected status: {len(stats.unexpected)}; wrong answers: {stats.wrong}")
    print(f"latency ms: p50 {percentile(every, 50):.1f}  p99 {percentile(every, 99):.1f}")
    print(f"{'kind':24} {'expect':>6} {'count':>7}  {'statuses':24} {'p50 ms':>8} {'p99 ms':>8}")
    for k in kinds:
        st = stats.statuses.get(k.name, Counter())
        seen = ", ".join(f"{s}: {n}" for s, n in sorted(st.items()))
        lat = stats.latencies.get(k.name, [])
        print(f"{k.name:24} {k.expect:>6} {sum(st.values()):>7}  {seen:24} {percentile(lat, 50):8.1f} "
              f"{percentile(lat, 99):8.1f}")
    mb = 2**20
    print(f"server RSS MiB (processes {sorted(rss_end)}): start {sum(rss_start.values()) / mb:.1f}, "
          f"after warm-up ({warm} requests) {warm_total / mb:.1f}, end {end_total / mb:.1f}; "
          f"growth after warm-up {growth * 100:+.1f} %")
    print("RSS MiB along the run (after N requests): "
          + ", ".join(f"{n}: {b / mb:.1f}" for n, b in samples))
    for name, status, text in stats.unexpected[:10]:
        print(f"unexpected: {name} -> {status}: {text}")
    # a quick run is too short to separate warm-up from growth: its RSS is reported, not judged
    ok = not stats.unexpected and not stats.lost and not stats.wrong and stats.done > 0 \
        and (args.quick or growth < 0.10)
    print("load: PASS" if ok else "load: FAIL")
    if args.json:
        args.json.write_text(json.dumps({
            "workers": args.workers, "clients": args.clients, "elapsed_s": elapsed, "served": stats.done,
            "lost": stats.lost, "unexpected": len(stats.unexpected), "wrong": stats.wrong,
            "statuses": {k: dict(v) for k, v in stats.statuses.items()},
            "p50_ms": percentile(every, 50), "p99_ms": percentile(every, 99),
            "rss_start": sum(rss_start.values()), "rss_warm": warm_total, "rss_end": end_total,
            "rss_growth": growth, "rss_samples": samples, "ok": ok}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
