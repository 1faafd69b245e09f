"""A request's price before it is sent (count_tokens, the CLI, /v1/models pricing) and its bill after
(`usage.cost`, `usage.credits_remaining`, `x-credits-used`), read as clients read them."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from openai import AsyncOpenAI

from gateway.billing import keyspace
from gateway.cli import main
from tests.common import ADMIN_TOKEN, HELLO_PROMPT_TOKENS, REFERENCE, Gateway, StartGateway, user_message
from tests.tokens.image_files import png

# OpenAI's published vision price for gpt-4o-mini (the suite's models run as it): a low-detail image is 2,833
# tokens, whatever its size ("Images and vision" guide, "Calculating costs").
LOW_DETAIL_IMAGE_TOKENS = 2833
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}


def _micros(credits: object) -> int:
    """A JSON number of credits as exact micro-credits (through its decimal text, never float arithmetic)."""
    micros = Decimal(str(credits)) * 1_000_000
    assert micros == micros.to_integral_value(), credits
    return int(micros)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _count(gateway: Gateway, key: str, body: dict[str, object]) -> dict[str, object]:
    response = await gateway.client.post("/v1/chat/completions/count_tokens", json=body, headers=_auth(key))
    assert response.status == 200, await response.text()
    return await response.json()  # type: ignore[no-any-return]


async def test_an_output_bound_past_64_bits_is_shown_capped_not_a_500(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    _, key = await gateway.new_account()
    body = {"model": "m-main", "messages": user_message(), "max_tokens": 2**63, "n": 128}  # 2^70 tokens in all
    preview = await _count(gateway, key, body)
    assert preview["max_completion_tokens"] == 2**53 - 1  # no hold covers more
    assert preview["cost"]["max_credits_micros"] == 2**53 - 1  # type: ignore[index]


async def test_models_carry_the_configured_prices(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    _, key = await gateway.new_account()
    listed = await (await gateway.client.get("/v1/models", headers=_auth(key))).json()
    one = await (await gateway.client.get("/v1/models/m-main", headers=_auth(key))).json()
    # The suite's config: 1,000.25 in and 2,000.15 out per million; no cached or cache-write price, so both cost
    # the input price; no built-in tool priced per call.
    expected = {
        "input_credits_per_million": 1000.25,
        "output_credits_per_million": 2000.15,
        "cached_input_credits_per_million": 1000.25,
        "cache_write_credits_per_million": 1000.25,
        "tool_call_credits": {},
    }
    assert [model["pricing"] for model in listed["data"]] == [expected]
    assert one["pricing"] == expected and one["id"] == "m-main"


@pytest.mark.parametrize(
    ("content", "extra", "prompt_tokens"),
    [
        ("Hello!", {}, HELLO_PROMPT_TOKENS),
        (
            [
                {"type": "text", "text": "Hello!"},
                {"type": "image_url", "image_url": {"url": "", "detail": "low"}},
            ],
            {},
            HELLO_PROMPT_TOKENS + LOW_DETAIL_IMAGE_TOKENS,
        ),
        ("Hello!", {"tools": [WEATHER_TOOL], "tool_choice": "auto"}, None),  # the counter's own number, see below
    ],
    ids=["plain", "image", "tools"],
)
async def test_count_tokens_is_what_the_same_request_is_then_billed(
    start_gateway: StartGateway, content: object, extra: dict[str, object], prompt_tokens: int | None
) -> None:
    gateway = await start_gateway(main={"completion_tokens": 7, "usage": False})  # billed by the gateway's count
    account, key = await gateway.new_account()
    if isinstance(content, list):
        content[1]["image_url"]["url"] = "data:image/png;base64," + base64.b64encode(png(640, 480)).decode()
    body = {"model": "m-main", "messages": [{"role": "user", "content": content}], "max_tokens": 10, "n": 2, **extra}

    preview = await _count(gateway, key, body)
    assert await gateway.balance_micros(account) == 1000 * 10**6  # free
    assert gateway.upstreams["main"].state.requests == []  # and never sent
    counted = preview["prompt_tokens"]
    assert isinstance(counted, int)
    if prompt_tokens is not None:
        assert counted == prompt_tokens
    assert preview["max_completion_tokens"] == 20  # max_tokens x n: what the hold covers
    cost = preview["cost"]
    assert isinstance(cost, dict)
    assert _micros(cost["min_credits"]) == cost["min_credits_micros"] == REFERENCE.cost_micros(counted, 0)
    assert _micros(cost["max_credits"]) == cost["max_credits_micros"] == REFERENCE.cost_micros(counted, 20)

    response = await gateway.chat(key, body)
    assert response.status == 200
    usage = (await response.json())["usage"]
    record = await gateway.last_record(account)
    assert usage["prompt_tokens"] == int(record["prompt_tokens"]) == counted
    assert usage["completion_tokens"] == 14  # 7 per choice, two choices
    charged = REFERENCE.cost_micros(counted, 14)
    assert int(record["credits_micros"]) == charged and _micros(usage["cost"]) == charged
    assert cost["min_credits_micros"] <= charged <= cost["max_credits_micros"]


async def test_count_tokens_refuses_what_the_proxy_refuses(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    account, key = await gateway.new_account()
    url = "/v1/chat/completions/count_tokens"
    hello = {"model": "m-main", "messages": user_message()}
    cases = [
        (_auth("sk-gw-0123456789abcdef-wrong"), hello, 401, None),
        ({}, hello, 401, None),
        (_auth(key), {"model": "nope", "messages": user_message()}, 404, "model"),
        (_auth(key), {"model": "m-main"}, 400, "messages"),
        (_auth(key), {**hello, "service_tier": "priority"}, 400, "service_tier"),
    ]
    for headers, body, status, param in cases:
        response = await gateway.client.post(url, json=body, headers=headers)
        error = (await response.json())["error"]
        assert (response.status, error["param"]) == (status, param), (body, error)
    not_json = await gateway.client.post(url, data=b"{", headers={**_auth(key), "Content-Type": "application/json"})
    assert not_json.status == 400
    assert await gateway.redis.xlen(keyspace.request_log(account)) == 0
    # An admin token is not an API key: previews are for tenants, like the proxy.
    assert (await gateway.client.post(url, json=hello, headers=_auth(ADMIN_TOKEN))).status == 401


async def test_without_max_tokens_the_preview_bounds_by_the_gateway_default(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    _, key = await gateway.new_account()
    preview = await _count(gateway, key, {"model": "m-main", "messages": user_message()})
    assert preview["max_completion_tokens"] == 256  # the suite's default_max_tokens
    assert preview["cost"]["max_credits_micros"] == REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 256)  # type: ignore[index]


def test_the_cli_counts_offline_as_the_endpoint_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        "[upstreams.main]\nbase_url = 'http://127.0.0.1:9/v1'\n"
        "[models.\"m-main\"]\nupstream = 'main'\nupstream_model = 'gpt-4o-mini'\n"
        "input_credits_per_million = 1000.25\noutput_credits_per_million = 2000.15\n"
    )
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"model": "m-main", "messages": user_message(), "max_tokens": 3}))
    assert main(["tokens", "count", str(body), "--config", str(config)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["prompt_tokens"] == HELLO_PROMPT_TOKENS and shown["max_completion_tokens"] == 3
    assert shown["cost"]["max_credits_micros"] == REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 3)
    body.write_text(json.dumps({"model": "other", "messages": user_message()}))
    assert main(["tokens", "count", str(body), "--config", str(config)]) == 1
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("upstream_usage", [True, False])
async def test_the_bill_rides_on_the_answer_read_through_the_openai_client(
    start_gateway: StartGateway, upstream_usage: bool
) -> None:
    gateway = await start_gateway(main={"completion_tokens": 12, "usage": upstream_usage})
    account, key = await gateway.new_account(credits=1000)
    client = AsyncOpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    before = await gateway.balance_micros(account)

    raw = await client.chat.completions.with_raw_response.create(model="m-main", messages=user_message())
    usage = raw.parse().usage
    assert usage is not None and usage.model_extra is not None
    after = await gateway.balance_micros(account)
    assert _micros(usage.model_extra["cost"]) == before - after == REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 12)
    assert _micros(usage.model_extra["credits_remaining"]) == after
    assert _micros(raw.headers["x-credits-used"]) == before - after
    assert _micros(raw.headers["x-credits-remaining"]) == after

    stream = await client.chat.completions.create(
        model="m-main", messages=user_message(), stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    final = chunks[-1].usage
    assert final is not None and final.model_extra is not None and chunks[-1].choices == []
    settled = await gateway.balance_micros(account)
    assert _micros(final.model_extra["cost"]) == after - settled == REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 12)
    assert _micros(final.model_extra["credits_remaining"]) == settled
    await client.close()


async def test_usage_on_the_last_content_chunk_gets_a_billed_usage_chunk_after_it(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(main={"completion_tokens": 5, "usage_on_last_chunk": True})
    account, key = await gateway.new_account()
    body = {"model": "m-main", "messages": user_message(), "stream": True, "stream_options": {"include_usage": True}}
    events = (await (await gateway.chat(key, body)).read()).split(b"\n\n")
    chunks = [orjson.loads(event[6:]) for event in events if event.startswith(b"data: {")]
    assert chunks[-2]["choices"] and chunks[-2]["usage"]["completion_tokens"] == 5  # the upstream's, passed on
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5  # the gateway's, billed
    assert _micros(chunks[-1]["usage"]["cost"]) == REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 5)
    assert _micros(chunks[-1]["usage"]["credits_remaining"]) == await gateway.balance_micros(account)
    assert [event for event in events if event][-1] == b"data: [DONE]"


async def test_a_stream_without_usage_asked_carries_no_bill_and_is_still_charged(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(main={"completion_tokens": 5})
    account, key = await gateway.new_account()
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message(), "stream": True})
    assert b'"cost"' not in await response.read()
    assert "x-credits-used" not in response.headers  # headers go out before the stream is billed
    assert await gateway.balance_micros(account) == 1000 * 10**6 - REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 5)


async def test_refusals_and_upstream_errors_say_nothing_was_charged(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"fail_status": 500})
    _, key = await gateway.new_account(credits="0.000001")
    refused = await gateway.chat(key, {"model": "m-main", "messages": user_message()})
    assert refused.status == 402 and refused.headers["x-credits-used"] == "0"
    _, rich_key = await gateway.new_account()
    failed = await gateway.chat(rich_key, {"model": "m-main", "messages": user_message()})
    assert failed.status == 500 and failed.headers["x-credits-used"] == "0"
    assert failed.headers["x-credits-remaining"] == "1000"


async def test_an_answer_too_deep_to_relay_is_refused_unbilled(start_gateway: StartGateway) -> None:
    nested = b'{"choices": [], "deep": ' + b"[" * 300 + b"]" * 300 + b"}"  # parses; too deep to encode again
    gateway = await start_gateway(main={"error_status": 200, "error_body": nested})
    account, key = await gateway.new_account()
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message()})
    assert response.status == 502 and response.headers["x-credits-used"] == "0"
    assert await gateway.balance_micros(account) == 1000 * 10**6
