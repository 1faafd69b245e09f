"""A real webhook receiver on 127.0.0.1 that records what it gets and answers as a test tells it (the
`Receiver` and its helpers are in tests/webhooks/common.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.webhooks.common import Delivery, Receiver


@pytest.fixture
async def receiver(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> Receiver:
    holder: list[Receiver] = []

    async def hook(request: web.Request) -> web.Response:
        got = holder[0]
        got.got.append(Delivery({k.lower(): v for k, v in request.headers.items()}, await request.read()))
        if got.delay_s:
            await asyncio.sleep(got.delay_s)
        status = got.statuses.pop(0) if got.statuses else 200
        return web.Response(status=status, text="ok" if status < 300 else "not now")

    app = web.Application()
    app.router.add_post("/hook", hook)
    holder.append(Receiver(await aiohttp_server(app)))
    return holder[0]
