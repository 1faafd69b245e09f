"""Messages through the faults chat survives: usage beyond belief, Redis frozen in the middle of a reserve or a
settle. The books still agree with what the clients saw, to the micro-credit."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from gateway.billing import keyspace
from tests.common import Gateway, StartGateway
from tests.faults import ControlledRedis
from tests.proxy.claude import CLAUDE, CLAUDE_REFERENCE, mock_usage, reference_cost, start_claude

HELLO = [{"role": "user", "content": "Hello, Claude!"}]
START_MICROS = 1000 * 10**6


async def _post(gateway: Gateway, key: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    """Status and, for a stream, the usage of its last message_delta; else the body."""
    response = await gateway.client.post("/v1/messages", json=body, headers={"x-api-key": key})
    if not body.get("stream") or response.status != 200:
        return response.status, await response.json()
    usage: dict[str, object] = {}
    for event in (await response.read()).split(b"\n\n"):
        if event.startswith(b"event: message_delta"):
            usage = orjson.loads(event.split(b"data: ", 1)[1])["usage"]
    return response.status, {"usage": usage}


async def _estimate(gateway: Gateway, key: str) -> int:
    response = await gateway.client.post(
        "/v1/messages/count_tokens", json={"model": CLAUDE, "messages": HELLO}, headers={"x-api-key": key}
    )
    return int((await response.json())["input_tokens"])


@pytest.mark.parametrize("stream", [False, True])
async def test_input_beyond_belief_is_billed_at_the_clamp(start_gateway: StartGateway, stream: bool) -> None:
    reported = {"input_tokens": 10**12, "cache_read_input_tokens": 0, "output_tokens": 5}
    gateway = await start_claude(start_gateway, reported_usage=reported, message_delta_usage="full")
    account, key = await gateway.new_account()
    estimate = await _estimate(gateway, key)
    status, answer = await _post(gateway, key, {"model": CLAUDE, "max_tokens": 20, "messages": HELLO, "stream": stream})
    assert status == 200
    # The suite's clamp: 4 x the gateway's own count + 256.
    bound = 4 * estimate + 256
    assert answer["usage"]["input_tokens"] == bound  # type: ignore[index]
    await gateway.wait_settled(account)
    record = await gateway.last_record(account)
    assert record["clamped"] == "prompt" and record["prompt_tokens"] == str(bound)
    assert await gateway.balance_micros(account) == START_MICROS - CLAUDE_REFERENCE.cost_micros(bound, 5)


async def test_frozen_redis_during_reserve_charges_nothing(
    start_gateway: StartGateway, controlled_redis: ControlledRedis
) -> None:
    gateway = await start_claude(start_gateway, {"redis": {"url": controlled_redis.url, "timeout": 0.5}})
    account, key = await gateway.new_account()
    controlled_redis.freeze()
    try:
        status, answer = await _post(gateway, key, {"model": CLAUDE, "max_tokens": 8, "messages": HELLO})
    finally:
        controlled_redis.thaw()
    assert status == 503 and answer["error"]["type"] == "overloaded_error"  # type: ignore[index]
    await gateway.wait_settled(account)
    assert await gateway.balance_micros(account) == START_MICROS
    assert await gateway.redis.xlen(keyspace.request_log(account)) == 0


@pytest.mark.parametrize("stream", [False, True])
async def test_frozen_redis_during_settle_charges_once(
    start_gateway: StartGateway, controlled_redis: ControlledRedis, stream: bool
) -> None:
    gateway = await start_claude(
        start_gateway, {"redis": {"url": controlled_redis.url, "timeout": 0.5}}, latency_ms=600, completion_tokens=8
    )
    account, key = await gateway.new_account()
    body = {"model": CLAUDE, "max_tokens": 16, "messages": HELLO, "stream": stream}
    request = asyncio.ensure_future(_post(gateway, key, body))
    while not gateway.upstreams["claude"].state.requests:  # the hold is taken; the upstream is thinking
        await asyncio.sleep(0.01)
    controlled_redis.freeze()
    try:
        status, answer = await request  # the answer is delivered though its settlement must wait
    finally:
        controlled_redis.thaw()
    assert status == 200
    cost = reference_cost(mock_usage({k: v for k, v in body.items() if k != "stream"}, 8))
    # The bill on the answer was projected from the hold while its settlement waited, and came true.
    assert round(answer["usage"]["cost"] * 10**6) == cost  # type: ignore[index]
    await gateway.wait_settled(account)  # nothing held and the spool drained: the spooled copy was replayed too
    records = await gateway.redis.xrange(keyspace.request_log(account))
    usage = await gateway.client.get("/v1/usage", headers={"x-api-key": key})
    assert [int(fields["credits_micros"]) for _, fields in records] == [cost]
    assert (await usage.json())["total_credits_used_micros"] == cost
    assert await gateway.balance_micros(account) == START_MICROS - cost
