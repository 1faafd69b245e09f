"""The gateway's speed, measured from the outside, beside the mock upstream called directly.

    .venv/bin/python -m benchmarks.run [--duration 10] [--rounds 2] [--workers N] [--connections 1,64]
        [--apis chat,embeddings,completions] [--modes plain,stream] [--api-connections 64]

It starts Redis, the mock upstream (no latency) and `gateway serve --workers N` on 127.0.0.1 (stack.py), and
checks that both answer each selected API's request (apis.py) with 200: an API the gateway answers with 404 is
refused before anything is measured. Each round runs every selected API and mode (chat at --connections, the
others at --api-connections) with wrk (request.lua), against the gateway and straight against the mock, one
after the other, and probes the time to the first streamed chat byte at c=1 (probe.py). Around each run it
reads from /proc the CPU time of the gateway's processes, of redis-server and of the mock, and the gateway's
peak RSS (procstat.py). It writes `latest.json` and `latest.md` to --out (default benchmarks/results/) and
prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import probe, procstat, report
from benchmarks.apis import APIS, DEFAULT_APIS, MODES, ApiLoad, selected
from benchmarks.served import NotServed, check_served, url
from benchmarks.stack import REPO, Stack, running_stack
from benchmarks.wrk import Load, run_wrk, wrk_version


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    cores = len(os.sched_getaffinity(0))
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="times each figure is measured (default 2)")
    parser.add_argument("--workers", type=int, default=cores, help=f"gateway worker processes (default {cores})")
    parser.add_argument("--connections", default="1,64", help="chat's concurrencies, comma-separated (default 1,64)")
    parser.add_argument("--apis", default=",".join(DEFAULT_APIS), help=f"of {','.join(APIS)} (default: %(default)s)")
    parser.add_argument("--modes", default=",".join(MODES), help="plain, stream or both (default: %(default)s)")
    parser.add_argument(
        "--api-connections", default="64", help="the other APIs' concurrencies, comma-separated (default 64)"
    )
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1: it leaves cores free)")
    parser.add_argument("--tokens", type=int, default=16, help="mock reply length in tokens (default 16)")
    parser.add_argument("--first-byte-samples", type=int, default=300, help="streamed requests timed per round")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unrecorded load first (default 2)")
    parser.add_argument(
        "--quiet-below",
        type=float,
        default=10.0,
        help="before each run, wait until other work takes less than this %% of the CPU (default 10)",
    )
    parser.add_argument("--retries", type=int, default=2, help="runs measured again if others were busy (2)")
    parser.add_argument("--quiet-wait", type=float, default=120.0, help="seconds to wait for quiet, at most (120)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="where results go")
    return parser.parse_args(argv)


def machine() -> dict[str, object]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk_version(),
        "load_before": round(os.getloadavg()[0], 2),
    }


def revision() -> str:
    """The commit measured, marked "+changes" when gateway/ differs from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "gateway"], cwd=REPO, capture_output=True, text=True)
    except OSError:
        return "unknown"
    if commit.returncode != 0:
        return "unknown"
    return commit.stdout.strip() + (" +changes" if dirty.stdout.strip() else "")


def wait_for_quiet(threshold: float, patience: float) -> float:
    """Wait until the machine, idle on our side between runs, is busy below `threshold` % of its CPU for half a
    second (other people's work on a shared machine), or `patience` seconds have passed; the seconds waited."""
    started = time.monotonic()
    cores = len(os.sched_getaffinity(0))
    while time.monotonic() - started < patience:
        before = procstat.machine_busy_seconds()
        time.sleep(0.5)
        if 100 * (procstat.machine_busy_seconds() - before) / (0.5 * cores) < threshold:
            break
    return round(time.monotonic() - started, 1)


def measure(stack: Stack, target: str, load: Load) -> dict[str, object]:
    """One wrk run with the CPU each process spent on it, per request, and the gateway's memory after it."""
    groups = {"gateway": stack.gateway_pids(), "redis": [stack.redis_pid], "mock": [stack.mock_pid]}
    before = {name: procstat.CpuSnapshot.of(pids) for name, pids in groups.items()}
    busy_before, wrk_before = procstat.machine_busy_seconds(), _children_cpu_seconds()
    figures = run_wrk(load)
    busy, wrk_cpu = procstat.machine_busy_seconds() - busy_before, _children_cpu_seconds() - wrk_before
    requests, seconds = int(figures["requests"]), int(figures["duration_us"]) / 1e6
    groups["gateway"] = stack.gateway_pids()
    cpu_ms: dict[str, float] = {}
    complete = True
    for name, pids in groups.items():
        spent, same = procstat.CpuSnapshot.of(pids).used_since(before[name])
        cpu_ms[name], complete = spent * 1000, complete and same
    gateway_pids = groups["gateway"]
    # What the rest of the machine took meanwhile: other people's work makes every figure here worse.
    others = max(0.0, busy - wrk_cpu - sum(cpu_ms.values()) / 1000)
    return {
        "target": target,
        "api": load.request.api,
        "mode": load.request.mode,
        "connections": load.connections,
        "requests": requests,
        "seconds": round(seconds, 3),
        "rps": round(requests / seconds, 1),
        "latency_ms": {name: round(us / 1000, 3) for name, us in figures["latency_us"].items()},
        "errors": sum(figures["errors"].values()),
        "error_detail": figures["errors"],
        "cpu_ms": {name: round(ms, 1) for name, ms in cpu_ms.items()},
        "cpu_ms_per_request": {name: round(ms / max(requests, 1), 4) for name, ms in cpu_ms.items()},
        "cpu_complete": complete,  # false when a gateway process came or went during the run
        "wrk_cpu_ms": round(wrk_cpu * 1000, 1),
        "others_cpu_percent": round(100 * others / (seconds * len(os.sched_getaffinity(0))), 1),
        "gateway_rss_mb": {
            "peak_per_process": max(procstat.status_kib(pid, "VmHWM") for pid in gateway_pids) / 1024,
            "total_now": sum(procstat.status_kib(pid, "VmRSS") for pid in gateway_pids) / 1024,
        },
    }


def _children_cpu_seconds() -> float:
    """CPU time of this process's finished children (wrk, once it has been waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def quiet_measure(stack: Stack, target: str, load: Load, args: argparse.Namespace, round_: int) -> dict[str, object]:
    """`measure` once the machine is quiet, measured again (up to --retries times) when other work took more
    than --quiet-below % of the CPU during the run after all; the attempt other work disturbed least."""
    attempts = []
    for attempt in range(1, args.retries + 2):
        waited = wait_for_quiet(args.quiet_below, args.quiet_wait)
        run = {"round": round_, "attempt": attempt, "waited_for_quiet_s": waited, **measure(stack, target, load)}
        print(_progress(run), file=sys.stderr, flush=True)
        attempts.append(run)
        if float(run["others_cpu_percent"]) <= args.quiet_below:
            break
    return min(attempts, key=lambda run: float(run["others_cpu_percent"]))


def plan(loads: list[ApiLoad], chat_connections: list[int], api_connections: list[int]) -> list[tuple[ApiLoad, int]]:
    """Each load at each of its API's concurrencies, in order."""
    return [
        (load, concurrency)
        for load in loads
        for concurrency in (chat_connections if load.api == "chat" else api_connections)
    ]


def ports(stack: Stack) -> dict[str, int]:
    """Where each target listens: the gateway, and the mock called directly."""
    return {"gateway": stack.gateway_port, "direct": stack.mock_port}


def benchmark(stack: Stack, args: argparse.Namespace, loads: list[tuple[ApiLoad, int]]) -> dict[str, object]:
    targets = ports(stack)
    for request in {load.label: load for load, _ in loads}.values() if args.warmup else ():
        most = max(concurrency for load, concurrency in loads if load.label == request.label)
        for port in targets.values():
            run_wrk(Load(url(port, request), request, most, args.warmup, args.wrk_threads, stack.key))
    streamed_chat = [load for load, _ in loads if load.label == "chat stream"][:1]
    runs: list[dict[str, object]] = []
    probes: list[dict[str, object]] = []
    for round_number in range(1, args.rounds + 1):
        # Interleaved: the two targets of a figure run back to back, first one, then the other, in turn.
        order = ["gateway", "direct"] if round_number % 2 else ["direct", "gateway"]
        for request, concurrency in loads:
            for target in order:
                where = url(targets[target], request)
                load = Load(where, request, concurrency, args.duration, args.wrk_threads, stack.key)
                runs.append(quiet_measure(stack, target, load, args, round_number))
        for request in streamed_chat:  # the time to the first byte, of chat's stream
            for target in order:
                wait_for_quiet(args.quiet_below, args.quiet_wait)
                times = probe.first_byte_seconds(targets[target], request, stack.key, args.first_byte_samples)
                probes.append({"round": round_number, "target": target, **probe.summary_ms(times)})
                print(f"round {round_number} first byte {target}: {probes[-1]}", file=sys.stderr, flush=True)
    return {"runs": runs, "first_byte": probes}


def _progress(run: dict[str, object]) -> str:
    load = f"round {run['round']} attempt {run['attempt']} {run['target']:7} {run['api']} {run['mode']:6}"
    load += f" c={run['connections']:<3}"
    return (
        f"{load} {run['rps']:>9} req/s latency {run['latency_ms']} errors {run['errors']} "
        f"cpu/req {run['cpu_ms_per_request']} others {run['others_cpu_percent']}% of the CPU"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    connections = [int(part) for part in args.connections.split(",")]
    api_connections = [int(part) for part in args.api_connections.split(",")]
    try:
        loads = plan(selected(args.apis.split(","), args.modes.split(",")), connections, api_connections)
    except ValueError as exc:
        print(f"benchmarks.run: {exc}", file=sys.stderr)
        return 2
    results: dict[str, object] = {
        "machine": machine(),
        "revision": revision(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": {
            "workers": args.workers,
            "seconds": args.duration,
            "rounds": args.rounds,
            "connections": connections,
            "api_connections": api_connections,
            "loads": [f"{load.label} c={concurrency}" for load, concurrency in loads],
            "wrk_threads": args.wrk_threads,
            "completion_tokens": args.tokens,
            "first_byte_samples": args.first_byte_samples,
            "quiet_below_percent": args.quiet_below,
        },
    }
    try:
        with tempfile.TemporaryDirectory(prefix="gateway-bench-") as workdir:
            with running_stack(Path(workdir), args.workers, args.tokens) as stack:
                check_served(ports(stack), stack.key, [load for load, _ in loads])
                results |= benchmark(stack, args, loads)
    except NotServed as exc:
        print(f"benchmarks.run: {exc}", file=sys.stderr)
        return 2
    results["machine"]["load_after"] = round(os.getloadavg()[0], 2)
    results["summary"] = report.summarize(results["runs"], results["first_byte"])
    table = report.markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "latest.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
