"""Two `gateway serve` processes on one Redis (a single server, or a 3-master Redis Cluster) agree on the books.

Concurrent plain and streamed requests, split across both processes, spend an account that pays for only part
of them. Afterwards every figure agrees to the micro-credit: what left the balance, the request records, the
day aggregate and /v1/usage; nothing is still held, and both processes report the same balance.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from gateway.billing import keyspace
from gateway.billing.client import RedisClient
from gateway.config import RedisConfig, Settings
from gateway.redis_server import free_port
from gateway.storage import redis_client
from tests.processes import GatewayProcesses, gateway_env, wait_ready

ADMIN = "multi-admin"
REQUESTS = 240  # split across both processes
IN_FLIGHT = 48
CREDITS = 4  # pays for about half of REQUESTS
LIMITS = "[limits]\ndefault_max_tokens = 64\n"


def _env(redis_url: str, cluster: bool, spool: Path) -> dict[str, str]:
    env = gateway_env(REDIS_URL=redis_url, GATEWAY_ADMIN_TOKEN=ADMIN, GATEWAY__SERVER__SPOOL_DIR=str(spool))
    if cluster:
        env["GATEWAY__REDIS__CLUSTER"] = "true"
    return env


async def _start(processes: GatewayProcesses, http: aiohttp.ClientSession, redis_url: str, cluster: bool) -> list[str]:
    """A mock upstream and two gateways on `redis_url`; returns the gateways' base URLs."""
    mock_port, ports = free_port(), [free_port(), free_port()]
    processes.write_config(mock_port, LIMITS)
    env = _env(redis_url, cluster, processes.tmp_path / "spool")
    processes.start(env, "mock-upstream", "--port", str(mock_port), "--tokens", "12", "--latency-ms", "20")
    for index, port in enumerate(ports):
        processes.start(_env(redis_url, cluster, processes.tmp_path / f"spool{index}"), "serve", "--port", str(port))
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    await wait_ready(processes, http, f"http://127.0.0.1:{mock_port}/v1/models")
    for base in bases:
        await wait_ready(processes, http, f"{base}/healthz")
    return bases


async def _admin(http: aiohttp.ClientSession, method: str, url: str, body: object = None) -> dict[str, object]:
    async with http.request(method, url, json=body, headers={"Authorization": f"Bearer {ADMIN}"}) as response:
        assert response.status in (200, 201), await response.text()
        result: dict[str, object] = await response.json()
        return result


def _body(index: int) -> dict[str, object]:
    """Four kinds in turn: plain or streamed, with or without max_tokens (without: the gateway bounds it)."""
    kind = (index // 2) % 4
    body: dict[str, object] = {"model": "mock-model", "messages": [{"role": "user", "content": f"Hello {index}!"}]}
    if kind in (0, 1):
        body["max_tokens"] = 16
    if kind in (1, 3):
        body["stream"] = True
    if kind == 1:
        body["stream_options"] = {"include_usage": True}
    return body


async def _chat(http: aiohttp.ClientSession, base: str, key: str, body: dict[str, object]) -> tuple[int, int]:
    """(status, x-credits-remaining in micro-credits) of one request, its body read to the end."""
    headers = {"Authorization": f"Bearer {key}"}
    async with http.post(f"{base}/v1/chat/completions", json=body, headers=headers) as response:
        text = await response.text()
        if response.status == 200 and body.get("stream"):
            assert text.rstrip().endswith("data: [DONE]"), text[-200:]
        remaining = response.headers.get("x-credits-remaining", "0")
        return response.status, round(float(remaining) * 1_000_000)


async def _traffic(http: aiohttp.ClientSession, bases: list[str], key: str) -> list[tuple[int, int]]:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(index: int) -> tuple[int, int]:
        async with gate:
            return await _chat(http, bases[index % 2], key, _body(index))

    return await asyncio.gather(*(one(index) for index in range(REQUESTS)))


async def _lowest_balance(redis: RedisClient, account_id: str, done: asyncio.Event) -> int:
    """The lowest balance seen while traffic runs (holds are taken out of it)."""
    lowest = CREDITS * 1_000_000
    while not done.is_set():
        lowest = min(lowest, int(await redis.hget(keyspace.account(account_id), "balance") or 0))
        await asyncio.sleep(0.002)
    return lowest


async def _check_books(redis_url: str, cluster: bool, processes: GatewayProcesses, http: aiohttp.ClientSession) -> None:
    bases = await _start(processes, http, redis_url, cluster)
    if cluster:  # the CLI acts on the cluster directly, as the admin API does
        env = _env(redis_url, cluster, processes.tmp_path / "spool")
        command = ("accounts", "create", "--name", "shared", "--credits", str(CREDITS))
        account = await asyncio.to_thread(processes.cli, env, *command)
    else:
        account = await _admin(http, "POST", f"{bases[0]}/admin/accounts", {"name": "shared", "credits": CREDITS})
    account_id = str(account["id"])
    key = str((await _admin(http, "POST", f"{bases[1]}/admin/accounts/{account_id}/keys", {"name": "app"}))["key"])
    first_day = datetime.now(UTC)
    redis = redis_client(redis_url, Settings(redis=RedisConfig(url=redis_url, cluster=cluster)))
    try:
        done = asyncio.Event()
        watcher = asyncio.create_task(_lowest_balance(redis, account_id, done))
        results = await _traffic(http, bases, key)
        done.set()
        lowest = await watcher
        last_day = datetime.now(UTC)
        records = [fields for _, fields in await redis.xrange(keyspace.request_log(account_id))]
        days = {moment.date(): moment for moment in (first_day, last_day)}
        aggregates = [await redis.hgetall(keyspace.usage_day(account_id, moment)) for moment in days.values()]
        holds = await redis.hgetall(keyspace.holds(account_id))
    finally:
        await redis.aclose()

    statuses = [status for status, _ in results]
    served = statuses.count(200)
    assert set(statuses) == {200, 402} and 0 < served < REQUESTS, sorted(set(statuses))
    assert lowest >= 0 and min(remaining for _, remaining in results) >= 0
    views = [await _admin(http, "GET", f"{base}/admin/accounts/{account_id}") for base in bases]
    balances = {int(view["credits_micros"]) for view in views}  # type: ignore[call-overload]
    assert len(balances) == 1 and all(view["reserved_credits"] == 0 for view in views)
    spent = CREDITS * 1_000_000 - balances.pop()
    assert holds == {}
    assert len(records) == served and all(record["status"] == "200" for record in records)
    assert sum(int(record["credits_micros"]) for record in records) == spent
    assert sum(int(day.get("a:chat.completions:credits", 0)) for day in aggregates) == spent
    assert sum(int(day.get("a:chat.completions:requests", 0)) for day in aggregates) == served
    query = f"start={min(days)}&end={max(days)}"
    for base in bases:
        async with http.get(f"{base}/v1/usage?{query}", headers={"Authorization": f"Bearer {key}"}) as response:
            usage = await response.json()
        assert usage["total_credits_used_micros"] == spent and usage["total_requests"] == served
        assert usage["credits_remaining_micros"] == CREDITS * 1_000_000 - spent


async def test_two_processes_on_one_redis_agree(
    redis_url: str, processes: GatewayProcesses, http: aiohttp.ClientSession
) -> None:
    await _check_books(redis_url, False, processes, http)


async def test_two_processes_on_a_redis_cluster_agree(
    cluster_url: str, processes: GatewayProcesses, http: aiohttp.ClientSession
) -> None:
    await _check_books(cluster_url, True, processes, http)
