"""GET /v1/usage/insights: clean traffic shows only the cache, a replayed settlement changes nothing, bad input gets
OpenAI-shaped 400s, and a key reads its own account only (and one of its keys)."""

from __future__ import annotations

import pytest

from gateway.admin.accounts import parse_api_key
from gateway.app_state import LEDGER
from gateway.billing import Settlement, keyspace
from tests.common import ADMIN_TOKEN, StartGateway
from tests.insights.waste import DAY, NOW, insights_gateway, question, records, scripted, sent
from tests.usage.traffic import get_json, new_tenant, utc

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_clean_traffic_shows_only_the_cache(start_gateway: StartGateway) -> None:
    gateway = await insights_gateway(start_gateway)
    tenant = await new_tenant(gateway, keys=("web",))
    start = utc(2026, 9, 21, 9).timestamp()
    # Distinct requests, some close together, on models without a cheaper alternative (a small request on m-big
    # is waste by definition), and a stream read to its end.
    for index in range(12):
        model = ("m-main", "m-cached")[index % 2]
        request_id, _ = await sent(gateway, tenant.key(0), question(f"Question number {index}", model), start + index)
        assert request_id
    response = await gateway.chat(tenant.key(0), {**question("A streamed one"), "stream": True})
    await response.read()
    await gateway.wait_settled(tenant.account_id)
    gateway.clock.now = NOW.timestamp()
    status, report = await get_json(gateway, "/v1/usage/insights", tenant.auth(), start=DAY, end=DAY)
    assert status == 200
    assert [item["type"] for item in report["data"]] == ["cache"]
    assert report["data"][0]["requests"] == 13


async def test_a_replayed_settlement_counts_no_insight_twice(start_gateway: StartGateway) -> None:
    gateway, tenant, script, _ = await scripted(start_gateway)
    day = keyspace.insights_day(tenant.account_id, NOW)
    before = await gateway.redis.hgetall(day)
    # The last duplicate settled again exactly as the gateway settled it (a retried call, a spool replay).
    repeat = (await records(gateway, tenant.account_id))[script.duplicates[-1]]
    state_key = keyspace.insight_request(tenant.account_id, repeat["req_hash"])
    state = await gateway.redis.hgetall(state_key)
    assert state["n"] == "1"
    names = ("status", "req_hash", "conv_hash", "messages", "usage_source", "cached_tokens")
    settlement = Settlement(
        tenant.account_id,
        repeat["request_id"],
        repeat["model"],
        int(repeat["cost_micros"]),
        int(repeat["prompt_tokens"]),
        int(repeat["completion_tokens"]),
        record={name: repeat[name] for name in names},
    )
    outcome = await gateway.app[LEDGER].settle(settlement, now_ms=int(NOW.timestamp() * 1000))
    assert not outcome.settled
    assert await gateway.redis.hgetall(day) == before
    assert await gateway.redis.hgetall(state_key) == state


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"start": "yesterday"}, "start"),
        ({"start": "2026-09-21", "end": "2026-09-20"}, "end"),
        ({"start": "2020-01-01", "end": "2026-09-21"}, "end"),  # longer than usage.max_range_days
        ({"granularity": "hour"}, "granularity"),
        ({"key": "sk-gw-not-a-key-id"}, "key"),
        ({"key": "key_12345"}, "key"),
    ],
)
async def test_bad_input_gets_a_400_naming_the_parameter(
    start_gateway: StartGateway, params: dict[str, str], param: str
) -> None:
    gateway = await insights_gateway(start_gateway)
    tenant = await new_tenant(gateway, keys=("web",))
    status, body = await get_json(gateway, "/v1/usage/insights", tenant.auth(), **params)
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] == param  # type: ignore[index]
    assert set(body["error"]) >= {"message", "type", "param", "code"}  # type: ignore[arg-type]


async def test_a_key_reads_its_own_account_and_keys_only(start_gateway: StartGateway) -> None:
    gateway, tenant, script, _ = await scripted(start_gateway)
    other = await new_tenant(gateway, keys=("theirs",), name="other")
    gateway.clock.now = NOW.timestamp()
    # Another account's data: 403 with its id, 404 with its key's id; the other account sees none of ours.
    status, body = await get_json(gateway, "/v1/usage/insights", other.auth(), account=tenant.account_id)
    assert status == 403 and body["error"]["code"] == "permission_denied"  # type: ignore[index]
    status, body = await get_json(gateway, "/v1/usage/insights", other.auth(), key=tenant.key_id(0))
    assert status == 404 and body["error"]["param"] == "key"  # type: ignore[index]
    status, body = await get_json(gateway, "/v1/usage/insights", other.auth(), start=DAY, end=DAY)
    assert status == 200 and body["data"] == []
    status, body = await get_json(gateway, "/v1/usage/insights", {}, start=DAY)
    assert status == 401

    # One key's insights: the batch key made only the retry loop.
    status, body = await get_json(
        gateway, "/v1/usage/insights", tenant.auth(0), start=DAY, end=DAY, key=tenant.key_id(1)
    )
    assert status == 200 and [item["type"] for item in body["data"]] == ["retry_loops"]  # type: ignore[index]
    loop = body["data"][0]  # type: ignore[index]
    assert loop["requests"] == 4 and sorted(loop["examples"]) == sorted(script.retries)
    assert loop["details"]["keys"] == [
        {"key_id": tenant.key_id(1), "loops": 1, "requests": 4, "credits": 0, "credits_micros": 0}
    ]
    # The admin token reads any account with ?account=, the same report the account's key reads.
    status, admin = await get_json(gateway, "/v1/usage/insights", ADMIN, account=tenant.account_id, start=DAY, end=DAY)
    _, own = await get_json(gateway, "/v1/usage/insights", tenant.auth(), start=DAY, end=DAY)
    assert status == 200 and admin == own and len(own["data"]) == 6  # type: ignore[arg-type]
    status, body = await get_json(gateway, "/v1/usage/insights", ADMIN, start=DAY)
    assert status == 400 and body["error"]["param"] == "account"  # type: ignore[index]


async def test_the_default_range_is_the_billing_period(start_gateway: StartGateway) -> None:
    gateway, tenant, _, _ = await scripted(start_gateway)
    status, report = await get_json(gateway, "/v1/usage/insights", tenant.auth())
    _, day = await get_json(gateway, "/v1/usage/insights", tenant.auth(), start=DAY, end=DAY)
    assert status == 200
    assert (report["period_start"], report["period_end"]) == ("2026-09-01T00:00:00Z", "2026-09-30T23:59:59Z")
    assert report["data"] == day["data"]


async def test_insights_are_kept_and_read_per_api(start_gateway: StartGateway) -> None:
    gateway = await insights_gateway(start_gateway)
    tenant = await new_tenant(gateway, keys=("web",))
    start = utc(2026, 9, 21, 9).timestamp()
    # Chat: the same question twice, 60 s apart, through the proxy: the second is a duplicate.
    await sent(gateway, tenant.key(0), question("Same question"), start)
    chat_repeat, _ = await sent(gateway, tenant.key(0), question("Same question"), start + 60)
    # Messages: two settlements of one fingerprint, as the metered path settles them, 60 s apart.
    ledger = gateway.app[LEDGER]
    parsed = parse_api_key(tenant.key(0))
    assert parsed is not None
    for index, at in enumerate((start + 120, start + 180)):
        gateway.clock.now = at
        request_id = f"msg-{index}"
        await ledger.reserve(
            tenant.account_id, parsed.sha256, request_id, hold_micros=900, min_hold_micros=900, ttl_s=60, api="messages"
        )
        record: dict[str, str | int] = {"status": 200, "req_hash": "h-msg", "conv_hash": "", "messages": 1}
        settlement = Settlement(tenant.account_id, request_id, "m-main", 700, 10, 5, record=record, api="messages")
        assert (await ledger.settle(settlement)).settled
    # Written before insights were kept per API: unscoped, so chat's.
    day = keyspace.insights_day(tenant.account_id, NOW)
    await gateway.redis.hset(day, mapping={"dup:requests": 2, "dup:credits": 1_000, "dup:savings": 1_000})  # type: ignore[misc]
    gateway.clock.now = NOW.timestamp()

    def duplicates(report: dict[str, object]) -> dict[str, object]:
        [found] = [item for item in report["data"] if item["type"] == "duplicates"]  # type: ignore[attr-defined]
        return found  # type: ignore[no-any-return]

    status, messages = await get_json(gateway, "/v1/usage/insights", tenant.auth(), start=DAY, end=DAY, api="messages")
    assert status == 200 and messages["api"] == "messages"
    found = duplicates(messages)
    assert (found["requests"], found["credits_micros"], found["examples"]) == (1, 700, ["msg-1"])
    status, chat = await get_json(
        gateway, "/v1/usage/insights", tenant.auth(), start=DAY, end=DAY, api="chat.completions"
    )
    found = duplicates(chat)
    assert found["requests"] == 3 and chat_repeat in found["examples"]  # type: ignore[operator]
    status, both = await get_json(gateway, "/v1/usage/insights", tenant.auth(), start=DAY, end=DAY)
    assert both["api"] is None and duplicates(both)["requests"] == 4
    status, refused = await get_json(gateway, "/v1/usage/insights", tenant.auth(), start=DAY, end=DAY, api="chat")
    assert status == 400 and refused["error"]["param"] == "api"  # type: ignore[index]
