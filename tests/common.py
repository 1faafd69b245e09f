"""Helpers the tests import by name: the suite's constants, prices and clock, and the gateway and mock
upstream that the `start_gateway` and `start_upstream` fixtures (tests/conftest.py) start."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from gateway.app_state import LEDGER, REDIS, SETTLER
from gateway.billing import keyspace
from gateway.billing.pricing import Price
from gateway.billing.settler import REDIS_UNAVAILABLE
from gateway.config import (
    LimitsConfig,
    ModelConfig,
    RedisConfig,
    ServerConfig,
    Settings,
    TimeoutsConfig,
    UpstreamConfig,
)
from gateway.mock.server import MockState
from tests.oracle import ReferencePrice

ADMIN_TOKEN = "test-admin-token"
# 1,000.25 credits per million input tokens and 2,000.15 per million output: 1,000.25 and 2,000.15 micro-credits
# per token, so every request's cost is rounded and rounding bugs show. REFERENCE prices the same for tests.
TEST_PRICE = Price(input_micros_per_million=1_000_250_000, output_micros_per_million=2_000_150_000)
REFERENCE = ReferencePrice.of("1000.25", "2000.15")
# One user message "Hello!" (user_message()'s default) on gpt-4o-mini, by the cookbook's rule: 3 per message +
# "user" (1) + "Hello" "!" (2) + 3 priming the reply.
HELLO_PROMPT_TOKENS = 9


@dataclass
class FakeClock:
    """Unix seconds that tests move by hand."""

    now: float = 1_790_000_000.0  # 2026-09-21

    def __call__(self) -> float:
        return self.now

    def utc(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


@dataclass
class Upstream:
    """A mock upstream started by the `start_upstream` fixture, and its state (the requests it saw)."""

    server: TestServer
    state: MockState

    @property
    def base_url(self) -> str:
        return str(self.server.make_url("/v1"))


StartUpstream = Callable[..., Awaitable[Upstream]]


def make_settings(
    redis_url: str,
    upstreams: dict[str, str],
    *,
    upstream_fields: Mapping[str, Mapping[str, object]] | None = None,
    models: Mapping[str, ModelConfig] | None = None,
    **sections: Mapping[str, object],
) -> Settings:
    """Settings with one model per upstream: model "m-NAME" served by upstream NAME as gpt-4o-mini.
    `upstream_fields` sets UpstreamConfig fields per upstream name; `models` replaces the models; each other
    keyword is a section of the file whose values it sets over the suite's (`server={"body_timeout": 0.5}`)."""
    fields = upstream_fields or {}
    upstream_configs = {
        name: UpstreamConfig(name=name, base_url=url, **{"api_key": f"provider-key-{name}", **fields.get(name, {})})  # type: ignore[arg-type]
        for name, url in upstreams.items()
    }
    default_models = {
        f"m-{name}": ModelConfig(name=f"m-{name}", upstream=name, upstream_model="gpt-4o-mini", price=TEST_PRICE)
        for name in upstreams
    }
    suite = Settings(
        models=default_models if models is None else models,
        upstreams=upstream_configs,
        server=ServerConfig(admin_token=ADMIN_TOKEN),
        redis=RedisConfig(url=redis_url),
        limits=LimitsConfig(default_max_tokens=256),
        timeouts=TimeoutsConfig(read=5.0, total=30.0),
    )
    return suite.override(**sections)


@dataclass
class Gateway:
    """A gateway started by the `start_gateway` fixture in front of mock upstreams, on a fake clock."""

    client: TestClient
    settings: Settings
    clock: FakeClock
    upstreams: dict[str, Upstream] = field(default_factory=dict)

    @property
    def app(self) -> web.Application:
        return self.client.app  # type: ignore[return-value]

    @property
    def base_url(self) -> str:
        return str(self.client.make_url("/v1"))

    @property
    def redis(self) -> Redis:
        return self.app[REDIS]

    async def last_record(self, account_id: str) -> dict[str, str]:
        return await last_request_record(self.redis, account_id)

    async def admin(self, method: str, path: str, json: object | None = None) -> tuple[int, dict[str, object]]:
        response = await self.client.request(
            method, path, json=json, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        return response.status, await response.json()

    async def new_account(self, credits: int | str = 1000, name: str = "acme") -> tuple[str, str]:
        """Create an account with a key; returns (account id, key)."""
        status, account = await self.admin("POST", "/admin/accounts", {"name": name, "credits": credits})
        assert status == 201, account
        status, key = await self.admin("POST", f"/admin/accounts/{account['id']}/keys", {"name": "app"})
        assert status == 201, key
        return str(account["id"]), str(key["key"])

    async def balance_micros(self, account_id: str) -> int:
        status, account = await self.admin("GET", f"/admin/accounts/{account_id}")
        assert status == 200
        return int(account["credits_micros"])  # type: ignore[call-overload]

    async def wait_settled(self, account_id: str, timeout: float = 20.0) -> None:
        """Until nothing is held for the account and the spool is empty (bounded)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(*REDIS_UNAVAILABLE):
                if not self.app[SETTLER].spool.pending and await self.app[LEDGER].reserved(account_id) == 0:
                    return
            await asyncio.sleep(0.05)
        raise AssertionError("the account never settled")

    async def chat(self, key: str, body: dict[str, object], **headers: str):  # type: ignore[no-untyped-def]
        return await self.client.post(
            "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}", **headers}
        )

    async def post(self, path: str, key: str, body: object):  # type: ignore[no-untyped-def]
        return await self.client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})

    async def credits_used_micros(self, key: str) -> int:
        """What /v1/usage reports the key's account spent in the billing period."""
        response = await self.client.get("/v1/usage", headers={"Authorization": f"Bearer {key}"})
        assert response.status == 200
        return int((await response.json())["total_credits_used_micros"])


StartGateway = Callable[..., Awaitable[Gateway]]


async def last_request_record(redis: Redis, account_id: str) -> dict[str, str]:
    """The newest record of the account's request log."""
    entries = await redis.xrevrange(keyspace.request_log(account_id), count=1)
    assert entries, "no request was recorded"
    return dict(entries[0][1])


def user_message(text: str = "Hello!") -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]
