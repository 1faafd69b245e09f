"""The gateway's own counts agree with the upstream's usage, through the real proxy, stream by stream."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.app_state import SETTINGS
from gateway.billing.pricing import Price
from tests.conftest import TEST_PRICE, Gateway, StartGateway, user_message
from tests.tokens.test_prompt import COOKBOOK_TOOLS

MULTI_BYTE = "Grüße 👋🏽 aus 東京と大阪! 🚀🔥 Привет, мир. 👨‍👩‍👧‍👦 한국어 텍스트 ¿Qué tal? "
WEATHER_TOOL = COOKBOOK_TOOLS[0]


async def _stream(gateway: Gateway, key: str, **extra: object) -> None:
    body = {"model": "m-main", "messages": user_message("Tell me something."), "stream": True, **extra}
    response = await gateway.chat(key, body)
    assert response.status == 200
    await response.read()


@pytest.mark.parametrize("chunk_chars", [1, 2, 5])
async def test_multi_byte_streams_count_as_the_upstream_reports(start_gateway: StartGateway, chunk_chars: int) -> None:
    gateway = await start_gateway(main={"text": MULTI_BYTE * 4, "chunk_chars": chunk_chars})
    account, key = await gateway.new_account()
    await _stream(gateway, key)
    record = await gateway.last_record(account)
    assert record["usage_source"] == "upstream"
    assert record["gateway_completion_tokens"] == record["completion_tokens"]
    assert record["gateway_prompt_tokens"] == record["prompt_tokens"]


async def test_word_streams_with_several_choices_agree(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 40})
    account, key = await gateway.new_account()
    await _stream(gateway, key, n=3)
    record = await gateway.last_record(account)
    assert record["completion_tokens"] == "120" and record["gateway_completion_tokens"] == "120"


@pytest.mark.parametrize("stream", [True, False])
async def test_tool_call_responses_agree(start_gateway: StartGateway, stream: bool) -> None:
    arguments = '{"location": "東京, 日本 🌸", "unit": "c"}'
    gateway = await start_gateway(main={"tool_call_arguments": arguments, "chunk_chars": 3})
    account, key = await gateway.new_account()
    body = {"model": "m-main", "messages": user_message("Weather in Tokyo?"), "tools": [WEATHER_TOOL]}
    response = await gateway.chat(key, {**body, "stream": stream})
    payload = await response.read()
    assert b"get_current_weather" in payload
    record = await gateway.last_record(account)
    assert record["usage_source"] == "upstream"
    assert record["gateway_completion_tokens"] == record["completion_tokens"] != "0"
    assert record["gateway_prompt_tokens"] == record["prompt_tokens"]


async def test_reasoning_tokens_are_billed_as_output_and_kept_apart(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 10, "reasoning_tokens": 25})
    account, key = await gateway.new_account()
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message()})
    usage = (await response.json())["usage"]
    assert usage["completion_tokens"] == 35
    record = await gateway.last_record(account)
    assert record["completion_tokens"] == "35" and record["reasoning_tokens"] == "25"
    assert record["gateway_completion_tokens"] == "10"
    assert int(record["credits_micros"]) == TEST_PRICE.cost_micros(int(record["prompt_tokens"]), 35)
    # Drift leaves hidden reasoning out: the visible text agrees exactly.
    metrics = await (await gateway.client.get("/metrics")).text()
    assert 'gateway_token_count_drift_tokens_bucket{kind="completion",le="0.0",model="m-main"} 1.0' in metrics
    assert 'gateway_token_count_drift_tokens_bucket{kind="completion",le="-1.0",model="m-main"} 0.0' in metrics


async def test_cached_prompt_tokens_have_their_own_price(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 4, "cached_tokens": 6})
    models = gateway.app[SETTINGS].models
    cheap_cache = Price(TEST_PRICE.input_micros_per_million, TEST_PRICE.output_micros_per_million, 100 * 10**6)
    models["m-main"] = dataclasses.replace(models["m-main"], price=cheap_cache)  # type: ignore[index]
    account, key = await gateway.new_account()
    await gateway.chat(key, {"model": "m-main", "messages": user_message("a longer prompt to cache, please")})
    record = await gateway.last_record(account)
    prompt = int(record["prompt_tokens"])
    assert record["cached_tokens"] == "6"
    assert int(record["credits_micros"]) == (prompt - 6) * 1_000 + 6 * 100 + 4 * 2_000


async def test_drift_is_exported_per_model(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(first={"completion_tokens": 5}, second={"completion_tokens": 5, "usage": False})
    _, key = await gateway.new_account()
    for model in ("m-first", "m-second"):
        await gateway.chat(key, {"model": model, "messages": user_message()})
    metrics = await (await gateway.client.get("/metrics")).text()
    assert 'gateway_token_count_drift_tokens_count{kind="prompt",model="m-first"} 1.0' in metrics
    # Without upstream usage there is nothing to compare against.
    assert 'model="m-second"' not in metrics
