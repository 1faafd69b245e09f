"""Time to the first streamed byte, at concurrency 1: a latency probe, not a load generator.

One keep-alive connection sends the streamed request again and again, timing each from the request's last byte
to the first SSE event of the answer (`data:` after the headers), then reads the answer to its end.
"""

from __future__ import annotations

import math
import socket
import statistics
import time

from benchmarks.apis import ApiLoad

LAST_CHUNK = b"\r\n0\r\n\r\n"  # the end of a chunked body


class ProbeError(RuntimeError):
    pass


def first_byte_seconds(port: int, load: ApiLoad, key: str, samples: int, warmup: int = 10) -> list[float]:
    """`samples` times to the first streamed byte of `load` (a streamed one), in seconds, after `warmup` untimed
    requests."""
    body = load.body_bytes()
    lines = [f"POST {load.path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *load.header_lines(key)]
    head = "\r\n".join([*lines, f"Content-Length: {len(body)}", "", ""])
    request = head.encode() + body
    times = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for index in range(warmup + samples):
            elapsed = _one(sock, request)
            if index >= warmup:
                times.append(elapsed)
    return times


def _one(sock: socket.socket, request: bytes) -> float:
    started = time.perf_counter()
    sock.sendall(request)
    received = b""
    first: float | None = None
    while not received.endswith(LAST_CHUNK):
        chunk = sock.recv(65536)
        if not chunk:
            raise ProbeError(f"connection closed after {received[-300:]!r}")
        received += chunk
        if first is None:
            head_end = received.find(b"\r\n\r\n")
            if head_end >= 0 and b"data:" in received[head_end:]:
                first = time.perf_counter() - started
            if head_end >= 0 and not received.startswith(b"HTTP/1.1 200"):
                raise ProbeError(f"not a 200 stream: {received[:300]!r}")
    assert first is not None
    return first


def summary_ms(seconds: list[float]) -> dict[str, float]:
    """Median and 99th percentile (nearest rank) in milliseconds."""
    ordered = sorted(seconds)
    p99 = ordered[math.ceil(0.99 * len(ordered)) - 1]
    return {"median": round(statistics.median(ordered) * 1000, 3), "p99": round(p99 * 1000, 3), "n": len(ordered)}
