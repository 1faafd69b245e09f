"""reserve.lua at its boundaries: exactly enough, exactly the least hold, what the hold record and the `held`
total keep, and numbers the script must refuse before it writes anything."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gateway.billing import Hold, ReserveStatus, keyspace
from gateway.billing.scripts import ReserveCall
from tests.billing.common import funded_ledger


async def test_a_balance_exactly_equal_to_the_hold_is_held(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 300)
    outcome = await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60)
    assert outcome.status is ReserveStatus.HELD and outcome.balance_micros == 0
    assert await ledger.balance(account) == 0 and await ledger.reserved(account) == 300


async def test_one_micro_short_of_the_hold_is_refused(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 299)
    outcome = await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60)
    assert outcome.status is ReserveStatus.INSUFFICIENT and outcome.balance_micros == 299
    assert await ledger.balance(account) == 299 and await ledger.reserved(account) == 0


async def test_a_balance_exactly_equal_to_the_least_hold_is_partial(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 100)
    partial = await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=100, ttl_s=60)
    assert partial.status is ReserveStatus.PARTIAL and partial.balance_micros == 100
    short = await ledger.reserve(account, sha, "r2", hold_micros=300, min_hold_micros=101, ttl_s=60)
    assert short.status is ReserveStatus.INSUFFICIENT
    assert await ledger.balance(account) == 100 and await ledger.reserved(account) == 0


async def test_the_full_hold_is_taken_recorded_and_counted_as_held(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    outcome = await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=100, ttl_s=60, model="m:1")
    assert outcome.status is ReserveStatus.HELD and outcome.balance_micros == 700
    written = await redis_client.hget(keyspace.holds(account), "r1")
    assert written is not None
    # 300 held until now + 60 s, for this key and model
    assert Hold.parse(written) == Hold(300, ledger.now_ms() + 60_000, outcome.api_key_id, "m:1")
    assert await redis_client.hget(keyspace.account(account), "held") == "300"


async def test_a_repeated_reserve_answers_the_balance_as_it_stands(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60)
    again = await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60)
    assert again.status is ReserveStatus.HELD and again.balance_micros == 700
    assert await redis_client.hget(keyspace.account(account), "held") == "300"


async def test_a_key_whose_account_is_gone_is_unknown(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await redis_client.delete(keyspace.account(account))  # the key's entry outlived its account
    outcome = await ledger.reserve(account, sha, "r1", hold_micros=0, min_hold_micros=0, ttl_s=60)
    assert outcome.status is ReserveStatus.UNKNOWN_KEY and outcome.api_key_id == ""
    assert await redis_client.hlen(keyspace.holds(account)) == 0


@pytest.mark.parametrize("hold", [str(2**53), "-1", "1.5", "1e3x"])
async def test_reserve_lua_refuses_a_hold_it_cannot_hold_exactly(redis_client: Redis, hold: str) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 10**16)
    call = ReserveCall(account, sha, "r1", 1, 1, deadline_ms=ledger.now_ms() + 1, model="m", now_ms=ledger.now_ms())
    argv = call.argv()
    argv[2] = hold  # what Python would never send: the script must refuse it before any write
    with pytest.raises(ResponseError, match="invalid hold"):
        await ledger._reserve(call.keys(), argv)
    assert await ledger.balance(account) == 10**16 and await redis_client.hlen(keyspace.holds(account)) == 0


async def test_reserve_lua_takes_the_largest_exact_hold(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 2**53 - 1)
    outcome = await ledger.reserve(account, sha, "r1", hold_micros=2**53 - 1, min_hold_micros=1, ttl_s=60)
    assert outcome.status is ReserveStatus.HELD and outcome.balance_micros == 0
