"""openai-node's embeddings.create, single and batch, unmodified, against the gateway and the mock upstream."""

from __future__ import annotations

from tests.common import REFERENCE, StartGateway
from tests.node_clients.node import NodeClients, credits, step

FOX = "The quick brown fox jumps over the lazy dog."  # 10 tokens for GPT-4o by OpenAI's tokenizer page
START = 1000 * 10**6


async def test_single_and_batch_are_billed_their_tokens_at_the_input_price(
    start_gateway: StartGateway, node_clients: NodeClients
) -> None:
    gateway = await start_gateway()
    account, key = await gateway.new_account(credits=1000)
    single, batch = await node_clients.run(
        "openai.mjs",
        gateway.base_url,
        key,
        step("embeddings.create", {"model": "m-main", "input": FOX}),
        step("embeddings.create", {"model": "m-main", "input": [FOX, "Hello!"]}),
    )
    # 10 * 1,000.25 = 10,002.5 -> 10,003; the batch, 10 + 2 ("Hello", "!") = 12 tokens: 12,003.
    costs = REFERENCE.cost_micros(10, 0), REFERENCE.cost_micros(12, 0)
    assert costs == (10_003, 12_003)
    for answer, tokens, cost, spent in ((single, 10, costs[0], costs[0]), (batch, 12, costs[1], sum(costs))):
        usage = answer["data"]["usage"]
        assert (usage["prompt_tokens"], usage["total_tokens"]) == (tokens, tokens)
        assert (usage["cost"], usage["credits_remaining"]) == (credits(cost), credits(START - spent))
    assert [item["index"] for item in batch["data"]["data"]] == [0, 1]
    assert len(single["data"]["data"][0]["embedding"]) > 0
    assert await gateway.balance_micros(account) == START - sum(costs)
