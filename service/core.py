"""The transport-free core of ``POST /v1/grad``: payload in, response object out.

The HTTP layer (:mod:`service.app`) and the client's embedded mode both call this module; it
imports neither fastapi nor starlette. Errors are :mod:`service.errors` exceptions.

>>> out = evaluate({"graph": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2],
...                                       "data": [1.0, 2.0], "requires_grad": True}],
...                           "source": "loss = sum(x * x)"},
...                 "outputs": ["loss"], "inputs": ["x"], "return": ["loss"]})
>>> out["grads"][0]["data"], out["values"]["loss"]["data"]
([2.0, 4.0], [5.0])
"""

from __future__ import annotations

import difflib
import re
import secrets
import threading
import time
from typing import Any, get_args

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError

import engine
from engine._functional_inplace import FUNCTIONAL_INPLACE, SETITEM

from . import codec, isolate, onnx_graph, pool, stats
from .compiled import CHEAP_MEMORY_BYTES, CHEAP_WORK, CompiledRun, compilable
from .errors import BadRequest, InvalidRequest, PayloadTooLarge, PlanNotCached, RequestTimeout
from .executor import Plan, Result, binary_tensors, build_plan, numel, request_tensors
from .fastpath import MAX_HEADERS, FastMiss, FastPlan, header_key, template
from .plan_cache import CachedPlan, PlanCache, graph_hash
from .run import Checked, checked_plan, execute
from .settings import Settings
from .wire import GradRequest, unbox

__all__ = ["evaluate", "evaluate_binary", "parse_request", "parse_json", "process_body", "Job", "list_ops",
           "JSON_MEDIA_TYPE", "BINARY_MEDIA_TYPE", "HEADER_LENGTH", "GRAPH_HASH_HEADER",
           "INLINE_MAX_BODY_BYTES", "PLAN_HEADER"]

ENGINE_THREAD_PREFIX = "gradserve-engine"  # service.gate's threads
JSON_MEDIA_TYPE = "application/json"
BINARY_MEDIA_TYPE = "application/octet-stream"
HEADER_LENGTH = "Inference-Header-Content-Length"
# Sent with a response whose graph plan this process has cached: the client may send that hash
# instead of the graph next time (service.plan_cache).
GRAPH_HASH_HEADER = "Gradserve-Graph-Hash"
# How the request ran: "compiled" (a cached header's compiled program), "cached" (a cached
# header, eagerly) or "full" (validated and planned; service.fastpath).
PLAN_HEADER = "Gradserve-Plan"

_UNION_LABELS = {"str", "int", "bool", "float", "none", "Ref", "TensorIn", "op", "grad", "jacobian",
                 "hessian", "product", "func.grad", "func.jacrev", "func.jacfwd", "func.hessian",
                 "func.product", "vmap"}


# ---------------------------------------------------------------- parsing
# Parsed JSON takes up to this many times its text's size in Python objects (lists of empty lists
# nested a few deep; measured with orjson, rounded up).
JSON_INFLATION = 40


def json_limit(s: Settings) -> int:
    """The most JSON text one request may have parsed: ``max_json_body_bytes``, and no more than
    what inflates to ``max_memory_bytes``."""
    return min(s.max_json_body_bytes, max(s.max_memory_bytes // JSON_INFLATION, 1024))


def parse_json(raw: bytes | memoryview, limit: int | None = None) -> dict[str, Any]:
    """Parse a JSON request body with orjson (BadRequest when it is not a JSON object).

    ``limit`` is ``max_json_body_bytes``: parsed JSON takes up to ~40 times its size in Python
    objects (``[[],[],...]``), so JSON text is bounded more tightly than bodies are."""
    if limit is not None and len(raw) > limit:
        raise PayloadTooLarge(f"the JSON text has {len(raw)} bytes; the limit max_json_body_bytes is {limit} "
                              f"(at most max_memory_bytes / {JSON_INFLATION}: parsing inflates JSON; send "
                              "big tensors as b64 or in a binary body)", limit="max_json_body_bytes",
                              loc=("body",))
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"malformed JSON: {e}", loc=("body",)) from None
    if not isinstance(obj, dict):
        raise BadRequest("the request body must be a JSON object", loc=("body",))
    return obj


def _clean_loc(loc: tuple) -> list[str | int]:
    out: list[str | int] = []
    for x in loc:
        if isinstance(x, str) and (x in _UNION_LABELS or "[" in x):
            continue  # pydantic's union-branch and tag labels say nothing to a user
        out.append(x)
    return out


def model_fields(root: type[BaseModel]) -> frozenset[str]:
    """Every field name (and alias) of a request model and the models it holds: what a misspelt
    key may have meant."""
    seen: set[type] = set()
    names: set[str] = set()

    def walk(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp in seen:
                return
            seen.add(tp)
            for name, f in tp.model_fields.items():
                names.add(f.alias or name)
                walk(f.annotation)
        for arg in get_args(tp):
            walk(arg)

    walk(root)
    return frozenset(names)


_WIRE_FIELDS = model_fields(GradRequest)


def extra_field_msg(loc: tuple, msg: str, pool: frozenset[str] = _WIRE_FIELDS) -> str:
    """pydantic's "Extra inputs are not permitted", with a did-you-mean for a misspelt key."""
    name = loc[-1] if loc else None
    if not isinstance(name, str):
        return msg
    close = difflib.get_close_matches(name, pool, n=3, cutoff=0.7)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown field{hint}"


def parse_request(payload: Any) -> GradRequest:
    """Validate the JSON header against the v1 schema (InvalidRequest naming each field)."""
    if isinstance(payload, GradRequest):
        return payload
    if not isinstance(payload, dict):
        raise BadRequest("the request must be a JSON object", loc=("body",))
    try:
        return GradRequest.model_validate(payload)
    except ValidationError as e:
        errors = []
        for err in e.errors(include_url=False, include_input=False, include_context=False):
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = extra_field_msg(err["loc"], msg)
            errors.append({"loc": _clean_loc(err["loc"]), "msg": msg})
        first = errors[0]
        where = ".".join(str(x) for x in first["loc"]) or "request"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InvalidRequest(f"{where}: {first['msg']}{more}", errors=errors) from None


# ---------------------------------------------------------------- planning (with the plan cache)
def _graph(payload: Any) -> Any:
    return payload.get("graph") if isinstance(payload, dict) else None


def _by_hash(graph: Any) -> bool:
    """Whether a raw graph is given by hash (``"hash": null`` is absent, as the schema allows)."""
    return isinstance(graph, dict) and graph.get("hash") is not None


def _cache_key(payload: Any) -> str | None:
    """The plan-cache key of a raw request: the hash it names, or the hash of its graph."""
    graph = _graph(payload)
    if _by_hash(graph):
        return graph["hash"] if isinstance(graph["hash"], str) else None
    return graph_hash(graph)


def _plan(payload: Any, s: Settings, cache: PlanCache | None, key: str | None
          ) -> tuple[GradRequest, Plan, CachedPlan | None]:
    """Validate the header and plan the request, taking the compiled graph from the cache.

    A graph the cache knows is not validated or compiled again (its hash covers all of it): only
    its inputs and the top-level call are checked. A graph given by hash must be in the cache.
    """
    graph = _graph(payload)
    if _by_hash(graph):
        req = parse_request(payload)  # checks the hash's form, and everything else
        entry = cache.get(req.graph.hash) if cache is not None else None  # type: ignore[arg-type]
        if entry is None:
            why = "it is not (or no longer) in this server's plan cache" if cache is not None and \
                cache.maxsize > 0 else "this server keeps no plans (plan_cache_size is 0)"
            raise PlanNotCached(f"graph.hash {req.graph.hash}: {why}; send the whole graph",
                                loc=("graph", "hash"))
        return req, build_plan(req, s, entry.plan), entry
    entry = cache.get(key) if cache is not None and key is not None else None
    if entry is not None:  # validate the rest of the graph object, not its (known) nodes
        body = "nodes" if graph.get("nodes") is not None else "source"
        payload = {**payload, "graph": {**{k: v for k, v in graph.items() if k != body}, "hash": key}}
    req = parse_request(payload)
    if entry is not None:
        return req, build_plan(req, s, entry.plan), entry
    plan = build_plan(req, s)
    if cache is not None and key is not None:
        entry = cache.put(key, plan.graph)
    return req, plan, entry


# ---------------------------------------------------------------- encoding
def _wire_array(arr: np.ndarray) -> np.ndarray:
    try:
        codec.datatype_of(arr)
        return arr
    except TypeError:  # int8/uint8/int16 and friends travel widened
        return arr.astype(np.int64 if arr.dtype.kind in "iu" else np.float64)


# Base64 payloads from this size on are not written by orjson (which would scan and copy them)
# but spliced into its output afterwards, in place of a marker it cannot have been given.
SPLICE_MIN_BYTES = 1 << 20
_SPLICE_NONCE = secrets.token_hex(8)


class _Splice:
    """Stands for ``spliced[index]`` (base64 bytes) in a response object until it is written."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def _splice_marker(obj: Any) -> str:
    if isinstance(obj, _Splice):
        return f"\0{_SPLICE_NONCE}:{obj.index}\0"
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def _json_parts(obj: Any, spliced: list[bytes]) -> list[bytes]:
    """``obj`` as JSON, in pieces: orjson's output cut where the big base64 strings go."""
    text = orjson.dumps(obj, default=_splice_marker, option=orjson.OPT_SERIALIZE_NUMPY)
    parts, pos = [], 0
    for i, b64 in enumerate(spliced):
        marker = f"\\u0000{_SPLICE_NONCE}:{i}\\u0000".encode()  # as orjson escapes it
        at = text.index(marker, pos)
        parts += [text[pos:at], b64]  # the marker's quotes stay: base64 needs no escaping
        pos = at + len(marker)
    parts.append(text[pos:])
    return parts


def _tensor(name: str, arr: np.ndarray, encoding: str, blobs: list | None, numpy_ok: bool,
            spliced: list[bytes] | None = None) -> dict:
    arr = _wire_array(arr)
    out: dict[str, Any] = {"name": name, "datatype": codec.datatype_of(arr), "shape": list(arr.shape)}
    if blobs is not None:
        raw = codec.raw_bytes(arr)
        out["parameters"] = {"binary_data_size": raw.nbytes}
        blobs.append(raw)
    elif encoding == "b64" and spliced is not None and arr.nbytes >= SPLICE_MIN_BYTES:
        out["b64"] = _Splice(len(spliced))
        spliced.append(codec.b64_bytes(arr))
    elif encoding == "b64":
        out["b64"] = codec.b64_data(arr)
    else:
        out["data"] = codec.json_data(arr, numpy_ok=numpy_ok)
    return out


def _encode(result: Result, req: GradRequest, blobs: list | None, numpy_ok: bool,
            spliced: list[bytes] | None = None) -> dict[str, Any]:
    enc = req.response_encoding
    names = [req.inputs] if isinstance(req.inputs, str) else list(req.inputs or [])
    grads = [None if g is None else _tensor(names[i], g, enc, blobs, numpy_ok, spliced)
             for i, g in enumerate(result.grads)]
    values = {k: None if v is None else _tensor(k, v, enc, blobs, numpy_ok, spliced)
              for k, v in result.values.items()}
    return {"grads": grads, "values": values}


def _run(payload: Any, blobs: list | None, rest: memoryview | None, settings: Settings | None,
         deadline: float | None, cache: PlanCache | None = None, key: str | None = None,
         excised: dict[str, memoryview] | None = None, hkey: bytes | None = None
         ) -> tuple[GradRequest, Result, str | None]:
    """Validate, plan and run a request (the full path); with ``hkey`` (its header,
    service.fastpath) a run that succeeds leaves a fast plan for the next request like it."""
    s = settings or Settings()
    if deadline is None:
        deadline = time.monotonic() + s.request_timeout_s
    if cache is not None and key is None:
        key = _cache_key(payload)
    if onnx_graph.is_onnx(payload, cache):  # the model's bytes are needed to plan it
        req, plan, entry, key = onnx_graph.plan(parse_request(payload), s, cache, rest, blobs,
                                                excised or {})
    else:
        req, plan, entry = _plan(payload, s, cache, key)
    start = time.perf_counter()
    if rest is not None:  # a binary body: cut the remainder into blobs, in tensor order
        blobs, off = [], 0
        for t, _ in binary_tensors(req):
            size = t.parameters.binary_data_size if t.parameters else 0
            blobs.append(rest[off:off + size])
            off += size
        if off != len(rest):
            raise BadRequest(f"the binary part has {len(rest)} bytes but the header's binary_data_size "
                             f"values add up to {off}", loc=("body",))
    b64 = None
    if excised:  # the base64 text cut out of the body, for the tensors whose marker took its place
        b64 = {id(t): excised[t.b64] for t, _ in request_tensors(req) if t.b64 in excised}
    t0, result, isolated = time.perf_counter(), None, False
    try:
        # the static check here (its caches stay warm), the computation maybe in a child
        checked = checked_plan(plan, blobs, s, deadline, b64=b64)
        result, seconds, isolated = _execute(checked, s, deadline, None, key)
    finally:  # metrics and tracing listen here (service.stats); a no-op without observers
        stats.report_run(plan, result, time.perf_counter() - t0)
    if entry is not None:  # what the inline dispatch (Job.runs_fast) learns from
        _record(entry, result.report, None if isolated else t0 - start + seconds, _input_elements(req), s)
        if hkey is not None and not req.graph.onnx:
            entry.add_fast(hkey, FastPlan(template(plan), result.report, s), MAX_HEADERS)
    return req, result, key


def _record(entry: CachedPlan, rep: Any, seconds: float | None, elements: int, s: Settings) -> None:
    # a run in a child process teaches the static cost only (its time includes the fork's)
    entry.record(seconds, elements, s.inline_max_ms / 1e3,
                 static_ok=rep is not None and rep.work <= s.inline_max_ms * INLINE_WORK_PER_MS,
                 value_dependent=rep is None or rep.value_dependent)


def _execute(checked: Checked, s: Settings, deadline: float | None, compiled: CompiledRun | None,
             key: str | None = None) -> tuple[Result, float, bool]:
    """Run a checked plan: through ``compiled`` when given (in this process: see
    service.compiled.COMPILED_MEMORY_BYTES), else in a worker process (a pool worker warm for the
    graph ``key``) when isolated and not statically cheap, else here (with ``compile="always"``,
    through a program traced for this request and replayed at once). Returns (result, seconds,
    whether it ran in another process)."""
    # a compiled program's memory is known (service.compiled.COMPILED_MEMORY_BYTES): no child
    if compiled is None and _isolated(s) and not statically_cheap(checked.report):
        result, seconds = _run_isolated(checked, key, s)
        return result, seconds, True
    if compiled is None and s.compile == "always" and compilable(checked.plan, checked.report, s) is None:
        compiled = CompiledRun(checked.plan, s)
        result = compiled(checked)  # the trace (eager, on probes)
        if not compiled.replays:
            return result, 0.0, False
    if compiled is not None:
        if deadline is not None and time.monotonic() > deadline:
            raise RequestTimeout(f"the request ran past request_timeout_s={s.request_timeout_s:g} before "
                                 "it started")
        result, seconds = _timed(compiled, checked)
        return result, seconds, False
    result, seconds = _timed(execute, checked)
    return result, seconds, False


def _run_fast(payload: dict[str, Any], rest: memoryview | None, excised: dict[str, memoryview],
              s: Settings, deadline: float | None, cache: PlanCache, key: str, hkey: bytes
              ) -> tuple[GradRequest, Result, str] | None:
    """Run a request whose header a cached plan has seen (service.fastpath): (request, result,
    "compiled" or "cached"), or None when the full path must take it."""
    entry = cache.peek(key)
    fp = entry.fast.get(hkey) if entry is not None else None
    if fp is None:
        return None
    try:
        decoded = fp.decode(payload, rest, excised)
    except FastMiss:
        return None
    cache.get(key)  # a hit: counted, and the plan is the most recently used
    checked = fp.checked(decoded, s, deadline)
    compiled = fp.runner(s)
    t0, result = time.perf_counter(), None
    try:
        result, seconds, isolated = _execute(checked, s, deadline, compiled, key)
    finally:
        stats.report_run(fp.plan, result, time.perf_counter() - t0, fp.bytes_in)
    # a compiled replay's time follows its static cost (no Python per node), so that cost alone
    # decides whether it runs inline: a replay that a busy machine preempted teaches nothing
    timed = None if isolated or compiled is not None else seconds
    _record(entry, result.report, timed, fp.elements, s)
    return fp.plan.request, result, "compiled" if compiled is not None and not isolated else "cached"


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


# A computation whose static check found it this cheap (service.compiled: about 0.1 s of work,
# 64 MiB of memory), with every shape known (none sized by values, no op from outside the
# engine), runs in the engine thread: forking costs more than it (a millisecond or more), and an
# estimate that cannot miss by much needs no enforcement.


def statically_cheap(rep: Any) -> bool:
    """Whether a checked plan may run in the server process (see :data:`CHEAP_WORK`)."""
    return (not rep.value_dependent and rep.work <= CHEAP_WORK
            and rep.memory_bytes <= CHEAP_MEMORY_BYTES)


def isolation_bytes(s: Settings) -> int:
    """The most a request's child process may add to its address space (RLIMIT_AS)."""
    return int(1.25 * s.max_memory_bytes) + 64 * (1 << 20)


def _isolated(s: Settings) -> bool:
    """Engine threads (service.gate) run requests' computations in worker (or child) processes;
    the event loop (inline, statically cheap plans) and the embedded client run them in place."""
    return s.isolation != "thread" and isolate.available() and \
        threading.current_thread().name.startswith(ENGINE_THREAD_PREFIX)


def _run_isolated(checked: Any, key: str | None, s: Settings) -> tuple[Result, float]:
    """A checked plan in a pre-forked worker of :data:`service.pool.POOL` (``process``), warm for
    the graph ``key``, or in a child process forked for it (``fork``)."""
    if s.isolation == "process" and pool.available():
        return pool.POOL.run(checked, key, isolation_bytes(s), s.pool_max_rss_bytes)
    return isolate.run_forked(lambda: _timed(execute, checked), checked.deadline, isolation_bytes(s))


def _input_elements(req: GradRequest) -> int:
    return sum(numel(t.shape) for t in req.graph.inputs)


# ---------------------------------------------------------------- public entry points
def evaluate(payload: dict[str, Any], blobs: list[bytes] | None = None, settings: Settings | None = None,
             *, deadline: float | None = None, plan_cache: PlanCache | None = None) -> dict[str, Any]:
    """Evaluate a v1 request; return the v1 response object (plain JSON types).

    ``payload`` is the parsed JSON request; tensors carry ``data``, ``b64``, or
    ``parameters.binary_data_size`` with their bytes in ``blobs`` (graph inputs first, then
    inline grad_outputs, in order). The response is ``{"grads": [...], "values": {...}}`` with
    tensors as ``data`` lists (non-finite as "NaN"/"Infinity"/"-Infinity") or ``b64`` per
    ``response_encoding``. ``deadline`` is a ``time.monotonic()`` instant (default: now plus
    ``settings.request_timeout_s``). ``plan_cache`` keeps compiled graphs between calls (and
    serves graphs given by hash). Raises :class:`service.errors.GradserveError` subclasses.
    """
    req, result, _ = _run(payload, blobs, None, settings, deadline, plan_cache)
    return _encode(result, req, None, numpy_ok=False)


def evaluate_binary(payload: dict[str, Any], blobs: list[bytes] | None = None,
                    settings: Settings | None = None, *, deadline: float | None = None,
                    plan_cache: PlanCache | None = None) -> tuple[dict[str, Any], list[memoryview]]:
    """Like :func:`evaluate`, with every result tensor as a binary blob (Triton layout):
    each tensor has ``parameters.binary_data_size`` and its bytes are the matching blob."""
    req, result, _ = _run(payload, blobs, None, settings, deadline, plan_cache)
    out_blobs: list[memoryview] = []
    return _encode(result, req, out_blobs, numpy_ok=False), out_blobs


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


# Base64 strings of a JSON body from this size on are cut out before orjson parses the rest:
# parsing checks and copies every character into a str (about 25 ms for a 16 MiB tensor), while
# decoding reads the base64 where it lies in the body. A marker no client can guess takes each
# string's place, and must come back as the "b64" of a graph input or grad_outputs tensor;
# otherwise (a "b64" key elsewhere, escapes in the string) the body is parsed whole as sent.
EXCISE_MIN_BYTES = 1 << 20
_EXCISE_NONCE = secrets.token_hex(8)
_AFTER_B64_KEY = re.compile(rb'[ \t\r\n]*:[ \t\r\n]*(?:\[[ \t\r\n]*)?"')  # R's ["..."] too


def _parse_excising(body: bytes | bytearray, limit: int | None = None
                    ) -> tuple[dict[str, Any], dict[str, memoryview]]:
    """A JSON body parsed with its big base64 strings cut out, and those strings by marker
    (``limit``: max_json_body_bytes, for the text parsed, without the strings cut out)."""
    if len(body) < EXCISE_MIN_BYTES:
        return parse_json(body, limit), {}
    view = memoryview(body)
    pieces: list[Any] = []
    excised: dict[str, memoryview] = {}
    pos = scan = 0
    while (k := body.find(b'"b64"', scan)) >= 0:
        m = _AFTER_B64_KEY.match(body, k + 5)
        if m is None:
            scan = k + 5
            continue
        start = m.end()
        end = body.find(b'"', start)
        if end < 0:
            break
        if end - start >= EXCISE_MIN_BYTES and body.find(b"\\", start, end) < 0:
            marker = f"{_EXCISE_NONCE}:{len(excised)}"
            pieces += [view[pos:start], marker.encode()]
            excised[marker] = view[start:end]
            pos = end
        scan = end + 1
    if not excised:
        return parse_json(body, limit), {}
    pieces.append(view[pos:])
    payload = parse_json(b"".join(pieces), limit)
    if sorted(_markers(payload)) != sorted(excised):
        return parse_json(body, limit), {}
    return payload, excised


def _markers(payload: dict[str, Any]) -> list[str]:
    """The excision markers found where tensors keep their b64 (unvalidated payload)."""
    graph = payload.get("graph")
    tensors = graph.get("inputs") if isinstance(graph, dict) else None
    tensors = tensors if isinstance(tensors, list) else []
    if isinstance(graph, dict) and isinstance(graph.get("onnx"), dict):  # a model's b64 too
        tensors = [graph["onnx"], *tensors]
    go = payload.get("grad_outputs")
    if isinstance(go, list):
        tensors = [*tensors, *go]
    found = []
    for t in tensors:
        v = unbox(t.get("b64")) if isinstance(t, dict) else None
        if isinstance(v, str) and v.startswith(_EXCISE_NONCE):
            found.append(v)
    return found


def _split_body(body: bytes | bytearray, media_type: str, header_length: str | None,
                json_limit: int | None = None
                ) -> tuple[dict[str, Any], memoryview | None, dict[str, memoryview]]:
    """The parsed JSON header of a body, the binary remainder of a Triton-layout body, and the
    base64 strings cut out of a JSON body (:func:`_parse_excising`)."""
    rest, excised = None, {}
    if media_type == BINARY_MEDIA_TYPE:
        if header_length is None:
            raise BadRequest(f"a binary body needs the {HEADER_LENGTH} header",
                             loc=("headers", HEADER_LENGTH))
        try:
            n = int(header_length)
        except ValueError:
            n = -1
        if not 0 <= n <= len(body):
            raise BadRequest(f"{HEADER_LENGTH} must be an integer between 0 and the body length "
                             f"({len(body)}), got {header_length[:40]!r}", loc=("headers", HEADER_LENGTH))
        view = memoryview(body).toreadonly()  # tensors decoded from it are read-only views
        payload: Any = parse_json(view[:n], json_limit)
        rest = view[n:]
    else:
        payload, excised = _parse_excising(body, json_limit)
    return payload, rest, excised


# The static cost (units of work, about a nanosecond each) a plan may have to run inline: the
# inline budget inline_max_ms in units, with no margin for a slow machine (timing decides too).
INLINE_WORK_PER_MS = 1e6

# Bodies up to this size may be parsed on the event loop to see whether their plan is cached and
# fast (Job.runs_fast); parsing them costs microseconds.
INLINE_MAX_BODY_BYTES = 64 * 1024


class Job:
    """One HTTP body of ``POST /v1/grad``: ``job()`` returns (response bytes, media type, extra
    headers). It is parsed once, planned once (through ``plan_cache``) and run once.

    ``job.runs_fast()`` says whether the job is small and its graph's cached plan ran within
    ``settings.inline_max_ms`` on inputs at least this big: then running it on the event loop
    is cheaper than handing it to an engine thread (about 0.1 ms on 2 cores). Anything else is
    meant for a worker thread.

    >>> job = Job(body, "application/json", None, False, settings, deadline, cache)  # doctest: +SKIP
    >>> content, media_type, headers = job() if job.runs_fast() else await gate.run(job, t)  # doctest: +SKIP
    """

    def __init__(self, body: bytes | bytearray, media_type: str, header_length: str | None,
                 binary_response: bool, settings: Settings | None = None, deadline: float | None = None,
                 plan_cache: PlanCache | None = None) -> None:
        self.body, self.media_type, self.header_length = body, media_type, header_length
        self.binary_response, self.settings, self.deadline = binary_response, settings, deadline
        self.plan_cache = plan_cache
        self._parsed: tuple[dict[str, Any], memoryview | None, dict[str, memoryview]] | None = None
        self._key: str | None = None

    def _split(self) -> tuple[dict[str, Any], memoryview | None, dict[str, memoryview]]:
        if self._parsed is None:
            limit = json_limit(self.settings) if self.settings is not None else None
            self._parsed = _split_body(self.body, self.media_type, self.header_length, limit)
            if self.plan_cache is not None:
                self._key = _cache_key(self._parsed[0])
        return self._parsed

    def runs_fast(self) -> bool:
        """True when the job should run inline (parses the body if it is small; may raise the
        same BadRequest the job would)."""
        s, cache = self.settings, self.plan_cache
        if cache is None or s is None or s.inline_max_ms <= 0 or len(self.body) > INLINE_MAX_BODY_BYTES:
            return False
        payload = self._split()[0]
        entry = cache.peek(self._key) if self._key is not None else None
        return entry is not None and entry.runs_fast(_raw_input_elements(payload))

    def __call__(self) -> tuple[bytes, str, dict[str, str]]:
        parts, media_type, headers = self.parts()
        return b"".join(parts), media_type, headers

    def parts(self) -> tuple[list[bytes | memoryview], str, dict[str, str]]:
        """Like calling the job, with the body as buffers to send one after another: tensor
        bytes and big base64 strings are not copied into one body."""
        payload, rest, excised = self._split()
        s, cache, key = self.settings or Settings(), self.plan_cache, self._key
        hkey = fast = None
        if cache is not None and key is not None and cache.maxsize > 0:
            hkey = header_key(payload, key)
            if hkey is not None and onnx_graph.is_onnx(payload, cache):
                hkey = None
            if hkey is not None:
                fast = _run_fast(payload, rest, excised, s, self.deadline, cache, key, hkey)
        if fast is not None:
            req, result, how = fast
        else:
            req, result, key = _run(payload, None, rest, s, self.deadline, cache, key, excised, hkey)
            how = "full"
        headers = {PLAN_HEADER: how}
        if key is not None and cache is not None and key in cache:
            headers[GRAPH_HASH_HEADER] = key
        if self.binary_response:
            blobs: list[memoryview] = []
            header = _dumps(_encode(result, req, blobs, numpy_ok=True))
            headers[HEADER_LENGTH] = str(len(header))
            return [header, *blobs], BINARY_MEDIA_TYPE, headers
        spliced: list[bytes] = []
        return _json_parts(_encode(result, req, None, True, spliced), spliced), JSON_MEDIA_TYPE, headers


def _raw_input_elements(payload: dict[str, Any]) -> int:
    """Elements of the graph inputs of an unvalidated request (a huge number if malformed)."""
    total = 0
    inputs = _graph(payload).get("inputs", [])
    for t in inputs if isinstance(inputs, list) else ():
        shape = t.get("shape") if isinstance(t, dict) else None
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            return 1 << 62
        total += numel(shape)
    return total


def process_body(body: bytes, media_type: str, header_length: str | None, binary_response: bool,
                 settings: Settings | None = None, deadline: float | None = None,
                 plan_cache: PlanCache | None = None) -> tuple[bytes, str, dict[str, str]]:
    """Handle one HTTP body end to end: (response bytes, media type, extra headers).

    ``media_type`` is application/json or application/octet-stream (then ``header_length`` is
    the Inference-Header-Content-Length value). Meant to run in a worker thread.
    """
    return Job(body, media_type, header_length, binary_response, settings, deadline, plan_cache)()


# ---------------------------------------------------------------- op listing
def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if np.isfinite(v) else repr(v)
    if isinstance(v, (tuple, list)) and all(isinstance(x, (bool, int, float, str)) for x in v):
        return list(v)
    return repr(v)


_OPS_CACHE: tuple[int, list[dict[str, Any]]] | None = None


def _op_entry(name: str, info: engine.OpInfo, canonical: str | None = None) -> dict[str, Any]:
    params = []
    for p in info.signature.parameters.values():
        item: dict[str, Any] = {"name": p.name, "kind": p.kind.name.lower()}
        if p.default is not p.empty:
            item["default"] = _jsonable(p.default)
        params.append(item)
    doc = (info.fn.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    return {"name": name, "canonical": canonical or info.name, "signature": f"{info.name}{info.signature}",
            "parameters": params, "differentiable": list(info.differentiable),
            "n_outputs": info.n_outputs, "doc": doc}


def list_ops() -> list[dict[str, Any]]:
    """Every op in ``engine.OPS`` (aliases included) with signature and differentiable args."""
    global _OPS_CACHE
    if _OPS_CACHE is not None and _OPS_CACHE[0] == len(engine.OPS):
        return _OPS_CACHE[1]
    out = [_op_entry(name, engine.OPS[name]) for name in sorted(engine.OPS)]
    _OPS_CACHE = (len(engine.OPS), out)
    return out


def list_inplace_ops() -> list[dict[str, Any]]:
    """torch's in-place op names a node may use (``add_``, ``zero_``, ...) and ``setitem``, each run
    as its functional twin (:mod:`engine._functional_inplace`); ``canonical`` is the out-of-place
    op it is built on, where there is one."""
    out = [_op_entry(name, info, engine.OPS[name[:-1]].name if name[:-1] in engine.OPS else name)
           for name, info in sorted(FUNCTIONAL_INPLACE.items())]
    out.append(_op_entry("setitem", SETITEM))
    return out
