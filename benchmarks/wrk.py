"""Run wrk (the native load generator) with benchmarks/request.lua and read the JSON its done() hook prints."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from benchmarks.apis import ApiLoad

SCRIPT = Path(__file__).resolve().parent / "request.lua"
MARKER = "BENCH_JSON "


class WrkError(RuntimeError):
    pass


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise WrkError("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    return found


def wrk_version() -> str:
    done = subprocess.run([wrk_binary(), "--version"], capture_output=True, text=True)
    first = (done.stdout or done.stderr).splitlines()[0]
    return first.split(" Copyright")[0].strip()  # "wrk debian/4.1.0-3+b2 [epoll]"


@dataclass(frozen=True)
class Load:
    """One wrk run: `request` (an API's request in one mode) sent to `url` (`url` ends with its path) at
    concurrency `connections`."""

    url: str
    request: ApiLoad
    connections: int
    seconds: int
    threads: int = 1
    key: str = ""


def run_wrk(load: Load) -> dict[str, object]:
    """wrk's figures for the load: requests, duration_us, bytes, errors{...}, latency_us{p50, p90, p99, ...}."""
    threads = min(load.threads, load.connections)
    command = [wrk_binary(), f"-t{threads}", f"-c{load.connections}", f"-d{load.seconds}s", "--timeout", "10s"]
    for header in load.request.header_lines(load.key):
        command += ["-H", header]
    command += ["-s", str(SCRIPT), load.url, "--", load.request.body_bytes().decode()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=load.seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith(MARKER):
            result: dict[str, object] = json.loads(line[len(MARKER) :])
            return result
    raise WrkError(f"wrk printed no result (exit {done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
