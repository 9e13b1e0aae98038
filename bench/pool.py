"""What running a computation in another process costs per request: the worker pool
(``GRADSERVE_ISOLATION=process``) against a fork per request (``fork``) and the server's own thread.

Two measurements, each interleaved (the order rotates every round) so that the load of a shared
machine hits every mode alike; medians:

- in process: ``service.pool.POOL.run`` vs ``service.isolate.run_forked`` vs ``execute`` in the
  calling thread, on one checked plan, in a process that imported the service; with the CPU time
  per request of this process and its worker or children (the kernel counts it in ticks of
  10 ms, so it is a mean over the rounds), which a loaded machine changes far less than wall time;
- over HTTP: two real servers (``python -m service serve``, one per isolation mode) on loopback,
  one keep-alive connection each, the same JSON body.

The request is expensive but small: three elements through ``debug.spin(x, 0)``, an op from
outside the engine, which is never statically cheap and so always leaves the server process,
whatever the machine; its computation takes microseconds, so what is measured is the hand-off.

    python -m bench.pool                 # 300 rounds in process, 300 over HTTP
    python -m bench.pool --rounds 50     # quicker
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from ._harness import wait_ready

ROOT = Path(__file__).resolve().parent.parent
REQUEST = {"graph": {"inputs": [{"name": "x", "datatype": "FP64", "shape": [3], "data": [1.0, 2.0, 3.0],
                                 "requires_grad": True}],
                     "source": "y = debug.spin(x, 0)\nl = sum(y * y)"}, "outputs": "l", "inputs": "x"}


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a live process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _in_process(rounds: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    from service import debug_ops, isolate, pool
    from service.core import isolation_bytes, parse_request
    from service.executor import build_plan
    from service.plan_cache import graph_hash
    from service.run import checked_plan, execute
    from service.settings import Settings

    debug_ops.install()
    s = Settings(debug_ops=True, api_keys=[])
    plan = build_plan(parse_request(REQUEST), s)
    key = graph_hash(REQUEST["graph"])
    limit = isolation_bytes(s)
    pool.POOL.attach(1)
    modes: dict[str, Any] = {
        "thread": execute,
        "pool": lambda c: pool.POOL.run(c, key, limit, s.pool_max_rss_bytes),
        "fork": lambda c: isolate.run_forked(lambda: execute(c), c.deadline, limit),
    }
    times: dict[str, list[float]] = {m: [] for m in modes}
    # CPU time, which a loaded machine barely changes (wall time there is mostly waiting for a
    # CPU): this process's, plus its reaped children's (fork) or the worker's (pool)
    cpu = dict.fromkeys(modes, 0.0)
    names = list(modes)
    try:
        for i in range(rounds + 5):
            for m in names[i % 3:] + names[:i % 3]:
                c = checked_plan(plan, settings=s, deadline=time.monotonic() + 30)
                (worker,) = pool.POOL.pids() if m == "pool" else (0,)
                c0 = os.times()
                w0 = _cpu_of(worker) if worker else 0.0
                t = time.perf_counter()
                modes[m](c)
                dt = time.perf_counter() - t
                c1 = os.times()
                if i >= 5:  # warm-up rounds are not counted
                    times[m].append(dt)
                    cpu[m] += sum(c1[:4]) - sum(c0[:4]) + (_cpu_of(worker) - w0 if worker else 0.0)
    finally:
        pool.POOL.detach()
    return times, {m: v / rounds for m, v in cpu.items()}


def _server(isolation: str) -> tuple[subprocess.Popen, int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADSERVE_")}
    env.update(GRADSERVE_DEBUG_OPS="true", GRADSERVE_ISOLATION=isolation, GRADSERVE_POOL_SIZE="1",
               GRADSERVE_MAX_CONCURRENCY="1")
    proc = subprocess.Popen([sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port",
                             str(port), "--log-level", "warning"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc)
    except RuntimeError:
        proc.kill()
        raise
    return proc, port


def _over_http(rounds: int) -> dict[str, list[float]]:
    body = orjson.dumps(REQUEST)
    servers = {m: _server(m) for m in ("process", "fork")}
    conns = {m: http.client.HTTPConnection("127.0.0.1", port, timeout=30) for m, (_, port) in servers.items()}
    times: dict[str, list[float]] = {m: [] for m in servers}
    try:
        for i in range(rounds + 5):
            for m in (list(servers) if i % 2 else list(servers)[::-1]):
                t = time.perf_counter()
                conns[m].request("POST", "/v1/grad", body, {"Content-Type": "application/json"})
                r = conns[m].getresponse()
                data = r.read()
                dt = time.perf_counter() - t
                ok = r.status == 200 and orjson.loads(data)["grads"][0]["data"] == [2.0, 4.0, 6.0]
                assert ok, data[:300]
                if i >= 5:
                    times[m].append(dt)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    return times


def _table(title: str, times: dict[str, list[float]], base: str, cpu: dict[str, float] | None = None) -> str:
    ref = statistics.median(times[base])
    head = f"  {'mode':<8} {'median ms':>10} {'p90 ms':>8} {'vs ' + base:>9}"
    rows = [f"{title}", head + (f" {'CPU ms/req':>11}" if cpu else "")]
    for m, ts in times.items():
        med = statistics.median(ts)
        p90 = sorted(ts)[int(0.9 * (len(ts) - 1))]
        row = f"  {m:<8} {med * 1e3:>10.3f} {p90 * 1e3:>8.3f} {med / ref:>9.2f}"
        rows.append(row + (f" {cpu[m] * 1e3:>11.3f}" if cpu else ""))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.pool", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=300)
    a = p.parse_args(argv)
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    times, cpu = _in_process(a.rounds)
    print(_table(f"in process, {a.rounds} interleaved rounds", times, "fork", cpu))
    print(_table(f"over HTTP (POST /v1/grad, keep-alive), {a.rounds} interleaved rounds",
                 _over_http(a.rounds), "fork"))
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
