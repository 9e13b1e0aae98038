"""uvicorn's httptools protocol with the limits it lacks: header size and header-read time.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``) and, with
``limit_concurrency``, answers 503 past a number of connections, but with httptools (its default
parser) it has no limit on the size of a request's headers and no deadline for them: a client
could send a 64 MB header, or open connections and send a byte now and then, for ever. This
protocol adds both, per connection:

- headers (request line included) over ``max_header_bytes`` get ``431 Request Header Fields Too
  Large`` and the connection is closed;
- a connection that has not finished a request's headers ``header_timeout_s`` after it opened
  (or after the previous response) is closed, without a response (``request_timeout_s`` if that
  is shorter).

``gradserve serve`` runs uvicorn with ``http="service.http:Protocol"``.

>>> Protocol.__mro__[1].__name__
'HttpToolsProtocol'
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .settings import Settings

__all__ = ["Protocol", "header_limits"]


@functools.lru_cache(maxsize=1)
def header_limits() -> tuple[int, float]:
    """(max_header_bytes, header timeout in seconds) from this process's ``GRADSERVE_*`` settings
    (uvicorn builds protocols itself, in each worker process: they read the environment)."""
    s = Settings()
    return s.max_header_bytes, min(s.header_timeout_s, s.request_timeout_s)


_431 = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/problem+json\r\n"
        b"connection: close\r\ncontent-length: %d\r\n\r\n%s")


class _HeadHeld:
    """A request cycle's transport that holds the response's status line and headers (the
    cycle's first write) and sends them with the first body write, in one ``writelines``: one
    system call and one segment for a small response instead of two (about 25 us a response on
    a busy 2-core machine, and the client wakes once). Anything else asked of the transport
    sends what is held first; so does the end of the response (a HEAD response has no body)."""

    __slots__ = ("_t", "_head", "_first")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._t: Any = transport
        self._head: bytes | None = None
        self._first = True

    def write(self, data: Any) -> None:
        if self._first:
            self._first = False
            self._head = data
            return
        head, self._head = self._head, None
        if head is None:
            self._t.write(data)
        elif data:
            self._t.writelines([head, data])
        else:
            self._t.write(head)

    def flush(self) -> None:
        head, self._head = self._head, None
        if head is not None:
            self._t.write(head)

    def __getattr__(self, name: str) -> Any:
        self.flush()
        return getattr(self._t, name)


class Protocol(HttpToolsProtocol):
    """HttpToolsProtocol with a header size limit and a header-read deadline; a response's
    head goes out with its first body bytes (:class:`_HeadHeld`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_header_bytes, self._header_timeout = header_limits()
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._in_headers = True  # the first request's headers are due
        self._headers_done = 0  # requests whose headers ended, on this connection
        self._parsed_bytes = 0  # request line and headers the parser handed over

    # -- the header-read deadline: armed while the server waits for a request's headers
    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self._header_timeout, self._header_timeout_handler)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout_handler(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._in_headers and not self.transport.is_closing():
            self._arm()  # the next request's headers must arrive in time too

    # -- the header size limit: raw bytes received while a request's headers are incomplete
    # (httptools buffers a header whole before handing it over, so counting its callbacks would
    # come too late)
    def on_body(self, body: bytes) -> None:
        if not self.transport.is_closing():  # not after a refusal (no request cycle exists)
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self.transport.is_closing():
            return
        super().on_message_complete()
        self._in_headers, self._header_bytes = True, 0  # what follows is the next request

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._parsed_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._parsed_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed_bytes += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._headers_done += 1
        self._disarm()
        if self._parsed_bytes > self._max_header_bytes:  # headers that arrived whole in one read
            self._refuse_headers()
            return
        super().on_headers_complete()
        cycle = getattr(self, "cycle", None)  # this request's (its task has not run yet)
        if cycle is not None and type(cycle.transport) is not _HeadHeld:
            held = cycle.transport = _HeadHeld(cycle.transport)
            done = cycle.on_response

            def on_response() -> None:  # the cycle's own: a pipelined request's cycle has its own
                held.flush()
                done()
            cycle.on_response = on_response

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # refused: read nothing more
        counting, done = self._in_headers, self._headers_done
        super().data_received(data)
        # only a chunk in which no headers ended holds nothing but (unfinished) headers
        if counting and done == self._headers_done and not self.transport.is_closing():
            self._header_bytes += len(data)
            if self._header_bytes > self._max_header_bytes:
                self._refuse_headers()

    def _refuse_headers(self) -> None:
        self._disarm()
        self._in_headers = False
        detail = (f"the request headers are over the limit max_header_bytes ({self._max_header_bytes} "
                  "bytes)").encode()
        body = (b'{"type":"urn:gradserve:problem:payload-too-large","title":"Request Header Fields Too '
                b'Large","status":431,"detail":"' + detail + b'","errors":[{"loc":["headers"],"msg":"'
                + detail + b'"}]}')
        self.transport.write(_431 % (len(body), body))
        self.transport.close()
