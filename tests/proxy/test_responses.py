"""The Responses API through the gateway, driven by the official openai client against the mock upstream: every
bill is the mock's own usage times the price, worked out here by hand (tests/oracle.py), never by the gateway."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import openai
import orjson
import pytest
from openai import AsyncOpenAI

from gateway.app_state import LEDGER
from gateway.billing import keyspace
from gateway.mock.responses import MOCK_RESPONSES, MockResponses
from tests.common import HELLO_PROMPT_TOKENS, REFERENCE, Gateway, StartGateway
from tests.tokens.cookbook import COOKBOOK_TOOLS

START = 1000 * 10**6  # a new account's balance in micro-credits


def client_for(gateway: Gateway, key: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)


def mock_of(gateway: Gateway, name: str = "main") -> MockResponses:
    return gateway.upstreams[name].server.app[MOCK_RESPONSES]


def billed(usage: Any) -> int:
    """The bill of a Responses usage object the mock reported, by hand."""
    return REFERENCE.cost_micros(usage.input_tokens, usage.output_tokens, usage.input_tokens_details.cached_tokens)


async def settled_record(gateway: Gateway, account: str, count: int = 1) -> dict[str, str]:
    """Once `count` requests have settled and nothing is held: the newest record."""
    for _ in range(250):
        if (
            await gateway.redis.xlen(keyspace.request_log(account)) >= count
            and await gateway.app[LEDGER].reserved(account) == 0
        ):
            return await gateway.last_record(account)
        await asyncio.sleep(0.02)
    raise AssertionError("the request never settled")


async def usage_total(gateway: Gateway, key: str) -> tuple[int, int]:
    response = await gateway.client.get("/v1/usage", headers={"Authorization": f"Bearer {key}"})
    body = await response.json()
    return body["total_requests"], body["total_credits_used_micros"]


async def test_plain_create_is_billed_from_the_mocks_usage(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 12})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    raw = await client.responses.with_raw_response.create(model="m-main", input="Hello!")
    response = raw.parse()
    usage = response.usage
    assert usage is not None and usage.input_tokens == HELLO_PROMPT_TOKENS and usage.output_tokens == 12
    assert response.output_text and response.id.startswith("resp_")
    # 9 * 1,000.25 + 12 * 2,000.15 = 9,002.25 + 24,001.8 = 33,004.05, rounded up.
    assert billed(usage) == 33_005
    extra = usage.to_dict()
    assert extra["cost"] == pytest.approx(0.033005) and raw.headers["x-credits-used"] == "0.033005"
    assert extra["credits_remaining"] == pytest.approx((START - 33_005) / 10**6)
    assert await gateway.balance_micros(account) == START - 33_005
    assert await usage_total(gateway, key) == (1, 33_005)
    record = await gateway.last_record(account)
    assert record["usage_source"] == "upstream" and record["prompt_tokens"] == str(HELLO_PROMPT_TOKENS)
    assert record["api"] == "responses"
    # No bound given: the gateway forwarded one (the suite's default_max_tokens), as for chat.
    assert mock_of(gateway).requests[-1]["max_output_tokens"] == 256
    await client.close()


async def test_streamed_create_bills_the_terminal_events_usage(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 7})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    raw = await client.responses.with_raw_response.create(model="m-main", input="Hello!", stream=True)
    assert raw.headers["x-credits-remaining"] and raw.headers["x-request-id"].startswith("req_")
    events = [event async for event in raw.parse()]
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds.count("response.output_text.delta") == 7 and kinds[-1] == "response.completed"
    final = events[-1].response  # type: ignore[union-attr]
    assert final.usage is not None and final.usage.output_tokens == 7
    cost = billed(final.usage)
    assert cost == REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 7) == 23_004  # 9,002.25 + 14,001.05, rounded up
    shown = final.usage.to_dict()
    assert shown["cost"] == pytest.approx(cost / 10**6)
    assert shown["credits_remaining"] == pytest.approx((START - cost) / 10**6)
    await settled_record(gateway, account)
    assert await gateway.balance_micros(account) == START - cost
    assert await usage_total(gateway, key) == (1, cost)
    await client.close()


async def test_the_stream_helper_gets_its_final_response(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 5})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    async with client.responses.stream(model="m-main", input="Hello!") as stream:
        deltas = [event.delta async for event in stream if event.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert final.output_text == "".join(deltas) and final.usage is not None
    await settled_record(gateway, account)
    assert await gateway.balance_micros(account) == START - billed(final.usage)
    await client.close()


async def test_previous_response_id_holds_and_bills_the_kept_context(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 12})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    first = await client.responses.create(model="m-main", input="Hello!")
    second = await client.responses.create(model="m-main", input="Hello!", previous_response_id=first.id)
    assert first.usage is not None and second.usage is not None
    # The mock charges the kept context (9 in + 12 out) as input again: 9 + 21 = 30.
    assert second.usage.input_tokens == 30
    # 30 * 1,000.25 + 12 * 2,000.15 = 30,007.5 + 24,001.8 = 54,009.3, rounded up.
    assert billed(second.usage) == 54_010
    await settled_record(gateway, account, 2)
    assert await gateway.balance_micros(account) == START - 33_005 - 54_010
    record = await gateway.last_record(account)
    # The gateway held for (and counted) its own 9 tokens plus the 21 the provider kept.
    assert record["gateway_prompt_tokens"] == "30" and record["clamped"] == ""
    streamed = await client.responses.create(
        model="m-main", input="Hello!", previous_response_id=second.id, stream=True
    )
    events = [event async for event in streamed]
    final = events[-1].response  # type: ignore[union-attr]
    assert final.usage is not None and final.usage.input_tokens == 9 + 30 + 12
    await client.close()


async def test_a_long_conversation_is_never_clamped(start_gateway: StartGateway) -> None:
    """With the clamp at the gateway's own count exactly, each turn's usage (its own tokens plus the kept
    context) is believed: the clamp bound follows the remembered context."""
    gateway = await start_gateway({"limits": {"prompt_clamp_ratio": 1, "prompt_clamp_slack": 0}}, main={})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    previous: str | None = None
    total = 0
    for turn in range(6):
        response = await client.responses.create(model="m-main", input="Hello!", previous_response_id=previous)
        assert response.usage is not None
        total += billed(response.usage)
        previous = response.id
        record = await settled_record(gateway, account, turn + 1)
        assert record["clamped"] == "" and record["prompt_tokens"] == str(response.usage.input_tokens)
    assert response.usage.input_tokens == 9 + 5 * (9 + 16)  # the mock's 16-token replies, kept each turn
    assert await gateway.balance_micros(account) == START - total
    assert await usage_total(gateway, key) == (6, total)
    await client.close()


async def test_retrieval_routes_forward_for_the_owner_and_never_bill(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 4})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    created = await client.responses.create(model="m-main", input="Hello!")
    await settled_record(gateway, account)
    balance = await gateway.balance_micros(account)
    retrieved = await client.responses.retrieve(created.id)
    assert retrieved.id == created.id and retrieved.output_text == created.output_text
    items = await client.responses.input_items.list(created.id)
    assert [item.type for item in items.data] == ["message"]
    with pytest.raises(openai.BadRequestError):  # the mock, like OpenAI: only background responses cancel
        await client.responses.cancel(created.id)
    calls = mock_of(gateway).calls
    assert [method for method, _ in calls] == ["GET", "GET", "POST"]
    # A response streams its events again (free); only the response itself streams.
    streamed = await client.responses.retrieve(created.id, stream=True)
    assert [event.type async for event in streamed][-1] == "response.completed"
    listed = await gateway.client.get(
        f"/v1/responses/{created.id}/input_items", params={"stream": "true"}, headers={"Authorization": f"Bearer {key}"}
    )
    assert listed.status == 400 and (await listed.json())["error"]["param"] == "stream"
    assert len(mock_of(gateway).calls) == 4
    await client.responses.delete(created.id)
    # Deleted: forgotten by the gateway too, so the id now answers 404 without asking the upstream.
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(created.id)
    assert len(mock_of(gateway).calls) == 5
    assert await gateway.balance_micros(account) == balance
    assert await gateway.redis.xlen(keyspace.request_log(account)) == 1
    await client.close()


async def test_another_accounts_response_id_is_404_on_every_route(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 4})
    _, key = await gateway.new_account(name="owner")
    other_account, other_key = await gateway.new_account(name="other")
    owner, other = client_for(gateway, key), client_for(gateway, other_key)
    created = await owner.responses.create(model="m-main", input="Hello!")
    attempts = {
        "retrieve": lambda client, rid: client.responses.retrieve(rid),
        "delete": lambda client, rid: client.responses.delete(rid),
        "cancel": lambda client, rid: client.responses.cancel(rid),
        "input_items": lambda client, rid: client.responses.input_items.list(rid),
        "continue": lambda client, rid: client.responses.create(model="m-main", input="Hi", previous_response_id=rid),
        "count": lambda client, rid: client.responses.input_tokens.count(model="m-main", previous_response_id=rid),
    }
    requests_before = len(mock_of(gateway).requests)
    for name, attempt in attempts.items():
        answers = []
        for rid in (created.id, "resp_" + "0" * 32):  # another account's id, and one that never existed
            with pytest.raises(openai.NotFoundError) as caught:
                await attempt(other, rid)
            body = caught.value.body
            assert isinstance(body, dict), name
            answers.append((body["code"], body["type"], body["message"].replace(rid, "ID")))
        assert answers[0] == answers[1] and answers[0][0] == "not_found", name
    # Nothing reached the upstream, and nothing was billed or held.
    assert mock_of(gateway).calls == [] and len(mock_of(gateway).requests) == requests_before
    assert await gateway.balance_micros(other_account) == START
    assert await gateway.redis.xlen(keyspace.request_log(other_account)) == 0
    # A key that is not one is 401 first, whatever the id: a 404 never answers an unchecked key.
    stranger = client_for(gateway, key[:-4] + "0000")
    for attempt in (attempts["retrieve"], attempts["continue"]):
        with pytest.raises(openai.AuthenticationError):
            await attempt(stranger, created.id)
    await stranger.close()
    # The owner still has it.
    assert (await owner.responses.retrieve(created.id)).id == created.id
    await owner.close()
    await other.close()


async def test_input_tokens_is_the_gateways_count_never_forwarded(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 12})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    # The cookbook's weather tool, in Responses' flat shape: both sides count it by the published rule.
    tools: list[Any] = [{"type": "function", **COOKBOOK_TOOLS[0]["function"], "strict": False}]
    body: dict[str, Any] = {"model": "m-main", "input": "What is the weather in Paris?", "tools": tools}
    counted = await client.responses.input_tokens.count(**body)
    assert counted.object == "response.input_tokens"
    assert mock_of(gateway).requests == []  # never forwarded
    created = await client.responses.create(**body)
    assert created.usage is not None and counted.input_tokens == created.usage.input_tokens
    # With the kept context of the response it continues.
    follow = await client.responses.input_tokens.count(model="m-main", input="Hello!", previous_response_id=created.id)
    assert follow.input_tokens == HELLO_PROMPT_TOKENS + created.usage.input_tokens + created.usage.output_tokens
    await settled_record(gateway, account)
    assert await gateway.redis.xlen(keyspace.request_log(account)) == 1
    await client.close()


async def test_function_calls_round_trip_and_are_counted(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"tool_call_arguments": '{"city": "Paris"}'})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    tools: list[Any] = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    first = await client.responses.create(model="m-main", input="Weather?", tools=tools, stream=True)
    events = [event async for event in first]
    final = events[-1].response  # type: ignore[union-attr]
    [call] = final.output
    assert call.type == "function_call" and call.arguments == '{"city": "Paris"}'
    record = await settled_record(gateway, account)
    # The gateway's count of what it relayed (name and arguments) agrees with the mock's.
    assert record["gateway_completion_tokens"] == str(final.usage.output_tokens)
    follow = await client.responses.create(
        model="m-main",
        previous_response_id=final.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=tools,
    )
    assert follow.usage is not None
    await settled_record(gateway, account, 2)
    assert await gateway.balance_micros(account) == START - billed(final.usage) - billed(follow.usage)
    await client.close()


async def test_a_client_leaving_mid_stream_pays_for_what_it_was_sent(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 200, "chunk_delay_ms": 20})
    account, key = await gateway.new_account()
    body = {"model": "m-main", "input": "Hello!", "stream": True}
    response = await gateway.client.post("/v1/responses", json=body, headers={"Authorization": f"Bearer {key}"})
    for _ in range(8):  # created, in_progress, item added, part added, four deltas
        await response.content.readuntil(b"\n\n")
    response.close()
    record = await settled_record(gateway, account)
    assert record["status"] == "499" and record["usage_source"] == "gateway"
    sent = int(record["completion_tokens"])
    assert 4 <= sent < 200 and record["prompt_tokens"] == str(HELLO_PROMPT_TOKENS)
    assert int(record["credits_micros"]) == REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, sent)
    assert await gateway.balance_micros(account) == START - int(record["credits_micros"])


async def test_a_cut_upstream_stream_bills_the_gateways_count(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 50, "cut_after_chunks": 14})
    account, key = await gateway.new_account()
    body = {"model": "m-main", "input": "Hello!", "stream": True}
    response = await gateway.client.post("/v1/responses", json=body, headers={"Authorization": f"Bearer {key}"})
    events = [e for e in (await response.read()).split(b"\n\n") if e]
    assert b"event: response.created" in events[0]
    last = orjson.loads(events[-1].split(b"data: ", 1)[1])
    assert last["error"]["code"] == "upstream_error"
    record = await settled_record(gateway, account)
    # Four opening events, then ten one-token deltas.
    assert record["status"] == "502" and record["completion_tokens"] == "10"
    # 9 * 1,000.25 + 10 * 2,000.15 = 9,002.25 + 20,001.5 = 29,003.75, rounded up.
    assert int(record["credits_micros"]) == REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 10) == 29_004
    # The id was seen (response.created) and is this account's, with the context billed.
    answer_id = orjson.loads(events[0].split(b"data: ")[1])["response"]["id"]
    stored = await gateway.redis.get(keyspace.stored_answer(account, answer_id))
    assert stored is not None and orjson.loads(stored)["context_tokens"] == 19


async def test_the_terminal_event_keeps_its_event_line(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 3})
    _, key = await gateway.new_account()
    body = {"model": "m-main", "input": "Hello!", "stream": True}
    response = await gateway.client.post("/v1/responses", json=body, headers={"Authorization": f"Bearer {key}"})
    events = [e for e in (await response.read()).split(b"\n\n") if e]
    name, data = events[-1].split(b"\n", 1)
    assert name == b"event: response.completed"
    assert orjson.loads(data.removeprefix(b"data: "))["response"]["usage"]["cost"] > 0


HOSTILE: list[tuple[dict[str, Any], str | None]] = [
    ({"input": 42}, "input"),
    ({"input": ["text"]}, "input[0]"),
    ({"input": [{"role": "boss", "content": "x"}]}, "input[0].role"),
    ({"input": [{"role": "user", "content": 3}]}, "input[0].content"),
    ({"input": [{"role": "user", "content": ["x"]}]}, "input[0].content[0]"),
    ({"input": [{"type": "function_call", "name": "f"}]}, "input[0].arguments"),
    ({"input": [{"type": "function_call_output", "call_id": "c"}]}, "input[0].output"),
    ({"tools": {"type": "function"}}, "tools"),
    ({"tools": [{"type": "function"}]}, "tools[0].name"),
    ({"tools": [{"type": "function", "name": "f", "parameters": "x"}]}, "tools[0].parameters"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"max_output_tokens": True}, "max_output_tokens"),
    ({"stream": "yes"}, "stream"),
    ({"background": "yes"}, "background"),
    ({"background": True, "store": False}, "store"),
    ({"conversation": "conv_1", "previous_response_id": "resp_1"}, "conversation"),
    ({"conversation": 7}, "conversation"),
    ({"conversation": {"id": ""}}, "conversation"),
    ({"prompt": {"id": "pmpt_1"}}, "prompt"),
    ({"previous_response_id": ""}, "previous_response_id"),
    ({"instructions": ["x"]}, "instructions"),
    ({"tools": [{"type": "web_search"}]}, "tools"),
    ({"service_tier": "priority"}, "service_tier"),
    ({"model": ""}, "model"),
]


@pytest.mark.parametrize(("fields", "param"), HOSTILE)
async def test_hostile_requests_are_refused_before_any_hold(
    start_gateway: StartGateway, fields: dict[str, Any], param: str | None
) -> None:
    gateway = await start_gateway()
    account, key = await gateway.new_account()
    body = {"model": "m-main", "input": "Hello!", **fields}
    response = await gateway.client.post("/v1/responses", json=body, headers={"Authorization": f"Bearer {key}"})
    error = (await response.json())["error"]
    assert response.status == 400 and error["param"] == param and error["type"] == "invalid_request_error"
    assert mock_of(gateway).requests == [] and await gateway.balance_micros(account) == START


async def test_bodies_that_are_not_requests_are_refused(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    _, key = await gateway.new_account()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    deep = b"[" * 100 + b"]" * 100
    for raw in (b"{", b"[]", b'{"model": "m-main", "input": ' + deep + b"}"):
        response = await gateway.client.post("/v1/responses", data=raw, headers=headers)
        assert response.status == 400 and (await response.json())["error"]["type"] == "invalid_request_error"


async def test_priced_fields_pass_when_the_model_allows_them(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 3})
    model = gateway.settings.models["m-main"]
    priced = dataclasses.replace(model, allowed_fields=frozenset({"tools", "service_tier"}))
    gateway.settings.models["m-main"] = priced  # type: ignore[index]
    _, key = await gateway.new_account()
    client = client_for(gateway, key)
    response = await client.responses.create(
        model="m-main", input="Hello!", tools=[{"type": "web_search"}], service_tier="priority"
    )
    assert response.usage is not None and mock_of(gateway).requests[-1]["tools"] == [{"type": "web_search"}]
    await client.close()


async def test_store_is_free_in_responses(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 3})
    _, key = await gateway.new_account()
    client = client_for(gateway, key)
    response = await client.responses.create(model="m-main", input="Hello!", store=True)
    assert response.usage is not None
    await client.close()


async def test_an_incomplete_response_is_billed_at_its_bound(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 12})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    stream = await client.responses.create(model="m-main", input="Hello!", max_output_tokens=5, stream=True)
    events = [event async for event in stream]
    assert events[-1].type == "response.incomplete"
    final = events[-1].response  # type: ignore[union-attr]
    assert final.usage is not None and final.usage.output_tokens == 5
    # 9 * 1,000.25 + 5 * 2,000.15 = 9,002.25 + 10,000.75 = 19,003
    assert final.usage.to_dict()["cost"] == pytest.approx(0.019003)
    await settled_record(gateway, account)
    assert await gateway.balance_micros(account) == START - 19_003 == START - billed(final.usage)
    assert mock_of(gateway).requests[-1]["max_output_tokens"] == 5  # the client's own bound, untouched
    await client.close()


async def test_the_usage_api_tells_responses_from_chat(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 12})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    response = await client.responses.create(model="m-main", input="Hello!")
    chat = await client.chat.completions.create(model="m-main", messages=[{"role": "user", "content": "Hello!"}])
    assert response.usage is not None and chat.usage is not None
    chat_cost = REFERENCE.cost_micros(chat.usage.prompt_tokens, chat.usage.completion_tokens)
    await settled_record(gateway, account, 2)
    headers = {"Authorization": f"Bearer {key}"}
    by_api = {}
    for api in ("responses", "chat.completions"):
        answer = await gateway.client.get("/v1/usage", params={"api": api}, headers=headers)
        body = await answer.json()
        by_api[api] = (body["total_requests"], body["total_credits_used_micros"])
    assert by_api == {"responses": (1, billed(response.usage)), "chat.completions": (1, chat_cost)}
    assert await usage_total(gateway, key) == (2, billed(response.usage) + chat_cost)
    assert await gateway.balance_micros(account) == START - billed(response.usage) - chat_cost
    await client.close()
