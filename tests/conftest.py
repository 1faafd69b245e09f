"""Shared fixtures: a real redis-server for the session, real upstream and gateway servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.app_state import LEDGER, REDIS, SETTLER
from gateway.billing import keyspace
from gateway.billing.pricing import Price
from gateway.billing.settler import REDIS_UNAVAILABLE
from gateway.config import ModelConfig, Settings, UpstreamConfig
from gateway.mock.options import MockOptions
from gateway.mock.server import MOCK_STATE, MockState, create_mock_app
from gateway.redis_server import EmbeddedRedis, find_redis_server, free_port
from tests.cluster import RedisClusterNodes
from tests.faults import ControlledRedis
from tests.oracle import ReferencePrice
from tests.processes import GatewayProcesses
from tests.servers import server_args, server_version

TEST_DB = 9
ADMIN_TOKEN = "test-admin-token"
# 1,000.25 credits per million input tokens and 2,000.15 per million output: 1,000.25 and 2,000.15 micro-credits
# per token, so every request's cost is rounded and rounding bugs show. REFERENCE prices the same for tests.
TEST_PRICE = Price(input_micros_per_million=1_000_250_000, output_micros_per_million=2_000_150_000)
REFERENCE = ReferencePrice.of("1000.25", "2000.15")
# One user message "Hello!" (user_message()'s default) on gpt-4o-mini, by the cookbook's rule: 3 per message +
# "user" (1) + "Hello" "!" (2) + 3 priming the reply.
HELLO_PROMPT_TOKENS = 9


def pytest_report_header() -> str:
    """Which redis-server the suite starts: it differs by machine (the cluster's and faults' servers use it even
    with GATEWAY_TEST_REDIS_URL)."""
    binary = find_redis_server()
    return f"redis-server: {binary} (v{'.'.join(map(str, server_version(binary)))})"


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own directory: relative data paths (the spool's `data/spool`) stay out of the repo."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis for the whole run: GATEWAY_TEST_REDIS_URL, else a redis-server we start on a free port."""
    external = os.environ.get("GATEWAY_TEST_REDIS_URL")
    if external:
        yield external.rstrip("/")
        return
    data_dir = tmp_path_factory.mktemp("redis")
    server = EmbeddedRedis(data_dir, port=free_port(), persistent=False, extra_args=server_args())
    yield server.start()
    server.stop()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """A clean dedicated database for each test."""
    url = f"{redis_server}/{TEST_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


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
    server: TestServer
    state: MockState

    @property
    def base_url(self) -> str:
        return str(self.server.make_url("/v1"))


StartUpstream = Callable[..., Awaitable[Upstream]]


@pytest.fixture
async def start_upstream(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> StartUpstream:
    """Start a mock upstream with the given MockOptions fields."""

    async def start(**options: object) -> Upstream:
        app = create_mock_app(MockOptions(**options))  # type: ignore[arg-type]
        server = await aiohttp_server(app)
        return Upstream(server, app[MOCK_STATE])

    return start


def make_settings(
    redis_url: str,
    upstreams: dict[str, str],
    *,
    upstream_fields: Mapping[str, Mapping[str, object]] | None = None,
    **overrides: object,
) -> Settings:
    """Settings with one model per upstream: model "m-NAME" served by upstream NAME as gpt-4o-mini.
    `upstream_fields` sets UpstreamConfig fields per upstream name."""
    fields = upstream_fields or {}
    upstream_configs = {
        name: UpstreamConfig(name=name, base_url=url, **{"api_key": f"provider-key-{name}", **fields.get(name, {})})  # type: ignore[arg-type]
        for name, url in upstreams.items()
    }
    models = {
        f"m-{name}": ModelConfig(name=f"m-{name}", upstream=name, upstream_model="gpt-4o-mini", price=TEST_PRICE)
        for name in upstreams
    }
    values: dict[str, object] = {
        "models": models,
        "upstreams": upstream_configs,
        "admin_token": ADMIN_TOKEN,
        "redis_url": redis_url,
        "default_max_tokens": 256,
        "read_timeout": 5.0,
        "total_timeout": 30.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@dataclass
class Gateway:
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


StartGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def start_gateway(
    redis_url: str, start_upstream: StartUpstream, aiohttp_client: Callable[..., Awaitable[TestClient]]
) -> StartGateway:
    """Start the gateway in front of mock upstreams: `await start_gateway(main={...MockOptions}, ...)`."""

    async def start(
        settings_overrides: dict[str, object] | None = None, **upstream_options: dict[str, object]
    ) -> Gateway:
        upstream_options = upstream_options or {"main": {}}
        upstreams = {name: await start_upstream(**opts) for name, opts in upstream_options.items()}
        overrides = dict(settings_overrides or {})
        url = str(overrides.pop("redis_url", redis_url))
        settings = make_settings(url, {n: u.base_url for n, u in upstreams.items()}, **overrides)
        clock = FakeClock()
        client = await aiohttp_client(create_app(settings, clock=clock))
        return Gateway(client, settings, clock, upstreams)

    return start


async def last_request_record(redis: Redis, account_id: str) -> dict[str, str]:
    """The newest record of the account's request log."""
    entries = await redis.xrevrange(keyspace.request_log(account_id), count=1)
    assert entries, "no request was recorded"
    return dict(entries[0][1])


def user_message(text: str = "Hello!") -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """A real 3-master Redis Cluster for the whole run, started on first use (see tests/cluster.py)."""
    with RedisClusterNodes(tmp_path_factory.mktemp("cluster")) as nodes:
        yield nodes


@pytest.fixture
def cluster_url(redis_cluster: RedisClusterNodes) -> str:
    """The URL of one master of the cluster, every master emptied first."""
    redis_cluster.flushall()
    return redis_cluster.url


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[GatewayProcesses]:
    """Real `gateway` processes for the test (tests/processes.py); all stopped at its end."""
    started = GatewayProcesses(tmp_path)
    yield started
    started.stop_all()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client for gateways running as processes."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@pytest.fixture
def controlled_redis(tmp_path: Path) -> Iterator[ControlledRedis]:
    """A Redis of the test's own (AOF on) to stop, restart, freeze and thaw under a running gateway."""
    server = ControlledRedis(tmp_path / "redis")
    server.start()
    yield server
    if server.server.process is not None:
        server.thaw()  # a frozen server cannot take SIGTERM's shutdown
    server.stop()


@pytest.fixture
def local_zone_tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is UTC+9 for the test."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
