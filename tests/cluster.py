"""A real 3-master Redis Cluster for the tests, run from the same redis-server binary as the embedded Redis.

Each node listens on a free loopback port whose cluster bus port (port + 10000; Redis 6.2 cannot set it) is
free too. `redis-cli --cluster create` from the binary's directory assigns the slots; start-up takes about a
second or two.

    with RedisClusterNodes(tmp_path) as nodes:
        url = nodes.url  # redis://127.0.0.1:PORT of one master; the client discovers the others
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from gateway.redis_server import find_redis_server
from tests.servers import server_args, wait_stopped

MASTERS = 3
BUS_OFFSET = 10_000  # Redis 6.2 always puts the cluster bus on port + 10000


class NodeExited(RuntimeError):
    pass


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_ports(count: int) -> list[int]:
    """`count` ports below the ephemeral range whose bus ports are free as well."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(20_000, 30_000)
        if port not in ports and _bindable(port) and _bindable(port + BUS_OFFSET):
            ports.append(port)
    return ports


class RedisClusterNodes:
    """Start three cluster-enabled masters without persistence, assign all slots, and stop them at the end."""

    def __init__(self, base_dir: Path):
        self.base_dir = base_dir
        self.server = find_redis_server()
        self.cli = str(Path(self.server).with_name("redis-cli"))
        self.ports: list[int] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def start(self, attempts: int = 3) -> str:
        """Start the cluster, on other ports if a port was taken between choosing and binding it."""
        for attempt in range(attempts):
            try:
                return self._start()
            except NodeExited:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _start(self) -> str:
        self.ports = free_cluster_ports(MASTERS)
        try:
            for port in self.ports:
                self.processes.append(self._start_node(port))
            for port in self.ports:
                self._wait(functools.partial(self._answers, port), f"node {port} to answer")
            hosts = [f"127.0.0.1:{port}" for port in self.ports]
            subprocess.run(
                [self.cli, "--cluster", "create", *hosts, "--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=30,
            )
            self._wait(self._all_ok, "cluster_state:ok on every node")
        except BaseException:
            self.stop()
            raise
        return self.url

    def _start_node(self, port: int) -> subprocess.Popen[bytes]:
        node_dir = self.base_dir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        args = [self.server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir)]
        args += ["--daemonize", "no", "--logfile", str(node_dir / "redis.log"), "--save", "", "--appendonly", "no"]
        args += ["--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf")]
        args += ["--cluster-node-timeout", "5000", *server_args(self.server)]
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def _client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)

    def _answers(self, port: int) -> bool:
        with contextlib.closing(self._client(port)) as client:
            return bool(client.ping())

    def _all_ok(self) -> bool:
        for port in self.ports:
            with contextlib.closing(self._client(port)) as client:
                if client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                    return False
        return True

    def _wait(self, ready: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise NodeExited(f"a cluster node exited with {process.returncode} before {what}")
            with contextlib.suppress(redis.RedisError, OSError):
                if ready():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"timed out waiting for {what}")

    def flushall(self) -> None:
        """Empty every master (a cluster has only database 0)."""
        for port in self.ports:
            with contextlib.closing(self._client(port)) as client:
                client.flushall()

    def node_of(self, key: str) -> int:
        """The port of the master that serves `key`'s slot."""
        with contextlib.closing(self._client(self.ports[0])) as client:
            slot = int(client.execute_command("CLUSTER KEYSLOT", key))
            for start, end, primary, *_replicas in client.execute_command("CLUSTER SLOTS"):
                if start <= slot <= end:
                    return int(primary[1])
        raise AssertionError(f"no master serves slot {slot}")

    def freeze(self, port: int) -> None:
        """SIGSTOP the node on `port`: its connections stay open, commands wait unanswered. Returns once it is
        stopped; a stop shorter than the node timeout (5 s) marks no node as failing."""
        process = self.processes[self.ports.index(port)]
        os.kill(process.pid, signal.SIGSTOP)
        wait_stopped(process.pid)

    def thaw(self, port: int) -> None:
        """SIGCONT: the node runs every command that waited, in order."""
        os.kill(self.processes[self.ports.index(port)].pid, signal.SIGCONT)

    def calls(self, port: int, command: str) -> int:
        """How many times the node on `port` ran `command` since it started or since `reset_stats`."""
        with contextlib.closing(self._client(port)) as client:
            stats: dict[str, dict[str, int]] = client.info("commandstats")
            return stats.get(f"cmdstat_{command.lower()}", {}).get("calls", 0)

    def reset_stats(self, port: int) -> None:
        with contextlib.closing(self._client(port)) as client:
            client.config_resetstat()

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGCONT)  # a frozen node cannot take SIGTERM's shutdown
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []

    def __enter__(self) -> RedisClusterNodes:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
