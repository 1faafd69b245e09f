"""grant.lua at its boundaries: down to exactly zero, up to exactly 2^53 - 1, grant ids remembered across
other grants, the granted total, and what the grant log keeps."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gateway.billing import GrantError, keyspace
from gateway.billing.scripts import MAX_SAFE_INTEGER, GrantCall
from tests.billing.common import funded_ledger


async def test_taking_back_the_whole_balance_leaves_exactly_zero(redis_client: Redis) -> None:
    ledger, account, _ = await funded_ledger(redis_client, 150)
    assert await ledger.grant(account, -150) == 0
    with pytest.raises(GrantError, match=r"^the balance cannot go below zero$"):
        await ledger.grant(account, -1)


async def test_a_grant_may_reach_2_53_minus_1_but_not_2_53(redis_client: Redis) -> None:
    ledger, account, _ = await funded_ledger(redis_client, MAX_SAFE_INTEGER - 10)
    assert await ledger.grant(account, 10) == 2**53 - 1
    with pytest.raises(GrantError, match=r"^the balance would be too large$"):
        await ledger.grant(account, 1)
    assert await ledger.balance(account) == 2**53 - 1


async def test_a_grant_to_no_account_is_refused(redis_client: Redis) -> None:
    ledger, _, _ = await funded_ledger(redis_client, 0)
    with pytest.raises(GrantError, match=r"^account not found$"):
        await ledger.grant("acct_0000000000000000", 5)


async def test_a_grant_id_is_remembered_after_later_grants(redis_client: Redis) -> None:
    ledger, account, _ = await funded_ledger(redis_client, 1_000)
    assert await ledger.grant(account, 500, grant_id="g1") == 1_500
    assert await ledger.grant(account, 200, grant_id="g2") == 1_700
    assert await ledger.grant(account, 500, grant_id="g1") == 1_700  # the retry of g1 changes nothing
    assert await redis_client.xlen(keyspace.grant_log(account)) == 2


async def test_the_granted_total_follows_every_grant(redis_client: Redis) -> None:
    ledger, account, _ = await funded_ledger(redis_client, 1_000)  # an account starts with granted = balance
    await ledger.grant(account, 50)
    await ledger.grant(account, -20)
    assert await redis_client.hget(keyspace.account(account), "granted") == "1030"


async def test_the_grant_log_keeps_amount_balance_time_and_an_empty_note_by_default(redis_client: Redis) -> None:
    ledger, account, _ = await funded_ledger(redis_client, 1_000)
    await ledger.grant(account, 5, grant_id="g1")
    [(_, entry)] = await redis_client.xrange(keyspace.grant_log(account))
    assert entry == {
        "amount_micros": "5",
        "balance_after": "1005",
        "time_ms": str(ledger.now_ms()),
        "note": "",
        "grant_id": "g1",
    }


@pytest.mark.parametrize("amount", ["0", "1.5", str(2**53), str(-(2**53)), "many"])
async def test_grant_lua_refuses_an_amount_it_cannot_apply_exactly(redis_client: Redis, amount: str) -> None:
    ledger, account, _ = await funded_ledger(redis_client, 1_000)
    call = GrantCall(account, 1, now_ms=ledger.now_ms(), note="", grant_id="g1", settled_ids_ms=1)
    argv = call.argv()
    argv[0] = amount  # what Python would never send
    with pytest.raises(ResponseError, match="invalid amount"):
        await ledger._grant(call.keys(), argv)
    assert await ledger.balance(account) == 1_000 and await redis_client.xlen(keyspace.grant_log(account)) == 0
