"""Redis Cluster: every script and every read runs unchanged for accounts whose keys live on different masters."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import pytest
import redis
from redis.asyncio import RedisCluster

from gateway.admin.accounts import AccountStore, ParsedApiKey, parse_api_key
from gateway.billing import Ledger, ReserveStatus, Settlement, keyspace
from gateway.billing.client import RedisClient
from gateway.config import ConfigError, RedisConfig, Settings
from gateway.redis_server import free_port
from gateway.storage import ledger_for, open_redis, redis_client
from gateway.usage.export import read_pages
from gateway.usage.ranges import Granularity, UsageRange
from gateway.usage.reader import UsageReader
from tests.cluster import RedisClusterNodes
from tests.common import FakeClock

HOLD = 5_000
COST = 3_000


@pytest.fixture
async def cluster_client(cluster_url: str) -> AsyncIterator[RedisClient]:
    """The gateway's own client, configured as `redis.cluster = true` configures it."""
    client = redis_client(cluster_url, Settings(redis=RedisConfig(url=cluster_url, cluster=True)))
    yield client
    await client.aclose()


async def _accounts_on_every_master(store: AccountStore, nodes: RedisClusterNodes) -> dict[str, tuple[str, str]]:
    """Accounts, one per master, as account id -> (API key sha256, API key id); ids are random, so try a few."""
    by_node: dict[int, tuple[str, str, str]] = {}
    for _ in range(60):
        account = await store.insert_account("acme", 100_000)
        record, key = await store.insert_api_key(account.id, "app")
        parsed = parse_api_key(key)
        assert parsed is not None
        by_node.setdefault(nodes.node_of(keyspace.account(account.id)), (account.id, parsed.sha256, record.id))
        if len(by_node) == len(nodes.ports):
            break
    assert len(by_node) >= 2, "every test account landed on one master"
    return {account_id: (sha, key_id) for account_id, sha, key_id in by_node.values()}


async def _reserve(ledger: Ledger, account_id: str, sha: str, request_id: str) -> ReserveStatus:
    outcome = await ledger.reserve(account_id, sha, request_id, hold_micros=HOLD, min_hold_micros=HOLD, ttl_s=900)
    return outcome.status


def _settlement(account_id: str, request_id: str) -> Settlement:
    return Settlement(account_id, request_id, "m", COST, prompt_tokens=10, completion_tokens=5)


def _script_flush(nodes: RedisClusterNodes) -> None:
    for port in nodes.ports:
        with contextlib.closing(redis.Redis(host="127.0.0.1", port=port)) as node:
            node.script_flush()


async def test_every_script_runs_unchanged_across_masters(
    cluster_client: RedisClient, redis_cluster: RedisClusterNodes
) -> None:
    assert isinstance(cluster_client, RedisCluster)
    clock = FakeClock()
    settings = Settings(redis=RedisConfig(url=redis_cluster.url, cluster=True))
    store, ledger = AccountStore(cluster_client, clock=clock), ledger_for(cluster_client, settings, clock)
    accounts = await _accounts_on_every_master(store, redis_cluster)

    for account_id, (sha, _) in accounts.items():
        assert await _reserve(ledger, account_id, sha, "r1") is ReserveStatus.HELD
        assert await ledger.reserved_many(list(accounts)) == [HOLD if a == account_id else 0 for a in accounts]
        assert (await ledger.settle(_settlement(account_id, "r1"))).settled
        assert await ledger.grant(account_id, 1_000, "top-up") == 100_000 - COST + 1_000
    # After SCRIPT FLUSH on every master, each script is loaded again on the master that needs it (NOSCRIPT).
    _script_flush(redis_cluster)
    for account_id, (sha, _) in accounts.items():
        assert await _reserve(ledger, account_id, sha, "r2") is ReserveStatus.HELD
        assert (await ledger.settle(_settlement(account_id, "r2"))).settled
        assert await ledger.grant(account_id, -1_000, "take back") == 100_000 - 2 * COST
    assert await ledger.reserved_many(list(accounts)) == [0] * len(accounts)

    for account_id in accounts:
        pages = [page async for page in read_pages(cluster_client, account_id, 0, 2**42)]
        assert [len(page) for page in pages] == [2 * 12]  # two records of 12 values each (the id and 11 fields)
        _script_flush(redis_cluster)
    # Each account's keys are all on the master of its slot, and on no other.
    for account_id in accounts:
        owner = redis_cluster.node_of(keyspace.account(account_id))
        for port in redis_cluster.ports:
            with contextlib.closing(redis.Redis(host="127.0.0.1", port=port)) as node:
                found = node.keys(f"{keyspace.account_tag(account_id)}:*")
                assert bool(found) is (port == owner), (account_id, port, found)


async def test_admin_and_usage_reads_span_masters(
    cluster_client: RedisClient, redis_cluster: RedisClusterNodes
) -> None:
    clock = FakeClock()
    settings = Settings(redis=RedisConfig(url=redis_cluster.url, cluster=True))
    store, ledger = AccountStore(cluster_client, clock=clock), ledger_for(cluster_client, settings, clock)
    accounts = await _accounts_on_every_master(store, redis_cluster)
    for account_id, (sha, _) in accounts.items():
        assert await _reserve(ledger, account_id, sha, "r1") is ReserveStatus.HELD
        await ledger.settle(_settlement(account_id, "r1"))

    loaded = {account.id: account.balance_micros for account in await store.load_accounts()}
    assert {account_id: loaded[account_id] for account_id in accounts} == dict.fromkeys(accounts, 100_000 - COST)
    day = Granularity.DAY.floor(clock.utc())
    usage_range = UsageRange(day, day + timedelta(days=1), Granularity.DAY)
    reader = UsageReader(cluster_client)
    summaries, models = await reader.summary(list(loaded), usage_range, clock.utc())
    assert sum(summary.counts.credits_micros for summary in summaries) == COST * len(accounts)
    assert models["m"].requests == len(accounts)
    for account_id, (sha, key_id) in accounts.items():
        assert (await reader.account_usage(account_id, usage_range, clock.utc())).totals.credits_micros == COST
        key_usage = await reader.api_key_usage(account_id, usage_range, clock.utc())
        assert key_usage.range_usage.api_keys[key_id].requests == 1 and key_id in key_usage.last_used_ms
        # Revoking is a transaction in the account's slot; the global key index is read first.
        revoked = await store.mark_revoked(key_id)
        assert revoked is not None and revoked.revoked_at is not None
        assert await _reserve(ledger, account_id, sha, "r2") is ReserveStatus.UNKNOWN_KEY


async def test_hundreds_of_concurrent_calls_on_one_master(cluster_client: RedisClient) -> None:
    """More calls in flight to one master than redis-py's cluster pool holds by default (100) all get through."""
    clock = FakeClock()
    store = AccountStore(cluster_client, clock=clock)
    ledger = ledger_for(cluster_client, Settings(models={}, upstreams={}), clock)
    account = await store.insert_account("busy", 10**9)
    _, key = await store.insert_api_key(account.id, "app")
    parsed = parse_api_key(key)
    assert parsed is not None
    outcomes = await asyncio.gather(*(_reserve(ledger, account.id, parsed.sha256, f"r{index}") for index in range(300)))
    assert set(outcomes) == {ReserveStatus.HELD}
    assert await ledger.reserved(account.id) == 300 * HOLD


async def _one_account(client: RedisClient) -> tuple[Ledger, str, str]:
    clock = FakeClock()
    store = AccountStore(client, clock=clock)
    account = await store.insert_account("acme", 100_000)
    _, key = await store.insert_api_key(account.id, "app")
    parsed = parse_api_key(key)
    assert parsed is not None
    return ledger_for(client, Settings(models={}, upstreams={}), clock), account.id, parsed.sha256


async def test_dead_pooled_connections_are_retried(
    cluster_client: RedisClient, redis_cluster: RedisClusterNodes
) -> None:
    ledger, account_id, sha = await _one_account(cluster_client)
    assert await _reserve(ledger, account_id, sha, "r1") is ReserveStatus.HELD
    for port in redis_cluster.ports:  # as a restart would: every pooled connection dies
        with contextlib.closing(redis.Redis(host="127.0.0.1", port=port)) as node:
            node.client_kill_filter(_type="normal", skipme=True)
    assert await _reserve(ledger, account_id, sha, "r2") is ReserveStatus.HELD


async def test_a_timed_out_call_is_not_retried(cluster_url: str, redis_cluster: RedisClusterNodes) -> None:
    """A call that timed out may still run, so its caller must see the timeout; a retry would hide it.

    A retry to the frozen master would wait out at least one more timeout (redis-py's connection handshake, or
    the command itself), so the caller sees the error within two; the margin is a whole timeout for a busy
    machine."""
    timeout = 1.0
    settings = Settings(redis=RedisConfig(url=cluster_url, cluster=True, timeout=timeout))
    client = redis_client(cluster_url, settings)
    try:
        ledger, account_id, sha = await _one_account(client)
        assert await _reserve(ledger, account_id, sha, "r0") is ReserveStatus.HELD  # the script is on its master
        owner = redis_cluster.node_of(keyspace.account(account_id))
        redis_cluster.reset_stats(owner)
        redis_cluster.freeze(owner)
        try:
            started = time.monotonic()
            with pytest.raises(redis.exceptions.TimeoutError):
                await _reserve(ledger, account_id, sha, "r1")
            assert time.monotonic() - started < 2 * timeout
        finally:
            redis_cluster.thaw(owner)
        await _until(lambda: ledger.reserved(account_id), 2 * HOLD)  # it ran once the master woke up
        assert redis_cluster.calls(owner, "EVALSHA") == 1
    finally:
        await client.aclose()


async def _until(read: Callable[[], Awaitable[int]], expected: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (value := await read()) != expected:
        assert time.monotonic() < deadline, f"still {value}, not {expected}, after {timeout} s"
        await asyncio.sleep(0.02)


async def test_the_cluster_setting_needs_a_url() -> None:
    with pytest.raises(ConfigError, match="redis.cluster needs redis.url"):
        async with open_redis(Settings(redis=RedisConfig(cluster=True))):
            pass


async def test_an_unreachable_cluster_is_a_connection_error() -> None:
    """As a refused connect is for one server, so the errors that mean "Redis is unavailable" cover both."""
    url = f"redis://127.0.0.1:{free_port()}"
    client = redis_client(url, Settings(redis=RedisConfig(url=url, cluster=True)))
    try:
        with pytest.raises(redis.exceptions.ConnectionError, match="cannot be connected"):
            await client.ping()
        with pytest.raises(redis.exceptions.ConnectionError):
            await AccountStore(client, clock=FakeClock()).find_tenant(ParsedApiKey("acct_0123456789abcdef", "0" * 64))
    finally:
        await client.aclose()
