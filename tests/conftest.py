"""Shared fixtures: a real redis-server for the session, real upstream and gateway servers on 127.0.0.1.

Fixtures only; the helpers tests import by name are in tests/common.py."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.mock.options import MockOptions
from gateway.mock.server import MOCK_STATE, create_mock_app
from gateway.redis_server import EmbeddedRedis, find_redis_server, free_port
from tests.cluster import RedisClusterNodes
from tests.common import FakeClock, Gateway, StartGateway, StartUpstream, Upstream, make_settings
from tests.faults import ControlledRedis
from tests.processes import GatewayProcesses
from tests.servers import server_args, server_version

TEST_DB = 9


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


@pytest.fixture
async def start_upstream(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> StartUpstream:
    """Start a mock upstream with the given MockOptions fields."""

    async def start(**options: object) -> Upstream:
        app = create_mock_app(MockOptions(**options))  # type: ignore[arg-type]
        server = await aiohttp_server(app)
        return Upstream(server, app[MOCK_STATE])

    return start


@pytest.fixture
async def start_gateway(
    redis_url: str, start_upstream: StartUpstream, aiohttp_client: Callable[..., Awaitable[TestClient]]
) -> StartGateway:
    """Start the gateway in front of mock upstreams: `await start_gateway(main={...MockOptions}, ...)`, its
    settings `make_settings`'s with the overrides given first, by table: `start_gateway({"server": {...}})`."""

    async def start(settings_overrides: dict[str, Any] | None = None, **upstream_options: dict[str, object]) -> Gateway:
        upstream_options = upstream_options or {"main": {}}
        upstreams = {name: await start_upstream(**opts) for name, opts in upstream_options.items()}
        overrides = dict(settings_overrides or {})
        settings = make_settings(redis_url, {n: u.base_url for n, u in upstreams.items()}, **overrides)
        clock = FakeClock()
        client = await aiohttp_client(create_app(settings, clock=clock))
        return Gateway(client, settings, clock, upstreams)

    return start


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
