"""Compiled plans: a checked plan run as a flat numpy program (:func:`engine.compile`).

A :class:`CompiledRun` belongs to one cached plan and one request header (the same graph, input
names, shapes, dtypes and top-level call; only the tensor values differ). Its function runs the
plan's nodes and the final ``autograd_grad`` on the graph inputs, so ``engine.compile`` traces the
forward, every ``grad`` and functional node and the backward passes into one program; later
requests replay that program, with no Tensor or Node objects, and get eager's results to the bit.

Only plans that need no guard between nodes are compiled (:func:`compilable`): the static check
knew every shape (no value-sized shapes), the plan is statically cheap (the replay has no per-node
deadline checks; the work is bounded by the static cost, as an inline run's is), ``check_finite``
is off (it reads every node's values), and ``grad_outputs`` holds no inline tensor. What the
engine cannot trace falls back to eager for that header, with the reason logged once.

>>> run = CompiledRun(checked.plan, settings)          # doctest: +SKIP
>>> result = run(checked)                      # doctest: +SKIP  (traces; later calls replay)
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict
from typing import Any

import numpy as np

import engine
from engine import _compile
from engine._compile import CompiledFunction

from . import preflight
from .errors import GradserveError
from .executor import Plan, Result, TensorIn, _array, _leaf, _Runner, user_facing
from .run import Checked, execute
from .settings import Settings

__all__ = ["CompiledRun", "compilable", "execute_warm", "PROGRAM_SLOTS", "CHEAP_WORK", "CHEAP_MEMORY_BYTES",
           "COMPILED_MEMORY_BYTES"]

log = logging.getLogger("gradserve")

# The static cost below which a plan may run without per-node deadline checks: about 0.1 s of
# work and 64 MiB (service.core runs such plans in the server process, unforked, too).
CHEAP_WORK = 1e8
CHEAP_MEMORY_BYTES = 64 << 20
# A compiled program allocates what its trace allocated, for shapes that earlier requests with
# the same header ran with: its memory estimate cannot miss the way an eager run's might, so it
# runs in the server process (no fork, no copy into a child) up to this estimate.
COMPILED_MEMORY_BYTES = 256 << 20


def compilable(plan: Plan, report: Any, s: Settings, bounded_cost: bool = True) -> str | None:
    """None when ``plan`` (checked, with its static ``report``) may run compiled, else why not.
    ``bounded_cost=False`` in a pool worker: there the OS bounds memory and a kill bounds time,
    so a plan of any static cost may replay without checks between nodes."""
    req = plan.request
    if s.compile == "off":
        return "compile is off"
    if report is None or report.value_dependent or report.unchecked or report.bounded:
        return "shapes depend on values"
    if bounded_cost and (report.work > CHEAP_WORK or report.memory_bytes > COMPILED_MEMORY_BYTES):
        return "not statically cheap"
    if req.check_finite:
        return "check_finite reads every node's values"
    if isinstance(req.grad_outputs, list) and any(isinstance(g, TensorIn) for g in req.grad_outputs):
        return "grad_outputs holds inline tensors"
    return None


# Arrays a compiled program keeps between calls (constants its trace folded, such as a gradient
# seed broadcast to an input's shape) count against one budget per process: a program that
# would pass it is dropped and its header runs eagerly. Evicted plans give their bytes back.
HELD_BYTES_LIMIT = 256 << 20
_held = [0]
_held_lock = threading.Lock()


def held_bytes() -> int:
    """Bytes that compiled programs of this process keep (their constants)."""
    return _held[0]


def _release(n: int) -> None:
    with _held_lock:
        _held[0] -= n


def _program_bytes(fn: CompiledFunction) -> int:
    # memory, not logical sizes: a constant that repeats one value is a broadcast view of it
    return _compile.held_bytes([v for prog in fn.programs() for v in prog.template])


class _Logged(CompiledFunction):
    """engine.compile's function whose fall-back reasons go to the server log, not warnings."""

    def _warn(self, msg: str) -> None:
        if msg not in self._warned:
            self._warned.add(msg)
            log.info("compiled plan runs eagerly: %s", msg)


class CompiledRun:
    """One plan and header, compiled on its first call; thread-safe (the first trace is serialized).

    ``eager`` is the reason it runs eagerly (the engine could not trace it), or None.
    """

    def __init__(self, plan: Plan, settings: Settings) -> None:
        self.plan, self.settings = plan, settings
        self.fn = _Logged(self._body)
        self.eager: str | None = None
        self._traced = False
        self._lock = threading.Lock()
        self._direct: tuple[Any, Any] | None = None  # (program, output tree) once traced
        self._held = 0  # bytes of this run's programs counted in _held
        self._call = threading.local()  # .deadline: the calling request's, for eager runs of _body

    def _body(self, *leaves: Any) -> tuple[tuple, tuple]:
        plan = self.plan
        req = plan.request
        # _body runs when the program is traced (and on an eager fall-back): then the request's
        # deadline is checked between nodes as in an eager run; the replayed program has no
        # checks inside (compiled plans are statically cheap, see compilable)
        r = _Runner(plan, self.settings, getattr(self._call, "deadline", None))
        for t, x in zip(req.graph.inputs, leaves):
            r.env[t.name] = x
        r.bind_constants()
        for st in plan.steps:
            r.check_deadline(st)
            r.run_step(st)
        grads = r.final_grad({}, arrays=False)
        return tuple(grads), tuple(r.env[name] for name in req.return_)

    def _hold(self) -> None:
        """Count the program's arrays against HELD_BYTES_LIMIT, or drop it (eager from now on)."""
        n = _program_bytes(self.fn) - self._held
        if n <= 0:
            return
        with _held_lock:
            ok = _held[0] + n <= HELD_BYTES_LIMIT
            if ok:
                _held[0] += n
        if not ok:
            self.eager = (f"its program keeps {n} bytes of constants, over what compiled programs may "
                          f"keep ({HELD_BYTES_LIMIT} bytes per process)")
            log.info("compiled plan runs eagerly: %s", self.eager)
            self.fn = _Logged(self._body)  # the programs go
            return
        self._held += n
        weakref.finalize(self, _release, n)

    def _single(self) -> None:
        """After the trace: the one program of the one signature a header has, called without
        engine.compile's dispatch (the header fixed the signature already)."""
        sigs = list(self.fn._cache.values())
        if self.eager is None and len(sigs) == 1 and len(sigs[0].programs) == 1:
            prog, tree = sigs[0].programs[0]
            if type(tree) is tuple and len(tree) == 2 and not prog.effects:
                self._direct = prog, tree

    def _replay(self, c: Checked) -> Result | None:
        prog, (gtree, vtree) = self._direct
        req = c.plan.request
        try:
            with np.errstate(all="ignore"):
                vals = _compile._replay(prog, [c.decoded[t.name] for t in req.graph.inputs])
        except _compile._GuardFailed:
            self._direct = None  # a value read at trace time changed: engine.compile retraces
            return None
        return Result([_out(e, vals, f"grads[{i}]") for i, e in enumerate(gtree)],
                      {name: _out(e, vals, name) for name, e in zip(req.return_, vtree)}, c.report)

    def __call__(self, c: Checked) -> Result:
        """Run the checked request through the program (tracing it on the first call)."""
        if self._direct is not None:
            res = self._replay(c)
            if res is not None:
                return res
        req = c.plan.request
        leaves = [_leaf(t, c.decoded[t.name], ("graph", "inputs", i)) for i, t in enumerate(req.graph.inputs)]
        self._call.deadline = c.deadline
        # a call that may trace (the first, or one whose guards failed) runs _body eagerly: with
        # the deadline inside backward passes too, as an eager run has it
        with engine.enable_grad(), np.errstate(all="ignore"), \
                preflight.guard(c.plan, self.settings, c.deadline):
            if self._traced and self.eager is None:
                grads, values = self.fn(*leaves)
            else:
                with self._lock:  # one trace at a time; the others then replay it
                    grads, values = self.fn(*leaves)
                    self._traced = True
        reasons = self.fn.eager_reasons()
        if reasons:
            self.eager = reasons[0]
        elif self._direct is None:
            self._hold()
            if self.eager is None:
                self._single()
        return Result([None if g is None else _array(g, f"grads[{i}]") for i, g in enumerate(grads)],
                      {name: _array(v, name) for name, v in zip(req.return_, values)}, c.report)

    @property
    def replays(self) -> bool:
        """Whether the next call replays a program (it was traced and did not fall back)."""
        return self._traced and self.eager is None and bool(self.fn.programs())



def _out(e: Any, vals: list, name: str) -> Any:
    """One result of a replayed program as the eager run returns it (service.executor._array)."""
    t = type(e)
    if t is _compile._OutTensor or t is _compile._OutArray:
        v = vals[e.i]
        return v if type(v) is np.ndarray else np.asarray(v)
    v = e.v if t is _compile._OutConst else e
    return None if v is None else _array(v, name)


# ---------------------------------------------------------------- warm replay (worker processes)
PROGRAM_SLOTS = 64  # compiled runs a worker keeps (by graph and input signature), LRU


def execute_warm(c: Checked, key: str | None, programs: OrderedDict[tuple, CompiledRun | None]) -> Result:
    """:func:`service.run.execute`, replaying the :class:`CompiledRun` of the graph ``key`` for
    the request's signature (input shapes, dtypes, flags, integer values, the top-level call) when
    ``programs`` holds one: the entry a pool worker calls (:mod:`service.pool`). A signature seen
    once before is compiled now (tracing costs a few eager runs, which a request seen once should
    not pay); one not seen before runs as ``execute`` does, and so does what cannot be compiled,
    or a replay that fails (the runner then raises its own error).

    >>> execute_warm(checked_plan(plan), "sha256:...", programs)  # doctest: +SKIP
    """
    ok = key is not None and compilable(c.plan, c.report, c.settings, bounded_cost=False) is None
    sig = preflight.signature(c.plan, c.decoded) if ok else None
    if sig is None:
        return execute(c)
    k = (key, sig)
    if k not in programs:
        programs[k] = None  # seen once: compiled if it comes again
        while len(programs) > PROGRAM_SLOTS:
            programs.popitem(last=False)
        return execute(c)
    programs.move_to_end(k)
    run = programs[k]
    if run is None:
        run = programs[k] = CompiledRun(c.plan, c.settings)
    try:
        return run(c)
    except GradserveError as e:  # the trace (an eager run) raised the runner's own error
        raise user_facing(e, c.plan.graph) from None
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - a numpy error at replay: the runner words it
        programs.pop(k, None)
        return execute(c)
