"""Typed application keys: the shared state handlers read from `request.app`."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from gateway.accounts import AccountStore
from gateway.billing.ledger import Ledger
from gateway.config import Settings
from gateway.tokens import TokenCounter

settings_key = web.AppKey("settings", Settings)
clock_key: web.AppKey[Callable[[], float]] = web.AppKey("clock")
redis_key = web.AppKey("redis", Redis)
ledger_key = web.AppKey("ledger", Ledger)
accounts_key = web.AppKey("accounts", AccountStore)
token_counter_key = web.AppKey("token_counter", TokenCounter)
upstream_session_key = web.AppKey("upstream_session", aiohttp.ClientSession)
