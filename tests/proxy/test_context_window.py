"""A model's `max_input_tokens` and `context_window`: what a provider would refuse as context_length_exceeded is
refused before any hold, in OpenAI's words; a gateway-chosen output bound shrinks to what the window leaves."""

from __future__ import annotations

import io

import orjson
import pytest

from gateway.billing import keyspace
from gateway.config import ConfigError, ModelConfig
from tests.common import HELLO_PROMPT_TOKENS, REFERENCE, TEST_PRICE, Gateway, StartGateway, user_message

HELLO = {"model": "m-main", "messages": user_message()}  # 9 prompt tokens (HELLO_PROMPT_TOKENS)
CREDITS_MICROS = 10_000_000


async def _gateway(start_gateway: StartGateway, **bounds: int) -> tuple[Gateway, str, str]:
    model = ModelConfig(name="m-main", upstream="main", upstream_model="gpt-4o-mini", price=TEST_PRICE, **bounds)
    gateway = await start_gateway({"models": {"m-main": model}})
    account_id, key = await gateway.new_account(credits=10)
    return gateway, account_id, key


async def _refused(gateway: Gateway, key: str, body: dict[str, object], path: str = "/v1/chat/completions") -> str:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    response = await gateway.client.post(path, data=io.BytesIO(orjson.dumps(body)), headers=headers)
    error = await response.json()
    assert response.status == 400, error
    assert error["error"]["code"] == "context_length_exceeded" and error["error"]["param"] == "messages"
    assert error["error"]["type"] == "invalid_request_error"
    assert response.headers["x-credits-remaining"] == "10"
    return str(error["error"]["message"])


async def _nothing_happened(gateway: Gateway, account_id: str) -> None:
    assert gateway.upstreams["main"].state.requests == []
    assert await gateway.balance_micros(account_id) == CREDITS_MICROS
    assert await gateway.redis.xlen(keyspace.request_log(account_id)) == 0


async def test_a_prompt_over_max_input_tokens_is_refused_before_any_hold(start_gateway: StartGateway) -> None:
    gateway, account_id, key = await _gateway(start_gateway, max_input_tokens=HELLO_PROMPT_TOKENS - 1)
    message = await _refused(gateway, key, HELLO)
    assert message == (
        "This model's maximum input length is 8 tokens. However, your messages resulted in 9 tokens. "
        "Please reduce the length of the messages."
    )
    await _nothing_happened(gateway, account_id)
    unknown = await gateway.chat("sk-gw-acct_0000000000000000-nope", HELLO)
    assert unknown.status == 401  # the key first, always


async def test_a_prompt_at_max_input_tokens_is_served(start_gateway: StartGateway) -> None:
    gateway, _, key = await _gateway(start_gateway, max_input_tokens=HELLO_PROMPT_TOKENS)
    assert (await gateway.chat(key, HELLO)).status == 200


async def test_the_prompt_and_the_clients_bound_must_fit_the_window(start_gateway: StartGateway) -> None:
    gateway, account_id, key = await _gateway(start_gateway, context_window=20)
    message = await _refused(gateway, key, {**HELLO, "max_tokens": 12})
    assert message == (
        "This model's maximum context length is 20 tokens. However, you requested 21 tokens (9 in the messages, "
        "12 in the completion). Please reduce the length of the messages or completion."
    )
    assert await _refused(gateway, key, {**HELLO, "max_completion_tokens": 12}, "/v1/chat/completions/count_tokens")
    await _nothing_happened(gateway, account_id)
    served = await gateway.chat(key, {**HELLO, "max_tokens": 11})  # 9 + 11 = 20: exactly the window
    assert served.status == 200


async def test_a_prompt_that_fills_the_window_is_refused(start_gateway: StartGateway) -> None:
    gateway, account_id, key = await _gateway(start_gateway, context_window=HELLO_PROMPT_TOKENS)
    message = await _refused(gateway, key, HELLO)
    assert message.startswith("This model's maximum context length is 9 tokens. However, your messages resulted in 9")
    await _nothing_happened(gateway, account_id)


async def test_the_gateways_own_bound_shrinks_to_what_the_window_leaves(start_gateway: StartGateway) -> None:
    gateway, account_id, key = await _gateway(start_gateway, context_window=20)  # default_max_tokens is 256
    preview = await gateway.client.post(
        "/v1/chat/completions/count_tokens", json=HELLO, headers={"Authorization": f"Bearer {key}"}
    )
    shown = await preview.json()
    assert shown["max_completion_tokens"] == 11
    assert shown["cost"]["max_credits_micros"] == REFERENCE.cost_micros(9, 11)
    response = await gateway.chat(key, HELLO)
    assert response.status == 200
    assert gateway.upstreams["main"].state.requests[-1]["max_tokens"] == 11  # forwarded: the upstream stays inside
    record = await gateway.last_record(account_id)
    assert int(record["hold_micros"]) == REFERENCE.cost_micros(9, 11)


async def test_a_prompt_far_past_the_window_is_counted_and_refused_not_billed(start_gateway: StartGateway) -> None:
    """The case that was billed 720 credits: a prompt of hundreds of thousands of tokens to a 128k model."""
    gateway, account_id, key = await _gateway(start_gateway, context_window=128_000)
    text = "hello " * 200_000  # at least 200,000 tokens on any tokenizer: " hello" is one token at most
    message = await _refused(gateway, key, {"model": "m-main", "messages": user_message(text)})
    tokens = int(message.split("resulted in ")[1].split(" ")[0])
    assert tokens > 200_000
    await _nothing_happened(gateway, account_id)


@pytest.mark.parametrize("bound", ["max_input_tokens", "max_output_tokens"])
def test_bounds_inside_the_window_are_checked_when_configured(bound: str) -> None:
    with pytest.raises(ConfigError, match=rf'models."m".{bound} \(128000\) must be below context_window \(128000\)'):
        ModelConfig(
            name="m", upstream="u", upstream_model="m", price=TEST_PRICE, context_window=128_000, **{bound: 128_000}
        )
