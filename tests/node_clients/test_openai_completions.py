"""openai-node's completions.create, plain and streamed, unmodified, against the gateway and the mock upstream."""

from __future__ import annotations

from tests.common import REFERENCE, StartGateway
from tests.node_clients.node import NodeClients, credits, step

PROMPT = {"model": "m-main", "prompt": "Say this is a test"}  # 5 tokens: "Say" " this" " is" " a" " test"
START = 1000 * 10**6


async def test_plain_and_streamed_are_billed_the_mock_usage_at_the_price(
    start_gateway: StartGateway, node_clients: NodeClients
) -> None:
    gateway = await start_gateway(main={"completion_tokens": 12})
    account, key = await gateway.new_account(credits=1000)
    streamed = {**PROMPT, "stream": True, "stream_options": {"include_usage": True}}
    plain, stream = await node_clients.run(
        "openai.mjs", gateway.base_url, key, step("completions.create", PROMPT), step("completions.create", streamed)
    )
    # 12 tokens (under the default max_tokens of 16): 5 * 1,000.25 + 12 * 2,000.15 = 29,003.05, rounded up.
    cost = REFERENCE.cost_micros(5, 12)
    assert cost == 29_004
    for usage, spent in ((plain["data"]["usage"], cost), (stream["usage"], 2 * cost)):
        assert (usage["prompt_tokens"], usage["completion_tokens"]) == (5, 12)
        assert (usage["cost"], usage["credits_remaining"]) == (credits(cost), credits(START - spent))
    assert plain["data"]["choices"][0]["text"] and stream["text"]
    assert await gateway.balance_micros(account) == START - 2 * cost
