"""The books survive faults: absurd upstream usage, Redis going away for 1 s or 10 s, and Redis frozen in the
middle of a reserve or a settle. After each, what left the balance equals what the clients saw succeed. Chat
completions and legacy completions both: the traffic mixes them, and each other fault has a completions case."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from decimal import Decimal

import orjson
import pytest
from aiohttp import ClientResponse

from gateway.app_state import SETTLER
from gateway.billing import keyspace
from tests.common import ADMIN_TOKEN, HELLO_PROMPT_TOKENS, REFERENCE, Gateway, StartGateway, user_message
from tests.faults import ControlledRedis

INITIAL_MICROS = 1000 * 10**6


@dataclass(frozen=True)
class Seen:
    """What a client saw of one request."""

    status: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    billed: str = ""  # usage.cost and usage.credits_remaining as sent, decimal text
    remaining: str = ""

    @property
    def cost_micros(self) -> int:
        return REFERENCE.cost_micros(self.prompt_tokens, self.completion_tokens)


async def _seen(response: ClientResponse, stream: bool) -> Seen:
    if response.status != 200:
        error = await response.json()
        assert set(error["error"]) == {"message", "type", "param", "code"}
        return Seen(response.status)
    if not stream:
        usage = (await response.json())["usage"]
        return Seen(200, usage["prompt_tokens"], usage["completion_tokens"], *_bill(usage))
    usage = None
    for event in (await response.read()).split(b"\n\n"):
        if event.startswith(b"data: {"):
            chunk = orjson.loads(event[6:])
            assert "error" not in chunk, chunk
            usage = chunk.get("usage") or usage
    assert usage is not None, "a stream that asked for usage got none"
    return Seen(200, usage["prompt_tokens"], usage["completion_tokens"], *_bill(usage))


def _bill(usage: dict[str, object]) -> tuple[str, str]:
    return str(usage["cost"]), str(usage["credits_remaining"])


# The gateway's own prompt count of "Hello!" per API: chat's 9 (3 per message + "user" + "Hello" "!" + 3 priming
# the reply), the bare text's 2 for legacy completions.
HELLO_TOKENS = {"chat": HELLO_PROMPT_TOKENS, "completions": 2}


async def _send(gateway: Gateway, key: str, text: str, *, stream: bool, api: str = "chat") -> Seen:
    """One request of `api`: chat completions, or legacy completions (`prompt` instead of `messages`)."""
    body: dict[str, object] = {"model": "m-main", "max_tokens": 8}
    body |= {"messages": user_message(text)} if api == "chat" else {"prompt": text}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    path = "/v1/chat/completions" if api == "chat" else "/v1/completions"
    return await _seen(await gateway.post(path, key, body), stream)


def _day_credits(day: dict[str, str]) -> int:
    """The day's credits over every API (its `a:API:credits` fields)."""
    return sum(
        int(value)
        for name, value in day.items()
        if name.startswith("a:") and name.count(":") == 2 and name.endswith(":credits")
    )


async def _books(gateway: Gateway, account: str, key: str) -> tuple[int, int, int, int]:
    """(what left the balance, sum of the records, the day aggregate, what /v1/usage reports), in micros."""
    left = INITIAL_MICROS - await gateway.balance_micros(account)
    records = await gateway.redis.xrange(keyspace.request_log(account))
    day = await gateway.redis.hgetall(keyspace.usage_day(account, gateway.clock.utc()))
    response = await gateway.client.get("/v1/usage", headers={"Authorization": f"Bearer {key}"})
    reported = (await response.json())["total_credits_used_micros"]
    return (
        left,
        sum(int(fields["credits_micros"]) for _, fields in records),
        _day_credits(day),
        reported,
    )


ABSURD = [
    {"prompt_tokens": 10**12, "completion_tokens": 10**12, "total_tokens": 2 * 10**12},
    {"prompt_tokens": 2**63 - 1, "completion_tokens": 2**63 - 1},
    {"prompt_tokens": 2**64 - 1, "completion_tokens": 5},
]
# Billed at the bounds: the prompt at most its own count * 4 + 256 (prompt_clamp_ratio, prompt_clamp_slack), the
# completion at most max_tokens * n = 8 tokens. Chat: 9 * 4 + 256 = 292 prompt tokens, 292 * 1,000.25 = 292,073;
# with 8 completion tokens + 16,001.2 = 308,074.2 -> 308,075, with 5 + 10,000.75 = 302,073.75 -> 302,074.
# Completions: 2 * 4 + 256 = 264 prompt tokens, 264 * 1,000.25 = 264,066, + 16,001.2 = 280,067.2 -> 280,068.
CLAMPED = {"chat": (292, {8: 308_075, 5: 302_074}), "completions": (264, {8: 280_068})}


@pytest.mark.parametrize(
    ("reported", "stream", "api"),
    [(reported, stream, "chat") for reported in ABSURD for stream in (False, True)]
    + [(ABSURD[0], True, "completions")],
)
async def test_absurd_upstream_usage_is_clamped(
    start_gateway: StartGateway, reported: dict[str, int], stream: bool, api: str
) -> None:
    gateway = await start_gateway(main={"reported_usage": reported})
    account, key = await gateway.new_account()
    seen = await _send(gateway, key, "Hello!", stream=stream, api=api)
    prompt_bound, costs = CLAMPED[api]
    assert (seen.status, seen.prompt_tokens) == (200, prompt_bound)
    record = await gateway.last_record(account)
    assert record["gateway_prompt_tokens"] == str(HELLO_TOKENS[api])
    assert record["clamped"] == ("prompt,completion" if reported["completion_tokens"] > 8 else "prompt")
    expected = costs[min(reported["completion_tokens"], 8)]
    assert int(record["credits_micros"]) == expected == INITIAL_MICROS - await gateway.balance_micros(account)
    metrics = await (await gateway.client.get("/metrics")).text()
    assert 'gateway_usage_clamped_total{kind="prompt",model="m-main"} 1.0' in metrics
    # The account keeps working, and the books agree.
    assert (await _send(gateway, key, "Hello!", stream=stream, api=api)).status == 200
    left, records, day, usage = await _books(gateway, account, key)
    assert left == records == day == usage == 2 * expected


@pytest.mark.parametrize(
    "reported",
    [
        {"prompt_tokens": -5, "completion_tokens": 3},
        {"prompt_tokens": "9", "completion_tokens": "16"},
        {"prompt_tokens": 9.0, "completion_tokens": 16.5},
        {"prompt_tokens": 2**64, "completion_tokens": 6},  # parses as a float: no count
        "lots",
    ],
)
async def test_unusable_upstream_usage_is_replaced_by_the_gateways_count(
    start_gateway: StartGateway, reported: object
) -> None:
    gateway = await start_gateway(main={"reported_usage": reported, "completion_tokens": 6})
    account, key = await gateway.new_account()
    seen = await _send(gateway, key, "Hello!", stream=False)
    assert (seen.status, seen.prompt_tokens, seen.completion_tokens) == (200, HELLO_PROMPT_TOKENS, 6)
    record = await gateway.last_record(account)
    # 9 * 1,000.25 + 6 * 2,000.15 = 9,002.25 + 12,000.9 = 21,003.15, rounded up.
    assert record["usage_source"] == "gateway" and record["credits_micros"] == "21004"


def _api(index: int) -> str:
    """Traffic mixes the APIs: of every four requests (or workers), two are legacy completions, one streamed."""
    return "completions" if index % 4 >= 2 else "chat"


async def _traffic(gateway: Gateway, key: str, stop: asyncio.Event, seen: list[Seen], worker: int) -> None:
    count = 0
    while not stop.is_set():
        count += 1
        text = f"worker {worker} request {count}"
        seen.append(await _send(gateway, key, text, stream=worker % 2 == 0, api=_api(worker)))


@pytest.mark.parametrize("outage_s", [1, 10])
async def test_redis_outage_during_traffic_loses_nothing(
    start_gateway: StartGateway, controlled_redis: ControlledRedis, outage_s: float, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.billing.settler")
    gateway = await start_gateway(
        {"redis": {"url": controlled_redis.url, "timeout": 1.0}},
        main={"latency_ms": 100, "chunk_delay_ms": 30, "completion_tokens": 8},
    )
    account, key = await gateway.new_account()
    stop, seen = asyncio.Event(), []
    workers = [asyncio.create_task(_traffic(gateway, key, stop, seen, index)) for index in range(6)]
    await asyncio.sleep(1.0)
    controlled_redis.stop()
    await asyncio.sleep(outage_s)
    controlled_redis.start()
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.gather(*workers)
    # A burst right after the restart: pooled connections that died with Redis cost no request anything.
    controlled_redis.stop()
    controlled_redis.start()
    burst = await asyncio.gather(
        *(_send(gateway, key, f"burst {i}", stream=i % 2 == 0, api=_api(i)) for i in range(25))
    )
    seen += burst
    assert {s.status for s in burst} == {200}

    assert {s.status for s in seen} <= {200, 503}, "clients saw only success or a clean 503"
    if outage_s >= 10:  # long enough that new requests were refused and answered ones had to be spooled
        assert any(s.status == 503 for s in seen)
        assert "spooled" in caplog.text and "replayed" in caplog.text
    await gateway.wait_settled(account)
    succeeded = [s for s in seen if s.status == 200]
    left, records, day, usage = await _books(gateway, account, key)
    assert left == records == day == usage == sum(s.cost_micros for s in succeeded)
    assert sum(int(Decimal(s.billed) * 10**6) for s in succeeded) == left  # each answer's usage.cost was true
    assert await gateway.redis.xlen(keyspace.request_log(account)) == len(succeeded)


async def test_something_else_on_the_redis_port_is_a_clean_503(
    start_gateway: StartGateway, controlled_redis: ControlledRedis
) -> None:
    gateway = await start_gateway({"redis": {"url": controlled_redis.url, "timeout": 0.5}})
    account, key = await gateway.new_account()
    controlled_redis.stop()

    async def not_redis(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")  # what a client connected to itself reads, too
        await writer.drain()
        writer.close()

    impostor = await asyncio.start_server(not_redis, "127.0.0.1", controlled_redis.server.port)
    try:
        seen = await _send(gateway, key, "Hello!", stream=False)
        assert seen.status == 503
    finally:
        impostor.close()
        await impostor.wait_closed()
    controlled_redis.start()
    await gateway.wait_settled(account)
    assert await gateway.balance_micros(account) == INITIAL_MICROS
    assert (await _send(gateway, key, "Hello!", stream=False)).status == 200


async def test_frozen_redis_during_reserve_charges_nothing(
    start_gateway: StartGateway, controlled_redis: ControlledRedis
) -> None:
    gateway = await start_gateway({"redis": {"url": controlled_redis.url, "timeout": 0.5}})
    account, key = await gateway.new_account()
    controlled_redis.freeze()
    try:
        started = asyncio.get_running_loop().time()
        health = asyncio.ensure_future(gateway.client.get("/healthz"))
        seen = await _send(gateway, key, "Hello!", stream=False)
        assert seen.status == 503
        assert (await health).status == 200  # probes never wait on Redis
        assert asyncio.get_running_loop().time() - started < 5
    finally:
        controlled_redis.thaw()  # the reserve that timed out now runs, and holds
    await gateway.wait_settled(account)  # ...and the spooled release returns it
    assert await gateway.balance_micros(account) == INITIAL_MICROS
    assert await gateway.redis.xlen(keyspace.request_log(account)) == 0
    assert (await _send(gateway, key, "Hello!", stream=False)).status == 200


# 9 * 1,000.25 + 8 * 2,000.15 = 9,002.25 + 16,001.2 = 25,003.45, rounded up (chat); the bare "Hello!" of legacy
# completions: 2 * 1,000.25 + 16,001.2 = 18,001.7, rounded up.
SETTLED = {"chat": (25_004, "0.025004", "999.974996"), "completions": (18_002, "0.018002", "999.981998")}


@pytest.mark.parametrize(("stream", "api"), [(False, "chat"), (True, "chat"), (True, "completions")])
async def test_frozen_redis_during_settle_charges_once(
    start_gateway: StartGateway, controlled_redis: ControlledRedis, stream: bool, api: str
) -> None:
    gateway = await start_gateway(
        {"redis": {"url": controlled_redis.url, "timeout": 0.5}}, main={"latency_ms": 600, "completion_tokens": 8}
    )
    account, key = await gateway.new_account()
    request = asyncio.ensure_future(_send(gateway, key, "Hello!", stream=stream, api=api))
    upstream = gateway.upstreams["main"].state
    while not upstream.requests:  # the hold is taken; the upstream is thinking
        await asyncio.sleep(0.01)
    controlled_redis.freeze()
    try:
        seen = await request  # the answer is delivered though its settlement must wait
    finally:
        controlled_redis.thaw()  # the settle that timed out runs now; the spooled copy then changes nothing
    assert seen.status == 200
    await gateway.wait_settled(account)
    await asyncio.sleep(0.5)  # let the replay of the spooled copy happen too
    await gateway.wait_settled(account)
    left, records, day, usage = await _books(gateway, account, key)
    cost, billed, remaining = SETTLED[api]
    assert left == records == day == usage == seen.cost_micros == cost
    # The bill on the answer was projected from the hold while its settlement waited, and came true.
    assert (seen.billed, seen.remaining) == (billed, remaining)
    assert await gateway.redis.xlen(keyspace.request_log(account)) == 1
    assert ADMIN_TOKEN  # the admin API read the balance above


async def test_a_burst_beyond_the_redis_pool_waits_for_connections(start_gateway: StartGateway) -> None:
    # redis-py's default pool fails the call past its bound at once: that was a 503 (or a spooled settlement)
    # under load. The gateway's pool makes the call wait for a free connection instead.
    gateway = await start_gateway({"redis": {"max_connections": 3}}, main={"latency_ms": 20})
    account, key = await gateway.new_account()
    seen = await asyncio.gather(*(_send(gateway, key, f"burst {i}", stream=i % 2 == 0) for i in range(40)))
    assert {s.status for s in seen} == {200}
    assert not gateway.app[SETTLER].spool.pending  # every settlement went straight in
    assert await gateway.balance_micros(account) == INITIAL_MICROS - sum(s.cost_micros for s in seen)
