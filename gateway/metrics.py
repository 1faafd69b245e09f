"""Prometheus metrics in an app-owned registry, served at /metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

# Upstream count minus gateway count, in tokens: symmetric, finer near zero where agreement should sit.
DRIFT_BUCKETS = (-1000, -100, -50, -20, -10, -5, -2, -1, 0, 1, 2, 5, 10, 20, 50, 100, 1000, float("inf"))


class Metrics:
    """The gateway's collectors. One per app, so tests and several apps in a process never share counts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.token_drift = Histogram(
            "gateway_token_count_drift_tokens",
            "Upstream-reported minus gateway-counted tokens per request (reasoning tokens excluded), "
            "for requests whose upstream reported usage.",
            ["model", "kind"],
            buckets=DRIFT_BUCKETS,
            registry=self.registry,
        )
        self.clamped = Counter(
            "gateway_usage_clamped",
            "Requests whose upstream-reported token count was beyond belief and was billed at its bound instead.",
            ["model", "kind"],
            registry=self.registry,
        )

    def observe_clamped(self, model: str, kinds: tuple[str, ...]) -> None:
        for kind in kinds:
            self.clamped.labels(model, kind).inc()

    def observe_drift(self, model: str, *, prompt: int, completion: int) -> None:
        self.token_drift.labels(model, "prompt").observe(prompt)
        self.token_drift.labels(model, "completion").observe(completion)

    async def handle_scrape(self, request: web.Request) -> web.Response:
        """GET /metrics: this app's registry in Prometheus' text format."""
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
