"""Where a 16 MiB binary request's time goes, stage by stage, beside a 16 MiB byte echo.

``python -m bench.stages [--rounds 60]`` starts one bench server (one uvicorn worker, the bench app,
``service.http:Protocol``) with timestamps wrapped around its stages: the request's headers
parsed, its body's last byte parsed, the body handed to the handler, the hand-off to an engine
thread, the non-finite check of the input, the compiled program's run, the hand-back to the event
loop, and the response written to the transport. A client sends ``svc_16mib_binary``'s request
and the byte echo of its input, interleaved, and prints per stage the medians since the headers:
wall milliseconds, the server process's CPU milliseconds (all threads) and its minor page faults.
CPU time is what other processes on a loaded machine disturb least.

The wrapping costs microseconds a stage: compare rows of one run, not with ``python -m bench``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._harness import wait_ready

ROOT = Path(__file__).resolve().parent.parent

# (module, attribute, label, async): the functions whose entry and exit are marked
_WRAPPED = [
    ("service.routers.grad", "_read_body", "handler has the body", True),
    ("service.gate", "Gate.run", "engine thread", True),
    ("service.fastpath", "FastPlan.checked", "non-finite check", False),
    ("service.core", "_execute", "compiled run", False),
    ("service.routers.grad", "PartsResponse.__call__", "response written", True),
    ("starlette.responses", "Response.__call__", "response written", True),
]


def _serve(port: int, out: str) -> None:
    """The instrumented server (runs in a child process)."""
    import importlib

    import uvicorn

    from service import http as shttp
    from service.cli import malloc_policy

    malloc_policy()  # gradserve serve's, before any thread starts

    marks: list[list[tuple[str, float, int, float]]] = []
    current: list[list] = [[]]

    def mark(name: str) -> None:
        r = resource.getrusage(resource.RUSAGE_SELF)
        current[0].append((name, time.perf_counter(), r.ru_minflt, time.process_time()))

    def patch(cls: Any, attr: str, before: Any = None, after: Any = None) -> None:
        f = getattr(cls, attr)

        def g(self: Any, *a: Any, **k: Any) -> Any:
            if before:
                before()
            r = f(self, *a, **k)
            if after:
                after()
            return r
        setattr(cls, attr, g)

    def begin() -> None:
        current[0] = []
        marks.append(current[0])
        mark("headers")

    patch(shttp.Protocol, "on_headers_complete", before=begin)
    patch(shttp.Protocol, "on_message_complete", before=lambda: mark("body's last byte parsed"))
    for mod, path, label, is_async in _WRAPPED:
        owner: Any = importlib.import_module(mod)
        *outer, attr = path.split(".")
        for part in outer:
            owner = getattr(owner, part)
        f = getattr(owner, attr)
        if is_async:
            async def g(*a: Any, _f: Any = f, _l: str = label, **k: Any) -> Any:
                mark(_l + " <")
                r = await _f(*a, **k)
                mark(_l + " >")
                return r
        else:
            def g(*a: Any, _f: Any = f, _l: str = label, **k: Any) -> Any:  # type: ignore[misc]
                mark(_l + " <")
                r = _f(*a, **k)
                mark(_l + " >")
                return r
        setattr(owner, attr, g)

    def dump(*_: Any) -> None:
        with open(out, "w") as fh:
            json.dump(marks, fh)

    signal.signal(signal.SIGUSR1, dump)
    from bench.service_app import create_bench_app
    uvicorn.run(create_bench_app(), host="127.0.0.1", port=port, http=shttp.Protocol,
                log_level="warning", access_log=False)


def _report(kind: str, reqs: list[list]) -> None:
    print(f"{kind} ({len(reqs)} requests): medians since the headers were parsed")
    names: list[str] = []
    for r in reqs:
        names += [m[0] for m in r if m[0] not in names]
    prev = (0.0, 0.0, 0.0)
    for n in names:
        rows = [(m[1] - r[0][1], m[3] - r[0][3], m[2] - r[0][2]) for r in reqs for m in r if m[0] == n]
        wall, cpu, faults = (statistics.median(x) for x in zip(*rows))
        print(f"  {n:26s} wall {wall * 1e3:7.2f} ms (+{(wall - prev[0]) * 1e3:5.2f})   "
              f"CPU {cpu * 1e3:7.2f} ms (+{(cpu - prev[1]) * 1e3:5.2f})   faults {faults:6.0f}")
        prev = (wall, cpu, faults)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=60, help="interleaved rounds (default 60)")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        _serve(args.serve, args.out)
        return 0

    import numpy as np

    from bench import service_cases as sc

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADSERVE_")}
    env["GRADSERVE_LOG_LEVEL"] = "warning"
    proc = subprocess.Popen([sys.executable, "-m", "bench.stages", "--serve", str(port), "--out", out],
                            cwd=ROOT, env=env)
    try:
        wait_ready(port, proc)
        conn = sc.Conn(port)
        x = np.random.default_rng(0).standard_normal(sc.BIG_ELEMENTS).astype(np.float32)
        body, headers = sc._big_request(x, "binary")
        for _ in range(3):  # the full path, then the compiled program
            status, rh, content = conn.post(sc.GRAD_PATH, body, headers)
            sc.ok(status, content)
        (g,) = sc.read_binary(content, rh)
        np.testing.assert_array_equal(g, 2 * x)
        runs = {"binary": conn.caller(sc.GRAD_PATH, body, headers),
                "echo": conn.caller(sc.ECHO_PATH, x.tobytes(), {"Content-Type": "application/octet-stream"})}
        proc.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        skip = len(json.loads(Path(out).read_text()))
        order, wall = [], {k: [] for k in runs}
        gc.disable()
        try:
            for r in range(args.rounds):
                for k in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
                    t0 = time.perf_counter()
                    runs[k]()
                    wall[k].append(time.perf_counter() - t0)
                    order.append(k)
        finally:
            gc.enable()
        proc.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
        marks = json.loads(Path(out).read_text())[skip:]
    finally:
        proc.terminate()
        proc.wait(15)
        Path(out).unlink(missing_ok=True)
    b, e = statistics.median(wall["binary"]), statistics.median(wall["echo"])
    print(f"client wall medians, {args.rounds} interleaved rounds: binary {b * 1e3:.2f} ms, "
          f"echo {e * 1e3:.2f} ms, ratio {b / e:.3f}")
    for kind in runs:
        _report(kind, [m for m, o in zip(marks, order) if o == kind])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
