"""Request bodies of the admin and webhook APIs: the JSON object itself, and credit amounts inside it."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import orjson
from aiohttp import web

from gateway.billing.pricing import MICROS_PER_CREDIT, credits_to_micros
from gateway.errors import InvalidRequest

MAX_CREDITS_MICROS = 10**15  # a billion credits: far below where Lua's doubles stop being exact (2**53)


async def read_json_object(request: web.Request) -> dict[str, object]:
    """The body as a JSON object; 400 otherwise."""
    try:
        payload = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest("The body must be a valid JSON object.") from exc
    if not isinstance(payload, dict):
        raise InvalidRequest("The body must be a JSON object.")
    return payload


def parse_credits(value: object, param: str, *, allow_negative: bool) -> int:
    """A credit amount (number or decimal string, up to 6 decimals) in micro-credits, at most a billion credits
    either way; 400 otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidRequest(f"'{param}' must be a number of credits.", param=param)
    try:
        micros = credits_to_micros(Decimal(str(value)))
    except (InvalidOperation, ValueError) as exc:
        raise InvalidRequest(f"'{param}' must be a number of credits with at most 6 decimals.", param=param) from exc
    if micros < 0 and not allow_negative:
        raise InvalidRequest(f"'{param}' must not be negative.", param=param)
    if abs(micros) > MAX_CREDITS_MICROS:
        raise InvalidRequest(
            f"'{param}' is too large (at most {MAX_CREDITS_MICROS // MICROS_PER_CREDIT}).", param=param
        )
    return micros
