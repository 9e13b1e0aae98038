"""Run engine work in a forked child process, under limits the operating system enforces.

The static check (:mod:`service.preflight`) estimates memory and work before a request runs;
this module makes the limits hold whatever the estimate missed. :func:`run_forked` forks the
calling engine thread into a child that runs one request's computation and sends the result back
through a pipe:

- the child's address space may grow by at most ``limit_bytes`` beyond what it inherited
  (``RLIMIT_AS``): an allocation past it fails, numpy raises MemoryError (413), and a child killed
  by it answers 413 too;
- the child is killed (SIGKILL) ``grace`` seconds after the deadline, whatever it is doing (a
  single long numpy call, a spinning op): the waiting engine thread returns 504 and its slot is
  free again at once;
- a crashing child never takes the server with it.

Forking shares the parent's memory copy-on-write: the request's decoded plan and input tensors
reach the child without a copy, and only the result (gradients and values) travels back, pickled
through the pipe. Small requests whose plans are statically cheap never get here (they run inline,
see :class:`service.core.Job`).

>>> run_forked(lambda: 6 * 7, deadline=None, limit_bytes=1 << 30)
42
"""

from __future__ import annotations

import os
import pickle
import resource
import select
import signal
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import GradserveError, PayloadTooLarge, RequestTimeout

__all__ = ["available", "run_forked", "GRACE_S"]

T = TypeVar("T")
GRACE_S = 0.5  # after the deadline, before the child is killed: the cooperative check answers first
_CHUNK = 1 << 20


def available() -> bool:
    """Whether this platform can fork (not Windows)."""
    return hasattr(os, "fork")


def _vm_size() -> int:
    """The process's address space now (bytes), or 0 if unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _error_state(e: GradserveError) -> tuple[type, str, dict[str, Any]]:
    return type(e), e.detail, dict(e.__dict__)


def _rebuild(cls: type, detail: str, state: dict[str, Any]) -> GradserveError:
    e = cls.__new__(cls)
    Exception.__init__(e, detail)
    e.__dict__.update(state)
    return e


def _child(fn: Callable[[], Any], w: int, limit_bytes: int) -> None:
    """In the child: limits, the work, the answer, exit (never returns)."""
    code = 0
    try:
        try:
            signal.set_wakeup_fd(-1)  # the parent's event loop must not hear the child's signals
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
        except ValueError:  # not the main thread (a platform that does not make it so after fork)
            pass
        base = _vm_size()
        if base and limit_bytes > 0:
            resource.setrlimit(resource.RLIMIT_AS, (base + limit_bytes, base + limit_bytes))
        try:
            out: tuple = ("ok", fn())
        except GradserveError as e:
            out = ("error", _error_state(e))
        except MemoryError:
            out = ("memory", None)
        except BaseException as e:  # noqa: BLE001 - reported to the parent, which logs it as a bug
            out = ("crash", f"{type(e).__name__}: {e}")
        try:
            data = pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            data = pickle.dumps(("memory", None))
        view = memoryview(data)
        while view:
            n = os.write(w, view[:_CHUNK])
            view = view[n:]
    except BaseException:  # noqa: BLE001 - nothing may escape into the copy of the server
        code = 1
    finally:
        os._exit(code)


def run_forked(fn: Callable[[], T], deadline: float | None, limit_bytes: int, grace: float = GRACE_S) -> T:
    """``fn()`` in a forked child with ``limit_bytes`` more address space at most, killed
    ``grace`` s after ``deadline`` (a ``time.monotonic()`` instant). Raises what ``fn`` raised
    (GradserveError), PayloadTooLarge (413 ``memory``) when the child ran out of memory or died,
    RequestTimeout (504) when it was killed at the deadline, RuntimeError for a bug in ``fn``."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; covered through the parent's results
        os.close(r)
        _child(fn, w, limit_bytes)
    os.close(w)
    chunks: list[bytes] = []
    killed = False
    try:
        while True:
            wait = None if deadline is None else deadline + grace - time.monotonic()
            if wait is not None and wait <= 0:
                os.kill(pid, signal.SIGKILL)
                killed = True
                break
            ready, _, _ = select.select([r], [], [], wait)
            if not ready:
                continue
            data = os.read(r, _CHUNK)
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if killed:
        raise RequestTimeout("the request ran past request_timeout_s; its computation was stopped "
                             "(the process running it was killed)")
    if not chunks:
        why = f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else \
            f"exit status {os.WEXITSTATUS(status)}"
        raise PayloadTooLarge(f"the computation stopped without an answer ({why}): it most likely ran out of "
                              "its memory limit (max_memory_bytes)", limit="memory")
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "ok":
        return value
    if kind == "error":
        raise _rebuild(*value)
    if kind == "memory":
        raise PayloadTooLarge("the computation ran out of its memory limit (max_memory_bytes)",
                              limit="memory")
    raise RuntimeError(f"the computation failed: {value}")
