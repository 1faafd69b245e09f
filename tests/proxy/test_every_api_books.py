"""One account speaks all five APIs through their official clients, plain and streamed: each call costs the mock's
usage (as the client saw it) at the configured prices, worked out by tests/oracle.py, and the balance, the usage
API (in total and per API), the export and the metrics all agree with the sum of those bills, to the micro-credit
(the metrics in float credits)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import pytest
from anthropic import AsyncAnthropic
from openai import AsyncOpenAI
from prometheus_client.parser import text_string_to_metric_families

from tests.common import REFERENCE, Gateway, StartGateway
from tests.proxy.claude import CLAUDE, reference_cost, start_claude

HELLO = [{"role": "user", "content": "Hello! How are you today?"}]
Bills = dict[str, list[int]]


def _openai_cost(prompt: int, completion: int, cached: int = 0) -> int:
    return REFERENCE.cost_micros(prompt, completion, cached=cached)


async def _openai_calls(openai: AsyncOpenAI, bills: Bills) -> None:
    chat = await openai.chat.completions.create(model="m-main", messages=HELLO, max_tokens=12)  # type: ignore[arg-type]
    assert chat.usage is not None
    bills["chat.completions"].append(_openai_cost(chat.usage.prompt_tokens, chat.usage.completion_tokens))
    stream = await openai.chat.completions.create(
        model="m-main",
        messages=HELLO,  # type: ignore[arg-type]
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = [chunk.usage async for chunk in stream if chunk.usage is not None][-1]
    bills["chat.completions"].append(_openai_cost(usage.prompt_tokens, usage.completion_tokens))

    reply = await openai.responses.create(model="m-main", input="Hello! How are you today?", max_output_tokens=20)
    assert reply.usage is not None
    bills["responses"].append(_openai_cost(reply.usage.input_tokens, reply.usage.output_tokens))
    events = await openai.responses.create(
        model="m-main", input="Tell me more.", previous_response_id=reply.id, max_output_tokens=20, stream=True
    )
    final = [event async for event in events if event.type == "response.completed"][-1]
    assert final.response.usage is not None  # type: ignore[attr-defined]
    streamed = final.response.usage  # type: ignore[attr-defined]
    bills["responses"].append(_openai_cost(streamed.input_tokens, streamed.output_tokens))

    vectors = await openai.embeddings.create(model="m-main", input=["Hello!", "A batch of two strings."])
    bills["embeddings"].append(_openai_cost(vectors.usage.prompt_tokens, 0))

    legacy = await openai.completions.create(model="m-main", prompt="Once upon a time", max_tokens=10)
    assert legacy.usage is not None
    bills["completions"].append(_openai_cost(legacy.usage.prompt_tokens, legacy.usage.completion_tokens))
    chunks = await openai.completions.create(
        model="m-main", prompt="Once upon a time", max_tokens=10, stream=True, stream_options={"include_usage": True}
    )
    legacy_usage = [chunk.usage async for chunk in chunks if chunk.usage is not None][-1]
    bills["completions"].append(_openai_cost(legacy_usage.prompt_tokens, legacy_usage.completion_tokens))


async def _anthropic_calls(claude: AsyncAnthropic, bills: Bills) -> None:
    message = await claude.messages.create(model=CLAUDE, max_tokens=16, messages=HELLO)  # type: ignore[arg-type]
    bills["messages"].append(reference_cost(message.usage.model_dump()))
    async with claude.messages.stream(model=CLAUDE, max_tokens=16, messages=HELLO) as stream:  # type: ignore[arg-type]
        final = await stream.get_final_message()
    bills["messages"].append(reference_cost(final.usage.model_dump()))


async def _metrics_credits(gateway: Gateway) -> dict[str, float]:
    text = await (await gateway.client.get("/metrics")).text()
    credits: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "gateway_credits_charged_total":
                credits[sample.labels["api"]] += sample.value
    return credits


async def test_five_apis_in_one_account_agree_everywhere(
    start_gateway: StartGateway, claude_client: Callable[..., AsyncAnthropic]
) -> None:
    gateway = await start_claude(start_gateway)
    account, key = await gateway.new_account(credits=1000)
    before = await gateway.balance_micros(account)
    bills: Bills = defaultdict(list)
    openai = AsyncOpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    try:
        await _openai_calls(openai, bills)
    finally:
        await openai.close()
    await _anthropic_calls(claude_client(gateway, key), bills)
    await gateway.wait_settled(account)
    total = sum(sum(costs) for costs in bills.values())
    assert set(bills) == {"chat.completions", "responses", "embeddings", "completions", "messages"}
    assert all(cost > 0 for costs in bills.values() for cost in costs)

    assert before - await gateway.balance_micros(account) == total
    headers = {"Authorization": f"Bearer {key}"}
    usage = await (await gateway.client.get("/v1/usage", headers=headers)).json()
    assert usage["total_credits_used_micros"] == total
    assert usage["total_requests"] == sum(len(costs) for costs in bills.values())
    per_api = {entry["api"]: entry["credits_used_micros"] for entry in usage["api_breakdown"]}
    assert per_api == {api: sum(costs) for api, costs in bills.items()}
    rows = await (await gateway.client.get("/v1/usage/export?format=json", headers=headers)).json()
    exported: dict[str, int] = defaultdict(int)
    for row in rows:
        exported[row["api"]] += row["credits_micros"]
    assert exported == per_api
    metrics = await _metrics_credits(gateway)
    for api, micros in per_api.items():
        assert metrics[api] == pytest.approx(micros / 1_000_000, abs=1e-9)
