"""The settlement spool: settlements Redis could not take yet, kept in a local file until it can.

Each process appends to its own file, `<host>-<pid>-<random>.spool` in the spool directory, and holds an
exclusive `flock` on it while it runs. A line is a settlement (`{"settle": {...}, "now_ms": ...}`) or the note
that one was applied (`{"done": "<request id>"}`), each fsynced before `append` / `mark_done` return, so a
settlement the gateway owes survives a crash. Replaying applies every settlement without its "done" line
through the ledger, which is idempotent by request id: one applied twice (a crash between applying it and
writing "done") changes nothing the second time. A file whose lock can be taken belongs to a process that is
gone; whoever takes the lock replays it and deletes it.

The spool is a journal that drains into Redis, never state of its own: once replayed it is empty.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

import orjson

from gateway.billing.scripts import Settlement, SettleMode

log = logging.getLogger(__name__)

SUFFIX = ".spool"


@dataclass(frozen=True)
class SpooledSettlement:
    """A settlement and the time its request ended (it is applied as of then, whenever it is replayed)."""

    settlement: Settlement
    now_ms: int

    def to_line(self) -> bytes:
        fields = asdict(self.settlement)
        fields["mode"] = self.settlement.mode.value
        return orjson.dumps({"settle": fields, "now_ms": self.now_ms}) + b"\n"

    @classmethod
    def from_fields(cls, fields: dict[str, object]) -> SpooledSettlement:
        settle = dict(fields["settle"])  # type: ignore[call-overload]
        settle["mode"] = SettleMode(settle.get("mode", SettleMode.CHARGE))
        return cls(Settlement(**settle), int(fields["now_ms"]))  # type: ignore[call-overload]


def read_entries(path: Path) -> list[SpooledSettlement]:
    """The settlements of a spool file that have no "done" line, in order. A torn last line is skipped."""
    pending: dict[str, SpooledSettlement] = {}
    with path.open("rb") as lines:
        for line in lines:
            try:
                fields = orjson.loads(line)
            except orjson.JSONDecodeError:
                log.warning("skipping a torn line in %s", path)  # a crash mid-write: that entry was never acked
                continue
            if "done" in fields:
                pending.pop(str(fields["done"]), None)
            else:
                entry = SpooledSettlement.from_fields(fields)
                pending[entry.settlement.request_id] = entry
    return list(pending.values())


class Spool:
    """This process's spool file, and access to the files of processes that are gone. Blocking file I/O:
    call from a thread (`asyncio.to_thread`); a lock keeps the appends of several threads whole."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.path = directory / f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
        self._file: IO[bytes] | None = None
        self._pending: dict[str, SpooledSettlement] = {}
        self._lock = threading.Lock()

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def close(self) -> None:
        """Release the file; an empty one is deleted, one with settlements is left for the next process."""
        if self._file is None:
            return
        with self._lock:
            if not self._pending:
                self.path.unlink(missing_ok=True)
            self._file.close()
            self._file = None

    @property
    def pending(self) -> list[SpooledSettlement]:
        return list(self._pending.values())

    def append(self, entry: SpooledSettlement) -> None:
        """Keep a settlement until it is applied; durable when this returns."""
        with self._lock:
            self._write(entry.to_line())
            self._pending[entry.settlement.request_id] = entry

    def mark_done(self, request_ids: list[str]) -> None:
        """Note settlements as applied; the file is emptied once nothing in it is pending."""
        with self._lock:
            for request_id in request_ids:
                self._pending.pop(request_id, None)
            if self._pending:
                self._write(b"".join(orjson.dumps({"done": request_id}) + b"\n" for request_id in request_ids))
            elif self._file is not None:
                self._file.truncate(0)

    def _write(self, data: bytes) -> None:
        assert self._file is not None, "the spool is not open"
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())

    @contextmanager
    def orphans(self) -> Iterator[list[Path]]:
        """Spool files of processes that are gone, locked for the caller while it replays them."""
        taken: list[tuple[Path, IO[bytes]]] = []
        try:
            for path in sorted(self.directory.glob(f"*{SUFFIX}")):
                if path == self.path:
                    continue
                handle = _try_lock(path)
                if handle is not None:
                    taken.append((path, handle))
            yield [path for path, _ in taken]
        finally:
            for _, handle in taken:
                handle.close()


def _try_lock(path: Path) -> IO[bytes] | None:
    """The file opened and locked, or None when its process still holds it (or it is gone already)."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle
