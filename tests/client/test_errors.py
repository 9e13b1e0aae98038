"""The exception tree: problem+json bodies become typed exceptions, torch's builtins included."""

from __future__ import annotations

import pickle

import pytest

import client
from client import errors as E


@pytest.mark.parametrize(("status", "cls"), [
    (400, E.BadRequestError), (401, E.AuthenticationError), (404, E.NotFoundError),
    (413, E.PayloadTooLargeError), (415, E.UnsupportedMediaTypeError), (422, E.GraphError),
    (429, E.RateLimitError), (500, E.ServerError), (502, E.ServerError),
    (503, E.ServiceUnavailableError), (504, E.DeadlineExceededError), (418, E.APIError),
])
def test_status_maps_to_class(status: int, cls: type) -> None:
    err = E.problem_to_error(status, {"type": "urn:x", "title": "T", "status": status, "detail": "d",
                                      "errors": [{"loc": ["graph", "nodes", 0], "msg": "m"}]})
    assert type(err) is cls
    assert isinstance(err, E.APIError) and isinstance(err, E.GradserveError)
    assert err.status == status and str(err) == "d" and err.title == "T" and err.type == "urn:x"
    assert err.errors == [{"loc": ["graph", "nodes", 0], "msg": "m"}]


@pytest.mark.parametrize(("name", "builtin"), [
    ("RuntimeError", RuntimeError), ("ValueError", ValueError), ("TypeError", TypeError),
    ("IndexError", IndexError), ("KeyError", KeyError), ("NotImplementedError", NotImplementedError),
    ("ZeroDivisionError", ZeroDivisionError), ("OverflowError", OverflowError),
    ("ArithmeticError", ArithmeticError), ("LookupError", LookupError), ("AssertionError", AssertionError),
])
def test_exception_member_gives_torch_builtin(name: str, builtin: type) -> None:
    msg = "One of the differentiated Tensors does not require grad"
    err = E.problem_to_error(422, {"status": 422, "title": "autograd_grad failed", "detail": msg,
                                   "exception": name})
    assert isinstance(err, builtin) and isinstance(err, E.AutogradError) and isinstance(err, E.GraphError)
    assert err.exception == name and err.status == 422
    assert str(err) == msg
    with pytest.raises(builtin, match="does not require grad"):
        raise err


def test_unknown_exception_name_is_not_looked_up() -> None:
    err = E.problem_to_error(422, {"status": 422, "detail": "x", "exception": "SystemExit"})
    assert type(err) is E.AutogradError
    assert not isinstance(err, SystemExit)


def test_garbage_problem_bodies_are_tolerated() -> None:
    err = E.problem_to_error(500, "oops")
    assert type(err) is E.ServerError and str(err) == "oops"
    err = E.problem_to_error(400, {"status": "x", "errors": "nope", "detail": 3})
    assert type(err) is E.BadRequestError and err.errors == [] and str(err) == "HTTP 400"


def test_errors_pickle() -> None:
    err = E.problem_to_error(422, {"status": 422, "detail": "boom", "exception": "ValueError"})
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and str(back) == "boom" and back.status == 422


def test_transport_errors_are_builtin_kin() -> None:
    assert issubclass(E.ConnectError, ConnectionError) and issubclass(E.ConnectError, E.TransportError)
    assert issubclass(E.Timeout, TimeoutError)


def test_public_names() -> None:
    for name in client.__all__:
        assert hasattr(client, name), name
    assert {"Client", "AsyncClient", "Tensor"} <= set(client.__all__)
    # the module docstring draws every exception class of the tree
    doc = E.__doc__ or ""
    for name in E.__all__:
        obj = getattr(E, name)
        if isinstance(obj, type):
            assert name in doc, name
