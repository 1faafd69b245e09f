"""Request bodies: the raw body of a /v1 request, read within the server's limits (`read_body`), and the JSON
object of the admin and webhook APIs (numbers inside it: `numbers.py`)."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from gateway.config import Settings
from gateway.errors import InvalidRequest, PayloadTooLarge, RequestTimeout, UnsupportedMediaType


async def read_body(request: web.Request, settings: Settings) -> bytes:
    """The raw body: 415 if compressed (never inflated), 413 if too large, 408 if it stalls."""
    if request.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
        raise UnsupportedMediaType()
    limit = settings.server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"Request body is {request.content_length} bytes; the limit is {limit}.")
    try:
        async with asyncio.timeout(settings.server.body_timeout):
            return await request.read()  # the app's client_max_size enforces the limit on chunked bodies
    except TimeoutError:
        raise RequestTimeout() from None
    except web.HTTPRequestEntityTooLarge:  # a chunked body past the limit: counted as a refusal like any other
        raise PayloadTooLarge(f"Request body is over the limit of {limit} bytes.") from None


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
