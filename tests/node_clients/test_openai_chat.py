"""openai-node's chat.completions.create, unmodified, against the gateway and the mock upstream."""

from __future__ import annotations

from tests.common import HELLO_PROMPT_TOKENS, REFERENCE, StartGateway, user_message
from tests.node_clients.node import NodeClients, credits, step

CHAT = {"model": "m-main", "messages": user_message()}
START = 1000 * 10**6


async def test_plain_and_streamed_are_billed_the_mock_usage_at_the_price(
    start_gateway: StartGateway, node_clients: NodeClients
) -> None:
    gateway = await start_gateway(main={"completion_tokens": 12})
    account, key = await gateway.new_account(credits=1000)
    streamed = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    plain, stream = await node_clients.run(
        "openai.mjs",
        gateway.base_url,
        key,
        step("chat.completions.create", CHAT),
        step("chat.completions.create", streamed),
    )
    # 9 * 1,000.25 + 12 * 2,000.15 = 9,002.25 + 24,001.8 = 33,004.05 micro-credits, rounded up.
    cost = REFERENCE.cost_micros(HELLO_PROMPT_TOKENS, 12)
    assert cost == 33_005
    for usage, spent in ((plain["data"]["usage"], cost), (stream["usage"], 2 * cost)):
        assert (usage["prompt_tokens"], usage["completion_tokens"]) == (HELLO_PROMPT_TOKENS, 12)
        assert (usage["cost"], usage["credits_remaining"]) == (credits(cost), credits(START - spent))
    assert plain["headers"]["x-credits-remaining"] == str(credits(START - cost))
    assert plain["data"]["choices"][0]["message"]["content"] and stream["text"]
    assert set(stream["events"]) == {"chat.completion.chunk"}
    assert await gateway.balance_micros(account) == START - 2 * cost


async def test_a_bad_key_raises_authentication_error(start_gateway: StartGateway, node_clients: NodeClients) -> None:
    gateway = await start_gateway()
    [answer] = await node_clients.run(
        "openai.mjs", gateway.base_url, "sk-gw-nope", step("chat.completions.create", CHAT)
    )
    error = answer["error"]
    assert (error["name"], error["status"], error["code"]) == ("AuthenticationError", 401, "invalid_api_key")


async def test_an_account_without_credits_gets_402(start_gateway: StartGateway, node_clients: NodeClients) -> None:
    gateway = await start_gateway()
    account, key = await gateway.new_account(credits=0)
    [answer] = await node_clients.run("openai.mjs", gateway.base_url, key, step("chat.completions.create", CHAT))
    error = answer["error"]
    assert (error["name"], error["status"], error["code"]) == ("APIError", 402, "insufficient_quota")
    assert await gateway.balance_micros(account) == 0 and gateway.upstreams["main"].state.requests == []
