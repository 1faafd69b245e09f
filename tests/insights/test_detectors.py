"""Each detector after scripted traffic through the proxy (tests/insights/waste.py): it finds exactly the waste the
script holds, with credit figures equal to the sums of the matching request records, read from Redis."""

from __future__ import annotations

from typing import Any

from tests.common import REFERENCE, StartGateway
from tests.insights.waste import (
    BIG_REFERENCE,
    CACHED_TOKENS,
    DAY,
    history_tokens,
    micros,
    scripted,
    tokens,
)
from tests.usage.traffic import get_json

TYPES = {"duplicates", "retry_loops", "unused_responses", "long_conversations", "model_mix", "cache"}


def by_type(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["type"]: item for item in report["data"]}


def credits_of(item: dict[str, Any]) -> tuple[int, int]:
    return item["credits_micros"], item["estimated_savings_credits_micros"]


async def test_each_detector_finds_exactly_the_scripted_waste(start_gateway: StartGateway) -> None:
    gateway, tenant, script, records = await scripted(start_gateway)
    status, report = await get_json(gateway, "/v1/usage/insights", tenant.auth(), start=DAY, end=DAY)
    assert status == 200, report
    items = by_type(report)
    assert set(items) == TYPES
    assert (report["period_start"], report["period_end"]) == ("2026-09-21T00:00:00Z", "2026-09-21T23:59:59Z")
    savings = [item["estimated_savings_credits_micros"] for item in report["data"]]
    assert savings == sorted(savings, reverse=True)

    # Five repeats of one request, each within 600 s of a successful answer; what each cost is the saving.
    repeats = [records[request_id] for request_id in script.duplicates[1:]]
    assert items["duplicates"]["requests"] == 5
    assert credits_of(items["duplicates"]) == (sum(map(micros, repeats)),) * 2
    assert set(items["duplicates"]["examples"]) <= set(script.duplicates[1:])

    # Four tries after upstream 500s: one loop of four requests, all free (an upstream error costs nothing).
    retry = items["retry_loops"]
    assert [records[r]["status"] for r in script.retries] == ["500"] * 4
    assert (retry["requests"], retry["details"]["loops"]) == (4, 1)
    assert credits_of(retry) == (sum(micros(records[r]) for r in script.retries), 0) == (0, 0)
    assert retry["details"]["keys"] == [
        {"key_id": tenant.key_id(1), "loops": 1, "requests": 4, "credits": 0, "credits_micros": 0}
    ]
    assert set(retry["examples"]) <= set(script.retries) and len(retry["examples"]) == 4

    # Three streams the client left: billed for what they were sent, all of it wasted.
    abandoned = [records[request_id] for request_id in script.abandoned]
    assert [record["status"] for record in abandoned] == ["499"] * 3
    assert items["unused_responses"]["requests"] == 3
    assert credits_of(items["unused_responses"]) == (sum(map(micros, abandoned)),) * 2 != (0, 0)
    assert sorted(items["unused_responses"]["examples"]) == sorted(script.abandoned)

    # One conversation of 30 turns: turns 21 to 30 are past the 20 allowed, each resending its history.
    long = items["long_conversations"]
    late = script.conversation[20:]
    resent = [history_tokens(script.histories[request_id]) for request_id in late]
    assert (long["requests"], long["details"]["conversations"]) == (10, 1)
    assert long["details"]["history_tokens"] == sum(resent)
    assert [int(records[r]["history_tokens"]) for r in late] == resent
    expected_savings = sum(
        min(REFERENCE.cost_micros(history, 0), micros(records[r])) for r, history in zip(late, resent, strict=True)
    )
    assert credits_of(long) == (sum(micros(records[r]) for r in late), expected_savings)
    assert set(long["examples"]) <= set(late) and len(long["examples"]) == 5

    # Four small requests on m-big, whose cheaper alternative is m-main; the large one is not among them.
    mix = items["model_mix"]
    small = [records[request_id] for request_id in script.mix]
    alternative = [REFERENCE.cost_micros(*tokens(record)) for record in small]
    assert [BIG_REFERENCE.cost_micros(*tokens(record)) for record in small] == list(map(micros, small))
    assert mix["requests"] == 4
    assert credits_of(mix) == (
        sum(map(micros, small)),
        sum(micros(record) - alt for record, alt in zip(small, alternative, strict=True)),
    )
    assert mix["details"]["alternative_credits_micros"] == sum(alternative)
    assert mix["details"]["models"][0]["model"] == "m-big" and mix["details"]["models"][0]["alternative"] == "m-main"
    assert script.large[0] not in mix["examples"] and set(mix["examples"]) <= set(script.mix)

    # The cache: every request whose upstream reported usage, per model; only m-cached's upstream caches.
    cache = items["cache"]
    reported = [record for record in records.values() if record["usage_source"] == "upstream"]
    per_model = {m["model"]: m for m in cache["details"]["models"]}
    for model in ("m-main", "m-big", "m-cached"):
        mine = [record for record in reported if record["model"] == model]
        assert per_model[model]["requests"] == len(mine)
        assert per_model[model]["prompt_tokens"] == sum(int(record["prompt_tokens"]) for record in mine)
    assert per_model["m-cached"]["cached_tokens"] == 2 * CACHED_TOKENS
    assert per_model["m-main"]["cached_tokens"] == per_model["m-big"]["cached_tokens"] == 0
    assert cache["requests"] == len(reported) and credits_of(cache) == (0, 0)
    assert cache["details"]["cached_tokens"] == 2 * CACHED_TOKENS


async def test_every_example_is_in_the_export(start_gateway: StartGateway) -> None:
    gateway, tenant, _, _ = await scripted(start_gateway)
    _, report = await get_json(gateway, "/v1/usage/insights", tenant.auth(), start=DAY, end=DAY)
    response = await gateway.client.get(
        "/v1/usage/export", params={"format": "json", "start": DAY, "end": DAY}, headers=tenant.auth()
    )
    exported = {row["request_id"] for row in await response.json()}
    examples = [example for item in report["data"] for example in item["examples"]]
    assert examples and set(examples) <= exported
