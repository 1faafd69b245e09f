"""The app's shared state: one typed `web.AppKey` per resource, read by handlers as `request.app[LEDGER]`.

(`METRICS` is declared beside `Metrics`, so the error middleware can count Redis errors; it is re-exported here.)

Resources are set by the cleanup contexts that own them (`storage.redis_ctx`, `proxy.handlers.upstream_ctx`)
or by `create_app`; nothing else writes them. The services handlers call are built once, at start-up, by a
cleanup context of their package (`admin_ctx`, `usage_ctx`, `insights_ctx`, `webhooks_ctx`, `biller_ctx`,
`answers_ctx`, `background_ctx`, `conversations_ctx`, each in its package's handlers, after `redis_ctx`): a handler
reads them and never builds one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
from aiohttp import web

from gateway.admin.accounts import AccountStore
from gateway.admin.service import AdminService
from gateway.billing import Ledger
from gateway.billing.client import RedisClient
from gateway.billing.health import RedisHealth
from gateway.billing.settler import Settler
from gateway.config import Settings
from gateway.insights.reader import InsightsReader
from gateway.metrics import METRICS
from gateway.proxy.answers import AnswerStore
from gateway.proxy.background import BackgroundBills
from gateway.proxy.conversation_store import ConversationStore
from gateway.proxy.metering import Biller
from gateway.tokens import TokenCounter
from gateway.usage.reader import UsageReader
from gateway.webhooks.service import WebhookService

SETTINGS = web.AppKey("settings", Settings)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
REDIS: web.AppKey[RedisClient] = web.AppKey("redis")
LEDGER = web.AppKey("ledger", Ledger)
SETTLER = web.AppKey("settler", Settler)
REDIS_HEALTH = web.AppKey("redis_health", RedisHealth)
ACCOUNTS = web.AppKey("accounts", AccountStore)
TOKEN_COUNTER = web.AppKey("token_counter", TokenCounter)
UPSTREAM_SESSION = web.AppKey("upstream_session", aiohttp.ClientSession)
ADMIN_SERVICE = web.AppKey("admin_service", AdminService)
USAGE_READER = web.AppKey("usage_reader", UsageReader)
INSIGHTS_READER = web.AppKey("insights_reader", InsightsReader)
WEBHOOK_SERVICE = web.AppKey("webhook_service", WebhookService)
BILLER = web.AppKey("biller", Biller)
ANSWERS = web.AppKey("answers", AnswerStore)
CONVERSATIONS = web.AppKey("conversations", ConversationStore)
BACKGROUND_BILLS = web.AppKey("background_bills", BackgroundBills)
# Set when a settlement appended webhook events, so the sender delivers them now rather than at its next round.
OUTBOX_WAKEUP = web.AppKey("outbox_wakeup", asyncio.Event)

__all__ = [
    "ACCOUNTS",
    "ANSWERS",
    "BACKGROUND_BILLS",
    "ADMIN_SERVICE",
    "BILLER",
    "CLOCK",
    "CONVERSATIONS",
    "INSIGHTS_READER",
    "LEDGER",
    "METRICS",
    "OUTBOX_WAKEUP",
    "REDIS",
    "REDIS_HEALTH",
    "SETTINGS",
    "SETTLER",
    "TOKEN_COUNTER",
    "UPSTREAM_SESSION",
    "USAGE_READER",
    "WEBHOOK_SERVICE",
]
