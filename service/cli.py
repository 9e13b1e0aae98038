"""``gradserve serve --host --port --workers`` (also ``python -m service``)."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ipaddress
import logging
import logging.config
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator

from .logs import log_config
from .settings import Settings

__all__ = ["main"]

log = logging.getLogger("gradserve")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client (service.metrics)


@contextlib.contextmanager
def _metrics_dir(workers: int) -> Iterator[str | None]:
    """With several workers, a fresh directory shared by their metric files, removed afterwards,
    so that GET /metrics on any worker adds up all of them. One given in the environment is used
    as it is (Prometheus' advice: empty it before each start)."""
    if workers <= 1 or os.environ.get(MULTIPROC_ENV):
        yield os.environ.get(MULTIPROC_ENV)
        return
    path = tempfile.mkdtemp(prefix="gradserve-metrics-")
    os.environ[MULTIPROC_ENV] = path  # inherited by the worker processes uvicorn spawns
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def _bounded_malloc() -> None:
    """Keep glibc from holding on to freed big buffers (request bodies, tensors).

    Its mmap threshold rises with every big block freed, after which blocks of megabytes come from
    per-thread arenas and stay there: the load test (bench/load.py) saw the RSS of a server
    taking 10 MB requests grow by a quarter in 25,000 requests, and stay flat with the threshold
    fixed. So buffers of 1 MiB and more are mmapped (returned on free) and arenas are bounded, in
    this process (mallopt) and in the workers uvicorn spawns (environment). Values set in the
    environment win; on another libc this does nothing.
    """
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(1 << 20))
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, int(os.environ["MALLOC_MMAP_THRESHOLD_"]))  # M_MMAP_THRESHOLD
        libc.mallopt(-8, int(os.environ["MALLOC_ARENA_MAX"]))  # M_ARENA_MAX
    except (OSError, AttributeError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run uvicorn with the app factory."""
    s = Settings()
    p = argparse.ArgumentParser(prog="gradserve", description="Gradserve: autograd_grad over HTTP.")
    sub = p.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", default=s.host, help=f"bind address (default {s.host}; GRADSERVE_HOST)")
    serve.add_argument("--port", type=int, default=s.port, help=f"port (default {s.port}; GRADSERVE_PORT)")
    serve.add_argument("--workers", type=int, default=s.workers,
                       help=f"worker processes (default {s.workers}; GRADSERVE_WORKERS)")
    serve.add_argument("--log-level", default=s.log_level, help="uvicorn log level")
    serve.add_argument("--log-format", default=s.log_format, choices=["json", "text"],
                       help=f"log lines: JSON objects or text (default {s.log_format}; GRADSERVE_LOG_FORMAT)")
    args = p.parse_args(argv)
    if args.command is None:
        args = p.parse_args(["serve", *(argv if argv is not None else sys.argv[1:])])

    import uvicorn

    logs = log_config(args.log_level, args.log_format)
    logging.config.dictConfig(logs)
    if not s.api_keys and not _is_loopback(args.host):
        log.warning("listening on %s without API keys: anyone who can reach it can use it "
                    "(set GRADSERVE_API_KEYS)", args.host)
    _bounded_malloc()
    with _metrics_dir(args.workers):
        # uvicorn's access log is off: service.observe logs each request with its request id.
        # SIGTERM: stop accepting, let requests in flight finish (their own deadline bounds them)
        uvicorn.run("service.app:create_app", factory=True, host=args.host, port=args.port,
                    workers=args.workers, log_level=args.log_level, log_config=logs, access_log=False,
                    timeout_graceful_shutdown=s.request_timeout_s + 5,
                    # header size and header-read deadline (service.http), connection cap (503)
                    http="service.http:Protocol", limit_concurrency=s.max_connections,
                    h11_max_incomplete_event_size=s.max_header_bytes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
