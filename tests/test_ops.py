"""The operator's endpoints: /healthz and /readyz tell the truth about Redis; /metrics is not public off
loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from gateway.app_state import REDIS_HEALTH
from gateway.redis_server import free_port
from tests.common import ADMIN_TOKEN, StartGateway
from tests.faults import ControlledRedis


async def test_probes_follow_redis(start_gateway: StartGateway, tmp_path: Path) -> None:
    redis = ControlledRedis(tmp_path / "redis")
    redis.start()
    try:
        gateway = await start_gateway({"redis": {"url": redis.url}})
        assert (await gateway.client.get("/readyz")).status == 200
        health = await (await gateway.client.get("/healthz")).json()
        assert health == {"status": "ok", "redis": "up", "spooled": 0}
        redis.stop()
        await _until(lambda: not gateway.app[REDIS_HEALTH].up)
        ready = await gateway.client.get("/readyz")
        assert ready.status == 503 and ready.headers["Retry-After"].isdigit()
        health_response = await gateway.client.get("/healthz")
        assert health_response.status == 200  # alive: restarting the gateway would not bring Redis back
        assert (await health_response.json())["status"] == "degraded"
        redis.start()
        await _until(lambda: gateway.app[REDIS_HEALTH].up)
        assert (await gateway.client.get("/readyz")).status == 200
    finally:
        redis.stop()


async def _until(condition: object, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition never met"
        await asyncio.sleep(0.05)


async def test_metrics_are_public_on_loopback_only(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    assert (await gateway.client.get("/metrics")).status == 200
    exposed = await start_gateway({"server": {"host": "0.0.0.0"}})
    refused = await exposed.client.get("/metrics")
    assert refused.status == 401 and (await refused.json())["error"]["type"] == "invalid_request_error"
    admin = await exposed.client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert admin.status == 200 and "gateway_token_count_drift_tokens" in await admin.text()


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
async def test_a_metrics_token_is_required_wherever_it_is_set(start_gateway: StartGateway, host: str) -> None:
    gateway = await start_gateway({"server": {"host": host}, "metrics": {"token": "scrape-me"}})
    assert (await gateway.client.get("/metrics")).status == 401
    wrong = await gateway.client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    right = await gateway.client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert right.status == 200 and right.headers["Content-Type"].startswith("text/plain")


async def test_metrics_on_their_own_port(start_gateway: StartGateway) -> None:
    port = free_port()
    gateway = await start_gateway({"metrics": {"port": port}})
    assert (await gateway.client.get("/metrics")).status == 404
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200 and "gateway_token_count_drift_tokens" in await response.text()
