"""The suite's own redis-servers (tests/servers.py): every one takes DEBUG, whichever Redis >= 6.2 runs them."""

from __future__ import annotations

import contextlib

import pytest
import redis

from tests.cluster import RedisClusterNodes
from tests.faults import ControlledRedis
from tests.servers import args_for, parse_version


@pytest.mark.parametrize(
    ("banner", "version"),
    [
        ("Redis server v=6.2.14 sha=40305114:0 malloc=libc bits=64 build=dff95a8e7a99d269", (6, 2, 14)),
        ("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d7c971a948f0", (7, 0, 15)),
        ("Valkey server v=8.0.2 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=1", (8, 0, 2)),
    ],
)
def test_the_version_is_read_from_the_banner(banner: str, version: tuple[int, int, int]) -> None:
    assert parse_version(banner) == version


def test_only_servers_that_know_the_option_get_it() -> None:
    assert args_for((6, 2, 14)) == []  # 6.2 refuses to start on an option it does not know
    assert args_for((7, 0, 0)) == args_for((8, 0, 2)) == ["--enable-debug-command", "local"]


def _debug_sleep(client: redis.Redis) -> None:
    with contextlib.closing(client):
        assert client.execute_command("DEBUG", "SLEEP", "0") in (True, b"OK")  # type: ignore[no-untyped-call]


def test_the_session_server_takes_debug(redis_url: str) -> None:
    _debug_sleep(redis.Redis.from_url(redis_url))


def test_a_controlled_server_takes_debug(controlled_redis: ControlledRedis) -> None:
    _debug_sleep(redis.Redis.from_url(controlled_redis.url))


def test_every_cluster_node_takes_debug(redis_cluster: RedisClusterNodes) -> None:
    for port in redis_cluster.ports:
        _debug_sleep(redis.Redis(host="127.0.0.1", port=port))
