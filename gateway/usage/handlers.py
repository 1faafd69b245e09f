"""/v1/usage*: what a tenant reads about its account's usage, and what the operator reads about any account.

A tenant key reads its own account only: `?account=` naming any other account is refused (403) before
anything is read. The admin token reads any account with `?account=ID`, and `/admin/usage/summary` ranks
accounts and models across the gateway. Every endpoint takes `start` / `end` (see `usage.ranges`) and `api`
(one of billing.record.API_NAMES: that API's usage only).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

from aiohttp import web

from gateway.admin.auth import AccountScope, account_scope, require_admin
from gateway.app_state import ACCOUNTS, CLOCK, REDIS, SETTINGS, USAGE_READER
from gateway.errors import json_response
from gateway.numbers import parse_query_count
from gateway.usage import views
from gateway.usage.export import parse_format, stream_export
from gateway.usage.ranges import Granularity, UsageRange, parse_api, parse_granularity, parse_range
from gateway.usage.reader import Counts, UsageReader

MAX_SUMMARY_LIMIT = 1000


async def usage_target(request: web.Request) -> AccountScope:
    """The account the request reads (see `admin.auth.account_scope`)."""
    settings = request.app[SETTINGS]
    return await account_scope(request.app[ACCOUNTS], request.headers, request.query, settings.server.admin_token)


def _now(request: web.Request) -> datetime:
    return datetime.fromtimestamp(request.app[CLOCK](), UTC)


def _range(request: web.Request, now: datetime, granularity: Granularity, *, exact: bool = False) -> UsageRange:
    settings = request.app[SETTINGS]
    return parse_range(
        request.query,
        now,
        granularity,
        max_days=settings.usage.max_range_days,
        max_hours=settings.usage.max_hour_range_hours,
        exact=exact,
    )


def _daily_range(request: web.Request, now: datetime) -> UsageRange:
    """Per-model and per-key sums are kept per day only."""
    return _range(request, now, parse_granularity(request.query.get("granularity"), (Granularity.DAY,)))


async def get_usage(request: web.Request) -> web.Response:
    target = await usage_target(request)
    now = _now(request)
    usage_range = _range(request, now, parse_granularity(request.query.get("granularity")))
    api = parse_api(request.query.get("api"))
    range_usage = await request.app[USAGE_READER].account_usage(target.account_id, usage_range, now, api=api)
    return json_response(views.usage_view(usage_range, range_usage, target.balance_micros), headers=target.headers)


async def get_model_usage(request: web.Request) -> web.Response:
    target = await usage_target(request)
    now = _now(request)
    usage_range = _daily_range(request, now)
    api = parse_api(request.query.get("api"))
    range_usage = await request.app[USAGE_READER].account_usage(target.account_id, usage_range, now, api=api)
    return json_response(views.model_usage_view(usage_range, range_usage.models, api), headers=target.headers)


async def get_api_key_usage(request: web.Request) -> web.Response:
    target = await usage_target(request)
    now = _now(request)
    usage_range = _daily_range(request, now)
    api = parse_api(request.query.get("api"))
    api_key_usage = await request.app[USAGE_READER].api_key_usage(target.account_id, usage_range, now, api=api)
    return json_response(views.api_key_usage_view(usage_range, api_key_usage, api), headers=target.headers)


async def get_usage_export(request: web.Request) -> web.StreamResponse:
    """Request records of the range; records past `redis.request_log_retention_days` are not exported."""
    target = await usage_target(request)
    fmt = parse_format(request.query.get("format"))
    api = parse_api(request.query.get("api"))
    now = _now(request)
    usage_range = _range(request, now, Granularity.DAY, exact=True)
    first_ms, end_ms = usage_range.ms_bounds()
    retention_days = request.app[SETTINGS].redis.request_log_retention_days
    if retention_days:
        first_ms = max(first_ms, int(now.timestamp() * 1000) - retention_days * 86_400_000)
    filename = f"{views.export_filename(target.account_id, usage_range)}.{fmt.value}"
    headers = {**target.headers, "Content-Disposition": f'attachment; filename="{filename}"'}
    return await stream_export(
        request, request.app[REDIS], target.account_id, (first_ms, end_ms), fmt, headers, api=api
    )


async def get_admin_usage_summary(request: web.Request) -> web.Response:
    """Totals across accounts, the top accounts and the top models by credits, for the operator."""
    require_admin(request.headers, request.app[SETTINGS].server.admin_token)
    limit = parse_query_count(request.query.get("limit"), "limit", default=10, maximum=MAX_SUMMARY_LIMIT)
    now = _now(request)
    usage_range = _daily_range(request, now)
    api = parse_api(request.query.get("api"))
    account_ids = await request.app[ACCOUNTS].account_ids()
    accounts, models = await request.app[USAGE_READER].summary(account_ids, usage_range, now, api=api)
    totals = Counts()
    for account in accounts:
        totals.merge(account.counts)
    return json_response(views.summary_view(usage_range, totals, accounts, models, limit, api))


async def usage_ctx(app: web.Application) -> AsyncIterator[None]:
    """Build the usage reader once, after Redis (storage.redis_ctx) is open."""
    app[USAGE_READER] = UsageReader(app[REDIS])
    yield


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(usage_ctx)
    app.router.add_get("/v1/usage", get_usage)
    app.router.add_get("/v1/usage/models", get_model_usage)
    app.router.add_get("/v1/usage/keys", get_api_key_usage)
    # No HEAD: the export streams its body, which a HEAD answer must not carry.
    app.router.add_get("/v1/usage/export", get_usage_export, allow_head=False)
    app.router.add_get("/admin/usage/summary", get_admin_usage_summary)
