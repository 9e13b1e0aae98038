"""Graph identity on the wire, for the server's plan cache (sans I/O).

Recording the same computation twice gives fresh tensor names (``t_12``, ``mul_13``, ...), so
before a request is sent the client renames its automatically named tensors by position, in the
order the request lists them (``t_0``, ``t_1``, ``mul_2``, ...). The same computation then gives
the same nodes, byte for byte, and the same graph hash, whatever was recorded before it. Names the
user chose are kept.

The hash is the server's (``service.plan_cache``): SHA-256 over ``{"inputs": [names], "nodes":
[...]}`` with sorted keys and no whitespace, as orjson writes it. A server that has the graph's
plan cached says so with the ``Gradserve-Graph-Hash`` response header; the client remembers the
hashes servers confirmed (:class:`KnownGraphs`) and sends ``{"graph": {"hash": ..., "inputs":
[...]}}`` instead of the nodes next time. A server that has forgotten it answers 409
``plan-not-cached`` and the client sends the whole request again.

>>> payload = {"graph": {"inputs": [{"name": "t_7"}], "nodes": [
...     {"op": "exp", "inputs": ["t_7"], "outputs": ["exp_8"]}]}, "return": ["exp_8"]}
>>> wire, back = canonical(payload, user_names=set())
>>> wire["graph"]["nodes"], wire["return"], back
([{'op': 'exp', 'inputs': ['t_0'], 'outputs': ['exp_1']}], ['exp_1'], {'t_0': 't_7', 'exp_1': 'exp_8'})
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Set
from typing import Any

import orjson

__all__ = ["canonical", "rename", "graph_hash", "by_hash", "is_plan_miss", "restore_names", "KnownGraphs",
           "GRAPH_HASH_HEADER", "PLAN_NOT_CACHED"]

GRAPH_HASH_HEADER = "Gradserve-Graph-Hash"
PLAN_NOT_CACHED = "urn:gradserve:problem:plan-not-cached"

# Nodes whose attributes name tensors with plain strings (autograd_grad and the functional API);
# in every other node an attribute string is a literal and a tensor is {"ref": name}.
_NAMING_OPS = frozenset({"grad", "jacobian", "hessian", "vjp", "jvp", "hvp", "vhp", "func.grad",
                         "func.grad_and_value", "func.vjp", "func.jvp", "func.jacrev", "func.jacfwd",
                         "func.hessian", "vmap", "func.vmap"})
_TOP_NAMES = ("outputs", "inputs", "grad_outputs", "return")


def _names_map(graph: dict[str, Any], user_names: Set[str]) -> dict[str, str]:
    """Old -> new for every automatically named tensor, by position in the request."""
    order = [t["name"] for t in graph["inputs"]] + [n for node in graph["nodes"] for n in node["outputs"]]
    # an ONNX model's values are user names outside ``order``: automatic names must avoid them too
    taken = {n for n in order if n in user_names} | (set(user_names) if "onnx" in graph else set())
    mapping: dict[str, str] = {}
    k = 0
    for name in order:
        if name in user_names:
            continue
        prefix = name.rsplit("_", 1)[0]
        while f"{prefix}_{k}" in taken:
            k += 1
        mapping[name] = f"{prefix}_{k}"
        k += 1
    return mapping


def _arg(v: Any, m: dict[str, str], strings_are_names: bool) -> Any:
    """Rename inside one encoded argument: in ``inputs`` a string names a tensor; in attributes
    only ``{"ref": name}`` does (except for the ops in _NAMING_OPS)."""
    if isinstance(v, str):
        return m.get(v, v) if strings_are_names else v
    if isinstance(v, list):
        return [_arg(x, m, strings_are_names) for x in v]
    if isinstance(v, dict):
        if len(v) == 1 and "literal" in v:
            return v
        if len(v) == 1 and "ref" in v:
            return {"ref": m.get(v["ref"], v["ref"])}
        if len(v) == 1 and ("tuple" in v or "slice" in v):
            (key, val), = v.items()
            return {key: _arg(val, m, True)}
        return {k: _arg(x, m, strings_are_names) for k, x in v.items()}
    return v


def canonical(payload: dict[str, Any], user_names: Set[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The request with automatic names replaced by positional ones, and new -> old names."""
    m = _names_map(payload["graph"], user_names)
    return rename(payload, m), {new: old for old, new in m.items()}


def rename(payload: dict[str, Any], m: dict[str, str]) -> dict[str, Any]:
    """The request with tensor names replaced per ``m`` (old -> new) wherever they appear."""
    graph = payload["graph"]
    nodes = []
    for node in graph["nodes"]:
        new = dict(node)
        if "inputs" in node:
            new["inputs"] = _arg(node["inputs"], m, True)
        if "attributes" in node:
            new["attributes"] = _arg(node["attributes"], m, node["op"] in _NAMING_OPS)
        new["outputs"] = [m.get(n, n) for n in node["outputs"]]
        nodes.append(new)
    inputs = [{**t, "name": m.get(t["name"], t["name"])} for t in graph["inputs"]]
    out = {**payload, "graph": {**graph, "inputs": inputs, "nodes": nodes}}
    for key in _TOP_NAMES:
        if out.get(key) is not None:
            out[key] = _arg(out[key], m, True)
    return out


def graph_hash(graph: dict[str, Any]) -> str | None:
    """The server's hash of a graph (None if it cannot be computed, e.g. a 65-bit integer); for
    an ONNX graph, its model's hash (the server keeps the model, not the nodes, by hash)."""
    if "onnx" in graph:
        h = graph["onnx"].get("hash")
        return h if isinstance(h, str) else None
    try:
        canon = orjson.dumps({"inputs": [t["name"] for t in graph["inputs"]], "nodes": graph["nodes"]},
                             option=orjson.OPT_SORT_KEYS)
    except (TypeError, KeyError):
        return None
    return "sha256:" + hashlib.sha256(canon).hexdigest()


def by_hash(payload: dict[str, Any], h: str) -> dict[str, Any]:
    """The request naming its graph by hash: the inputs travel, the nodes do not (for an ONNX
    graph the model's bytes do not; its nodes still do)."""
    graph = payload["graph"]
    if "onnx" in graph:
        return {**payload, "graph": {**graph, "onnx": {"hash": h}}}
    return {**payload, "graph": {"inputs": payload["graph"]["inputs"], "hash": h}}


def is_plan_miss(status: int, content: bytes) -> bool:
    """True for the server's 409 ``plan-not-cached`` answer to a request by hash."""
    if status != 409:
        return False
    try:
        problem = orjson.loads(content)
    except orjson.JSONDecodeError:
        return False
    return isinstance(problem, dict) and problem.get("type") == PLAN_NOT_CACHED


def restore_names(values: dict[str, Any], back: dict[str, str]) -> dict[str, Any]:
    """Returned values keyed by the names the caller recorded."""
    return {back.get(k, k): v for k, v in values.items()}


class KnownGraphs:
    """The graph hashes a server has confirmed it holds, most recent last (bounded)."""

    def __init__(self, maxsize: int = 1024) -> None:
        self.maxsize = maxsize
        self._hashes: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, h: object) -> bool:
        return h in self._hashes

    def __len__(self) -> int:
        return len(self._hashes)

    def add(self, h: str) -> None:
        self._hashes[h] = None
        self._hashes.move_to_end(h)
        while len(self._hashes) > self.maxsize:
            self._hashes.popitem(last=False)

    def discard(self, h: str) -> None:
        self._hashes.pop(h, None)
