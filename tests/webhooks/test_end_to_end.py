"""Usage alerts end to end: real traffic through the proxy crosses thresholds, a real receiver on 127.0.0.1
gets each event once, signed; two gateways send one event between them; failed deliveries are retried on the
schedule and logged; a gateway restarted delivers what it had not."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.billing import keyspace
from gateway.billing.keyspace import as_text
from gateway.webhooks import handlers, outbox, sender
from gateway.webhooks.outbox import Outbox
from gateway.webhooks.store import WebhookStore
from tests.common import FakeClock, Gateway, StartGateway, user_message
from tests.webhooks.common import WEBHOOK_SETTINGS, Receiver, subscribe

# One "Hello!" with max_tokens 16 at the suite's prices: 9 * 1,000.25 + 16 * 2,000.15 = 41,004.65 -> 41,005.
REQUEST_MICROS = 41_005


async def _hello(gateway: Gateway, key: str) -> int:
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message(), "max_tokens": 16})
    await response.read()
    return response.status


async def test_traffic_crossing_80_percent_and_the_low_line_sends_each_event_once(
    start_gateway: StartGateway, receiver: Receiver
) -> None:
    gateway = await start_gateway(WEBHOOK_SETTINGS)
    account, key = await gateway.new_account(credits=1)
    webhook = await subscribe(
        gateway,
        key,
        receiver.url,
        ["usage.threshold", "credits.low"],
        usage_threshold_percent=80,
        credits_low_threshold="0.3",
    )
    for _ in range(22):
        assert await _hello(gateway, key) == 200
    # credits.low: under 300,000 left after 18 requests (738,090 used, 261,910 left);
    # usage.threshold: 80% of 1,000,000 reached at the 20th (820,100 used; 19 make 779,095).
    await receiver.wait_for(2)
    await asyncio.sleep(1.5)  # nothing more comes
    assert len(receiver.got) == 2
    # Both may be read in one round of the sender and then be delivered side by side, in either order.
    payloads = [delivery.verified(str(webhook["secret"])) for delivery in receiver.got]
    assert [delivery.headers["webhook-id"] for delivery in receiver.got] == [payload["id"] for payload in payloads]
    by_type = {payload["type"]: payload for payload in payloads}
    low, usage = by_type["credits.low"], by_type["usage.threshold"]
    assert low["data"]["credits_remaining_micros"] == 1_000_000 - 18 * REQUEST_MICROS  # type: ignore[index]
    assert low["data"]["threshold"] == 0.3  # type: ignore[index]
    assert usage["data"]["credits_used_micros"] == 20 * REQUEST_MICROS  # type: ignore[index]
    assert usage["data"]["threshold"] == 80 and usage["data"]["value"] == 82.01  # type: ignore[index]
    assert usage["data"]["account_id"] == account  # type: ignore[index]
    # One convention for a period's end everywhere: its last second, as the account and usage APIs say it.
    shown = (await gateway.admin("GET", f"/admin/accounts/{account}"))[1]
    assert shown["period_end"] == "2026-09-30T23:59:59Z"
    for event in (low, usage):
        assert event["data"]["period"] == {"start": shown["period_start"], "end": shown["period_end"]}  # type: ignore[index]


async def test_two_gateways_on_one_redis_send_one_event(start_gateway: StartGateway, receiver: Receiver) -> None:
    first = await start_gateway(WEBHOOK_SETTINGS)
    second = await start_gateway(WEBHOOK_SETTINGS)
    _, key = await first.new_account(credits=1)
    await subscribe(first, key, receiver.url, ["usage.threshold"], usage_threshold_percent=50)
    statuses = await asyncio.gather(*(_hello(gateway, key) for _ in range(8) for gateway in (first, second)))
    assert statuses.count(200) == 16  # 16 * 41,005 = 656,080: past 50% once
    await receiver.wait_for(1)
    await asyncio.sleep(2)
    assert len(receiver.got) == 1


async def test_a_failing_receiver_is_retried_and_every_attempt_logged(
    start_gateway: StartGateway, receiver: Receiver
) -> None:
    receiver.statuses = [500, 500]
    gateway = await start_gateway(WEBHOOK_SETTINGS)
    _, key = await gateway.new_account()
    webhook = await subscribe(gateway, key, receiver.url, ["credits.low"], credits_low_threshold=1)
    auth = {"Authorization": f"Bearer {key}"}
    sent = await (await gateway.client.post(f"/v1/webhooks/{webhook['id']}/test", headers=auth)).json()
    await receiver.wait_for(3)
    assert receiver.event_ids() == [sent["id"]] * 3  # the same event id every time: receivers deduplicate
    log = await _delivery_log(gateway, webhook["id"], key, 3)
    assert [(entry["attempt"], entry["status"], entry["response_status"]) for entry in reversed(log)] == [
        (1, "failed", 500),
        (2, "failed", 500),
        (3, "delivered", 200),
    ]
    assert log[-1]["next_retry_ms"] is not None and log[0]["next_retry_ms"] is None


async def test_a_restarted_gateway_delivers_what_it_had_not(start_gateway: StartGateway, receiver: Receiver) -> None:
    receiver.statuses = [503]
    gateway = await start_gateway(WEBHOOK_SETTINGS)
    _, key = await gateway.new_account()
    webhook = await subscribe(gateway, key, receiver.url, ["credits.low"], credits_low_threshold=1)
    auth = {"Authorization": f"Bearer {key}"}
    await gateway.client.post(f"/v1/webhooks/{webhook['id']}/test", headers=auth)
    await receiver.wait_for(1)  # refused; the retry is due in about a second
    await gateway.client.close()  # the gateway stops before it
    await asyncio.sleep(1.5)
    assert len(receiver.got) == 1
    restarted = await start_gateway(WEBHOOK_SETTINGS)
    await receiver.wait_for(2)
    assert receiver.got[1].headers["webhook-id"] == receiver.got[0].headers["webhook-id"]
    log = await _delivery_log(restarted, webhook["id"], key, 2)
    assert [entry["status"] for entry in log] == ["delivered", "failed"]


async def test_an_attempt_cut_short_by_a_stop_is_retried_on_the_schedule(
    start_gateway: StartGateway, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handlers, "DRAIN_S", 0.2)  # a stop waits this long for attempts in flight
    receiver.delay_s = 30.0  # the first attempt never gets an answer
    gateway = await start_gateway(WEBHOOK_SETTINGS)
    _, key = await gateway.new_account()
    webhook = await subscribe(gateway, key, receiver.url, ["credits.exhausted"])
    auth = {"Authorization": f"Bearer {key}"}
    await gateway.client.post(f"/v1/webhooks/{webhook['id']}/test", headers=auth)
    await receiver.wait_for(1)
    await gateway.client.close()  # stops mid-attempt
    receiver.delay_s = 0.0
    restarted = await start_gateway(WEBHOOK_SETTINGS)
    await receiver.wait_for(2)
    log = await _delivery_log(restarted, webhook["id"], key, 2)
    assert [(entry["status"], entry["error"]) for entry in reversed(log)] == [
        ("failed", "the gateway stopped during the attempt"),
        ("delivered", None),
    ]


async def test_an_event_a_dead_process_left_pending_is_claimed_by_another(
    start_gateway: StartGateway, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "CLAIM_IDLE_MS", 300)  # 45 s in production
    # The survivor claims at its first round, and not again before the test ends: a second claim of its own entry,
    # idle again once its attempt takes 300 ms on a busy machine, would send the event twice.
    monkeypatch.setattr(sender, "CLAIM_EVERY_S", 30)
    gateway = await start_gateway(WEBHOOK_SETTINGS)
    account, key = await gateway.new_account()
    webhook = await subscribe(gateway, key, receiver.url, ["credits.exhausted"])
    subscription = await WebhookStore(gateway.redis, clock=FakeClock()).get(account, str(webhook["id"]))
    assert subscription is not None
    await gateway.client.close()  # no sender runs while the dead one takes the event
    dead = Outbox(gateway.redis, clock=time.time)
    event_id = await dead.append_test(subscription)
    [(_, taken)] = await dead.read_new([account], "a-process-that-died", 10)
    assert taken.id == event_id  # it is pending for the dead consumer, never to be acknowledged by it
    await _until_idle(gateway, account, outbox.CLAIM_IDLE_MS)  # abandoned, as the survivor's first round sees it
    survivor = await start_gateway(WEBHOOK_SETTINGS)
    [delivery] = await receiver.wait_for(1)
    assert delivery.headers["webhook-id"] == event_id
    log = await _delivery_log(survivor, webhook["id"], key, 1)
    assert [entry["status"] for entry in log] == ["delivered"]


async def _delivery_log(gateway: Gateway, webhook_id: object, key: str, count: int) -> list[dict[str, object]]:
    """The subscription's delivery log (newest first) once it has `count` attempts: the receiver has a request
    before the sender has its answer and writes the outcome."""
    deadline = time.monotonic() + 30
    while True:
        response = await gateway.client.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=_auth(key))
        log: list[dict[str, object]] = (await response.json())["data"]
        if len(log) >= count:
            return log
        assert time.monotonic() < deadline, f"{len(log)} of {count} attempts logged"
        await asyncio.sleep(0.05)


async def _until_idle(gateway: Gateway, account: str, idle_ms: int, timeout: float = 10.0) -> None:
    """Until every pending entry of the account's outbox has been idle for `idle_ms`."""
    stream = keyspace.outbox(account)
    deadline = time.monotonic() + timeout
    while pending := await gateway.redis.xpending_range(stream, keyspace.OUTBOX_GROUP, "-", "+", 10):
        if min(entry["time_since_delivered"] for entry in pending) >= idle_ms:
            return
        assert time.monotonic() < deadline, f"entries still not idle for {idle_ms} ms: {pending}"
        await asyncio.sleep(0.05)
    raise AssertionError("nothing is pending")


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_an_entry_claimed_away_while_it_waited_is_left_to_its_new_owner(
    start_gateway: StartGateway, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "CLAIM_IDLE_MS", 0)  # any pending entry looks abandoned
    gateway = await start_gateway(WEBHOOK_SETTINGS)
    account, key = await gateway.new_account()
    webhook = await subscribe(gateway, key, receiver.url, ["credits.exhausted"])
    subscription = await WebhookStore(gateway.redis, clock=FakeClock()).get(account, str(webhook["id"]))
    assert subscription is not None
    await gateway.client.close()  # no sender of the app's own takes part
    slow, fast = Outbox(gateway.redis, clock=time.time), Outbox(gateway.redis, clock=time.time)
    await slow.append_test(subscription)
    [(entry_id, _)] = await slow.read_new([account], "slow", 10)
    [(claimed_id, _)] = await fast.claim_stale(account, "fast", 10)  # the slow one waited for a slot too long
    assert claimed_id == entry_id
    assert not await slow.keep(account, entry_id, "slow")  # so it must not attempt the event
    assert await fast.keep(account, entry_id, "fast")
    [pending] = await gateway.redis.xpending_range(keyspace.outbox(account), keyspace.OUTBOX_GROUP, "-", "+", 10)
    assert as_text(pending["consumer"]) == "fast" and pending["time_since_delivered"] < 1000  # kept: idle again
    await fast.ack(account, entry_id)
    assert not await fast.keep(account, entry_id, "fast")  # acknowledged: nobody's any more
