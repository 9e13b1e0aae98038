"""``gradserve serve --host --port --workers`` (also ``python -m service``)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys

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
    args = p.parse_args(argv)
    if args.command is None:
        args = p.parse_args(["serve", *(argv if argv is not None else sys.argv[1:])])

    import uvicorn

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    if not s.api_keys and not _is_loopback(args.host):
        log.warning("listening on %s without API keys: anyone who can reach it can use it "
                    "(set GRADSERVE_API_KEYS)", args.host)
    uvicorn.run("service.app:create_app", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
