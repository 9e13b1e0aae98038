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
- a crashing child never takes the server with it;
- it runs at a lower scheduling priority (nice +5) than the server, so that computations filling
  every CPU do not delay the event loop (health checks, admission, small inline requests).

Forking shares the parent's memory copy-on-write: the request's decoded plan and input tensors
reach the child without a copy. The result comes back in shared memory: the child writes it
(pickle protocol 5, arrays out of band) into a memory file (``memfd_create``, not ``/dev/shm``,
so Docker's 64 MB ``/dev/shm`` does not bound it) and passes the descriptor over a Unix socket; the
parent maps the file and the result arrays are views of that mapping, never copied again. Small
requests whose plans are statically cheap never get here (they run inline, see
:class:`service.core.Job`).

>>> run_forked(lambda: 6 * 7, deadline=None, limit_bytes=1 << 30)
42
"""

from __future__ import annotations

import mmap
import os
import pickle
import resource
import select
import signal
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import GradserveError, PayloadTooLarge, RequestTimeout

__all__ = ["available", "run_forked", "GRACE_S"]

T = TypeVar("T")
GRACE_S = 0.5  # after the deadline, before the child is killed: the cooperative check answers first
NICE = 5       # the child's scheduling priority below the server's
_CHUNK = 1 << 20


def available() -> bool:
    """Whether this platform can fork and pass memory files (Linux)."""
    return hasattr(os, "fork") and hasattr(os, "memfd_create") and hasattr(socket, "send_fds")


def _vm_size() -> int:
    """The process's address space now (bytes), or 0 if unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _max_fd() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if 0 < soft < (1 << 20) else (1 << 20)


def _error_state(e: GradserveError) -> tuple[type, str, dict[str, Any]]:
    return type(e), e.detail, dict(e.__dict__)


def _rebuild(cls: type, detail: str, state: dict[str, Any]) -> GradserveError:
    e = cls.__new__(cls)
    Exception.__init__(e, detail)
    e.__dict__.update(state)
    return e


def _pack(fd: int, out: tuple) -> None:
    """Write ``out`` into the file ``fd``: pickle protocol 5 with its big buffers (result arrays)
    out of band, so the parent maps them instead of copying them: ``n``, then ``n`` + 1 blocks
    of (8-byte length, bytes): the pickle, then each buffer."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(out, protocol=5, buffer_callback=buffers.append)
    _write_blocks(fd, [memoryview(data), *(b.raw() for b in buffers)])


def _write_blocks(fd: int, raws: list[Any]) -> None:
    """The pickle and its out-of-band buffers, as :func:`_pack` lays them out."""
    _write_all(fd, struct.pack("<Q", len(raws) - 1))
    for raw in raws:
        raw = memoryview(raw)
        _write_all(fd, struct.pack("<Q", raw.nbytes))
        _write_all(fd, raw)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view[:_CHUNK])
        view = view[n:]


def _blocks(buf: memoryview) -> list[memoryview]:
    """The blocks :func:`_write_blocks` wrote: the pickle, then its buffers (views of ``buf``)."""
    (n,) = struct.unpack_from("<Q", buf, 0)
    pos, blocks = 8, []
    for _ in range(n + 1):
        (size,) = struct.unpack_from("<Q", buf, pos)
        blocks.append(buf[pos + 8:pos + 8 + size])
        pos += 8 + size
    return blocks


def _unpack(buf: memoryview) -> tuple:
    blocks = _blocks(buf)
    return pickle.loads(blocks[0], buffers=blocks[1:])


def _child(fn: Callable[[], Any], sock: socket.socket, limit_bytes: int) -> None:
    """In the child: limits, the work, the answer, exit (never returns)."""
    code = 0
    try:
        try:
            signal.set_wakeup_fd(-1)  # the parent's event loop must not hear the child's signals
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
        except ValueError:  # not the main thread (a platform that does not make it so after fork)
            pass
        # the server's sockets (listening, clients) must close when the server closes them, not
        # when this child exits: keep stdio and the answer's socket only
        keep = sock.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, max(keep + 1, _max_fd()))
        # below the server's own threads: health checks and the event loop get a CPU first
        try:
            os.nice(NICE)
        except OSError:
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
        # the answer goes into a memory file the parent maps (big arrays are not copied again)
        fd = os.memfd_create("gradserve-result", os.MFD_CLOEXEC)
        try:
            _pack(fd, out)
        except MemoryError:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            _pack(fd, ("memory", None))
        socket.send_fds(sock, [b"r"], [fd])
    except BaseException:  # noqa: BLE001 - nothing may escape into the copy of the server
        code = 1
    finally:
        os._exit(code)


def run_forked(fn: Callable[[], T], deadline: float | None, limit_bytes: int, grace: float = GRACE_S) -> T:
    """``fn()`` in a forked child with ``limit_bytes`` more address space at most, killed
    ``grace`` s after ``deadline`` (a ``time.monotonic()`` instant). Raises what ``fn`` raised
    (GradserveError), PayloadTooLarge (413 ``memory``) when the child ran out of memory or died,
    RequestTimeout (504) when it was killed at the deadline, RuntimeError for a bug in ``fn``."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; covered through the parent's results
        ours.close()
        _child(fn, theirs, limit_bytes)
    theirs.close()
    fds: list[int] = []
    killed = False
    poller = select.poll()  # not select(): a busy server's descriptors go past 1024
    poller.register(ours, select.POLLIN)
    try:
        while True:
            wait = None if deadline is None else deadline + grace - time.monotonic()
            if wait is not None and wait <= 0:
                os.kill(pid, signal.SIGKILL)
                killed = True
                break
            if poller.poll(None if wait is None else max(1, int(wait * 1000) + 1)):
                _, fds, _, _ = socket.recv_fds(ours, 1, 1)
                break
    finally:
        ours.close()
        _, status = os.waitpid(pid, 0)
    if killed:
        raise RequestTimeout("the request ran past request_timeout_s; its computation was stopped "
                             "(the process running it was killed)")
    if not fds:
        why = f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else \
            f"exit status {os.WEXITSTATUS(status)}"
        raise PayloadTooLarge(f"the computation stopped without an answer ({why}): it most likely ran out of "
                              "its memory limit (max_memory_bytes)", limit="memory")
    with open(fds[0], "rb", closefd=True) as f:
        size = os.fstat(f.fileno()).st_size
        view = memoryview(mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ)) if size else memoryview(b"")
    kind, value = _unpack(view)
    if kind == "ok":
        return value
    if kind == "error":
        raise _rebuild(*value)
    if kind == "memory":
        raise PayloadTooLarge("the computation ran out of its memory limit (max_memory_bytes)",
                              limit="memory")
    raise RuntimeError(f"the computation failed: {value}")
