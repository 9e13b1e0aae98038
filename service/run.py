"""A request's run: decode its inputs, check the plan statically, then execute it.

The two halves are separate so that the static check runs in the server process (its caches stay
warm) and the execution may run in a worker process (:mod:`service.pool`) or a child process
(:mod:`service.isolate`). This module sits above both :mod:`service.executor` (plans and their
runner) and :mod:`service.preflight` (the static check and the run's guards), which it ties
together. :func:`execute_warm` is the one entry a worker calls: it executes a checked plan,
replaying the graph's compiled program for the request's signature when one is warm.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import engine

from . import preflight
from .errors import BadRequest, GradserveError
from .executor import Plan, Result, _array, _decode, _leaf, _Runner, binary_tensors, user_facing
from .settings import Settings
from .wire import GradRequest, TensorIn

__all__ = ["run_plan", "Checked", "checked_plan", "execute"]


def run_plan(plan: Plan, blobs: Sequence[Any] | None = None, settings: Settings | None = None,
             deadline: float | None = None, *, b64: dict[int, Any] | None = None) -> Result:
    """Decode the inputs and run the plan; ``blobs`` feed the binary tensors in order, ``b64``
    (by ``id`` of the tensor) the base64 text of b64 tensors that was kept out of the request."""
    return execute(checked_plan(plan, blobs, settings, deadline, b64=b64))


@dataclass(slots=True)
class Checked:
    """A plan whose inputs are decoded and which passed the static check: ready to execute."""

    plan: Plan
    decoded: dict[str, np.ndarray]
    report: Any                    # preflight.Report
    blobs: dict[int, Any]          # binary and excised base64 payloads by tensor id
    settings: Settings
    deadline: float | None

    def __reduce__(self) -> Any:
        # to a worker process: the blobs that execution still reads (inline grad_outputs) go with
        # the tensors they belong to (ids do not survive pickling), out of band
        req = self.plan.request
        go = req.grad_outputs if isinstance(req.grad_outputs, list) else []
        pairs = [(t, pickle.PickleBuffer(self.blobs[id(t)])) for t in go
                 if isinstance(t, TensorIn) and id(t) in self.blobs]
        plan = Plan(_slim(req), self.plan.graph)
        # execution reads the report's sets and sums, not the shapes of every value
        report = dataclasses.replace(self.report, shapes={}, dtypes={}, requires_grad=set())
        return _rebuilt, (plan, self.decoded, report, pairs, self.settings, self.deadline)


def _slim(req: GradRequest) -> GradRequest:
    """``req`` without what execution no longer reads: the graph inputs' values (decoded
    already), an ONNX model's bytes and the graph's nodes or source (planned already)."""
    g = req.graph

    def bare(t: TensorIn) -> TensorIn:  # its source (data, b64, binary) stays what it was
        return t.model_copy(update={"data": 0} if t.source == "data" else {"b64": ""} if t.source == "b64"
                            else {})

    update: dict[str, Any] = {"inputs": [bare(t) for t in g.inputs]}
    if g.onnx is not None:
        update["onnx"] = bare(g.onnx)
    if g.source is not None:
        update["source"] = ""
    if g.nodes is not None:
        update["nodes"] = []
    return req.model_copy(update={"graph": g.model_copy(update=update)})


def _rebuilt(plan: Plan, decoded: dict[str, np.ndarray], report: Any, pairs: list, settings: Settings,
             deadline: float | None) -> Checked:
    return Checked(plan, decoded, report, {id(t): b for t, b in pairs}, settings, deadline)


def checked_plan(plan: Plan, blobs: Sequence[Any] | None = None, settings: Settings | None = None,
                 deadline: float | None = None, *, b64: dict[int, Any] | None = None) -> Checked:
    """The first half of :func:`run_plan`: decode the inputs and run the static check."""
    s = settings or Settings()
    req = plan.request
    binary = binary_tensors(req)
    blobs = list(blobs or [])
    if len(blobs) != len(binary):
        raise BadRequest(f"{len(binary)} tensors are marked binary but {len(blobs)} binary blobs came",
                         loc=(*binary[0][1], "parameters", "binary_data_size") if binary else ("body",))
    by_id = {id(t): b for (t, _), b in zip(binary, blobs)}
    if b64:
        by_id.update(b64)
    for (t, loc), b in zip(binary, blobs):
        size = t.parameters.binary_data_size if t.parameters else None
        if len(b) != size:
            raise BadRequest(f"binary_data_size is {size} but its blob has {len(b)} bytes",
                             loc=(*loc, "parameters", "binary_data_size"))
    decoded = {t.name: _decode(t, by_id.get(id(t)), ("graph", "inputs", i))
               for i, t in enumerate(req.graph.inputs)}
    try:
        rep = preflight.check(plan, decoded, s, deadline, by_id)  # shapes, limits, memory, work first
    except GradserveError as e:
        raise user_facing(e, plan.graph) from None
    return Checked(plan, decoded, rep, by_id, s, deadline)


def execute(c: Checked) -> Result:
    """The second half of :func:`run_plan`: run the checked plan (in a child process, maybe)."""
    try:
        return _execute(c)
    except GradserveError as e:
        raise user_facing(e, c.plan.graph) from None


def _execute(c: Checked) -> Result:

    plan, decoded, rep, by_id, s, deadline = c.plan, c.decoded, c.report, c.blobs, c.settings, c.deadline
    req = plan.request
    # nodes whose shapes the static check could not know (sized by values, or after such a node)
    # are checked again on their real operands, just before they run
    recheck = rep.unchecked | rep.bounded
    spent = rep.work
    r = _Runner(plan, s, deadline)
    # torch does not warn on log(0) or 0/0; the server should not log a warning per request either
    with engine.enable_grad(), np.errstate(all="ignore"), preflight.guard(plan, s, deadline):
        for i, t in enumerate(req.graph.inputs):
            r.env[t.name] = _leaf(t, decoded[t.name], ("graph", "inputs", i))
        r.bind_constants()
        for st in plan.steps:
            r.check_deadline(st)
            if recheck and not recheck.isdisjoint(st.outputs):
                spent += preflight.recheck(r, st, s, spent)
            r.run_step(st)
        grads = r.final_grad(by_id)
    values = {name: _array(r.env[plan.graph.value(name)], name) for name in req.return_}
    return Result(grads, values, rep)
