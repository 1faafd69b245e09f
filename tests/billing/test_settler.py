"""The settler: a settlement Redis cannot take is spooled with the time its request ended and applied as of then,
by this process or, after a crash, by the next; the replay loop backs off while Redis stays away."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from gateway.billing import Ledger, ReserveStatus, Settlement, SettleOutcome, keyspace
from gateway.billing import settler as settler_module
from gateway.billing.health import RedisHealth
from gateway.billing.settler import Settler, rest_until_set
from gateway.billing.spool import Spool, read_entries
from gateway.config import RedisConfig, Settings
from gateway.storage import redis_client
from tests.billing.common import funded_ledger, settlement
from tests.common import FakeClock
from tests.faults import ControlledRedis

DAY_S = 86_400


@pytest.fixture
def spools(tmp_path: Path) -> Iterator[list[Spool]]:
    """Two spools on one directory, as two processes would have; both closed at the end."""
    opened = [Spool(tmp_path), Spool(tmp_path)]
    for spool in opened:
        spool.open()
    yield opened
    for spool in opened:
        spool.close()


class UnreachableLedger:
    """A ledger on the same clock whose Redis refuses every connection."""

    def __init__(self, ledger: Ledger) -> None:
        self.now_ms = ledger.now_ms

    async def settle(self, settlement: Settlement, *, now_ms: int | None = None) -> SettleOutcome:
        raise redis_errors.ConnectionError("Connection refused")


class Observer:
    def __init__(self) -> None:
        self.settled_ids: list[str] = []
        self.charged: list[int] = []
        self.redis_errors = 0

    def settled(self, settlement: Settlement, outcome: SettleOutcome) -> None:
        self.settled_ids.append(settlement.request_id)
        self.charged.append(outcome.charged_micros)

    def redis_error(self) -> None:
        self.redis_errors += 1


async def test_a_settlement_redis_could_not_take_counts_on_the_day_it_ended(
    redis_client: Redis, spools: list[Spool]
) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    clock = ledger.clock
    assert isinstance(clock, FakeClock)
    await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60)
    ended_ms, ended_day = ledger.now_ms(), clock.utc()
    observer = Observer()
    down = Settler(UnreachableLedger(ledger), spools[0], observer)  # type: ignore[arg-type]
    assert await down.settle(settlement(account, "r1", 120)) is None
    assert [entry.now_ms for entry in spools[0].pending] == [ended_ms]
    assert observer.redis_errors == 1 and observer.settled_ids == []

    clock.now += DAY_S  # Redis is back the next day
    assert await Settler(ledger, spools[0], observer).replay() == 0
    assert observer.settled_ids == ["r1"] and observer.charged == [120]
    day = await redis_client.hgetall(keyspace.usage_day(account, ended_day))
    assert day["a:chat.completions:credits"] == "120" and day["a:chat.completions:requests"] == "1"
    [(record_id, _)] = await redis_client.xrange(keyspace.request_log(account))
    assert record_id == f"{ended_ms}-0"
    assert await ledger.balance(account) == 880


async def test_a_deferred_release_outlives_its_process_and_is_applied_by_the_next(
    redis_client: Redis, spools: list[Spool]
) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    held = await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60)
    assert held.status is ReserveStatus.HELD
    crashed, successor = spools
    observer = Observer()
    await Settler(ledger, crashed, observer).defer(Settlement.release(account, "r1"))
    assert observer.redis_errors == 1  # defer is called because Redis just failed
    [entry] = read_entries(crashed.path)
    assert entry.now_ms == ledger.now_ms() and entry.settlement == Settlement.release(account, "r1")
    crashed.close()  # the process dies with the release still owed

    assert await Settler(ledger, successor, observer).replay() == 0
    assert observer.settled_ids == ["r1"]
    assert not crashed.path.exists()
    assert await ledger.balance(account) == 1_000 and await ledger.reserved(account) == 0
    assert (
        await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60)
    ).status is ReserveStatus.SETTLED


async def test_an_orphan_settlement_counts_on_the_day_it_ended(redis_client: Redis, spools: list[Spool]) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    clock = ledger.clock
    assert isinstance(clock, FakeClock)
    await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60)
    ended_day = clock.utc()
    crashed, successor = spools
    await Settler(UnreachableLedger(ledger), crashed).settle(settlement(account, "r1", 120))  # type: ignore[arg-type]
    crashed.close()
    clock.now += DAY_S
    await Settler(ledger, successor).replay()
    day = await redis_client.hgetall(keyspace.usage_day(account, ended_day))
    assert day["a:chat.completions:credits"] == "120"
    assert not await redis_client.exists(keyspace.usage_day(account, datetime.fromtimestamp(clock.now, UTC)))


class Stop(Exception):
    pass


async def test_replay_backs_off_while_redis_stays_away_and_rests_once_drained(
    redis_client: Redis, spools: list[Spool], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger, _, _ = await funded_ledger(redis_client, 0)
    settler = Settler(ledger, spools[0])
    left_after_each_replay = iter([3, 3, 3, 3, 3, 3, 0, 2, 0])

    async def replay() -> int:
        try:
            return next(left_after_each_replay)
        except StopIteration:
            raise Stop() from None

    waits: list[float] = []

    async def rest_until_set(event: asyncio.Event, timeout_s: float) -> None:
        waits.append(timeout_s)

    monkeypatch.setattr(settler, "replay", replay)
    monkeypatch.setattr(settler_module, "rest_until_set", rest_until_set)
    with pytest.raises(Stop):
        await settler.run()
    # Doubling from 0.5 s up to 5 s while settlements are left; 30 s once none are; 0.5 s again after that.
    assert waits == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 30.0, 0.5, 30.0]


async def test_replay_wakes_as_soon_as_something_is_spooled(redis_client: Redis, spools: list[Spool]) -> None:
    ledger, _, _ = await funded_ledger(redis_client, 0)
    settler = Settler(ledger, spools[0])
    replays = 0
    original = settler.replay

    async def counted() -> int:
        nonlocal replays
        replays += 1
        return await original()

    settler.replay = counted  # type: ignore[method-assign]
    task = asyncio.create_task(settler.run(idle_s=60))
    try:
        await asyncio.sleep(0.05)
        assert replays == 1  # resting for 60 s
        settler.wakeup.set()
        await asyncio.sleep(0.05)
        assert replays == 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_cancel_that_arrives_as_something_is_spooled_stops_the_loop(
    redis_client: Redis, spools: list[Spool]
) -> None:
    """asyncio.wait_for of Python 3.11 returns the event's result when the cancel and the event land in the same
    turn of the loop (cpython gh-86296): the loop went on, and the shutdown that awaited it waited for ever."""
    ledger, _, _ = await funded_ledger(redis_client, 0)
    settler = Settler(ledger, spools[0])
    task = asyncio.create_task(settler.run(idle_s=60))
    await asyncio.sleep(0.05)  # resting for 60 s
    settler.wakeup.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done == {task} and task.cancelled()


async def test_rest_until_set_returns_when_set_or_after_the_timeout_and_passes_a_cancel_on() -> None:
    """The rest of the replay loop and of the webhook sender's rounds."""
    event = asyncio.Event()
    await rest_until_set(event, 0.01)  # the timeout: no error
    event.set()
    await asyncio.wait_for(rest_until_set(event, 60), timeout=1)
    event.clear()
    resting = asyncio.create_task(rest_until_set(event, 60))
    await asyncio.sleep(0)
    event.set()
    resting.cancel()  # in the same turn of the loop as the event
    with pytest.raises(asyncio.CancelledError):
        await resting


async def test_the_spool_is_replayed_as_soon_as_the_health_check_sees_redis_back(
    controlled_redis: ControlledRedis, spools: list[Spool]
) -> None:
    """Not when the replay loop's backoff would have tried next: here that is an hour away, so only the health
    check's word can bring the replay within the test's deadline."""
    settings = Settings(redis=RedisConfig(url=controlled_redis.url, timeout=1.0))
    redis = redis_client(controlled_redis.url, settings)
    ledger, account_id, sha = await funded_ledger(redis, 1_000)  # type: ignore[arg-type]
    await ledger.load_scripts()
    await ledger.reserve(account_id, sha, "r1", hold_micros=500, min_hold_micros=500, ttl_s=60)
    settler = Settler(ledger, spools[0])
    health = RedisHealth(redis, ledger, on_back=settler.redis_back)
    tries: list[int] = []
    replay = settler.replay

    async def counted() -> int:
        tries.append(left := await replay())
        return left

    settler.replay = counted  # type: ignore[method-assign]
    controlled_redis.stop()
    assert not await health.check()
    assert await settler.settle(settlement(account_id, "r1", 300)) is None  # spooled
    loop = asyncio.create_task(settler.run(retry_s=3600, max_retry_s=3600))
    try:
        await _until(lambda: tries == [1])  # the first try found Redis away: an hour's rest
        controlled_redis.start()
        assert await health.check()
        await _until(lambda: not settler.spool.pending)
        assert tries == [1, 0] and await ledger.balance(account_id) == 700
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await redis.aclose()


async def _until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "never happened"
        await asyncio.sleep(0.02)
