"""The sweeper returns holds whose deadline has passed, once, whichever process gets there."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from gateway.billing import keyspace
from gateway.billing.settler import Settler
from gateway.billing.spool import Spool
from gateway.billing.sweeper import Sweeper
from tests.billing.conftest import funded_ledger, settlement
from tests.conftest import FakeClock


async def test_expired_holds_are_released_as_abandoned_and_live_ones_kept(redis_client: Redis, spool: Spool) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 10_000)
    clock = ledger.clock
    assert isinstance(clock, FakeClock)
    await ledger.reserve(account, sha, "old", hold_micros=300, min_hold_micros=300, ttl_s=10, model="gpt-x")
    clock.now += 5
    await ledger.reserve(account, sha, "young", hold_micros=200, min_hold_micros=200, ttl_s=10, model="gpt-x")
    clock.now += 5 + 2  # "old" is 2 s past its deadline, "young" 3 s short of it
    sweeper = Sweeper(redis_client, Settler(ledger, spool), interval_s=30, grace_ms=1000)
    assert await sweeper.sweep() == 1
    assert await ledger.reserved(account) == 200 and await ledger.balance(account) == 10_000 - 200
    [(_, record)] = await redis_client.xrange(keyspace.request_log(account))
    assert record["request_id"] == "old" and record["outcome"] == "abandoned" and record["status"] == "0"
    assert record["credits_micros"] == "0" and record["model"] == "gpt-x" and record["hold_micros"] == "300"
    # A late settlement of the abandoned request (its gateway came back) changes nothing: released once.
    assert not (await ledger.settle(settlement(account, "old", 50))).settled
    assert await ledger.balance(account) == 10_000 - 200


async def test_one_pass_per_interval_and_concurrent_passes_release_once(redis_client: Redis, spool: Spool) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 10_000)
    clock = ledger.clock
    assert isinstance(clock, FakeClock)
    for index in range(20):
        await ledger.reserve(account, sha, f"r{index}", hold_micros=100, min_hold_micros=100, ttl_s=1)
    clock.now += 60
    first, second = (Sweeper(redis_client, Settler(ledger, spool), interval_s=30, grace_ms=0) for _ in range(2))
    assert await first.sweep() == 20
    assert await second.sweep() == 0  # the first process's pass holds the lock for this interval
    assert await redis_client.xlen(keyspace.request_log(account)) == 20

    for index in range(20, 40):
        await ledger.reserve(account, sha, f"r{index}", hold_micros=100, min_hold_micros=100, ttl_s=1)
    clock.now += 60
    # Two passes at once (as if the lock had expired mid-pass): each hold is still released exactly once.
    released = await asyncio.gather(first._sweep_batch([account]), second._sweep_batch([account]))
    assert sum(released) == 20
    assert await redis_client.xlen(keyspace.request_log(account)) == 40
    assert await ledger.balance(account) == 10_000 and await ledger.reserved(account) == 0
