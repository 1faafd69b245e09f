"""Spool lines read back as what was written (releases stay releases, old lines without a mode are charges,
several ids marked done at once are all done), and a spool closes cleanly whatever state it is in."""

from __future__ import annotations

from pathlib import Path

import orjson

from gateway.billing import Settlement
from gateway.billing.scripts import SettleMode
from gateway.billing.spool import Spool, SpooledSettlement, read_entries
from tests.billing.conftest import settlement

NOW_MS = 1_790_000_000_000


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
