"""Whether the ledger's Redis answers and holds the money scripts, known without asking it on every probe:
a background check keeps it (every second).

`/readyz` and `/healthz` read `up` and must stay instant even while Redis is frozen, so no probe waits on it.
A Redis that restarted empty (or was told SCRIPT FLUSH) gets the scripts loaded again before it counts as up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from redis.asyncio import RedisCluster

from gateway.billing.client import RedisClient
from gateway.billing.ledger import Ledger
from gateway.billing.settler import REDIS_UNAVAILABLE, SettlementObserver

log = logging.getLogger(__name__)


class RedisHealth:
    def __init__(
        self,
        redis: RedisClient,
        ledger: Ledger,
        *,
        observer: SettlementObserver | None = None,
        on_back: Callable[[], None] | None = None,
        interval_s: float = 1.0,
    ):
        self.redis = redis
        self.ledger = ledger
        self.observer = observer
        self.on_back = on_back  # told when Redis answers again after an outage: the spool replays at once
        self.interval_s = interval_s
        self.up = True  # the client pinged Redis before the app started
        self.changed_at = time.monotonic()

    async def check(self) -> bool:
        try:
            if isinstance(self.redis, RedisCluster):
                await self.redis.ping(target_nodes=RedisCluster.PRIMARIES)  # every master, not any one node
            else:
                await self.redis.ping()
            await self.ledger.load_scripts()
            up = True
        except REDIS_UNAVAILABLE:
            up = False
            if self.observer is not None:
                self.observer.redis_error()
        if up != self.up:
            log.warning("Redis is %s", "back" if up else "unavailable")
            self.up, self.changed_at = up, time.monotonic()
            if up and self.on_back is not None:
                self.on_back()
        return up

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.check()
