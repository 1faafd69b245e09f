"""/v1/usage*: what a tenant reads about its account's usage, and what the operator reads about any account.

A tenant key reads its own account only: `?account=` naming any other account is refused (403) before
anything is read. The admin token reads any account with `?account=ID`, and `/admin/usage/summary` ranks
accounts and models across the gateway. Every endpoint takes `start` / `end` (see `usage_range`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web

from gateway import usage_views
from gateway.admin_api import is_admin, require_admin
from gateway.billing import redis_keys
from gateway.billing.pricing import format_credits
from gateway.billing.redis_keys import as_text
from gateway.errors import InvalidRequest, NotFound, PermissionDenied, json_response
from gateway.export import parse_format, stream_export
from gateway.keys import accounts_key, clock_key, redis_key, settings_key
from gateway.metering import CREDITS_HEADER
from gateway.proxy import authenticated_balance, bearer_key
from gateway.usage import Counts, UsageReader
from gateway.usage_range import Granularity, UsageRange, parse_granularity, parse_range

MAX_SUMMARY_LIMIT = 1000


@dataclass(frozen=True)
class UsageTarget:
    """The account a usage request reads, and the headers its answer carries."""

    account_id: str
    balance_micros: int
    headers: dict[str, str] = field(default_factory=dict)


async def usage_target(request: web.Request) -> UsageTarget:
    """The admin token reads `?account=ID`; a tenant key reads its own account and nothing else (401 / 403)."""
    requested = request.query.get("account")
    if is_admin(request):
        if not requested:
            raise InvalidRequest("'account' is required with the admin token.", param="account")
        account = await request.app[accounts_key].get_account(requested)
        if account is None:
            raise NotFound(f"No account with id '{requested[:40]}'.", param="account")
        return UsageTarget(account.id, account.balance_micros)
    key = bearer_key(request)
    balance = await authenticated_balance(request, key)
    if requested is not None and requested != key.account_id:
        raise PermissionDenied("An API key can read only its own account's usage.", param="account")
    return UsageTarget(key.account_id, balance, {CREDITS_HEADER: format_credits(balance)})


def _now(request: web.Request) -> datetime:
    return datetime.fromtimestamp(request.app[clock_key](), UTC)


def _range(request: web.Request, now: datetime, granularity: Granularity, *, exact: bool = False) -> UsageRange:
    settings = request.app[settings_key]
    return parse_range(
        request.query,
        now,
        granularity,
        max_days=settings.usage_max_range_days,
        max_hours=settings.usage_max_hour_range_hours,
        exact=exact,
    )


def _daily_range(request: web.Request, now: datetime) -> UsageRange:
    """Per-model and per-key sums are kept per day only."""
    return _range(request, now, parse_granularity(request.query.get("granularity"), (Granularity.DAY,)))


async def get_usage(request: web.Request) -> web.Response:
    target = await usage_target(request)
    now = _now(request)
    usage_range = _range(request, now, parse_granularity(request.query.get("granularity")))
    usage = await UsageReader(request.app[redis_key]).account_usage(target.account_id, usage_range, now)
    return json_response(usage_views.usage(usage_range, usage, target.balance_micros), headers=target.headers)


async def get_model_usage(request: web.Request) -> web.Response:
    target = await usage_target(request)
    now = _now(request)
    usage_range = _daily_range(request, now)
    usage = await UsageReader(request.app[redis_key]).account_usage(target.account_id, usage_range, now)
    return json_response(usage_views.models(usage_range, usage.models), headers=target.headers)


async def get_key_usage(request: web.Request) -> web.Response:
    target = await usage_target(request)
    now = _now(request)
    usage_range = _daily_range(request, now)
    keys = await UsageReader(request.app[redis_key]).keys_usage(target.account_id, usage_range, now)
    return json_response(usage_views.keys(usage_range, keys), headers=target.headers)


async def export_usage(request: web.Request) -> web.StreamResponse:
    """Request records of the range; records past `redis.request_log_retention_days` are not exported."""
    target = await usage_target(request)
    fmt = parse_format(request.query.get("format"))
    now = _now(request)
    usage_range = _range(request, now, Granularity.DAY, exact=True)
    first_ms, end_ms = usage_range.ms_bounds()
    retention_days = request.app[settings_key].request_log_retention_days
    if retention_days:
        first_ms = max(first_ms, int(now.timestamp() * 1000) - retention_days * 86_400_000)
    filename = f"{usage_views.export_filename(target.account_id, usage_range)}.{fmt.value}"
    headers = {**target.headers, "Content-Disposition": f'attachment; filename="{filename}"'}
    redis = request.app[redis_key]
    return await stream_export(request, redis, target.account_id, (first_ms, end_ms), fmt, headers)


async def admin_summary(request: web.Request) -> web.Response:
    """Totals across accounts, the top accounts and the top models by credits, for the operator."""
    require_admin(request)
    limit = _limit(request.query.get("limit"))
    now = _now(request)
    usage_range = _daily_range(request, now)
    redis = request.app[redis_key]
    account_ids = [as_text(i) for i in await redis.zrange(redis_keys.ACCOUNT_INDEX, 0, -1)]
    accounts, models = await UsageReader(redis).summary(account_ids, usage_range, now)
    totals = Counts()
    for account in accounts:
        totals.merge(account.counts)
    return json_response(usage_views.summary(usage_range, totals, accounts, models, limit))


def _limit(value: str | None) -> int:
    if value is None or value == "":
        return 10
    if not (value.isascii() and value.isdigit() and len(value) <= 4) or not 1 <= int(value) <= MAX_SUMMARY_LIMIT:
        raise InvalidRequest(f"'limit' must be a whole number from 1 to {MAX_SUMMARY_LIMIT}.", param="limit")
    return int(value)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/usage", get_usage)
    app.router.add_get("/v1/usage/models", get_model_usage)
    app.router.add_get("/v1/usage/keys", get_key_usage)
    app.router.add_get("/v1/usage/export", export_usage)
    app.router.add_get("/admin/usage/summary", admin_summary)
