"""Crossings are detected inside the money scripts, exactly once each: a usage threshold once per period,
credits.low until a top-up re-arms it, credits.exhausted once per refusal streak. Run against the ledger and a
real Redis; every amount is in micro-credits and worked by hand."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from redis.asyncio import Redis

from gateway.billing import Ledger, ReserveStatus, keyspace
from gateway.billing.settler import Settler
from gateway.billing.spool import Spool, SpooledSettlement
from gateway.webhooks.store import Subscription, WebhookStore
from tests.billing.common import RETENTION, funded_ledger, settlement
from tests.common import FakeClock

SEPTEMBER = 1_790_000_000.0  # 2026-09-21
OCTOBER = 1_791_500_000.0  # 2026-10-09


async def _subscribe(
    redis: Redis, account: str, *events: str, percent: int | None = None, low: int | None = None
) -> Subscription:
    subscription = Subscription(
        id="wh_0000000000000001",
        account_id=account,
        url="https://example.test/hook",
        events=events,
        usage_threshold_percent=percent,
        credits_low_threshold_micros=low,
        enabled=True,
        created_at=0,
        secret="whsec_AAAA",
    )
    await WebhookStore(redis, clock=FakeClock()).save(subscription, rearm=True)
    return subscription


async def _events(redis: Redis, account: str) -> list[dict[str, str]]:
    return [fields for _, fields in await redis.xrange(keyspace.outbox(account))]


async def _spend(ledger: Ledger, account: str, sha: str, request_id: str, cost: int) -> int:
    """Reserve and settle one request costing `cost`; how many events its settlement appended."""
    held = await ledger.reserve(account, sha, request_id, hold_micros=cost, min_hold_micros=cost, ttl_s=60)
    assert held.status is ReserveStatus.HELD
    return (await ledger.settle(settlement(account, request_id, cost))).alerts


async def test_a_usage_threshold_fires_once_when_reached(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await _subscribe(redis_client, account, "usage.threshold", percent=80)
    assert await _spend(ledger, account, sha, "r1", 700) == 0  # 700 of a 1,000 budget: 70%
    assert await _spend(ledger, account, sha, "r2", 100) == 1  # 800 of 1,000: exactly 80%
    assert await _spend(ledger, account, sha, "r3", 150) == 0  # 95%: fired already this period
    [event] = await _events(redis_client, account)
    assert event["type"] == "usage.threshold" and event["sub"] == "wh_0000000000000001"
    assert (event["used"], event["budget"], event["remaining"], event["threshold"]) == ("800", "1000", "200", "80")
    assert event["request"] == "r2" and event["account"] == account and event["period"] == "202609"


async def test_the_budget_counts_what_was_granted_during_the_period(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await _subscribe(redis_client, account, "usage.threshold", percent=80)
    await _spend(ledger, account, sha, "r1", 700)
    await ledger.grant(account, 1_000)  # budget 2,000: 700 used is 35%
    assert await _spend(ledger, account, sha, "r2", 899) == 0  # 1,599 of 2,000: 79.95%
    assert await _spend(ledger, account, sha, "r3", 1) == 1  # 1,600: 80%
    [event] = await _events(redis_client, account)
    assert (event["used"], event["budget"]) == ("1600", "2000")


async def test_a_new_period_re_arms_the_usage_threshold(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 10_000)
    clock = ledger.clock
    assert isinstance(clock, FakeClock)
    clock.now = SEPTEMBER
    await _subscribe(redis_client, account, "usage.threshold", percent=50)
    assert await _spend(ledger, account, sha, "r1", 5_000) == 1  # 5,000 of 10,000
    clock.now = OCTOBER  # the budget of October: the 5,000 left
    assert await _spend(ledger, account, sha, "r2", 2_000) == 0  # 40%
    assert await _spend(ledger, account, sha, "r3", 500) == 1  # 2,500 of 5,000
    events = await _events(redis_client, account)
    assert [(e["period"], e["used"], e["budget"]) for e in events] == [
        ("202609", "5000", "10000"),
        ("202610", "2500", "5000"),
    ]


async def test_credits_low_fires_once_and_re_arms_after_a_top_up(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await _subscribe(redis_client, account, "credits.low", low=300)
    assert await _spend(ledger, account, sha, "r1", 600) == 0  # 400 left
    assert await _spend(ledger, account, sha, "r2", 150) == 1  # 250 < 300
    assert await _spend(ledger, account, sha, "r3", 50) == 0  # still below: fired already
    await ledger.grant(account, 100)  # 300: no longer below, re-armed
    assert await _spend(ledger, account, sha, "r4", 10) == 1  # 290 < 300 again
    events = await _events(redis_client, account)
    assert [(e["type"], e["remaining"], e["threshold"], e["request"]) for e in events] == [
        ("credits.low", "250", "300", "r2"),
        ("credits.low", "290", "300", "r4"),
    ]


async def test_taking_credits_back_can_cross_the_low_threshold(redis_client: Redis) -> None:
    ledger, account, _ = await funded_ledger(redis_client, 1_000)
    await _subscribe(redis_client, account, "credits.low", low=500)
    await ledger.grant(account, -600, grant_id="g1")  # 400 < 500
    [event] = await _events(redis_client, account)
    assert (event["type"], event["remaining"], event["request"]) == ("credits.low", "400", "g1")


async def test_holds_in_flight_do_not_count_as_spent_for_the_low_threshold(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await _subscribe(redis_client, account, "credits.low", low=300)
    # A big hold (900) is taken out of the available balance; the request then costs only 100.
    await ledger.reserve(account, sha, "big", hold_micros=900, min_hold_micros=900, ttl_s=60)
    await ledger.reserve(account, sha, "small", hold_micros=50, min_hold_micros=50, ttl_s=60)
    assert (await ledger.settle(settlement(account, "small", 50))).alerts == 0  # 950 is what the account has
    assert (await ledger.settle(settlement(account, "big", 100))).alerts == 0  # 850
    assert await _events(redis_client, account) == []


async def test_credits_exhausted_fires_once_per_refusal_streak(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 100)
    await _subscribe(redis_client, account, "credits.exhausted")
    for request_id in ("r1", "r2"):
        refused = await ledger.reserve(account, sha, request_id, hold_micros=500, min_hold_micros=500, ttl_s=60)
        assert refused.status is ReserveStatus.INSUFFICIENT
        assert refused.alerts == (1 if request_id == "r1" else 0)
    await ledger.grant(account, 1_000)  # a top-up re-arms it
    again = await ledger.reserve(account, sha, "r3", hold_micros=5_000, min_hold_micros=5_000, ttl_s=60)
    assert again.alerts == 1
    events = await _events(redis_client, account)
    assert [(e["type"], e["request"], e["remaining"]) for e in events] == [
        ("credits.exhausted", "r1", "100"),
        ("credits.exhausted", "r3", "1100"),
    ]


async def test_concurrent_settlements_cross_a_threshold_exactly_once(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 100_000)
    await _subscribe(redis_client, account, "usage.threshold", "credits.low", percent=50, low=40_000)
    for index in range(100):
        await ledger.reserve(account, sha, f"r{index}", hold_micros=700, min_hold_micros=700, ttl_s=60)
    outcomes = await asyncio.gather(*(ledger.settle(settlement(account, f"r{i}", 700)) for i in range(100)))
    # 100 * 700 = 70,000 used: past 50% at the 72nd and under 40,000 left at the 86th, each once.
    assert sum(outcome.alerts for outcome in outcomes) == 2
    events = await _events(redis_client, account)
    assert sorted(e["type"] for e in events) == ["credits.low", "usage.threshold"]
    usage = next(e for e in events if e["type"] == "usage.threshold")
    assert usage["used"] == "50400"  # the 72nd settlement: 72 * 700, the first at or past 50,000


async def test_a_disabled_or_deleted_subscription_fires_nothing(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    subscription = await _subscribe(redis_client, account, "credits.low", low=900)
    store = WebhookStore(redis_client, clock=FakeClock())
    await store.save(replace(subscription, enabled=False), rearm=False)
    assert await _spend(ledger, account, sha, "r1", 200) == 0
    await store.delete(account, subscription.id)
    assert await _spend(ledger, account, sha, "r2", 200) == 0
    assert await _events(redis_client, account) == []
    assert not await redis_client.exists(keyspace.alerts(account))


async def test_every_step_that_appends_events_wakes_the_sender(redis_client: Redis, tmp_path: Path) -> None:
    """The ledger tells its observer (the app wires the webhook sender's wake-up) after a reserve, a settlement, a
    settlement replayed from the spool and a grant that appended events, and only then."""
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    woken: list[int] = []
    ledger.on_alerts = lambda: woken.append(len(woken))
    await _subscribe(redis_client, account, "credits.low", "credits.exhausted", low=500)
    await ledger.grant(account, -100, grant_id="g0")  # 900: nothing crossed
    assert woken == []
    await ledger.grant(account, -450, grant_id="g1")  # 450 < 500: credits.low
    assert len(woken) == 1
    refused = await ledger.reserve(account, sha, "r1", hold_micros=5_000, min_hold_micros=5_000, ttl_s=60)
    assert refused.status is ReserveStatus.INSUFFICIENT and len(woken) == 2  # credits.exhausted
    await ledger.grant(account, 1_000, grant_id="g2")  # 1,450: re-arms both
    assert len(woken) == 2
    held = await ledger.reserve(account, sha, "r2", hold_micros=1_000, min_hold_micros=1_000, ttl_s=60)
    assert held.status is ReserveStatus.HELD
    spool = Spool(tmp_path)
    spool.open()
    try:
        settler = Settler(ledger, spool)
        spool.append(SpooledSettlement(settlement(account, "r2", 1_000), ledger.now_ms()))  # Redis was away
        assert await settler.replay() == 0  # 450 < 500 again: credits.low, found by the replay
    finally:
        spool.close()
    assert len(woken) == 3


async def test_the_observer_given_when_the_ledger_is_built_is_told(redis_client: Redis) -> None:
    """As the app builds it (storage.ledger_for): the observer is passed to the constructor."""
    built, account, sha = await funded_ledger(redis_client, 1_000)
    woken: list[int] = []
    ledger = Ledger(redis_client, clock=built.clock, retention=RETENTION, on_alerts=lambda: woken.append(1))
    await _subscribe(redis_client, account, "credits.low", low=500)
    assert await _spend(ledger, account, sha, "r1", 600) == 1 and woken == [1]
