"""What every route of the mock upstream shares: its options, what it saw, and how it waits out a stalled stream."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from gateway.mock.options import MockOptions


@dataclass
class MockState:
    """What the mock saw: tests read it to check what the gateway sent upstream."""

    requests: list[dict[str, object]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    aborted_streams: int = 0
    finished_streams: int = 0
    prompt_cache: set[str] = field(default_factory=set)  # Messages prompt prefixes written to the "cache"


MOCK_OPTIONS = web.AppKey("mock_options", MockOptions)
MOCK_STATE = web.AppKey("mock_state", MockState)


async def until_closed(request: web.Request) -> None:
    """Stay silent until the peer hangs up (polling, so server shutdown is never held up for long)."""
    while request.transport is not None and not request.transport.is_closing():
        await asyncio.sleep(0.05)
    raise ConnectionResetError("peer closed a stalled stream")
