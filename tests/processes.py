"""Real `gateway` processes for end-to-end tests: started with a config file and an environment, their output
in one log, and all of them stopped (killed if need be) when the test ends."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

# `mock-model` served by the mock upstream at the suite's prices (tests/common.py TEST_PRICE and REFERENCE):
# 1,000.25 credits per million input tokens, 2,000.15 per million output.
MOCK_MODEL_CONFIG = """
[upstreams.mock]
base_url = "http://127.0.0.1:{mock_port}/v1"
[models."mock-model"]
upstream = "mock"
upstream_model = "gpt-4o-mini"
input_credits_per_million = 1000.25
output_credits_per_million = 2000.15
"""


def gateway_env(**variables: str) -> dict[str, str]:
    """This process's environment without any gateway setting of its own, plus `variables`.

    `gateway serve` runs one process unless a test asks for workers (`--workers N`): a SIGKILLed gateway is then
    the process that served, as these tests mean.
    """
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("GATEWAY")}
    return env | {"GATEWAY__SERVER__WORKERS": "1"} | variables


@dataclass
class GatewayProcesses:
    """`gateway` commands run with `tmp_path/gateway.toml`."""

    tmp_path: Path
    running: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.tmp_path / "gateway.toml"

    def write_config(self, mock_port: int, extra: str = "") -> None:
        """The config file: `mock-model` on the mock upstream at `mock_port`, then `extra` TOML tables."""
        self.config.write_text(MOCK_MODEL_CONFIG.format(mock_port=mock_port) + extra)

    @property
    def log(self) -> Path:
        return self.tmp_path / "processes.log"

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "gateway", "--config", str(self.config), *args]

    def start(self, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            process = subprocess.Popen(self.command(*args), env=env, stdout=log, stderr=subprocess.STDOUT)
        self.running.append(process)
        return process

    def cli(self, env: dict[str, str], *args: str) -> dict[str, object]:
        done = subprocess.run(self.command(*args), env=env, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()
        result: dict[str, object] = json.loads(done.stdout)
        return result

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.terminate()
        for process in self.running:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else "(no output)"


def wait_http(url: str, timeout: float = 30.0) -> None:
    """Until `url` answers at all (any status)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=0.5):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


async def wait_ready(
    processes: GatewayProcesses, session: aiohttp.ClientSession, url: str, timeout: float = 30.0
) -> None:
    """Until `url` answers 200; fails early, with the processes' output, if one of them exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes.running):
            raise AssertionError(f"a process exited: {processes.tail()}")
        try:
            async with session.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered: {processes.tail()}")
