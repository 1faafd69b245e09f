"""settle.lua at its boundaries: the cap at hold + balance, the same charge in every total, error counts,
the hold gone, ids remembered, hour totals, key totals and record ids within one millisecond."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gateway.billing import Ledger, ReserveStatus, Settlement, keyspace
from tests.billing.common import RETENTION, funded_ledger, settlement


def _day(ledger: Ledger, account: str) -> str:
    return keyspace.usage_day(account, datetime.fromtimestamp(ledger.clock(), UTC))


def _hour(ledger: Ledger, account: str) -> str:
    return keyspace.usage_hour(account, datetime.fromtimestamp(ledger.clock(), UTC))


async def _held(ledger: Ledger, account: str, sha: str, hold: int, request_id: str = "r1") -> str:
    """Reserve `hold` for the request; returns the API key id."""
    outcome = await ledger.reserve(account, sha, request_id, hold_micros=hold, min_hold_micros=hold, ttl_s=60)
    assert outcome.status is ReserveStatus.HELD
    return outcome.api_key_id


async def test_a_capped_charge_lands_identically_everywhere(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 500)
    key_id = await _held(ledger, account, sha, 400)  # 100 left beside the hold
    outcome = await ledger.settle(settlement(account, "r1", 10_000))
    # 10,000 asked, hold 400 + balance 100 = 500 charged, balance 0
    assert (outcome.charged_micros, outcome.balance_micros) == (500, 0)
    assert await ledger.balance(account) == 0
    day = await redis_client.hgetall(_day(ledger, account))
    chat = "a:chat.completions:"
    assert day[f"{chat}credits"] == day[f"{chat}m:m:credits"] == day[f"{chat}k:{key_id}:credits"] == "500"
    assert (await redis_client.hgetall(_hour(ledger, account)))[f"{chat}credits"] == "500"
    [(_, record)] = await redis_client.xrange(keyspace.request_log(account))
    assert record["credits_micros"] == "500" and record["cost_micros"] == "10000"


async def test_a_cost_of_exactly_hold_plus_balance_is_charged_whole(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 500)
    await _held(ledger, account, sha, 400)
    outcome = await ledger.settle(settlement(account, "r1", 500))
    assert (outcome.charged_micros, outcome.balance_micros) == (500, 0)


async def test_a_cost_above_the_hold_takes_the_rest_from_the_balance(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 500)
    await _held(ledger, account, sha, 400)
    outcome = await ledger.settle(settlement(account, "r1", 450))
    # 450 charged: the hold's 400 and 50 of the 100 beside it
    assert (outcome.charged_micros, outcome.balance_micros) == (450, 50)
    assert (await redis_client.hgetall(_day(ledger, account)))["a:chat.completions:credits"] == "450"


async def test_a_cost_below_the_hold_returns_the_rest(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await _held(ledger, account, sha, 300)
    outcome = await ledger.settle(settlement(account, "r1", 120))
    # 1,000 - 300 held + (300 - 120) returned = 880
    assert (outcome.charged_micros, outcome.balance_micros) == (120, 880)


async def test_the_settled_hold_is_gone_from_holds_and_from_held(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await _held(ledger, account, sha, 300, "r1")
    await _held(ledger, account, sha, 200, "r2")
    await ledger.settle(settlement(account, "r1", 120))
    assert await redis_client.hkeys(keyspace.holds(account)) == ["r2"]
    assert await redis_client.hget(keyspace.account(account), "held") == "200"
    await ledger.settle(Settlement.release(account, "r2"))
    assert await redis_client.hget(keyspace.account(account), "held") == "0"
    assert await ledger.balance(account) == 880


async def test_an_error_counts_once_in_every_total_and_a_success_in_none(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    key_id = await _held(ledger, account, sha, 100, "ok")
    await _held(ledger, account, sha, 100, "failed")
    await ledger.settle(settlement(account, "ok", 10))
    day = await redis_client.hgetall(_day(ledger, account))
    assert not [name for name in day if name.endswith("errors")]
    await ledger.settle(settlement(account, "failed", 10, failed=True))
    day = await redis_client.hgetall(_day(ledger, account))
    assert (
        day["a:chat.completions:errors"]
        == day["a:chat.completions:m:m:errors"]
        == day[f"a:chat.completions:k:{key_id}:errors"]
        == "1"
    )
    assert day["a:chat.completions:requests"] == "2"


async def test_hour_totals_count_the_request_and_expire(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await _held(ledger, account, sha, 300)
    await ledger.settle(settlement(account, "r1", 120))  # 10 prompt and 5 completion tokens
    hour = await redis_client.hgetall(_hour(ledger, account))
    chat = "a:chat.completions:"
    assert hour == {
        f"{chat}requests": "1",
        f"{chat}prompt_tokens": "10",
        f"{chat}completion_tokens": "5",
        f"{chat}credits": "120",
    }
    assert 0 < await redis_client.ttl(_hour(ledger, account)) <= RETENTION.hour_ttl_s


async def test_key_totals_and_last_use_are_under_the_key_id(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    key_id = await _held(ledger, account, sha, 300)
    await ledger.settle(settlement(account, "r1", 120))
    day = await redis_client.hgetall(_day(ledger, account))
    assert (
        day[f"a:chat.completions:k:{key_id}:requests"] == "1"
        and day[f"a:chat.completions:k:{key_id}:prompt_tokens"] == "10"
    )
    assert (
        day[f"a:chat.completions:k:{key_id}:completion_tokens"] == "5" and day["a:chat.completions:m:m:requests"] == "1"
    )
    last_used = await redis_client.hgetall(keyspace.api_key_last_used(account))
    assert last_used == {key_id: str(ledger.now_ms())}


async def test_a_released_id_is_remembered_after_later_releases(redis_client: Redis) -> None:
    # r1's reserve timed out in the gateway, which released it; more releases follow before Redis runs it.
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await _held(ledger, account, sha, 300, "r1")
    assert (await ledger.settle(Settlement.release(account, "r1"))).settled
    await ledger.settle(Settlement.release(account, "r2"))
    late = await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60)
    assert late.status is ReserveStatus.SETTLED
    assert await ledger.balance(account) == 1_000 and await ledger.reserved(account) == 0


async def test_two_settlements_in_one_millisecond_get_increasing_record_ids(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await _held(ledger, account, sha, 100, "r1")
    await _held(ledger, account, sha, 100, "r2")
    await ledger.settle(settlement(account, "r1", 10))
    await ledger.settle(settlement(account, "r2", 10))
    ids = [entry_id for entry_id, _ in await redis_client.xrange(keyspace.request_log(account))]
    assert ids == [f"{ledger.now_ms()}-0", f"{ledger.now_ms()}-1"]


async def test_a_settlement_crossing_a_usage_threshold_reports_its_alert_once(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await redis_client.hset(keyspace.alerts(account), "u:sub_1", "50")  # an alert at 50% of the period's budget
    await _held(ledger, account, sha, 300, "r1")
    await _held(ledger, account, sha, 300, "r2")
    below = await ledger.settle(settlement(account, "r1", 100))
    # used 100 of 1,000 (100 used + 600 balance + 300 held): 10%
    assert below.alerts == 0
    crossing = await ledger.settle(settlement(account, "r2", 450))
    # used 550 of 1,000: past 50%
    assert crossing.alerts == 1
    [(_, event)] = await redis_client.xrange(keyspace.outbox(account))
    assert (event["type"], event["used"], event["budget"], event["threshold"]) == (
        "usage.threshold",
        "550",
        "1000",
        "50",
    )


async def test_usage_is_kept_under_the_api_of_the_request(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    key_id = await _held(ledger, account, sha, 300)
    await ledger.settle(settlement(account, "r1", 250, api="embeddings"))
    day = await redis_client.hgetall(_day(ledger, account))
    api = "a:embeddings:"
    assert day[f"{api}credits"] == day[f"{api}m:m:credits"] == day[f"{api}k:{key_id}:credits"] == "250"
    assert not [name for name in day if not name.startswith(api)]
    hour = await redis_client.hgetall(_hour(ledger, account))
    assert (hour[f"{api}requests"], hour[f"{api}credits"]) == ("1", "250")
    [(_, record)] = await redis_client.xrange(keyspace.request_log(account))
    assert record["api"] == "embeddings"


async def test_an_api_name_that_could_break_the_field_names_is_refused_before_any_write(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await _held(ledger, account, sha, 300)
    before = await redis_client.dbsize()
    for api in ("", "a:b", "Messages", "k:key_1"):
        with pytest.raises(ResponseError, match="invalid settle arguments"):
            await ledger.settle(settlement(account, "r1", 250, api=api))
    assert await redis_client.dbsize() == before and await ledger.reserved(account) == 300
