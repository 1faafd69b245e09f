"""End to end with real processes: `gateway serve` on its embedded Redis keeps balances and keys across restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from openai import OpenAI

from gateway.redis_server import free_port

ADMIN = "restart-admin"


def _wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


class Processes:
    def __init__(self, env: dict[str, str], config: Path):
        self.env = env
        self.config = config
        self.log = config.parent / "processes.log"
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--config", str(self.config), *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.running.append(process)
        return process

    def cli(self, *args: str) -> dict[str, object]:
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "--config", str(self.config), *args],
            env=self.env,
            capture_output=True,
            timeout=60,
            check=True,
        )
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    mock_port = free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
[redis]
data_dir = "{tmp_path / "data"}"
[upstreams.mock]
base_url = "http://127.0.0.1:{mock_port}/v1"
[models."mock-model"]
upstream = "mock"
upstream_model = "gpt-4o-mini"
input_credits_per_million = 1000
output_credits_per_million = 2000
"""
    )
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",) and not k.startswith("GATEWAY")}
    env["GATEWAY_ADMIN_TOKEN"] = ADMIN
    procs = Processes(env, config)
    procs.start("mock-upstream", "--port", str(mock_port), "--tokens", "10")
    _wait_http(f"http://127.0.0.1:{mock_port}/v1/models")
    yield procs
    for process in procs.running:
        if process.poll() is None:
            process.kill()
            process.wait()
    for proc in psutil.process_iter(["cmdline"]):
        if str(tmp_path) in " ".join(proc.info["cmdline"] or []):
            proc.kill()


def _redis_servers(data_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline and "redis-server" in cmdline[0] and str(data_dir.resolve()) in " ".join(cmdline):
            found.append(proc)
    return found


def test_balances_and_keys_survive_restarts(processes: Processes, tmp_path: Path) -> None:
    # The CLI starts the embedded Redis on its own when no gateway runs, and stops it after.
    account = processes.cli("accounts", "create", "--name", "persist", "--credits", "10")
    key = str(processes.cli("keys", "create", "--account", str(account["id"]), "--name", "app")["key"])
    assert _redis_servers(tmp_path / "data") == []

    port = free_port()
    gateway = processes.start("serve", "--port", str(port))
    _wait_http(f"http://127.0.0.1:{port}/healthz")
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="mock-model", messages=[{"role": "user", "content": "remember me"}]
    )
    remaining = raw.headers["x-credits-remaining"]
    assert float(remaining) < 10
    # While the gateway runs, the CLI joins its Redis instead of starting another.
    assert processes.cli("accounts", "show", str(account["id"]))["credits"] == float(remaining)
    assert len(_redis_servers(tmp_path / "data")) == 1
    processes.stop(gateway)
    assert _redis_servers(tmp_path / "data") == []  # the gateway stopped the Redis it started

    gateway = processes.start("serve", "--port", str(port))
    _wait_http(f"http://127.0.0.1:{port}/healthz")
    raw = client.chat.completions.with_raw_response.create(
        model="mock-model", messages=[{"role": "user", "content": "remember me"}]
    )
    assert raw.parse().usage is not None
    second = float(raw.headers["x-credits-remaining"])
    assert second == pytest.approx(float(remaining) - (10 - float(remaining)), abs=1e-6)
    processes.stop(gateway)
    client.close()
    # The access log shows the requests, never the key.
    log = processes.log.read_text()
    assert "POST /v1/chat/completions" in log and key not in log and key[-12:] not in log
