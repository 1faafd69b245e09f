"""The benchmark harness (`python -m benchmarks.run`) runs end to end, so it cannot rot: one short round at low
load writes its result files with every figure the README's performance table quotes. Not a benchmark."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk; .ci/run does)")
@pytest.mark.timeout(120)
def test_the_harness_runs_end_to_end_and_writes_its_results(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "benchmarks.run", "--duration", "1", "--rounds", "1", "--connections", "1"]
    command += ["--workers", "2", "--first-byte-samples", "5", "--warmup", "0", "--quiet-wait", "0"]
    command += ["--out", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-3000:]

    results = json.loads((tmp_path / "latest.json").read_text())
    assert {"machine", "revision", "config", "runs", "first_byte", "summary"} <= results.keys()
    assert {"cpu", "cores", "kernel", "python", "wrk"} <= results["machine"].keys()
    runs = {(run["target"], run["mode"]): run for run in results["runs"]}
    assert set(runs) == {(target, mode) for target in ("gateway", "direct") for mode in ("plain", "stream")}
    for run in runs.values():
        assert run["requests"] > 0 and run["errors"] == 0, run
        assert {"p50", "p99"} <= run["latency_ms"].keys()
    gateway = runs[("gateway", "plain")]
    assert gateway["cpu_ms_per_request"]["gateway"] > 0 and gateway["cpu_ms_per_request"]["redis"] > 0
    assert gateway["gateway_rss_mb"]["peak_per_process"] > 0
    loads = results["summary"]["loads"]
    assert [(load["mode"], load["connections"]) for load in loads] == [("plain", 1), ("stream", 1)]
    assert all(len(load["ratio_to_direct"]) == 1 and len(load["added_p50_ms"]) == 1 for load in loads)
    first_byte = results["summary"]["first_byte"]
    assert len(first_byte["gateway_median_ms"]) == 1 and len(first_byte["added_median_ms"]) == 1
    table = (tmp_path / "latest.md").read_text()
    assert "| plain c=1 |" in table and "| stream c=1 |" in table and table in done.stdout


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk; .ci/run does)")
@pytest.mark.timeout(120)
def test_the_soak_runs_end_to_end_and_reads_every_workers_memory(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    command = [sys.executable, "-m", "benchmarks.soak", "--requests", "20", "--slice-seconds", "1"]
    command += ["--connections", "2", "--out", str(out)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-3000:]

    results = json.loads(out.read_text())
    slices = results["slices"]
    assert len(slices) >= 2 and slices[-1]["requests_so_far"] >= 20 and slices[-1]["errors"] == 0
    assert all(len(reading["rss_mib"]) == 3 for reading in slices)  # the master and its two workers
    assert all(mib > 0 for reading in slices for mib in reading["rss_mib"].values())
    assert set(results["rss_growth_after_warmup_mib"]) == set(slices[-1]["rss_mib"])
