"""Request bodies of the admin and webhook APIs: the JSON object itself (numbers inside it: `numbers.py`)."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from gateway.errors import InvalidRequest, RequestTimeout


async def read_json_object(request: web.Request, timeout_s: float) -> dict[str, object]:
    """The body as a JSON object; 400 otherwise, 408 when it is still arriving after `timeout_s`
    (`server.body_timeout`: a client that stalls mid-body holds nothing for long)."""
    try:
        async with asyncio.timeout(timeout_s):
            raw = await request.read()
    except TimeoutError:
        raise RequestTimeout() from None
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest("The body must be a valid JSON object.") from exc
    if not isinstance(payload, dict):
        raise InvalidRequest("The body must be a JSON object.")
    return payload
