"""/metrics after known traffic: parsed with prometheus_client's own parser, the request, token and credit
counters equal what the usage API reports; the other series count what they say."""

from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app_state import LEDGER, REDIS_HEALTH
from tests.common import Gateway, StartGateway, user_message
from tests.faults import ControlledRedis
from tests.prometheus import REFUSAL_STATUSES, WEBHOOK_OUTCOMES, expected_at_zero, fixed_vocabulary_at_zero
from tests.usage.traffic import get_json, scheduled_traffic

GRAFANA = Path(__file__).resolve().parent.parent / "config" / "grafana-dashboard.json"
EVERY_DAY = {"start": "2026-08-01", "end": "2026-09-30"}


async def _samples(gateway: Gateway) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)], as Prometheus would read the page."""
    text = await (await gateway.client.get("/metrics")).text()
    found: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name].append((dict(sample.labels), sample.value))
    return found


def _sum(samples: list[tuple[dict[str, str], float]], **labels: str) -> float:
    return sum(value for found, value in samples if all(found.get(k) == v for k, v in labels.items()))


async def test_request_token_and_credit_counters_equal_the_usage_api(start_gateway: StartGateway) -> None:
    gateway, tenant = await scheduled_traffic(start_gateway)
    samples = await _samples(gateway)
    _, usage = await get_json(gateway, "/v1/usage", tenant.auth(), **EVERY_DAY)
    _, models = await get_json(gateway, "/v1/usage/models", tenant.auth(), **EVERY_DAY)
    requests = samples["gateway_requests_total"]
    assert _sum(requests) == usage["total_requests"] == len(tenant.sent)
    assert _sum(requests, model="m-broken", status="500") == 1  # the failing upstream, recorded and free
    for row in models["data"]:  # type: ignore[attr-defined]
        model = row["model"]
        assert _sum(requests, model=model) == row["requests"]
        assert _sum(samples["gateway_tokens_total"], model=model, kind="prompt") == row["prompt_tokens"]
        assert _sum(samples["gateway_tokens_total"], model=model, kind="completion") == row["completion_tokens"]
        credits = _sum(samples["gateway_credits_charged_total"], model=model)
        assert credits == pytest.approx(
            row["credits_used_micros"] / 1e6, abs=1e-9
        )  # float counters; the ledger is exact
    assert _sum(samples["gateway_credits_charged_total"]) == pytest.approx(usage["total_credits_used"], abs=1e-9)
    # Every kind has its series from a model's first request on, at 0 when none were billed (a rate of 0 for
    # Prometheus, not a missing series), and so does the failing model's credits.
    kinds = {(labels["model"], labels["api"], labels["kind"]) for labels, _ in samples["gateway_tokens_total"]}
    assert {kind for model, api, kind in kinds if model == "m-broken" and api == "chat.completions"} == {
        "prompt",
        "completion",
        "cached",
        "reasoning",
        "cache_write",
    }
    # All of it was chat: the other APIs' series are there, at 0.
    assert _sum(requests, api="chat.completions") == len(tenant.sent)
    assert _sum(samples["gateway_tokens_total"], api="messages") == 0
    assert _sum(samples["gateway_credits_charged_total"], model="m-broken") == 0
    assert any(labels["model"] == "m-broken" for labels, _ in samples["gateway_credits_charged_total"])
    forwarded = len(tenant.sent)
    assert _sum(samples["gateway_upstream_seconds_count"]) == forwarded
    assert _sum(samples["gateway_overhead_seconds_count"]) == forwarded
    assert _sum(samples["gateway_streams_in_flight"]) == 0
    assert "gateway_token_count_drift_tokens_bucket" in samples


async def test_refusals_are_counted_apart_by_status(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    _, key = await gateway.new_account(credits="0.000001")
    await gateway.chat("sk-gw-0123456789abcdef-wrong", {"model": "m-main", "messages": user_message()})
    await gateway.chat(key, {"model": "m-main", "messages": user_message()})  # 1 micro-credit pays for nothing
    await gateway.chat(key, {"model": "no-such-model", "messages": user_message()})
    refused = (await _samples(gateway))["gateway_requests_refused_total"]
    assert {labels["status"]: value for labels, value in refused} == dict.fromkeys(REFUSAL_STATUSES, 0.0) | {
        "401": 1.0,
        "402": 1.0,
        "404": 1.0,
    }
    assert not (await _samples(gateway))["gateway_requests_total"]  # nothing was settled


async def test_fixed_vocabulary_series_exist_at_zero_from_start_up(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={}, other={})
    text = await (await gateway.client.get("/metrics")).text()
    assert fixed_vocabulary_at_zero(text) == expected_at_zero(["m-main", "m-other"])
    assert "gateway_requests_total{" not in text  # an open vocabulary (any status recorded): it comes with traffic
    # Per account, tokens and credits wait for an account's first request; the rest is there.
    per_account = await start_gateway({"metrics": {"per_account": True}})
    found = fixed_vocabulary_at_zero(await (await per_account.client.get("/metrics")).text())
    expected = expected_at_zero(["m-main"]) | {"gateway_tokens_total": set(), "gateway_credits_charged_total": set()}
    assert found == expected


async def test_redis_errors_and_script_reloads(start_gateway: StartGateway, controlled_redis: ControlledRedis) -> None:
    gateway = await start_gateway({"redis": {"url": controlled_redis.url, "timeout": 0.5}})
    _, key = await gateway.new_account()
    controlled_redis.stop()
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message()})
    assert response.status == 503
    assert _sum((await _samples(gateway))["gateway_redis_errors_total"]) >= 1
    controlled_redis.start()
    await gateway.redis.script_flush()  # a Redis that lost its scripts is not ready until they are back
    health = gateway.app[REDIS_HEALTH]
    assert await health.check()
    ledger = gateway.app[LEDGER]
    shas = [ledger._reserve.sha, ledger._settle.sha, ledger._grant.sha]
    assert await gateway.redis.script_exists(*shas) == [True, True, True]


async def test_counters_carry_the_account_only_when_asked(start_gateway: StartGateway) -> None:
    gateway = await start_gateway({"metrics": {"per_account": True}})
    account, key = await gateway.new_account()
    assert (await gateway.chat(key, {"model": "m-main", "messages": user_message()})).status == 200
    [(labels, value)] = (await _samples(gateway))["gateway_requests_total"]
    assert labels == {"model": "m-main", "api": "chat.completions", "status": "200", "account": account} and value == 1
    plain = await start_gateway()
    _, other_key = await plain.new_account()
    await plain.chat(other_key, {"model": "m-main", "messages": user_message()})
    [(labels, _)] = (await _samples(plain))["gateway_requests_total"]
    assert "account" not in labels


def test_the_grafana_dashboard_reads_only_series_the_gateway_exports() -> None:
    dashboard = json.loads(GRAFANA.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 8
    exported = {
        "gateway_requests_total",
        "gateway_requests_refused_total",
        "gateway_tokens_total",
        "gateway_credits_charged_total",
        "gateway_upstream_seconds_bucket",
        "gateway_overhead_seconds_bucket",
        "gateway_streams_in_flight",
        "gateway_redis_errors_total",
        "gateway_webhook_deliveries_total",
        "gateway_usage_clamped_total",
        "gateway_token_count_drift_tokens_bucket",
    }
    used = {name for expr in exprs for name in re.findall(r"\bgateway_[a-z_]+", expr)}
    assert used <= exported, used - exported
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("requests", "errors", "latency", "overhead", "tokens", "credits"):
        assert topic in titles, topic


async def test_webhook_deliveries_are_counted_by_outcome(start_gateway: StartGateway) -> None:
    gateway = await start_gateway({"webhooks": {"allow_private_targets": True}})
    _, key = await gateway.new_account()
    auth = {"Authorization": f"Bearer {key}"}
    body = {"url": "http://127.0.0.1:9/closed", "events": ["credits.exhausted"]}
    created = await (await gateway.client.post("/v1/webhooks", json=body, headers=auth)).json()
    await gateway.client.post(f"/v1/webhooks/{created['id']}/test", headers=auth)
    for _ in range(100):
        samples = await _samples(gateway)
        if _sum(samples["gateway_webhook_deliveries_total"]):
            break
        await asyncio.sleep(0.05)
    outcomes = {labels["outcome"]: value for labels, value in samples["gateway_webhook_deliveries_total"]}
    assert outcomes == dict.fromkeys(WEBHOOK_OUTCOMES, 0.0) | {"failed": 1.0}  # nobody listens on port 9: retried
