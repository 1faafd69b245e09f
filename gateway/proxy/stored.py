"""Routes on answers the provider keeps (`GET` and `DELETE /v1/responses/{id}`, `POST .../cancel`,
`GET .../input_items`): forwarded to the upstream of the model the answer was made with, never held or billed.

All tenants share the provider key, so the provider would answer anyone: the gateway forwards only when the id
is one it relayed to the caller's account (proxy/answers.py). Any other id, another account's or one that never
existed, is the same 404 `not_found`, given before the upstream is asked. A deleted answer is forgotten.

Retrieval never bills, but a background answer whose bill waits (proxy/background.py) is billed by the first
retrieval or cancel that shows it finished (a streamed retrieval, `?stream=true`, by its terminal event), and
before it is deleted; the balance header of a plain answer is then the one after.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import aiohttp
import orjson
from aiohttp import web

from gateway.admin.auth import authenticate, bearer_api_key
from gateway.app_state import ACCOUNTS, ANSWERS, BACKGROUND_BILLS, SETTINGS, UPSTREAM_SESSION
from gateway.bill_headers import balance_headers
from gateway.billing.scripts import SettleOutcome
from gateway.errors import InvalidRequest, NotFound
from gateway.proxy.answers import StoredAnswer
from gateway.proxy.apis.responses import TERMINAL
from gateway.proxy.sse import EventSplitter, EventTooLarge
from gateway.proxy.upstream import call_upstream, relayed_headers, unmetered_answer

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def stored_answer_handler(method: str, suffix: str = "") -> Handler:
    """The handler of `method` on `/v1/responses/{id}` + `suffix`, for the caller's own answers only."""

    async def handle(request: web.Request) -> web.StreamResponse:
        app = request.app
        tenant = await authenticate(app[ACCOUNTS], bearer_api_key(request.headers))
        headers = balance_headers(tenant.balance_micros)
        answer_id = request.match_info["id"]
        stored = await app[ANSWERS].find(tenant.account_id, answer_id)
        model = app[SETTINGS].models.get(stored.model) if stored is not None else None
        if model is None:
            raise NotFound(f"Response with id '{answer_id}' not found.", param="response_id", headers=headers)
        streamed = request.query.get("stream", "").lower() == "true"
        if streamed and (method, suffix) != ("GET", ""):
            raise InvalidRequest("Only a response itself can be streamed.", param="stream", headers=headers)
        if method == "DELETE" and stored is not None and stored.pending is not None:
            # Its bill first: once deleted, the answer could never be seen finished.
            await app[BACKGROUND_BILLS].look(tenant.account_id, answer_id, last=True)
        upstream = app[SETTINGS].upstreams[model.upstream]
        path = f"/responses/{answer_id}{suffix}"
        response = await call_upstream(app[UPSTREAM_SESSION], upstream, method, path, list(request.query.items()))
        async with response:
            if streamed and response.status == 200 and response.content_type == "text/event-stream":
                assert stored is not None
                return await _relay_stream(request, response, tenant.account_id, answer_id, stored, headers)
            limit = app[SETTINGS].limits.max_upstream_response_bytes
            body = await unmetered_answer(response, upstream, limit, headers)
            answered = response.status < 400  # an error is relayed as it is
            if answered and method == "DELETE":
                await app[ANSWERS].forget(tenant.account_id, answer_id)
            elif answered and stored is not None and stored.pending is not None and suffix in ("", "/cancel"):
                bill = await _bill_if_finished(app, tenant.account_id, answer_id, stored, body)
                headers = balance_headers(bill.balance_micros) if bill is not None else headers
            return web.Response(
                body=body,
                status=response.status,
                headers={**relayed_headers(response), **headers},
                content_type="application/json",
            )

    return handle


async def _relay_stream(
    request: web.Request,
    upstream: aiohttp.ClientResponse,
    account_id: str,
    answer_id: str,
    stored: StoredAnswer,
    headers: dict[str, str],
) -> web.StreamResponse:
    """A stored response's events (`?stream=true`, `starting_after`: a background response's stream resumed),
    relayed as they come; a pending bill is settled by the terminal event, before it goes out."""
    app = request.app
    client = web.StreamResponse(
        headers={**relayed_headers(upstream), **headers, "Content-Type": "text/event-stream; charset=utf-8"}
    )
    client.headers["Cache-Control"] = "no-cache"
    await client.prepare(request)
    splitter = EventSplitter(app[SETTINGS].limits.max_upstream_response_bytes)
    pending = stored.pending
    try:
        async for data in upstream.content.iter_any():
            for event in splitter.feed(data):
                if pending is not None and event.data is not None:
                    response = _terminal_response(event.data)
                    if response is not None and await app[BACKGROUND_BILLS].seen(
                        account_id, answer_id, stored, response
                    ):
                        pending = None
                await client.write(event.raw + b"\n\n")
    except (TimeoutError, aiohttp.ClientError, EventTooLarge):
        log.info("stored response %s: the upstream's stream ended early", answer_id)
        return client  # the client sees the stream end without its terminal event; the bill waits
    await client.write_eof()
    return client


def _terminal_response(data: bytes) -> dict[str, object] | None:
    """The response of a terminal event (`response.completed`, ...), None for any other event."""
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict) or event.get("type") not in TERMINAL:
        return None
    response = event.get("response")
    return response if isinstance(response, dict) else None


async def _bill_if_finished(
    app: web.Application, account_id: str, answer_id: str, stored: StoredAnswer, body: bytes
) -> SettleOutcome | None:
    """A background answer's bill, settled if the provider's answer shows it finished."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(payload, dict):
        return None
    return await app[BACKGROUND_BILLS].seen(account_id, answer_id, stored, payload)


def add_stored_routes(app: web.Application) -> None:
    app.router.add_get("/v1/responses/{id}", stored_answer_handler("GET"))
    app.router.add_delete("/v1/responses/{id}", stored_answer_handler("DELETE"))
    app.router.add_post("/v1/responses/{id}/cancel", stored_answer_handler("POST", "/cancel"))
    app.router.add_get("/v1/responses/{id}/input_items", stored_answer_handler("GET", "/input_items"))
