"""Scripted traffic through the proxy holding known amounts of each kind of waste, and the request records it left
(read from Redis, never computed with the code under test).

All of it happens on 2026-09-21 (UTC), on the gateway's fake clock:
- 08:00 three distinct requests (clean);
- 09:00 one request, then the same five times more, 150 s apart (beyond the retry window, within the
  duplicate window): five duplicates, sent with their fields reordered, a `user` and `stream: false` added;
- 10:00 one request four times, 2 s apart, on a model whose upstream answers 500: one retry loop of four;
- 11:00 three distinct streams the client hangs up on after five events: three unused responses;
- 12:00 one conversation of 30 turns, each resending the whole history: turns 21 to 30 are long;
- 13:00 four small requests on an expensive model with a cheaper alternative, and one large one;
- 13:10 two requests on a model whose upstream reports cached prompt tokens.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.billing import keyspace
from gateway.billing.pricing import Price
from gateway.config import ModelConfig
from gateway.mock import counting
from tests.common import REFERENCE, TEST_PRICE, Gateway, StartGateway
from tests.oracle import ReferencePrice
from tests.usage.traffic import Tenant, new_tenant, utc

DAY = "2026-09-21"
NOW = utc(2026, 9, 21, 13, 30)
# 10,000.5 and 30,000.75 credits per million: fractional micro-credits per token, as TEST_PRICE has.
BIG_PRICE = Price(input_micros_per_million=10_000_500_000, output_micros_per_million=30_000_750_000)
BIG_REFERENCE = ReferencePrice.of("10000.5", "30000.75")
CACHED_PRICE = Price(1_000_250_000, 2_000_150_000, cached_input_micros_per_million=500_125_000)
CACHED_REFERENCE = ReferencePrice.of("1000.25", "2000.15", "500.125")
CACHED_TOKENS = 4  # what the "cached" upstream reports for every request


def _model(name: str, upstream: str, price: Price = TEST_PRICE, **options: Any) -> ModelConfig:
    return ModelConfig(name=name, upstream=upstream, upstream_model="gpt-4o-mini", price=price, **options)


MODELS = {
    "m-main": _model("m-main", "main"),
    "m-broken": _model("m-broken", "broken"),
    "m-slow": _model("m-slow", "slow"),
    "m-big": _model("m-big", "main", BIG_PRICE, cheaper_alternative="m-main"),
    "m-cached": _model("m-cached", "cached", CACHED_PRICE),
}
UPSTREAMS: dict[str, dict[str, object]] = {
    "main": {},
    "broken": {"fail_status": 500},
    "slow": {"completion_tokens": 200, "chunk_delay_ms": 20},
    "cached": {"cached_tokens": CACHED_TOKENS},
}


async def insights_gateway(start_gateway: StartGateway, **settings: object) -> Gateway:
    return await start_gateway({"models": MODELS, **settings}, **UPSTREAMS)


@dataclass
class Script:
    """The request ids of each kind of traffic, in the order sent."""

    clean: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # the first request, then its five repeats
    retries: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    conversation: list[str] = field(default_factory=list)  # turn 1 to turn 30
    mix: list[str] = field(default_factory=list)  # the four small requests
    large: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    histories: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # conversation request -> messages


def question(text: str, model: str = "m-main", **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16, **extra}


async def sent(gateway: Gateway, key: str, body: dict[str, object], at: float) -> tuple[str, dict[str, Any]]:
    """Send `body` at unix time `at`; its request id and answer."""
    gateway.clock.now = at
    response = await gateway.chat(key, body)
    return response.headers["x-request-id"], await response.json()


async def abandoned_stream(gateway: Gateway, key: str, body: dict[str, object], account_id: str) -> str:
    """A stream the client hangs up on after five events; waits until it is settled."""
    response = await gateway.chat(key, {**body, "stream": True})
    for _ in range(5):
        await response.content.readuntil(b"\n\n")
    request_id = response.headers["x-request-id"]
    response.close()
    await gateway.wait_settled(account_id)
    return request_id


async def run_script(gateway: Gateway, tenant: Tenant) -> Script:
    script = Script()
    web, batch = tenant.key(0), tenant.key(1)
    start = utc(2026, 9, 21, 8).timestamp()
    for index in range(3):
        script.clean.append((await sent(gateway, web, question(f"Clean question {index}"), start + 10 * index))[0])

    base = question("What is the capital of France?")
    variants = [
        base,
        dict(reversed(base.items())),
        {**base, "user": "someone"},
        {**base, "stream": False},
        {"max_tokens": 16, "messages": base["messages"], "model": "m-main", "user": "another"},
        base,
    ]
    start = utc(2026, 9, 21, 9).timestamp()
    for index, body in enumerate(variants):
        script.duplicates.append((await sent(gateway, web, body, start + 150 * index))[0])

    start = utc(2026, 9, 21, 10).timestamp()
    for index in range(4):
        request_id, answer = await sent(gateway, batch, question("Please work", "m-broken"), start + 2 * index)
        assert "error" in answer
        script.retries.append(request_id)

    start = utc(2026, 9, 21, 11).timestamp()
    for index in range(3):
        gateway.clock.now = start + 60 * index
        body = question(f"Tell me a long story, number {index}", "m-slow")
        del body["max_tokens"]
        script.abandoned.append(await abandoned_stream(gateway, web, body, tenant.account_id))

    await _conversation(gateway, web, script, utc(2026, 9, 21, 12).timestamp())

    start = utc(2026, 9, 21, 13).timestamp()
    for index in range(4):
        small = question(f"Small question {index}", "m-big")
        script.mix.append((await sent(gateway, web, small, start + 10 * index))[0])
    long_text = "Summarise this. " + "the of and to in " * 300  # over 1,000 prompt tokens: not small
    script.large.append((await sent(gateway, web, question(long_text, "m-big"), start + 60))[0])

    start = utc(2026, 9, 21, 13, 10).timestamp()
    for index in range(2):
        script.cached.append((await sent(gateway, web, question(f"Cached {index}", "m-cached"), start + index))[0])
    gateway.clock.now = NOW.timestamp()
    return script


async def _conversation(gateway: Gateway, key: str, script: Script, start: float) -> None:
    messages: list[dict[str, str]] = []
    for turn in range(1, 31):
        messages.append({"role": "user", "content": f"Turn {turn}: and then what happened?"})
        body = {"model": "m-main", "messages": list(messages), "max_tokens": 16}
        request_id, answer = await sent(gateway, key, body, start + 30 * turn)
        script.conversation.append(request_id)
        script.histories[request_id] = list(messages)
        messages.append({"role": "assistant", "content": answer["choices"][0]["message"]["content"]})


async def records(gateway: Gateway, account_id: str) -> dict[str, dict[str, str]]:
    """Every request record of the account, by request id, as the request log holds it."""
    entries = await gateway.redis.xrange(keyspace.request_log(account_id))
    return {fields["request_id"]: fields for _, fields in entries}


async def scripted(start_gateway: StartGateway) -> tuple[Gateway, Tenant, Script, dict[str, dict[str, str]]]:
    """A gateway, a tenant (keys "web" and "batch") that ran the script, and its records."""
    gateway = await insights_gateway(start_gateway)
    tenant = await new_tenant(gateway, keys=("web", "batch"))
    script = await run_script(gateway, tenant)
    await asyncio.sleep(0)
    return gateway, tenant, script, await records(gateway, tenant.account_id)


def history_tokens(messages: list[dict[str, str]]) -> int:
    """Prompt tokens of every message but the last, by the cookbook's rule (3 per message, its role and
    content), counted with the mock's own tokenizer calls."""
    return sum(
        3 + counting.count_text("gpt-4o-mini", m["role"]) + counting.count_text("gpt-4o-mini", m["content"])
        for m in messages[:-1]
    )


def micros(record: dict[str, str]) -> int:
    return int(record["credits_micros"])


def tokens(record: dict[str, str]) -> tuple[int, int]:
    return int(record["prompt_tokens"]), int(record["completion_tokens"])


REFERENCES = {"m-main": REFERENCE, "m-big": BIG_REFERENCE, "m-cached": CACHED_REFERENCE}


def dumps(value: object) -> str:
    return orjson.dumps(value).decode()
