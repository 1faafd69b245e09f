"""End to end with real processes: `gateway serve` on its embedded Redis keeps balances and keys across restarts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from openai import OpenAI

from gateway.redis_server import free_port
from tests.processes import GatewayProcesses, gateway_env, wait_http

ADMIN = "restart-admin"


@pytest.fixture
def embedded(processes: GatewayProcesses, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A config with no REDIS_URL (the embedded Redis in tmp_path/data) and a mock upstream; the environment."""
    mock_port = free_port()
    processes.write_config(mock_port, f'[redis]\ndata_dir = "{tmp_path / "data"}"\n')
    env = gateway_env(GATEWAY_ADMIN_TOKEN=ADMIN)
    processes.start(env, "mock-upstream", "--port", str(mock_port), "--tokens", "10")
    wait_http(f"http://127.0.0.1:{mock_port}/v1/models")
    yield env
    processes.stop_all()
    for proc in psutil.process_iter(["cmdline"]):  # an embedded Redis a killed process left behind
        if str(tmp_path) in " ".join(proc.info["cmdline"] or []):
            proc.kill()


def _redis_servers(data_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline and "redis-server" in cmdline[0] and str(data_dir.resolve()) in " ".join(cmdline):
            found.append(proc)
    return found


def test_balances_and_keys_survive_restarts(
    processes: GatewayProcesses, embedded: dict[str, str], tmp_path: Path
) -> None:
    # The CLI starts the embedded Redis on its own when no gateway runs, and stops it after.
    account = processes.cli(embedded, "accounts", "create", "--name", "persist", "--credits", "10")
    key = str(processes.cli(embedded, "keys", "create", "--account", str(account["id"]), "--name", "app")["key"])
    assert _redis_servers(tmp_path / "data") == []

    port = free_port()
    serving = {**embedded, "GATEWAY__SERVER__ACCESS_LOG": "true"}  # off by default; on, it must not leak keys
    gateway = processes.start(serving, "serve", "--port", str(port))
    wait_http(f"http://127.0.0.1:{port}/healthz")
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="mock-model", messages=[{"role": "user", "content": "remember me"}]
    )
    remaining = raw.headers["x-credits-remaining"]
    assert float(remaining) < 10
    # While the gateway runs, the CLI joins its Redis instead of starting another.
    assert processes.cli(embedded, "accounts", "show", str(account["id"]))["credits"] == float(remaining)
    assert len(_redis_servers(tmp_path / "data")) == 1
    processes.stop(gateway)
    assert _redis_servers(tmp_path / "data") == []  # the gateway stopped the Redis it started

    gateway = processes.start(serving, "serve", "--port", str(port))
    wait_http(f"http://127.0.0.1:{port}/healthz")
    raw = client.chat.completions.with_raw_response.create(
        model="mock-model", messages=[{"role": "user", "content": "remember me"}]
    )
    assert raw.parse().usage is not None
    second = float(raw.headers["x-credits-remaining"])
    assert second == pytest.approx(float(remaining) - (10 - float(remaining)), abs=1e-6)
    processes.stop(gateway)
    client.close()
    # The access log, turned on, shows the requests, never the key.
    log = processes.log.read_text()
    assert "POST /v1/chat/completions" in log and key not in log and key[-12:] not in log
