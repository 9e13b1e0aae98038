"""Compiled graph plans, cached by the graph's content hash: soft state, a bounded LRU per process.

Building a plan (validating every node, binding signatures, ordering) costs about as much as
running a small graph, and clients send the same graph again and again with new inputs. So each
server process keeps the :class:`~service.executor.GraphPlan` of recently seen graphs, keyed by
:func:`graph_hash`. Nothing else is kept between requests: a replica that restarts, or another
replica, just builds the plan again, so replicas stay stateless.

The hash covers exactly what a plan depends on, the input names and the nodes (or source), and
not the tensor values, shapes or the top-level call. It is computed by the server from the graph
it compiles: a request that names a graph by ``{"hash": ...}`` can only find a plan the server
built from a graph with that very hash, so two different graphs cannot share a plan (short of a
SHA-256 collision). A hash the process does not know gets 409 ``plan-not-cached``, and the
client sends the whole graph again.

>>> g = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2]}],
...      "nodes": [{"op": "sum", "inputs": ["x"], "outputs": ["s"]}]}
>>> graph_hash(g) == graph_hash({"nodes": g["nodes"], "inputs": [{"name": "x", "shape": [9], "b64": ""}]})
True
>>> cache = PlanCache(maxsize=2)
>>> cache.get(graph_hash(g)) is None, cache.stats()["misses"]
(True, 1)
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson

from .executor import GraphPlan
from .stats import report_plan_cache
from .wire import unbox

__all__ = ["graph_hash", "canonical_graph", "PlanCache", "CachedPlan"]

HASH_PREFIX = "sha256:"


def canonical_graph(graph: Any) -> bytes | None:
    """The bytes the graph hash is taken over, or None when ``graph`` is not hashable as sent
    (not an object, not exactly one of nodes/source, an input without a string name): such a
    graph is invalid anyway, and validation says why.

    The canonical form is the JSON object ``{"inputs": [name, ...], "nodes": [...]}`` (or
    ``"source": "..."``) with keys sorted at every level, no whitespace, UTF-8, and numbers as
    orjson writes them: whitespace, key order and number spelling (``1.0`` vs ``1.00``) in the
    request do not change the hash.
    """
    if not isinstance(graph, dict) or "onnx" in graph:  # keyed by the model's hash (service.onnx_graph)
        return None
    body = [k for k in ("nodes", "source") if graph.get(k) is not None]  # null is absent
    inputs = graph.get("inputs", [])
    if len(body) != 1 or not isinstance(inputs, list):
        return None
    names = [unbox(t.get("name")) if isinstance(t, dict) else None for t in inputs]  # R's ["x"] too
    if not all(isinstance(n, str) for n in names):
        return None
    try:
        return orjson.dumps({"inputs": names, body[0]: graph[body[0]]}, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # not JSON data (only possible for payloads built in Python)
        return None


# Hashes of recent small canonical graphs by their bytes: a graph sent again (the common case)
# costs a dict lookup instead of SHA-256 and its hex digest. Bounded in entries and in the size
# of each key, cleared when full (a client sending ever new graphs only refills it).
_MEMO_MAX_ENTRIES = 1024
_MEMO_MAX_BYTES = 1 << 14
_memo: dict[bytes, str] = {}


def graph_hash(graph: Any) -> str | None:
    """``"sha256:<hex>"`` of :func:`canonical_graph`, or None when the graph is not hashable."""
    canon = canonical_graph(graph)
    if canon is None:
        return None
    known = _memo.get(canon)
    if known is not None:
        return known
    h = HASH_PREFIX + hashlib.sha256(canon).hexdigest()
    if len(canon) <= _MEMO_MAX_BYTES:
        if len(_memo) >= _MEMO_MAX_ENTRIES:
            _memo.clear()
        _memo[canon] = h
    return h


@dataclass(slots=True)
class CachedPlan:
    """A cached plan and what its runs taught: inputs of up to ``fast_elements`` elements (in
    total) ran within the inline budget, so such requests may skip the engine thread pool."""

    plan: GraphPlan
    fast_elements: int = -1
    slow_runs: int = 0  # slow runs in a row at sizes believed fast
    value_dependent: bool = False  # a run sized a result by values: never inline again
    cap: int = 1 << 62  # sizes above this were slow or statically costly: never inline
    # service.fastpath.FastPlan by header (service.fastpath.header_key): requests that differ
    # from one seen before only in tensor values skip validation and planning, and run compiled
    fast: dict[bytes, Any] = field(default_factory=dict)

    def record(self, seconds: float | None, elements: int, budget_s: float, static_ok: bool = True,
               value_dependent: bool = False) -> None:
        """Note one run (``elements``: input elements in total); races between threads only
        make the estimate a little stale.

        What makes a plan inline is its static cost: within the inline bound (``static_ok``)
        at a size, it may run inline at that size; above it, that size is out of reach. A plan
        whose shapes depend on values (``value_dependent``: the next request's values may size
        a bomb) is never inline again. Timing can only take a size away: ``seconds`` is the run's
        own time when it ran in this process (None when it ran in a child process, whose copy-
        on-write faults say nothing about an inline run). Two slow runs in a row at a size
        believed fast move it below that size for good: one alone is as likely a busy machine
        preempting the run, and sending a small request to an engine thread then costs it more
        (hand-off, GIL) than it ran."""
        if value_dependent:
            self.value_dependent = True
        if self.value_dependent:
            self.fast_elements = -1
            return
        if not static_ok:
            self.fast_elements = min(self.fast_elements, elements - 1)
            self.cap = min(self.cap, elements - 1)
            return
        if seconds is None or seconds <= budget_s:
            self.fast_elements = min(max(self.fast_elements, elements), self.cap)
            if seconds is not None:
                self.slow_runs = 0
        elif elements <= self.fast_elements:
            self.slow_runs += 1
            if self.slow_runs >= 2:
                self.fast_elements = self.cap = elements - 1  # stay below its size from now on
                self.slow_runs = 0

    def add_fast(self, key: bytes, fast: Any, limit: int) -> Any:
        """Keep ``fast`` under ``key`` (the first one kept wins), at most ``limit`` headers."""
        old = self.fast.get(key)
        if old is not None:
            return old
        if len(self.fast) >= limit:
            return fast  # a graph sent with ever new shapes: the first headers stay
        return self.fast.setdefault(key, fast)

    def runs_fast(self, elements: int) -> bool:
        return not self.value_dependent and elements <= self.fast_elements


class PlanCache:
    """A thread-safe LRU of :class:`CachedPlan` by graph hash, with hit/miss/eviction counters.

    ``maxsize`` 0 disables it (every lookup misses, nothing is kept).
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.hits = self.misses = self.evictions = 0
        self._plans: OrderedDict[str, CachedPlan] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._plans)

    def __contains__(self, key: object) -> bool:
        return key in self._plans

    def peek(self, key: str) -> CachedPlan | None:
        """The entry for ``key`` without counting a lookup or refreshing its place."""
        return self._plans.get(key)

    def get(self, key: str) -> CachedPlan | None:
        """The entry for ``key`` (a hit makes it the most recently used), counting hit or miss."""
        with self._lock:
            entry = self._plans.get(key)
            if entry is None:
                self.misses += 1
            else:
                self.hits += 1
                self._plans.move_to_end(key)
        report_plan_cache(entry is not None)  # Prometheus counters, summed over worker processes
        return entry

    def put(self, key: str, plan: GraphPlan) -> CachedPlan:
        """Keep ``plan`` under ``key``, evicting the least recently used beyond ``maxsize``."""
        entry = CachedPlan(plan)
        if self.maxsize <= 0:
            return entry
        with self._lock:
            old = self._plans.get(key)
            if old is not None:  # built twice concurrently: keep the first (and what it learnt)
                return old
            self._plans[key] = entry
            while len(self._plans) > self.maxsize:
                self._plans.popitem(last=False)
                self.evictions += 1
        return entry

    def discard(self, key: str) -> bool:
        """Drop ``key`` if present (counted as an eviction); True if it was there."""
        with self._lock:
            if self._plans.pop(key, None) is None:
                return False
            self.evictions += 1
            return True

    def stats(self) -> dict[str, int]:
        """Counters for metrics: ``hits``, ``misses``, ``evictions``, ``size``, ``maxsize``."""
        return {"hits": self.hits, "misses": self.misses, "evictions": self.evictions,
                "size": len(self._plans), "maxsize": self.maxsize}
