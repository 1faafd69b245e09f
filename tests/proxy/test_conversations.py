"""Conversations (OpenAI's Conversations API, and `conversation` on /v1/responses) through the gateway, driven by the
official openai client against the mock upstream, which keeps them with its own count: owned per account, never
billed themselves, and a response made in one held for its context and billed the mock's usage times the price
(tests/oracle.py). Token figures are worked out here by hand, never taken from the gateway."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import orjson
import pytest
from openai import AsyncOpenAI

from gateway.app_state import LEDGER
from gateway.billing import keyspace
from gateway.mock.conversations import MOCK_CONVERSATIONS, MockConversations
from gateway.mock.responses import MOCK_RESPONSES
from tests.common import HELLO_PROMPT_TOKENS, REFERENCE, Gateway, StartGateway

START = 1000 * 10**6  # a new account's balance in micro-credits
HELLO_ITEM: dict[str, Any] = {"type": "message", "role": "user", "content": "Hello!"}
# One "Hello!" user item as a request of its own, by the cookbook's rule: 3 per message + "user" (1) + "Hello" "!"
# (2) + 3 priming the reply. The mock charges items added since a conversation's last response this way.
HELLO_ITEM_TOKENS = 9
NOBODYS = "conv_" + "0" * 48  # a well-formed id no one ever created


def client_for(gateway: Gateway, key: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)


def conversations_of(gateway: Gateway, name: str = "main") -> MockConversations:
    return gateway.upstreams[name].server.app[MOCK_CONVERSATIONS]


async def settled_record(gateway: Gateway, account: str, count: int) -> dict[str, str]:
    """Once `count` requests have settled and nothing is held: the newest record."""
    for _ in range(250):
        if (
            await gateway.redis.xlen(keyspace.request_log(account)) >= count
            and await gateway.app[LEDGER].reserved(account) == 0
        ):
            return await gateway.last_record(account)
        await asyncio.sleep(0.02)
    raise AssertionError("the request never settled")


async def test_a_response_in_a_conversation_is_held_and_billed_for_its_context(start_gateway: StartGateway) -> None:
    """With the clamp at the gateway's own count exactly, each turn's usage (its own tokens plus the conversation's)
    is believed only if the gateway held for the conversation's context too."""
    limits = {"prompt_clamp_ratio": 1, "prompt_clamp_slack": 0}
    gateway = await start_gateway({"limits": limits}, main={"completion_tokens": 12})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    conversation = await client.conversations.create(items=[HELLO_ITEM], metadata={"topic": "greetings"})
    assert conversation.id.startswith("conv_") and conversation.metadata == {"topic": "greetings"}
    expected = [
        HELLO_PROMPT_TOKENS + HELLO_ITEM_TOKENS,  # 18: its own "Hello!" and the conversation's item
        HELLO_PROMPT_TOKENS + 18 + 12,  # 39: the first turn's input and output, charged again
        HELLO_PROMPT_TOKENS + 39 + 12 + HELLO_ITEM_TOKENS,  # 69: the second turn's, and the item added since
    ]
    first = await client.responses.create(model="m-main", input="Hello!", conversation=conversation.id)
    second = await client.responses.create(model="m-main", input="Hello!", conversation={"id": conversation.id})
    await client.conversations.items.create(conversation.id, items=[HELLO_ITEM])
    stream = await client.responses.create(model="m-main", input="Hello!", conversation=conversation.id, stream=True)
    third = [event async for event in stream][-1].response  # type: ignore[union-attr]
    await settled_record(gateway, account, 3)
    records = [fields for _, fields in await gateway.redis.xrange(keyspace.request_log(account))]
    costs = []
    for turn, (response, record) in enumerate(zip((first, second, third), records, strict=True)):
        assert response.usage is not None and response.usage.input_tokens == expected[turn]
        assert response.usage.output_tokens == 12
        costs.append(REFERENCE.cost_micros(expected[turn], 12))
        assert response.usage.to_dict()["cost"] == pytest.approx(costs[-1] / 10**6)
        # The gateway held for the same figure (its own count), so the mock's usage was believed, unclamped.
        assert record["gateway_prompt_tokens"] == str(expected[turn]) and record["clamped"] == ""
        assert record["prompt_tokens"] == str(expected[turn])
    # 18 * 1,000.25 + 12 * 2,000.15 = 18,004.5 + 24,001.8 = 42,006.3, rounded up; then 39 and 69 input tokens.
    assert costs == [42_007, 63_012, 93_020]
    assert await gateway.balance_micros(account) == START - sum(costs)
    # Only the three responses were billed: the conversation's own routes are free.
    assert await gateway.redis.xlen(keyspace.request_log(account)) == 3
    # The next turn's input, counted and never forwarded: the third turn's input and output, and its own.
    counted = await client.responses.input_tokens.count(model="m-main", input="Hello!", conversation=conversation.id)
    assert counted.input_tokens == HELLO_PROMPT_TOKENS + 69 + 12
    items = await client.conversations.items.list(conversation.id, order="asc")
    # The item it was made with, each turn's input and output, and the item added between turns.
    assert [item.type for item in items.data] == ["message"] * 8
    await client.close()


async def test_every_conversation_route_works_for_its_owner_and_is_free(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 4})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    created = await client.conversations.create()
    assert (await client.conversations.retrieve(created.id)).id == created.id
    updated = await client.conversations.update(created.id, metadata={"stage": "two"})
    assert updated.metadata == {"stage": "two"}
    added = await client.conversations.items.create(created.id, items=[HELLO_ITEM, {**HELLO_ITEM, "content": "Hi"}])
    assert len(added.data) == 2
    first_id = added.data[0].id  # type: ignore[union-attr]
    item = await client.conversations.items.retrieve(first_id, conversation_id=created.id)
    assert item.id == first_id  # type: ignore[union-attr]
    page = await client.conversations.items.list(created.id, limit=1, order="asc")
    assert [each.id for each in page.data] == [first_id] and page.has_more  # type: ignore[union-attr]
    after_delete = await client.conversations.items.delete(first_id, conversation_id=created.id)
    assert after_delete.id == created.id and after_delete.object == "conversation"
    with pytest.raises(openai.NotFoundError):  # the mock's own 404, passed through
        await client.conversations.items.retrieve(first_id, conversation_id=created.id)
    deleted = await client.conversations.delete(created.id)
    assert deleted.deleted and deleted.object == "conversation.deleted"
    assert [method for method, _ in conversations_of(gateway).calls] == [
        "POST",
        "GET",
        "POST",
        "POST",
        "GET",
        "GET",
        "DELETE",
        "GET",
        "DELETE",
    ]
    assert await gateway.balance_micros(account) == START
    assert await gateway.redis.xlen(keyspace.request_log(account)) == 0
    await client.close()


async def test_another_accounts_conversation_is_404_on_every_route(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 4})
    _, key = await gateway.new_account(name="owner")
    other_account, other_key = await gateway.new_account(name="other")
    owner, other = client_for(gateway, key), client_for(gateway, other_key)
    created = await owner.conversations.create(items=[HELLO_ITEM])
    item_id = (await owner.conversations.items.list(created.id)).data[0].id  # type: ignore[union-attr]
    attempts = {
        "retrieve": lambda client, cid: client.conversations.retrieve(cid),
        "update": lambda client, cid: client.conversations.update(cid, metadata={"x": "y"}),
        "delete": lambda client, cid: client.conversations.delete(cid),
        "add items": lambda client, cid: client.conversations.items.create(cid, items=[HELLO_ITEM]),
        "list items": lambda client, cid: client.conversations.items.list(cid),
        "retrieve item": lambda client, cid: client.conversations.items.retrieve(item_id, conversation_id=cid),
        "delete item": lambda client, cid: client.conversations.items.delete(item_id, conversation_id=cid),
        "respond": lambda client, cid: client.responses.create(model="m-main", input="Hi", conversation=cid),
        "stream": lambda client, cid: client.responses.create(
            model="m-main", input="Hi", conversation={"id": cid}, stream=True
        ),
        "count": lambda client, cid: client.responses.input_tokens.count(model="m-main", conversation=cid),
    }
    calls_before = list(conversations_of(gateway).calls)
    for name, attempt in attempts.items():
        answers = []
        for cid in (created.id, NOBODYS):  # another account's id, and one that never existed
            with pytest.raises(openai.NotFoundError) as caught:
                await attempt(other, cid)
            body = caught.value.body
            assert isinstance(body, dict), name
            answers.append((body["code"], body["type"], body["param"], body["message"].replace(cid, "ID")))
        assert answers[0] == answers[1] and answers[0][0] == "not_found", name
    # Nothing reached the upstream, and nothing was billed or held.
    assert conversations_of(gateway).calls == calls_before
    assert gateway.upstreams["main"].server.app[MOCK_RESPONSES].requests == []
    assert await gateway.balance_micros(other_account) == START
    assert await gateway.redis.xlen(keyspace.request_log(other_account)) == 0
    # A key that is not one is 401 first, whatever the id: a 404 never answers an unchecked key.
    stranger = client_for(gateway, key[:-4] + "0000")
    for attempt in (attempts["retrieve"], attempts["respond"]):
        with pytest.raises(openai.AuthenticationError):
            await attempt(stranger, created.id)
    await stranger.close()
    # The owner still has it, whole.
    assert len((await owner.conversations.items.list(created.id)).data) == 1
    await owner.close()
    await other.close()


async def test_a_deleted_conversation_is_forgotten(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 4})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    created = await client.conversations.create(items=[HELLO_ITEM])
    assert await gateway.redis.exists(keyspace.kept_conversation(account, created.id)) == 1
    await client.conversations.delete(created.id)
    assert await gateway.redis.exists(keyspace.kept_conversation(account, created.id)) == 0
    calls = len(conversations_of(gateway).calls)
    with pytest.raises(openai.NotFoundError):
        await client.conversations.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model="m-main", input="Hi", conversation=created.id)
    assert len(conversations_of(gateway).calls) == calls  # answered by the gateway alone
    assert gateway.upstreams["main"].server.app[MOCK_RESPONSES].requests == []
    await client.close()


async def test_conversation_and_previous_response_id_together_are_refused(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 4})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    created = await client.conversations.create()
    earlier = await client.responses.create(model="m-main", input="Hello!")
    await settled_record(gateway, account, 1)
    balance = await gateway.balance_micros(account)
    for count in (False, True):
        with pytest.raises(openai.BadRequestError) as caught:
            body: dict[str, Any] = {"model": "m-main", "conversation": created.id, "previous_response_id": earlier.id}
            if count:
                await client.responses.input_tokens.count(**body)
            else:
                await client.responses.create(input="Hi", **body)
        assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "conversation"
    assert len(gateway.upstreams["main"].server.app[MOCK_RESPONSES].requests) == 1
    assert await gateway.balance_micros(account) == balance
    await client.close()


async def test_bodies_are_checked_before_they_are_forwarded(start_gateway: StartGateway) -> None:
    gateway = await start_gateway({"server": {"max_body_bytes": 4096}})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    created = await client.conversations.create()
    await client.close()
    calls = len(conversations_of(gateway).calls)
    many = {f"k{n}": "v" for n in range(17)}
    refused: list[tuple[str, object, int, str | None]] = [
        ("/v1/conversations", {"items": [HELLO_ITEM] * 21}, 400, "items"),
        ("/v1/conversations", {"items": HELLO_ITEM}, 400, "items"),
        ("/v1/conversations", {"items": [{**HELLO_ITEM, "role": "boss"}]}, 400, "items[0].role"),
        ("/v1/conversations", {"items": [HELLO_ITEM, "text"]}, 400, "items[1]"),
        ("/v1/conversations", {"metadata": many}, 400, "metadata"),
        ("/v1/conversations", {"metadata": {"k": 1}}, 400, "metadata"),
        ("/v1/conversations", {"metadata": {"k" * 65: "v"}}, 400, "metadata"),
        ("/v1/conversations", [HELLO_ITEM], 400, None),
        ("/v1/conversations", {"items": [{**HELLO_ITEM, "content": "x" * 5000}]}, 413, None),
        (f"/v1/conversations/{created.id}/items", {"items": []}, 400, "items"),
        (f"/v1/conversations/{created.id}/items", {}, 400, "items"),
        (f"/v1/conversations/{created.id}", {"metadata": "none"}, 400, "metadata"),
    ]
    for path, body, status, param in refused:
        response = await gateway.post(path, key, body)
        error = (await response.json())["error"]
        assert (response.status, error["param"]) == (status, param), (path, body)
        assert error["type"] == "invalid_request_error" and response.headers["x-credits-remaining"] == "1000"
    raw = await gateway.client.post(
        "/v1/conversations", data=b"{", headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    )
    assert raw.status == 400 and (await raw.json())["error"]["code"] == "invalid_request"
    assert len(conversations_of(gateway).calls) == calls  # none of them was forwarded
    assert await gateway.balance_micros(account) == START


async def test_upstream_errors_pass_scrubbed_and_create_nothing(start_gateway: StartGateway) -> None:
    leaked = {"error": {"message": "Bad key sk-proj-abcdefghijklmnop used", "type": "invalid_request_error"}}
    gateway = await start_gateway(main={"error_status": 400, "error_body": orjson.dumps(leaked)})
    account, key = await gateway.new_account()
    response = await gateway.post("/v1/conversations", key, {"items": [HELLO_ITEM]})
    error = (await response.json())["error"]
    assert response.status == 400 and error["message"] == "Bad key [redacted] used"
    assert await gateway.redis.keys(keyspace.kept_conversation(account, "*")) == []
    broken = await start_gateway(main={"error_status": 500, "error_body": b"<html>Traceback (most recent call"})
    _, key = await broken.new_account()
    response = await broken.post("/v1/conversations", key, {})
    body = await response.json()
    assert response.status == 502 and body["error"]["code"] == "upstream_error" and "Traceback" not in str(body)


async def test_a_client_leaving_a_turn_leaves_the_conversation_at_its_bound(start_gateway: StartGateway) -> None:
    """The provider may finish the answer of a client that left: the conversation keeps the most it can hold, the
    turn's input and its output bound, until a later turn says what the provider billed."""
    gateway = await start_gateway(main={"completion_tokens": 200, "chunk_delay_ms": 20})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    created = await client.conversations.create(items=[HELLO_ITEM])
    await client.close()
    body = {"model": "m-main", "input": "Hello!", "stream": True, "conversation": created.id}
    response = await gateway.post("/v1/responses", key, body)
    for _ in range(8):  # created, in_progress, item added, part added, four deltas
        await response.content.readuntil(b"\n\n")
    response.close()
    record = await settled_record(gateway, account, 1)
    assert record["status"] == "499" and record["gateway_prompt_tokens"] == "18"
    stored = await gateway.redis.hget(keyspace.kept_conversation(account, created.id), "context_tokens")
    # The turn's 18 input tokens and its output bound, the suite's default_max_tokens of 256.
    assert stored == str(18 + 256)


async def test_conversations_are_kept_by_one_upstream(start_gateway: StartGateway) -> None:
    """The upstream that sets `conversations = true` keeps them; a model of another upstream cannot be used in one
    (that upstream would not know it)."""
    keeper = {"upstream_fields": {"keeper": {"conversations": True}}}
    gateway = await start_gateway(keeper, main={"completion_tokens": 4}, keeper={"completion_tokens": 4})
    _, key = await gateway.new_account()
    client = client_for(gateway, key)
    created = await client.conversations.create()
    assert conversations_of(gateway, "main").calls == [] and len(conversations_of(gateway, "keeper").calls) == 1
    response = await client.responses.create(model="m-keeper", input="Hello!", conversation=created.id)
    assert response.usage is not None and response.usage.input_tokens == HELLO_PROMPT_TOKENS
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="m-main", input="Hello!", conversation=created.id)
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "model"
    assert gateway.upstreams["main"].server.app[MOCK_RESPONSES].requests == []
    await client.close()


async def test_a_turn_the_upstream_refuses_leaves_the_context_as_it_was(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"fail_status": 500})  # responses fail; conversations still answer
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    created = await client.conversations.create(items=[HELLO_ITEM])
    with pytest.raises(openai.InternalServerError):
        await client.responses.create(model="m-main", input="Hello!", conversation=created.id)
    record = await settled_record(gateway, account, 1)
    assert record["status"] == "500" and record["credits_micros"] == "0"
    stored = await gateway.redis.hget(keyspace.kept_conversation(account, created.id), "context_tokens")
    assert stored == str(HELLO_ITEM_TOKENS)
    await client.close()


async def test_a_background_turn_leaves_its_bound_until_the_next_turn_sets_the_bill(
    start_gateway: StartGateway,
) -> None:
    """A background response's bill waits for it to finish, and the provider adds it to the conversation then: the
    conversation is held at the turn's bound meanwhile, and the next turn's bill sets it to what was billed."""
    no_polls = {"limits": {"background_poll_seconds": 3600, "background_hold_seconds": 4 * 3600}}
    gateway = await start_gateway(no_polls, main={"completion_tokens": 12, "background_looks": 0})
    account, key = await gateway.new_account()
    client = client_for(gateway, key)
    created = await client.conversations.create(items=[HELLO_ITEM])
    queued = await client.responses.create(model="m-main", input="Hello!", conversation=created.id, background=True)
    assert queued.status == "queued"
    stored = await gateway.redis.hget(keyspace.kept_conversation(account, created.id), "context_tokens")
    assert stored == str(18 + 256)  # its 18 input tokens and the suite's output bound of 256
    done = await client.responses.retrieve(queued.id)
    assert done.status == "completed" and done.usage is not None and done.usage.input_tokens == 18
    follow = await client.responses.create(model="m-main", input="Hello!", conversation=created.id)
    # The mock charged the background turn's 18 + 12 again; the gateway held for its bound, 274.
    assert follow.usage is not None and follow.usage.input_tokens == HELLO_PROMPT_TOKENS + 30
    record = await settled_record(gateway, account, 2)
    assert record["gateway_prompt_tokens"] == str(HELLO_PROMPT_TOKENS + 274) and record["clamped"] == ""
    counted = await client.responses.input_tokens.count(model="m-main", input="Hello!", conversation=created.id)
    assert counted.input_tokens == HELLO_PROMPT_TOKENS + 39 + 12  # set by the bill: exact again
    await client.close()
