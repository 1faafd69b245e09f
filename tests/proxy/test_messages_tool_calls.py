"""Anthropic's web search (a server tool billed per use) priced per call, through the gateway against the mock's
Messages API, which searches on request (`builtin_tool_calls`), driven by the official `anthropic` client: the hold
covers the tool's `max_uses` searches, the bill adds each search the usage reports (or, for a client that left,
each `server_tool_use` block it was sent) at the config's price per call. Token figures are the mock's own."""

from __future__ import annotations

from typing import Any

import anthropic
import orjson
import pytest

from gateway.billing import keyspace
from gateway.config import ModelConfig
from gateway.config_checks import call_prices
from tests.common import Gateway, StartGateway
from tests.oracle import call_micros
from tests.proxy.claude import CLAUDE, CLAUDE_PRICE, CLAUDE_REFERENCE, MakeClient, reference_cost, start_claude

START = 1000 * 10**6
CALL_PRICE = "0.012345"  # credits per web search, as the config writes it
HELLO = [{"role": "user", "content": "Hello, Claude!"}]
SEARCH: list[Any] = [{"type": "web_search_20250305", "name": "web_search"}]
DEFAULT_BOUND = 16  # limits.default_max_tool_calls, the suite's (the default)


async def start(start_gateway: StartGateway, **mock: object) -> Gateway:
    """claude-test pricing web searches at CALL_PRICE per search (read as the config reads its table)."""
    table = call_prices({"web_search": CALL_PRICE}, f'models."{CLAUDE}".tool_call_credits')
    model = ModelConfig(
        name=CLAUDE, upstream="claude", upstream_model="claude-sonnet-mock", price=CLAUDE_PRICE, tool_call_micros=table
    )
    return await start_claude(start_gateway, {"models": {CLAUDE: model}}, **mock)


def requests_of(gateway: Gateway) -> list[dict[str, Any]]:
    return gateway.upstreams["claude"].state.requests


async def books(gateway: Gateway, account: str, key: str) -> tuple[int, int, int]:
    """(What left the balance, the sum of the request records' charges, what /v1/usage reports), in micros."""
    await gateway.wait_settled(account)
    records = await gateway.redis.xrange(keyspace.request_log(account))
    return (
        START - await gateway.balance_micros(account),
        sum(int(fields["credits_micros"]) for _, fields in records),
        await gateway.credits_used_micros(key),
    )


def tokens_of(usage: Any) -> dict[str, int]:
    return {
        name: getattr(usage, name) or 0
        for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
    }


async def test_searches_are_billed_per_use_on_top_of_the_tokens(
    start_gateway: StartGateway, claude_client: MakeClient
) -> None:
    gateway = await start(start_gateway, completion_tokens=5, builtin_tool_calls=2)
    account, key = await gateway.new_account()
    message = await claude_client(gateway, key).messages.create(
        model=CLAUDE, max_tokens=64, messages=HELLO, tools=SEARCH
    )
    kinds = [block.type for block in message.content]
    assert kinds == ["server_tool_use", "web_search_tool_result"] * 2 + ["text"]
    assert message.usage.server_tool_use is not None and message.usage.server_tool_use.web_search_requests == 2
    cost = reference_cost(tokens_of(message.usage)) + call_micros(CALL_PRICE, 2)
    assert round((message.usage.model_extra or {})["cost"] * 10**6) == cost
    record = await gateway.last_record(account)
    assert (record["tool_calls"], record["tool_call_micros"]) == ("2", "24690")
    # The gateway bounded the searches it holds for: the tool went upstream with max_uses set.
    assert requests_of(gateway)[-1]["tools"] == [{**SEARCH[0], "max_uses": DEFAULT_BOUND}]
    estimate = int(record["gateway_prompt_tokens"])
    held = CLAUDE_REFERENCE.cost_micros(estimate, 64, cache_write=estimate) + call_micros(CALL_PRICE, DEFAULT_BOUND)
    assert int(record["hold_micros"]) == held
    assert await books(gateway, account, key) == (cost, cost, cost)


async def test_a_stream_bills_the_searches_of_its_message_delta(
    start_gateway: StartGateway, claude_client: MakeClient
) -> None:
    gateway = await start(start_gateway, completion_tokens=4, builtin_tool_calls=3)
    account, key = await gateway.new_account()
    async with claude_client(gateway, key).messages.stream(
        model=CLAUDE, max_tokens=64, messages=HELLO, tools=SEARCH
    ) as stream:
        deltas = [event.usage async for event in stream if event.type == "message_delta"]
        final = await stream.get_final_message()
    assert [block.type for block in final.content].count("server_tool_use") == 3
    usage = final.usage
    assert usage.server_tool_use is not None and usage.server_tool_use.web_search_requests == 3
    cost = reference_cost(tokens_of(usage)) + call_micros(CALL_PRICE, 3)
    [billed] = deltas  # the bill rides in message_delta's usage
    assert round((billed.model_extra or {})["cost"] * 10**6) == cost
    assert await books(gateway, account, key) == (cost, cost, cost)
    assert (await gateway.last_record(account))["tool_calls"] == "3"


async def test_a_client_leaving_mid_stream_pays_for_the_searches_it_was_sent(start_gateway: StartGateway) -> None:
    # message_start; the first search (its call: start, ping, delta, stop; its result: start, ping, stop); the
    # second search's call starting (start, ping): the stream stalls there.
    gateway = await start(start_gateway, builtin_tool_calls=3, stall_after_chunks=10)
    account, key = await gateway.new_account()
    body = {"model": CLAUDE, "max_tokens": 64, "messages": HELLO, "tools": SEARCH, "stream": True}
    response = await gateway.client.post("/v1/messages", json=body, headers={"x-api-key": key})
    assert response.status == 200
    seen = [await response.content.readuntil(b"\n\n") for _ in range(10)]
    assert seen[-2].startswith(b"event: content_block_start") and b"server_tool_use" in seen[-2]
    response.close()
    await gateway.wait_settled(account)
    record = await gateway.last_record(account)
    assert record["status"] == "499" and record["tool_calls"] == "2"
    # The prompt as message_start reported it, the output the gateway counted it sent, and two searches.
    started = orjson.loads(seen[0].split(b"data: ", 1)[1])["message"]["usage"]
    tokens = {**started, "output_tokens": int(record["completion_tokens"])}
    cost = reference_cost(tokens) + call_micros(CALL_PRICE, 2)
    assert await books(gateway, account, key) == (cost, cost, cost)


async def test_searches_past_max_uses_are_never_billed(start_gateway: StartGateway, claude_client: MakeClient) -> None:
    gateway = await start(start_gateway, completion_tokens=3, builtin_tool_calls=3, builtin_calls_past_limit=True)
    account, key = await gateway.new_account()
    tools = [{**SEARCH[0], "max_uses": 1}]
    message = await claude_client(gateway, key).messages.create(
        model=CLAUDE, max_tokens=64, messages=HELLO, tools=tools
    )
    assert message.usage.server_tool_use is not None and message.usage.server_tool_use.web_search_requests == 3
    record = await gateway.last_record(account)
    assert record["tool_calls"] == "1" and record["clamped"] == "tool_calls"
    cost = reference_cost(tokens_of(message.usage)) + call_micros(CALL_PRICE, 1)
    assert requests_of(gateway)[-1]["tools"] == tools  # the client's own bound, untouched
    assert await books(gateway, account, key) == (cost, cost, cost)


async def test_code_execution_is_still_refused_where_searches_are_priced(
    start_gateway: StartGateway, claude_client: MakeClient
) -> None:
    gateway = await start(start_gateway)
    account, key = await gateway.new_account()
    code = [{"type": "code_execution_20250522", "name": "code_execution"}]
    with pytest.raises(anthropic.BadRequestError) as refused:
        await claude_client(gateway, key).messages.create(
            model=CLAUDE,
            max_tokens=5,
            messages=HELLO,
            tools=[*SEARCH, *code],
        )
    assert "'tools' changes the provider's price" in refused.value.body["error"]["message"]  # type: ignore[index]
    assert requests_of(gateway) == [] and await gateway.balance_micros(account) == START


@pytest.mark.parametrize("uses", [0, -1, "2", True, 129])
async def test_max_uses_must_be_a_positive_whole_number_within_the_gateways_bound(
    start_gateway: StartGateway, uses: object
) -> None:
    gateway = await start(start_gateway)
    account, key = await gateway.new_account()
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}, {**SEARCH[0], "max_uses": uses}]
    body = {"model": CLAUDE, "max_tokens": 5, "messages": HELLO, "tools": tools}
    response = await gateway.client.post("/v1/messages", json=body, headers={"x-api-key": key})
    error = await response.json()
    assert response.status == 400 and error["error"]["type"] == "invalid_request_error"
    assert "tools.1.max_uses" in error["error"]["message"]
    assert requests_of(gateway) == [] and await gateway.balance_micros(account) == START
