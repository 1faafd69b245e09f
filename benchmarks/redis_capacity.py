"""How many settlements per second one Redis core sustains for this gateway: how many gateway processes one
Redis feeds, and when to shard accounts over a Redis Cluster (the money keys are hash-tagged per account).

    .venv/bin/python -m benchmarks.redis_capacity [--duration 10] [--processes N] [--concurrency 32]
                                                  [--accounts 100] [--out benchmarks/results/redis_capacity.json]

It starts a Redis on 127.0.0.1 as benchmarks/stack.py does (the embedded one's binary, AOF on, fsync every
second), makes the accounts and their API keys with `AccountStore`, then drives the money path with no HTTP:
P driver processes (default: one per core), each with C asyncio tasks, meter every simulated request with
`hold_credits` and `bill` of gateway/proxy/metering.py, so `Ledger.reserve` and `Ledger.settle` run with the
proxy's arguments: the shipped config/gateway.toml (models, prices, insights rules), the Redis client and ledger
of gateway/storage.py (its pool, the hand-packed EVALSHA), the request's fingerprint and its insights fields.

Each task plays one client's chat with one account: every request resends the history plus a new question, for
1 to 30 turns (past 20 a conversation counts as long), then a new chat starts, maybe with another account; 2% of
requests repeat the one before (duplicates), and the models are those of the config (gpt-4o has a cheaper
alternative: the model mix). The upstream's usage is 20-600 completion tokens within the forwarded bound.

After --warmup seconds it measures --duration seconds: settlements (reserve + settle pairs) per second,
redis-server's CPU time from /proc (all its threads, and its main thread, which runs every command), Redis CPU
per settlement and its utilisation, and the capacity of one Redis core: 1000 / (Redis CPU ms per settlement).
With drivers and Redis on a few shared cores Redis does not reach a whole core, so the capacity comes from its
CPU per settlement, not from the rate seen (if anything an underestimate: a saturated Redis serves more requests
per wake-up, though most of its time is the scripts' own work). It also reads Redis's own statistics: the
scripts' time per request and the commands they run (INFO commandstats: wall time, so it exceeds the CPU time
when Redis waits for a core the drivers hold), the bytes the AOF grows by, the AOF rewrites, and the network
bytes. At the end it checks the books: every account's balance moved by exactly the sum the settlements reported
charging, and no hold is left; a failed check exits 1.

--out keeps one entry per configuration (processes, concurrency, accounts): a run replaces its own
configuration's entry and leaves the others.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import orjson
import redis

from benchmarks import procstat
from benchmarks.run import machine, revision, wait_for_quiet
from benchmarks.stack import CREDITS, REPO
from gateway.admin.accounts import AccountStore, ParsedApiKey, parse_api_key
from gateway.app import token_counter
from gateway.billing import Ledger, SettleOutcome
from gateway.billing.record import Usage
from gateway.billing.settler import Settler
from gateway.billing.spool import Spool
from gateway.config import Settings, load_settings
from gateway.insights.fingerprints import take_fingerprint
from gateway.insights.signals import settlement_fields
from gateway.proxy.apis.chat import CHAT, parse_chat_request
from gateway.proxy.metering import bill, bounded_usage, hold_credits
from gateway.redis_server import EmbeddedRedis, free_port
from gateway.serving import event_loop
from gateway.storage import ledger_for, open_redis
from gateway.tokens import TokenCounter

CONFIG = REPO / "config" / "gateway.toml"  # the shipped config: its models, prices and defaults
BALANCE_MICROS = CREDITS * 1_000_000  # per account: no request is ever refused for want of credits
QUIET_BELOW = 10.0  # % of the machine's CPU other work may take before the run starts (as benchmarks/run.py)
STARTUP_TIMEOUT_S = 120.0  # drivers import the gateway and load vocabularies before the start line
WARMUP, MEASURE, STOP = 0, 1, 2  # the phases the parent announces to the drivers
OK = 200
TOP_COMMANDS = 8  # commands reported by their time per request
AOF_SAMPLE_S = 0.1

# The workload: chats of 1..MAX_TURNS turns, each turn a short question and answer with a unique tag.
MAX_TURNS = 30
REPEAT_SHARE = 0.02
UPSTREAM_LATENCY_MS = (300, 8000)  # what a request record keeps as its latency (no upstream is called)
SYSTEM_PROMPT = "You are a concise assistant for a software team. Answer in plain text, briefly."
QUESTIONS = (
    "How do I make this function retry with exponential backoff?",
    "What is the difference between a process and a thread here?",
    "Can you summarise the error in this stack trace in one sentence?",
    "Rewrite the previous answer as a bulleted list.",
)
REQUEST_OPTIONS: tuple[dict[str, object], ...] = (  # what clients set: a bound or none, streamed or not
    {"max_tokens": 256},
    {"max_tokens": 1024, "stream": True, "stream_options": {"include_usage": True}},
    {"stream": True, "stream_options": {"include_usage": True}},
    {},
)


@dataclass(frozen=True)
class BenchAccount:
    account_id: str
    api_key: str


@dataclass(frozen=True)
class DriverPlan:
    index: int
    redis_url: str
    accounts: tuple[BenchAccount, ...]
    concurrency: int
    spool_dir: Path


@dataclass
class DriverResult:
    """What one driver process did over the whole run (warm-up and drain included), for the books."""

    charged: Counter[str] = field(default_factory=Counter)  # account id -> micro-credits its settlements charged
    settled: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # by exception type; "spooled": Redis did not take it
    latencies_ms: list[float] = field(default_factory=list)  # reserve + settle, requests begun in the window


@dataclass(frozen=True)
class Shared:
    """What the parent and the drivers share: the start line, the phase, running counts and the results."""

    start: Barrier
    phase: ctypes.c_int
    counts: ctypes.Array[ctypes.c_int64]  # per driver: settled, errors
    results: Queue[DriverResult]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.redis_capacity", description=__doc__.split("\n\n")[0])
    cores = len(os.sched_getaffinity(0))
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring (default 2)")
    parser.add_argument("--processes", type=int, default=cores, help=f"driver processes (default {cores})")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight per process (default 32)")
    parser.add_argument("--accounts", type=int, default=100, help="accounts the load is spread over (default 100)")
    parser.add_argument("--quiet-wait", type=float, default=120.0, help="seconds to wait for a quiet machine (120)")
    default_out = REPO / "benchmarks" / "results" / "redis_capacity.json"
    parser.add_argument("--out", type=Path, default=default_out, help="results file (one entry per configuration)")
    args = parser.parse_args(argv)
    if min(args.processes, args.concurrency, args.accounts) < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("--processes, --concurrency and --accounts must be at least 1, --duration positive")
    return args


def bench_settings(redis_url: str) -> Settings:
    return load_settings(CONFIG, environ={"REDIS_URL": redis_url})


# The load: one driver process.


class Conversation:
    """One client's chat with one account: each request resends the history with a new question, as chat apps do,
    for 1 to MAX_TURNS turns; then a new chat starts, maybe with another account. Now and then the client sends
    its last request again (a retry, a double click): the usage insights see a duplicate."""

    def __init__(self, rng: random.Random, accounts: Sequence[BenchAccount], models: Sequence[str]):
        self.rng, self.accounts, self.models = rng, accounts, models
        self._begin()

    def _begin(self) -> None:
        rng = self.rng
        self.account = rng.choice(self.accounts)
        self.turns_left = rng.randint(1, MAX_TURNS)
        self.messages: list[dict[str, str]] = [{"role": "system", "content": SYSTEM_PROMPT}]
        self.options = {"model": rng.choice(self.models), **rng.choice(REQUEST_OPTIONS)}
        self.last = b""

    def next_body(self) -> bytes:
        if self.last and self.rng.random() < REPEAT_SHARE:
            return self.last
        if self.turns_left == 0:
            self._begin()
        if self.last:  # the previous turn's answer is part of the history now
            self.messages.append({"role": "assistant", "content": self._text("Answer")})
        self.messages.append({"role": "user", "content": self._text("Question")})
        self.turns_left -= 1
        self.last = orjson.dumps({**self.options, "messages": self.messages})
        return self.last

    def _text(self, label: str) -> str:
        return f"{label} {self.rng.getrandbits(64):x}: {self.rng.choice(QUESTIONS)}"

    def upstream_usage(self, prompt_tokens: int, completion_limit: int) -> Usage:
        """What the upstream reports: 20-600 completion tokens within the forwarded bound, and half of a prompt of
        1024 tokens or more served from its prompt cache (providers cache such prefixes)."""
        completion = min(self.rng.randint(20, 600), completion_limit)
        cached = prompt_tokens // 2 if prompt_tokens >= 1024 else 0
        return Usage(prompt_tokens, completion, cached_tokens=cached, source="upstream")


class Driver:
    """C tasks metering simulated requests through the proxy's functions, counting into the shared counts."""

    def __init__(self, plan: DriverPlan, shared: Shared, settings: Settings, ledger: Ledger, settler: Settler):
        self.plan, self.shared, self.settings = plan, shared, settings
        self.ledger, self.settler = ledger, settler
        self.counter: TokenCounter = token_counter(settings)
        self.keys: dict[str, ParsedApiKey] = {}
        for account in plan.accounts:  # parsed as the proxy parses the bearer key
            parsed = parse_api_key(account.api_key)
            assert parsed is not None and parsed.account_id == account.account_id
            self.keys[account.account_id] = parsed
        self.result = DriverResult()

    def warm(self) -> None:
        """Load every model's vocabulary now, as the gateway does before serving."""
        for name in self.settings.models:
            self.counter.encoding_for(name)

    async def run_task(self, seed: int) -> None:
        chat = Conversation(random.Random(seed), self.plan.accounts, list(self.settings.models))
        while self.shared.phase.value != STOP:
            measured = self.shared.phase.value == MEASURE
            started = time.perf_counter()
            try:
                charged = await self.request(chat)
            except Exception as exc:  # counted and reported; the load goes on
                self._error(type(exc).__name__)
                await asyncio.sleep(0.01)  # a failing Redis is not hammered in a tight loop
                continue
            self._settled(chat.account.account_id, charged, started if measured else None)

    async def request(self, chat: Conversation) -> SettleOutcome:
        """One request as the proxy meters it: parse, count, fingerprint, hold; the upstream answers; bill."""
        body = parse_chat_request(chat.next_body())
        model = self.settings.models[body.model]
        prompt_tokens = self.counter.count_prompt_tokens(body.model, body.body)
        fingerprint = take_fingerprint(body.body)
        request_id = f"req_{os.urandom(16).hex()}"
        api_key = self.keys[chat.account.account_id]
        reservation = await hold_credits(
            self.ledger,
            self.settler,
            self.settings,
            model,
            api_key,
            request_id,
            body,
            prompt_tokens,
            api=CHAT.name,
            request_hash=fingerprint.request_hash,
        )
        reported = chat.upstream_usage(prompt_tokens, reservation.completion_limit)
        usage = bounded_usage(reported, prompt_tokens, reservation.completion_limit, self.settings)
        history = partial(CHAT.history_tokens, self.counter, body, prompt_tokens)
        insight = settlement_fields(fingerprint, usage, OK, model, self.settings, history=history)
        estimate = Usage(prompt_tokens, usage.completion_tokens)
        return await bill(
            self.settler,
            reservation,
            model,
            usage,
            estimate,
            status=OK,
            latency_ms=chat.rng.randint(*UPSTREAM_LATENCY_MS),
            stream=body.stream,
            api=CHAT.name,
            insight=insight,
        )

    def _settled(self, account_id: str, charged: SettleOutcome, started: float | None) -> None:
        result = self.result
        result.charged[account_id] += charged.charged_micros  # a spooled one's projection: replayed before the books
        result.settled += 1
        self.shared.counts[2 * self.plan.index] += 1
        if charged.spooled:
            self._error("spooled")
        if started is not None:
            result.latencies_ms.append((time.perf_counter() - started) * 1000)

    def _error(self, kind: str) -> None:
        self.result.errors[kind] += 1
        self.shared.counts[2 * self.plan.index + 1] += 1


async def _drive(plan: DriverPlan, shared: Shared, settings: Settings) -> DriverResult:
    spool = Spool(plan.spool_dir)
    await asyncio.to_thread(spool.open)
    async with open_redis(settings) as client:
        ledger = ledger_for(client, settings, time.time)
        driver = Driver(plan, shared, settings, ledger, Settler(ledger, spool))
        await asyncio.to_thread(driver.warm)
        await asyncio.to_thread(shared.start.wait)
        seeds = [plan.index * 100_000 + task for task in range(plan.concurrency)]
        await asyncio.gather(*(driver.run_task(seed) for seed in seeds))
        await driver.settler.replay()  # whatever was spooled is owed before the books are read
    await asyncio.to_thread(spool.close)
    return driver.result


def drive(plan: DriverPlan, shared: Shared) -> None:
    """A driver process's entry point, on the gateway's event loop (uvloop)."""
    try:
        settings = bench_settings(plan.redis_url)
        with asyncio.Runner(loop_factory=partial(event_loop, settings)) as runner:
            shared.results.put(runner.run(_drive(plan, shared, settings)))
    except BaseException:
        shared.start.abort()  # the parent stops waiting at the start line
        raise


# The measurement: the parent process.


@dataclass(frozen=True)
class Snapshot:
    """Everything the window's figures are differences of, read at one moment."""

    at: float
    settled: int
    errors: int
    redis_cpu: procstat.CpuSnapshot
    redis_main_thread_s: float  # the thread that runs every command: it is what fills one core
    redis_children_s: float  # reaped children: AOF rewrites
    drivers: procstat.CpuSnapshot
    machine_busy_s: float
    commands: dict[str, tuple[int, int]]  # INFO commandstats: name -> calls, usec (the scripts' calls included)
    net_in_bytes: int
    net_out_bytes: int
    forks: int

    @classmethod
    def take(cls, shared: Shared, redis_pid: int, driver_pids: list[int], info: redis.Redis) -> Snapshot:
        counts = list(shared.counts)
        main_thread, children = redis_thread_and_children_seconds(redis_pid)
        return cls(
            at=time.monotonic(),
            settled=sum(counts[0::2]),
            errors=sum(counts[1::2]),
            redis_cpu=procstat.CpuSnapshot.of([redis_pid]),
            redis_main_thread_s=main_thread,
            redis_children_s=children,
            drivers=procstat.CpuSnapshot.of(driver_pids),
            machine_busy_s=procstat.machine_busy_seconds(),
            commands=command_stats(info),
            **network_and_forks(info),
        )


def network_and_forks(info: redis.Redis) -> dict[str, int]:
    stats = info.info("stats")
    return {
        "net_in_bytes": int(stats["total_net_input_bytes"]),
        "net_out_bytes": int(stats["total_net_output_bytes"]),
        "forks": int(stats.get("total_forks", 0)),
    }


def aof_growth(info: redis.Redis, seconds: float) -> int:
    """Bytes appended to the AOF over `seconds`. A rewrite replaces the file, so its size is sampled every
    AOF_SAMPLE_S and only growth between two samples of the same file counts (what was appended in the interval a
    rewrite ended in is missed: a slight undercount)."""
    grown, last = 0, aof_sizes(info)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(AOF_SAMPLE_S, left))
        sizes = aof_sizes(info)
        if sizes[1] == last[1]:  # the same base size: the same file
            grown += sizes[0] - last[0]
        last = sizes
    return grown


def aof_sizes(info: redis.Redis) -> tuple[int, int]:
    """The AOF's size now, and its size when it was last written whole (at start or by a rewrite)."""
    persistence = info.info("persistence")
    return int(persistence.get("aof_current_size", 0)), int(persistence.get("aof_base_size", 0))  # 0: AOF off


def redis_thread_and_children_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds of the process's main thread, and of its children it has reaped (/proc/PID/task/PID/stat
    utime + stime; /proc/PID/stat cutime + cstime)."""

    def fields(path: Path) -> list[int]:
        text = path.read_text()
        return [int(value) for value in text[text.rindex(")") + 2 :].split()[11:15]]  # utime stime cutime cstime

    thread = fields(procstat.PROC / str(pid) / "task" / str(pid) / "stat")
    process = fields(procstat.PROC / str(pid) / "stat")
    return (thread[0] + thread[1]) / procstat.TICKS_PER_SECOND, (process[2] + process[3]) / procstat.TICKS_PER_SECOND


def command_stats(info: redis.Redis) -> dict[str, tuple[int, int]]:
    stats: dict[str, dict[str, int]] = info.info("commandstats")
    return {name.removeprefix("cmdstat_"): (int(stat["calls"]), int(stat["usec"])) for name, stat in stats.items()}


def command_figures(before: Snapshot, after: Snapshot, per: int) -> dict[str, object]:
    """Per request: time inside the scripts (EVALSHA), the commands they ran, and those that took the most. Redis
    times commands by the clock, so a Redis preempted mid-script counts the wait too."""
    spent = {
        name: (calls - before.commands.get(name, (0, 0))[0], usec - before.commands.get(name, (0, 0))[1])
        for name, (calls, usec) in after.commands.items()
    }
    evalsha_calls, evalsha_usec = spent.pop("evalsha", (0, 0))
    nested = {name: value for name, value in spent.items() if name not in ("info", "ping", "hello", "client")}
    top = sorted(nested.items(), key=lambda item: item[1][1], reverse=True)[:TOP_COMMANDS]
    return {
        "script_us_per_request": round(evalsha_usec / per, 1),
        "evalsha_calls_per_request": round(evalsha_calls / per, 3),
        "commands_per_request": round(sum(calls for calls, _ in nested.values()) / per, 1),
        "top_commands_per_request": {
            name: {"calls": round(calls / per, 2), "us": round(usec / per, 1)} for name, (calls, usec) in top
        },
    }


def window_figures(before: Snapshot, after: Snapshot, aof_bytes: int) -> dict[str, object]:
    seconds = after.at - before.at
    settled = after.settled - before.settled
    per = max(settled, 1)
    redis_s, _ = after.redis_cpu.used_since(before.redis_cpu)
    main_s = after.redis_main_thread_s - before.redis_main_thread_s
    children_s = after.redis_children_s - before.redis_children_s
    drivers_s, drivers_complete = after.drivers.used_since(before.drivers)
    others_s = max(0.0, after.machine_busy_s - before.machine_busy_s - redis_s - children_s - drivers_s)
    cores = len(os.sched_getaffinity(0))
    return {
        "seconds": round(seconds, 3),
        "settled": settled,
        "settled_per_s": round(settled / seconds, 1),
        "errors": after.errors - before.errors,
        "redis": {
            "cpu_s": round(redis_s, 3),
            "cpu_ms_per_request": round(1000 * redis_s / per, 4),
            "utilization_percent": round(100 * redis_s / seconds, 1),
            "capacity_per_core_rps": round(per / redis_s) if redis_s else None,
            "main_thread_cpu_ms_per_request": round(1000 * main_s / per, 4),
            "main_thread_utilization_percent": round(100 * main_s / seconds, 1),
            "main_thread_capacity_rps": round(per / main_s) if main_s else None,
            **command_figures(before, after, per),
            "aof_bytes_per_request": round(aof_bytes / per),
            "net_in_bytes_per_request": round((after.net_in_bytes - before.net_in_bytes) / per),
            "net_out_bytes_per_request": round((after.net_out_bytes - before.net_out_bytes) / per),
            "forks": after.forks - before.forks,  # AOF rewrites (a fork each): the log is rewritten as it grows
            "children_cpu_ms_per_request": round(1000 * children_s / per, 4),  # those reaped within the window
        },
        "drivers": {
            "cpu_ms_per_request": round(1000 * drivers_s / per, 4),
            "utilization_percent": round(100 * drivers_s / seconds, 1),
            "cpu_complete": drivers_complete,
        },
        "others_cpu_percent": round(100 * others_s / (seconds * cores), 1),
    }


def run_drivers(
    args: argparse.Namespace, url: str, accounts: list[BenchAccount], workdir: Path, redis_pid: int
) -> tuple[dict[str, object], list[DriverResult]]:
    """Start the drivers, let them warm up, measure the window, stop them; the figures and their results."""
    context = multiprocessing.get_context("spawn")  # fresh interpreters, as the gateway's workers are
    shared = Shared(
        context.Barrier(args.processes + 1),
        context.RawValue(ctypes.c_int, WARMUP),
        context.RawArray(ctypes.c_int64, 2 * args.processes),
        context.Queue(),
    )
    plans = [DriverPlan(i, url, tuple(accounts), args.concurrency, workdir / "spool") for i in range(args.processes)]
    processes = [context.Process(target=drive, args=(plan, shared), name=f"driver-{plan.index}") for plan in plans]
    for process in processes:
        process.start()
    try:
        shared.start.wait(timeout=STARTUP_TIMEOUT_S)
        time.sleep(args.warmup)
        pids = [process.pid for process in processes if process.pid is not None]
        with redis.Redis.from_url(url, decode_responses=True) as info:
            before = Snapshot.take(shared, redis_pid, pids, info)
            shared.phase.value = MEASURE
            aof_bytes = aof_growth(info, args.duration)
            after = Snapshot.take(shared, redis_pid, pids, info)
        shared.phase.value = STOP
        results = [shared.results.get(timeout=STARTUP_TIMEOUT_S) for _ in processes]
    finally:
        shared.phase.value = STOP
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
    return window_figures(before, after, aof_bytes), results


async def create_accounts(url: str, count: int) -> list[BenchAccount]:
    """`count` accounts with a key each, made as `gateway accounts create` and `keys create` make them."""
    settings = bench_settings(url)
    async with open_redis(settings) as client:
        await ledger_for(client, settings, time.time).load_scripts()
        store = AccountStore(client, clock=time.time)
        accounts = []
        for number in range(count):
            account = await store.insert_account(f"bench-{number}", BALANCE_MICROS)
            _, key = await store.insert_api_key(account.id, "bench")
            accounts.append(BenchAccount(account.id, key))
    return accounts


async def check_books(url: str, accounts: list[BenchAccount], results: list[DriverResult]) -> dict[str, object]:
    """Every account's balance is its grant less exactly what its settlements reported charging, and it holds
    nothing any more."""
    charged: Counter[str] = Counter()
    for result in results:
        charged.update(result.charged)
    settings = bench_settings(url)
    ids = [account.account_id for account in accounts]
    async with open_redis(settings) as client:
        ledger = ledger_for(client, settings, time.time)
        balances = [await ledger.balance(account_id) for account_id in ids]
        held = await ledger.reserved_many(ids)
    mismatches = [
        {"account": account_id, "expected": BALANCE_MICROS - charged[account_id], "balance": balance, "held": hold}
        for account_id, balance, hold in zip(ids, balances, held, strict=True)
        if balance != BALANCE_MICROS - charged[account_id] or hold
    ]
    settled = sum(result.settled for result in results)
    return {
        "ok": not mismatches and settled > 0,
        "accounts": len(ids),
        "requests_settled": settled,
        "charged_micros": sum(charged.values()),
        "mismatches": mismatches[:10],
    }


def latency_ms(results: list[DriverResult]) -> dict[str, float]:
    samples = [sample for result in results for sample in result.latencies_ms]
    if len(samples) < 2:
        return {}
    cuts = statistics.quantiles(samples, n=100)
    return {"p50": round(cuts[49], 3), "p90": round(cuts[89], 3), "p99": round(cuts[98], 3)}


def redis_version(url: str) -> str:
    with redis.Redis.from_url(url, decode_responses=True) as client:
        return str(client.info("server")["redis_version"])


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    """One run against a fresh Redis in `workdir`: the window's figures, the errors and the books."""
    server = EmbeddedRedis(workdir / "redis", port=free_port(), persistent=True)
    url = server.start()
    try:
        assert server.process is not None
        accounts = asyncio.run(create_accounts(url, args.accounts))
        window, results = run_drivers(args, url, accounts, workdir, server.process.pid)
        books = asyncio.run(check_books(url, accounts, results))
        version = redis_version(url)
    finally:
        server.stop()
    errors: Counter[str] = Counter()
    for result in results:
        errors.update(result.errors)
    window["latency_ms"] = latency_ms(results)
    return {"redis_version": version, "window": window, "errors": dict(errors), "books": books}


NOTE = (
    "Capacity per core = 1000 / (Redis CPU ms per request). The drivers and Redis share this machine's cores, so "
    "Redis does not reach a whole core here: its CPU per request is extrapolated to a full core. A saturated Redis "
    "would spend a little less per request (more requests per wake-up), but most of it is the scripts' own work "
    "(script_us_per_request, timed by the clock). A request is one reserve and one settle (two EVALSHA), AOF on, "
    "fsync every second."
)


def run_entry(args: argparse.Namespace, measured: dict[str, object], waited: float) -> dict[str, object]:
    return {
        "config": {
            "processes": args.processes,
            "concurrency": args.concurrency,
            "accounts": args.accounts,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
        },
        "machine": machine() | {"redis": measured.pop("redis_version"), "load_after": round(os.getloadavg()[0], 2)},
        "revision": revision(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "waited_for_quiet_s": waited,
        **measured,
        "note": NOTE,
    }


def config_key(run: dict[str, Any]) -> tuple[int, int, int]:
    config = run["config"]
    return int(config["processes"]), int(config["concurrency"]), int(config["accounts"])


def write_results(path: Path, run: dict[str, object]) -> None:
    """Keep one run per configuration: this one replaces its own configuration's and leaves the others."""
    runs: list[dict[str, Any]] = json.loads(path.read_text())["runs"] if path.exists() else []
    runs = [old for old in runs if config_key(old) != config_key(run)] + [run]
    runs.sort(key=config_key, reverse=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runs": runs}, indent=2) + "\n")


def summary(run: dict[str, Any]) -> str:
    config, window, redis_figures, books = run["config"], run["window"], run["window"]["redis"], run["books"]
    latency = window["latency_ms"]
    books_line = (
        f"OK, {books['accounts']} accounts moved by exactly what {books['requests_settled']:,} settlements charged"
    )
    return "\n".join(
        [
            f"Redis {run['machine']['redis']}, {config['processes']} driver processes x {config['concurrency']} "
            f"tasks over {config['accounts']} accounts, {window['seconds']} s measured:",
            f"  settled        {window['settled_per_s']:,.0f} requests/s (reserve + settle), "
            f"{window['errors']} errors, latency p50 {latency.get('p50')} ms, p99 {latency.get('p99')} ms",
            f"  Redis CPU      {redis_figures['cpu_ms_per_request']} ms per request, "
            f"{redis_figures['utilization_percent']}% of one core "
            f"(main thread {redis_figures['main_thread_cpu_ms_per_request']} ms, "
            f"{redis_figures['main_thread_utilization_percent']}%)",
            f"  one Redis core {redis_figures['capacity_per_core_rps']:,} requests/s "
            f"(main thread alone: {redis_figures['main_thread_capacity_rps']:,})",
            f"  inside Redis   scripts {redis_figures['script_us_per_request']} us (wall) per request "
            f"({redis_figures['commands_per_request']} commands), "
            f"{redis_figures['forks']} AOF rewrites ({redis_figures['children_cpu_ms_per_request']} ms CPU per "
            "request in their children)",
            f"  bytes          per request: AOF {redis_figures['aof_bytes_per_request']:,}, network in "
            f"{redis_figures['net_in_bytes_per_request']:,}, out {redis_figures['net_out_bytes_per_request']:,}",
            f"  drivers        {run['window']['drivers']['cpu_ms_per_request']} ms CPU per request; "
            f"other work took {window['others_cpu_percent']}% of the machine"
            + (" (busy: the figures are disturbed)" if window["others_cpu_percent"] > QUIET_BELOW else ""),
            f"  books          {books_line if books['ok'] else 'FAILED: ' + json.dumps(books['mismatches'])}",
            f"  errors         {run['errors'] or 'none'}",
            f"Note: {run['note']}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    waited = wait_for_quiet(QUIET_BELOW, args.quiet_wait)
    with tempfile.TemporaryDirectory(prefix="redis-capacity-") as workdir:
        run = run_entry(args, measure(args, Path(workdir)), waited)
    write_results(args.out, run)
    print(summary(run))
    books = run["books"]
    assert isinstance(books, dict)
    return 0 if books["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
