"""The Redis connection for the app's lifetime: the configured server, or an embedded one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ClusterDownError, ConnectionError, RedisClusterException, SlotNotCoveredError

from gateway.admin.accounts import AccountStore
from gateway.app_state import ACCOUNTS, CLOCK, LEDGER, METRICS, OUTBOX_WAKEUP, REDIS, REDIS_HEALTH, SETTINGS, SETTLER
from gateway.billing import Clock, InsightRules, Ledger, Retention
from gateway.billing.client import RedisClient
from gateway.billing.health import RedisHealth
from gateway.billing.settler import Settler
from gateway.billing.spool import Spool
from gateway.billing.sweeper import Sweeper
from gateway.config import ConfigError, Settings
from gateway.redis_server import EmbeddedRedis


@asynccontextmanager
async def open_redis(settings: Settings) -> AsyncIterator[RedisClient]:
    """Connect to REDIS_URL, or start (or join) the embedded server in the data directory."""
    embedded: EmbeddedRedis | None = None
    url = settings.redis.url
    if url is None:
        if settings.redis.cluster:
            raise ConfigError("redis.cluster needs redis.url (REDIS_URL): the embedded Redis is a single server")
        embedded = EmbeddedRedis(settings.redis.data_dir)
        url = await asyncio.to_thread(embedded.start)
    client = redis_client(url, settings)
    try:
        await client.ping()
        yield client
    finally:
        await client.aclose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


class _ClusterClient(RedisCluster):
    """A cluster client that, like `redis_client`'s `Redis`, retries connection errors but never a timeout.

    (redis-py's cluster client would also retry timeouts; a cluster that is failing over is still retried.)
    """

    ERRORS_ALLOW_RETRY = (ConnectionError, ClusterDownError, SlotNotCoveredError)  # type: ignore[assignment]

    async def initialize(self, *args: Any, **kwargs: Any) -> _ClusterClient:
        """Learn the slot map; no reachable node is a ConnectionError here, as a refused connect is for `Redis`."""
        try:
            await super().initialize(*args, **kwargs)
        except RedisClusterException as exc:
            raise ConnectionError(str(exc)) from exc
        return self


def redis_client(url: str, settings: Settings) -> RedisClient:
    """A pooled client whose calls are bounded in time and retried on connection errors.

    Only connection errors are retried here (a dead pooled connection after a Redis restart, a refused connect
    during a blip): every script is idempotent by request id, so a retry never counts twice. A timeout is
    not retried: the call may still run, so its caller treats it as "unknown".

    With `redis.cluster` the URL names any one master and the client finds the others. redis-py's cluster
    client takes only the number of retries from `retry` and, before each retry, refreshes the slot map.
    """
    retry = Retry(ExponentialBackoff(cap=0.2, base=0.01), retries=4, supported_errors=(ConnectionError,))
    options: dict[str, Any] = {
        "decode_responses": True,
        "health_check_interval": 30,
        "socket_timeout": settings.redis.timeout,
        "socket_connect_timeout": settings.redis.timeout,
        "retry": retry,
    }
    if settings.redis.cluster:
        # redis-py's cluster default (100 per node) fails the 101st concurrent call with MaxConnectionsError;
        # its cluster client cannot wait for a connection, so the bound is set high.
        return _ClusterClient.from_url(url, max_connections=settings.redis.max_connections, **options)
    # A pool that waits for a free connection (up to the call's timeout) instead of failing the call at once,
    # as redis-py's default pool (100) does past its bound: a burst beyond it must queue, never 503.
    pool = BlockingConnectionPool.from_url(
        url, max_connections=settings.redis.max_connections, timeout=settings.redis.timeout, **options
    )
    return Redis.from_pool(pool)  # the client owns the pool: closing it closes the connections


def ledger_for(
    redis: RedisClient, settings: Settings, clock: Clock, *, on_alerts: Callable[[], None] | None = None
) -> Ledger:
    """The ledger with the configured retention of what settlement writes, and the usage insights' rules;
    `on_alerts` is told when a step appended webhook events."""
    retention = Retention(
        request_log_maxlen=settings.redis.request_log_maxlen,
        request_log_retention_ms=settings.redis.request_log_retention_days * 86_400_000,
        hour_ttl_s=settings.redis.hourly_retention_days * 86400,
        settled_ids_ms=2 * settings.limits.reservation_ttl_seconds * 1000,
    )
    insights = InsightRules(
        duplicate_window_ms=settings.insights.duplicate_window_seconds * 1000,
        retry_window_ms=settings.insights.retry_loop_window_seconds * 1000,
        retry_min=settings.insights.retry_loop_min,
    )
    return Ledger(redis, clock=clock, retention=retention, insights=insights, on_alerts=on_alerts)


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open Redis, register the ledger's scripts and the account store, and run the ledger's upkeep: the
    spool's replay and the sweeper. On shutdown, one last replay, then close."""
    settings = app[SETTINGS]
    spool = Spool(settings.server.spool_dir)
    await asyncio.to_thread(spool.open)
    async with open_redis(settings) as redis:
        app[REDIS] = redis
        ledger = app[LEDGER] = ledger_for(redis, settings, app[CLOCK], on_alerts=app[OUTBOX_WAKEUP].set)
        app[ACCOUNTS] = AccountStore(redis, clock=app[CLOCK])
        settler = app[SETTLER] = Settler(ledger, spool, observer=app[METRICS])
        health = app[REDIS_HEALTH] = RedisHealth(redis, ledger, observer=app[METRICS], on_back=settler.redis_back)
        interval = settings.limits.sweep_interval_seconds
        sweeper = Sweeper(redis, settler, interval_s=interval, grace_ms=interval * 1000)
        tasks = [
            asyncio.create_task(settler.run(), name="spool-replay"),
            asyncio.create_task(sweeper.run(), name="sweeper"),
            asyncio.create_task(health.run(), name="redis-health"),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await settler.replay()
            await asyncio.to_thread(spool.close)
