"""The operator's endpoints: liveness, readiness and Prometheus metrics.

- `GET /healthz`: the process is alive (always 200); the body says whether Redis answers and how many
  settlements wait in the spool, so it never says "ok" while Redis is down.
- `GET /readyz`: 200 when the gateway can serve (Redis answers), else 503: take it out of the balancer.
- `GET /metrics`: on the API port it needs `metrics.token` (or the admin token) as a bearer token, unless the
  gateway listens on loopback only and no token is set; with `metrics.port` it is served on that port alone.
Both probes read state a background ping keeps, so they answer at once even while Redis is frozen.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.admin.auth import bearer_token, token_matches
from gateway.app_state import METRICS, REDIS_HEALTH, SETTINGS, SETTLER
from gateway.errors import AdminAuthError, NotFound, json_response
from gateway.http_server import BACKLOG, protocol_factory


async def get_healthz(request: web.Request) -> web.Response:
    redis_up = request.app[REDIS_HEALTH].up
    spooled = len(request.app[SETTLER].spool.pending)
    body = {"status": "ok" if redis_up else "degraded", "redis": "up" if redis_up else "down", "spooled": spooled}
    return json_response(body)


async def get_readyz(request: web.Request) -> web.Response:
    if request.app[REDIS_HEALTH].up:
        return json_response({"status": "ready"})
    return json_response({"status": "not ready", "redis": "down"}, status=503, headers={"Retry-After": "2"})


async def get_metrics(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    if settings.metrics.port is not None:
        raise NotFound(f"Unknown path: {request.method} {request.path}")  # served on its own port
    if not settings.metrics_public and not _may_scrape(request):
        raise AdminAuthError("Metrics need the metrics token (or the admin token) as a bearer token.")
    return await request.app[METRICS].handle_scrape(request)


def _may_scrape(request: web.Request) -> bool:
    settings = request.app[SETTINGS]
    presented = bearer_token(request.headers)
    return token_matches(presented, settings.metrics.token) or token_matches(presented, settings.server.admin_token)


async def metrics_port_ctx(app: web.Application) -> AsyncIterator[None]:
    """With `metrics.port`, serve /metrics there (on the gateway's host), for the scraper only."""
    settings = app[SETTINGS]
    if settings.metrics.port is None:
        yield
        return
    metrics_app = web.Application()
    metrics_app.router.add_get("/metrics", app[METRICS].handle_scrape)
    runner = web.AppRunner(metrics_app, access_log=None)
    await runner.setup()
    assert runner.server is not None  # set by setup()
    # Workers share the port as they share the API's: whichever answers a scrape sums every worker's values. The
    # gateway's own protocol: a request its parser refuses is answered in OpenAI's shape, never echoed.
    listener = await asyncio.get_running_loop().create_server(
        protocol_factory(runner.server, access_log=None),
        settings.server.host,
        settings.metrics.port,
        reuse_port=app[METRICS].multiprocess,
        backlog=BACKLOG,
    )
    try:
        yield
    finally:
        listener.close()
        await runner.cleanup()


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", get_healthz)
    app.router.add_get("/readyz", get_readyz)
    app.router.add_get("/metrics", get_metrics)
    app.cleanup_ctx.append(metrics_port_ctx)
