"""Runs summed up per load (API, mode and concurrency) across rounds, and the Markdown table of the summary."""

from __future__ import annotations

from collections import defaultdict

Record = dict[str, object]


def _pairs(runs: list[Record]) -> dict[tuple[str, str, int], dict[int, dict[str, Record]]]:
    """(api, mode, connections) -> round -> target -> run, the loads in the order they first ran."""
    grouped: dict[tuple[str, str, int], dict[int, dict[str, Record]]] = defaultdict(lambda: defaultdict(dict))
    for run in runs:
        load = (str(run["api"]), str(run["mode"]), int(run["connections"]))
        grouped[load][int(run["round"])][str(run["target"])] = run
    return grouped


def _get(run: Record, *path: str) -> float:
    value: object = run
    for key in path:
        value = value[key]
    return float(value)


def summarize(runs: list[Record], probes: list[Record]) -> dict[str, object]:
    """Per load, each figure as its list over rounds; gateway figures beside the direct ones of the same round."""
    loads = []
    for (api, mode, connections), rounds in _pairs(runs).items():
        both = [pair for _, pair in sorted(rounds.items()) if {"gateway", "direct"} <= pair.keys()]
        gateway, direct = [pair["gateway"] for pair in both], [pair["direct"] for pair in both]
        loads.append(
            {
                "api": api,
                "mode": mode,
                "connections": connections,
                "gateway_rps": [_get(run, "rps") for run in gateway],
                "direct_rps": [_get(run, "rps") for run in direct],
                "ratio_to_direct": [_get(g, "rps") / _get(d, "rps") for g, d in zip(gateway, direct, strict=True)],
                "gateway_p50_ms": [_get(run, "latency_ms", "p50") for run in gateway],
                "gateway_p99_ms": [_get(run, "latency_ms", "p99") for run in gateway],
                "direct_p50_ms": [_get(run, "latency_ms", "p50") for run in direct],
                "direct_p99_ms": [_get(run, "latency_ms", "p99") for run in direct],
                "added_p50_ms": [_added(g, d, "p50") for g, d in zip(gateway, direct, strict=True)],
                "added_p99_ms": [_added(g, d, "p99") for g, d in zip(gateway, direct, strict=True)],
                "gateway_cpu_ms_per_request": [_get(run, "cpu_ms_per_request", "gateway") for run in gateway],
                "redis_cpu_ms_per_request": [_get(run, "cpu_ms_per_request", "redis") for run in gateway],
                "errors": {"gateway": sum(int(_get(r, "errors")) for r in gateway), "direct": _errors(direct)},
            }
        )
    others = [float(run["others_cpu_percent"]) for run in runs]
    return {
        "loads": loads,
        "first_byte": _first_byte(probes),
        "gateway_peak_rss_mb": _peak_rss(runs),
        "others_cpu_percent": {"mean": sum(others) / max(len(others), 1), "max": max(others, default=0.0)},
    }


def _added(gateway: Record, direct: Record, percentile: str) -> float:
    return _get(gateway, "latency_ms", percentile) - _get(direct, "latency_ms", percentile)


def _errors(runs: list[Record]) -> int:
    return sum(int(_get(run, "errors")) for run in runs)


def _first_byte(probes: list[Record]) -> dict[str, list[float]]:
    by_round: dict[int, dict[str, Record]] = defaultdict(dict)
    for probe in probes:
        by_round[int(probe["round"])][str(probe["target"])] = probe
    both = [pair for _, pair in sorted(by_round.items()) if {"gateway", "direct"} <= pair.keys()]
    return {
        "gateway_median_ms": [_get(pair["gateway"], "median") for pair in both],
        "gateway_p99_ms": [_get(pair["gateway"], "p99") for pair in both],
        "direct_median_ms": [_get(pair["direct"], "median") for pair in both],
        "direct_p99_ms": [_get(pair["direct"], "p99") for pair in both],
        "added_median_ms": [_get(pair["gateway"], "median") - _get(pair["direct"], "median") for pair in both],
        "added_p99_ms": [_get(pair["gateway"], "p99") - _get(pair["direct"], "p99") for pair in both],
    }


def _peak_rss(runs: list[Record]) -> dict[str, float]:
    gateway = [run for run in runs if run["target"] == "gateway"]
    return {
        "per_process": max((_get(run, "gateway_rss_mb", "peak_per_process") for run in gateway), default=0.0),
        "all_processes_after_first_run": _get(gateway[0], "gateway_rss_mb", "total_now") if gateway else 0.0,
        "all_processes_after_last_run": _get(gateway[-1], "gateway_rss_mb", "total_now") if gateway else 0.0,
    }


def span(values: list[float], digits: int = 0, sign: bool = False) -> str:
    """A figure over rounds: "1,250" or "1,250–1,500"."""
    if not values:
        return "n/a"
    form = f"{{:{'+' if sign else ''},.{digits}f}}"
    low, high = form.format(min(values)), form.format(max(values))
    if low == high:
        return low
    return f"{low}–{high[1:] if low.startswith('+') and high.startswith('+') else high}"  # "+0.89–0.93"


def markdown(results: dict[str, object]) -> str:
    summary: dict[str, object] = results["summary"]
    machine: dict[str, object] = results["machine"]
    config: dict[str, object] = results["config"]
    lines = [
        f"Machine: {machine['cpu']}, {machine['cores']} cores, Linux {machine['kernel']}, Python {machine['python']}, "
        f"{machine['wrk']}; load average {machine['load_before']} before the run.",
        f"Gateway `serve --workers {config['workers']}`, full metering, Redis with AOF; mock upstream with no "
        f"latency, {config['completion_tokens']}-token replies. {config['rounds']} round(s) of {config['seconds']} s "
        "per figure, gateway and direct interleaved; a range is min–max over rounds. Each API's request is the one "
        "of `benchmarks/apis.py`.",
        "",
        "| load | gateway req/s | direct req/s | gateway / direct | gateway p50 / p99 ms | added p50 / p99 ms "
        "| gateway CPU ms/req | Redis CPU ms/req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for load in summary["loads"]:
        lines.append(
            f"| {load['api']} {load['mode']} c={load['connections']} "
            f"| {span(load['gateway_rps'])} | {span(load['direct_rps'])} "
            f"| {span(load['ratio_to_direct'], 2)} "
            f"| {span(load['gateway_p50_ms'], 2)} / {span(load['gateway_p99_ms'], 2)} "
            f"| {span(load['added_p50_ms'], 2, True)} / {span(load['added_p99_ms'], 2, True)} "
            f"| {span(load['gateway_cpu_ms_per_request'], 2)} | {span(load['redis_cpu_ms_per_request'], 3)} |"
        )
    first: dict[str, list[float]] = summary["first_byte"]
    rss: dict[str, float] = summary["gateway_peak_rss_mb"]
    others: dict[str, float] = summary["others_cpu_percent"]
    errors = sum(sum(load["errors"].values()) for load in summary["loads"])
    if first["gateway_median_ms"]:  # probed when streamed chat ran
        lines += [
            "",
            "| chat stream first byte, c=1 | gateway median / p99 ms | direct median / p99 ms "
            "| added median / p99 ms |",
            "|---|---:|---:|---:|",
            f"| {config['first_byte_samples']} requests per round "
            f"| {span(first['gateway_median_ms'], 2)} / {span(first['gateway_p99_ms'], 2)} "
            f"| {span(first['direct_median_ms'], 2)} / {span(first['direct_p99_ms'], 2)} "
            f"| {span(first['added_median_ms'], 2, True)} / {span(first['added_p99_ms'], 2, True)} |",
        ]
    lines += [
        "",
        f"Gateway peak RSS (VmHWM): {rss['per_process']:.0f} MB per process at most; all its processes "
        f"{rss['all_processes_after_first_run']:.0f} MB resident after the first run, "
        f"{rss['all_processes_after_last_run']:.0f} MB after the last. "
        f"Errors and non-2xx answers: {errors or 'none'}. Other processes on the machine took "
        f"{others['mean']:.1f}% of its CPU during the runs on average, {others['max']:.1f}% at most.",
    ]
    return "\n".join(lines) + "\n"
