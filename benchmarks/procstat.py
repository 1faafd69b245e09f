"""What processes cost, read from /proc (Linux): CPU time and peak resident memory, by pid."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces): field 3 (state) is index 0."""
    text = (PROC / str(pid) / "stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far (all its threads), in seconds."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND  # utime, stime: fields 14 and 15


def children(pid: int) -> list[int]:
    """The live children of `pid`."""
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat_fields(int(entry.name))[1]) == pid:  # field 4: ppid
                    found.append(int(entry.name))
            except (OSError, ValueError):
                continue  # exited while we looked
    return sorted(found)


def status_kib(pid: int, field: str) -> int:
    """A "kB" line of /proc/PID/status: VmHWM (peak resident set), VmRSS (resident now)."""
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds per pid at one moment."""

    seconds: dict[int, float]

    @classmethod
    def of(cls, pids: list[int]) -> CpuSnapshot:
        seconds = {}
        for pid in pids:
            try:
                seconds[pid] = cpu_seconds(pid)
            except OSError:
                continue
        return cls(seconds)

    def used_since(self, before: CpuSnapshot) -> tuple[float, bool]:
        """CPU seconds spent between the snapshots by the pids in both, and whether the set of pids was the
        same (a process that exited or appeared in between makes the figure an undercount)."""
        common = self.seconds.keys() & before.seconds.keys()
        spent = sum(self.seconds[pid] - before.seconds[pid] for pid in common)
        return spent, set(self.seconds) == set(before.seconds)


def machine_busy_seconds() -> float:
    """CPU time all processes have spent since boot (/proc/stat: user, nice, system), in seconds. Interrupt
    and softirq time (loopback networking, largely) and steal are left out: no process is charged for them."""
    user, nice, system = (int(value) for value in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:4])
    return (user + nice + system) / TICKS_PER_SECOND
