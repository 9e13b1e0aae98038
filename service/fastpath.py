"""The cached-header fast path: a request whose header was seen before skips validation and planning.

A request's *header* is everything but its tensor values: the graph (by its hash), the input names,
datatypes, shapes and ``requires_grad`` flags, how each tensor travels (``data``, ``b64``, binary
and its byte count) and the top-level call. After a request ran through the full path, its cached
plan keeps a :class:`FastPlan` under :func:`header_key`; a later request with the same key is
neither validated by pydantic nor planned again: its tensors are decoded straight from the parsed
body into the plan's inputs (``np.frombuffer`` on binary and base64 bytes), the static check's
report is reused, and the plan runs compiled (:mod:`service.compiled`) or eagerly.

What protects the service still happens on this path: body and JSON limits and the API key come
before it (service.routers.grad, service.deps), the engine thread gate and the deadline around
it, and here every tensor is decoded against its declared datatype and shape (a wrong byte count
or element count is refused) and checked for non-finite values. Anything the fast decode does not
accept sends the request down the full path, which answers the same problem+json as without a
fast path. Values the engine computes from finite inputs are not checked again (only
``check_finite`` asks for that, and such plans are never compiled).

>>> key = header_key(payload, "sha256:...")   # doctest: +SKIP
>>> fp = entry.fast.get(key)                  # doctest: +SKIP
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import orjson

from . import codec, preflight, stats
from .compiled import CompiledRun, compilable
from .executor import Plan, TensorIn, numel
from .run import Checked
from .settings import Settings
from .wire import unbox

__all__ = ["FastPlan", "header_key", "MAX_HEADERS"]

MAX_HEADERS = 16  # fast plans kept per cached plan (distinct shapes/calls of one graph)

_VALUE_KEYS = ("data", "b64")


def _kind(v: Any) -> str | None:
    t = type(v)
    if t is list:
        return "list"
    if t is float or t is int:
        return "number"
    if t is str:
        return "str"
    return None  # null, objects, booleans: the full path decides


def _skeleton(t: Any) -> dict | None:
    if type(t) is not dict:
        return None
    out = {}
    for k, v in t.items():
        if k in _VALUE_KEYS:
            kind = _kind(v)
            if kind is None:
                return None
            out[k] = kind
        else:
            out[k] = v
    return out


def header_key(payload: dict[str, Any], graph_key: str) -> bytes | None:
    """The request's header as bytes (everything but the tensor values), or None when the
    request cannot take the fast path (inline ``grad_outputs`` tensors, an ONNX model, a body
    that is not plain JSON objects)."""
    graph = payload.get("graph")
    if type(graph) is not dict or "onnx" in graph:
        return None
    inputs = graph.get("inputs")
    if type(inputs) is not list:
        return None
    skel = []
    for t in inputs:
        s = _skeleton(t)
        if s is None:
            return None
        skel.append(s)
    go = payload.get("grad_outputs")
    if type(go) is list and any(type(g) is dict for g in go):
        return None
    rest = {k: v for k, v in graph.items() if k not in ("nodes", "source", "inputs")}
    top = {k: v for k, v in payload.items() if k != "graph"}
    try:
        return orjson.dumps([graph_key, skel, rest, top], option=orjson.OPT_SORT_KEYS)
    except TypeError:  # not JSON data (payloads built in Python)
        return None


class FastMiss(Exception):
    """The fast decode did not accept the request: the full path decides."""


class FastPlan:
    """A cached plan for one header: the validated request (values dropped), its tensors' specs,
    the static check's report, and the compiled program (made on the first fast run)."""

    def __init__(self, plan: Plan, report: Any, settings: Settings) -> None:
        self.plan = plan
        req = plan.request
        self.specs = [(t.name, t.source, t.datatype, list(t.shape),
                       t.parameters.binary_data_size if t.source == "binary" and t.parameters else 0)
                      for t in req.graph.inputs]
        # float inputs sent as flat JSON lists of numbers: decoded without codec's checks for
        # the other cases (strings for non-finite values, nesting, integer ranges, booleans)
        self.floats = [(codec.np_dtype(t.datatype).newbyteorder("="), numel(t.shape), tuple(t.shape))
                       if t.source == "data" and codec.np_dtype(t.datatype).kind == "f" else None
                       for t in req.graph.inputs]
        self.binary_bytes = sum(sp[4] for sp in self.specs)
        self.elements = sum(numel(t.shape) for t in req.graph.inputs)
        self.bytes_in = stats.bytes_in(req)
        # integer and boolean inputs may decide shapes and errors: their static check runs per
        # request (cached by value in service.preflight); float inputs never change it
        floats = all(codec.np_dtype(t.datatype).kind == "f" for t in req.graph.inputs)
        self.report = report if floats else None
        self.why_eager = compilable(plan, report, settings)
        self.compiled: CompiledRun | None = None
        self._lock = threading.Lock()

    def decode(self, payload: dict[str, Any], rest: memoryview | None,
               excised: dict[str, memoryview]) -> dict[str, np.ndarray]:
        """The graph inputs of a request with this header (FastMiss where the full path decides)."""
        raw = payload["graph"]["inputs"]
        if rest is not None and len(rest) != self.binary_bytes:
            raise FastMiss("binary part size")
        if rest is None and self.binary_bytes:
            raise FastMiss("no binary part")
        out: dict[str, np.ndarray] = {}
        try:
            with np.errstate(over="ignore"):  # once for all tensors (codec.decode_data's own)
                self._decode(raw, rest, excised, out)
        except (codec.TensorDecodeError, KeyError, TypeError, ValueError):
            raise FastMiss("decode") from None
        return out

    def _decode(self, raw: list, rest: memoryview | None, excised: dict[str, memoryview],
                out: dict[str, np.ndarray]) -> None:
        off = 0
        for (name, source, datatype, shape, size), fl, t in zip(self.specs, self.floats, raw):
            if fl is not None:
                data = t["data"]
                if type(data) is list:
                    arr = np.array(data)
                    if arr.dtype.kind in "fi" and arr.size == fl[1] and (arr.ndim == 1 or arr.shape == fl[2]):
                        out[name] = arr.astype(fl[0], copy=False).reshape(fl[2])
                        continue
                out[name] = codec.decode_data_raw(data, datatype, shape)
            elif source == "data":
                out[name] = codec.decode_data_raw(t["data"], datatype, shape)
            elif source == "b64":
                text = unbox(t["b64"])
                if not isinstance(text, str):
                    raise FastMiss("b64")
                out[name] = codec.decode_b64(excised.get(text, text), datatype, shape)
            else:
                assert rest is not None
                out[name] = codec.decode_bytes(rest[off:off + size], datatype, shape)
                off += size

    def checked(self, decoded: dict[str, np.ndarray], s: Settings, deadline: float | None) -> Checked:
        """The static check's result for these inputs: non-finite inputs are refused here (the
        same 422 as the full path), the shapes and costs were checked with this header before."""
        plan = self.plan
        if self.report is None:
            rep = preflight.check(plan, decoded, s, deadline, {})
        else:
            preflight.check_values(plan, decoded, {})
            rep = self.report
        return Checked(plan, decoded, rep, {}, s, deadline)

    def runner(self, s: Settings) -> CompiledRun | None:
        """The compiled program, made on first use; None when this header runs eagerly."""
        if self.why_eager is not None:
            return None
        cr = self.compiled
        if cr is None:
            with self._lock:
                if self.compiled is None:
                    self.compiled = CompiledRun(self.plan, s)
                cr = self.compiled
        if cr.eager is not None:
            return None
        return cr


def template(plan: Plan) -> Plan:
    """``plan`` with its request's tensor values dropped (a fast plan keeps only the header)."""
    req = plan.request
    graph = req.graph
    inputs = [t.model_copy(update={"data": 0}) if t.source == "data" else
              t.model_copy(update={"b64": ""}) if t.source == "b64" else t for t in graph.inputs]
    go = req.grad_outputs
    assert not (isinstance(go, list) and any(isinstance(g, TensorIn) for g in go))
    return Plan(req.model_copy(update={"graph": graph.model_copy(update={"inputs": inputs})}), plan.graph)
