"""Routes on answers the provider keeps (`GET` and `DELETE /v1/responses/{id}`, `POST .../cancel`,
`GET .../input_items`): forwarded to the upstream of the model the answer was made with, never held or billed.

All tenants share the provider key, so the provider would answer anyone: the gateway forwards only when the id
is one it relayed to the caller's account (proxy/answers.py). Any other id, another account's or one that never
existed, is the same 404 `not_found`, given before the upstream is asked. A deleted answer is forgotten.

Retrieval never bills, but a background answer whose bill waits (proxy/background.py) is billed by the first
retrieval or cancel that shows it finished, and before it is deleted; the balance header is then the one after.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from gateway.admin.auth import authenticate, bearer_api_key
from gateway.app_state import ACCOUNTS, ANSWERS, BACKGROUND_BILLS, SETTINGS, UPSTREAM_SESSION
from gateway.bill_headers import balance_headers
from gateway.billing.scripts import SettleOutcome
from gateway.errors import InvalidRequest, NotFound, UpstreamAuthFailed, UpstreamError
from gateway.proxy.answers import StoredAnswer
from gateway.proxy.upstream import call_upstream, read_bounded, relayed_headers, scrubbed_error_body

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ERROR_BODY_LIMIT = 64 * 1024


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
        if request.query.get("stream", "").lower() == "true":
            message = "Streaming a stored response is not supported by this gateway: retrieve it without 'stream'."
            raise InvalidRequest(message, param="stream", headers=headers)
        if method == "DELETE" and stored is not None and stored.pending is not None:
            # Its bill first: once deleted, the answer could never be seen finished.
            await app[BACKGROUND_BILLS].look(tenant.account_id, answer_id, last=True)
        upstream = app[SETTINGS].upstreams[model.upstream]
        path = f"/responses/{answer_id}{suffix}"
        response = await call_upstream(app[UPSTREAM_SESSION], upstream, method, path, list(request.query.items()))
        async with response:
            if response.status in (401, 403):
                log.error("upstream %r refused the gateway's credentials (HTTP %d)", upstream.name, response.status)
                raise UpstreamAuthFailed(headers=headers)
            if 300 <= response.status < 400:
                raise UpstreamError(f"The upstream answered with a redirect (HTTP {response.status}).", headers=headers)
            limit = app[SETTINGS].limits.max_upstream_response_bytes if response.status < 400 else ERROR_BODY_LIMIT
            body = await read_bounded(response, limit)
            if response.status >= 400:
                body = scrubbed_error_body(body, upstream) or b""
                if not body:
                    raise UpstreamError(f"The upstream answered with HTTP {response.status}.", headers=headers)
            elif method == "DELETE":
                await app[ANSWERS].forget(tenant.account_id, answer_id)
            elif stored is not None and stored.pending is not None and suffix in ("", "/cancel"):
                bill = await _bill_if_finished(app, tenant.account_id, answer_id, stored, body)
                headers = balance_headers(bill.balance_micros) if bill is not None else headers
            return web.Response(
                body=body,
                status=response.status,
                headers={**relayed_headers(response), **headers},
                content_type="application/json",
            )

    return handle


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
