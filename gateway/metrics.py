"""Prometheus metrics in an app-owned registry, served at /metrics (see `ops`).

Counters only go up and use base units (seconds, credits, tokens). Label sets stay bounded: a model is a
configured model name, an API one of the five the gateway meters, a status an HTTP status; never an API key, and
an account id only when the operator turns `[metrics] per_account` on. Requests, tokens and credits are counted
from settlements as they are applied (`settled`, the settler's observer), so they agree with what the usage API
reports.

Counters whose labels come from a fixed vocabulary (refusal statuses, webhook outcomes, and per configured model
and API the token kinds and credits, per model the clamps) exist at 0 from start-up, so `rate()` and `increase()`
see the first event and an alert has its series before anything happened.

Under `gateway serve --workers N` (N > 1) each worker's values live in files of a directory the master made
(prometheus-client's multiprocess mode, chosen when it is imported with PROMETHEUS_MULTIPROC_DIR set), and a
scrape of any worker sums every worker's files, the dead ones' counters included.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.billing import Settlement, SettleOutcome
from gateway.billing.pricing import MICROS_PER_CREDIT
from gateway.billing.record import API_NAMES
from gateway.billing.scripts import SettleMode

# Upstream count minus gateway count, in tokens: symmetric, finer near zero where agreement should sit.
DRIFT_BUCKETS = (-1000, -100, -50, -20, -10, -5, -2, -1, 0, 1, 2, 5, 10, 20, 50, 100, 1000, float("inf"))
UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120, 300, float("inf"))
# The gateway's own time per request: it should sit well under a millisecond.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, float("inf"))
M = TypeVar("M", Counter, Histogram)
ABANDONED_STATUS = "0"  # what the sweeper records for a request whose gateway died
# What the chat path answers before a hold: a bad body or field, or a prompt past the model's context (400), key
# (401), too few credits (402), an unknown model (404), a stalled (408), too large (413) or compressed (415)
# body, an upstream without its provider key (502), Redis unreachable (503).
REFUSAL_STATUSES = ("400", "401", "402", "404", "408", "413", "415", "502", "503")
WEBHOOK_OUTCOMES = ("delivered", "failed", "failed_for_good", "skipped")
TOKEN_KINDS = ("prompt", "completion", "cached", "reasoning", "cache_write")
CLAMPED_KINDS = ("prompt", "completion", "tool_calls")


class Metrics:
    """The gateway's collectors. One per app, so tests and several apps in a process never share counts."""

    def __init__(
        self, *, per_account: bool = False, multiprocess_dir: Path | None = None, models: Iterable[str] = ()
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[object, ...], Counter | Histogram] = {}
        # What /metrics reads: this registry, or with workers every worker's files in `multiprocess_dir`.
        self.scrape_registry = self.registry
        self.multiprocess = multiprocess_dir is not None
        if multiprocess_dir is not None:
            self.scrape_registry = CollectorRegistry()
            MultiProcessCollector(self.scrape_registry, path=str(multiprocess_dir))  # type: ignore[no-untyped-call]
        self.per_account = per_account
        account = ["account"] if per_account else []
        self.requests = self._counter(
            "gateway_requests",
            "Requests settled, by model, API and the HTTP status recorded.",
            ["model", "api", "status"] + account,
        )
        self.tokens = self._counter(
            "gateway_tokens",
            "Tokens billed, by model, API and kind (prompt, completion, cached, reasoning, cache_write).",
            ["model", "api", "kind"] + account,
        )
        self.credits = self._counter(
            "gateway_credits_charged", "Credits charged, in credits, by model and API.", ["model", "api"] + account
        )
        self.refused = self._counter(
            "gateway_requests_refused", "Requests refused before a hold, by status.", ["status"]
        )
        self.upstream_seconds = Histogram(
            "gateway_upstream_seconds",
            "Upstream time of a forwarded request: from sending it to the last byte of the answer.",
            ["model"],
            buckets=UPSTREAM_BUCKETS,
            registry=self.registry,
        )
        self.overhead_seconds = Histogram(
            "gateway_overhead_seconds",
            "Time a forwarded request spent in the gateway itself: its whole time less the upstream's.",
            buckets=OVERHEAD_BUCKETS,
            registry=self.registry,
        )
        self.streams_in_flight = Gauge(
            "gateway_streams_in_flight",
            "Streamed answers being relayed now.",
            registry=self.registry,
            multiprocess_mode="livesum",  # summed over the workers alive
        )
        self.redis_errors = self._counter(
            "gateway_redis_errors", "Redis calls that failed or timed out (the call's effect unknown).", []
        )
        self.webhook_deliveries = self._counter(
            "gateway_webhook_deliveries", "Webhook delivery attempts, by outcome.", ["outcome"]
        )
        self.clamped = self._counter(
            "gateway_usage_clamped",
            "Requests whose upstream-reported token count (or built-in tool calls) was beyond belief and was billed "
            "at its bound instead.",
            ["model", "kind"],
        )
        self.token_drift = Histogram(
            "gateway_token_count_drift_tokens",
            "Upstream-reported minus gateway-counted tokens per request (reasoning tokens excluded), "
            "for requests whose upstream reported usage.",
            ["model", "kind"],
            buckets=DRIFT_BUCKETS,
            registry=self.registry,
        )
        self._start_at_zero(models)

    def _start_at_zero(self, models: Iterable[str]) -> None:
        """Create every series of a fixed vocabulary at 0. Under workers each child writes its 0 to the
        worker's file, which the scrape sums like any other value."""
        for status in REFUSAL_STATUSES:
            self._child(self.refused, status)
        for outcome in WEBHOOK_OUTCOMES:
            self._child(self.webhook_deliveries, outcome)
        for model in models:
            for kind in CLAMPED_KINDS:
                self._child(self.clamped, model, kind)
            if self.per_account:  # the account is not a known vocabulary: those series come with traffic
                continue
            for api in API_NAMES:
                for kind in TOKEN_KINDS:
                    self._child(self.tokens, model, api, kind)
                self._child(self.credits, model, api)

    def _counter(self, name: str, documentation: str, labels: list[str]) -> Counter:
        return Counter(name, documentation, labels, registry=self.registry)

    def settled(self, settlement: Settlement, outcome: SettleOutcome) -> None:
        """A settlement was applied (now, or replayed from the spool): count its request, tokens and credits."""
        if settlement.mode is SettleMode.RELEASE or not outcome.settled:
            return  # a release records nothing, and a repeat was counted the first time
        record = settlement.record
        status = str(record.get("status", ""))
        model, api = settlement.model, settlement.api
        account = (settlement.account_id,) if self.per_account else ()
        self._child(self.requests, model, api, "abandoned" if status == ABANDONED_STATUS else status, *account).inc()
        counts = (
            settlement.prompt_tokens,
            settlement.completion_tokens,
            int(record.get("cached_tokens", 0)),
            int(record.get("reasoning_tokens", 0)),
            int(record.get("cache_write_tokens", 0)),
        )
        # A model not configured at start-up (a spooled settlement replayed after a config change) or an
        # account's series exists from its first request on, every kind at once; adding 0 would change nothing
        # but, under workers, costs a write to a shared file.
        for kind, count in zip(TOKEN_KINDS, counts, strict=True):
            child = self._child(self.tokens, model, api, kind, *account)
            if count:
                child.inc(count)
        credits = self._child(self.credits, model, api, *account)
        if outcome.charged_micros:
            credits.inc(outcome.charged_micros / MICROS_PER_CREDIT)

    def observe_upstream(self, model: str, seconds: float) -> None:
        self._child(self.upstream_seconds, model).observe(seconds)

    def _child(self, metric: M, *labels: str) -> M:
        """`counter.labels(*labels)`, looked up once per label set: prometheus-client's own lookup costs more
        per request than everything else the metrics do."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child  # type: ignore[return-value]

    def redis_error(self) -> None:
        self.redis_errors.inc()

    def observe_clamped(self, model: str, kinds: tuple[str, ...]) -> None:
        for kind in kinds:
            self._child(self.clamped, model, kind).inc()

    def observe_drift(self, model: str, *, prompt: int, completion: int) -> None:
        self._child(self.token_drift, model, "prompt").observe(prompt)
        self._child(self.token_drift, model, "completion").observe(completion)

    async def handle_scrape(self, request: web.Request) -> web.Response:
        """GET /metrics: this app's registry (or every worker's values) in Prometheus' text format."""
        body = generate_latest(self.scrape_registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


METRICS = web.AppKey("metrics", Metrics)
