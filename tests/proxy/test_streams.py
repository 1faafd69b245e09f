"""Streams that do not end well: the client leaves, the upstream cuts off or goes silent (chat completions, and
legacy completions for the first two)."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiohttp import ClientResponse

from gateway.app_state import LEDGER
from gateway.billing import keyspace
from gateway.config import ModelConfig
from gateway.tokens import get_encoding
from tests.common import HELLO_PROMPT_TOKENS, REFERENCE, TEST_PRICE, Gateway, StartGateway, user_message


async def _settled_record(gateway: Gateway, account: str) -> dict[str, str]:
    """Wait (bounded) until the request has settled, and return its record."""
    for _ in range(200):
        if await gateway.redis.xlen(keyspace.request_log(account)) and await gateway.app[LEDGER].reserved(account) == 0:
            return await gateway.last_record(account)
        await asyncio.sleep(0.02)
    raise AssertionError("the request never settled")


# A stream of each API: its path, its body, and the gateway's own prompt count of it ("Hello!": chat's framing
# makes it 9 tokens, a bare completions prompt 2).
STREAMS = {
    "chat": ("/v1/chat/completions", {"messages": user_message()}, HELLO_PROMPT_TOKENS),
    "completions": ("/v1/completions", {"prompt": "Hello!", "max_tokens": 300}, 2),
}


async def _stream(gateway: Gateway, key: str, api: str) -> tuple[ClientResponse, int]:
    """A streamed request of `api`; its response and its prompt tokens."""
    path, fields, prompt_tokens = STREAMS[api]
    return await gateway.post(path, key, {"model": "m-main", "stream": True, **fields}), prompt_tokens


@pytest.mark.parametrize("api", ["chat", "completions"])
async def test_client_disconnect_mid_stream_is_charged_for_what_was_sent(start_gateway: StartGateway, api: str) -> None:
    gateway = await start_gateway(main={"completion_tokens": 200, "chunk_delay_ms": 20})
    account, key = await gateway.new_account()
    response, prompt_tokens = await _stream(gateway, key, api)
    for _ in range(5):
        await response.content.readuntil(b"\n\n")
    response.close()
    record = await _settled_record(gateway, account)
    assert record["status"] == "499" and record["usage_source"] == "gateway"
    sent = int(record["completion_tokens"])
    assert 4 <= sent < 200
    assert record["prompt_tokens"] == str(prompt_tokens)
    assert int(record["credits_micros"]) == REFERENCE.cost_micros(prompt_tokens, sent)
    assert await gateway.balance_micros(account) == 1000 * 10**6 - int(record["credits_micros"])
    # Closing the upstream response cancelled the upstream request.
    state = gateway.upstreams["main"].state
    for _ in range(100):
        if state.aborted_streams:
            break
        await asyncio.sleep(0.02)
    assert state.aborted_streams == 1 and state.finished_streams == 0


# Chat: one role chunk, then ten one-token chunks; 9 * 1,000.25 + 10 * 2,000.15 = 29,003.75, rounded up.
# Completions: eleven one-token chunks; 2 * 1,000.25 + 11 * 2,000.15 = 2,000.5 + 22,001.65 = 24,002.15, rounded up.
CUT = {"chat": (10, 29_004), "completions": (11, 24_003)}


@pytest.mark.parametrize("api", ["chat", "completions"])
async def test_a_cut_upstream_stream_bills_what_arrived_and_tells_the_client(
    start_gateway: StartGateway, api: str
) -> None:
    gateway = await start_gateway(main={"completion_tokens": 50, "cut_after_chunks": 11})
    account, key = await gateway.new_account()
    response, prompt_tokens = await _stream(gateway, key, api)
    events = [e for e in (await response.read()).split(b"\n\n") if e]
    last = orjson.loads(events[-1][6:])
    assert last["error"]["code"] == "upstream_error"
    record = await _settled_record(gateway, account)
    tokens, cost = CUT[api]
    assert record["status"] == "502" and record["completion_tokens"] == str(tokens)
    assert int(record["credits_micros"]) == REFERENCE.cost_micros(prompt_tokens, tokens) == cost


async def test_an_upstream_silent_mid_stream_times_out(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(settings_overrides={"timeouts": {"read": 0.3}}, main={"stall_after_chunks": 6})
    account, key = await gateway.new_account()
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message(), "stream": True})
    events = [e for e in (await response.read()).split(b"\n\n") if e]
    assert orjson.loads(events[-1][6:])["error"]["code"] == "upstream_timeout"
    record = await _settled_record(gateway, account)
    assert record["status"] == "504" and record["completion_tokens"] == "5"


async def test_multi_byte_text_split_across_chunks_is_counted_whole(start_gateway: StartGateway) -> None:
    text = "Grüße 👋🏽 from 東京! 🚀🚀 ¿Qué tal? Привет, мир. " * 3
    gateway = await start_gateway(main={"text": text, "chunk_chars": 2, "usage": False})
    account, key = await gateway.new_account()
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message(), "stream": True})
    await response.read()
    record = await _settled_record(gateway, account)
    assert int(record["completion_tokens"]) == len(get_encoding("o200k_base").encode(text))


async def test_a_client_hanging_up_on_a_plain_request_pays_the_prompt(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"latency_ms": 3000, "completion_tokens": 5})
    account, key = await gateway.new_account()
    request = asyncio.ensure_future(gateway.chat(key, {"model": "m-main", "messages": user_message()}))
    state = gateway.upstreams["main"].state
    for _ in range(100):
        if state.requests:
            break
        await asyncio.sleep(0.02)
    request.cancel()
    record = await _settled_record(gateway, account)
    assert record["status"] == "499" and record["completion_tokens"] == "0"
    # The prompt the upstream had read: 9 * 1,000.25 = 9,002.25, rounded up.
    assert int(record["credits_micros"]) == REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 0) == 9_003


async def test_the_usage_chunk_the_gateway_adds_is_shaped_as_the_upstreams_own(start_gateway: StartGateway) -> None:
    """An upstream that sends no usage chunk, a client that asked for one: the gateway's chunk carries the stream's
    id, created and model, no choices, the gateway's counts and the bill, as OpenAI's own usage chunk would."""
    text = "Hello there, friend"
    gateway = await start_gateway(main={"text": text, "usage": False})
    account, key = await gateway.new_account()
    body = {"model": "m-main", "messages": user_message(), "stream": True, "stream_options": {"include_usage": True}}
    response = await gateway.chat(key, body)
    events = [event[6:] for event in (await response.read()).split(b"\n\n") if event.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    *chunks, closing = [orjson.loads(event) for event in events[:-1]]
    completion = len(get_encoding("o200k_base").encode(text))
    cost = REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, completion)
    balance = await gateway.balance_micros(account)
    assert closing == {
        "id": chunks[-1]["id"],
        "object": "chat.completion.chunk",
        "created": chunks[-1]["created"],
        "model": chunks[-1]["model"],
        "choices": [],
        "usage": {
            "prompt_tokens": HELLO_PROMPT_TOKENS,
            "completion_tokens": completion,
            "total_tokens": HELLO_PROMPT_TOKENS + completion,
            "cost": cost / 1_000_000,
            "credits_remaining": balance / 1_000_000,
        },
    }


@pytest.mark.parametrize("stream", [False, True])
async def test_the_upstreams_usage_details_reach_the_client_beside_the_bill(
    start_gateway: StartGateway, stream: bool
) -> None:
    """What the upstream reports beyond the counts (cached and reasoning details) is kept in the usage the client
    reads, plain and streamed; the gateway adds the bill to it."""
    gateway = await start_gateway(main={"cached_tokens": 4, "reasoning_tokens": 3})
    _, key = await gateway.new_account()
    body: dict[str, object] = {"model": "m-main", "messages": user_message(), "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True, "continuous_usage_stats": False}
    response = await gateway.chat(key, body)
    if stream:
        events = [e[6:] for e in (await response.read()).split(b"\n\n") if e.startswith(b"data: {")]
        usage = [orjson.loads(e)["usage"] for e in events if orjson.loads(e).get("usage")][-1]
    else:
        usage = (await response.json())["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 4
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 3
    assert usage["cost"] > 0 and "credits_remaining" in usage
    if stream:  # the client's other stream options went upstream beside the gateway's include_usage
        options = gateway.upstreams["main"].state.requests[-1]["stream_options"]
        assert options == {"include_usage": True, "continuous_usage_stats": False}


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_an_explicit_null_bound_is_dropped_for_the_gateways_own(start_gateway: StartGateway, field: str) -> None:
    """Some upstreams refuse `max_tokens: null` beside `max_completion_tokens`: the gateway, setting its own bound
    in the model's field, sends no null."""
    model = ModelConfig(
        name="m-main", upstream="main", upstream_model="gpt-4o-mini", price=TEST_PRICE, max_tokens_field=field
    )
    gateway = await start_gateway({"models": {"m-main": model}})
    _, key = await gateway.new_account()
    body = {"model": "m-main", "messages": user_message(), "max_tokens": None, "max_completion_tokens": None}
    assert (await gateway.chat(key, body)).status == 200
    sent = gateway.upstreams["main"].state.requests[-1]
    assert None not in (sent.get("max_tokens", 0), sent.get("max_completion_tokens", 0)), sent
    assert isinstance(sent[field], int) and sent[field] > 0
