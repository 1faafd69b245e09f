"""What a /metrics page must show before any event: the fixed-vocabulary series, each at 0."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

# The fixed vocabularies, written out here: a refusal before a hold, a webhook attempt's outcome.
REFUSAL_STATUSES = ("400", "401", "402", "404", "408", "413", "415", "502", "503")
WEBHOOK_OUTCOMES = ("delivered", "failed", "failed_for_good", "skipped")
APIS = ("chat.completions", "responses", "embeddings", "completions", "messages")


def fixed_vocabulary_at_zero(text: str) -> dict[str, set[tuple[str, ...]]]:
    """Series name -> the label values of its series at 0 on a /metrics page, for the fixed-vocabulary series."""
    wanted = {
        "gateway_requests_refused_total": ("status",),
        "gateway_webhook_deliveries_total": ("outcome",),
        "gateway_usage_clamped_total": ("model", "kind"),
        "gateway_tokens_total": ("model", "api", "kind"),
        "gateway_credits_charged_total": ("model", "api"),
        "gateway_redis_errors_total": (),
    }
    found: dict[str, set[tuple[str, ...]]] = {name: set() for name in wanted}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted and sample.value == 0:
                found[sample.name].add(tuple(sample.labels[label] for label in wanted[sample.name]))
    return found


def expected_at_zero(models: list[str]) -> dict[str, set[tuple[str, ...]]]:
    """What `fixed_vocabulary_at_zero` finds before any event, with `models` configured."""
    kinds = ("prompt", "completion", "cached", "reasoning", "cache_write")
    return {
        "gateway_requests_refused_total": {(status,) for status in REFUSAL_STATUSES},
        "gateway_webhook_deliveries_total": {(outcome,) for outcome in WEBHOOK_OUTCOMES},
        "gateway_usage_clamped_total": {
            (model, kind) for model in models for kind in ("prompt", "completion", "tool_calls")
        },
        "gateway_tokens_total": {(model, api, kind) for model in models for api in APIS for kind in kinds},
        "gateway_credits_charged_total": {(model, api) for model in models for api in APIS},
        "gateway_redis_errors_total": {()},
    }
