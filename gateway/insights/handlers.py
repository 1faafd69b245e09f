"""GET /v1/usage/insights: the waste found in a range, for a tenant's own account or (admin) any account.

Authenticated and scoped exactly as the other /v1/usage endpoints (`admin.auth.account_scope`): a key reads its
own account only, the admin token any account with `?account=ID`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

from aiohttp import web

from gateway.admin.auth import account_scope
from gateway.app_state import ACCOUNTS, CLOCK, INSIGHTS_READER, REDIS, SETTINGS
from gateway.errors import json_response
from gateway.insights.reader import InsightsReader
from gateway.insights.report import insights_report


async def get_insights(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    target = await account_scope(request.app[ACCOUNTS], request.headers, request.query, settings.server.admin_token)
    now = datetime.fromtimestamp(request.app[CLOCK](), UTC)
    report = await insights_report(request.app[INSIGHTS_READER], settings, target.account_id, request.query, now)
    return json_response(report, headers=target.headers)


async def insights_ctx(app: web.Application) -> AsyncIterator[None]:
    """Build the insights reader once, after Redis (storage.redis_ctx) is open."""
    app[INSIGHTS_READER] = InsightsReader(app[REDIS])
    yield


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(insights_ctx)
    app.router.add_get("/v1/usage/insights", get_insights)
