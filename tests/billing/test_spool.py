"""The spool: settlements Redis could not take are kept durably, replayed exactly once, by this process or,
after a crash, by the next one that starts on the same directory."""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gateway.billing import keyspace
from gateway.billing.settler import Settler
from gateway.billing.spool import Spool, SpooledSettlement, read_entries
from tests.billing.conftest import funded_ledger, settlement


def _entry(request_id: str, cost: int = 120, account: str = "acct_0000000000000001") -> SpooledSettlement:
    return SpooledSettlement(settlement(account, request_id, cost, record={"status": 200}), now_ms=1_790_000_000_000)


@pytest.fixture
def new_spool(tmp_path: Path) -> Iterator[Callable[[], Spool]]:
    """Open spools on one directory, as several processes would; each is closed at the end."""
    opened: list[Spool] = []

    def make() -> Spool:
        spool = Spool(tmp_path)
        spool.open()
        opened.append(spool)
        return spool

    yield make
    for spool in opened:
        spool.close()


def test_entries_survive_the_process_and_done_ones_are_dropped(new_spool: Callable[[], Spool]) -> None:
    spool = new_spool()
    spool.append(_entry("r1"))
    spool.append(_entry("r2"))
    spool.mark_done(["r1"])
    # What the next process would read if this one died now (the file is never closed here).
    assert [e.settlement.request_id for e in read_entries(spool.path)] == ["r2"]
    assert read_entries(spool.path)[0] == _entry("r2")
    spool.mark_done(["r2"])
    assert spool.path.stat().st_size == 0  # nothing pending: the file is emptied
    spool.close()
    assert not spool.path.exists()


def test_a_torn_last_line_is_skipped(new_spool: Callable[[], Spool]) -> None:
    spool = new_spool()
    spool.append(_entry("r1"))
    with spool.path.open("ab") as torn:
        torn.write(b'{"settle": {"account_id": "acct_')  # the crash hit mid-write: never acknowledged
    assert [e.settlement.request_id for e in read_entries(spool.path)] == ["r1"]


def test_a_live_process_file_is_not_adopted(new_spool: Callable[[], Spool]) -> None:
    alive, other = new_spool(), new_spool()
    alive.append(_entry("r1"))
    with other.orphans() as paths:
        assert paths == []  # alive still holds its lock
    alive.close()  # closing with a pending entry leaves the file for whoever comes next
    with other.orphans() as paths:
        assert paths == [alive.path]
        with alive.path.open("rb") as handle:  # and the adopter holds the lock while it replays
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            else:
                raise AssertionError("an adopted spool file must stay locked")


async def test_replay_applies_each_settlement_once_across_processes(
    redis_client: Redis, new_spool: Callable[[], Spool]
) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 10_000)
    for request_id in ("r1", "r2", "r3"):
        await ledger.reserve(account, sha, request_id, hold_micros=300, min_hold_micros=300, ttl_s=60)
    crashed = new_spool()
    for request_id in ("r1", "r2"):
        crashed.append(_entry(request_id, account=account))
    # r1 was also applied before the crash (the settle ran, "done" never got written): it must not count twice.
    await ledger.settle(_entry("r1", account=account).settlement, now_ms=1_790_000_000_000)
    crashed.close()

    successor = new_spool()
    successor.append(_entry("r3", account=account))
    settler = Settler(ledger, successor)
    assert await settler.replay() == 0
    assert not crashed.path.exists() and successor.pending == []
    assert await ledger.balance(account) == 10_000 - 3 * 120 and await ledger.reserved(account) == 0
    records = await redis_client.xrange(keyspace.request_log(account))
    assert sorted(fields["request_id"] for _, fields in records) == ["r1", "r2", "r3"]
    # Spooled settlements count on the day their request ended, not the day they were replayed.
    assert all(entry_id.startswith("1790000000000-") for entry_id, _ in records)
    assert await settler.replay() == 0 and await redis_client.xlen(keyspace.request_log(account)) == 3
