"""The ledger's reads (balances of accounts that exist or not, what is held per account), the scripts put back
after Redis forgot them, and money moved through redis-py's own path where the packed call cannot be used."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.billing import Hold, ReserveStatus, keyspace
from tests.billing.common import funded_ledger, settlement


async def test_the_balance_of_an_account_that_does_not_exist_is_none(redis_client: Redis) -> None:
    ledger, account, _ = await funded_ledger(redis_client, 1_000)
    assert await ledger.balance(account) == 1_000
    assert await ledger.balance("acct_0000000000000000") is None


async def test_holds_are_read_per_account(redis_client: Redis) -> None:
    ledger, first, sha = await funded_ledger(redis_client, 1_000)
    _, second, _ = await funded_ledger(redis_client, 1_000)
    await ledger.reserve(first, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60, model="m")
    await ledger.reserve(first, sha, "r2", hold_micros=200, min_hold_micros=200, ttl_s=60, model="m")
    holds = await ledger.holds_of([first, second])
    assert [sorted(h) for h in holds] == [["r1", "r2"], []]
    assert holds[0]["r1"] == Hold(300, ledger.now_ms() + 60_000, holds[0]["r1"].api_key_id, "m")
    assert await ledger.reserved_many([first, second]) == [500, 0]
    assert await ledger.reserved_many([]) == []


async def test_load_scripts_puts_back_what_redis_forgot(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await redis_client.script_flush()
    await ledger.load_scripts()
    shas = [script.sha for script in (ledger._reserve, ledger._settle, ledger._grant)]
    assert await redis_client.script_exists(*shas) == [True, True, True]
    await ledger.load_scripts()  # loading what is there already changes nothing
    assert await redis_client.hget(keyspace.account(account), "balance") == "1000"


async def test_a_single_connection_client_moves_money_through_redis_py(redis_url: str) -> None:
    # No pool to take a connection from: every script call goes through redis-py's own path.
    client = Redis.from_url(redis_url, decode_responses=True, single_connection_client=True)
    try:
        ledger, account, sha = await funded_ledger(client, 1_000)
        held = await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60)
        assert held.status is ReserveStatus.HELD and held.balance_micros == 700
        assert (await ledger.settle(settlement(account, "r1", 120))).balance_micros == 880
        assert await ledger.grant(account, 20) == 900
    finally:
        await client.aclose()


async def test_a_pool_that_cannot_give_a_connection_leaves_the_call_to_redis_py(
    redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    pool = redis_client.connection_pool
    original = pool.get_connection
    refusals = 0

    async def refuse_once(*args: object, **kwargs: object) -> object:
        nonlocal refusals
        if refusals == 0:
            refusals += 1
            raise RedisConnectionError("no connection")
        return await original(*args, **kwargs)

    monkeypatch.setattr(pool, "get_connection", refuse_once)
    held = await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60)
    assert refusals == 1 and held.status is ReserveStatus.HELD and held.balance_micros == 700
    assert await ledger.reserved(account) == 300
