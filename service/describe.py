"""The structure of a request's graph, checked but not run: what ``POST /v1/graph`` answers.

The request is a ``POST /v1/grad`` body. Its graph is compiled (``graph.source`` into nodes) and
checked by the static pass (:mod:`service.preflight`, the engine's meta mode), which infers every
value's shape, datatype and whether it requires grad without computing anything; errors are the
ones ``/v1/grad`` would give, with the node and, for ``source``, the line and column. Values the
static pass cannot infer (shapes that depend on values) have ``shape`` null.

>>> d = describe({"graph": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3],
...                                      "data": [1, 2, 3], "requires_grad": True}],
...                         "source": "loss = sum(x * x)"}})
>>> [(n["op"], n["call"], n["outputs"][0]["shape"]) for n in d["nodes"]]
[('mul', 'mul(x, x)', [3]), ('sum', 'sum(%1)', [])]
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from . import codec, preflight
from .core import parse_request
from .errors import BadRequest
from .executor import Step, _decode, _Ref, _Seq, build_plan
from .plan_cache import graph_hash
from .settings import Settings

__all__ = ["describe"]


def _text(v: Any) -> str:
    """An argument as the expression form writes it."""
    if type(v) is _Ref:
        return v.name
    if type(v) is _Seq:
        inner = ", ".join(_text(x) for x in v.items)
        return f"({inner}{',' if len(v.items) == 1 else ''})" if v.is_tuple else f"[{inner}]"
    if v is Ellipsis:
        return "..."
    if isinstance(v, slice):
        parts = ["" if x is None else str(x) for x in (v.start, v.stop, v.step)]
        return ":".join(parts[:2] if v.step is None else parts)
    if isinstance(v, list):
        return f"[{', '.join(_text(x) for x in v)}]"
    if isinstance(v, str):
        return repr(v)
    return str(v)


def _refs_text(items: list[_Ref] | None, many: bool = True) -> str:
    if items is None:
        return "None"
    names = [_text(x) if x is not None else "None" for x in items]
    return f"[{', '.join(names)}]" if many else names[0]


def _call(st: Step) -> str:
    """The node as one call: ``mul(2, x)``, ``grad(f, [x], create_graph=True)``."""
    if st.functional is not None:
        fn = st.functional
        args = [f"{k}={_refs_text(*fn[k])}" for k in ("outputs", "inputs", "v", "args")
                if fn.get(k) is not None]
        defaults = {"argnums": 0, "in_dims": 0, "out_dims": 0, "randomness": "error"}
        args += [f"{k}={v!r}" for k, v in fn["flags"].items() if k in defaults and v != defaults[k]]
        return f"{fn['kind']}({', '.join(args)})"
    if st.grad is not None:
        g = st.grad
        args = [_refs_text(g["outputs"]), _refs_text(g["inputs"])]
        if g["grad_outputs"] is not None:
            args.append(f"grad_outputs={_refs_text(g['grad_outputs'])}")
        args += [f"{k}=True" for k in ("create_graph", "retain_graph", "allow_unused") if g.get(k)]
        return f"grad({', '.join(args)})"
    assert st.op is not None
    args = [_text(a) for a in st.args] + [f"{k}={_text(v)}" for k, v in st.kwargs.items()]
    return f"{st.op.name}({', '.join(args)})"


def _op(st: Step) -> str:
    if st.functional is not None:
        return st.functional["kind"]
    return "grad" if st.op is None else st.op.name


def _value(name: str, rep: preflight.Report) -> dict[str, Any]:
    shape = rep.shapes.get(name)
    dtype = rep.dtypes.get(name)
    try:
        datatype = None if dtype is None else codec.datatype_of(np.empty(0, dtype))
    except TypeError:
        datatype = str(dtype)
    return {"name": name, "shape": None if shape is None else list(shape), "datatype": datatype,
            "requires_grad": name in rep.requires_grad}


def describe(payload: dict[str, Any], settings: Settings | None = None,
             deadline: float | None = None) -> dict[str, Any]:
    """The graph of a ``/v1/grad`` request with every value's shape, datatype and requires_grad.

    Returns ``{"hash", "inputs": [value], "nodes": [{"index", "op", "call", "inputs", "outputs":
    [value], "line", "col"}], "memory_bytes"}``, nodes in execution order; a node's ``inputs`` are
    the names it reads (the graph's edges), ``line``/``col`` its place in ``graph.source`` (null
    for JSON nodes). Raises the errors ``/v1/grad`` would raise before running anything.
    """
    s = settings or Settings()
    if deadline is None:
        deadline = time.monotonic() + s.request_timeout_s
    req = parse_request(payload)
    if req.graph.hash is not None:
        raise BadRequest("POST /v1/graph needs the graph's nodes or source, not its hash",
                         loc=("graph", "hash"))
    plan = build_plan(req, s)
    decoded = {}
    for i, t in enumerate(req.graph.inputs):
        if t.source not in ("data", "b64"):
            raise BadRequest("POST /v1/graph takes JSON tensors (data or b64), not binary ones",
                             loc=("graph", "inputs", i, "parameters"))
        decoded[t.name] = _decode(t, None, ("graph", "inputs", i))
    rep = preflight.check(plan, decoded, s, deadline)
    inputs = [{"name": t.name, "shape": list(decoded[t.name].shape),
               "datatype": codec.datatype_of(decoded[t.name]), "requires_grad": t.requires_grad}
              for t in req.graph.inputs]
    nodes = []
    for st in plan.steps:
        reads = list(dict.fromkeys(r.name for r in st.refs))
        nodes.append({"index": st.index, "op": _op(st), "call": _call(st), "inputs": reads,
                      "outputs": [_value(n, rep) for n in st.outputs],
                      "line": st.pos[0] if st.pos else None, "col": st.pos[1] if st.pos else None})
    return {"hash": graph_hash(payload.get("graph")), "inputs": inputs, "nodes": nodes,
            "memory_bytes": rep.memory_bytes}
