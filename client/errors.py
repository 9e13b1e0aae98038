"""The client's exceptions: one tree, rooted at :class:`GradserveError`.

::

    GradserveError
    ├── TransportError                  the request did not get an HTTP answer (httpx's errors, converted)
    │   ├── ConnectError                  also a builtin ConnectionError
    │   ├── Timeout                       also a builtin TimeoutError
    │   └── NetworkError                  the connection broke, or the server spoke bad HTTP
    ├── ResponseError                   an answer the client cannot read (not v1 JSON, bad binary layout)
    └── APIError                        the server (or the embedded core) answered with problem+json
        ├── BadRequestError               400  malformed JSON or body
        ├── AuthenticationError           401  missing or bad API key
        ├── NotFoundError                 404
        ├── PayloadTooLargeError          413  over a size limit
        ├── UnsupportedMediaTypeError     415  wrong content type
        ├── GraphError                    422  invalid graph: unknown op, bad reference, shape mismatch, ...
        │   └── AutogradError               the engine raised; ``exception`` names torch's exception type
        │       ├── AutogradRuntimeError      also a RuntimeError
        │       ├── AutogradValueError        also a ValueError
        │       ├── AutogradTypeError         also a TypeError
        │       ├── AutogradIndexError        also an IndexError
        │       ├── AutogradKeyError          also a KeyError
        │       ├── AutogradNotImplementedError  also a NotImplementedError
        │       ├── AutogradZeroDivisionError also a ZeroDivisionError
        │       ├── AutogradOverflowError     also an OverflowError
        │       ├── AutogradArithmeticError   also an ArithmeticError
        │       ├── AutogradLookupError       also a LookupError
        │       └── AutogradAssertionError    also an AssertionError
        ├── RateLimitError                429  (raised once retries are exhausted)
        ├── ServerError                   5xx  (500 is a server bug)
        │   ├── ServiceUnavailableError     503  overloaded (raised once retries are exhausted)
        │   └── DeadlineExceededError       504  over the server's time limit
        └── (any other status)            APIError itself

A problem body that carries an ``exception`` member (``"RuntimeError"``, ``"ValueError"``, ...)
becomes the matching ``Autograd*Error``, whatever its status, so code written for torch keeps working:

>>> try:
...     c.autograd_grad(loss, [x])        # x does not require grad
... except RuntimeError as e:             # an AutogradRuntimeError
...     print(e.status, e)
422 One of the differentiated Tensors does not require grad
"""

from __future__ import annotations

import builtins
from typing import Any

__all__ = [
    "GradserveError", "TransportError", "ConnectError", "Timeout", "NetworkError", "ResponseError",
    "APIError", "BadRequestError", "AuthenticationError", "NotFoundError", "PayloadTooLargeError",
    "UnsupportedMediaTypeError", "GraphError", "AutogradError", "AutogradRuntimeError",
    "AutogradValueError", "AutogradTypeError", "AutogradIndexError", "AutogradKeyError",
    "AutogradNotImplementedError", "AutogradZeroDivisionError", "AutogradOverflowError",
    "AutogradArithmeticError", "AutogradLookupError", "AutogradAssertionError", "RateLimitError",
    "ServerError", "ServiceUnavailableError", "DeadlineExceededError",
    "problem_to_error",
]


class GradserveError(Exception):
    """Base of every exception the client raises on its own account."""


# ---------------------------------------------------------------- no HTTP answer
class TransportError(GradserveError):
    """The request got no HTTP answer. ``__cause__`` holds the original httpx exception."""


class ConnectError(TransportError, ConnectionError):
    """Could not connect to the server (after the configured retries)."""


class Timeout(TransportError, builtins.TimeoutError):
    """The client's timeout expired (connect, read, write or pool)."""


class NetworkError(TransportError):
    """The connection broke mid-request, or the server's HTTP was malformed."""


class ResponseError(GradserveError):
    """The server answered, but not with a readable v1 response."""


# ---------------------------------------------------------------- problem+json answers
class APIError(GradserveError):
    """An RFC 9457 problem answer. ``str(e)`` is the problem's ``detail`` (torch's message for
    autograd errors); the other members are attributes, and ``problem`` is the whole body."""

    def __init__(self, message: str, *, status: int, type: str = "about:blank",  # noqa: A002
                 title: str | None = None, detail: str | None = None,
                 errors: list[dict[str, Any]] | None = None, exception: str | None = None,
                 retry_after: float | None = None, problem: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.exception = exception
        self.retry_after = retry_after
        self.problem = problem if problem is not None else {}

    def __reduce__(self) -> tuple:
        return (_rebuild, (type(self).__name__, str(self), self.status, self.problem, self.retry_after))


class BadRequestError(APIError):
    """400: the body is not valid JSON, or the binary layout disagrees with its header."""


class AuthenticationError(APIError):
    """401: missing or bad API key."""


class NotFoundError(APIError):
    """404: no such endpoint (is the base URL right?)."""


class PayloadTooLargeError(APIError):
    """413: over one of the server's size limits; ``errors`` names it."""


class UnsupportedMediaTypeError(APIError):
    """415: wrong content type."""


class GraphError(APIError):
    """422: the graph is invalid; ``errors[i]["loc"]`` names the node and the field."""


class AutogradError(GraphError):
    """The engine raised while running an op or ``autograd_grad``, as torch would have.

    The concrete class also inherits the builtin named by ``exception``, so ``except RuntimeError``
    catches the same failures as with torch.
    """


class AutogradRuntimeError(AutogradError, RuntimeError):
    """An autograd error that torch raises as RuntimeError."""


class AutogradValueError(AutogradError, ValueError):
    """An autograd error that torch raises as ValueError."""


class AutogradTypeError(AutogradError, TypeError):
    """An autograd error that torch raises as TypeError."""


class AutogradIndexError(AutogradError, IndexError):
    """An autograd error that torch raises as IndexError."""


class AutogradKeyError(AutogradError, KeyError):
    """An autograd error that torch raises as KeyError."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class AutogradNotImplementedError(AutogradError, NotImplementedError):
    """An autograd error that torch raises as NotImplementedError."""


class AutogradZeroDivisionError(AutogradError, ZeroDivisionError):
    """An autograd error that torch raises as ZeroDivisionError."""


class AutogradOverflowError(AutogradError, OverflowError):
    """An autograd error that torch raises as OverflowError."""


class AutogradArithmeticError(AutogradError, ArithmeticError):
    """An autograd error that torch raises as ArithmeticError."""


class AutogradLookupError(AutogradError, LookupError):
    """An autograd error that torch raises as LookupError."""


class AutogradAssertionError(AutogradError, AssertionError):
    """An autograd error that torch raises as AssertionError."""


class RateLimitError(APIError):
    """429: too many requests, still refused after the configured retries."""


class ServerError(APIError):
    """5xx. A 500 is a bug in the server: please report it with the request."""


class ServiceUnavailableError(ServerError):
    """503: the server is overloaded or shutting down, still after the configured retries."""


class DeadlineExceededError(ServerError):
    """504: the request ran past the server's time limit."""


# ---------------------------------------------------------------- problem body -> exception
_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError, 401: AuthenticationError, 404: NotFoundError, 413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError, 422: GraphError, 429: RateLimitError, 503: ServiceUnavailableError,
    504: DeadlineExceededError,
}

# A fixed table, never a lookup of an arbitrary name sent by the server.
_BY_EXCEPTION: dict[str, type[AutogradError]] = {
    "RuntimeError": AutogradRuntimeError, "ValueError": AutogradValueError,
    "TypeError": AutogradTypeError, "IndexError": AutogradIndexError, "KeyError": AutogradKeyError,
    "NotImplementedError": AutogradNotImplementedError, "ZeroDivisionError": AutogradZeroDivisionError,
    "OverflowError": AutogradOverflowError, "ArithmeticError": AutogradArithmeticError,
    "LookupError": AutogradLookupError, "AssertionError": AutogradAssertionError,
}


def error_class(status: int, exception: str | None = None) -> type[APIError]:
    """The exception class for a problem answer with this status and ``exception`` member."""
    if exception is not None:
        return _BY_EXCEPTION.get(exception, AutogradError)
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else APIError


def problem_to_error(status: int, problem: Any, retry_after: float | None = None) -> APIError:
    """Build the typed exception for an RFC 9457 problem body (a dict; anything else is tolerated)."""
    if not isinstance(problem, dict):
        problem = {"detail": str(problem)[:2000]} if problem not in (None, "") else {}
    status = problem.get("status") if isinstance(problem.get("status"), int) else status
    exception = problem.get("exception")
    exception = exception if isinstance(exception, str) else None
    title = problem.get("title") if isinstance(problem.get("title"), str) else None
    detail = problem.get("detail") if isinstance(problem.get("detail"), str) else None
    errors = problem.get("errors")
    errors = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    message = detail or title or f"HTTP {status}"
    cls = error_class(status, exception)
    return cls(message, status=status, type=str(problem.get("type", "about:blank")), title=title,
               detail=detail, errors=errors, exception=exception, retry_after=retry_after,
               problem=problem)


def _rebuild(cls_name: str, message: str, status: int, problem: dict, retry_after: float | None) -> APIError:
    err = problem_to_error(status, problem, retry_after)
    if type(err).__name__ != cls_name:  # e.g. an APIError built by hand
        cls = globals().get(cls_name, APIError)
        err = cls(message, status=status, problem=problem, retry_after=retry_after)
    return err
