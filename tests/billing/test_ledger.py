"""The Lua scripts run directly against a real Redis: holds, settlement, grants, and their invariants."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from redis.asyncio import Redis

from gateway.billing import GrantError, ReserveStatus, keyspace
from tests.billing.common import funded_ledger, settlement
from tests.common import FakeClock


async def test_reserve_holds_and_settle_charges_the_real_cost(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    held = await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60)
    assert held.status is ReserveStatus.HELD and held.balance_micros == 700
    assert await ledger.reserved(account) == 300
    outcome = await ledger.settle(settlement(account, "r1", 120))
    assert (outcome.settled, outcome.balance_micros, outcome.charged_micros) == (True, 880, 120)
    assert await ledger.reserved(account) == 0
    day = await redis_client.hgetall(keyspace.usage_day(account, datetime.fromtimestamp(ledger.clock(), UTC)))
    assert (
        day["a:chat.completions:requests"] == "1"
        and day["a:chat.completions:credits"] == "120"
        and day["a:chat.completions:m:m:credits"] == "120"
    )
    assert day["a:chat.completions:prompt_tokens"] == "10" and day["a:chat.completions:completion_tokens"] == "5"
    records = await redis_client.xrange(keyspace.request_log(account))
    assert len(records) == 1 and records[0][1]["credits_micros"] == "120"
    assert records[0][0].startswith(str(int(ledger.clock() * 1000)))


async def test_settling_twice_charges_once(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60)
    await ledger.settle(settlement(account, "r1", 100))
    again = await ledger.settle(settlement(account, "r1", 100))
    assert not again.settled and again.balance_micros == 900
    assert await ledger.balance(account) == 900


async def test_cost_above_the_hold_never_takes_the_balance_below_zero(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 500)
    await ledger.reserve(account, sha, "r1", hold_micros=400, min_hold_micros=400, ttl_s=60)
    outcome = await ledger.settle(settlement(account, "r1", 10_000))
    assert outcome.charged_micros == 500 and outcome.balance_micros == 0
    records = await redis_client.xrange(keyspace.request_log(account))
    assert records[0][1]["cost_micros"] == "10000" and records[0][1]["credits_micros"] == "500"


async def test_insufficient_and_partial_and_unknown_key(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 100)
    partial = await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=50, ttl_s=60)
    assert partial.status is ReserveStatus.PARTIAL and partial.balance_micros == 100
    short = await ledger.reserve(account, sha, "r2", hold_micros=300, min_hold_micros=300, ttl_s=60)
    assert short.status is ReserveStatus.INSUFFICIENT
    unknown = await ledger.reserve(account, "0" * 64, "r3", hold_micros=1, min_hold_micros=1, ttl_s=60)
    assert unknown.status is ReserveStatus.UNKNOWN_KEY
    assert await ledger.balance(account) == 100 and await ledger.reserved(account) == 0


async def test_scripts_reload_after_script_flush(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await redis_client.script_flush()
    held = await ledger.reserve(account, sha, "r1", hold_micros=10, min_hold_micros=10, ttl_s=60)
    assert held.status is ReserveStatus.HELD
    await redis_client.script_flush()
    assert (await ledger.settle(settlement(account, "r1", 10))).settled
    await redis_client.script_flush()
    assert await ledger.grant(account, 5) == 995


async def test_parallel_reserves_never_overdraw(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 10_000)
    results = await asyncio.gather(
        *(ledger.reserve(account, sha, f"r{i}", hold_micros=300, min_hold_micros=300, ttl_s=60) for i in range(100))
    )
    held = [r for r in results if r.status is ReserveStatus.HELD]
    assert len(held) == 33  # floor(10000 / 300)
    assert await ledger.balance(account) == 10_000 - 33 * 300
    assert await ledger.reserved(account) == 33 * 300


async def test_grant_adds_takes_back_and_refuses_to_go_negative(redis_client: Redis) -> None:
    ledger, account, _ = await funded_ledger(redis_client, 100)
    assert await ledger.grant(account, 50, "top-up") == 150
    assert await ledger.grant(account, -150) == 0
    try:
        await ledger.grant(account, -1)
    except GrantError as exc:
        assert "below zero" in str(exc)
    else:
        raise AssertionError("a grant below zero must fail")
    try:
        await ledger.grant("acct_0000000000000000", 5)
    except GrantError as exc:
        assert "not found" in str(exc)
    else:
        raise AssertionError("a grant to no account must fail")
    grants = await redis_client.xrange(keyspace.grant_log(account))
    assert [g[1]["amount_micros"] for g in grants] == ["50", "-150"]


async def test_request_log_ids_stay_increasing_when_the_clock_goes_back(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    clock = ledger.clock
    assert isinstance(clock, FakeClock)
    for index, shift in enumerate((0.0, -5.0, 0.0)):
        clock.now += shift
        await ledger.reserve(account, sha, f"r{index}", hold_micros=1, min_hold_micros=1, ttl_s=60)
        await ledger.settle(settlement(account, f"r{index}", 1))
    ids = [entry[0] for entry in await redis_client.xrange(keyspace.request_log(account))]
    assert len(ids) == 3 and ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
