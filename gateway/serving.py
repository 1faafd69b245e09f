"""`gateway serve`: the gateway in this process, or a master and N worker processes on one port.

Either way the port is bound first, here, and each process serves the app with gateway/http_server.py. With
one worker the gateway runs in this process. With more, this process is the master:

- it binds the port once per worker, every socket with SO_REUSEPORT, so the kernel spreads new connections
  over the workers; the master keeps the sockets, so a replaced worker takes over its predecessor's queue;
- it starts the embedded Redis once (when no REDIS_URL is given) and hands its URL to the workers;
- it makes a fresh directory for prometheus-client's multiprocess mode, so any worker's /metrics sums all
  workers' values (gateway/metrics.py), and drops a dead worker's live gauges from it;
- each worker is `python -c "...run_worker()"` with its sockets inherited and its `WorkerSpec` pickled on
  standard input. Workers share the spool directory, each with a file of its own (billing/spool.py).

SIGTERM or SIGINT to the master stops every worker with SIGTERM: aiohttp's graceful shutdown, so requests in
flight finish, settlements settle or spool, and the webhook sender drains. Then the embedded Redis stops. A
worker that dies unexpectedly is replaced; one that keeps dying as it starts stops the gateway. A worker whose
master is gone stops itself, so no worker outlives a killed master.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from aiohttp import web
from prometheus_client import multiprocess

from gateway.app import create_app
from gateway.config import ConfigError, Settings
from gateway.http_server import BACKLOG, serve_app
from gateway.redis_server import EmbeddedRedis

log = logging.getLogger(__name__)

WORKER_COMMAND = "from gateway.serving import run_worker; run_worker()"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
WORKER_LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
# aiohttp gives requests in flight 60 s at shutdown, then the webhook sender drains; after this, SIGKILL.
STOP_TIMEOUT_S = 90.0
QUICK_EXIT_S = 10.0  # a worker that dies sooner than this after its start failed to start
MAX_QUICK_EXITS = 5  # in a row for one worker: the gateway cannot run, so the master stops
POLL_S = 0.1
Address = tuple[str, int] | tuple[str, int, int, int] | tuple[int, bytes]  # as socket.getaddrinfo gives them


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker runs with: the master's settings (Redis URL filled in), its socket descriptors."""

    settings: Settings
    fds: tuple[int, ...]
    metrics_dir: Path
    master_pid: int


def worker_count(settings: Settings) -> int:
    """`server.workers`, or, when it is 0, one per core this process may run on."""
    if settings.server.workers:
        return settings.server.workers
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class ListenError(Exception):
    """The port cannot be listened on (in use, an unknown host, no permission): the gateway does not start."""


def serve(settings: Settings) -> int:
    """Run the gateway until SIGTERM or SIGINT; the exit status.

    The port is bound here, before anything starts, with one worker or many: so a port in use stops both alike
    (`ListenError`), before the embedded Redis or a worker is started.
    """
    count = worker_count(settings)
    if count > 1 and settings.redis.url is None and settings.redis.cluster:
        raise ConfigError("redis.cluster needs redis.url (REDIS_URL): the embedded Redis is a single server")
    try:
        listeners = open_listeners(settings.server.host, settings.server.port, count)
    except OSError as exc:
        raise ListenError(
            f"cannot listen on {settings.server.host} port {settings.server.port}: {exc.strerror or exc}"
        ) from None
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT if count == 1 else WORKER_LOG_FORMAT)
    address = listeners[0][0].getsockname()
    if count == 1:
        log.info("serving on %s port %d", address[0], address[1])
        run_app(settings, listeners[0])
        return 0
    log.info("serving on %s port %d with %d workers", address[0], address[1], count)
    return Master(settings, listeners).run()


def run_app(settings: Settings, sockets: list[socket.socket], spec: WorkerSpec | None = None) -> None:
    """The gateway's event loop in this process, on listening `sockets` (a worker's: as its `spec` says)."""
    app = create_app(settings, metrics_dir=None if spec is None else spec.metrics_dir)
    if spec is not None:
        app.cleanup_ctx.append(stop_with_master(spec.master_pid))
    with asyncio.Runner(loop_factory=lambda: event_loop(settings)) as runner:
        runner.run(serve_app(app, sockets, access_log=settings.server.access_log))


def event_loop(settings: Settings) -> asyncio.AbstractEventLoop:
    """uvloop's loop when configured and installed (it is a dependency everywhere but Windows), else asyncio's."""
    if settings.server.event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed: serving on asyncio's event loop")
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_worker() -> None:
    """A worker's entry point (`WORKER_COMMAND`): its `WorkerSpec` arrives pickled on standard input."""
    spec = pickle.load(sys.stdin.buffer)
    assert isinstance(spec, WorkerSpec)
    logging.basicConfig(level=logging.INFO, format=WORKER_LOG_FORMAT)
    run_app(spec.settings, [socket.socket(fileno=fd) for fd in spec.fds], spec)


def stop_with_master(master_pid: int) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that stops this worker gracefully (SIGTERM to itself) once its master is gone."""

    async def watch() -> None:
        while os.getppid() == master_pid:
            await asyncio.sleep(1.0)
        log.warning("master process %d is gone: stopping", master_pid)
        signal.raise_signal(signal.SIGTERM)

    async def master_watch_ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(watch(), name="master-watch")
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return master_watch_ctx


def open_listeners(host: str, port: int, count: int) -> list[list[socket.socket]]:
    """For each of `count` workers, listening sockets on every address `host` resolves to, all on one port.

    With SO_REUSEPORT (Linux, the BSDs) and more than one worker, each worker has sockets of its own and the
    kernel balances between them; otherwise the workers share one set, and whichever is idle accepts.
    """
    reuse_port = count > 1 and hasattr(socket, "SO_REUSEPORT")
    addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    if port and reuse_port:  # a port in use, even by another gateway's SO_REUSEPORT sockets, must fail here
        for family, _, _, _, address in addresses:
            _listen(family, address, reuse_port=False).close()
    sets: list[list[socket.socket]] = []
    try:
        for _ in range(count if reuse_port else 1):
            sets.append([_listen(family, address, reuse_port) for family, _, _, _, address in addresses])
            if port == 0:  # the kernel picked a port: every later socket must take the same one
                port = sets[0][0].getsockname()[1]
                addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError:
        for sock in (sock for group in sets for sock in group):
            sock.close()
        raise
    return sets * count if not reuse_port else sets


def _listen(family: int, address: Address, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:  # as asyncio does: the IPv4 address gets its own socket
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class Worker:
    """One worker slot: its sockets, and the process serving them now (None while it waits to restart)."""

    sockets: list[socket.socket]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_at: float = 0.0
    quick_exits: int = 0


class Master:
    """Starts, watches, replaces and stops the workers (see the module docstring)."""

    def __init__(self, settings: Settings, listeners: list[list[socket.socket]]):
        self.settings = settings
        self.listeners = listeners  # one set of listening sockets per worker (open_listeners)
        self.count = len(listeners)
        self.stop_signal: int | None = None
        self.workers: list[Worker] = []
        self.metrics_dir = Path()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        with ExitStack() as stack:
            for sock in {sock for group in self.listeners for sock in group}:
                stack.callback(sock.close)
            if self.settings.redis.url is None:
                embedded = EmbeddedRedis(self.settings.redis.data_dir)
                self.settings = self.settings.override(redis={"url": embedded.start()})
                stack.callback(embedded.stop)
            self.metrics_dir = Path(tempfile.mkdtemp(prefix="gateway-metrics-"))
            stack.callback(shutil.rmtree, self.metrics_dir, ignore_errors=True)
            self.workers = [Worker(sockets) for sockets in self.listeners]
            stack.callback(self._stop_workers)
            return self._supervise()
        return 1  # not reached: ExitStack does not swallow exceptions; mypy cannot tell

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop_signal = signum

    def _supervise(self) -> int:
        """Keep every worker running until a stop signal (0), or until one cannot start (1)."""
        while self.stop_signal is None:
            now = time.monotonic()
            for worker in self.workers:
                if worker.process is not None and worker.process.poll() is not None and not self._exited(worker, now):
                    return 1
                if worker.process is None and now >= worker.restart_at:
                    self._start(worker)
            time.sleep(POLL_S)
        log.info("%s: stopping %d workers", signal.Signals(self.stop_signal).name, self.count)
        return 0

    def _exited(self, worker: Worker, now: float) -> bool:
        """Note a worker's unexpected exit and schedule its replacement; False when it keeps failing to start."""
        assert worker.process is not None
        pid, status = worker.process.pid, worker.process.returncode
        self._forget(pid)
        worker.process = None
        worker.quick_exits = worker.quick_exits + 1 if now - worker.started < QUICK_EXIT_S else 0
        if worker.quick_exits >= MAX_QUICK_EXITS:
            log.error("worker %d exited with %s (%d quick exits in a row): stopping", pid, status, MAX_QUICK_EXITS)
            return False
        delay = 0.5 * 2**worker.quick_exits if worker.quick_exits else 0.0  # backoff only while it fails fast
        log.warning("worker %d exited with %s: replacing it in %.1f s", pid, status, delay)
        worker.restart_at = now + delay
        return True

    def _start(self, worker: Worker) -> None:
        fds = tuple(sock.fileno() for sock in worker.sockets)
        spec = WorkerSpec(self.settings, fds, self.metrics_dir, os.getpid())
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)}  # read as prometheus-client loads
        # Its own process group: a terminal's Ctrl-C reaches the master only, which stops each worker once.
        process = subprocess.Popen(
            [sys.executable, "-c", WORKER_COMMAND], stdin=subprocess.PIPE, pass_fds=fds, env=env, process_group=0
        )
        assert process.stdin is not None
        process.stdin.write(pickle.dumps(spec))
        process.stdin.close()
        worker.process, worker.started = process, time.monotonic()
        log.info("worker %d started", process.pid)

    def _stop_workers(self) -> None:
        """SIGTERM to every worker, then wait for all of them (SIGKILL after STOP_TIMEOUT_S)."""
        running = [worker.process for worker in self.workers if worker.process is not None]
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not stop within %.0f s: killing it", process.pid, STOP_TIMEOUT_S)
                process.kill()
                process.wait()
            self._forget(process.pid)
        log.info("all workers stopped")

    def _forget(self, pid: int) -> None:
        """Drop a dead worker's live gauges from the metrics; its counters stay in the sums."""
        multiprocess.mark_process_dead(pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
