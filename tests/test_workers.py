"""`gateway serve --workers 2`: one port served by two worker processes under a master.

Both workers take connections; traffic through them is billed exactly; /metrics, whichever worker answers,
shows the fixed-vocabulary series at 0 from start-up and sums both workers' counters (a killed worker's too);
the master starts the embedded Redis once, replaces a worker that dies, refuses a port already in use, and on
SIGTERM stops everything: streams in flight finish and are settled, nothing is left held, running, listening
or on disk.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import aiohttp
import psutil
from prometheus_client.parser import text_string_to_metric_families

from gateway.billing.spool import read_entries
from gateway.redis_server import free_port
from tests.faults import ControlledRedis
from tests.processes import GatewayProcesses, gateway_env, wait_ready
from tests.prometheus import expected_at_zero, fixed_vocabulary_at_zero

ADMIN = "workers-admin"
CREDITS = 1000
REQUESTS = 48  # half plain, half streamed
STREAM_CHUNK_DELAY_MS = 50  # 8 chunks: a stream lasts about 0.4 s
BACK = "gateway.billing.health: Redis is back"


async def _start(processes: GatewayProcesses, http: aiohttp.ClientSession, **env: str) -> tuple[str, int]:
    """A mock upstream and `serve --workers 2`; (base URL, the master's pid)."""
    mock_port, port = free_port(), free_port()
    data = processes.tmp_path / "data"
    processes.write_config(mock_port, f'[redis]\ndata_dir = "{data / "redis"}"\n')
    environment = gateway_env(GATEWAY_ADMIN_TOKEN=ADMIN, GATEWAY__SERVER__SPOOL_DIR=str(data / "spool"), **env)
    mock_args = ("--tokens", "8", "--chunk-delay-ms", str(STREAM_CHUNK_DELAY_MS))
    processes.start(environment, "mock-upstream", "--port", str(mock_port), *mock_args)
    master = processes.start(environment, "serve", "--port", str(port), "--workers", "2")
    base = f"http://127.0.0.1:{port}"
    await wait_ready(processes, http, f"http://127.0.0.1:{mock_port}/v1/models")
    await wait_ready(processes, http, f"{base}/readyz")
    return base, master.pid


def _workers(master_pid: int) -> list[psutil.Process]:
    return [child for child in psutil.Process(master_pid).children() if "run_worker" in " ".join(child.cmdline())]


async def _answered_by(port: int, workers: list[psutil.Process]) -> int | None:
    """The pid of the worker that answers /healthz on a new connection (the kernel picks its socket)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")  # the connection stays open: find who holds its other end
        client_port = writer.get_extra_info("sockname")[1]
        for worker in workers:
            if any(c.raddr and c.raddr.port == client_port for c in worker.net_connections()):
                return worker.pid
        return None
    finally:
        writer.close()
        await writer.wait_closed()


async def _two_answering_workers(master_pid: int, port: int) -> list[psutil.Process]:
    """The master's two workers, once each has answered a request."""
    answered: set[int | None] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = _workers(master_pid)
        if len(workers) == 2:
            answered.add(await asyncio.wait_for(_answered_by(port, workers), timeout=30))
            if {worker.pid for worker in workers} <= answered:
                return workers
        else:
            await asyncio.sleep(0.1)
    raise AssertionError(f"not both workers answered: {answered}, workers {_workers(master_pid)}")


async def _admin(http: aiohttp.ClientSession, method: str, url: str, body: object = None) -> dict[str, object]:
    async with http.request(method, url, json=body, headers={"Authorization": f"Bearer {ADMIN}"}) as response:
        assert response.status in (200, 201), await response.text()
        result: dict[str, object] = await response.json()
        return result


async def _tenant(http: aiohttp.ClientSession, base: str) -> tuple[str, str]:
    account = await _admin(http, "POST", f"{base}/admin/accounts", {"name": "workers", "credits": CREDITS})
    key = await _admin(http, "POST", f"{base}/admin/accounts/{account['id']}/keys", {"name": "app"})
    return str(account["id"]), str(key["key"])


async def _send(http: aiohttp.ClientSession, base: str, key: str, stream: bool) -> aiohttp.ClientResponse:
    body: dict[str, object] = {"model": "mock-model", "messages": [{"role": "user", "content": "Hello!"}]}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    response = await http.post(f"{base}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status == 200, await response.text()
    return response


async def _cost(response: aiohttp.ClientResponse) -> Decimal:
    """The rest of an answer; the credits it cost, as the answer says (`usage.cost`)."""
    text = await response.text()
    if response.content_type != "text/event-stream":
        return Decimal(str(json.loads(text, parse_float=Decimal)["usage"]["cost"]))
    events = [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: {")]
    usage = [json.loads(event, parse_float=Decimal).get("usage") for event in events]
    return Decimal(str([found for found in usage if found][-1]["cost"]))


async def _chat(http: aiohttp.ClientSession, base: str, key: str, stream: bool) -> Decimal:
    return await _cost(await _send(http, base, key, stream))


async def _samples(http: aiohttp.ClientSession, base: str, name: str) -> float:
    """The named series summed, as one scrape shows it (on a new connection, so either worker may answer)."""
    async with http.get(f"{base}/metrics", headers={"Connection": "close"}) as response:
        text = await response.text()
    families = text_string_to_metric_families(text)
    return sum(s.value for f in families for s in f.samples if s.name == name)


def _established(worker: psutil.Process, port: int) -> int:
    return sum(1 for c in worker.net_connections() if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)


def _refused(port: int) -> bool:
    """Whether nothing listens on the port any more (a socket the master kept would still queue connections)."""
    with socket.socket() as sock:
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
        return False


async def test_two_workers_share_the_port_bill_exactly_and_stop_cleanly(
    processes: GatewayProcesses, http: aiohttp.ClientSession
) -> None:
    base, master_pid = await _start(processes, http)  # no REDIS_URL: the embedded Redis
    port = int(base.rsplit(":", 1)[1])
    workers = await _two_answering_workers(master_pid, port)
    redis_servers = [p for p in psutil.Process(master_pid).children(recursive=True) if "redis-server" in p.name()]
    assert len(redis_servers) == 1 and redis_servers[0].ppid() == master_pid  # started once, by the master
    metrics_dir = Path(workers[0].environ()["PROMETHEUS_MULTIPROC_DIR"])
    assert all(any("uvloop" in m.path for m in w.memory_maps()) for w in workers)  # the configured event loop
    # Before any event, every fixed-vocabulary series is there at 0, whichever worker answers the scrape.
    for _ in range(4):
        async with http.get(f"{base}/metrics", headers={"Connection": "close"}) as response:
            assert fixed_vocabulary_at_zero(await response.text()) == expected_at_zero(["mock-model"])
    account_id, key = await _tenant(http, base)
    refusals = [
        await http.post(f"{base}/v1/chat/completions", json={}, headers={"Connection": "close"}) for _ in range(6)
    ]
    assert [response.status for response in refusals] == [401] * 6
    assert [await _samples(http, base, "gateway_requests_refused_total") for _ in range(4)] == [6] * 4

    connector = aiohttp.TCPConnector(limit=16)  # 16 keep-alive connections, spread over both workers' sockets
    async with aiohttp.ClientSession(connector=connector) as clients:
        costs = await asyncio.gather(*(_chat(clients, base, key, stream=i % 2 == 1) for i in range(REQUESTS)))
        assert all(_established(worker, port) > 0 for worker in workers), "one worker took every connection"
    view = await _admin(http, "GET", f"{base}/admin/accounts/{account_id}")
    assert view["reserved_credits"] == 0
    assert CREDITS * 1_000_000 - int(view["credits_micros"]) == sum(costs) * 1_000_000  # type: ignore[call-overload]
    assert [await _samples(http, base, "gateway_requests_total") for _ in range(6)] == [REQUESTS] * 6

    # SIGTERM while streams are in flight (summed over the workers): they finish, settled, before the workers exit.
    streams = await asyncio.gather(*(_send(http, base, key, stream=True) for _ in range(6)))
    for response in streams:
        await response.content.readuntil(b"\n\n")
    assert await _samples(http, base, "gateway_streams_in_flight") == 6
    master = processes.running[-1]
    master.send_signal(signal.SIGTERM)
    late_costs = [await _cost(response) for response in streams]
    assert master.wait(timeout=30) == 0
    assert not any(psutil.pid_exists(p.pid) for p in [*workers, *redis_servers])
    assert _refused(port) and not metrics_dir.exists()
    assert list((processes.tmp_path / "data" / "spool").iterdir()) == []
    # The CLI starts the embedded Redis on its own now: nothing is held, and every answer's cost was charged.
    shown = processes.cli(gateway_env(), "accounts", "show", account_id)
    spent = CREDITS * 1_000_000 - int(shown["credits_micros"])  # type: ignore[call-overload]
    assert shown["reserved_credits"] == 0 and spent == (sum(costs) + sum(late_costs)) * 1_000_000


async def test_a_killed_worker_is_replaced_and_its_counts_stay(
    processes: GatewayProcesses, http: aiohttp.ClientSession, redis_url: str
) -> None:
    base, master_pid = await _start(processes, http, REDIS_URL=redis_url)
    port = int(base.rsplit(":", 1)[1])
    first, second = await _two_answering_workers(master_pid, port)
    _, key = await _tenant(http, base)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as clients:
        await asyncio.gather(*(_chat(clients, base, key, stream=False) for _ in range(REQUESTS)))
    first.kill()
    first.wait(timeout=10)
    replaced = await _two_answering_workers(master_pid, port)
    assert second in replaced and first.pid not in {worker.pid for worker in replaced}
    await _chat(http, base, key, stream=True)
    assert [await _samples(http, base, "gateway_requests_total") for _ in range(6)] == [REQUESTS + 1] * 6
    master = processes.running[-1]
    # A second gateway on the port is refused, though both would set SO_REUSEPORT.
    env = gateway_env(GATEWAY_ADMIN_TOKEN=ADMIN, REDIS_URL=redis_url)
    second_master = processes.start(env, "serve", "--port", str(port), "--workers", "2")
    assert second_master.wait(timeout=30) == 1 and "cannot listen" in processes.tail()
    master.send_signal(signal.SIGTERM)
    assert master.wait(timeout=30) == 0


def test_workers_must_be_a_count(processes: GatewayProcesses) -> None:
    processes.write_config(free_port())
    done = subprocess.run(processes.command("serve", "--workers", "-1"), env=gateway_env(), capture_output=True)
    assert done.returncode == 2 and b"one per core" in done.stderr


async def test_every_worker_replays_its_spool_within_a_second_of_its_health_check_seeing_redis(
    processes: GatewayProcesses, http: aiohttp.ClientSession, controlled_redis: ControlledRedis
) -> None:
    """Answers the upstream gave while Redis was away are spooled in both workers; each worker replays its own
    as soon as its health check sees Redis again (the worker's own log says when), not on the backoff's clock."""
    mock_port, port = free_port(), free_port()
    spool_dir = processes.tmp_path / "spool"
    processes.write_config(mock_port)
    env = gateway_env(
        GATEWAY_ADMIN_TOKEN=ADMIN, REDIS_URL=controlled_redis.url, GATEWAY__SERVER__SPOOL_DIR=str(spool_dir)
    )
    processes.start(env, "mock-upstream", "--port", str(mock_port), "--tokens", "6", "--latency-ms", "2000")
    master = processes.start(env, "serve", "--port", str(port), "--workers", "2")
    base = f"http://127.0.0.1:{port}"
    await wait_ready(processes, http, f"http://127.0.0.1:{mock_port}/v1/models")
    await wait_ready(processes, http, f"{base}/readyz")
    workers = await _two_answering_workers(master.pid, port)
    account_id, key = await _tenant(http, base)

    async def one_request() -> int:
        # A connection of its own each: the kernel spreads them over both workers' sockets.
        async with (
            aiohttp.ClientSession() as own,
            own.post(
                f"{base}/v1/chat/completions",
                json={"model": "mock-model", "messages": [{"role": "user", "content": "Hello!"}]},
                headers={"Authorization": f"Bearer {key}"},
            ) as response,
        ):
            await response.read()
            return response.status

    in_flight = [asyncio.create_task(one_request()) for _ in range(16)]
    await _until(lambda: all(_established(worker, port) > 0 for worker in workers), "requests on both workers")
    await _until_held(http, base, account_id, 16)
    controlled_redis.stop()  # every answer now finds Redis gone: each worker spools its settlements
    assert await asyncio.gather(*in_flight) == [200] * 16
    spooled = {path: len(read_entries(path)) for path in spool_dir.glob("*.spool")}
    assert sorted(count > 0 for count in spooled.values()) == [True, True] and sum(spooled.values()) == 16
    # Four failed replays in each worker: its loop now rests 4 s before the next try (backoff 0.5, 1, 2, 4 s).
    paused = "spool replay paused"
    await _until(lambda: all(len(_logged(processes, w.pid, paused)) >= 4 for w in workers), "backoff at 4 s")
    controlled_redis.start()
    await _until(lambda: not any(read_entries(path) for path in spool_dir.glob("*.spool")), "spools drained")
    await _until(lambda: all(_logged(processes, worker.pid, BACK) for worker in workers), "both saw Redis back")
    for worker in workers:
        # A worker may replay before its check runs (it tries when something new is spooled): never after + 1 s.
        [back] = _logged(processes, worker.pid, BACK)
        replayed = _logged(processes, worker.pid, "spooled settlements")[-1]
        assert (replayed - back).total_seconds() <= 1.0, (worker.pid, back, replayed)
    view = await _admin(http, "GET", f"{base}/admin/accounts/{account_id}")
    # 16 requests of 9 prompt and 6 completion tokens at the suite's prices: 9 x 1,000.25 + 6 x 2,000.15 =
    # 21,003.15 micro-credits, 21,004 each once rounded up.
    assert view["reserved_credits"] == 0 and view["credits_micros"] == CREDITS * 1_000_000 - 16 * 21_004


async def _until(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)


async def _until_held(http: aiohttp.ClientSession, base: str, account_id: str, requests: int) -> None:
    """Until every request holds its credits (reserved before it went upstream)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        # Each hold is 9 prompt tokens plus the default 4,096 output tokens at the suite's prices: over 8 credits.
        view = await _admin(http, "GET", f"{base}/admin/accounts/{account_id}")
        if view["reserved_credits"] > 8 * requests:  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the requests never all held their credits")


def _logged(processes: GatewayProcesses, pid: int, text: str) -> list[datetime]:
    """When the worker `pid` logged lines holding `text`, oldest first."""
    lines = processes.log.read_text(errors="replace").splitlines()
    return [
        datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") for line in lines if f"[{pid}]" in line and text in line
    ]
