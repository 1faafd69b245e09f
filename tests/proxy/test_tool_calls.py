"""Built-in tool calls priced per call (Responses' web_search and the like), through the gateway against the mock
upstream, which makes the calls on request (`builtin_tool_calls`): the hold covers `max_tool_calls` calls, the bill
adds each call made to the tokens, and a tool the model does not price is refused. Every amount is the mock's own
usage times the suite's prices (tests/oracle.py) plus the calls times the config's price per call, worked out here."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai import AsyncOpenAI

from gateway.billing import keyspace
from gateway.config import ModelConfig
from gateway.config_checks import call_prices
from gateway.mock.responses import MOCK_RESPONSES, MockResponses
from tests.common import HELLO_PROMPT_TOKENS, REFERENCE, TEST_PRICE, Gateway, StartGateway
from tests.oracle import call_micros

START = 1000 * 10**6  # a new account's balance in micro-credits
CALL_PRICE = "0.012345"  # credits per web search call, as the config writes it
# The model's [models."m-main".tool_call_credits]: web searches and code interpreter sessions, nothing else.
TOOL_CALL_CREDITS = {"web_search": CALL_PRICE, "code_interpreter": "0.5"}
WEB_SEARCH = [{"type": "web_search"}]
DEFAULT_BOUND = 16  # limits.default_max_tool_calls, the suite's (the default)
DEFAULT_OUTPUT = 256  # limits.default_max_tokens, the suite's


def priced_model(**fields: Any) -> dict[str, ModelConfig]:
    """The suite's model m-main, pricing TOOL_CALL_CREDITS per call (read as the config reads its table)."""
    table = call_prices(TOOL_CALL_CREDITS, 'models."m-main".tool_call_credits')
    model = ModelConfig(
        name="m-main", upstream="main", upstream_model="gpt-4o-mini", price=TEST_PRICE, tool_call_micros=table, **fields
    )
    return {"m-main": model}


async def start(start_gateway: StartGateway, **mock: object) -> Gateway:
    return await start_gateway({"models": priced_model()}, main=mock)


def mock_of(gateway: Gateway) -> MockResponses:
    return gateway.upstreams["main"].server.app[MOCK_RESPONSES]


def credits_text(micros: int) -> str:
    """Micro-credits as a credit amount for the admin API ("0.070040")."""
    return f"{micros // 10**6}.{micros % 10**6:06d}"


async def settled(gateway: Gateway, account: str) -> dict[str, str]:
    """The newest request record, once nothing is held."""
    await gateway.wait_settled(account)
    return await gateway.last_record(account)


async def books(gateway: Gateway, account: str, key: str, start: int = START) -> tuple[int, int, int]:
    """(What left the balance, the sum of the request records' charges, what /v1/usage reports), in micros."""
    records = await gateway.redis.xrange(keyspace.request_log(account))
    return (
        start - await gateway.balance_micros(account),
        sum(int(fields["credits_micros"]) for _, fields in records),
        await gateway.credits_used_micros(key),
    )


def events_of(raw: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(event.split(b"data: ", 1)[1]) for event in raw.split(b"\n\n") if b"data: " in event]


async def test_web_search_calls_are_billed_per_call_on_top_of_the_tokens(start_gateway: StartGateway) -> None:
    gateway = await start(start_gateway, completion_tokens=12, builtin_tool_calls=3)
    account, key = await gateway.new_account()
    client = AsyncOpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    raw = await client.responses.with_raw_response.create(model="m-main", input="Hello!", tools=WEB_SEARCH)
    response = raw.parse()
    assert [item.type for item in response.output] == ["web_search_call"] * 3 + ["message"]
    usage = response.usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens) == (HELLO_PROMPT_TOKENS, 12)
    # Tokens: 9 * 1,000.25 + 12 * 2,000.15 = 33,004.05 -> 33,005; three calls at 0.012345 credits: 37,035.
    cost = REFERENCE.cost_micros(9, 12) + call_micros(CALL_PRICE, 3)
    assert cost == 33_005 + 37_035 == 70_040
    assert raw.headers["x-credits-used"] == "0.07004" and usage.to_dict()["cost"] == pytest.approx(0.07004)
    record = await settled(gateway, account)
    assert (record["tool_calls"], record["tool_call_micros"], record["credits_micros"]) == ("3", "37035", "70040")
    # Held: the prompt and the default output bound, and the default bound of calls, each at the call price.
    assert int(record["hold_micros"]) == REFERENCE.cost_micros(9, DEFAULT_OUTPUT) + call_micros(CALL_PRICE, 16)
    assert mock_of(gateway).requests[-1]["max_tool_calls"] == DEFAULT_BOUND  # forwarded, as max_output_tokens is
    assert await books(gateway, account, key) == (cost, cost, cost)
    export = await gateway.client.get("/v1/usage/export?format=json", headers={"Authorization": f"Bearer {key}"})
    [row] = await export.json()
    assert (row["tool_calls"], row["tool_call_micros"], row["credits_micros"]) == (3, 37_035, cost)
    await client.close()


async def test_a_stream_bills_the_calls_of_its_terminal_event(start_gateway: StartGateway) -> None:
    gateway = await start(start_gateway, completion_tokens=7, builtin_tool_calls=2)
    account, key = await gateway.new_account()
    client = AsyncOpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    stream = await client.responses.create(model="m-main", input="Hello!", tools=WEB_SEARCH, stream=True)
    events = [event async for event in stream]
    added = [e.item.id for e in events if e.type == "response.output_item.added" and e.item.type == "web_search_call"]
    final = events[-1].response  # type: ignore[union-attr]
    assert events[-1].type == "response.completed" and len(added) == 2
    assert [item.id for item in final.output if item.type == "web_search_call"] == added
    # 9 * 1,000.25 + 7 * 2,000.15 = 23,003.3 -> 23,004; two calls: 24,690.
    cost = REFERENCE.cost_micros(9, 7) + call_micros(CALL_PRICE, 2)
    assert final.usage is not None and final.usage.to_dict()["cost"] == pytest.approx(cost / 10**6)
    record = await settled(gateway, account)
    assert (record["tool_calls"], record["credits_micros"]) == ("2", str(cost))
    assert await books(gateway, account, key) == (cost, cost, cost)
    await client.close()


async def test_a_client_leaving_mid_stream_pays_for_the_calls_it_was_sent(start_gateway: StartGateway) -> None:
    # created, in_progress, then the first call's four events and the second call's `added`: the stream stalls.
    gateway = await start(start_gateway, builtin_tool_calls=3, stall_after_chunks=7)
    account, key = await gateway.new_account()
    body = {"model": "m-main", "input": "Hello!", "tools": WEB_SEARCH, "stream": True}
    response = await gateway.post("/v1/responses", key, body)
    assert response.status == 200
    seen = [orjson.loads((await response.content.readuntil(b"\n\n")).split(b"data: ", 1)[1]) for _ in range(7)]
    assert [event["type"] for event in seen][-1] == "response.output_item.added"
    response.close()
    record = await settled(gateway, account)
    # Two calls sent (the first added and done, the second added): each once. No output token was sent.
    assert record["status"] == "499" and record["tool_calls"] == "2"
    cost = REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 0) + call_micros(CALL_PRICE, 2)
    assert record["credits_micros"] == str(cost) == str(9_003 + 24_690)
    assert await books(gateway, account, key) == (cost, cost, cost)


async def test_a_cut_stream_bills_the_calls_that_arrived(start_gateway: StartGateway) -> None:
    gateway = await start(start_gateway, builtin_tool_calls=3, cut_after_chunks=7)
    account, key = await gateway.new_account()
    body = {"model": "m-main", "input": "Hello!", "tools": WEB_SEARCH, "stream": True}
    response = await gateway.post("/v1/responses", key, body)
    assert response.status == 200
    events = events_of(await response.read())
    assert events[-1]["error"]["code"] == "upstream_error"
    record = await settled(gateway, account)
    assert record["status"] == "502" and record["tool_calls"] == "2"
    cost = REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 0) + call_micros(CALL_PRICE, 2)
    assert await books(gateway, account, key) == (cost, cost, cost)


@pytest.mark.parametrize("stream", [False, True])
async def test_calls_past_max_tool_calls_are_never_billed(start_gateway: StartGateway, stream: bool) -> None:
    """An upstream that makes five calls where the request allowed two: two are billed."""
    gateway = await start(start_gateway, completion_tokens=4, builtin_tool_calls=5, builtin_calls_past_limit=True)
    account, key = await gateway.new_account()
    body = {"model": "m-main", "input": "Hello!", "tools": WEB_SEARCH, "max_tool_calls": 2, "stream": stream}
    response = await gateway.post("/v1/responses", key, body)
    assert response.status == 200
    raw = await response.read()
    answer = events_of(raw)[-1]["response"] if stream else orjson.loads(raw)
    assert [item["type"] for item in answer["output"]].count("web_search_call") == 5
    record = await settled(gateway, account)
    assert record["tool_calls"] == "2" and record["clamped"] == "tool_calls"
    cost = REFERENCE.cost_micros(9, 4) + call_micros(CALL_PRICE, 2)
    assert record["credits_micros"] == str(cost) and answer["usage"]["cost"] == pytest.approx(cost / 10**6)
    assert int(record["hold_micros"]) == REFERENCE.cost_micros(9, DEFAULT_OUTPUT) + call_micros(CALL_PRICE, 2)
    assert mock_of(gateway).requests[-1]["max_tool_calls"] == 2  # the client's own
    assert await books(gateway, account, key) == (cost, cost, cost)
    metrics = await (await gateway.client.get("/metrics")).text()
    assert 'gateway_usage_clamped_total{kind="tool_calls",model="m-main"} 1.0' in metrics


async def test_the_hold_covers_every_call_the_request_allows(start_gateway: StartGateway) -> None:
    gateway = await start(start_gateway, completion_tokens=10, builtin_tool_calls=4)
    body = {"model": "m-main", "input": "Hello!", "tools": WEB_SEARCH, "max_output_tokens": 10, "max_tool_calls": 4}
    # 9 * 1,000.25 + 10 * 2,000.15 = 29,003.75 -> 29,004; four calls: 49,380.
    hold = REFERENCE.cost_micros(9, 10) + call_micros(CALL_PRICE, 4)
    assert hold == 78_384
    short, short_key = await gateway.new_account(credits_text(hold - 1), name="short")
    refused = await gateway.post("/v1/responses", short_key, body)
    assert refused.status == 402 and (await refused.json())["error"]["code"] == "insufficient_quota"
    assert mock_of(gateway).requests == [] and await gateway.balance_micros(short) == hold - 1
    exact, exact_key = await gateway.new_account(credits_text(hold), name="exact")
    served = await gateway.post("/v1/responses", exact_key, body)
    assert served.status == 200
    record = await settled(gateway, exact)
    # The answer used all of it: ten output tokens and four calls.
    assert record["hold_micros"] == record["credits_micros"] == str(hold)
    assert await gateway.balance_micros(exact) == 0


async def test_a_short_balance_shrinks_the_output_bound_never_the_calls(start_gateway: StartGateway) -> None:
    gateway = await start(start_gateway, completion_tokens=50)
    # Room for the default bound of calls and five output tokens: 9 * 1,000.25 + 5 * 2,000.15 = 19,003 exactly.
    balance = REFERENCE.cost_micros(9, 5) + call_micros(CALL_PRICE, DEFAULT_BOUND)
    account, key = await gateway.new_account(credits_text(balance))
    response = await gateway.post("/v1/responses", key, {"model": "m-main", "input": "Hello!", "tools": WEB_SEARCH})
    assert response.status == 200
    forwarded = mock_of(gateway).requests[-1]
    assert (forwarded["max_output_tokens"], forwarded["max_tool_calls"]) == (5, DEFAULT_BOUND)
    record = await settled(gateway, account)
    assert record["hold_micros"] == str(balance) and record["credits_micros"] == str(REFERENCE.cost_micros(9, 5))
    too_short, short_key = await gateway.new_account(credits_text(balance - 19_003), name="short")
    refused = await gateway.post("/v1/responses", short_key, {"model": "m-main", "input": "Hi", "tools": WEB_SEARCH})
    assert refused.status == 402 and await gateway.balance_micros(too_short) == balance - 19_003


@pytest.mark.parametrize(
    ("tools", "served"),
    [
        ([{"type": "file_search", "vector_store_ids": ["vs_1"]}], False),
        ([{"type": "web_search"}, {"type": "image_generation"}], False),
        ([{"type": "web_search_preview"}], False),  # another tool than web_search, with a price of its own
        ([{"type": "web_search_2025_08_26"}], True),  # a dated web_search: its price
        ([{"type": "code_interpreter", "container": {"type": "auto"}}, {"type": "function", "name": "f"}], True),
    ],
)
async def test_a_builtin_tool_passes_only_when_the_model_prices_it(
    start_gateway: StartGateway, tools: list[dict[str, object]], served: bool
) -> None:
    gateway = await start(start_gateway, completion_tokens=3)
    account, key = await gateway.new_account()
    response = await gateway.post("/v1/responses", key, {"model": "m-main", "input": "Hello!", "tools": tools})
    if served:
        assert response.status == 200 and mock_of(gateway).requests[-1]["tools"] == tools
        return
    error = (await response.json())["error"]
    assert response.status == 400 and error["param"] == "tools" and "allowed_fields" in error["message"]
    assert mock_of(gateway).requests == [] and await gateway.balance_micros(account) == START


async def test_allowed_tools_pass_unpriced_and_are_billed_by_tokens_alone(start_gateway: StartGateway) -> None:
    """`allowed_fields = ["tools"]`: the operator's token prices cover the tools it does not price per call."""
    gateway = await start_gateway(
        {"models": priced_model(allowed_fields=frozenset({"tools"}))},
        main={"completion_tokens": 3, "builtin_tool_calls": 2},
    )
    account, key = await gateway.new_account()
    body = {"model": "m-main", "input": "Hello!", "tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}
    response = await gateway.post("/v1/responses", key, body)
    answer = await response.json()
    assert [item["type"] for item in answer["output"]].count("file_search_call") == 2
    assert "max_tool_calls" not in mock_of(gateway).requests[-1]
    record = await settled(gateway, account)
    cost = REFERENCE.cost_micros(9, 3)
    assert "tool_calls" not in record and record["credits_micros"] == str(cost)
    assert int(record["hold_micros"]) == REFERENCE.cost_micros(9, DEFAULT_OUTPUT)
    # Nothing is held per call, so the client's bound is the provider's business, past limits.max_tool_calls too.
    unbounded = await gateway.post("/v1/responses", key, {**body, "max_tool_calls": 500})
    assert unbounded.status == 200 and mock_of(gateway).requests[-1]["max_tool_calls"] == 500


@pytest.mark.parametrize("value", [-1, "2", True, 1.5, 129])
async def test_max_tool_calls_must_be_a_whole_number_within_the_gateways_bound(
    start_gateway: StartGateway, value: object
) -> None:
    gateway = await start(start_gateway)
    account, key = await gateway.new_account()
    body = {"model": "m-main", "input": "Hello!", "tools": WEB_SEARCH, "max_tool_calls": value}
    response = await gateway.post("/v1/responses", key, body)
    error = (await response.json())["error"]
    assert response.status == 400 and error["param"] == "max_tool_calls" and error["type"] == "invalid_request_error"
    assert mock_of(gateway).requests == [] and await gateway.balance_micros(account) == START


async def test_the_model_object_shows_its_prices_per_call(start_gateway: StartGateway) -> None:
    gateway = await start(start_gateway)
    _, key = await gateway.new_account()
    answer = await gateway.client.get("/v1/models/m-main", headers={"Authorization": f"Bearer {key}"})
    pricing = (await answer.json())["pricing"]
    assert pricing["tool_call_credits"] == {"web_search": 0.012345, "code_interpreter": 0.5}


@pytest.mark.parametrize(("bound", "billed"), [(None, 3), (2, 2)])
async def test_a_background_response_bills_its_calls_once_seen_finished(
    start_gateway: StartGateway, bound: int | None, billed: int
) -> None:
    """Held at creation for its calls too; billed when a retrieval shows it finished, at most `max_tool_calls`."""
    no_polls = {"background_poll_seconds": 3600, "background_hold_seconds": 4 * 3600}
    mock = {"completion_tokens": 12, "builtin_tool_calls": 3, "builtin_calls_past_limit": True, "background_looks": 0}
    gateway = await start_gateway({"models": priced_model(), "limits": no_polls}, main=mock)
    account, key = await gateway.new_account()
    client = AsyncOpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    bounded = {} if bound is None else {"max_tool_calls": bound}
    created = await client.responses.create(
        model="m-main",
        input="Hello!",
        tools=WEB_SEARCH,
        background=True,
        **bounded,  # type: ignore[arg-type]
    )
    assert created.status == "queued"
    done = await client.responses.retrieve(created.id)
    assert [item.type for item in done.output].count("web_search_call") == 3
    record = await settled(gateway, account)
    cost = REFERENCE.cost_micros(9, 12) + call_micros(CALL_PRICE, billed)
    assert (record["tool_calls"], record["credits_micros"]) == (str(billed), str(cost))
    assert record["clamped"] == ("" if bound is None else "tool_calls")
    calls_held = call_micros(CALL_PRICE, DEFAULT_BOUND if bound is None else bound)
    assert int(record["hold_micros"]) == REFERENCE.cost_micros(9, DEFAULT_OUTPUT) + calls_held
    assert await books(gateway, account, key) == (cost, cost, cost)
    await client.close()
