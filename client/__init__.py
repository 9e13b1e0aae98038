"""Gradserve's Python client: torch-like code records a graph; the server (or, with no URL, the
engine in this process) answers ``torch.autograd.grad`` on it.

>>> import numpy as np
>>> from client import Client
>>> c = Client()                               # embedded; Client("http://127.0.0.1:8000") for a server
>>> w = c.tensor(0.5, requires_grad=True)
>>> b = c.tensor(0.9, requires_grad=True)
>>> x = c.tensor(np.random.rand(100))
>>> loss = ((2 * x + 1 - (w * x + b)) ** 2).mean()
>>> gw, gb = c.autograd_grad(loss, [w, b])     # numpy arrays
"""

from __future__ import annotations

from . import errors
from ._client import AsyncClient, Client
from ._recording import Tensor
from ._wire import RetryPolicy
from .errors import (
    APIError,
    AuthenticationError,
    AutogradArithmeticError,
    AutogradAssertionError,
    AutogradError,
    AutogradIndexError,
    AutogradKeyError,
    AutogradLookupError,
    AutogradNotImplementedError,
    AutogradOverflowError,
    AutogradRuntimeError,
    AutogradTypeError,
    AutogradValueError,
    AutogradZeroDivisionError,
    BadRequestError,
    ConnectError,
    DeadlineExceededError,
    GradserveError,
    GraphError,
    NetworkError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ResponseError,
    ServerError,
    ServiceUnavailableError,
    Timeout,
    TransportError,
    UnsupportedMediaTypeError,
)

__all__ = [
    "Client", "AsyncClient", "Tensor", "RetryPolicy", "errors",
    "GradserveError", "TransportError", "ConnectError", "Timeout", "NetworkError", "ResponseError",
    "APIError", "BadRequestError", "AuthenticationError", "NotFoundError", "PayloadTooLargeError",
    "UnsupportedMediaTypeError", "GraphError", "AutogradError", "AutogradRuntimeError",
    "AutogradValueError", "AutogradTypeError", "AutogradIndexError", "AutogradKeyError",
    "AutogradNotImplementedError", "AutogradZeroDivisionError", "AutogradOverflowError",
    "AutogradArithmeticError", "AutogradLookupError", "AutogradAssertionError", "RateLimitError",
    "ServerError", "ServiceUnavailableError", "DeadlineExceededError",
]
