"""service.http: a response's head is held and sent with its first body bytes."""

from __future__ import annotations

from service.http import _HeadHeld


class _Transport:
    """Records what the request cycle's transport is asked to do."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def writelines(self, parts: list) -> None:
        self.calls.append(("writelines", [bytes(p) for p in parts]))

    def is_closing(self) -> bool:
        self.calls.append(("is_closing",))
        return False


def test_head_and_first_body_part_go_out_in_one_call() -> None:
    t = _Transport()
    held = _HeadHeld(t)  # type: ignore[arg-type]
    held.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert t.calls == []
    held.write(b"{}")
    held.write(b"more")
    assert t.calls == [("writelines", [b"HTTP/1.1 200 OK\r\n\r\n", b"{}"]), ("write", b"more")]


def test_an_empty_body_sends_the_head_alone() -> None:
    t = _Transport()
    held = _HeadHeld(t)  # type: ignore[arg-type]
    held.write(b"HEAD")
    held.write(b"")
    assert t.calls == [("write", b"HEAD")]


def test_a_response_without_body_writes_is_flushed_and_other_calls_flush_first() -> None:
    t = _Transport()
    held = _HeadHeld(t)  # type: ignore[arg-type]
    held.write(b"HEAD")
    assert held.is_closing() is False  # anything else asked of the transport: the head first
    held.flush()  # what the end of a response does (a HEAD response writes no body)
    assert t.calls == [("write", b"HEAD"), ("is_closing",)]
