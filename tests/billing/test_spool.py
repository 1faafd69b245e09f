"""The spool: settlements Redis could not take are kept durably, replayed exactly once, by this process or,
after a crash, by the next one that starts on the same directory. Its lines read back as what was written
(releases stay releases, old lines without a mode are charges, several ids marked done at once are all done),
and a spool closes cleanly whatever state it is in."""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from gateway.billing import Settlement, keyspace
from gateway.billing.scripts import SettleMode
from gateway.billing.settler import Settler
from gateway.billing.spool import Spool, SpooledSettlement, read_entries
from tests.billing.common import funded_ledger, settlement

NOW_MS = 1_790_000_000_000


def _entry(request_id: str, cost: int = 120, account: str = "acct_0000000000000001") -> SpooledSettlement:
    return SpooledSettlement(settlement(account, request_id, cost, record={"status": 200}), now_ms=NOW_MS)


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


def test_a_spooled_release_reads_back_as_a_release() -> None:
    entry = SpooledSettlement(Settlement.release("acct_1", "r1"), NOW_MS)
    read = SpooledSettlement.from_fields(orjson.loads(entry.to_line()))
    assert read == entry and read.settlement.mode is SettleMode.RELEASE


def test_a_spooled_charge_reads_back_whole() -> None:
    entry = SpooledSettlement(settlement("acct_1", "r1", 120, failed=True, record={"status": 500}), NOW_MS)
    assert SpooledSettlement.from_fields(orjson.loads(entry.to_line())) == entry


def test_a_line_from_before_modes_existed_reads_as_a_charge() -> None:
    fields = orjson.loads(SpooledSettlement(settlement("acct_1", "r1", 120), NOW_MS).to_line())
    del fields["settle"]["mode"]
    assert SpooledSettlement.from_fields(fields).settlement.mode is SettleMode.CHARGE


def test_ids_marked_done_together_are_each_done(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    try:
        for request_id in ("r1", "r2", "r3"):
            spool.append(SpooledSettlement(settlement("acct_1", request_id, 1), NOW_MS))
        spool.mark_done(["r1", "r2"])
        assert [entry.settlement.request_id for entry in read_entries(spool.path)] == ["r3"]
    finally:
        spool.close()


def test_closing_a_spool_that_was_never_opened_does_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.close()
    assert not (tmp_path / "spool").exists()


def test_closing_an_empty_spool_whose_file_was_removed_does_not_fail(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    spool.path.unlink()  # an operator cleared the directory
    spool.close()
    assert list(tmp_path.iterdir()) == []
