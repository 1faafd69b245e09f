"""Background responses (`background: true`) through the gateway, against the mock upstream: held at creation, billed
exactly once when the gateway first sees the answer finished (a client's retrieval, cancel or delete, or its own
look), free when cancelled before any output. Every bill is the mock's usage times the price, by hand."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI

from gateway.app_state import BACKGROUND_BILLS, LEDGER
from gateway.billing import keyspace
from gateway.billing.scripts import Hold
from gateway.mock.responses import MOCK_RESPONSES, MockResponses
from gateway.proxy.background import BackgroundPoller
from tests.common import HELLO_PROMPT_TOKENS, REFERENCE, Gateway, StartGateway

START = 1000 * 10**6  # a new account's balance in micro-credits
# The gateway's own look waits for the test to make it (a pass every hour, holds for four).
NO_POLLS = {"limits": {"background_poll_seconds": 3600, "background_hold_seconds": 4 * 3600}}


def client_for(gateway: Gateway, key: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)


def mock_of(gateway: Gateway) -> MockResponses:
    return gateway.upstreams["main"].server.app[MOCK_RESPONSES]


async def the_hold(gateway: Gateway, account: str) -> Hold:
    holds = (await gateway.app[LEDGER].holds_of([account]))[0]
    assert len(holds) == 1, holds
    return next(iter(holds.values()))


async def records(gateway: Gateway, account: str) -> int:
    return int(await gateway.redis.xlen(keyspace.request_log(account)))


async def listed(gateway: Gateway) -> list[str]:
    return [keyspace.as_text(m) for m in await gateway.redis.zrange(keyspace.BACKGROUND_ANSWERS, 0, -1)]


async def usage_total(gateway: Gateway, key: str) -> tuple[int, int]:
    response = await gateway.client.get("/v1/usage", headers={"Authorization": f"Bearer {key}"})
    body = await response.json()
    return body["total_requests"], body["total_credits_used_micros"]


def cost_of(usage: Any) -> int:
    return REFERENCE.cost_micros(usage.input_tokens, usage.output_tokens, usage.input_tokens_details.cached_tokens)


async def test_held_at_creation_and_billed_once_however_often_it_is_polled(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(NO_POLLS, main={"completion_tokens": 12, "background_looks": 3})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    raw = await client.responses.with_raw_response.create(model="m-main", input="Hello!", background=True)
    created = raw.parse()
    assert created.status == "queued" and created.usage is None
    hold = await the_hold(gateway, account)
    # Held: 9 prompt tokens and the forwarded bound of 256 output tokens, at the suite's prices, rounded up.
    assert hold.amount_micros == REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 256)
    assert hold.deadline_ms >= int(gateway.clock.now * 1000) + 4 * 3600 * 1000
    assert raw.headers["x-credits-remaining"] == f"{(START - hold.amount_micros) / 10**6:.6f}".rstrip("0")
    assert "x-credits-used" not in raw.headers  # nothing charged yet
    assert await listed(gateway) == [f"{account} {created.id}"]
    for _ in range(3):
        assert (await client.responses.retrieve(created.id)).status == "in_progress"
        assert await records(gateway, account) == 0
    done = await client.responses.retrieve(created.id)
    assert done.status == "completed" and done.usage is not None and done.usage.output_tokens == 12
    cost = cost_of(done.usage)
    assert cost == REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 12) == 33_005
    for _ in range(3):
        assert (await client.responses.retrieve(created.id)).status == "completed"
    assert await records(gateway, account) == 1
    assert await gateway.balance_micros(account) == START - cost
    assert await gateway.app[LEDGER].reserved(account) == 0
    assert await usage_total(gateway, key) == (1, cost)
    record = await gateway.last_record(account)
    assert record["api"] == "responses" and record["status"] == "200" and record["usage_source"] == "upstream"
    assert record["credits_micros"] == str(cost) and record["completion_tokens"] == "12"
    assert await listed(gateway) == []
    assert [method for method, _ in mock_of(gateway).calls] == ["GET"] * 7  # every retrieval was forwarded
    await client.close()


async def test_two_retrievals_that_see_it_finished_at_once_bill_it_once(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(NO_POLLS, main={"completion_tokens": 5, "background_looks": 0})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    created = await client.responses.create(model="m-main", input="Hello!", background=True)
    seen = await asyncio.gather(*(client.responses.retrieve(created.id) for _ in range(6)))
    assert {response.status for response in seen} == {"completed"}
    cost = REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 5)
    assert await gateway.balance_micros(account) == START - cost
    assert await records(gateway, account) == 1 and await usage_total(gateway, key) == (1, cost)
    await client.close()


async def test_cancelled_before_any_output_is_free(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(NO_POLLS, main={"completion_tokens": 12, "background_looks": 5})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    created = await client.responses.create(model="m-main", input="Hello!", background=True)
    cancelled = await client.responses.cancel(created.id)
    assert cancelled.status == "cancelled" and cancelled.output == []
    assert await gateway.balance_micros(account) == START
    assert await gateway.app[LEDGER].reserved(account) == 0
    record = await gateway.last_record(account)
    assert record["credits_micros"] == "0" and record["status"] == "499"
    assert await usage_total(gateway, key) == (1, 0)
    assert (await client.responses.retrieve(created.id)).status == "cancelled"
    assert await records(gateway, account) == 1
    await client.close()


async def test_cancelled_after_output_is_billed_its_usage(start_gateway: StartGateway) -> None:
    options = {"completion_tokens": 7, "background_looks": 5, "cancel_with_output": True}
    gateway = await start_gateway(NO_POLLS, main=options)
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    created = await client.responses.create(model="m-main", input="Hello!", background=True)
    cancelled = await client.responses.cancel(created.id)
    assert cancelled.status == "cancelled" and cancelled.usage is not None
    cost = REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 7)
    assert cost_of(cancelled.usage) == cost
    assert await gateway.balance_micros(account) == START - cost
    assert await usage_total(gateway, key) == (1, cost)
    await client.close()


async def test_the_gateways_own_look_bills_it(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(NO_POLLS, main={"completion_tokens": 9, "background_looks": 1})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    created = await client.responses.create(model="m-main", input="Hello!", background=True)
    poller = BackgroundPoller(gateway.app[BACKGROUND_BILLS])
    assert await poller.poll() == 0  # not due yet: the first look is one poll interval after creation
    gateway.clock.now += 3600
    await gateway.redis.delete(keyspace.BACKGROUND_LOCK)
    assert await poller.poll() == 1  # in progress: looked at again an interval later
    assert await records(gateway, account) == 0 and await listed(gateway) == [f"{account} {created.id}"]
    gateway.clock.now += 3600
    await gateway.redis.delete(keyspace.BACKGROUND_LOCK)
    assert await poller.poll() == 1
    cost = REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 9)
    assert await gateway.balance_micros(account) == START - cost
    assert await listed(gateway) == [] and await records(gateway, account) == 1
    # The client's retrieval afterwards bills nothing more.
    assert (await client.responses.retrieve(created.id)).status == "completed"
    assert await usage_total(gateway, key) == (1, cost)
    await client.close()


async def test_one_still_running_near_its_deadline_is_cancelled_and_billed(start_gateway: StartGateway) -> None:
    options = {"completion_tokens": 6, "background_looks": 1000, "cancel_with_output": True}
    gateway = await start_gateway(NO_POLLS, main=options)
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    created = await client.responses.create(model="m-main", input="Hello!", background=True)
    hold = await the_hold(gateway, account)
    # Two poll intervals before the hold's deadline: the last look.
    gateway.clock.now = (hold.deadline_ms - 2 * 3600 * 1000) / 1000
    assert await BackgroundPoller(gateway.app[BACKGROUND_BILLS]).poll() == 1
    assert [method for method, _ in mock_of(gateway).calls] == ["GET", "POST"]  # looked at, then cancelled
    cost = REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 6)
    assert await gateway.balance_micros(account) == START - cost
    assert await gateway.app[LEDGER].reserved(account) == 0
    assert (await client.responses.retrieve(created.id)).status == "cancelled"
    assert await usage_total(gateway, key) == (1, cost)
    await client.close()


async def test_an_answer_the_upstream_lost_is_billed_its_prompt(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(NO_POLLS, main={"completion_tokens": 6, "background_looks": 1000})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    created = await client.responses.create(model="m-main", input="Hello!", background=True)
    del mock_of(gateway).stored[created.id]  # the provider no longer knows it: 404
    await gateway.app[BACKGROUND_BILLS].look(account, created.id)
    cost = REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 0)
    assert await gateway.balance_micros(account) == START - cost
    record = await gateway.last_record(account)
    assert record["usage_source"] == "gateway" and record["completion_tokens"] == "0"
    await client.close()


async def test_deleting_a_running_one_bills_it_first(start_gateway: StartGateway) -> None:
    options = {"completion_tokens": 8, "background_looks": 1000, "cancel_with_output": True}
    gateway = await start_gateway(NO_POLLS, main=options)
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    created = await client.responses.create(model="m-main", input="Hello!", background=True)
    deleted = await client.responses.with_raw_response.delete(created.id)
    assert deleted.http_response.status_code == 200
    assert [method for method, _ in mock_of(gateway).calls] == ["GET", "POST", "DELETE"]
    cost = REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 8)
    assert await gateway.balance_micros(account) == START - cost
    assert await gateway.app[LEDGER].reserved(account) == 0 and await listed(gateway) == []
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(created.id)
    await client.close()


async def test_another_accounts_retrieval_neither_sees_nor_bills_it(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(NO_POLLS, main={"completion_tokens": 4, "background_looks": 0})
    account, key = await gateway.new_account(name="owner")
    _, other_key = await gateway.new_account(name="other")
    owner = client_for(gateway, key)
    created = await owner.responses.create(model="m-main", input="Hello!", background=True)
    other = client_for(gateway, other_key)
    for call in (other.responses.retrieve, other.responses.cancel, other.responses.delete):
        with pytest.raises(openai.NotFoundError):
            await call(created.id)
    assert mock_of(gateway).calls == [] and await records(gateway, account) == 0
    assert await gateway.app[LEDGER].reserved(account) > 0
    await owner.close()
    await other.close()


async def test_a_background_stream_that_finishes_is_billed_at_once(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(NO_POLLS, main={"completion_tokens": 5})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    stream = await client.responses.create(model="m-main", input="Hello!", background=True, stream=True)
    events = [event async for event in stream]
    final = events[-1].response  # type: ignore[union-attr]
    assert events[-1].type == "response.completed" and final.usage is not None
    cost = REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 5)
    assert final.usage.to_dict()["cost"] == pytest.approx(cost / 10**6)
    assert await gateway.balance_micros(account) == START - cost
    assert await listed(gateway) == []
    await client.close()


async def test_a_client_leaving_a_background_stream_is_billed_the_whole_answer(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(NO_POLLS, main={"completion_tokens": 200, "chunk_delay_ms": 20})
    account, key = await gateway.new_account()
    body = {"model": "m-main", "input": "Hello!", "stream": True, "background": True}
    response = await gateway.client.post("/v1/responses", json=body, headers={"Authorization": f"Bearer {key}"})
    for _ in range(8):  # created, in_progress, item added, part added, four deltas
        await response.content.readuntil(b"\n\n")
    response.close()
    # The provider goes on making it: the bill waits for it, held, listed.
    for _ in range(250):
        if await listed(gateway):
            break
        await asyncio.sleep(0.02)
    [member] = await listed(gateway)
    answer_id = member.rpartition(" ")[2]
    assert await records(gateway, account) == 0 and await gateway.app[LEDGER].reserved(account) > 0
    client = client_for(gateway, key)
    done = await client.responses.retrieve(answer_id)
    assert done.status == "completed" and done.usage is not None and done.usage.output_tokens == 200
    cost = REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 200)
    assert await gateway.balance_micros(account) == START - cost
    assert await usage_total(gateway, key) == (1, cost)
    await client.close()


async def test_a_background_response_must_be_stored(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(NO_POLLS)
    account, key = await gateway.new_account()
    body = {"model": "m-main", "input": "Hello!", "background": True, "store": False}
    response = await gateway.client.post("/v1/responses", json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status == 400 and (await response.json())["error"]["param"] == "store"
    assert mock_of(gateway).requests == [] and await gateway.balance_micros(account) == START


async def test_a_resumed_stream_bills_it_by_its_terminal_event(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(NO_POLLS, main={"completion_tokens": 11, "background_looks": 5})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    created = await client.responses.create(model="m-main", input="Hello!", background=True)
    stream = await client.responses.retrieve(created.id, stream=True, starting_after=0)
    events = [event async for event in stream]
    assert [event.type for event in events] == ["response.completed"]  # the mock's event 0 was skipped
    cost = REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 11)
    assert await gateway.balance_micros(account) == START - cost
    assert (await client.responses.retrieve(created.id)).status == "completed"
    again = await client.responses.retrieve(created.id, stream=True)
    assert [event.type async for event in again] == ["response.in_progress", "response.completed"]
    assert await records(gateway, account) == 1 and await usage_total(gateway, key) == (1, cost)
    assert await listed(gateway) == []
    await client.close()


async def test_one_that_failed_costs_nothing(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(NO_POLLS, main={"completion_tokens": 6, "background_looks": 0})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    created = await client.responses.create(model="m-main", input="Hello!", background=True)
    kept = mock_of(gateway).stored[created.id]
    kept.response = {**kept.response, "status": "failed"}  # the provider failed it, usage and all
    assert (await client.responses.retrieve(created.id)).status == "failed"
    assert await gateway.balance_micros(account) == START
    assert await gateway.app[LEDGER].reserved(account) == 0 and await listed(gateway) == []
    record = await gateway.last_record(account)
    assert record["credits_micros"] == "0" and record["status"] == "502"
    await client.close()
