"""Structured logs: one JSON object per line, carrying the request id of the request being served.

The request id lives in a context variable set by :mod:`service.observe` for each HTTP request
(and carried into the engine thread by :class:`service.gate.Gate`), so every log record made
while serving a request, in any module, gets its ``request_id``.

>>> import logging, logging.config
>>> logging.config.dictConfig(log_config("info", "json"))            # doctest: +SKIP
>>> logging.getLogger("gradserve").info("ready", extra={"fields": {"port": 8000}})  # doctest: +SKIP
{"ts":"2026-01-01T00:00:00.000Z","level":"info","logger":"gradserve","msg":"ready","pid":1,"port":8000}
"""

from __future__ import annotations

import contextvars
import logging
import time
from typing import Any

import orjson

__all__ = ["REQUEST_ID", "current_request_id", "JsonFormatter", "TextFormatter", "log_config"]

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("gradserve_request_id",
                                                                       default=None)


def current_request_id() -> str | None:
    """The id of the request being served in this context, or None outside a request."""
    return REQUEST_ID.get()


def _timestamp(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "pid", "request_id"?, **fields, "exc"?}`` per line.

    Structured fields come in ``extra={"fields": {...}}``; they never override the base keys.
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": _timestamp(record.created), "level": record.levelname.lower(),
                               "logger": record.name, "msg": record.getMessage(), "pid": record.process}
        rid = REQUEST_ID.get()
        if rid is not None:
            out["request_id"] = rid
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for k, v in fields.items():
                out.setdefault(k, v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """Human-readable lines, with the request id and structured fields appended."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = []
        rid = REQUEST_ID.get()
        if rid is not None:
            extras.append(f"request_id={rid}")
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            extras += [f"{k}={v}" for k, v in fields.items()]
        return f"{line} [{' '.join(extras)}]" if extras else line


def log_config(level: str = "info", fmt: str = "json") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict for uvicorn's loggers and ours, to stderr.

    uvicorn's access log is left without handlers: :mod:`service.observe` writes one access
    line per request itself, with the request id, route and duration.
    """
    formatter = {"()": f"{__name__}.{'JsonFormatter' if fmt == 'json' else 'TextFormatter'}"}
    lvl = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"gradserve": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "gradserve",
                                "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": lvl, "propagate": False},
            "uvicorn.error": {"level": lvl},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "gradserve": {"handlers": ["stderr"], "level": lvl, "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }
