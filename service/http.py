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

It also offers the app a request's body in one buffer (:class:`WholeBody`, the ASGI extension
``scope["extensions"]["gradserve.body"]``): uvicorn hands a body over in pieces of at most 64 KiB,
pausing the socket after each until the app asks for the next, and each piece is copied twice
(into the cycle's bytearray, then into a ``bytes``) before the app joins them, a third copy; the
event loop's reads and the parser copy each byte twice more. What remains of a big body after
its headers is received by the kernel straight into the app's buffer instead (the transport's
protocol is a :class:`asyncio.BufferedProtocol` until the body is whole).

``gradserve serve`` runs uvicorn with ``http="service.http:Protocol"``.

>>> Protocol.__mro__[1].__name__
'HttpToolsProtocol'
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .buffers import BODY_EXTENSION
from .settings import Settings

__all__ = ["Protocol", "WholeBody", "BODY_EXTENSION", "header_limits"]


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


class WholeBody:
    """A request's body received straight into a buffer the app gives, as it arrives: offered to
    the app as ``scope["extensions"]["gradserve.body"]`` for requests with a Content-Length (and
    no Transfer-Encoding), in place of ``receive``'s pieces.

    ``await whole.read_into(view)`` fills ``view`` (exactly Content-Length bytes, which the app
    checked against its limit) and returns the bytes received: ``len(view)``, or another number
    when the body did not arrive whole (the client went away, or the body was not the view's
    length: then -1). It returns None when ``receive`` has delivered part of the body already
    (then ``receive`` reads the rest). The socket is not paused between pieces: the body is
    bounded by the declared length, and from :data:`SINK_MIN_BYTES` on the kernel writes it into
    ``view`` itself (:class:`_Sink`). A cancelled read (the app's body deadline) hands the parser
    what it took and leaves what follows to uvicorn, which drops the body of a request that was
    answered.

    >>> got = await scope["extensions"]["gradserve.body"].read_into(memoryview(buf))  # doctest: +SKIP
    """

    __slots__ = ("_proto", "_cycle", "fed", "view", "off", "_used")

    def __init__(self, proto: Protocol, cycle: Any) -> None:
        self._proto, self._cycle = proto, cycle
        self._used = False
        self.fed = 0  # body bytes the parser handed over for this request
        self.view: memoryview | None = None  # where they go while read_into waits
        self.off = 0

    def take(self, body: bytes) -> None:
        """Copy a piece of the body into the view."""
        view, off = self.view, self.off
        end = off + len(body)
        if off < 0 or end > len(view):  # type: ignore[arg-type]
            self.off = -1  # longer than the view: not the length the app was told
            return
        view[off:end] = body  # type: ignore[index]
        self.off = end

    async def read_into(self, view: memoryview) -> int | None:
        """Receive the body into ``view``; the bytes received, or None (see the class)."""
        proto, cycle = self._proto, self._cycle
        pending = cycle.body
        if self._used or self.fed != len(pending) or len(pending) > len(view):
            return None  # receive() took part of it, or read_into was called before
        self._used = True
        if cycle.waiting_for_100_continue and not proto.transport.is_closing():
            proto.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # as receive() does
            cycle.waiting_for_100_continue = False
        n = len(pending)
        view[:n] = pending
        cycle.body = bytearray()
        self.view, self.off = view, n
        sink = None
        try:
            if cycle.more_body and not cycle.disconnected and proto.cycle is cycle and \
                    len(view) - n >= SINK_MIN_BYTES and not proto.transport.is_closing():
                proto.flow.resume_reading()  # paused at uvicorn's high-water mark before
                sink = _Sink(self, proto)
                proto.transport.set_protocol(sink)
            while cycle.more_body and not cycle.disconnected and not cycle.response_complete:
                proto.flow.resume_reading()
                await cycle.message_event.wait()  # set at the body's end, or on a disconnect
                cycle.message_event.clear()
        finally:
            self.view = None
            if sink is not None and sink.active:  # cancelled (the body's deadline) mid-body
                sink.abandon()
        return self.off


SINK_MIN_BYTES = 1 << 16  # a body's rest this big is received straight into the app's buffer


class _Sink(asyncio.BufferedProtocol):
    """The connection's protocol while the rest of a body is received straight into a
    :class:`WholeBody`'s view; then the HTTP protocol again, with a new parser (the old one still
    waits for the body) and the message completed as the parser would have completed it."""

    def __init__(self, whole: WholeBody, proto: Protocol) -> None:
        self.whole, self.proto = whole, proto
        self.view: memoryview | None = whole.view
        self.start = whole.off  # the parser has handed over the body up to here
        self.active = True

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view[self.whole.off:]  # type: ignore[index]  (the rest: nothing past the body)

    def buffer_updated(self, nbytes: int) -> None:
        w = self.whole
        w.off += nbytes
        if w.off == len(self.view):  # type: ignore[arg-type]
            self._back()
            proto = self.proto
            proto.parser = _parser(proto)
            proto.on_message_complete()

    def _back(self) -> None:
        self.active = False
        # (the transport may keep this object's methods until its next buffered protocol: they
        # must not keep the app's buffer from being reused)
        self.view = None
        self.proto.transport.set_protocol(self.proto)

    def abandon(self) -> None:
        """The read stopped mid-body: the parser gets the bytes taken here, so that it expects the
        rest of the body (uvicorn drops it once answered) and finds the next request after it."""
        taken = bytes(self.view[self.start:self.whole.off])  # type: ignore[index]
        self._back()
        if not self.proto.transport.is_closing():
            self.proto.data_received(taken)

    # the connection's other events are the HTTP protocol's
    def connection_lost(self, exc: Exception | None) -> None:
        self.active, self.view = False, None
        self.proto.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self.proto.eof_received()

    def pause_writing(self) -> None:
        self.proto.pause_writing()

    def resume_writing(self) -> None:
        self.proto.resume_writing()


def _parser(proto: Protocol) -> Any:
    """A new parser for ``proto``, as uvicorn makes one for a connection."""
    parser = httptools.HttpRequestParser(proto)
    try:
        parser.set_dangerous_leniencies(lenient_data_after_close=True)  # uvicorn's setting
    except AttributeError:  # httptools < 0.6.3
        pass
    return parser


class Protocol(HttpToolsProtocol):
    """HttpToolsProtocol with a header size limit and a header-read deadline; a response's
    head goes out with its first body bytes (:class:`_HeadHeld`); a body can be read into one
    buffer (:class:`WholeBody`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_header_bytes, self._header_timeout = header_limits()
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._in_headers = True  # the first request's headers are due
        self._headers_done = 0  # requests whose headers ended, on this connection
        self._parsed_bytes = 0  # request line and headers the parser handed over
        self._framed = 0  # 1: this request has a Content-Length and no Transfer-Encoding
        self._whole: WholeBody | None = None  # the current cycle's

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
        if self.transport.is_closing():  # not after a refusal (no request cycle exists)
            return
        whole = self._whole
        if whole is not None:
            if whole.view is not None and not self.cycle.response_complete:
                whole.take(body)
                return
            whole.fed += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self.transport.is_closing():
            return
        super().on_message_complete()
        self._in_headers, self._header_bytes = True, 0  # what follows is the next request

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._parsed_bytes = 0
        self._framed = 0
        self._whole = None

    def on_url(self, url: bytes) -> None:
        self._parsed_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed_bytes += len(name) + len(value) + 4
        n = len(name)  # (the length first: the cheap test for most headers)
        if n == 14 and name.lower() == b"content-length":
            self._framed = self._framed or 1
        elif n == 17 and name.lower() == b"transfer-encoding":
            self._framed = -1  # never, whatever comes after
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
            if self._framed == 1:
                self._whole = WholeBody(self, cycle)
                self.scope.setdefault("extensions", {})[BODY_EXTENSION] = self._whole

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
