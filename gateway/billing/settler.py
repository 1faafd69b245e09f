"""Every request that reserved is settled exactly once: at once when Redis takes it, else from the spool.

    settler = Settler(ledger, spool)
    outcome = await settler.settle(settlement)  # None: Redis could not take it; spooled, applied later
    await settler.replay()                      # what the spool holds, this process's and orphans'

A call that failed or timed out may still have run; replaying it is safe because settle.lua is idempotent by
request id. Settlement never waits on the spool's replay: a client's answer goes out either way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from redis import exceptions as redis_errors

from gateway.billing.ledger import Ledger
from gateway.billing.scripts import Settlement, SettleOutcome
from gateway.billing.spool import Spool, SpooledSettlement, read_entries

log = logging.getLogger(__name__)

# Redis could not be reached, did not answer in time, answered with bytes that are not the protocol (whatever
# holds the port is not Redis), or (a cluster missing a master) refused to run the call: its effect is unknown
# or nil, so the call must be repeatable.
REDIS_UNAVAILABLE: tuple[type[redis_errors.RedisError], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.InvalidResponse,
    redis_errors.ClusterDownError,
)


async def rest_until_set(event: asyncio.Event, timeout_s: float) -> None:
    """Wait until `event` is set or `timeout_s` has passed. Not asyncio.wait_for: in Python 3.11 it returns
    normally when a cancel lands in the same turn of the loop as the event (cpython gh-86296), so a loop resting
    here went on, and the shutdown that cancelled it waited for ever."""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        pass


class SettlementObserver(Protocol):
    """Told of every settlement applied (at once or replayed) and of every Redis failure: the metrics."""

    def settled(self, settlement: Settlement, outcome: SettleOutcome) -> None: ...

    def redis_error(self) -> None: ...


class Settler:
    """Settles through the ledger, spooling what Redis cannot take; `replay` drains the spool."""

    def __init__(self, ledger: Ledger, spool: Spool, observer: SettlementObserver | None = None):
        self.ledger = ledger
        self.spool = spool
        self.observer = observer
        # Set when something was spooled or Redis is back (the health check says so): the replay loop wakes up.
        self.wakeup = asyncio.Event()
        self._redis_back = False

    async def settle(self, settlement: Settlement) -> SettleOutcome | None:
        """Apply the settlement now, or spool it durably and return None."""
        now_ms = self.ledger.now_ms()
        try:
            return await self._apply(settlement, now_ms)
        except REDIS_UNAVAILABLE as exc:
            self._redis_error()
            log.warning(
                "settlement of %s spooled: Redis is unavailable (%s)", settlement.request_id, type(exc).__name__
            )
        await asyncio.to_thread(self.spool.append, SpooledSettlement(settlement, now_ms))
        self.wakeup.set()
        return None

    async def defer(self, settlement: Settlement) -> None:
        """Spool a settlement without trying Redis first (it has just failed): applied once it is back."""
        self._redis_error()
        await asyncio.to_thread(self.spool.append, SpooledSettlement(settlement, self.ledger.now_ms()))
        self.wakeup.set()

    async def replay(self) -> int:
        """Apply every spooled settlement Redis takes now; returns how many of this process's are left."""
        done: list[str] = []
        try:
            for entry in self.spool.pending:
                await self._apply(entry.settlement, entry.now_ms)
                done.append(entry.settlement.request_id)
            await self._replay_orphans()
        except REDIS_UNAVAILABLE:
            self._redis_error()
            log.info("spool replay paused: Redis is still unavailable")
        finally:
            if done:
                await asyncio.to_thread(self.spool.mark_done, done)
                log.info("replayed %d spooled settlements", len(done))
        return len(self.spool.pending)

    async def _replay_orphans(self) -> None:
        """Spool files of processes that are gone (a crash): apply them all, then delete each file."""
        with self.spool.orphans() as paths:
            for path in paths:
                entries = await asyncio.to_thread(read_entries, path)
                for entry in entries:
                    await self._apply(entry.settlement, entry.now_ms)
                path.unlink(missing_ok=True)
                log.info("replayed %d settlements from %s", len(entries), path.name)

    async def _apply(self, settlement: Settlement, now_ms: int) -> SettleOutcome:
        outcome = await self.ledger.settle(settlement, now_ms=now_ms)
        if self.observer is not None:
            self.observer.settled(settlement, outcome)
        return outcome

    def _redis_error(self) -> None:
        if self.observer is not None:
            self.observer.redis_error()

    def redis_back(self) -> None:
        """The health check sees Redis again: replay now, not when the backoff would have tried next."""
        self._redis_back = True
        self.wakeup.set()

    async def run(self, *, idle_s: float = 30.0, retry_s: float = 0.5, max_retry_s: float = 5.0) -> None:
        """Replay until cancelled: soon after something is spooled, at once when Redis is back, with backoff
        while it stays away, and every `idle_s` for orphans."""
        delay = retry_s
        while True:
            self.wakeup.clear()
            if self._redis_back:
                self._redis_back, delay = False, retry_s
            left = await self.replay()
            wait = delay if left else idle_s
            delay = min(delay * 2, max_retry_s) if left else retry_s
            await rest_until_set(self.wakeup, wait)
