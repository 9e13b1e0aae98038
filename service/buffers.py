"""Request-body buffers kept between requests, so big bodies do not fault in fresh pages each time.

A body of megabytes read into a new buffer touches every page of it for the first time: when it is
mapped afresh (a body past the malloc policy's 32 MiB mmap threshold, engine/_malloc.py, or any
big one under a user's lower ``MALLOC_MMAP_THRESHOLD_``) that is a page fault per 4 KiB, ~4000
for a 16 MiB body, costing more than the copy.
:data:`BODIES` keeps a few buffers and hands one out again once nothing refers to it any more.

Nothing is ever reused while it is in use: a buffer is free when its reference count says that
only the pool holds it. Every user of the body holds a reference (the request's ``bytes``-like
body, the ``memoryview`` slices and ``np.frombuffer`` arrays decoded from it, a response part
aliasing an input, the event loop's transport while it still sends such a part), so a request
still running in an abandoned engine thread, an error's traceback or a cache keeping a view
keeps its buffer out of use. Buffers in use count against the pool's budget; past it, bodies are
read in pieces as before, so clients that declare big bodies cannot make a process commit more
than :data:`KEPT_BYTES` for them ahead of their bytes.
A request fills its buffer whole before anything reads it (:class:`service.http.WholeBody`),
so no byte of an earlier request can be seen by a later one.

>>> pool = BodyBuffers(max_bytes=1 << 20)
>>> buf = pool.take(4)
>>> len(buf), type(buf).__name__, pool.take(2 << 20)   # over the budget: none
(4, 'bytearray', None)
"""

from __future__ import annotations

import sys
import threading

__all__ = ["BodyBuffers", "BODIES", "KEPT_BYTES", "BODY_EXTENSION"]

# The ASGI extension (scope["extensions"] key) under which gradserve's HTTP protocol offers a
# request's body in one buffer (service.http.WholeBody); here, so the routes need not import uvicorn.
BODY_EXTENSION = "gradserve.body"

KEPT_BYTES = 64 << 20  # bytes of body buffers per process (bodies past them are read in pieces)
KEPT_BUFFERS = 4


def _alone(kept: list[bytearray], i: int) -> bool:
    # references: the list's and getrefcount's argument (a caller's local would add one)
    return sys.getrefcount(kept[i]) == 2


class BodyBuffers:
    """At most ``max_buffers`` ``bytearray`` buffers of ``max_bytes`` in all, reused for bodies of
    the same size; thread-safe.

    ``take(n)`` returns a buffer of ``n`` bytes that no one else refers to: a kept one of that
    size if one is free, else a new one, kept in place of free ones of other sizes if need be;
    None when the budget has no room (the buffers in use fill it, or ``n`` is over it). Its
    content is whatever it held before: the caller overwrites it all. Since a body's buffer is
    taken (and its memory committed) when its headers arrive, before its bytes do, the budget
    is what bounds the memory of clients that declare big bodies and send them slowly or never.
    """

    def __init__(self, max_bytes: int = KEPT_BYTES, max_buffers: int = KEPT_BUFFERS) -> None:
        self.max_bytes, self.max_buffers = max_bytes, max_buffers
        self._kept: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self, n: int) -> bytearray | None:
        with self._lock:
            kept = self._kept
            free = [i for i in range(len(kept)) if _alone(kept, i)]
            for i in free:
                if len(kept[i]) == n:
                    return kept[i]
            used = sum(map(len, kept))
            busy = used - sum(len(kept[i]) for i in free)
            if len(kept) - len(free) >= self.max_buffers or busy + n > self.max_bytes:
                return None  # no room, even without the free ones
            for i in reversed(free):  # make room: free buffers of other sizes go
                if len(kept) < self.max_buffers and used + n <= self.max_bytes:
                    break
                used -= len(kept[i])
                del kept[i]
            buf = bytearray(n)
            kept.append(buf)
            return buf

    def kept(self) -> list[int]:
        """The sizes of the buffers kept (for tests and metrics)."""
        with self._lock:
            return [len(b) for b in self._kept]


BODIES = BodyBuffers()  # this process's
