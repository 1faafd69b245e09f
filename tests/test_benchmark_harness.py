"""The benchmark harness (`python -m benchmarks.run`) runs end to end, so it cannot rot: one short round at low
load, chat and one other API, writes its result files with every figure the README's performance table quotes;
an API the gateway does not serve is refused before anything is measured. Not a benchmark."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.apis import ApiLoad
from benchmarks.served import NotServed, check_served
from tests.common import StartGateway

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk; .ci/run does)")
@pytest.mark.timeout(120)
def test_the_harness_runs_end_to_end_and_writes_its_results(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "benchmarks.run", "--duration", "1", "--rounds", "1", "--connections", "1"]
    command += ["--workers", "2", "--first-byte-samples", "5", "--warmup", "0", "--quiet-wait", "0", "--retries", "0"]
    command += ["--apis", "chat,embeddings", "--api-connections", "1", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-3000:]

    results = json.loads((tmp_path / "latest.json").read_text())
    assert {"machine", "revision", "config", "runs", "first_byte", "summary"} <= results.keys()
    assert {"cpu", "cores", "kernel", "python", "wrk"} <= results["machine"].keys()
    runs = {(run["target"], run["api"], run["mode"]): run for run in results["runs"]}
    loads = [("chat", "plain"), ("chat", "stream"), ("embeddings", "plain")]
    assert set(runs) == {(target, *load) for target in ("gateway", "direct") for load in loads}
    for run in runs.values():
        assert run["requests"] > 0 and run["errors"] == 0, run
        assert {"p50", "p99"} <= run["latency_ms"].keys()
    for api in ("chat", "embeddings"):  # metered: the gateway's settlements ran on Redis
        gateway = runs[("gateway", api, "plain")]
        assert gateway["cpu_ms_per_request"]["gateway"] > 0 and gateway["cpu_ms_per_request"]["redis"] > 0
    assert runs[("gateway", "chat", "plain")]["gateway_rss_mb"]["peak_per_process"] > 0
    summed = results["summary"]["loads"]
    assert [(load["api"], load["mode"], load["connections"]) for load in summed] == [(*load, 1) for load in loads]
    assert all(len(load["ratio_to_direct"]) == 1 and len(load["added_p50_ms"]) == 1 for load in summed)
    first_byte = results["summary"]["first_byte"]
    assert len(first_byte["gateway_median_ms"]) == 1 and len(first_byte["added_median_ms"]) == 1
    table = (tmp_path / "latest.md").read_text()
    assert "| chat plain c=1 |" in table and "| chat stream c=1 |" in table and "| embeddings plain c=1 |" in table
    assert table in done.stdout


async def test_an_api_the_gateway_does_not_serve_is_refused_before_any_run(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    _, key = await gateway.new_account()
    upstream = gateway.upstreams["main"].server
    ports = {"gateway": gateway.client.port, "direct": upstream.port}
    assert ports["gateway"] and ports["direct"]
    chat = ApiLoad(
        "chat", "plain", "/v1/chat/completions", {"model": "m-main", "messages": [{"role": "user", "content": "Hi"}]}
    )
    await asyncio.to_thread(check_served, ports, key, [chat])  # served: no refusal

    unserved = ApiLoad("oracle", "stream", "/v1/oracle", {"model": "m-main", "question": "Hi", "stream": True})
    with pytest.raises(NotServed) as refused:
        await asyncio.to_thread(check_served, ports, key, [chat, unserved])
    message = str(refused.value)
    assert message.startswith("the gateway answers 404 to oracle stream (POST /v1/oracle):")
    assert "leave 'oracle' out of --apis" in message


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
