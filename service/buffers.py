"""Request-body buffers kept between requests, so big bodies do not fault in fresh pages each time.

A body of megabytes read into a new buffer touches every page of it for the first time: with
``gradserve serve``'s malloc settings (buffers of 1 MiB and more are mapped afresh and returned
on free) that is a page fault per 4 KiB, ~4000 for a 16 MiB body, costing more than the copy.
:data:`BODIES` keeps a few buffers and hands one out again once nothing refers to it any more.

Nothing is ever reused while it is in use: a buffer is free when its reference count says that
only the pool holds it. Every user of the body holds a reference (the request's ``bytes``-like
body, the ``memoryview`` slices and ``np.frombuffer`` arrays decoded from it, a response part
aliasing an input, the event loop's transport while it still sends such a part), so a request
still running in an abandoned engine thread, an error's traceback or a cache keeping a view
keeps its buffer out of the pool; such a buffer is only dropped from the pool, never rewritten.
A request fills its buffer whole before anything reads it (:class:`service.http.WholeBody`),
so no byte of an earlier request can be seen by a later one.

>>> buf = BodyBuffers(max_bytes=1 << 20).take(4)
>>> len(buf), type(buf).__name__
(4, 'bytearray')
"""

from __future__ import annotations

import sys
import threading

__all__ = ["BodyBuffers", "BODIES", "KEPT_BYTES"]

KEPT_BYTES = 64 << 20  # bytes of buffers a process keeps for reuse (bigger bodies get their own)
KEPT_BUFFERS = 4


def _alone(kept: list[bytearray], i: int) -> bool:
    # references: the list's and getrefcount's argument (a caller's local would add one)
    return sys.getrefcount(kept[i]) == 2


class BodyBuffers:
    """A few ``bytearray`` buffers reused for bodies of the same size; thread-safe.

    ``take(n)`` returns a buffer of ``n`` bytes that no one else refers to: a kept one of that
    size if one is free, else a new one (kept if the budget allows, in place of a free one of
    another size first). Its content is whatever it held before: the caller overwrites it all.
    """

    def __init__(self, max_bytes: int = KEPT_BYTES, max_buffers: int = KEPT_BUFFERS) -> None:
        self.max_bytes, self.max_buffers = max_bytes, max_buffers
        self._kept: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self, n: int) -> bytearray:
        with self._lock:
            kept, spare = self._kept, None
            for i in range(len(kept)):
                if _alone(kept, i):
                    if len(kept[i]) == n:
                        return kept[i]
                    spare = i if spare is None else spare
            buf = bytearray(n)
            if n <= self.max_bytes:
                if spare is not None and (len(kept) >= self.max_buffers or
                                          sum(map(len, kept)) + n > self.max_bytes):
                    del kept[spare]  # a free buffer of another size makes room
                if len(kept) < self.max_buffers and sum(map(len, kept)) + n <= self.max_bytes:
                    kept.append(buf)
            return buf

    def kept(self) -> list[int]:
        """The sizes of the buffers kept (for tests and metrics)."""
        with self._lock:
            return [len(b) for b in self._kept]


BODIES = BodyBuffers()  # this process's
