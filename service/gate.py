"""Bounded concurrency for engine work: N engine threads, a bounded wait queue, a deadline.

Engine work runs in a dedicated thread pool of ``max_concurrency`` threads, never on the event
loop. A slot is held until the thread really finishes (not when a timed-out request gives up),
so abandoned work still counts against the bound; the executor's cooperative deadline check
stops such work at the next node.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .errors import Overloaded, RequestTimeout

__all__ = ["Gate"]

T = TypeVar("T")


def _consume(f: asyncio.Future) -> None:
    """Retrieve an abandoned job's exception so asyncio does not log it as never retrieved."""
    if not f.cancelled():
        f.exception()


class Gate:
    """Admit at most ``limit`` concurrent jobs, queue at most ``max_queue``, refuse the rest (503).

    >>> gate = Gate(limit=2, max_queue=8)            # doctest: +SKIP
    >>> await gate.run(fn, timeout=30.0)             # doctest: +SKIP
    """

    def __init__(self, limit: int, max_queue: int, retry_after: int = 1) -> None:
        self.limit, self.max_queue, self.retry_after = limit, max_queue, retry_after
        self.active = 0
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self._pool: ThreadPoolExecutor | None = None

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.limit, thread_name_prefix="gradserve-engine")
        return self._pool

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _release(self) -> None:
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(None)  # hand the slot over: ``active`` stays the same
                return
        self.active -= 1

    def _release_from_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            loop.call_soon_threadsafe(self._release)
        except RuntimeError:  # the loop is closed (shutdown): nobody is waiting any more
            pass

    async def _acquire(self, timeout: float) -> None:
        if self.active < self.limit:
            self.active += 1
            return
        if self.waiting >= self.max_queue:
            raise Overloaded(f"all {self.limit} engine slots are busy and {self.max_queue} requests "
                             "are queued; retry later (max_concurrency, max_queue)",
                             retry_after=self.retry_after)
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except (TimeoutError, asyncio.CancelledError) as e:
            if fut.done() and not fut.cancelled():
                self._release()  # the slot arrived just as we gave up: pass it on
            else:
                fut.cancel()
            if isinstance(e, TimeoutError):
                raise RequestTimeout("the request waited for an engine slot past request_timeout_s") from None
            raise

    async def run(self, fn: Callable[[], T], timeout: float) -> T:
        """Run ``fn`` in an engine thread; Overloaded (503) or RequestTimeout (504) otherwise."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        await self._acquire(timeout)
        try:
            # The job runs in the request's context (request id for logs, tracing parent span).
            cf = self._executor().submit(contextvars.copy_context().run, fn)
        except BaseException:
            self._release()
            raise
        cf.add_done_callback(lambda _: self._release_from_thread(loop))
        inner = asyncio.wrap_future(cf)
        inner.add_done_callback(_consume)
        remaining = max(0.0, timeout - (loop.time() - start))
        try:
            # The grace lets the cooperative deadline inside fn answer first, with its detail.
            return await asyncio.wait_for(asyncio.shield(inner), remaining + 0.25)
        except TimeoutError:
            raise RequestTimeout("the request ran past request_timeout_s; its work is being stopped"
                                 ) from None
