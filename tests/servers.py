"""How the suite starts its redis-servers, whatever their version (Redis >= 6.2, Valkey): the arguments every
test server gets, and waiting until a server stopped with SIGSTOP is stopped.

Redis 7 refuses DEBUG unless started with `enable-debug-command`, an option Redis 6.2 does not know (it refuses
to start with it), so the option is given by version. `local` allows it from loopback and unix sockets only.
"""

from __future__ import annotations

import functools
import re
import subprocess
import time
from pathlib import Path

from gateway.redis_server import find_redis_server

VERSION = re.compile(r"\bv=(\d+)\.(\d+)\.(\d+)")


def parse_version(banner: str) -> tuple[int, int, int]:
    """The version in `redis-server --version`'s line, e.g. "Redis server v=7.0.15 sha=..." -> (7, 0, 15)."""
    found = VERSION.search(banner)
    if found is None:
        raise ValueError(f"no version in {banner!r}")
    major, minor, patch = (int(part) for part in found.groups())
    return major, minor, patch


@functools.cache
def server_version(binary: str) -> tuple[int, int, int]:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30, check=True)
    return parse_version(done.stdout)


def args_for(version: tuple[int, int, int]) -> list[str]:
    """What a test server of `version` is started with beyond the gateway's own arguments."""
    return ["--enable-debug-command", "local"] if version >= (7, 0, 0) else []


def server_args(binary: str | None = None) -> list[str]:
    """`args_for` the version of `binary`, by default the one the gateway's embedded Redis would run."""
    return args_for(server_version(binary or find_redis_server()))


def wait_stopped(pid: int, timeout: float = 10.0) -> None:
    """Until the process is in the stopped state (SIGSTOP delivered), not merely signalled; Linux's /proc shows
    it, elsewhere this returns at once."""
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # "pid (comm) S ...": the state follows the last ")", since comm may hold spaces and parentheses.
            state = stat.read_text().rpartition(")")[2].split()[0]
        except OSError:
            return
        if state in ("T", "t"):
            return
        time.sleep(0.001)
    raise AssertionError(f"process {pid} did not stop within {timeout} s")
