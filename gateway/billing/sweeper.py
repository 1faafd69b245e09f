"""The sweeper: holds past their deadline belong to requests that are surely over (their gateway died, or a
reserve that timed out ran after all), so each is settled as `abandoned`: charged nothing, recorded once.

Every gateway process sweeps every `interval`, after replaying its spool (a settlement it owes is applied
before its hold could be called abandoned). A short lock keeps processes from doing the same pass twice; if
two do, settle.lua's idempotency by request id makes the second one change nothing. Holds are read per account
with pipelined HGETALLs, so every key touched stays in its account's hash slot (Redis Cluster safe).
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from gateway.billing import keyspace
from gateway.billing.client import RedisClient
from gateway.billing.keyspace import as_text
from gateway.billing.scripts import Settlement
from gateway.billing.settler import REDIS_UNAVAILABLE, Settler

log = logging.getLogger(__name__)

BATCH = 500  # accounts per round trip
ABANDONED = "abandoned"


class Sweeper:
    def __init__(self, redis: RedisClient, settler: Settler, *, interval_s: int, grace_ms: int):
        self.redis = redis
        self.settler = settler
        self.ledger = settler.ledger
        self.interval_s = interval_s
        self.grace_ms = grace_ms  # past the deadline, so a settlement spooled elsewhere can land first

    async def run(self) -> None:
        """Every interval: replay the spool, then sweep, until cancelled. A failed pass waits for the next."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                if await self.settler.replay() == 0:
                    await self.sweep()
            except REDIS_UNAVAILABLE:
                log.info("sweep skipped: Redis is unavailable")
            except Exception:
                log.exception("sweep failed")  # the next pass tries again; a loop that died would leak holds

    async def sweep(self) -> int:
        """One pass over every account, unless another process has just made it. Returns holds released."""
        token = secrets.token_hex(8)
        if not await self.redis.set(keyspace.SWEEP_LOCK, token, nx=True, px=self.interval_s * 1000):
            return 0
        account_ids = [as_text(i) for i in await self.redis.zrange(keyspace.ACCOUNT_INDEX, 0, -1)]
        released = 0
        for offset in range(0, len(account_ids), BATCH):
            batch = account_ids[offset : offset + BATCH]
            released += await self._sweep_batch(batch)
        if released:
            log.warning("released %d abandoned holds", released)
        return released

    async def _sweep_batch(self, account_ids: list[str]) -> int:
        cutoff = self.ledger.now_ms() - self.grace_ms
        released = 0
        for account_id, holds in zip(account_ids, await self.ledger.holds_of(account_ids), strict=True):
            for request_id, hold in holds.items():
                if hold.deadline_ms >= cutoff:
                    continue
                settlement = Settlement(
                    account_id=account_id,
                    request_id=request_id,
                    model=hold.model,
                    api=hold.api,
                    cost_micros=0,
                    prompt_tokens=0,
                    completion_tokens=0,
                    failed=True,
                    record={"status": 0, "outcome": ABANDONED, "hold_micros": hold.amount_micros},
                )
                outcome = await self.settler.settle(settlement)  # spooled if Redis fails mid-pass
                released += outcome is not None and outcome.settled
        return released
