"""Whether the ledger's Redis answers, known without asking it on every probe: a background ping keeps it.

`/readyz` and `/healthz` read `up` and must stay instant even while Redis is frozen, so no probe waits on it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import RedisCluster

from gateway.billing.client import RedisClient
from gateway.billing.settler import REDIS_UNAVAILABLE

log = logging.getLogger(__name__)


class RedisHealth:
    def __init__(self, redis: RedisClient, *, interval_s: float = 1.0):
        self.redis = redis
        self.interval_s = interval_s
        self.up = True  # the client pinged Redis before the app started
        self.changed_at = time.monotonic()

    async def check(self) -> bool:
        try:
            if isinstance(self.redis, RedisCluster):
                await self.redis.ping(target_nodes=RedisCluster.PRIMARIES)  # every master, not any one node
            else:
                await self.redis.ping()
            up = True
        except REDIS_UNAVAILABLE:
            up = False
        if up != self.up:
            log.warning("Redis is %s", "back" if up else "unavailable")
            self.up, self.changed_at = up, time.monotonic()
        return up

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.check()
