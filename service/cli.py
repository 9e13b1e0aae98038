"""The ``gradserve`` command (also ``python -m service``).

``gradserve serve`` runs the HTTP server; ``gradserve grad request.json`` runs one request of
``POST /v1/grad`` in this process and prints the response; ``gradserve ops`` lists the ops.

>>> main(["--version"])  # doctest: +SKIP
gradserve 0.1.0
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import logging.config
import os
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from typing import Any, NoReturn

from .logs import log_config
from .settings import Settings

__all__ = ["main", "malloc_policy", "settings_help"]

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


def malloc_policy() -> bool:
    """Gradserve's malloc policy (:mod:`engine._malloc`) in this process and in the workers it
    starts: ``gradserve serve`` runs it, and so does the bench's server, so bench figures are
    production's. Fixed mmap and trim thresholds keep RSS bounded under a long run of big requests
    (glibc's dynamic threshold let it grow by a quarter in 25,000 requests, bench/load.py) while
    freed body- and model-sized buffers are reused instead of page-faulted in afresh; arenas are
    bounded. ``GRADSERVE_ENGINE_MALLOC=0`` and glibc's ``MALLOC_*`` variables win; on another libc
    this does nothing. Returns whether the thresholds are the policy's.
    """
    from engine import _malloc

    return _malloc.tune(export=True)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gradserve")
    except PackageNotFoundError:  # run from a source tree that was never installed
        import engine

        return engine.__version__


LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")  # uvicorn's


def settings_help() -> str:
    """Every ``GRADSERVE_*`` setting with its default and description, from :class:`Settings`
    (so the help cannot drift from what the server reads)."""
    lines = ["settings (environment variables; flags above win over them):"]
    for name, f in Settings.model_fields.items():
        if f.default_factory is not None:
            default: Any = f.default_factory()  # type: ignore[call-arg]
            shown = "none" if default == [] else f"{default} (this machine's CPUs)" \
                if name == "max_concurrency" else f"{default} (the CPUs it may use)" \
                if name == "pool_size" else str(default)
        else:
            shown = str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
        lines.append(f"  GRADSERVE_{name.upper()}  (default: {shown})")
        lines += textwrap.wrap(f.description or "", width=88, initial_indent=" " * 6,
                               subsequent_indent=" " * 6)
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors that say where to read more."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _port(v: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {v!r}") from None
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"a port is between 0 and 65535, not {n}")
    return n


def _positive(v: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {v!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def _parser(s: Settings | None) -> _Parser:
    d = s or Settings.model_construct()  # defaults, for `--help` when the environment is bad
    p = _Parser(prog="gradserve", description="Gradserve: torch.autograd.grad over HTTP.",
                epilog="Run `gradserve serve` to start the server; `gradserve <command> --help` "
                       "for a command's options.")
    p.add_argument("--version", action="version", version=f"gradserve {_version()}")
    sub = p.add_subparsers(dest="command", metavar="{serve,grad,ops}", parser_class=_Parser)
    serve = sub.add_parser("serve", help="run the HTTP server",
                           description="Run the HTTP server (uvicorn) with the app of service.app.",
                           epilog=settings_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--host", default=d.host, help=f"bind address (default {d.host}; GRADSERVE_HOST)")
    serve.add_argument("--port", type=_port, default=d.port, help=f"port (default {d.port}; GRADSERVE_PORT)")
    serve.add_argument("--workers", type=_positive, default=d.workers,
                       help=f"worker processes (default {d.workers}; GRADSERVE_WORKERS)")
    serve.add_argument("--log-level", type=str.lower, default=d.log_level.lower(), choices=LOG_LEVELS,
                       help=f"log level (default {d.log_level}; GRADSERVE_LOG_LEVEL)")
    serve.add_argument("--log-format", default=d.log_format, choices=["json", "text"],
                       help=f"log lines: JSON objects or text (default {d.log_format}; GRADSERVE_LOG_FORMAT)")
    grad = sub.add_parser("grad", help="run one request (the body of POST /v1/grad) here, print the response",
                          description="Run one request of POST /v1/grad in this process (no server) and "
                                      "print the response JSON. Errors print the problem JSON the server "
                                      "would send and exit with status 1. Limits are the GRADSERVE_* "
                                      "settings (see gradserve serve --help).")
    grad.add_argument("request", help="a JSON file with the request, or - for standard input")
    grad.add_argument("--indent", action="store_true", help="indent the JSON output")
    ops = sub.add_parser("ops", help="list the ops (as GET /v1/ops)",
                         description="List the engine's ops: name and signature, one a line.")
    ops.add_argument("match", nargs="?", default="", help="only ops whose name contains this")
    ops.add_argument("--json", action="store_true", help="print the GET /v1/ops response body instead")
    return p


def _settings() -> tuple[Settings | None, str]:
    """Settings from the environment, or a one-line error naming the bad GRADSERVE_* value."""
    from pydantic import ValidationError

    try:
        return Settings(), ""
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        name = "GRADSERVE_" + "_".join(str(x) for x in err["loc"][:1]).upper()
        return None, f"gradserve: error: {name}={os.environ.get(name, '')!r}: {err['msg']}"


def _dump(obj: Any, indent: bool) -> None:
    import orjson

    opt = orjson.OPT_INDENT_2 if indent else 0
    sys.stdout.write(orjson.dumps(obj, option=opt).decode() + "\n")


def _grad(path: str, indent: bool, s: Settings) -> int:
    import orjson

    from . import core
    from .errors import GradserveError, to_problem

    try:
        raw = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()  # noqa: SIM115
    except OSError as e:
        print(f"gradserve grad: error: cannot read {path}: {e.strerror}", file=sys.stderr)
        return 2
    try:
        payload = core.parse_json(raw)
        out = core.evaluate(payload, settings=s)
    except GradserveError as e:
        problem = to_problem(e)
        _dump(problem, indent)
        print(f"gradserve grad: {problem['status']} {problem['title']}: {problem['detail']}", file=sys.stderr)
        return 1
    except orjson.JSONDecodeError as e:  # pragma: no cover - parse_json turns these into BadRequest
        print(f"gradserve grad: error: {e}", file=sys.stderr)
        return 1
    _dump(out, indent)
    return 0


def _ops(match: str, as_json: bool) -> int:
    from . import core
    from .wire import NODE_KINDS

    ops = [o for o in core.list_ops() if match in o["name"]]
    if as_json:
        _dump({"count": len(ops), "node_kinds": list(NODE_KINDS), "ops": ops}, True)
        return 0
    for o in ops:
        alias = f"  (alias of {o['canonical']})" if o["canonical"] != o["name"] else ""
        print(f"{o['name']}  {o['signature'].removeprefix(o['canonical'])}{alias}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the command (``serve``: uvicorn with the app factory)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    s, bad_env = _settings()  # a bad value still lets --help and --version answer
    p = _parser(s)
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        # `gradserve --port 8123`: once the default command, now named (one line, not "invalid choice")
        p.error(f"{argv[0]} is an option of a command: did you mean `gradserve serve {' '.join(argv)}`?")
    args = p.parse_args(argv)
    if args.command is None:
        p.print_help()
        print("\nno command given: `gradserve serve` runs the server.")
        return 2
    if s is None:
        print(bad_env, file=sys.stderr)
        return 2
    if args.command == "serve" and args.log_level not in LOG_LEVELS:  # from GRADSERVE_LOG_LEVEL
        p.error(f"GRADSERVE_LOG_LEVEL={args.log_level!r} is not a log level ({', '.join(LOG_LEVELS)})")
    if args.command == "grad":
        return _grad(args.request, args.indent, s)
    if args.command == "ops":
        return _ops(args.match, args.json)

    import uvicorn

    logs = log_config(args.log_level, args.log_format)
    logging.config.dictConfig(logs)
    if not s.api_keys and not _is_loopback(args.host):
        log.warning("listening on %s without API keys: anyone who can reach it can use it "
                    "(set GRADSERVE_API_KEYS)", args.host)
    malloc_policy()
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
