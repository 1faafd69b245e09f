"""insights.lua, through settle.lua and reserve.lua directly: what one settlement counts, only in its first
settlement (a replay, from the spool or not, counts nothing again), duplicates and retry loops kept apart, a
402 seen as the start of a retry, and numbers refused before any write."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gateway.billing import InsightRules, Ledger, ReserveStatus, Settlement, keyspace
from gateway.billing.scripts import SettleCall
from gateway.billing.settler import Settler
from gateway.billing.spool import Spool, SpooledSettlement
from tests.billing.common import RETENTION, funded_ledger

RULES = InsightRules(duplicate_window_ms=600_000, retry_window_ms=120_000, retry_min=3)


async def insight_ledger(redis: Redis, credits_micros: int = 1_000_000) -> tuple[Ledger, str, str]:
    plain, account, sha = await funded_ledger(redis, credits_micros)
    return Ledger(redis, clock=plain.clock, retention=RETENTION, insights=RULES), account, sha


async def settle(
    ledger: Ledger, account: str, sha: str, request_id: str, cost: int, *, status: int = 200, **fields: str | int
) -> None:
    """Hold `cost` and settle it as a fingerprinted request (hash "h1" unless `fields` say otherwise)."""
    held = await ledger.reserve(account, sha, request_id, hold_micros=cost, min_hold_micros=cost, ttl_s=60)
    assert held.status is ReserveStatus.HELD
    record: dict[str, str | int] = {"status": status, "req_hash": "h1", "conv_hash": "", "messages": 1, **fields}
    outcome = await ledger.settle(Settlement(account, request_id, "m", cost, 10, 5, status >= 400, record))
    assert outcome.settled


CHAT_SCOPE = "a:chat.completions:"


async def day(ledger: Ledger, account: str, scope: str = CHAT_SCOPE) -> dict[str, str]:
    """The day's insights of the settlements made here (all on one API: `scope`), without that scope."""
    redis = ledger.redis
    fields = await redis.hgetall(keyspace.insights_day(account, datetime.fromtimestamp(ledger.clock(), UTC)))
    assert all(name.startswith(scope) for name in fields), sorted(fields)
    return {name[len(scope) :]: value for name, value in fields.items()}


def advance(ledger: Ledger, seconds: float) -> None:
    ledger.clock.now += seconds  # type: ignore[attr-defined]


async def test_a_repeat_after_a_success_is_a_duplicate_and_a_replay_counts_nothing(redis_client: Redis) -> None:
    ledger, account, sha = await insight_ledger(redis_client)
    await settle(ledger, account, sha, "r1", 100)
    advance(ledger, 500)  # within 600 s of the success, beyond the 120 s retry window
    await settle(ledger, account, sha, "r2", 70)
    counted = await day(ledger, account)
    assert (counted["dup:requests"], counted["dup:credits"], counted["dup:savings"], counted["dup:x"]) == (
        "1",
        "70",
        "70",
        "r2",
    )
    state = await redis_client.hgetall(keyspace.insight_request(account, "h1"))
    # Every field the state needs to see the next sighting, and a lifetime of the longer window.
    assert state["ok"] == str(ledger.now_ms()) and state["s"] == "200"
    assert 590_000 < await redis_client.pttl(keyspace.insight_request(account, "h1")) <= 600_000

    # The same settlement again (a retry, a replay): no hold, so nothing counts twice.
    again = Settlement(account, "r2", "m", 70, 10, 5, record={"status": 200, "req_hash": "h1", "messages": 1})
    assert not (await ledger.settle(again)).settled
    assert await day(ledger, account) == counted
    assert await redis_client.hgetall(keyspace.insight_request(account, "h1")) == state

    advance(ledger, 601)  # past the duplicate window: a new request again
    await settle(ledger, account, sha, "r3", 50)
    assert (await day(ledger, account))["dup:requests"] == "1"


async def test_a_loop_takes_in_the_sightings_before_it_and_its_first_is_no_saving(redis_client: Redis) -> None:
    ledger, account, sha = await insight_ledger(redis_client)
    for index, cost in enumerate((100, 200, 300, 400)):
        await settle(ledger, account, sha, f"r{index}", cost, status=(200 if index == 3 else 503) if index else 429)
        advance(ledger, 1)
    counted = await day(ledger, account)
    # r0 (429), then r1 right after it opens the loop with r0 in it; r2, r3 join. The first try, r0, is no saving.
    assert (counted["retry:loops"], counted["retry:requests"], counted["retry:credits"]) == ("1", "4", "1000")
    assert counted["retry:savings"] == "900"
    assert counted["retry:x"] == "r0 r1 r2 r3"
    key_id = (await redis_client.hvals(keyspace.live_api_keys(account)))[0]
    assert counted[f"k:{key_id}:retry:credits"] == "1000" and counted[f"k:{key_id}:retry:x"] == "r0 r1 r2 r3"
    assert "dup:requests" not in counted  # a sighting in an open loop is the loop's, never a duplicate


async def test_three_sightings_in_the_window_are_a_loop_and_a_duplicate_is_not_taken_in(redis_client: Redis) -> None:
    ledger, account, sha = await insight_ledger(redis_client)
    await settle(ledger, account, sha, "r1", 10)  # pending
    advance(ledger, 10)
    await settle(ledger, account, sha, "r2", 20)  # a duplicate of r1's success
    advance(ledger, 10)
    await settle(ledger, account, sha, "r3", 30)  # the third in 120 s: a loop of r1 and r3
    advance(ledger, 200)
    await settle(ledger, account, sha, "r4", 40)  # the loop is over (quiet past the window): a duplicate
    counted = await day(ledger, account)
    assert (counted["dup:requests"], counted["dup:credits"], counted["dup:x"]) == ("2", "60", "r2 r4")
    assert (counted["retry:loops"], counted["retry:requests"], counted["retry:credits"]) == ("1", "2", "40")
    assert counted["retry:savings"] == "30" and counted["retry:x"] == "r1 r3"


async def test_a_repeat_right_after_a_402_is_a_retry(redis_client: Redis) -> None:
    ledger, account, sha = await insight_ledger(redis_client, 100)
    refused = await ledger.reserve(
        account, sha, "r1", hold_micros=500, min_hold_micros=500, ttl_s=60, request_hash="h1"
    )
    assert refused.status is ReserveStatus.INSUFFICIENT
    state = keyspace.insight_request(account, "h1")
    assert await redis_client.hgetall(state) == {"t": str(ledger.now_ms()), "s": "402"}
    assert 0 < await redis_client.pttl(state) <= 600_000
    advance(ledger, 5)
    await settle(ledger, account, sha, "r2", 80)
    counted = await day(ledger, account)
    # The refused request has no record: the loop is the one settled repeat.
    assert (counted["retry:loops"], counted["retry:requests"], counted["retry:credits"], counted["retry:x"]) == (
        "1",
        "1",
        "80",
        "r2",
    )
    # Without insights, or without a hash, a refusal marks nothing.
    plain, other, other_sha = await funded_ledger(redis_client, 0)
    await plain.reserve(other, other_sha, "r1", hold_micros=5, min_hold_micros=5, ttl_s=60, request_hash="h1")
    assert not await redis_client.exists(keyspace.insight_request(other, "h1"))


async def test_unused_long_mix_and_cache_are_counted_per_account_and_key(redis_client: Redis) -> None:
    ledger, account, sha = await insight_ledger(redis_client)
    await settle(ledger, account, sha, "r1", 90, status=499, req_hash="a")
    fields = {"conv_hash": "c2", "conv_prev": "c1", "history_tokens": 700, "history_micros": 60}
    await settle(ledger, account, sha, "r2", 50, req_hash="b", **fields)
    await settle(ledger, account, sha, "r3", 40, req_hash="c", **{**fields, "conv_prev": "c2", "conv_hash": "c3"})
    await settle(ledger, account, sha, "r4", 30, req_hash="d", alt_model="m-small", alt_micros=45)
    await settle(ledger, account, sha, "r5", 30, req_hash="e", alt_model="m-small", alt_micros=12)
    await settle(ledger, account, sha, "r6", 30, req_hash="f", usage_source="upstream", cached_tokens=4)
    counted = await day(ledger, account)
    key_id = (await redis_client.hvals(keyspace.live_api_keys(account)))[0]
    for scope in ("", f"k:{key_id}:"):
        assert counted[f"{scope}unused:credits"] == counted[f"{scope}unused:savings"] == "90"
        # r2 starts a conversation and marks its history c2; r3, whose previous turn had c2, continues it: one
        # conversation, two requests. The saving is the history's cost (60), at most the charge: 50 + 40.
        assert (counted[f"{scope}long:requests"], counted[f"{scope}long:conversations"]) == ("2", "1")
        assert (counted[f"{scope}long:history_tokens"], counted[f"{scope}long:savings"]) == ("1400", "90")
        # 30 at the alternative's 45 saves nothing; at its 12, 18.
        assert (counted[f"{scope}mix:credits"], counted[f"{scope}mix:alternative"]) == ("60", "57")
        assert counted[f"{scope}mix:savings"] == counted[f"{scope}mix:m:m:savings"] == "18"
        assert (counted[f"{scope}cache:m:m:prompt_tokens"], counted[f"{scope}cache:m:m:cached_tokens"]) == ("10", "4")
    assert await redis_client.pttl(keyspace.insight_conversation(account, "c3")) > 86_000_000


async def test_a_day_keeps_its_first_five_examples(redis_client: Redis) -> None:
    ledger, account, sha = await insight_ledger(redis_client)
    for index in range(8):
        await settle(ledger, account, sha, f"r{index}", 10)
        advance(ledger, 130)  # past the retry window, within the duplicate window: r1 to r7 are duplicates
    counted = await day(ledger, account)
    assert (counted["dup:requests"], counted["dup:x"]) == ("7", "r1 r2 r3 r4 r5")


@pytest.mark.parametrize("field", ["status", "history_tokens", "history_micros", "alt_micros", "cached_tokens"])
async def test_a_bad_number_is_refused_before_any_write(redis_client: Redis, field: str) -> None:
    ledger, account, sha = await insight_ledger(redis_client)
    await ledger.reserve(account, sha, "r1", hold_micros=100, min_hold_micros=100, ttl_s=60)
    settlement = Settlement(account, "r1", "m", 100, 10, 5, record={"req_hash": "h1", "alt_model": "x", field: -1})
    call = SettleCall(settlement, ledger.now_ms(), RETENTION, RULES)
    assert len(call.keys()) == 13 and call.argv()[15:20] == [600_000, 120_000, 3, 5, 86_400_000]
    before = await redis_client.dbsize()
    with pytest.raises(ResponseError, match=f"invalid {field}"):
        await ledger._settle(call.keys(), call.argv())
    assert await redis_client.dbsize() == before and await ledger.reserved(account) == 100


async def test_a_spooled_settlement_replayed_twice_counts_once(redis_client: Redis, tmp_path: Path) -> None:
    ledger, account, sha = await insight_ledger(redis_client)
    await settle(ledger, account, sha, "r1", 100)
    await ledger.reserve(account, sha, "r2", hold_micros=70, min_hold_micros=70, ttl_s=60)
    repeat = Settlement(account, "r2", "m", 70, 10, 5, record={"status": 200, "req_hash": "h1", "messages": 1})
    for _ in range(2):  # a crash between applying it and noting it done: the next process applies it again
        spool = Spool(tmp_path)
        spool.open()
        spool.append(SpooledSettlement(repeat, ledger.now_ms()))
        await Settler(ledger, spool).replay()
        spool.close()
    counted = await day(ledger, account)
    assert (counted["dup:requests"], counted["dup:credits"]) == ("1", "70")
