"""Embeddings through the gateway with the official openai client: single and batch, token arrays, float and
base64, each billed the mock's independent count at the input price; hostile inputs refused before any hold."""

from __future__ import annotations

import base64
import struct

import pytest
from openai import AsyncOpenAI

from gateway.billing import keyspace
from gateway.mock.counting import encoding
from tests.common import REFERENCE, Gateway, StartGateway

O200K = encoding("o200k_base")  # tiktoken's own o200k_base (the gateway's models here are gpt-4o-mini upstream)
FOX = "The quick brown fox jumps over the lazy dog."
MILLION = 10**6


def _client(gateway: Gateway, key: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)


async def _books_agree(gateway: Gateway, account: str, key: str, spent: int) -> None:
    """The balance, the records and /v1/usage all say `spent` micro-credits left the account."""
    await gateway.wait_settled(account)
    assert 1000 * MILLION - await gateway.balance_micros(account) == spent
    records = await gateway.redis.xrange(keyspace.request_log(account))
    assert sum(int(fields["credits_micros"]) for _, fields in records) == spent
    assert await gateway.credits_used_micros(key) == spent


async def test_a_single_string_is_billed_its_tokens_at_the_input_price(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    account, key = await gateway.new_account(credits=1000)
    client = _client(gateway, key)
    raw = await client.embeddings.with_raw_response.create(model="m-main", input=FOX)
    result = raw.parse()
    # OpenAI's tokenizer page counts this sentence as 10 tokens for GPT-4o; tiktoken agrees.
    assert len(O200K.encode(FOX)) == 10
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (10, 10)
    # 10 * 1,000.25 = 10,002.5 micro-credits, rounded up; no output tokens, so nothing else.
    assert REFERENCE.cost_micros(10, 0) == 10_003
    extra = result.usage.model_extra or {}
    assert (extra["cost"], extra["credits_remaining"]) == (0.010003, 999.989997)
    assert raw.headers["x-credits-used"] == "0.010003" and raw.headers["x-credits-remaining"] == "999.989997"
    # The client asked for base64 on its own and decoded it: the same vector as the float answer.
    assert gateway.upstreams["main"].state.requests[-1]["encoding_format"] == "base64"
    floats = await client.embeddings.create(model="m-main", input=FOX, encoding_format="float")
    assert result.data[0].embedding == floats.data[0].embedding and len(floats.data[0].embedding) == 256
    record = await gateway.last_record(account)
    # The hold covered the prompt alone, and no output bound went upstream.
    assert (record["prompt_tokens"], record["completion_tokens"], record["hold_micros"]) == ("10", "0", "10003")
    assert "max_tokens" not in gateway.upstreams["main"].state.requests[-1]
    await _books_agree(gateway, account, key, 2 * 10_003)
    await client.close()


async def test_a_batch_is_one_request_one_hold_one_record(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    account, key = await gateway.new_account(credits=1000)
    client = _client(gateway, key)
    texts = [FOX, "Hello!", "Grüße 👋🏽 from 東京", "embeddings are half of every retrieval app"]
    result = await client.embeddings.create(model="m-main", input=texts, encoding_format="float")
    tokens = sum(len(O200K.encode(text)) for text in texts)  # tiktoken itself, each input on its own
    assert result.usage.prompt_tokens == result.usage.total_tokens == tokens
    assert [item.index for item in result.data] == [0, 1, 2, 3]
    assert result.data[0].embedding != result.data[1].embedding
    assert await gateway.redis.xlen(keyspace.request_log(account)) == 1
    await _books_agree(gateway, account, key, REFERENCE.cost_micros(tokens, 0))
    await client.close()


@pytest.mark.parametrize(
    ("given", "tokens"),
    [([15339, 1917, 0, 3], 4), ([[15339, 1917], [3, 4, 5], [0]], 6)],
    ids=["token-array", "token-arrays"],
)
async def test_token_arrays_are_billed_their_length(start_gateway: StartGateway, given: object, tokens: int) -> None:
    gateway = await start_gateway()
    account, key = await gateway.new_account(credits=1000)
    client = _client(gateway, key)
    result = await client.embeddings.create(model="m-main", input=given, encoding_format="float")  # type: ignore[arg-type]
    assert result.usage.prompt_tokens == tokens
    assert gateway.upstreams["main"].state.requests[-1]["input"] == given
    await _books_agree(gateway, account, key, REFERENCE.cost_micros(tokens, 0))
    await client.close()


async def test_dimensions_base64_and_user_go_upstream_untouched(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    account, key = await gateway.new_account(credits=1000)
    client = _client(gateway, key)
    encoded = await client.embeddings.create(
        model="m-main", input=["a", "b"], dimensions=8, encoding_format="base64", user="u-42"
    )
    sent = gateway.upstreams["main"].state.requests[-1]
    assert (sent["dimensions"], sent["encoding_format"], sent["user"], sent["model"]) == (
        8,
        "base64",
        "u-42",
        "gpt-4o-mini",
    )
    floats = await client.embeddings.create(model="m-main", input=["a", "b"], dimensions=8, encoding_format="float")
    for packed, plain in zip(encoded.data, floats.data, strict=True):
        assert isinstance(packed.embedding, str)  # base64 asked for explicitly: handed over as sent
        # OpenAI's base64: the little-endian float32 values.
        assert list(struct.unpack("<8f", base64.b64decode(packed.embedding))) == plain.embedding
    # "a" and "b" are one token each: 2 * 1,000.25 = 2,000.5 -> 2,001 micro-credits per request, rounded once each.
    await _books_agree(gateway, account, key, 2 * 2_001)
    await client.close()


async def test_an_upstream_without_usage_is_billed_the_gateways_count(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"usage": False})
    account, key = await gateway.new_account(credits=1000)
    response = await gateway.post("/v1/embeddings", key, {"model": "m-main", "input": [FOX, FOX]})
    usage = (await response.json())["usage"]
    assert (usage["prompt_tokens"], usage["total_tokens"], usage["cost"]) == (20, 20, 0.020005)  # 20 * 1,000.25
    record = await gateway.last_record(account)
    assert record["usage_source"] == "gateway"
    await _books_agree(gateway, account, key, 20_005)


async def test_absurd_upstream_usage_is_clamped(start_gateway: StartGateway) -> None:
    reported = {"prompt_tokens": 10**12, "completion_tokens": 50, "total_tokens": 10**12}
    gateway = await start_gateway(main={"reported_usage": reported})
    account, key = await gateway.new_account(credits=1000)
    response = await gateway.post("/v1/embeddings", key, {"model": "m-main", "input": FOX})
    usage = (await response.json())["usage"]
    # At most 10 * 4 + 256 = 296 prompt tokens (prompt_clamp_ratio, prompt_clamp_slack), and no output at all:
    # 296 * 1,000.25 = 296,074 micro-credits.
    assert (usage["prompt_tokens"], usage["total_tokens"], usage["cost"]) == (296, 296, 0.296074)
    record = await gateway.last_record(account)
    assert (record["clamped"], record["completion_tokens"]) == ("prompt,completion", "0")
    await _books_agree(gateway, account, key, 296_074)


async def test_a_balance_that_pays_for_the_input_alone_is_enough(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    account, key = await gateway.new_account(credits="0.010003")  # FOX's 10 tokens exactly
    response = await gateway.post("/v1/embeddings", key, {"model": "m-main", "input": FOX})
    assert response.status == 200 and response.headers["x-credits-remaining"] == "0"
    assert await gateway.balance_micros(account) == 0
    refused = await gateway.post("/v1/embeddings", key, {"model": "m-main", "input": FOX})
    assert refused.status == 402


async def test_count_tokens_prices_the_input_alone(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    _, key = await gateway.new_account(credits=1000)
    response = await gateway.post("/v1/embeddings/count_tokens", key, {"model": "m-main", "input": [FOX, "Hello!"]})
    preview = await response.json()
    # 10 + 2 tokens, no output: 12 * 1,000.25 = 12,003.
    assert (preview["prompt_tokens"], preview["max_completion_tokens"]) == (12, 0)
    assert preview["cost"]["min_credits_micros"] == preview["cost"]["max_credits_micros"] == 12_003
    assert not gateway.upstreams["main"].state.requests


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m-main"}, "input"),
        ({"model": "m-main", "input": None}, "input"),
        ({"model": "m-main", "input": ""}, "input"),
        ({"model": "m-main", "input": []}, "input"),
        ({"model": "m-main", "input": {"text": "hi"}}, "input"),
        ({"model": "m-main", "input": ["a", ""]}, "input[1]"),
        ({"model": "m-main", "input": ["a", 7]}, "input[1]"),
        ({"model": "m-main", "input": [7, "a"]}, "input[1]"),
        ({"model": "m-main", "input": [1, -1]}, "input[1]"),
        ({"model": "m-main", "input": [2**40]}, "input[0]"),
        ({"model": "m-main", "input": [True, 1]}, "input"),
        ({"model": "m-main", "input": [1.5]}, "input"),
        ({"model": "m-main", "input": [[1], []]}, "input[1]"),
        ({"model": "m-main", "input": [[1], [2.0]]}, "input[1][0]"),
        ({"model": "m-main", "input": [[[1]]]}, "input[0][0]"),
        ({"model": "m-main", "input": ["x"] * 2049}, "input"),
        ({"model": "m-main", "input": "hi", "extra": _nested(100)}, None),
        ({"input": "hi"}, "model"),
    ],
)
async def test_hostile_inputs_are_refused_before_any_hold(
    start_gateway: StartGateway, body: dict[str, object], param: str | None
) -> None:
    gateway = await start_gateway()
    account, key = await gateway.new_account(credits=1000)
    response = await gateway.post("/v1/embeddings", key, body)
    assert response.status == 400
    error = (await response.json())["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param
    assert error["type"] == "invalid_request_error" and "Traceback" not in error["message"]
    assert response.headers["x-credits-used"] == "0"
    assert await gateway.balance_micros(account) == 1000 * MILLION
    assert await gateway.redis.xlen(keyspace.request_log(account)) == 0
    assert not gateway.upstreams["main"].state.requests
