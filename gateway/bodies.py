"""Request bodies of the admin and webhook APIs: the JSON object itself (numbers inside it: `numbers.py`)."""

from __future__ import annotations

import orjson
from aiohttp import web

from gateway.errors import InvalidRequest


async def read_json_object(request: web.Request) -> dict[str, object]:
    """The body as a JSON object; 400 otherwise."""
    try:
        payload = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest("The body must be a valid JSON object.") from exc
    if not isinstance(payload, dict):
        raise InvalidRequest("The body must be a JSON object.")
    return payload
