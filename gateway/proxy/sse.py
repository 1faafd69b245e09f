"""Server-sent events, split incrementally from upstream bytes without re-encoding them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

DONE = b"[DONE]"
EVENT_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,100}")


@dataclass(frozen=True)
class Event:
    raw: bytes  # the event as received, without its terminating blank line
    data: bytes | None  # the joined `data:` payload, None for comment-only events


class EventTooLarge(ValueError):
    """An upstream sent more than the limit without ending an event."""


class EventSplitter:
    """Feed bytes as they arrive; get back each complete event once its blank line has arrived."""

    def __init__(self, max_event_bytes: int = 16 * 1024 * 1024) -> None:
        self._buffer = b""
        self.max_event_bytes = max_event_bytes

    def feed(self, chunk: bytes) -> list[Event]:
        buffer = self._buffer + chunk
        held = b""
        if b"\r" in buffer:
            # Normalise CRLF / CR line ends; only the rare upstream that uses them pays for it. A trailing CR
            # waits for the next chunk, which may start with its LF.
            if buffer.endswith(b"\r"):
                buffer, held = buffer[:-1], b"\r"
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events = []
        start = 0
        while (end := buffer.find(b"\n\n", start)) != -1:
            raw = buffer[start:end]
            start = end + 2
            if raw.strip():
                events.append(parse_event(raw))
        self._buffer = buffer[start:] + held
        if len(self._buffer) > self.max_event_bytes:
            raise EventTooLarge(f"an upstream event grew past {self.max_event_bytes} bytes")
        return events

    def rest(self) -> list[Event]:
        """The events a stream left after its last complete one: ended by a lone CR, or cut off unterminated."""
        raw, self._buffer = self._buffer, b""
        events = self.feed(raw.replace(b"\r", b"\n") + b"\n\n")
        self._buffer = b""
        return events


def parse_event(raw: bytes) -> Event:
    data_lines = []
    for line in raw.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            data_lines.append(value[1:] if value.startswith(b" ") else value)
    return Event(raw, b"\n".join(data_lines) if data_lines else None)


def encode_event(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


def restamped_event(event: Event, data: bytes) -> bytes:
    """`event` with its data replaced by `data`, its other fields (`event:`, `id:`) kept: typed streams
    (Responses, Anthropic's) name each event's type in its `event:` line."""
    fields = [line for line in event.raw.split(b"\n") if line and not line.startswith((b"data:", b":"))]
    return b"".join(line + b"\n" for line in fields) + encode_event(data)


def encode_typed_event(event: Mapping[str, object], default: str) -> bytes:
    """A typed stream's event (Responses', Anthropic's): its `type` as the `event:` line (`default` when it has no
    usable one: a line break there would end the field), then its data."""
    kind = event.get("type")
    name = kind if isinstance(kind, str) and EVENT_NAME.fullmatch(kind) else default
    return b"event: " + name.encode() + b"\n" + encode_event(orjson.dumps(event))
