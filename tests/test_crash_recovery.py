"""A gateway killed with SIGKILL loses no money: its holds come back within the configured time, and what it
had spooled is charged once, by the next process started on the same spool directory. The traffic is chat
completions and legacy completions, half each."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import aiohttp
from redis.asyncio import Redis

from gateway.billing import keyspace
from gateway.billing.spool import read_entries
from gateway.redis_server import free_port
from tests.common import REFERENCE
from tests.faults import ControlledRedis
from tests.processes import GatewayProcesses, gateway_env, wait_ready

ADMIN = "crash-admin"
CREDITS = 10
# Holds outlive the longest request (body 1 s + total 3 s) by a second; every process sweeps each second.
SHORT_HOLDS = """
[server]
body_timeout = 1
[limits]
default_max_tokens = 64
reservation_ttl_seconds = 5
sweep_interval_seconds = 1
[timeouts]
total = 3
"""


class Deployment:
    """A mock upstream and gateways started one after another on the same Redis and spool directory."""

    def __init__(self, processes: GatewayProcesses, http: aiohttp.ClientSession, redis_url: str, *mock_args: str):
        self.processes, self.http = processes, http
        self.env = gateway_env(
            REDIS_URL=redis_url,
            GATEWAY_ADMIN_TOKEN=ADMIN,
            GATEWAY__SERVER__SPOOL_DIR=str(processes.tmp_path / "spool"),
        )
        self.mock_port = free_port()
        processes.write_config(self.mock_port, SHORT_HOLDS)
        processes.start(self.env, "mock-upstream", "--port", str(self.mock_port), *mock_args)

    async def gateway(self) -> str:
        port = free_port()
        self.process = self.processes.start(self.env, "serve", "--port", str(port))
        base = f"http://127.0.0.1:{port}"
        await wait_ready(self.processes, self.http, f"http://127.0.0.1:{self.mock_port}/v1/models")
        await wait_ready(self.processes, self.http, f"{base}/healthz")
        return base

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.processes.running.remove(self.process)

    async def admin(self, base: str, method: str, path: str, body: object = None) -> dict[str, object]:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with self.http.request(method, f"{base}{path}", json=body, headers=headers) as response:
            assert response.status in (200, 201), await response.text()
            result: dict[str, object] = await response.json()
            return result

    async def tenant(self, base: str) -> tuple[str, str]:
        account = await self.admin(base, "POST", "/admin/accounts", {"name": "crash", "credits": CREDITS})
        key = await self.admin(base, "POST", f"/admin/accounts/{account['id']}/keys", {"name": "app"})
        return str(account["id"]), str(key["key"])

    async def whole_again(self, base: str, account_id: str, within_s: float) -> tuple[int, float]:
        """(balance in micros, seconds it took) once nothing is reserved; fails after `within_s`."""
        started = time.monotonic()
        while time.monotonic() - started < within_s:
            view = await self.admin(base, "GET", f"/admin/accounts/{account_id}")
            if view["reserved_credits"] == 0:
                return int(view["credits_micros"]), time.monotonic() - started  # type: ignore[call-overload]
            await asyncio.sleep(0.2)
        raise AssertionError(f"still reserved after {within_s} s: {self.processes.tail()}")


async def _until_held(redis_url: str, account_id: str, count: int, timeout: float = 10.0) -> None:
    """Until the account has `count` holds in Redis: that many requests reserved and are in flight."""
    client = Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + timeout
        while await client.hlen(keyspace.holds(account_id)) < count:
            assert time.monotonic() < deadline, f"fewer than {count} holds after {timeout} s"
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()


async def _records(redis_url: str, account_id: str) -> list[dict[str, str]]:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        return [fields for _, fields in await client.xrange(keyspace.request_log(account_id))]
    finally:
        await client.aclose()


async def test_holds_of_a_killed_gateway_come_back_in_time(
    processes: GatewayProcesses, controlled_redis: ControlledRedis, http: aiohttp.ClientSession
) -> None:
    deployment = Deployment(processes, http, controlled_redis.url, "--tokens", "200", "--chunk-delay-ms", "50")
    base = await deployment.gateway()
    account_id, key = await deployment.tenant(base)
    chat = {"model": "mock-model", "messages": [{"role": "user", "content": "Tell me a long story."}], "stream": True}
    # Legacy completions too; their max_tokens (default 16) set long enough for the stream to outlive the kill.
    completion = {"model": "mock-model", "prompt": "Tell me a long story.", "max_tokens": 200, "stream": True}
    streams = []
    for index in range(10):  # chat sets no max_tokens: each holds for default_max_tokens
        path, body = ("/v1/chat/completions", chat) if index % 2 else ("/v1/completions", completion)
        response = await http.post(f"{base}{path}", json=body, headers={"Authorization": f"Bearer {key}"})
        assert response.status == 200
        await response.content.readuntil(b"\n\n")
        streams.append(response)
    held = await deployment.admin(base, "GET", f"/admin/accounts/{account_id}")
    assert held["reserved_credits"] > 0  # type: ignore[operator]
    deployment.kill()
    killed_at = time.monotonic()
    for response in streams:
        response.close()

    successor = await deployment.gateway()
    # Deadline (5 s after the reserve) + one sweep interval of grace + one interval until the next pass.
    balance, _ = await deployment.whole_again(successor, account_id, within_s=10)
    assert balance == CREDITS * 1_000_000
    assert time.monotonic() - killed_at < 10
    records = await _records(controlled_redis.url, account_id)
    assert len(records) == 10 and {r["outcome"] for r in records} == {"abandoned"}
    assert sum(int(r["credits_micros"]) for r in records) == 0
    assert len({r["request_id"] for r in records}) == 10


async def test_what_a_killed_gateway_spooled_is_charged_once_by_the_next(
    processes: GatewayProcesses, controlled_redis: ControlledRedis, http: aiohttp.ClientSession
) -> None:
    deployment = Deployment(processes, http, controlled_redis.url, "--tokens", "6", "--latency-ms", "1500")
    base = await deployment.gateway()
    account_id, key = await deployment.tenant(base)

    async def chat(index: int) -> dict[str, int]:
        """A chat request, or every other time a legacy completion."""
        body: dict[str, object] = {"model": "mock-model", "max_tokens": 8}
        if index % 2:
            path, body["messages"] = "/v1/chat/completions", [{"role": "user", "content": f"Hi {index}"}]
        else:
            path, body["prompt"] = "/v1/completions", f"Hi {index}"
        headers = {"Authorization": f"Bearer {key}"}
        async with http.post(f"{base}{path}", json=body, headers=headers) as response:
            assert response.status == 200, await response.text()
            usage: dict[str, int] = (await response.json())["usage"]
            return usage

    requests = [asyncio.ensure_future(chat(index)) for index in range(10)]
    await _until_held(controlled_redis.url, account_id, 10)  # the upstream takes 1.5 s to answer
    controlled_redis.stop()  # ...so every settlement finds Redis gone and goes to the spool
    usages = await asyncio.gather(*requests)  # the answers are delivered all the same
    deployment.kill()
    [spool_file] = list((processes.tmp_path / "spool").glob("*.spool"))
    assert len(read_entries(spool_file)) == 10

    controlled_redis.start()
    successor = await deployment.gateway()
    balance, _ = await deployment.whole_again(successor, account_id, within_s=10)
    seen = sum(REFERENCE.cost_micros(usage["prompt_tokens"], usage["completion_tokens"]) for usage in usages)
    assert CREDITS * 1_000_000 - balance == seen
    records = await _records(controlled_redis.url, account_id)
    assert len(records) == 10 and {r["status"] for r in records} == {"200"}
    assert sum(int(r["credits_micros"]) for r in records) == seen
    assert not spool_file.exists()  # replayed, then deleted
    await asyncio.sleep(3)  # the successor keeps sweeping: nothing is released or charged again
    assert len(await _records(controlled_redis.url, account_id)) == 10


async def test_spooled_responses_of_a_killed_gateway_are_charged_once_by_the_next(
    processes: GatewayProcesses, controlled_redis: ControlledRedis, http: aiohttp.ClientSession
) -> None:
    deployment = Deployment(processes, http, controlled_redis.url, "--tokens", "6", "--latency-ms", "1500")
    base = await deployment.gateway()
    account_id, key = await deployment.tenant(base)

    async def respond(index: int) -> dict[str, int]:
        body = {"model": "mock-model", "input": f"Hi {index}", "max_output_tokens": 8, "stream": index % 2 == 0}
        headers = {"Authorization": f"Bearer {key}"}
        async with http.post(f"{base}/v1/responses", json=body, headers=headers) as response:
            assert response.status == 200, await response.text()
            if not body["stream"]:
                usage: dict[str, int] = (await response.json())["usage"]
                return usage
            last = (await response.read()).strip().split(b"\n\n")[-1]
            return dict(json.loads(last.split(b"data: ", 1)[1])["response"]["usage"])

    requests = [asyncio.ensure_future(respond(index)) for index in range(6)]
    await _until_held(controlled_redis.url, account_id, 6)  # the upstream takes 1.5 s to answer
    controlled_redis.stop()  # ...so every settlement finds Redis gone and goes to the spool
    usages = await asyncio.gather(*requests)  # the answers are delivered all the same
    deployment.kill()
    [spool_file] = list((processes.tmp_path / "spool").glob("*.spool"))
    assert len(read_entries(spool_file)) == 6

    controlled_redis.start()
    successor = await deployment.gateway()
    balance, _ = await deployment.whole_again(successor, account_id, within_s=10)
    seen = sum(REFERENCE.cost_micros(usage["input_tokens"], usage["output_tokens"]) for usage in usages)
    assert CREDITS * 1_000_000 - balance == seen
    records = await _records(controlled_redis.url, account_id)
    assert len(records) == 6 and sum(int(r["credits_micros"]) for r in records) == seen
    assert not spool_file.exists()
