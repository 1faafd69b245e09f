"""Server-sent events, split incrementally from upstream bytes without re-encoding them."""

from __future__ import annotations

from dataclasses import dataclass

DONE = b"[DONE]"


@dataclass(frozen=True)
class Event:
    raw: bytes  # the event as received, without its terminating blank line
    data: bytes | None  # the joined `data:` payload, None for comment-only events


class EventSplitter:
    """Feed bytes as they arrive; get back each complete event once its blank line has arrived."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[Event]:
        buffer = self._buffer + chunk
        if b"\r" in buffer:
            # Normalise CRLF / CR line ends once; only the rare upstream that uses them pays for it.
            if buffer.endswith(b"\r"):
                self._buffer = buffer
                return []
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events = []
        start = 0
        while (end := buffer.find(b"\n\n", start)) != -1:
            raw = buffer[start:end]
            start = end + 2
            if raw.strip():
                events.append(parse_event(raw))
        self._buffer = buffer[start:]
        return events

    def rest(self) -> Event | None:
        """Whatever a cut stream left after its last blank line, as a final event."""
        raw, self._buffer = self._buffer, b""
        return parse_event(raw) if raw.strip() else None


def parse_event(raw: bytes) -> Event:
    data_lines = []
    for line in raw.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            data_lines.append(value[1:] if value.startswith(b" ") else value)
    return Event(raw, b"\n".join(data_lines) if data_lines else None)


def encode_event(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"
