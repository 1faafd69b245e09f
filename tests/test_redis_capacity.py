"""The Redis capacity benchmark (`python -m benchmarks.redis_capacity`) runs end to end, so it cannot rot: one
short run with one driver process against its own Redis writes every figure and passes its books check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(60)
def test_the_capacity_benchmark_runs_end_to_end_and_its_books_balance(tmp_path: Path) -> None:
    out = tmp_path / "capacity.json"
    command = [sys.executable, "-m", "benchmarks.redis_capacity", "--duration", "1", "--warmup", "0.3"]
    command += ["--processes", "1", "--concurrency", "4", "--accounts", "3", "--quiet-wait", "0", "--out", str(out)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    [run] = json.loads(out.read_text())["runs"]
    config = run["config"]
    assert (config["processes"], config["concurrency"], config["accounts"]) == (1, 4, 3)
    assert {"cpu", "cores", "python", "redis"} <= run["machine"].keys() and run["revision"]
    window, redis = run["window"], run["window"]["redis"]
    assert window["settled"] > 0 and window["settled_per_s"] > 0 and window["errors"] == 0 and run["errors"] == {}
    assert redis["cpu_ms_per_request"] > 0 and 0 < redis["utilization_percent"] <= 100
    assert redis["capacity_per_core_rps"] == pytest.approx(1000 / redis["cpu_ms_per_request"], rel=0.01)
    assert redis["evalsha_calls_per_request"] == pytest.approx(2, abs=0.05)  # one reserve, one settle
    assert {"p50", "p99"} <= window["latency_ms"].keys()
    books = run["books"]
    assert books["ok"] and books["mismatches"] == [] and books["requests_settled"] >= window["settled"]
    assert books["charged_micros"] > 0
    assert "one Redis core" in done.stdout and "books          OK" in done.stdout
