"""Every money step is idempotent by request (or grant) id, and no script can half-apply: a timed-out call
that runs late, or one repeated after a dropped connection, never counts twice."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gateway.billing import GrantError, ReserveStatus, Settlement, keyspace
from gateway.billing.scripts import MAX_SAFE_INTEGER, SettleCall
from tests.billing.common import RETENTION, funded_ledger, settlement


async def _snapshot(redis: Redis, account: str) -> tuple[object, ...]:
    """Everything a money script may write for the account."""
    day_keys = sorted(await redis.keys(f"{keyspace.account_tag(account)}:usage:*"))
    days = [await redis.hgetall(key) for key in day_keys]
    return (
        await redis.hgetall(keyspace.account(account)),
        await redis.hgetall(keyspace.holds(account)),
        await redis.xlen(keyspace.request_log(account)),
        days,
    )


async def test_a_repeated_reserve_holds_once(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    first = await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60)
    again = await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60)
    assert first.status is again.status is ReserveStatus.HELD
    assert await ledger.balance(account) == 700 and await ledger.reserved(account) == 300


async def test_a_reserve_that_runs_after_its_release_holds_nothing(redis_client: Redis) -> None:
    # The gateway's reserve timed out, so it answered 503 and released the request; Redis then ran the reserve.
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    released = await ledger.settle(Settlement.release(account, "r1"))
    assert not released.settled  # nothing was held yet: only the id is remembered
    late = await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60)
    assert late.status is ReserveStatus.SETTLED
    assert await ledger.balance(account) == 1_000 and await ledger.reserved(account) == 0


async def test_a_release_returns_the_hold_and_records_nothing(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60)
    outcome = await ledger.settle(Settlement.release(account, "r1"))
    assert (outcome.settled, outcome.balance_micros, outcome.charged_micros) == (True, 1_000, 0)
    assert await redis_client.xlen(keyspace.request_log(account)) == 0
    assert not await redis_client.keys(f"{keyspace.account_tag(account)}:usage:*")


async def test_a_settlement_repeated_after_a_timeout_charges_once(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60)
    for _ in range(3):
        await ledger.settle(settlement(account, "r1", 120))
    assert await ledger.balance(account) == 880
    assert await redis_client.xlen(keyspace.request_log(account)) == 1
    late = await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60)
    assert late.status is ReserveStatus.SETTLED and await ledger.balance(account) == 880


@pytest.mark.parametrize(
    ("index", "value"),
    [(1, str(2**63 - 1)), (2, str(2**53)), (3, "-5"), (3, "1.5"), (1, "ten"), (10, "charge-all")],
)
async def test_settle_lua_checks_every_number_before_its_first_write(
    redis_client: Redis, index: int, value: str
) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60)
    before = await _snapshot(redis_client, account)
    call = SettleCall(settlement(account, "r1", 120), ledger.now_ms(), RETENTION)
    argv = call.argv()
    argv[index] = value  # what Python would never send: the script must still refuse it whole
    with pytest.raises(ResponseError):
        await ledger._settle(call.keys(), argv)
    assert await _snapshot(redis_client, account) == before
    assert (await ledger.settle(settlement(account, "r1", 120))).settled  # the account keeps working


@pytest.mark.parametrize("tokens", [2**53, 2**63 - 1, -1])
async def test_python_refuses_numbers_lua_cannot_hold_exactly(redis_client: Redis, tokens: int) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60)
    absurd = Settlement(account, "r1", "m", cost_micros=1, prompt_tokens=tokens, completion_tokens=1)
    with pytest.raises(ValueError, match="prompt tokens"):
        await ledger.settle(absurd)
    assert await ledger.reserved(account) == 300  # nothing was sent


async def test_a_grant_retried_under_its_id_is_applied_once(redis_client: Redis) -> None:
    ledger, account, _ = await funded_ledger(redis_client, 1_000)
    assert await ledger.grant(account, 500, "top-up", grant_id="g1") == 1_500
    assert await ledger.grant(account, 500, "top-up", grant_id="g1") == 1_500
    assert await ledger.grant(account, 500, "another") == 2_000
    assert await redis_client.xlen(keyspace.grant_log(account)) == 2


async def test_a_grant_cannot_pass_2_to_the_53(redis_client: Redis) -> None:
    ledger, account, _ = await funded_ledger(redis_client, MAX_SAFE_INTEGER - 10)
    with pytest.raises(GrantError, match="too large"):
        await ledger.grant(account, 11)
    assert await ledger.balance(account) == MAX_SAFE_INTEGER - 10
