"""A request's run: decode its inputs, check the plan statically, then execute it.

The two halves are separate so that the static check runs in the server process (its caches stay
warm) and the execution may run in a child process (:mod:`service.isolate`). This module sits
above both :mod:`service.executor` (plans and their runner) and :mod:`service.preflight` (the
static check and the run's guards), which it ties together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import engine

from . import preflight
from .errors import BadRequest, GradserveError
from .executor import Plan, Result, _array, _decode, _leaf, _Runner, binary_tensors, user_facing
from .settings import Settings

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
        for name, (arr, rg) in plan.graph.constants.items():
            if name not in r.env:
                c = engine.from_numpy(arr)
                r.env[name] = c.requires_grad_() if rg else c
        for st in plan.steps:
            r.check_deadline(st)
            if recheck and not recheck.isdisjoint(st.outputs):
                spent += preflight.recheck(r, st, s, spent)
            r.run_step(st)
        grads = r.final_grad(by_id)
    values = {name: _array(r.env[plan.graph.value(name)], name) for name in req.return_}
    return Result(grads, values, rep)

