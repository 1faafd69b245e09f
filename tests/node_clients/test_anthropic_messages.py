"""@anthropic-ai/sdk's messages.create, messages.stream and messages.countTokens, unmodified, against the gateway
and a mock Anthropic upstream; the key as `x-api-key` and as a bearer token."""

from __future__ import annotations

import pytest

from tests.common import REFERENCE, Gateway, StartGateway
from tests.node_clients.node import NodeClients, credits, step

HELLO = {"model": "m-main", "max_tokens": 64, "messages": [{"role": "user", "content": "Hello!"}]}
# The mock's own count: 3 per request, 3 per message, and "Hello!" (2 o200k tokens) x 1.7, rounded up: 4.
HELLO_INPUT = 10
START = 1000 * 10**6


async def start(start_gateway: StartGateway) -> Gateway:
    """The gateway in front of the mock as an Anthropic upstream, writing 12-token answers."""
    return await start_gateway({"upstream_fields": {"main": {"api": "anthropic"}}}, main={"completion_tokens": 12})


def root(gateway: Gateway) -> str:
    """The gateway's root: the SDK appends /v1/messages."""
    return str(gateway.client.make_url("/"))


@pytest.mark.parametrize(
    "client",
    [{"GW_SDK": "0", "GW_AUTH": "apiKey"}, {"GW_AUTH": "apiKey"}, {"GW_AUTH": "authToken"}],
    ids=["0.x-apiKey-as-x-api-key", "apiKey-as-bearer", "authToken-as-bearer"],
)
async def test_create_is_billed_the_mock_usage_at_the_price(
    start_gateway: StartGateway, node_clients: NodeClients, client: dict[str, str]
) -> None:
    gateway = await start(start_gateway)
    account, key = await gateway.new_account(credits=1000)
    [answer] = await node_clients.run("anthropic.mjs", root(gateway), key, step("messages.create", HELLO), **client)
    # 10 * 1,000.25 + 12 * 2,000.15 = 10,002.5 + 24,001.8 = 34,004.3 micro-credits, rounded up.
    cost = REFERENCE.cost_micros(HELLO_INPUT, 12)
    assert cost == 34_005
    usage = answer["data"]["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (HELLO_INPUT, 12)
    assert (usage["cost"], usage["credits_remaining"]) == (credits(cost), credits(START - cost))
    assert answer["data"]["content"][0]["text"]
    assert await gateway.balance_micros(account) == START - cost


async def test_stream_and_count_tokens(start_gateway: StartGateway, node_clients: NodeClients) -> None:
    gateway = await start(start_gateway)
    account, key = await gateway.new_account(credits=1000)
    count = {"model": HELLO["model"], "messages": HELLO["messages"]}
    stream, counted = await node_clients.run(
        "anthropic.mjs", root(gateway), key, step("messages.stream", HELLO), step("messages.countTokens", count)
    )
    cost = REFERENCE.cost_micros(HELLO_INPUT, 12)
    final = stream["data"]  # the SDK's finalMessage()
    assert (final["usage"]["input_tokens"], final["usage"]["output_tokens"]) == (HELLO_INPUT, 12)
    assert final["content"][0]["text"] == stream["text"]
    # The bill rides in message_delta's usage, the stream's last.
    assert stream["events"][-2:] == ["message_delta", "message_stop"]
    assert (stream["usage"]["cost"], stream["usage"]["credits_remaining"]) == (credits(cost), credits(START - cost))
    # count_tokens is the gateway's estimate, an upper bound of the mock's count, answered without the upstream.
    assert counted["data"]["input_tokens"] >= HELLO_INPUT
    assert len(gateway.upstreams["main"].state.requests) == 1
    await gateway.wait_settled(account)
    assert await gateway.balance_micros(account) == START - cost


async def test_a_bad_key_raises_authentication_error(start_gateway: StartGateway, node_clients: NodeClients) -> None:
    gateway = await start(start_gateway)
    [answer] = await node_clients.run("anthropic.mjs", root(gateway), "sk-gw-nope", step("messages.create", HELLO))
    error = answer["error"]
    assert (error["name"], error["status"], error["body"]["error"]["type"]) == (
        "AuthenticationError",
        401,
        "authentication_error",
    )
