"""Responses survive what chat survives: absurd or unusable upstream usage, and Redis frozen while a response is
under way. After each, what left the balance equals what the client was shown, and the books agree."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from gateway.billing import keyspace
from gateway.mock.responses import MOCK_RESPONSES
from tests.common import HELLO_PROMPT_TOKENS, REFERENCE, Gateway, StartGateway
from tests.faults import ControlledRedis

INITIAL_MICROS = 1000 * 10**6


async def _usage(gateway: Gateway, key: str, *, stream: bool) -> dict[str, Any]:
    """The billed usage the client was shown (a plain answer's, or the terminal event's)."""
    body = {"model": "m-main", "input": "Hello!", "max_output_tokens": 8, "stream": stream}
    response = await gateway.client.post("/v1/responses", json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status == 200
    if not stream:
        return dict((await response.json())["usage"])
    events = [orjson.loads(e.split(b"data: ", 1)[1]) for e in (await response.read()).split(b"\n\n") if e]
    assert events[-1]["type"] in ("response.completed", "response.incomplete")
    return dict(events[-1]["response"]["usage"])


async def _books(gateway: Gateway, account: str, key: str) -> tuple[int, int, int, int]:
    """(what left the balance, sum of the records, the day's aggregate for Responses, what /v1/usage reports), in
    micros."""
    left = INITIAL_MICROS - await gateway.balance_micros(account)
    records = await gateway.redis.xrange(keyspace.request_log(account))
    day = await gateway.redis.hgetall(keyspace.usage_day(account, gateway.clock.utc()))
    response = await gateway.client.get("/v1/usage", headers={"Authorization": f"Bearer {key}"})
    reported = (await response.json())["total_credits_used_micros"]
    return (
        left,
        sum(int(fields["credits_micros"]) for _, fields in records),
        int(day.get("a:responses:credits", 0)),
        reported,
    )


@pytest.mark.parametrize("stream", [False, True])
async def test_absurd_responses_usage_is_clamped(start_gateway: StartGateway, stream: bool) -> None:
    reported = {"input_tokens": 10**12, "output_tokens": 10**12, "total_tokens": 2 * 10**12}
    gateway = await start_gateway(main={"reported_usage": reported})
    account, key = await gateway.new_account()
    usage = await _usage(gateway, key, stream=stream)
    # Billed at the bounds: input 9 * 4 + 256 = 292, output at most max_output_tokens = 8.
    # 292 * 1,000.25 + 8 * 2,000.15 = 292,073 + 16,001.2 = 308,074.2 -> 308,075.
    assert (usage["input_tokens"], usage["output_tokens"]) == (292, 8)
    record = await gateway.last_record(account)
    assert record["clamped"] == "prompt,completion" and record["credits_micros"] == "308075"
    assert await _books(gateway, account, key) == (308_075,) * 4


@pytest.mark.parametrize("reported", [{"input_tokens": -5, "output_tokens": 3}, {"input_tokens": "9"}, "lots"])
async def test_unusable_responses_usage_is_replaced_by_the_gateways_count(
    start_gateway: StartGateway, reported: object
) -> None:
    gateway = await start_gateway(main={"reported_usage": reported, "completion_tokens": 6})
    account, key = await gateway.new_account()
    usage = await _usage(gateway, key, stream=False)
    assert (usage["input_tokens"], usage["output_tokens"]) == (HELLO_PROMPT_TOKENS, 6)
    record = await gateway.last_record(account)
    # 9 * 1,000.25 + 6 * 2,000.15 = 9,002.25 + 12,000.9 = 21,003.15, rounded up.
    assert record["usage_source"] == "gateway" and record["credits_micros"] == "21004"


@pytest.mark.parametrize("stream", [False, True])
async def test_frozen_redis_during_a_response_charges_once(
    start_gateway: StartGateway, controlled_redis: ControlledRedis, stream: bool
) -> None:
    gateway = await start_gateway(
        {"redis": {"url": controlled_redis.url, "timeout": 0.5}}, main={"latency_ms": 600, "completion_tokens": 8}
    )
    account, key = await gateway.new_account()
    request = asyncio.ensure_future(_usage(gateway, key, stream=stream))
    mock = gateway.upstreams["main"].server.app[MOCK_RESPONSES]
    while not mock.requests:  # the hold is taken; the upstream is thinking
        await asyncio.sleep(0.01)
    controlled_redis.freeze()
    try:
        usage = await request  # delivered, though neither its id nor its settlement can be written now
    finally:
        controlled_redis.thaw()
    await gateway.wait_settled(account)
    await asyncio.sleep(0.5)  # let the replay of the spooled copy happen too
    await gateway.wait_settled(account)
    cost = REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 8)
    assert cost == 25_004  # 9 * 1,000.25 + 8 * 2,000.15 = 25,003.45, rounded up
    assert await _books(gateway, account, key) == (cost,) * 4
    assert usage["cost"] == 0.025004 and usage["credits_remaining"] == 999.974996
    assert await gateway.redis.xlen(keyspace.request_log(account)) == 1
