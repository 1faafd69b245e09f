"""`gateway serve` as a process: what it does when it cannot start, with one worker or several."""

from __future__ import annotations

import errno
import os
import socket
import subprocess

from gateway.redis_server import free_port
from tests.processes import GatewayProcesses, gateway_env


def test_a_port_in_use_stops_one_worker_and_several_with_the_same_line(
    processes: GatewayProcesses, redis_url: str
) -> None:
    processes.write_config(free_port())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runs = {
            workers: subprocess.run(
                processes.command("serve", "--port", str(port), "--workers", workers),
                env=gateway_env(REDIS_URL=redis_url),
                capture_output=True,
                timeout=60,
            )
            for workers in ("1", "2")
        }
    expected = f"gateway: cannot listen on 127.0.0.1 port {port}: {os.strerror(errno.EADDRINUSE)}\n"
    for workers, done in runs.items():
        assert (done.returncode, done.stderr.decode(), done.stdout) == (1, expected, b""), workers
