"""Pre-forked worker processes for engine work that is not statically cheap, kept warm.

Each server process keeps ``pool_size`` worker processes (:data:`POOL`), forked from it when the
app starts (after every import and op registration, so a worker starts with the server's modules,
ops and caches already loaded), and again whenever one has to be replaced: then by the pool's
spawner thread, at once and off any request's path (while no app is attached, by the next request
that needs a worker). A request whose checked
plan is not statically cheap (:func:`service.core.statically_cheap`) is sent to a free worker,
preferably one that ran the same graph before (affinity): that worker holds the graph's plan and
its compiled programs (:func:`service.compiled.execute_warm`), so repeated requests replay warm and
only the request's own tensors travel.

The guarantees of a forked child per request (:mod:`service.isolate`, ``GRADSERVE_ISOLATION=fork``)
hold per job:

- before each job the worker lowers its soft ``RLIMIT_AS`` to its address space now plus the
  request's bound; an allocation past it fails (numpy's MemoryError: 413 ``memory``); a worker that
  dies during a job answers 413 too, and is replaced;
- a job still running ``grace`` seconds after its deadline has its worker killed (SIGKILL) and
  reaped; the request gets today's 504 and a new worker is forked in its place;
- a worker that dies while idle (killed from outside) is noticed before or while it is given a job
  (it marks every job it takes, in the job's file): the job goes to another worker;
- no job can hold up the others: each waits for a free worker (or for a new one to be forked)
  only within its own deadline, and the event loop never waits for a worker at all;
- a worker whose resident memory has grown by more than ``pool_max_rss_bytes`` since it started
  is replaced after its job (leaks, fragmentation);
- workers run at nice +5, ignore SIGINT and SIGTERM (a signal to the whole process group must not
  kill jobs that a graceful shutdown is still finishing), exit when the server closes their
  socket, and are killed by the kernel if the server dies (``PR_SET_PDEATHSIG``). The app's
  lifespan stops them on shutdown and reaps them: no zombies.

A job travels as a memory file: pickle protocol 5 with the input arrays out of band (the worker
maps them), ops by name (the worker's ``engine.OPS`` is the server's). A job that cannot be
pickled, or that a worker cannot read (an op registered after it was forked), runs in a child
forked for it (:func:`service.isolate.run_forked`), and such a stale worker is replaced.

Why ``os.fork`` and socket pairs rather than :mod:`multiprocessing`: a worker must start as a
copy of the server (its imports, ``engine.OPS`` with plugin and debug ops, settings), which rules
out ``spawn`` and ``forkserver`` (a fresh interpreter that re-imports, without the ops registered
at run time); and the jobs need what ``multiprocessing``'s fork context does not give: memory
files passed by descriptor (``SCM_RIGHTS``, arrays mapped instead of pickled through a pipe, the
same transport as :mod:`service.isolate`), a per-job ``RLIMIT_AS``, a kill at the deadline with
exact knowledge of whether the worker had taken the job, and no resource-tracker process or
atexit finalizers in a copy of a server. A ``SOCK_SEQPACKET`` pair per worker keeps message
boundaries and says "end of file" when either side dies.

>>> POOL.run(checked, key, limit_bytes=1 << 30, max_rss=256 << 20)  # doctest: +SKIP
(Result(...), 0.0012)
"""

from __future__ import annotations

import atexit
import ctypes
import io
import mmap
import os
import pickle
import resource
import select
import signal
import socket
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import engine

from . import isolate, stats
from .compiled import execute_warm
from .errors import GradserveError, PayloadTooLarge, RequestTimeout
from .run import Checked

__all__ = ["Pool", "POOL", "available", "PLAN_SLOTS"]

PLAN_SLOTS = 64  # graph plans a worker keeps (and the server remembers it keeps), LRU
_PR_SET_PDEATHSIG = 1


def available() -> bool:
    """Whether this platform can run the pool (Linux: fork, memory files, SOCK_SEQPACKET)."""
    return isolate.available() and hasattr(socket, "SOCK_SEQPACKET")


class _NotTaken(Exception):
    """The worker died before it took the job: another worker may take it."""


class _Unpicklable(Exception):
    """The job holds something that cannot travel (an op's state outside ``engine.OPS``, say):
    it runs in a child forked for it, which shares it copy-on-write."""


class _Stale(_Unpicklable):
    """The worker could not read the job (an op registered after it was forked): it is replaced
    by a fresh copy of the server, and this job runs in a child forked for it."""


@dataclass(eq=False)
class _Worker:
    pid: int
    sock: socket.socket
    plans: OrderedDict[str, None] = field(default_factory=OrderedDict)  # mirrors the worker's LRU
    busy: bool = False
    jobs: int = 0


# ---------------------------------------------------------------- jobs on the wire
class _JobPickler(pickle.Pickler):
    """Ops travel by name: a worker is a copy of the server, so ``engine.OPS`` there holds the
    same ops (and their functions need not be importable by name, which pickle would need)."""

    def persistent_id(self, obj: Any) -> Any:
        if type(obj) is engine.OpInfo and engine.OPS.get(obj.name) is obj:
            return obj.name
        return None


class _JobUnpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        return engine.OPS[pid]


_TAKEN = 8  # a job file starts with 8 bytes: the worker sets the first to 1 when it takes the job


def _pack_job(fd: int, job: tuple) -> None:
    """``job`` into the file ``fd``: the taken flag, then :func:`service.isolate._pack`'s layout."""
    buffers: list[pickle.PickleBuffer] = []
    f = io.BytesIO()
    _JobPickler(f, protocol=5, buffer_callback=buffers.append).dump(job)
    isolate._write_all(fd, bytes(_TAKEN))
    isolate._write_blocks(fd, [f.getbuffer(), *(b.raw() for b in buffers)])


def _unpack_job(buf: memoryview) -> tuple:
    blocks = isolate._blocks(buf[_TAKEN:])
    return _JobUnpickler(io.BytesIO(blocks[0]), buffers=blocks[1:]).load()


def _taken(fd: int) -> bool:
    return os.pread(fd, 1, 0) == b"\x01"


# ---------------------------------------------------------------- the worker process
def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _worker_setup(sock: socket.socket) -> None:
    try:
        signal.set_wakeup_fd(-1)  # the server's event loop must not hear the worker's signals
    except ValueError:  # not the main thread
        pass
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, signal.SIG_IGN)
        except ValueError:
            pass
    # the server's sockets (listening, clients, other workers) must close when the server closes
    # them: keep stdio and this worker's socket only
    keep = sock.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, max(keep + 1, isolate._max_fd()))
    try:
        os.nice(isolate.NICE)
    except OSError:
        pass
    # die with the server, whatever kills it. The kernel sends this when the *thread* that forked
    # the worker exits: the event loop's thread (start-up) or the spawner (replacements), which
    # live as long as the app; a worker lost with an exiting thread is replaced as any other
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _worker_main(sock: socket.socket) -> None:  # pragma: no cover - runs in the worker
    """The worker's loop: take a job, run it under its memory limit, answer; exit on EOF."""
    code = 0
    try:
        _worker_setup(sock)
        rss0 = _rss()
        plans: OrderedDict[str, Any] = OrderedDict()
        programs: OrderedDict[tuple, Any] = OrderedDict()
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        while True:
            msg, fds, _, _ = socket.recv_fds(sock, 16, 1)
            if not msg:
                break
            # taken: from now on a death is this job's (a flag in the file, not a message: the
            # server reads it only if this worker dies, and is not woken for it)
            os.pwrite(fds[0], b"\x01", 0)
            with open(fds[0], "rb", closefd=True) as f:
                size = os.fstat(f.fileno()).st_size
                # private and writable: the engine may write into buffers it got (out=), never the file
                buf = mmap.mmap(f.fileno(), size, flags=mmap.MAP_PRIVATE,
                                prot=mmap.PROT_READ | mmap.PROT_WRITE)
            try:
                key, graph, checked, limit = _unpack_job(memoryview(buf))
            except Exception:  # noqa: BLE001 - an op this copy of the server does not have, say
                sock.send(b"u")
                continue
            if graph is None:
                graph = plans.get(key) if key is not None else None
                if graph is None:  # the server thought this worker had it: ask for it
                    del checked
                    sock.send(b"n")
                    continue
            if key is not None:
                plans[key] = graph
                plans.move_to_end(key)
                while len(plans) > PLAN_SLOTS:
                    plans.popitem(last=False)
            checked.plan.graph = graph
            if limit > 0:
                base = isolate._vm_size()
                if base:
                    resource.setrlimit(resource.RLIMIT_AS, (min(base + limit, hard) if hard >= 0 else
                                                            base + limit, hard))
            try:
                try:
                    out: tuple = ("ok", _timed(execute_warm, checked, key, programs))
                except GradserveError as e:
                    out = ("error", isolate._error_state(e))
                except MemoryError:
                    out = ("memory", None)
                except BaseException as e:  # noqa: BLE001 - reported to the server, which logs it as a bug
                    out = ("crash", f"{type(e).__name__}: {e}")
                del checked
                fd = os.memfd_create("gradserve-result", os.MFD_CLOEXEC)
                try:
                    isolate._pack(fd, out)
                except MemoryError:
                    os.ftruncate(fd, 0)
                    os.lseek(fd, 0, os.SEEK_SET)
                    isolate._pack(fd, ("memory", None))
            finally:
                resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
            del out
            grown = max(0, _rss() - rss0)
            try:
                socket.send_fds(sock, [b"r" + struct.pack("<Q", grown)], [fd])
            finally:
                os.close(fd)
    except BaseException:  # noqa: BLE001 - nothing may escape into the copy of the server
        code = 1
    finally:
        os._exit(code)


# ---------------------------------------------------------------- the server side
class Pool:
    """``size`` worker processes, forked on demand up to ``size`` (``start`` forks them all).

    Thread-safe: engine threads call :meth:`run` concurrently; each job holds one worker.
    """

    def __init__(self, size: int = 1) -> None:
        self.size = size
        self._workers: list[_Worker] = []
        self._forking = 0
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)   # a worker became free (or may be forked)
        self._wanted = threading.Condition(self._lock)  # the spawner: a worker is missing
        self._spawner: threading.Thread | None = None
        self._generation = 0  # shutdowns so far: a worker forked across one is not kept
        self._users = 0
        # counters (for tests, /health/ready and the logs)
        self.spawned = self.replaced = self.recycled = self.killed = 0

    # -- lifecycle
    def attach(self, size: int, prefork: bool = True) -> None:
        """An app starts using the pool: ``size`` workers at least, forked now if ``prefork``."""
        with self._cond:
            self._users += 1
            self.size = max(size, self.size if self._users > 1 else 0, 1)
        if prefork:
            self.start()

    def detach(self) -> None:
        """An app stops using the pool; the last one stops the workers."""
        with self._cond:
            self._users = max(0, self._users - 1)
            last = self._users == 0
            self._wanted.notify_all()  # the spawner stops with the last user
        if last:
            self.shutdown()

    def start(self) -> None:
        """Fork workers until there are ``size``."""
        while True:
            with self._cond:
                if len(self._workers) + self._forking >= self.size:
                    break
                self._forking += 1
            self._add(self._spawn(), busy=False)
        stats.report_pool(self.stats)

    def shutdown(self, timeout: float = 2.0) -> None:
        """Stop every worker and reap it: idle ones exit on end of file, busy ones are killed."""
        with self._cond:
            workers, self._workers = self._workers, []
            self._generation += 1
            self._users = 0  # and no replacements (at exit, say): requests fork what they need
            self._cond.notify_all()
            self._wanted.notify_all()
        end = time.monotonic() + timeout
        for w in workers:
            if w.busy:
                _kill(w.pid)  # its job's thread reaps it (and answers its request)
            else:
                w.sock.close()
        for w in workers:
            if w.busy:
                continue
            while not _reap(w.pid, block=False):
                if time.monotonic() > end:
                    _kill(w.pid)
                    _reap(w.pid, block=True)
                    break
                time.sleep(0.005)
        stats.report_pool(self.stats)

    def pids(self) -> list[int]:
        """The workers' process ids (for tests and operators)."""
        with self._cond:
            return [w.pid for w in self._workers]

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {"size": self.size, "workers": len(self._workers),
                    "busy": sum(w.busy for w in self._workers), "spawned": self.spawned,
                    "replaced": self.replaced, "recycled": self.recycled, "killed": self.killed}

    # -- workers
    def _spawn(self) -> _Worker:
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            pid = os.fork()
        except BaseException:
            with self._cond:
                self._forking -= 1
                self._cond.notify_all()
            raise
        if pid == 0:  # pragma: no cover - the worker
            ours.close()
            _worker_main(theirs)
        theirs.close()
        return _Worker(pid, ours)

    def _add(self, w: _Worker, busy: bool, generation: int | None = None) -> None:
        with self._cond:
            self._forking -= 1
            stale = generation is not None and generation != self._generation
            if not stale:
                self.spawned += 1
                w.busy = busy
                self._workers.append(w)
                if not busy:
                    self._cond.notify()
        if stale:  # forked while the pool shut down
            _kill(w.pid)
            w.sock.close()
            _reap(w.pid, block=True)

    def _replenish(self) -> None:
        """Have the spawner thread fork the missing workers, off any request's path (only while
        an app uses the pool; otherwise the next request forks what it needs)."""
        with self._cond:
            if self._users <= 0:
                return
            if self._spawner is None:
                self._spawner = threading.Thread(target=self._spawn_loop, name="gradserve-pool-spawner",
                                                 daemon=True)
                self._spawner.start()
            self._wanted.notify()

    def _spawn_loop(self) -> None:
        # a long-lived thread forks replacements: PR_SET_PDEATHSIG follows the forking thread
        while True:
            with self._cond:
                while self._users > 0 and len(self._workers) + self._forking >= self.size:
                    self._wanted.wait()
                if self._users <= 0:
                    self._spawner = None
                    return
                self._forking += 1
                generation = self._generation
            try:
                w = self._spawn()
            except OSError:  # no memory or processes left for now: try again shortly
                time.sleep(1.0)
                continue
            self._add(w, busy=False, generation=generation)

    def _drop(self, w: _Worker, kill: bool) -> None:
        """Remove ``w`` (killing it first if asked) and reap it."""
        with self._cond:
            if w in self._workers:
                self._workers.remove(w)
            self._cond.notify_all()
        if kill:
            _kill(w.pid)
        w.sock.close()
        _reap(w.pid, block=True)
        self._replenish()

    def _acquire(self, key: str | None, deadline: float | None) -> _Worker:
        with self._cond:
            while True:
                idle = [w for w in self._workers if not w.busy]
                if idle:
                    # affinity: the worker that holds the plan, else the one holding the fewest
                    w = next((w for w in idle if key is not None and key in w.plans), None) or \
                        min(idle, key=lambda w: len(w.plans))
                    if _reap(w.pid, block=False):  # died while idle: replace it
                        self._workers.remove(w)
                        w.sock.close()
                        self.replaced += 1
                        self._replenish()
                        continue
                    w.busy = True
                    return w
                if len(self._workers) + self._forking < self.size:
                    self._forking += 1
                    break
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    raise RequestTimeout("the request waited for a worker process past request_timeout_s "
                                         f"(all {self.size} are busy: pool_size)")
                self._cond.wait(wait)
        w = self._spawn()
        self._add(w, busy=True)
        return w

    def _release(self, w: _Worker) -> None:
        with self._cond:
            w.busy = False
            kept = w in self._workers
            if kept:
                self._cond.notify()
        if not kept:  # the pool shut down while it worked (and killed it): reap it here
            _kill(w.pid)
            w.sock.close()
            _reap(w.pid, block=True)

    # -- jobs
    def run(self, c: Checked, key: str | None, limit_bytes: int, max_rss: int,
            grace: float = isolate.GRACE_S) -> Any:
        """``execute_warm(c)`` in a worker, as ``(result, seconds)`` (the run's own time, in the
        worker). Raises what the computation raised (GradserveError), PayloadTooLarge (413
        ``memory``) when the worker ran out of memory or died, RequestTimeout (504) when it was
        killed at the deadline or no worker was free in time, RuntimeError for a bug."""
        deadline = c.deadline
        try:
            for _ in range(3):  # a worker that died before taking the job: the next one takes it
                w = self._acquire(key, deadline)
                stats.report_pool(self.stats)
                try:
                    kind, value = self._job(w, c, key, limit_bytes, deadline, grace, max_rss)
                except _Unpicklable:
                    return isolate.run_forked(lambda: _timed(execute_warm, c, None, OrderedDict()),
                                              deadline, limit_bytes, grace)
                except _NotTaken:
                    self._drop(w, kill=True)
                    with self._cond:
                        self.replaced += 1
                    continue
                break
            else:
                raise PayloadTooLarge("no worker process could take the computation (each died at "
                                      "once): it most likely ran out of its memory limit "
                                      "(max_memory_bytes)", limit="memory")
        finally:
            stats.report_pool(self.stats)
        if kind == "ok":
            value[0].report = c.report  # the whole report (the worker had a slim copy)
            return value
        if kind == "error":
            raise isolate._rebuild(*value)
        if kind == "memory":
            raise PayloadTooLarge("the computation ran out of its memory limit (max_memory_bytes)",
                                  limit="memory")
        raise RuntimeError(f"the computation failed: {value}")

    def _job(self, w: _Worker, c: Checked, key: str | None, limit: int, deadline: float | None,
             grace: float, max_rss: int) -> tuple[str, Any]:
        """Send one job to ``w`` and wait for its answer; leaves ``w`` released or dropped."""
        try:
            fd, grown = self._exchange(w, c, key, limit, deadline, grace)
        except _Stale:
            self._drop(w, kill=True)
            with self._cond:
                self.replaced += 1
            raise
        except _Unpicklable:
            self._release(w)  # it was sent nothing
            raise
        except (_NotTaken, GradserveError):
            raise  # the worker is dropped already (or dropped by run, for _NotTaken)
        except BaseException:
            self._drop(w, kill=True)  # an unexpected failure here: the worker's state is unknown
            raise
        if key is not None:
            w.plans[key] = None
            w.plans.move_to_end(key)
            while len(w.plans) > PLAN_SLOTS:
                w.plans.popitem(last=False)
        w.jobs += 1
        if max_rss > 0 and grown > max_rss:  # recycle: a fresh copy of the server takes its place
            self._drop(w, kill=True)
            with self._cond:
                self.recycled += 1
        else:
            self._release(w)
        with open(fd, "rb", closefd=True) as f:
            size = os.fstat(f.fileno()).st_size
            view = memoryview(mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ)) if size else memoryview(b"")
        return isolate._unpack(view)

    def _exchange(self, w: _Worker, c: Checked, key: str | None, limit: int, deadline: float | None,
                  grace: float) -> tuple[int, int]:
        """Send the job, then wait for the answer (a memory file, and how much the worker's RSS
        has grown since it started)."""
        job = self._send(w, c, key, key is None or key not in w.plans, limit)
        try:
            return self._answer(w, c, key, limit, deadline, grace, job)
        finally:
            if job[0] >= 0:
                os.close(job[0])

    def _answer(self, w: _Worker, c: Checked, key: str | None, limit: int, deadline: float | None,
                grace: float, job: list[int]) -> tuple[int, int]:
        poller = select.poll()  # not select(): a busy server's descriptors go past 1024
        poller.register(w.sock, select.POLLIN)
        while True:
            wait = None if deadline is None else deadline + grace - time.monotonic()
            if wait is not None and wait <= 0:
                self._drop(w, kill=True)
                with self._cond:
                    self.killed += 1
                raise RequestTimeout("the request ran past request_timeout_s; its computation was "
                                     "stopped (the process running it was killed)")
            if not poller.poll(None if wait is None else max(1, int(wait * 1000) + 1)):
                continue
            try:
                msg, fds, _, _ = socket.recv_fds(w.sock, 16, 1)
            except OSError:
                msg, fds = b"", []
            if msg[:1] == b"r" and fds:
                return fds[0], struct.unpack("<Q", msg[1:9])[0]
            for fd in fds:
                os.close(fd)
            if not msg:  # end of file: the worker died
                if not _taken(job[0]):
                    raise _NotTaken
                status = _reap(w.pid, block=True, status=True)
                self._drop(w, kill=False)
                with self._cond:
                    self.replaced += 1
                why = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else
                       f"exit status {os.WEXITSTATUS(status)}") if isinstance(status, int) else "it died"
                raise PayloadTooLarge(f"the computation stopped without an answer ({why}): it most likely "
                                      "ran out of its memory limit (max_memory_bytes)", limit="memory")
            if msg == b"u":
                raise _Stale
            if msg == b"n":  # it no longer holds the plan: send it along
                w.plans.pop(key, None)  # type: ignore[arg-type]
                os.close(job[0])
                job[0] = -1
                job[0] = self._send(w, c, key, True, limit)[0]

    @staticmethod
    def _send(w: _Worker, c: Checked, key: str | None, send_plan: bool, limit: int) -> list[int]:
        """Write the job into a memory file and pass it to ``w``; the file stays open here (as
        ``[fd]``) so that its taken flag can be read if the worker dies."""
        graph = c.plan.graph
        c.plan.graph = None  # type: ignore[assignment]  # sent apart, once per worker
        fd = os.memfd_create("gradserve-job", os.MFD_CLOEXEC)
        try:
            try:
                _pack_job(fd, (key, graph if send_plan else None, c, limit))
            except (pickle.PicklingError, TypeError, AttributeError) as e:
                raise _Unpicklable(str(e)) from None
            try:
                socket.send_fds(w.sock, [b"j"], [fd])
            except OSError:
                raise _NotTaken from None
        except BaseException:
            os.close(fd)
            raise
        finally:
            c.plan.graph = graph
        return [fd]


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _reap(pid: int, block: bool, status: bool = False) -> Any:
    """Reap ``pid``: True (or its wait status, with ``status``) once it has exited, False while it
    runs (``block`` False); an already reaped pid counts as exited."""
    try:
        got, st = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return None if status else True
    if got == 0:
        return False
    return st if status else True


POOL = Pool()  # this process's workers (service.core sends jobs here; the app's lifespan starts it)
atexit.register(POOL.shutdown)  # workers forked for an app served without lifespan events
