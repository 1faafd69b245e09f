"""Memory over many requests: `python -m benchmarks.soak --requests 1000000`.

It starts the benchmark's stack (benchmarks/stack.py: Redis, the mock upstream, `gateway serve --workers N`),
then drives plain and streamed chat requests (half each, at concurrency 64) with wrk in slices, and after each
slice reads every gateway process's resident memory (VmRSS) from /proc. A gateway whose memory grows with the
requests it has served leaks; one that is flat does not. The first slice is the warm-up (vocabularies, pools,
caches filled); the growth reported is from the end of it to the end of the run.

Writes benchmarks/results/soak.json and prints one line per slice.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import procstat
from benchmarks.apis import selected
from benchmarks.run import machine, revision
from benchmarks.stack import Stack, running_stack
from benchmarks.wrk import Load, run_wrk

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Gateway memory over many requests.")
    parser.add_argument("--requests", type=int, default=1_000_000, help="at least this many requests in all")
    parser.add_argument("--slice-seconds", type=int, default=30, help="wrk run between two memory readings")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=16, help="completion tokens of each mock reply")
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    return parser.parse_args(argv)


def rss_mib(stack: Stack) -> dict[str, float]:
    """Resident memory of each gateway process now, by pid (the master first)."""
    return {str(pid): round(procstat.status_kib(pid, "VmRSS") / 1024, 1) for pid in stack.gateway_pids()}


def soak(stack: Stack, args: argparse.Namespace) -> list[dict[str, object]]:
    chat = selected(["chat"], ["plain", "stream"])
    slices: list[dict[str, object]] = [{"requests_so_far": 0, "errors": 0, "rss_mib": rss_mib(stack)}]
    served = errors = 0
    while served < args.requests:
        request = chat[(len(slices) - 1) % len(chat)]  # plain, stream, plain, ...
        url = f"http://127.0.0.1:{stack.gateway_port}{request.path}"
        load = Load(url, request, args.connections, args.slice_seconds, key=stack.key)
        started = time.monotonic()
        figures = run_wrk(load)
        done = int(str(figures["requests"]))
        served += done
        errors += sum(int(n) for n in dict(figures["errors"]).values())  # type: ignore[call-overload]
        reading = {
            "requests_so_far": served,
            "mode": request.mode,
            "rps": round(done / (time.monotonic() - started)),
            "errors": errors,
            "rss_mib": rss_mib(stack),
        }
        slices.append(reading)
        print(json.dumps(reading), flush=True)
    return slices


def growth(slices: list[dict[str, object]]) -> dict[str, float]:
    """Each worker's RSS at the end less at the end of the warm-up slice, in MiB."""
    warm, last = slices[1]["rss_mib"], slices[-1]["rss_mib"]
    assert isinstance(warm, dict) and isinstance(last, dict)
    return {pid: round(last[pid] - warm[pid], 1) for pid in last if pid in warm}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gateway-soak-") as workdir:
        with running_stack(Path(workdir), args.workers, args.tokens) as stack:
            slices = soak(stack, args)
    results = {
        "machine": machine(),
        "revision": revision(),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "slices": slices,
        "rss_growth_after_warmup_mib": growth(slices),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"requests: {slices[-1]['requests_so_far']}, errors: {slices[-1]['errors']}")
    print(f"RSS growth after the warm-up slice (MiB, by pid): {results['rss_growth_after_warmup_mib']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
