"""The SSE splitter: events come out whole however the bytes were cut, and never grow without bound."""

from __future__ import annotations

import pytest

from gateway.proxy.sse import EventSplitter, EventTooLarge

STREAM = b'data: {"a": 1}\n\n: keep-alive\n\ndata: {"b":\ndata: 2}\n\ndata:[DONE]\n\n'


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"])
def test_events_come_out_whole_whatever_the_cut(size: int, line_end: bytes) -> None:
    raw = STREAM.replace(b"\n", line_end)
    splitter = EventSplitter()
    events = []
    for start in range(0, len(raw), size):
        events += splitter.feed(raw[start : start + size])
    events += splitter.rest()
    assert [event.data for event in events] == [b'{"a": 1}', None, b'{"b":\n2}', b"[DONE]"]


def test_a_cut_stream_leaves_its_tail() -> None:
    splitter = EventSplitter()
    assert splitter.feed(b'data: {"a": 1}\n\ndata: {"b"') != []
    assert [event.data for event in splitter.rest()] == [b'{"b"']


def test_an_endless_event_is_refused() -> None:
    splitter = EventSplitter(max_event_bytes=100)
    with pytest.raises(EventTooLarge):
        for _ in range(20):
            splitter.feed(b"data: " + b"x" * 10)
