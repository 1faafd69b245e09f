"""The gateway's own counts agree with the upstream's usage, through the real proxy, stream by stream."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.app_state import SETTINGS
from gateway.billing.pricing import Price
from gateway.tokens import models
from tests.common import HELLO_PROMPT_TOKENS, REFERENCE, TEST_PRICE, Gateway, StartGateway, user_message
from tests.oracle import ReferencePrice
from tests.tokens.cookbook import COOKBOOK_TOOLS

MULTI_BYTE = "Grüße 👋🏽 aus 東京と大阪! 🚀🔥 Привет, мир. 👨‍👩‍👧‍👦 한국어 텍스트 ¿Qué tal? "
WEATHER_TOOL = COOKBOOK_TOOLS[0]


def assert_counts_agree(record: dict[str, str]) -> None:
    """The gateway's own counts equal what the mock upstream reported, which it counts its own way (tiktoken and
    the cookbook's rules written out in gateway/mock/counting.py, nothing shared with gateway/tokens)."""
    assert record["usage_source"] == "upstream"
    assert record["gateway_prompt_tokens"] == record["prompt_tokens"], "prompt counts disagree"
    assert record["gateway_completion_tokens"] == record["completion_tokens"], "completion counts disagree"


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
    assert_counts_agree(await gateway.last_record(account))


async def test_word_streams_with_several_choices_agree(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 40})
    account, key = await gateway.new_account()
    await _stream(gateway, key, n=3)
    record = await gateway.last_record(account)
    assert record["completion_tokens"] == "120"  # 3 choices of 40 one-token words
    assert_counts_agree(record)


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
    assert record["completion_tokens"] != "0"
    assert_counts_agree(record)


async def test_reasoning_tokens_are_billed_as_output_and_kept_apart(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 10, "reasoning_tokens": 25})
    account, key = await gateway.new_account()
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message()})
    usage = (await response.json())["usage"]
    assert usage["completion_tokens"] == 35
    record = await gateway.last_record(account)
    assert record["completion_tokens"] == "35" and record["reasoning_tokens"] == "25"
    assert record["gateway_completion_tokens"] == "10"
    # 9 * 1,000.25 + 35 * 2,000.15 = 9,002.25 + 70,005.25 = 79,007.5, rounded up.
    assert record["prompt_tokens"] == str(HELLO_PROMPT_TOKENS)
    assert int(record["credits_micros"]) == REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 35) == 79_008
    # Drift leaves hidden reasoning out: the visible text agrees exactly.
    metrics = await (await gateway.client.get("/metrics")).text()
    assert 'gateway_token_count_drift_tokens_bucket{kind="completion",le="0.0",model="m-main"} 1.0' in metrics
    assert 'gateway_token_count_drift_tokens_bucket{kind="completion",le="-1.0",model="m-main"} 0.0' in metrics


async def test_cached_prompt_tokens_have_their_own_price(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 4, "cached_tokens": 6})
    models = gateway.app[SETTINGS].models
    # Cached input at 100.3 credits per million: 100.3 micro-credits per token.
    cheap_cache = Price(TEST_PRICE.input_micros_per_million, TEST_PRICE.output_micros_per_million, 100_300_000)
    models["m-main"] = dataclasses.replace(models["m-main"], price=cheap_cache)  # type: ignore[index]
    account, key = await gateway.new_account()
    await gateway.chat(key, {"model": "m-main", "messages": user_message("a longer prompt to cache, please")})
    record = await gateway.last_record(account)
    # 3 + "user" 1 + "a longer prompt to cache, please" 7 + 3 = 14 prompt tokens, 6 of them cached:
    # 8 * 1,000.25 + 6 * 100.3 + 4 * 2,000.15 = 8,002 + 601.8 + 8,000.6 = 16,604.4, rounded up.
    assert record["prompt_tokens"] == "14" and record["cached_tokens"] == "6"
    reference = ReferencePrice.of("1000.25", "2000.15", cached_input="100.3")
    assert int(record["credits_micros"]) == reference.cost_micros(14, 4, cached=6) == 16_605


async def test_drift_is_exported_per_model(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(first={"completion_tokens": 5}, second={"completion_tokens": 5, "usage": False})
    _, key = await gateway.new_account()
    for model in ("m-first", "m-second"):
        await gateway.chat(key, {"model": model, "messages": user_message()})
    metrics = await (await gateway.client.get("/metrics")).text()
    assert 'gateway_token_count_drift_tokens_count{kind="prompt",model="m-first"} 1.0' in metrics
    # Without upstream usage there is nothing to compare against.
    drift = [line for line in metrics.splitlines() if line.startswith("gateway_token_count_drift_tokens")]
    assert drift and not [line for line in drift if 'model="m-second"' in line]


async def test_a_wrong_gateway_constant_is_caught_by_the_agreement_check(
    start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Plant the bug the old tautological mock could not see: 4 tokens per message instead of 3.
    monkeypatch.setattr(models, "_CHAT_FORMAT", dataclasses.replace(models._CHAT_FORMAT, tokens_per_message=4))
    gateway = await start_gateway(main={"text": MULTI_BYTE, "chunk_chars": 2})
    account, key = await gateway.new_account()
    await _stream(gateway, key)
    record = await gateway.last_record(account)
    with pytest.raises(AssertionError, match="prompt counts disagree"):
        assert_counts_agree(record)
    # One message, one token too many; the drift histogram shows it too.
    assert int(record["gateway_prompt_tokens"]) - int(record["prompt_tokens"]) == 1
    metrics = await (await gateway.client.get("/metrics")).text()
    assert 'gateway_token_count_drift_tokens_bucket{kind="prompt",le="-1.0",model="m-main"} 1.0' in metrics
