"""The app factory: state, resources, routes and middleware. No logic lives here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from gateway import openapi, ops
from gateway.admin import handlers as admin_handlers
from gateway.app_state import CLOCK, METRICS, OUTBOX_WAKEUP, SETTINGS, TOKEN_COUNTER
from gateway.config import Settings
from gateway.dashboard import handlers as dashboard_handlers
from gateway.errors import error_middleware, redact_malformed_request_logs
from gateway.insights import handlers as insights_handlers
from gateway.metrics import Metrics
from gateway.proxy import handlers as proxy_handlers
from gateway.request_ids import stamp_request_id
from gateway.storage import redis_ctx
from gateway.tokens import TokenCounter, claude
from gateway.tokens.encodings import get_encoding
from gateway.usage import handlers as usage_handlers
from gateway.webhooks import handlers as webhook_handlers


def create_app(
    settings: Settings, *, clock: Callable[[], float] = time.time, metrics_dir: Path | None = None
) -> web.Application:
    """Build the gateway. `clock` (unix seconds) is injectable so tests can move time without sleeping;
    `metrics_dir` is the workers' shared metrics directory under `gateway serve --workers N` (gateway/serving.py)."""
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.server.max_body_bytes)
    redact_malformed_request_logs()
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[METRICS] = Metrics(
        per_account=settings.metrics.per_account, multiprocess_dir=metrics_dir, models=list(settings.models)
    )
    app[OUTBOX_WAKEUP] = asyncio.Event()
    app[TOKEN_COUNTER] = token_counter(settings)
    app.on_startup.append(warm_tokenizers)
    app.on_response_prepare.append(stamp_request_id)
    app.cleanup_ctx.append(redis_ctx)
    proxy_handlers.add_routes(app)
    admin_handlers.add_routes(app)
    usage_handlers.add_routes(app)
    insights_handlers.add_routes(app)
    webhook_handlers.add_routes(app)  # after redis_ctx: the sender stops before Redis closes
    dashboard_handlers.add_routes(app)
    openapi.add_routes(app)
    ops.add_routes(app)
    return app


async def warm_tokenizers(app: web.Application) -> None:
    """Load every configured model's vocabulary before serving, and the Messages estimate's when an upstream speaks
    Anthropic's API, so no request pays the ~0.3 s load."""
    counter, settings = app[TOKEN_COUNTER], app[SETTINGS]
    names = list(settings.models)
    anthropic = any(upstream.api == "anthropic" for upstream in settings.upstreams.values())

    def load() -> None:
        for name in names:
            counter.encoding_for(name)
        if anthropic:
            get_encoding(claude.ENCODING)

    await asyncio.to_thread(load)


def token_counter(settings: Settings) -> TokenCounter:
    """The counter for the configured models (also `gateway tokens count`'s, offline)."""
    return TokenCounter(
        default_encoding=settings.tokens.default_encoding,
        model_encodings=model_encodings(settings),
        remote_image_size=settings.tokens.remote_image_size,
    )


def model_encodings(settings: Settings) -> dict[str, str]:
    """Tokenizer overrides: a model's configured encoding, else the upstream model it is an alias of."""
    aliases = {name: model.upstream_model for name, model in settings.models.items() if model.upstream_model != name}
    return aliases | {name: model.encoding for name, model in settings.models.items() if model.encoding}
