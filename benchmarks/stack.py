"""Everything a benchmark run talks to, on 127.0.0.1: a Redis, the mock upstream, the gateway and its key.

Redis is the embedded one's binary (`EmbeddedRedis`), with AOF on as the gateway's embedded Redis has it, on
a TCP port. The mock upstream answers at once (no latency); it is `gateway mock-upstream` without its record of
every request (benchmarks/mock.py). The gateway runs `serve --workers N` in front of
it with full metering; its account is made through the CLI with credits for billions of requests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks import procstat
from gateway.redis_server import EmbeddedRedis, free_port

REPO = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "bench-admin"
CREDITS = 1_000_000_000  # 10^15 micro-credits: below 2^53, and ~10^10 requests of this size
# A model per API (benchmarks/apis.py): chat and Responses, embeddings, legacy completions, and Anthropic Messages
# from an `api = "anthropic"` upstream, all answered by the one mock. A gateway that does not know a key ignores it.
CONFIG = """
[upstreams.mock]
base_url = "http://127.0.0.1:{mock_port}/v1"
[upstreams.claude]
base_url = "http://127.0.0.1:{mock_port}/v1"
api = "anthropic"
[models."mock-model"]
upstream = "mock"
upstream_model = "gpt-4o-mini"
input_credits_per_million = 1500
output_credits_per_million = 6000
[models."mock-embedding"]
upstream = "mock"
upstream_model = "text-embedding-3-small"
input_credits_per_million = 20
output_credits_per_million = 0
[models."mock-instruct"]
upstream = "mock"
upstream_model = "gpt-3.5-turbo-instruct"
input_credits_per_million = 1500
output_credits_per_million = 2000
[models."mock-claude"]
upstream = "claude"
upstream_model = "claude-sonnet-mock"
input_credits_per_million = 3000
output_credits_per_million = 15000
"""


@dataclass(frozen=True)
class Stack:
    gateway_port: int
    mock_port: int
    gateway_pid: int  # the master (or the only process)
    mock_pid: int
    redis_pid: int
    key: str

    def gateway_pids(self) -> list[int]:
        """The gateway's processes now: the master and its workers."""
        return [self.gateway_pid, *procstat.children(self.gateway_pid)]


def _env(redis_url: str, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("GATEWAY")}
    pythonpath = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env | {
        "REDIS_URL": redis_url,
        "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "GATEWAY__SERVER__SPOOL_DIR": str(workdir / "spool"),
        "PYTHONPATH": pythonpath,
    }


def _gateway(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "gateway", "--config", str(config), *args]


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until `url` answers 200; fails if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


def _wait_workers(master: subprocess.Popen[bytes], workers: int, timeout: float = 60.0) -> None:
    """Until the master has its workers (a single process is its own worker)."""
    deadline = time.monotonic() + timeout
    while workers > 1 and len(procstat.children(master.pid)) < workers:
        if master.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the gateway never had {workers} workers")
        time.sleep(0.1)


def _cli(config: Path, env: dict[str, str], *args: str) -> dict[str, object]:
    done = subprocess.run(_gateway(config, *args), env=env, capture_output=True, timeout=60, check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=100)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running_stack(workdir: Path, workers: int, completion_tokens: int) -> Iterator[Stack]:
    """Start Redis, the mock upstream and the gateway in `workdir`; stop them all on the way out."""
    with ExitStack() as stack:
        redis = EmbeddedRedis(workdir / "redis", port=free_port(), persistent=True)
        redis_url = redis.start()
        stack.callback(redis.stop)
        assert redis.process is not None
        mock_port, gateway_port = free_port(), free_port()
        config = workdir / "gateway.toml"
        config.write_text(CONFIG.format(mock_port=mock_port))
        env = _env(redis_url, workdir)
        log = stack.enter_context((workdir / "processes.log").open("ab"))
        started = []
        mock_command = [sys.executable, "-m", "benchmarks.mock", "--port", str(mock_port)]
        for command in (
            [*mock_command, "--tokens", str(completion_tokens)],
            _gateway(config, "serve", "--port", str(gateway_port), "--workers", str(workers)),
        ):
            process = subprocess.Popen(command, env=env, cwd=workdir, stdout=log, stderr=log)
            stack.callback(_stop, process)
            started.append(process)
        mock, gateway = started
        _wait_http(f"http://127.0.0.1:{mock_port}/v1/models", mock)
        _wait_workers(gateway, workers)
        for _ in range(20):  # fresh connections: with workers, each lands on a socket the kernel picks
            _wait_http(f"http://127.0.0.1:{gateway_port}/readyz", gateway)
        account = _cli(config, env, "accounts", "create", "--name", "bench", "--credits", str(CREDITS))
        key = _cli(config, env, "keys", "create", "--account", str(account["id"]), "--name", "bench")["key"]
        yield Stack(gateway_port, mock_port, gateway.pid, mock.pid, redis.process.pid, str(key))
