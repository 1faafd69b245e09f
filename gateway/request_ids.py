"""Every request's id: made once, when first asked for, and stamped as `x-request-id` on whatever answers it
(answers, errors, refusals, files, probes), so an operator can find any response in the logs and records."""

from __future__ import annotations

import os

from aiohttp import web

REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID = web.RequestKey("request_id", str)


def new_request_id() -> str:
    """128 random bits, as uuid4 has, without its formatting."""
    return f"req_{os.urandom(16).hex()}"


def request_id_of(request: web.Request) -> str:
    """The request's id, made on first use (the proxy takes it early: it names the hold and the record)."""
    existing = request.get(REQUEST_ID)
    if existing is None:
        existing = request[REQUEST_ID] = new_request_id()
    return existing


async def stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: the header on every response, unless the handler set it already."""
    if REQUEST_ID_HEADER not in response.headers:
        response.headers[REQUEST_ID_HEADER] = request_id_of(request)
