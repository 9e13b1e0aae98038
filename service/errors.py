"""Gradserve's domain errors, and how each one renders as RFC 9457 problem+json.

One tree; the HTTP status of each class lives in one table (:data:`PROBLEMS`) read by one
exception handler. Nothing below ``service.app`` knows about HTTP::

    GradserveError                 (500, a bug if it ever escapes as itself)
    ├── BadRequest                 400  malformed JSON or body layout
    ├── Unauthorized               401  missing or bad API key
    ├── NotFound                   404  no such model or version (Open Inference Protocol routes)
    ├── PayloadTooLarge            413  over a configured size limit (the limit is named)
    ├── BodyTimeout                408  the request body did not arrive within ``request_timeout_s``
    ├── PlanNotCached              409  ``graph.hash`` names a graph this process has no plan for
    ├── UnsupportedMediaType       415  wrong Content-Type
    ├── InvalidRequest             422  the header does not match the wire schema
    │   ├── InvalidGraph           422  unknown op, bad reference, duplicate name, cycle, arity
    │   │   └── ExpressionError    422  ``graph.source`` outside the whitelist (line/col named)
    │   └── EngineError            422  an op raised; carries torch's exception type + message
    │       └── AutogradError      422  ``autograd_grad`` raised (a ``grad`` node or the top level)
    ├── Overloaded                 503  no free engine slot (``Retry-After``)
    └── RequestTimeout             504  over ``request_timeout_s``

Every error has ``detail`` (one sentence) and ``errors``: ``[{"loc": [...], "msg": ...}]``,
where ``loc`` names the place, e.g. ``["graph", "nodes", 3, "inputs", 1]``.

>>> e = InvalidGraph("unknown op 'mull'", loc=("graph", "nodes", 0, "op"))
>>> to_problem(e)["status"]
422
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "GradserveError", "BadRequest", "Unauthorized", "NotFound", "PayloadTooLarge", "UnsupportedMediaType",
    "PlanNotCached", "InvalidRequest", "InvalidGraph", "ExpressionError", "EngineError", "AutogradError",
    "Overloaded", "RequestTimeout", "BodyTimeout", "PROBLEMS", "problem_info", "to_problem",
    "problem_headers", "PROBLEM_MEDIA_TYPE", "TORCH_EXCEPTION_TYPES",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"

Loc = Sequence[str | int]


class GradserveError(Exception):
    """Base of every domain error. ``errors`` items are ``{"loc": [...], "msg": str, ...}``."""

    def __init__(self, detail: str, *, loc: Loc | None = None,
                 errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if errors is None:
            errors = [{"loc": list(loc), "msg": detail}] if loc is not None else []
        self.errors = errors

    def extensions(self) -> dict[str, Any]:
        """Extra problem members beyond the RFC's standard ones."""
        return {}


class BadRequest(GradserveError):
    """The body is not valid JSON, or a binary body's layout disagrees with its header."""


class Unauthorized(GradserveError):
    """API keys are configured and the request has no valid ``Authorization: Bearer`` key."""


class NotFound(GradserveError):
    """The request names a model or version this server does not have."""


class PayloadTooLarge(GradserveError):
    """A configured limit was exceeded. ``limit`` is the setting's name (``max_body_bytes``...)."""

    def __init__(self, detail: str, *, limit: str, loc: Loc | None = None) -> None:
        super().__init__(detail, loc=loc)
        self.limit = limit

    def extensions(self) -> dict[str, Any]:
        return {"limit": self.limit}


class PlanNotCached(GradserveError):
    """``graph.hash`` names a graph whose plan this server process does not hold (never sent
    here, evicted, or another replica): send the request again with the whole graph."""


class UnsupportedMediaType(GradserveError):
    """The Content-Type is neither application/json nor application/octet-stream."""


class InvalidRequest(GradserveError):
    """The JSON header is well-formed JSON but does not follow the wire schema."""


class InvalidGraph(InvalidRequest):
    """The graph cannot run: unknown op or name, duplicate name, cycle, wrong arity, ..."""


class ExpressionError(InvalidGraph):
    """``graph.source`` uses syntax outside the whitelist; ``line``/``col`` locate it (1-based)."""

    def __init__(self, detail: str, *, line: int, col: int, node: str | None = None) -> None:
        msg = f"line {line}, col {col}: {detail}"
        item: dict[str, Any] = {"loc": ["graph", "source"], "msg": msg, "line": line, "col": col}
        if node:  # the name(s) the statement assigns
            item["node"] = node
        super().__init__(msg, errors=[item])
        self.line, self.col = line, col


# Exception types a client may re-raise by name; anything else is reported as RuntimeError.
TORCH_EXCEPTION_TYPES = ("RuntimeError", "ValueError", "TypeError", "IndexError", "KeyError",
                         "NotImplementedError", "ZeroDivisionError", "OverflowError",
                         "ArithmeticError", "LookupError", "AssertionError")


def _public_type_name(exc: BaseException) -> str:
    for cls in type(exc).__mro__:
        if cls.__name__ in TORCH_EXCEPTION_TYPES and cls.__module__ == "builtins":
            return cls.__name__
    return "RuntimeError"


class EngineError(InvalidRequest):
    """The engine raised while running a node. ``exception`` is the torch exception type name
    (``"RuntimeError"``, ``"ValueError"``, ...) and ``detail`` is torch's message."""

    def __init__(self, detail: str, *, exception: str = "RuntimeError", loc: Loc | None = None,
                 errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail, loc=loc, errors=errors)
        self.exception = exception

    @classmethod
    def from_exception(cls, exc: BaseException, *, loc: Loc | None = None,
                       where: str = "") -> EngineError:
        """Wrap a foreign exception raised by the engine (``where`` prefixes the ``errors`` msg)."""
        msg = str(exc) if str(exc) else type(exc).__name__
        if isinstance(exc, KeyError) and exc.args:
            msg = str(exc.args[0])
        errors = [{"loc": list(loc), "msg": f"{where}{msg}"}] if loc is not None else None
        return cls(msg, exception=_public_type_name(exc), loc=loc, errors=errors)

    def extensions(self) -> dict[str, Any]:
        return {"exception": self.exception}


class AutogradError(EngineError):
    """``autograd_grad`` raised (torch's message and type): unused input, no grad_fn, ..."""


class Overloaded(GradserveError):
    """Every engine slot and queue place is taken; retry after ``retry_after`` seconds."""

    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class RequestTimeout(GradserveError):
    """The request ran past ``request_timeout_s``; its work was stopped."""


class BodyTimeout(GradserveError):
    """The client sent its body too slowly, or stopped sending it (a client-side timeout: 408)."""


# The one status table: class -> (HTTP status, problem type slug, title).
PROBLEMS: dict[type[GradserveError], tuple[int, str, str]] = {
    GradserveError: (500, "internal-error", "Internal server error"),
    BadRequest: (400, "malformed-request", "Malformed request"),
    Unauthorized: (401, "unauthorized", "Missing or invalid API key"),
    NotFound: (404, "not-found", "Not found"),
    PayloadTooLarge: (413, "payload-too-large", "Over a size limit"),
    PlanNotCached: (409, "plan-not-cached", "Graph plan not cached: send the whole graph"),
    UnsupportedMediaType: (415, "unsupported-media-type", "Unsupported media type"),
    InvalidRequest: (422, "invalid-request", "Invalid request"),
    InvalidGraph: (422, "invalid-graph", "Invalid graph"),
    ExpressionError: (422, "invalid-expression", "Invalid expression source"),
    EngineError: (422, "engine-error", "The engine rejected an operation"),
    AutogradError: (422, "autograd-error", "autograd_grad failed"),
    Overloaded: (503, "overloaded", "Server overloaded"),
    RequestTimeout: (504, "timeout", "Request timed out"),
    BodyTimeout: (408, "body-timeout", "Request body timed out"),
}

PROBLEM_TYPE_PREFIX = "urn:gradserve:problem:"


def problem_info(exc: GradserveError) -> tuple[int, str, str]:
    """(status, type URI, title) for an error, from the nearest class in :data:`PROBLEMS`."""
    for cls in type(exc).__mro__:
        if cls in PROBLEMS:
            status, slug, title = PROBLEMS[cls]
            return status, PROBLEM_TYPE_PREFIX + slug, title
    raise TypeError(f"not a GradserveError: {exc!r}")


def to_problem(exc: GradserveError) -> dict[str, Any]:
    """The RFC 9457 problem object for ``exc``."""
    status, type_, title = problem_info(exc)
    errors = exc.errors
    if not errors and status < 500:  # every client error names a place, the body at least
        errors = [{"loc": ["body"], "msg": exc.detail}]
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": exc.detail,
                            "errors": errors}
    body.update(exc.extensions())
    return body


def problem_headers(exc: GradserveError) -> dict[str, str]:
    """HTTP headers that go with the problem (``Retry-After``, ``WWW-Authenticate``)."""
    if isinstance(exc, Overloaded):
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": 'Bearer realm="gradserve"'}
    return {}
