"""``Client`` and ``AsyncClient``: thin I/O shells around the shared recording and wire code.

Everything that decides what to send and how to read the answer is in ``_BaseClient`` and
``_wire`` (no I/O); the two classes only differ in how they wait: ``time.sleep`` and a blocking
httpx client, or ``asyncio.sleep`` and an async one. Embedded mode (no ``base_url``) hands the
same request to ``service.core`` in this process instead of sending it (the core that serves
``POST /v1/grad``, so both modes give the same answers and the same errors).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import numpy as np

import engine
from engine._functional_inplace import wire_op

from . import _graphs, _shadow, _wire
from ._functional import AsyncFunctional, SyncFunctional
from ._onnx import split_onnx
from ._recording import (
    Namespace,
    Node,
    Recorder,
    Tensor,
    check_fresh,
    check_inplace,
    collect,
    encode_call,
    has_tensor,
    local_values,
    rebind,
)
from ._wire import Encoding, HTTPRequest, Plan, Result, RetryPolicy
from .errors import (
    ConnectError,
    GradserveError,
    NetworkError,
    ResponseError,
    ServerError,
    Timeout,
    TransportError,
    problem_to_error,
)

__all__ = ["Client", "AsyncClient"]

log = logging.getLogger("gradserve.client")

TensorEncoding = Literal["auto", "json", "b64", "binary"]
ResponseEncoding = Literal["auto", "json", "b64", "binary"]

DEFAULT_TIMEOUT = 60.0
DEFAULT_BINARY_THRESHOLD = 64 * 1024  # bytes: above this a tensor travels raw, below as base64
_CURL_URL = "http://127.0.0.1:8000"

# httpx errors worth a retry: nothing reached the engine, or the connection dropped (the request is
# a pure function of its body, so sending it again is safe).
_RETRYABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError,
              httpx.WriteError)
_HTTPX_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError)


def _convert(e: Exception) -> GradserveError:
    """The client exception for an httpx exception (the one place they are translated)."""
    if isinstance(e, httpx.TimeoutException):
        return Timeout(f"timed out: {e}")
    if isinstance(e, httpx.ConnectError):
        return ConnectError(f"cannot connect: {e}")
    if isinstance(e, (httpx.NetworkError, httpx.ProtocolError)):
        return NetworkError(f"connection failed: {e}")
    return TransportError(f"{type(e).__name__}: {e}")


@dataclass
class _GradCall:
    """The normalized arguments of one ``autograd_grad`` call."""

    outputs: tuple[Tensor, ...]
    inputs: tuple[Tensor, ...]
    grad_outputs: tuple[Tensor | None, ...] | None
    flags: dict[str, Any]
    keys: list[Any] | None = None  # inputs given as a dict

    def roots(self) -> tuple[Tensor, ...]:
        return (*self.outputs, *self.inputs, *(g for g in self.grad_outputs or () if g is not None))

    def wire(self) -> dict[str, Any]:
        """The call's wire form: the top level of a request, or a ``grad`` node's attributes."""
        gos = self.grad_outputs
        return {"outputs": [t.name for t in self.outputs], "inputs": [t.name for t in self.inputs],
                "grad_outputs": None if gos is None else [None if g is None else g.name for g in gos],
                **self.flags}

    def shape_result(self, grads: tuple) -> Any:
        return grads if self.keys is None else dict(zip(self.keys, grads, strict=True))


@dataclass
class _Outgoing:
    """A request about to be sent: ``full()`` builds it with the whole graph; ``short`` names the
    graph by hash instead (when the server confirmed it has it); ``back`` maps names back."""

    full: Callable[[], HTTPRequest]
    short: HTTPRequest | None
    graph_hash: str | None
    back: dict[str, str]

    def first(self) -> HTTPRequest:
        return self.short if self.short is not None else self.full()


def _as_tuple(x: Any) -> tuple:
    if isinstance(x, (list, tuple)):
        return tuple(x)
    if x is None:
        return ()
    return (x,)


class _BaseClient:
    """Recording, request building and response handling: everything but the I/O."""

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None,
                 timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT, retries: int | RetryPolicy = 3,
                 transport: Any = None, binary_threshold: int = DEFAULT_BINARY_THRESHOLD,
                 tensor_encoding: TensorEncoding = "auto", response_encoding: ResponseEncoding = "auto",
                 headers: Mapping[str, str] | None = None, settings: Any = None) -> None:
        if transport is not None and base_url is None:
            base_url = "http://gradserve.invalid"  # a transport (e.g. httpx.MockTransport) answers instead
        if tensor_encoding not in ("auto", "json", "b64", "binary"):
            raise ValueError(f"tensor_encoding must be auto, json, b64 or binary, not {tensor_encoding!r}")
        if response_encoding not in ("auto", "json", "b64", "binary"):
            raise ValueError(
                f"response_encoding must be auto, json, b64 or binary, not {response_encoding!r}")
        if base_url is not None:
            try:
                scheme = httpx.URL(base_url).scheme
            except httpx.InvalidURL as e:
                raise ValueError(f"bad base_url {base_url!r}: {e}") from None
            if scheme not in ("http", "https"):
                raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/") if base_url else None
        self.api_key = api_key if api_key is not None else os.environ.get("GRADSERVE_API_KEY")
        self.timeout = timeout
        self.retry = retries if isinstance(retries, RetryPolicy) else RetryPolicy(retries=int(retries))
        self.binary_threshold = int(binary_threshold)
        self.tensor_encoding = tensor_encoding
        self.response_encoding = response_encoding
        self.settings = settings
        self._headers = dict(headers or {})
        self._recorder = Recorder()
        self._ns = Namespace(self)
        self._http: Any = None
        self._known_graphs = _graphs.KnownGraphs()  # graph hashes the server said it has cached
        self._plan_cache: Any = None                # embedded mode: service.plan_cache.PlanCache
        self._onnx_names: set[str] = set()          # values of the ONNX models made by onnx()
        if not self.embedded:
            try:
                self._http = self._open(transport)
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as e:
                raise ValueError(f"bad base_url {base_url!r}: {e}") from None

    def _open(self, transport: Any) -> Any:
        raise NotImplementedError

    @property
    def embedded(self) -> bool:
        """True when the engine runs in this process (no ``base_url``)."""
        return self.base_url is None

    # ------------------------------------------------------------ the torch-like namespace
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._ns, name)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(dir(self._ns)))

    def __repr__(self) -> str:
        where = "embedded" if self.embedded else self.base_url
        return f"{type(self).__name__}({where})"

    # ------------------------------------------------------------ leaves
    def tensor(self, data: Any, dtype: Any = None, requires_grad: bool = False, *,
               name: str | None = None) -> Tensor:
        """A leaf tensor, with ``torch.tensor``'s dtype rules (Python floats give float32).

        ``name`` names it on the wire (default: ``t_<n>``).

        >>> w = c.tensor(0.5, requires_grad=True, name="w")
        """
        if isinstance(data, Tensor):
            data = data.numpy()
        arr = engine.tensor(data, dtype=dtype, requires_grad=requires_grad)._data
        _wire.datatype_of(arr)  # only the wire's dtypes
        label, seq = self._recorder.name("t", name)
        return Tensor(self, label, seq, value=arr, requires_grad=requires_grad)

    def onnx(self, model: Any) -> Any:
        """An ONNX model (a path, bytes or ``onnx.ModelProto``) as a recording module: ``m(x=t)``
        gives client tensors, ``m.parameters()`` the named parameters (they require grad). The
        model is checked here (needs the ``onnx`` package) and sent once per client.

        >>> m = c.onnx("mlp.onnx")  # doctest: +SKIP
        >>> loss = (m(x=c.tensor(x)) ** 2).sum()  # doctest: +SKIP
        >>> grads = c.autograd_grad(loss, list(m.parameters().values()))  # doctest: +SKIP
        """
        from ._onnx import OnnxModel
        return OnnxModel(self, model)

    def _constant(self, value: Any) -> Tensor:
        arr = value._data if isinstance(value, engine.Tensor) else engine.tensor(value)._data
        _wire.datatype_of(arr)
        label, seq = self._recorder.name("const")
        return Tensor(self, label, seq, value=arr)

    # ------------------------------------------------------------ recording
    def _record(self, op: str, args: tuple, kwargs: dict) -> Any:
        info = wire_op(op)
        if info is None:
            raise AttributeError(f"the engine has no op {op!r}")
        if kwargs.get("inplace") is True and args and isinstance(args[0], Tensor):
            # relu(x, inplace=True) changes x in torch: record it out of place, then rebind x
            check_inplace(args[0])
            res = self._record(op, args, {**kwargs, "inplace": False})
            rebind(args[0], res)
            return args[0]
        if not has_tensor(args) and not has_tensor(kwargs):
            # A constructor (zeros, rand, ...): run it here, so random values are drawn once and a
            # requires_grad=True result is a leaf, as in torch.
            return self._leaves(info.fn(*args, **kwargs))
        if op.startswith("rand") and op.endswith("_like"):  # random too: drawn once, here
            return self._leaves(info.fn(*local_values([args[0]]), *args[1:], **kwargs))
        inputs, attributes, parents, args, kwargs = encode_call(self, op, args, kwargs)
        node = Node(op, -1, inputs, attributes, tuple(parents), args, kwargs)
        n, kind = self._n_outputs(info, node)
        prefix = op.rsplit(".", 1)[-1]
        rg = info.is_differentiable and any(p._rg for p in parents)
        for _ in range(n):
            label, seq = self._recorder.name(prefix)
            node.outputs.append(Tensor(self, label, seq, node=node, requires_grad=rg))
        node.seq = node.outputs[0]._seq  # after every parent: recording order is topological
        if kind is None:
            return node.outputs[0]
        return kind(*node.outputs) if kind is not tuple else tuple(node.outputs)

    def _leaves(self, res: Any) -> Any:
        if isinstance(res, engine.Tensor):
            label, seq = self._recorder.name("t")
            return Tensor(self, label, seq, value=res._data, requires_grad=res.requires_grad)
        if isinstance(res, tuple):
            return type(res)(*(self._leaves(r) for r in res)) if hasattr(res, "_fields") \
                else tuple(self._leaves(r) for r in res)
        return res

    def _n_outputs(self, info: engine.OpInfo, node: Node) -> tuple[int, Any]:
        """How many results an op gives, and the tuple type to return them in (None: one tensor)."""
        if info.n_outputs is not None:  # fixed: one tensor, or a tuple (eigh, svd, qr, slogdet)
            return info.n_outputs, (None if info.n_outputs == 1 else tuple)
        # max/min: two results exactly when a dim is given; other variable ops need shapes.
        if info.name in ("max", "min"):
            bound = info.signature.bind(*node.args, **node.kwargs).arguments
            if bound.get("dim") is None:
                return 1, None
        res = _run_alone(node)
        if not isinstance(res, (tuple, list)):
            return 1, None
        return len(res), (type(res) if hasattr(res, "_fields") else tuple)

    # ------------------------------------------------------------ autograd_grad, sans I/O
    def _targets(self, x: Any, what: str) -> tuple[Tensor, ...]:
        out = _as_tuple(x)
        for t in out:
            if not isinstance(t, Tensor):
                raise TypeError(f"{what} must be tensors recorded by this client, got {type(t).__name__}")
            if t._client is not self:
                raise ValueError(f"tensor {t.name!r} was recorded by another client")
            check_fresh(t)
        return out

    def _grad_call(self, outputs: Any, inputs: Any, grad_outputs: Any, retain_graph: bool | None,
                   create_graph: bool, allow_unused: bool | None, is_grads_batched: bool,
                   materialize_grads: bool) -> _GradCall:
        keys = None
        if isinstance(inputs, Mapping):  # the engine's dict form: gradients come back by key
            keys, inputs = list(inputs), list(inputs.values())
        gos = None
        if grad_outputs is not None:
            items = grad_outputs if isinstance(grad_outputs, (list, tuple)) else (grad_outputs,)
            gos = tuple(None if g is None else g if isinstance(g, Tensor) else self._constant(g)
                        for g in items)
            self._targets([g for g in gos if g is not None], "grad_outputs")
        flags = {"retain_graph": retain_graph, "create_graph": bool(create_graph),
                 "allow_unused": allow_unused, "materialize_grads": bool(materialize_grads)}
        if is_grads_batched:
            flags["is_grads_batched"] = True
        return _GradCall(self._targets(outputs, "outputs"), self._targets(inputs, "inputs"), gos,
                         flags, keys)

    def _plan_grad(self, call: _GradCall, return_values: Sequence[Tensor] | None) -> Plan:
        rets = self._targets(return_values, "return_values") if return_values is not None else None
        if call.flags["create_graph"]:
            return self._plan_lazy_grad(call, rets)
        # torch's error for a second backward through freed saved tensors (client._shadow)
        _shadow.check_backward(call.outputs, call.inputs, call.grad_outputs, call.flags)
        payload, blobs, binary, names = self._payload([*call.roots(), *(rets or ())], top=call.wire(),
                                                      returns=rets or ())

        def finish(result: Result | None) -> Any:
            assert result is not None
            if len(result.grads) != len(call.inputs):
                raise ResponseError(f"expected {len(call.inputs)} gradients, got {len(result.grads)}")
            self._store(result, names)
            grads = call.shape_result(tuple(result.grads))
            return grads if rets is None else (grads, tuple(t._value for t in rets))

        return Plan(payload, blobs, finish, binary)

    def _plan_lazy_grad(self, call: _GradCall, rets: tuple[Tensor, ...] | None) -> Plan:
        """create_graph=True: record a ``grad`` node; its results are client tensors."""
        if not call.inputs:
            raise RuntimeError("`inputs` argument to `grad()` cannot be empty.")
        node = Node("grad", -1, [], call.wire(), call.roots(), (),
                    {**call.flags, "outputs": call.outputs, "inputs": call.inputs,
                     "grad_outputs": call.grad_outputs})
        for _ in call.inputs:
            label, seq = self._recorder.name("grad")
            node.outputs.append(Tensor(self, label, seq, node=node, requires_grad=True))
        node.seq = node.outputs[0]._seq
        _shadow.twins(node.outputs)  # goes backward now, in program order, as torch would
        grads = tuple(node.outputs)
        # Which gradients are None is only known after running: ask at once when it can happen.
        probe = bool(call.flags["allow_unused"]) and not call.flags["materialize_grads"]
        wanted = [*(grads if probe else ()), *(rets or ())]
        if not wanted:
            return Plan(None, [], lambda _: call.shape_result(grads))
        plan = self._plan_values(wanted)
        inner = plan.finish

        def finish(result: Result | None) -> Any:
            inner(result)
            out = call.shape_result(tuple(None if (g._has_value and g._value is None) else g for g in grads))
            return out if rets is None else (out, tuple(t._value for t in rets))

        plan.finish = finish
        return plan

    def _plan_values(self, tensors: Sequence[Tensor]) -> Plan:
        ts = self._targets(tensors, "values")
        missing = list({id(t): t for t in ts if not t._has_value}.values())

        def finish(result: Result | None) -> Any:
            if result is not None:
                self._store(result, names)
                for t in missing:
                    if not t._has_value:
                        raise ResponseError(f"the response has no value for {t.name!r}")
            return tuple(t._value for t in ts)

        if not missing:
            return Plan(None, [], finish)
        payload, blobs, binary, names = self._payload(missing, top={}, returns=missing)
        return Plan(payload, blobs, finish, binary)

    def _store(self, result: Result, names: dict[str, Tensor]) -> None:
        for name, arr in result.values.items():
            t = names.get(name)
            if t is not None:
                t._value, t._has_value = arr, True
                if arr is not None:
                    t._meta = (arr.shape, arr.dtype)

    def _payload(self, roots: Sequence[Tensor], top: dict[str, Any], returns: Sequence[Tensor],
                 encoding: Encoding | None = None) -> tuple[dict, list[bytes], bool, dict[str, Tensor]]:
        """The v1 request for a graph reaching ``roots``, the binary chunks, whether to ask for
        a binary response, and the names of the tensors whose values come back."""
        leaves, nodes = collect(roots)
        model, onnx_names, nodes = split_onnx(nodes)
        blobs: list[bytes] = []
        graph_inputs = []
        for t in leaves:
            enc = encoding or self._encoding_for(t._value)
            obj, blob = _wire.encode_tensor(t.name, t._value, enc, t._rg)
            graph_inputs.append(obj)
            if blob is not None:
                blobs.append(blob)
        payload: dict[str, Any] = {"graph": {"inputs": graph_inputs, "nodes": [n.wire() for n in nodes]}}
        payload.update(top)
        if any(t._value.dtype.kind == "f" and not np.isfinite(t._value).all() for t in leaves):
            # torch computes with NaN and infinity: values the user gave on purpose are sent so
            # (a server refuses them without this flag, as likely mistakes in hand-written requests)
            payload["allow_non_finite"] = True
        if model is not None:  # the model's values take its names (client._onnx)
            payload["graph"]["onnx"] = model.wire()
            payload = _graphs.rename(payload, onnx_names)
        names = {onnx_names.get(t.name, t.name): t for t in returns}
        if names:
            payload["return"] = list(names)
        binary = self._binary_response(bool(blobs))
        if not binary and self._response_json() != "json":
            payload["response_encoding"] = "b64"
        return payload, blobs, binary, names

    def _encoding_for(self, arr: np.ndarray) -> Encoding:
        if self.embedded:
            return "binary"  # no bytes are copied through a socket: the raw buffer is cheapest
        if self.tensor_encoding != "auto":
            return self.tensor_encoding
        return "binary" if arr.nbytes >= self.binary_threshold else "b64"

    def _binary_response(self, binary_request: bool) -> bool:
        if self.embedded:
            return True  # raw result buffers from the core: no encoding at all
        if self.response_encoding == "auto":
            return binary_request
        return self.response_encoding == "binary"

    def _response_json(self) -> str:
        return "b64" if self.response_encoding == "auto" else self.response_encoding

    # ------------------------------------------------------------ printing requests
    def to_json(self, outputs: Any = None, inputs: Any = None, grad_outputs: Any = None,
                retain_graph: bool | None = None, create_graph: bool = False, only_inputs: bool = True,
                allow_unused: bool | None = None, is_grads_batched: bool = False,
                materialize_grads: bool = False, *, return_values: Sequence[Tensor] | None = None,
                encoding: Literal["json", "b64"] = "json", indent: int | None = 2) -> str:
        """The wire JSON of the ``autograd_grad`` call with these arguments (or, without outputs
        and inputs, of fetching ``return_values``), ready to POST to ``/v1/grad``. Nothing is sent.

        >>> print(c.to_json(loss, [w, b], return_values=[loss]))
        """
        if encoding not in ("json", "b64"):
            raise ValueError("to_json prints json or b64 tensors (binary bodies are not text)")
        rets = self._targets(return_values, "return_values") if return_values is not None else ()
        top: dict[str, Any] = {}
        roots: list[Tensor] = list(rets)
        if outputs is not None or inputs is not None:
            call = self._grad_call(outputs, inputs, grad_outputs, retain_graph, create_graph,
                                   allow_unused, is_grads_batched, materialize_grads)
            top, roots = call.wire(), [*call.roots(), *rets]
        payload, _, _, _ = self._payload(roots, top, rets, encoding=encoding)
        payload.pop("response_encoding", None)
        return _wire.to_json(payload, indent)

    def curl(self, *args: Any, **kwargs: Any) -> str:
        """A curl command that sends the request :meth:`to_json` prints (same arguments).

        The API key is referenced as ``$GRADSERVE_API_KEY``, never written out.
        """
        body = self.to_json(*args, **kwargs)
        url = (self.base_url or _CURL_URL) + _wire.GRAD_PATH
        auth = ' -H "Authorization: Bearer $GRADSERVE_API_KEY"' if self.api_key else ""
        return (f"curl -sS {shlex.quote(url)} -H 'Content-Type: application/json'{auth} "
                f"--data-binary @- <<'JSON'\n{body}\nJSON")

    # ------------------------------------------------------------ embedded mode
    def _embedded_call(self, plan: Plan) -> Result:
        # Imported here: remote use never loads the service package (nor pydantic).
        from service import core, errors, settings
        from service.plan_cache import PlanCache
        if self.settings is None:
            self.settings = settings.Settings()  # read GRADSERVE_* once, as a server does at start
        if self._plan_cache is None:  # compiled graphs, reused when the same graph comes again
            self._plan_cache = PlanCache(self.settings.plan_cache_size)
        assert plan.payload is not None
        payload, back = _graphs.canonical(plan.payload, self._recorder._user | self._onnx_names)
        h = _graphs.graph_hash(payload["graph"]) if "onnx" in payload["graph"] else None
        if h is not None and self._plan_cache.peek(h) is not None:  # the model is loaded already
            payload = _graphs.by_hash(payload, h)
        try:
            # Results as raw buffers, as with Accept: application/octet-stream over HTTP.
            body, blobs = core.evaluate_binary(payload, plan.blobs or None, self.settings,
                                               plan_cache=self._plan_cache)
        except errors.GradserveError as e:  # the same problem+json path as an HTTP answer
            problem = errors.to_problem(e)
            retry_after = _wire.retry_after_seconds(errors.problem_headers(e).get("Retry-After"))
            raise problem_to_error(problem["status"], problem, retry_after) from e
        except Exception as e:  # a bug in the core: a 500 over HTTP
            raise ServerError(f"the embedded engine failed: {type(e).__name__}: {e}", status=500,
                              title="Internal server error") from e
        result = _wire.decode_result(body, blobs)
        result.values = _graphs.restore_names(result.values, back)
        return result

    def _request(self, plan: Plan, payload: dict[str, Any]) -> HTTPRequest:
        return _wire.build_request(payload, plan.blobs, binary_response=plan.binary_response,
                                   api_key=self.api_key, extra_headers=self._headers)

    def _outgoing(self, plan: Plan) -> _Outgoing:
        """The request for a plan, with canonical names; by hash when the server knows the graph."""
        assert plan.payload is not None
        payload, back = _graphs.canonical(plan.payload, self._recorder._user | self._onnx_names)
        h = _graphs.graph_hash(payload["graph"])
        short = None
        if h is not None and h in self._known_graphs:
            short = self._request(plan, _graphs.by_hash(payload, h))
        return _Outgoing(lambda: self._request(plan, payload), short, h, back)

    def _answer(self, out: _Outgoing, resp: httpx.Response) -> Result:
        """Decode a final answer (or raise its error); remember a graph the server has cached."""
        result = _wire.parse_response(resp.status_code, resp.headers, resp.content)
        if out.graph_hash is not None and resp.headers.get(_graphs.GRAPH_HASH_HEADER) == out.graph_hash:
            self._known_graphs.add(out.graph_hash)
        result.values = _graphs.restore_names(result.values, out.back)
        return result

    def _resend_whole(self, out: _Outgoing, req: HTTPRequest, resp: httpx.Response) -> HTTPRequest | None:
        """The full request when a request by hash met a server that no longer has the graph."""
        if req is not out.short or not _graphs.is_plan_miss(resp.status_code, resp.content):
            return None
        assert out.graph_hash is not None
        self._known_graphs.discard(out.graph_hash)
        return out.full()

    def _fetch_values_sync(self, tensors: Sequence[Tensor]) -> None:
        raise NotImplementedError


def _run_alone(node: Node) -> Any:
    """Run one node locally (for the number of results of split, unbind, ...)."""
    from ._recording import _substitute
    parents = list({id(p): p for p in _all_tensors((node.args, node.kwargs))}.values())
    vals = local_values(parents)
    env = {id(p): v for p, v in zip(parents, vals, strict=True)}
    info = wire_op(node.op)
    assert info is not None
    return info.fn(*_substitute(node.args, env), **_substitute(node.kwargs, env))


def _all_tensors(v: Any) -> list[Tensor]:
    if isinstance(v, Tensor):
        return [v]
    if isinstance(v, (list, tuple)):
        return [t for x in v for t in _all_tensors(x)]
    if isinstance(v, dict):
        return [t for x in v.values() for t in _all_tensors(x)]
    return []


def _retry_delay(policy: RetryPolicy, attempt: int, error: Exception | None,
                 response: httpx.Response | None) -> float | None:
    """Seconds to wait before trying again, or None to stop (pure: shared by both shells)."""
    if error is not None:
        return policy.delay(attempt) if isinstance(error, _RETRYABLE) else None
    assert response is not None
    if response.status_code not in _wire.RETRY_STATUSES:
        return None
    return policy.delay(attempt, _wire.retry_after_seconds(response.headers.get("retry-after")))


# ---------------------------------------------------------------- the sync shell
class Client(SyncFunctional, _BaseClient):
    """Gradserve's Python client: record a graph with torch-like code, get torch's gradients.

    With no ``base_url`` the engine runs in this process (embedded); with one, requests go to a
    Gradserve server. The code is the same either way.

    >>> c = Client()                                   # or Client("http://127.0.0.1:8000")
    >>> w = c.tensor(0.5, requires_grad=True)
    >>> loss = (w * 3.0 - 1.0) ** 2
    >>> c.autograd_grad(loss, [w])
    (array(3., dtype=float32),)
    """

    def _open(self, transport: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url or "", timeout=self.timeout, transport=transport)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def autograd_grad(self, outputs: Any, inputs: Any, grad_outputs: Any = None,
                      retain_graph: bool | None = None, create_graph: bool = False,
                      only_inputs: bool = True, allow_unused: bool | None = None,
                      is_grads_batched: bool = False, materialize_grads: bool = False, *,
                      return_values: Sequence[Tensor] | None = None) -> Any:
        """``torch.autograd.grad`` on the recorded graph: one request.

        Returns a tuple of numpy arrays, one per input (None for an unused input with
        ``allow_unused=True``). With ``create_graph=True`` it returns client tensors instead,
        recorded as a ``grad`` node, that can be differentiated again; their values come on demand.
        With ``return_values=[...]`` it returns ``(grads, values)``: value and grad in one trip.

        ``retain_graph`` works as in torch across calls too: the client keeps a record of what each
        backward freed (client._shadow), and a second call through freed saved tensors raises
        torch's RuntimeError before anything is sent. ``only_inputs`` is ignored, as in torch.
        Errors in the graph (a shape mismatch, say) surface when the request is made.

        >>> gw, gb = c.autograd_grad(loss, [w, b])
        >>> (gw, gb), (lv,) = c.autograd_grad(loss, [w, b], return_values=[loss])
        """
        call = self._grad_call(outputs, inputs, grad_outputs, retain_graph, create_graph,
                               allow_unused, is_grads_batched, materialize_grads)
        plan = self._plan_grad(call, return_values)
        return plan.finish(self._send(plan) if plan.payload is not None else None)

    def values(self, *tensors: Tensor) -> tuple[np.ndarray | None, ...]:
        """The values of several tensors in one request (cached ones are not asked for again).

        >>> loss_v, y_v = c.values(loss, y)
        """
        plan = self._plan_values(tensors)
        return plan.finish(self._send(plan) if plan.payload is not None else None)

    def _fetch_values_sync(self, tensors: Sequence[Tensor]) -> None:
        self.values(*tensors)

    def _send(self, plan: Plan) -> Result:
        if self.embedded:
            return self._embedded_call(plan)
        assert self._http is not None
        out = self._outgoing(plan)
        req = out.first()
        attempt = 0
        while True:
            try:
                resp = self._http.request(req.method, req.path, headers=req.headers, content=req.content)
            except _HTTPX_ERRORS as e:
                delay = _retry_delay(self.retry, attempt, e, None)
                if delay is None:
                    raise _convert(e) from e
                log.info("retrying in %.2fs after %s", delay, type(e).__name__)
            else:
                whole = self._resend_whole(out, req, resp)
                if whole is not None:  # the server no longer has the graph: send all of it
                    req = whole
                    continue
                delay = _retry_delay(self.retry, attempt, None, resp)
                if delay is None:
                    return self._answer(out, resp)
                log.info("retrying in %.2fs after HTTP %d", delay, resp.status_code)
                resp.close()
            time.sleep(delay)
            attempt += 1


# ---------------------------------------------------------------- the async shell
class AsyncClient(AsyncFunctional, _BaseClient):
    """The async twin of :class:`Client`: same constructor, same method names, awaitable requests.

    Tensors record as with :class:`Client`; fetch values with ``await c.values(...)`` (``.numpy()``
    only returns values already fetched).

    >>> async with AsyncClient("http://127.0.0.1:8000") as c:
    ...     w = c.tensor(0.5, requires_grad=True)
    ...     (gw,) = await c.autograd_grad((w * 3.0 - 1.0) ** 2, [w])
    """

    def _open(self, transport: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url or "", timeout=self.timeout, transport=transport)

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        if self._http is not None:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def autograd_grad(self, outputs: Any, inputs: Any, grad_outputs: Any = None,
                            retain_graph: bool | None = None, create_graph: bool = False,
                            only_inputs: bool = True, allow_unused: bool | None = None,
                            is_grads_batched: bool = False, materialize_grads: bool = False, *,
                            return_values: Sequence[Tensor] | None = None) -> Any:
        """Async :meth:`Client.autograd_grad`."""
        call = self._grad_call(outputs, inputs, grad_outputs, retain_graph, create_graph,
                               allow_unused, is_grads_batched, materialize_grads)
        plan = self._plan_grad(call, return_values)
        return plan.finish(await self._send(plan) if plan.payload is not None else None)

    async def values(self, *tensors: Tensor) -> tuple[np.ndarray | None, ...]:
        """Async :meth:`Client.values`."""
        plan = self._plan_values(tensors)
        return plan.finish(await self._send(plan) if plan.payload is not None else None)

    def _fetch_values_sync(self, tensors: Sequence[Tensor]) -> None:
        names = ", ".join(repr(t.name) for t in tensors)
        raise RuntimeError(f"the value of {names} has not been fetched: use `await client.values(...)` "
                           "with an AsyncClient")

    async def _send(self, plan: Plan) -> Result:
        if self.embedded:
            # Engine work off the event loop, as the server does.
            return await asyncio.to_thread(self._embedded_call, plan)
        assert self._http is not None
        out = self._outgoing(plan)
        req = out.first()
        attempt = 0
        while True:
            try:
                resp = await self._http.request(req.method, req.path, headers=req.headers,
                                                content=req.content)
            except _HTTPX_ERRORS as e:
                delay = _retry_delay(self.retry, attempt, e, None)
                if delay is None:
                    raise _convert(e) from e
                log.info("retrying in %.2fs after %s", delay, type(e).__name__)
            else:
                whole = self._resend_whole(out, req, resp)
                if whole is not None:  # the server no longer has the graph: send all of it
                    req = whole
                    continue
                delay = _retry_delay(self.retry, attempt, None, resp)
                if delay is None:
                    return self._answer(out, resp)
                log.info("retrying in %.2fs after HTTP %d", delay, resp.status_code)
                await resp.aclose()
            await asyncio.sleep(delay)
            attempt += 1

