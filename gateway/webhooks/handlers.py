"""/v1/webhooks*: a tenant's subscriptions (the admin token acts on any account with `?account=ID`), and
the sender's lifetime (`webhooks_ctx`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.admin.auth import account_scope
from gateway.app_state import ACCOUNTS, CLOCK, METRICS, OUTBOX_WAKEUP, REDIS, SETTINGS, WEBHOOK_SERVICE
from gateway.bodies import read_json_object
from gateway.errors import json_response
from gateway.numbers import parse_query_count
from gateway.webhooks.delivery import delivery_session
from gateway.webhooks.outbox import Outbox
from gateway.webhooks.sender import Schedule, WebhookSender
from gateway.webhooks.service import Limits, WebhookService
from gateway.webhooks.store import WebhookStore

# Deliveries run on real time whatever clock the app bills by: receivers check `webhook-timestamp` against
# theirs, and retries are due after real seconds.
WALL_CLOCK = time.time
DRAIN_S = 5.0  # on shutdown, attempts in flight get this long before they are cut short (and retried later)
MAX_LOG_LIMIT = 1000


async def _scope(request: web.Request) -> tuple[str, dict[str, str]]:
    scope = await account_scope(
        request.app[ACCOUNTS], request.headers, request.query, request.app[SETTINGS].server.admin_token
    )
    return scope.account_id, scope.headers


async def post_webhooks(request: web.Request) -> web.Response:
    account_id, headers = await _scope(request)
    view = await request.app[WEBHOOK_SERVICE].create(account_id, await _payload(request))
    return json_response(view, status=201, headers={**headers, "Cache-Control": "no-store"})


async def get_webhooks(request: web.Request) -> web.Response:
    account_id, headers = await _scope(request)
    return json_response(await request.app[WEBHOOK_SERVICE].list_for(account_id), headers=headers)


async def get_webhook(request: web.Request) -> web.Response:
    account_id, headers = await _scope(request)
    return json_response(await request.app[WEBHOOK_SERVICE].show(account_id, request.match_info["id"]), headers=headers)


async def patch_webhook(request: web.Request) -> web.Response:
    account_id, headers = await _scope(request)
    payload = await _payload(request)
    return json_response(
        await request.app[WEBHOOK_SERVICE].update(account_id, request.match_info["id"], payload), headers=headers
    )


async def delete_webhook(request: web.Request) -> web.Response:
    account_id, headers = await _scope(request)
    return json_response(
        await request.app[WEBHOOK_SERVICE].delete(account_id, request.match_info["id"]), headers=headers
    )


async def post_rotate_secret(request: web.Request) -> web.Response:
    account_id, headers = await _scope(request)
    view = await request.app[WEBHOOK_SERVICE].rotate_secret(account_id, request.match_info["id"])
    return json_response(view, headers={**headers, "Cache-Control": "no-store"})


async def post_test(request: web.Request) -> web.Response:
    account_id, headers = await _scope(request)
    sent = await request.app[WEBHOOK_SERVICE].send_test(account_id, request.match_info["id"])
    request.app[OUTBOX_WAKEUP].set()
    return json_response(sent, status=202, headers=headers)


async def get_deliveries(request: web.Request) -> web.Response:
    account_id, headers = await _scope(request)
    limit = parse_query_count(request.query.get("limit"), "limit", default=50, maximum=MAX_LOG_LIMIT)
    log = await request.app[WEBHOOK_SERVICE].deliveries(account_id, request.match_info["id"], limit)
    return json_response(log, headers=headers)


async def post_redeliver(request: web.Request) -> web.Response:
    account_id, headers = await _scope(request)
    match = request.match_info
    scheduled = await request.app[WEBHOOK_SERVICE].redeliver(account_id, match["id"], match["event_id"])
    request.app[OUTBOX_WAKEUP].set()
    return json_response(scheduled, status=202, headers=headers)


async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """Build the webhook service the handlers use, and run the sender for the app's lifetime; on shutdown drain
    it for DRAIN_S, then cut what is left short."""
    config = app[SETTINGS].webhooks
    store = WebhookStore(app[REDIS], clock=app[CLOCK])
    outbox = Outbox(app[REDIS], clock=WALL_CLOCK)
    app[WEBHOOK_SERVICE] = WebhookService(store, outbox, Limits.configured(config), clock=app[CLOCK])
    async with delivery_session(allow_private=config.allow_private_targets, timeout_s=config.timeout) as session:
        sender = WebhookSender(
            store,
            outbox,
            session,
            Schedule.configured(config),
            wakeup=app[OUTBOX_WAKEUP],
            clock=WALL_CLOCK,
            metrics=app[METRICS],
        )
        rounds = asyncio.create_task(sender.run(), name="webhook-sender")
        try:
            yield
        finally:
            rounds.cancel()  # no new deliveries start
            await asyncio.gather(rounds, return_exceptions=True)
            await sender.drain(DRAIN_S)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/webhooks", post_webhooks)
    app.router.add_get("/v1/webhooks", get_webhooks)
    app.router.add_get("/v1/webhooks/{id}", get_webhook)
    app.router.add_patch("/v1/webhooks/{id}", patch_webhook)
    app.router.add_delete("/v1/webhooks/{id}", delete_webhook)
    app.router.add_post("/v1/webhooks/{id}/rotate-secret", post_rotate_secret)
    app.router.add_post("/v1/webhooks/{id}/test", post_test)
    app.router.add_get("/v1/webhooks/{id}/deliveries", get_deliveries)
    app.router.add_post("/v1/webhooks/{id}/deliveries/{event_id}/retry", post_redeliver)
    app.cleanup_ctx.append(webhooks_ctx)


async def _payload(request: web.Request) -> dict[str, object]:
    """The JSON object the request carries, within the body timeout."""
    return await read_json_object(request, request.app[SETTINGS].server.body_timeout)
