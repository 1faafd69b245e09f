"""Anthropic Messages through the gateway, driven by the official `anthropic` client, unmodified: plain, streamed,
count_tokens, prompt caching and tool calls, each bill the mock's own usage at the configured prices; errors as the
client parses them; what the upstream is sent."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import struct

import anthropic
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app_state import LEDGER
from gateway.billing import keyspace
from gateway.mock import claude, counting
from tests.common import Gateway, StartGateway
from tests.proxy.claude import (
    CLAUDE,
    CLAUDE_REFERENCE,
    PROVIDER_KEY,
    MakeClient,
    mock_usage,
    reference_cost,
    start_claude,
)

HELLO = [{"role": "user", "content": "Hello, Claude!"}]
START_MICROS = 1000 * 10**6


async def _usage_total(gateway: Gateway, key: str, api: str = "") -> int:
    response = await gateway.client.get("/v1/usage", params={"api": api} if api else {}, headers={"x-api-key": key})
    assert response.status == 200
    return int((await response.json())["total_credits_used_micros"])


async def _settled(gateway: Gateway, account: str, requests: int = 1) -> dict[str, str]:
    """Wait (bounded) until `requests` requests have settled; the newest record."""
    for _ in range(250):
        log = keyspace.request_log(account)
        if await gateway.redis.xlen(log) >= requests and await gateway.app[LEDGER].reserved(account) == 0:
            return await gateway.last_record(account)
        await asyncio.sleep(0.02)
    raise AssertionError("the request never settled")


@pytest.mark.parametrize("bearer", [False, True], ids=["x-api-key", "bearer"])
async def test_create_is_billed_the_mocks_usage_at_the_models_prices(
    start_gateway: StartGateway, claude_client: MakeClient, bearer: bool
) -> None:
    gateway = await start_claude(start_gateway, completion_tokens=12)
    account, key = await gateway.new_account()
    raw = await claude_client(gateway, key, bearer=bearer).messages.with_raw_response.create(
        model=CLAUDE, max_tokens=100, system="You are terse.", messages=HELLO
    )
    message = await raw.parse()
    body = {"model": CLAUDE, "max_tokens": 100, "system": "You are terse.", "messages": HELLO}
    expected = mock_usage(body, 12)
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens) == (expected["input_tokens"], 12)
    assert message.content[0].type == "text" and len(message.content[0].text.split()) == 12
    cost = reference_cost(expected)
    extra = usage.model_extra or {}
    assert round(extra["cost"] * 10**6) == cost
    assert round(extra["credits_remaining"] * 10**6) == START_MICROS - cost
    assert round(float(raw.headers["x-credits-used"]) * 10**6) == cost
    assert await gateway.balance_micros(account) == START_MICROS - cost
    assert await _usage_total(gateway, key) == await _usage_total(gateway, key, "messages") == cost
    assert await _usage_total(gateway, key, "chat.completions") == 0
    record = await gateway.last_record(account)
    assert record["usage_source"] == "upstream" and record["prompt_tokens"] == str(expected["input_tokens"])
    assert record["api"] == "messages"


async def test_stream_text_and_final_message_and_the_bill_in_message_delta(
    start_gateway: StartGateway, claude_client: MakeClient
) -> None:
    gateway = await start_claude(start_gateway, completion_tokens=20, message_delta_usage="output")
    account, key = await gateway.new_account()
    anthropic_client = claude_client(gateway, key)
    async with anthropic_client.messages.stream(model=CLAUDE, max_tokens=64, messages=HELLO) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    expected = mock_usage({"model": CLAUDE, "max_tokens": 64, "messages": HELLO}, 20)
    assert len(text.split()) == 20 and final.content[0].text == text  # type: ignore[union-attr]
    assert (final.usage.input_tokens, final.usage.output_tokens) == (expected["input_tokens"], 20)
    first = reference_cost(expected)
    # The events themselves: the bill rides in message_delta's usage, after message_start's input figures.
    deltas = []
    async with anthropic_client.messages.stream(model=CLAUDE, max_tokens=64, messages=HELLO) as stream:
        async for event in stream:
            if event.type == "message_delta":
                deltas.append(event.usage)
    assert len(deltas) == 1
    extra = deltas[0].model_extra or {}
    assert round(extra["cost"] * 10**6) == first
    assert round(extra["credits_remaining"] * 10**6) == START_MICROS - 2 * first
    await _settled(gateway, account, 2)
    assert await gateway.balance_micros(account) == START_MICROS - 2 * first
    assert await _usage_total(gateway, key) == 2 * first


async def test_full_usage_in_message_delta_wins_over_message_start(
    start_gateway: StartGateway, claude_client: MakeClient
) -> None:
    system = [{"type": "text", "text": "Policy. " * 40, "cache_control": {"type": "ephemeral"}}]
    gateway = await start_claude(start_gateway, completion_tokens=5, message_delta_usage="full")
    account, key = await gateway.new_account()
    body = {"model": CLAUDE, "max_tokens": 32, "system": system, "messages": HELLO}
    async with claude_client(gateway, key).messages.stream(**body) as stream:  # type: ignore[arg-type]
        final = await stream.get_final_message()
    written = claude.count_input(body).cached  # the mock's own count of its cached prefix
    expected = mock_usage(body, 5, written=written)
    assert final.usage.cache_creation_input_tokens == written > 0
    await _settled(gateway, account)
    assert await gateway.balance_micros(account) == START_MICROS - reference_cost(expected)


async def test_cache_writes_and_reads_have_their_own_prices(
    start_gateway: StartGateway, claude_client: MakeClient
) -> None:
    gateway = await start_claude(start_gateway, completion_tokens=8)
    account, key = await gateway.new_account()
    system = [{"type": "text", "text": "You answer from this manual. " * 60, "cache_control": {"type": "ephemeral"}}]
    body = {"model": CLAUDE, "max_tokens": 50, "system": system, "messages": HELLO}
    anthropic_client = claude_client(gateway, key)
    first = await anthropic_client.messages.create(**body)  # type: ignore[arg-type]
    second = await anthropic_client.messages.create(**body)  # type: ignore[arg-type]
    # The mock's cached prefix: everything up to the system block with cache_control, by its own count.
    prefix = claude.count_input(body).cached
    wrote, read = mock_usage(body, 8, written=prefix), mock_usage(body, 8, read=prefix)
    assert first.usage.cache_creation_input_tokens == prefix and first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == prefix and second.usage.input_tokens == read["input_tokens"]
    costs = reference_cost(wrote), reference_cost(read)
    assert costs[0] > costs[1]  # the write at 1,250.35 per million, the read at 100.05
    assert [round((m.usage.model_extra or {})["cost"] * 10**6) for m in (first, second)] == list(costs)
    assert await gateway.balance_micros(account) == START_MICROS - sum(costs)
    assert await _usage_total(gateway, key) == sum(costs)
    record = await gateway.last_record(account)
    assert (record["cached_tokens"], record["cache_write_tokens"]) == (str(prefix), "0")
    metrics = await (await gateway.client.get("/metrics")).text()
    tokens = {
        sample.labels["kind"]: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "gateway_tokens_total" and sample.labels["model"] == CLAUDE
    }
    assert (tokens["cache_write"], tokens["cached"]) == (prefix, prefix)


async def test_count_tokens_is_the_gateways_estimate_never_forwarded(
    start_gateway: StartGateway, claude_client: MakeClient
) -> None:
    gateway = await start_claude(start_gateway)
    account, key = await gateway.new_account()
    counted = await claude_client(gateway, key).messages.count_tokens(model=CLAUDE, messages=HELLO, system="Be brief.")
    mock_count = mock_usage({"model": CLAUDE, "messages": HELLO, "system": "Be brief."}, 0)["input_tokens"]
    assert counted.input_tokens >= mock_count
    assert gateway.upstreams["claude"].state.requests == []
    assert await gateway.balance_micros(account) == START_MICROS
    with pytest.raises(anthropic.NotFoundError) as refused:
        await claude_client(gateway, key).messages.count_tokens(model="m-main", messages=HELLO)
    assert refused.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


async def test_the_hold_is_the_estimate_and_max_tokens(start_gateway: StartGateway, claude_client: MakeClient) -> None:
    """A balance of exactly the estimate plus max_tokens at the dearest prompt price (cache writes) is served;
    one micro-credit less is refused with 402 before the upstream hears of it."""
    gateway = await start_claude(start_gateway, completion_tokens=3)
    _, key = await gateway.new_account()
    estimate = (await claude_client(gateway, key).messages.count_tokens(model=CLAUDE, messages=HELLO)).input_tokens
    hold = CLAUDE_REFERENCE.cost_micros(estimate, 10, cache_write=estimate)
    poor_account, poor_key = await gateway.new_account(credits=f"{(hold - 1) / 10**6:.6f}", name="poor")
    with pytest.raises(anthropic.APIStatusError) as refused:
        await claude_client(gateway, poor_key).messages.create(model=CLAUDE, max_tokens=10, messages=HELLO)
    assert refused.value.status_code == 402
    assert refused.value.body["error"]["type"] == "billing_error"  # type: ignore[index]
    assert gateway.upstreams["claude"].state.requests == []
    _, rich_key = await gateway.new_account(credits=f"{hold / 10**6:.6f}", name="exact")
    served = await claude_client(gateway, rich_key).messages.create(model=CLAUDE, max_tokens=10, messages=HELLO)
    assert served.usage.output_tokens == 3
    assert await gateway.balance_micros(poor_account) == hold - 1


async def test_errors_parse_as_anthropic_errors(start_gateway: StartGateway, claude_client: MakeClient) -> None:
    gateway = await start_claude(start_gateway)
    _, key = await gateway.new_account()
    with pytest.raises(anthropic.AuthenticationError) as unknown:
        await claude_client(gateway, "sk-gw-acct_x-nope").messages.create(model=CLAUDE, max_tokens=5, messages=HELLO)
    assert set(unknown.value.body) == {"type", "error"}  # type: ignore[arg-type]
    assert unknown.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as no_max_tokens:
        # NOT_GIVEN leaves the field out of the body; a timeout of its own spares the client's max_tokens arithmetic.
        await claude_client(gateway, key).messages.create(
            model=CLAUDE,
            max_tokens=anthropic.NOT_GIVEN,  # type: ignore[arg-type]
            messages=HELLO,
            timeout=10,
        )
    assert no_max_tokens.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "max_tokens" in no_max_tokens.value.body["error"]["message"]  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as thinking:
        await claude_client(gateway, key).messages.create(
            model=CLAUDE, max_tokens=2000, messages=HELLO, thinking={"type": "enabled", "budget_tokens": 4000}
        )
    assert "budget_tokens" in thinking.value.body["error"]["message"]  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError) as chat_model:
        await claude_client(gateway, key).messages.create(model="m-main", max_tokens=5, messages=HELLO)
    assert "not served on this API" in chat_model.value.body["error"]["message"]  # type: ignore[index]
    assert gateway.upstreams["claude"].state.requests == gateway.upstreams["main"].state.requests == []


async def test_a_messages_model_is_not_served_on_chat_completions(start_gateway: StartGateway) -> None:
    gateway = await start_claude(start_gateway)
    _, key = await gateway.new_account()
    response = await gateway.chat(key, {"model": CLAUDE, "messages": HELLO})
    body = await response.json()
    assert response.status == 404 and body["error"]["code"] == "model_not_found"
    assert "not served on this API" in body["error"]["message"]
    assert gateway.upstreams["claude"].state.requests == []


async def test_the_upstream_gets_the_provider_key_as_x_api_key_never_the_tenants(
    start_gateway: StartGateway, claude_client: MakeClient
) -> None:
    gateway = await start_claude(start_gateway, api_key=PROVIDER_KEY, completion_tokens=2)
    _, key = await gateway.new_account()
    for bearer in (False, True):
        await claude_client(gateway, key, bearer=bearer).messages.create(model=CLAUDE, max_tokens=5, messages=HELLO)
    for headers in gateway.upstreams["claude"].state.headers:
        lowered = {name.lower(): value for name, value in headers.items()}
        assert lowered["x-api-key"] == PROVIDER_KEY and lowered["anthropic-version"] == "2023-06-01"
        assert "authorization" not in lowered
        assert all(key not in value for value in lowered.values())


async def test_a_tool_use_block_is_billed_as_output(start_gateway: StartGateway, claude_client: MakeClient) -> None:
    arguments = '{"city": "Paris", "unit": "celsius"}'
    gateway = await start_claude(start_gateway, tool_call_arguments=arguments, chunk_chars=4)
    account, key = await gateway.new_account()
    tools = [
        {
            "name": "get_weather",
            "description": "The weather in a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }
    ]
    body = {"model": CLAUDE, "max_tokens": 100, "tools": tools, "messages": HELLO}
    plain = await claude_client(gateway, key).messages.create(**body)  # type: ignore[arg-type]
    assert plain.content[0].type == "tool_use" and plain.content[0].input == {"city": "Paris", "unit": "celsius"}
    async with claude_client(gateway, key).messages.stream(**body) as stream:  # type: ignore[arg-type]
        streamed = await stream.get_final_message()
    assert streamed.content[0].input == {"city": "Paris", "unit": "celsius"}  # type: ignore[union-attr]
    # The mock's output: the tool's name and its arguments, by its own count (o200k_base).
    output = counting.count_text("gpt-4o", "get_weather") + counting.count_text("gpt-4o", arguments)
    assert plain.usage.output_tokens == output
    expected = reference_cost(mock_usage(body, output))
    await _settled(gateway, account, 2)
    assert await gateway.balance_micros(account) == START_MICROS - 2 * expected


async def test_usage_beyond_belief_is_billed_the_gateways_count(
    start_gateway: StartGateway, claude_client: MakeClient
) -> None:
    """An upstream whose usage is no count (negative, text) is billed the gateway's own count: the estimate of the
    input and the words it relayed; a stream gets the gateway's message_delta with the bill before message_stop."""
    gateway = await start_claude(
        start_gateway, completion_tokens=9, reported_usage={"input_tokens": -5, "output_tokens": "x"}
    )
    account, key = await gateway.new_account()
    anthropic_client = claude_client(gateway, key)
    estimate = (await anthropic_client.messages.count_tokens(model=CLAUDE, messages=HELLO)).input_tokens
    cost = CLAUDE_REFERENCE.cost_micros(estimate, 9)
    plain = await anthropic_client.messages.create(model=CLAUDE, max_tokens=64, messages=HELLO)
    assert (plain.usage.input_tokens, plain.usage.output_tokens) == (estimate, 9)
    assert round((plain.usage.model_extra or {})["cost"] * 10**6) == cost
    deltas = []
    async with anthropic_client.messages.stream(model=CLAUDE, max_tokens=64, messages=HELLO) as stream:
        async for event in stream:
            if event.type == "message_delta":
                deltas.append(event)
    assert len(deltas) == 2 and deltas[-1].usage.output_tokens == 9  # the upstream's, then the gateway's
    assert round((deltas[-1].usage.model_extra or {})["cost"] * 10**6) == cost
    record = await _settled(gateway, account, 2)
    assert record["usage_source"] == "gateway" and record["completion_tokens"] == "9"
    assert await gateway.balance_micros(account) == START_MICROS - 2 * cost


async def test_a_client_leaving_mid_stream_pays_for_what_it_was_sent(
    start_gateway: StartGateway, claude_client: MakeClient
) -> None:
    """The meter's rule for a client that left: the gateway's count of what it was sent, and the prompt as the
    provider reported it in `message_start` (not the gateway's estimate, an upper bound)."""
    gateway = await start_claude(start_gateway, completion_tokens=200, chunk_delay_ms=20)
    account, key = await gateway.new_account()
    estimate = (await claude_client(gateway, key).messages.count_tokens(model=CLAUDE, messages=HELLO)).input_tokens
    body = {"model": CLAUDE, "max_tokens": 256, "messages": HELLO, "stream": True}
    response = await gateway.client.post("/v1/messages", json=body, headers={"x-api-key": key})
    seen = b""
    while seen.count(b"event: content_block_delta") < 6:
        seen += await response.content.readuntil(b"\n\n")
    response.close()
    record = await _settled(gateway, account)
    assert record["status"] == "499" and record["usage_source"] == "gateway"
    sent = int(record["completion_tokens"])  # one token per delta the gateway wrote before the client was gone
    start = next(event for event in seen.split(b"\n\n") if event.startswith(b"event: message_start"))
    reported = orjson.loads(start.split(b"data: ", 1)[1])["message"]["usage"]["input_tokens"]
    assert 6 <= sent < 200 and record["prompt_tokens"] == str(reported) and reported < estimate
    cost = CLAUDE_REFERENCE.cost_micros(reported, sent)
    assert int(record["credits_micros"]) == cost
    assert await gateway.balance_micros(account) == START_MICROS - cost
    assert await _usage_total(gateway, key) == cost


async def test_an_upstream_cut_mid_stream_ends_with_an_error_event(
    start_gateway: StartGateway, claude_client: MakeClient
) -> None:
    gateway = await start_claude(start_gateway, completion_tokens=30, cut_after_chunks=8)
    account, key = await gateway.new_account()
    with pytest.raises(anthropic.APIStatusError) as cut:
        async with claude_client(gateway, key).messages.stream(model=CLAUDE, max_tokens=64, messages=HELLO) as stream:
            async for _ in stream:
                pass
    assert cut.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    record = await _settled(gateway, account)
    assert record["status"] == "502" and record["completion_tokens"] == "5"


async def test_an_upstream_error_passes_through_in_anthropics_shape_free(
    start_gateway: StartGateway, claude_client: MakeClient
) -> None:
    body = b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
    gateway = await start_claude(start_gateway, error_status=529, error_body=body)
    account, key = await gateway.new_account()
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        await claude_client(gateway, key).messages.create(model=CLAUDE, max_tokens=5, messages=HELLO)
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["type"] == "error"  # type: ignore[index]
    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    await _settled(gateway, account)
    assert await gateway.balance_micros(account) == START_MICROS


async def test_images_documents_and_a_large_body_are_held_and_billed(
    start_gateway: StartGateway, claude_client: MakeClient
) -> None:
    """A body past 16 KiB (its key checked first, counted on a thread) with an image and a text document: held on
    the estimate, billed the mock's own count."""
    gateway = await start_claude(start_gateway, completion_tokens=4)
    account, key = await gateway.new_account()
    png = base64.b64encode(
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", 800, 600) + bytes(40)
    ).decode()
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Minutes. " * 4000}},
        {"type": "text", "text": "Summarise both."},
    ]
    body = {"model": CLAUDE, "max_tokens": 50, "messages": [{"role": "user", "content": content}]}
    anthropic_client = claude_client(gateway, key)
    estimate = (await anthropic_client.messages.count_tokens(model=CLAUDE, messages=body["messages"])).input_tokens  # type: ignore[arg-type]
    message = await anthropic_client.messages.create(**body)  # type: ignore[arg-type]
    expected = mock_usage(body, 4)
    assert message.usage.input_tokens == expected["input_tokens"] <= estimate
    assert await gateway.balance_micros(account) == START_MICROS - reference_cost(expected)
    record = await gateway.last_record(account)
    assert record["gateway_prompt_tokens"] == str(estimate)  # the drift metric's other side


async def test_server_tools_billed_per_use_are_refused_unless_the_model_allows_them(
    start_gateway: StartGateway, claude_client: MakeClient
) -> None:
    gateway = await start_claude(start_gateway, completion_tokens=3)
    _, key = await gateway.new_account()
    search = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]
    with pytest.raises(anthropic.BadRequestError) as refused:
        await claude_client(gateway, key).messages.create(
            model=CLAUDE,
            max_tokens=5,
            messages=HELLO,
            tools=search,  # type: ignore[arg-type]
        )
    assert "'tools' changes the provider's price" in refused.value.body["error"]["message"]  # type: ignore[index]
    assert gateway.upstreams["claude"].state.requests == []
    # The standard tier is the standard price; a client tool is plain tokens.
    weather = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}]
    served = await claude_client(gateway, key).messages.create(
        model=CLAUDE,
        max_tokens=5,
        messages=HELLO,
        tools=weather,  # type: ignore[arg-type]
        service_tier="standard_only",
    )
    assert served.usage.output_tokens == 3
    allowed = dataclasses.replace(gateway.settings.models[CLAUDE], allowed_fields=frozenset({"tools"}))
    priced = await start_claude(start_gateway, {"models": {CLAUDE: allowed}}, completion_tokens=3)
    _, priced_key = await priced.new_account()
    answered = await claude_client(priced, priced_key).messages.create(
        model=CLAUDE,
        max_tokens=5,
        messages=HELLO,
        tools=search,  # type: ignore[arg-type]
    )
    assert answered.usage.output_tokens == 3
