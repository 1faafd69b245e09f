"""A Redis server of a test's own, to stop, restart, freeze and thaw under a running gateway."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from gateway.redis_server import EmbeddedRedis, free_port
from tests.servers import server_args, wait_stopped


class ControlledRedis:
    """A real redis-server on a fixed port with AOF on, so its data survives a stop and start."""

    def __init__(self, data_dir: Path):
        self.server = EmbeddedRedis(data_dir, port=free_port(), persistent=True, extra_args=server_args())
        self.url = ""

    def start(self) -> str:
        self.url = self.server.start()
        return self.url

    def stop(self) -> None:
        """SIGTERM: Redis writes its AOF out and exits; connections die with it."""
        self.server.stop()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open, commands wait unanswered (a hung or paused Redis). Returns once the
        process is stopped, so nothing sent after it is answered before `thaw`."""
        os.kill(self._pid(), signal.SIGSTOP)
        wait_stopped(self._pid())

    def thaw(self) -> None:
        """SIGCONT: Redis runs every command that waited, in order."""
        os.kill(self._pid(), signal.SIGCONT)

    def _pid(self) -> int:
        assert self.server.process is not None, "the server is not running"
        return self.server.process.pid
