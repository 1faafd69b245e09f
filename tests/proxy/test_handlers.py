"""Chat completions through the gateway: plain and streamed, with the official openai client and raw HTTP."""

from __future__ import annotations

import dataclasses

import orjson
from openai import AsyncOpenAI

from tests.common import HELLO_PROMPT_TOKENS, REFERENCE, StartGateway, user_message


async def test_openai_client_plain_and_streamed(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 12})
    account, key = await gateway.new_account(credits=1000)
    client = AsyncOpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)

    raw = await client.chat.completions.with_raw_response.create(model="m-main", messages=user_message())
    completion = raw.parse()
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 12
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 12
    assert completion.usage.prompt_tokens == HELLO_PROMPT_TOKENS
    cost = REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 12)
    assert cost == 33_005  # 9 * 1,000.25 + 12 * 2,000.15 = 9,002.25 + 24,001.8 = 33,004.05, rounded up
    assert raw.headers["x-credits-remaining"] == f"{(1000 * 10**6 - cost) / 10**6:.6f}".rstrip("0").rstrip(".")
    assert raw.headers["x-request-id"].startswith("req_")

    stream_raw = await client.chat.completions.with_raw_response.create(
        model="m-main", messages=user_message(), stream=True, stream_options={"include_usage": True}
    )
    assert "x-credits-remaining" in stream_raw.headers
    chunks = [chunk async for chunk in stream_raw.parse()]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 12 and text
    assert await gateway.balance_micros(account) == 1000 * 10**6 - 2 * cost
    await client.close()


async def test_stream_without_include_usage_hides_the_usage_chunk_but_bills_it(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 7})
    account, key = await gateway.new_account()
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message(), "stream": True})
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
    events = [e for e in (await response.read()).split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    payloads = [orjson.loads(e[len(b"data: ") :]) for e in events[:-1]]
    assert all("usage" not in p or p["usage"] is None for p in payloads)
    # The gateway asked upstream for usage on its own behalf.
    sent = gateway.upstreams["main"].state.requests[-1]
    assert sent["stream_options"] == {"include_usage": True}
    record = await gateway.last_record(account)
    assert record["usage_source"] == "upstream" and record["completion_tokens"] == "7"


async def test_stream_from_an_upstream_without_usage_is_billed_by_the_gateway_count(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(main={"completion_tokens": 9, "usage": False})
    account, key = await gateway.new_account()
    body = {"model": "m-main", "messages": user_message(), "stream": True, "stream_options": {"include_usage": True}}
    response = await gateway.chat(key, body)
    events = [orjson.loads(e[6:]) for e in (await response.read()).split(b"\n\n") if e and e != b"data: [DONE]"]
    # The client asked for usage and the upstream gave none: the gateway adds its own usage chunk.
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 9
    record = await gateway.last_record(account)
    assert record["usage_source"] == "gateway" and record["completion_tokens"] == "9"
    assert int(record["credits_micros"]) == REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 9)


async def test_plain_response_without_usage_gets_usage_filled_in(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 5, "usage": False})
    account, key = await gateway.new_account()
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message()})
    payload = await response.json()
    assert payload["usage"]["completion_tokens"] == 5
    assert payload["usage"]["total_tokens"] == payload["usage"]["prompt_tokens"] + 5
    record = await gateway.last_record(account)
    assert record["usage_source"] == "gateway"


async def test_the_client_key_never_goes_upstream_and_the_provider_key_does(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    _, key = await gateway.new_account()
    await gateway.chat(key, {"model": "m-main", "messages": user_message()})
    headers = gateway.upstreams["main"].state.headers[-1]
    assert headers["Authorization"] == "Bearer provider-key-main"
    assert key not in orjson.dumps(headers).decode()
    # The upstream sees its own model name.
    assert gateway.upstreams["main"].state.requests[-1]["model"] == "gpt-4o-mini"


async def test_max_tokens_is_forced_when_the_client_sets_none(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(settings_overrides={"limits": {"default_max_tokens": 100}})
    _, key = await gateway.new_account(credits=1000)
    await gateway.chat(key, {"model": "m-main", "messages": user_message()})
    assert gateway.upstreams["main"].state.requests[-1]["max_tokens"] == 100
    await gateway.chat(key, {"model": "m-main", "messages": user_message(), "max_completion_tokens": 30})
    sent = gateway.upstreams["main"].state.requests[-1]
    assert sent["max_completion_tokens"] == 30 and "max_tokens" not in sent


async def test_a_low_balance_lowers_the_forwarded_max_tokens(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(
        settings_overrides={"limits": {"default_max_tokens": 10_000}}, main={"completion_tokens": 4}
    )
    # 0.05 credits = 50,000 micros; the 9-token prompt costs 9,002.25, each output token 2,000.15:
    # (50,000 - 9,002.25) / 2,000.15 = 20.49..., so 20 output tokens is the most the balance pays for.
    account, key = await gateway.new_account(credits="0.05")
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message()})
    assert response.status == 200
    record = await gateway.last_record(account)
    assert record["gateway_prompt_tokens"] == str(HELLO_PROMPT_TOKENS)
    forced = gateway.upstreams["main"].state.requests[-1]["max_tokens"]
    assert forced == 20 == REFERENCE.affordable_completion_tokens(50_000, HELLO_PROMPT_TOKENS)
    assert await gateway.balance_micros(account) >= 0


async def test_models_endpoint_lists_the_configured_models(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(first={}, second={})
    _, key = await gateway.new_account()
    client = AsyncOpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    models = [model.id async for model in client.models.list()]
    assert models == ["m-first", "m-second"]
    assert (await client.models.retrieve("m-second")).id == "m-second"
    await client.close()


async def test_n_choices_are_all_billed(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 6, "usage": False})
    account, key = await gateway.new_account()
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message(), "n": 3, "max_tokens": 10})
    payload = await response.json()
    assert len(payload["choices"]) == 3 and payload["usage"]["completion_tokens"] == 18
    # Counted by the gateway (no upstream usage): 9 * 1,000.25 + 18 * 2,000.15 = 9,002.25 + 36,002.7 = 45,004.95.
    record = await gateway.last_record(account)
    assert (record["usage_source"], record["completion_tokens"], record["credits_micros"]) == ("gateway", "18", "45005")
    assert await gateway.balance_micros(account) == 1000 * 10**6 - 45_005


async def test_upstreams_that_reject_stream_options_are_not_sent_them(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 3})
    upstreams = gateway.settings.upstreams
    upstreams["main"] = dataclasses.replace(upstreams["main"], stream_usage=False)  # type: ignore[index]
    account, key = await gateway.new_account()
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message(), "stream": True})
    await response.read()
    assert "stream_options" not in gateway.upstreams["main"].state.requests[-1]
    record = await gateway.last_record(account)
    assert record["usage_source"] == "gateway" and record["completion_tokens"] == "3"


async def test_large_plain_responses_arrive_whole(start_gateway: StartGateway) -> None:
    text = "All work and no play makes a long reply. " * 20_000  # ~800 kB: many TCP reads
    gateway = await start_gateway(main={"text": text, "usage": False})
    account, key = await gateway.new_account()
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message()})
    payload = await response.json()
    assert payload["choices"][0]["message"]["content"] == text
    record = await gateway.last_record(account)
    assert record["status"] == "200" and int(record["completion_tokens"]) > 100_000


async def test_upstream_responses_over_the_limit_are_refused_free(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(
        settings_overrides={"limits": {"max_upstream_response_bytes": 10_000}}, main={"text": "x" * 50_000}
    )
    account, key = await gateway.new_account()
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message()})
    assert response.status == 502 and "larger" in (await response.json())["error"]["message"]
    assert await gateway.balance_micros(account) == 1000 * 10**6
