"""/v1 handlers: authenticate -> hold credits -> forward -> relay and count -> bill.

Every chat request takes two Redis round trips on its happy path: the reserve script (which also
authenticates the API key) and the settle script. A body larger than INLINE_COUNT_BYTES (or of unknown size)
is only read once its key has been checked, one round trip more, and is counted on a thread: nothing heavy
happens for a key that is not one. Error paths may take one more round trip to tell 401 from 400/404.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from gateway.admin.accounts import ParsedApiKey, Tenant
from gateway.admin.auth import CREDITS_HEADER, authenticate, bearer_api_key, credits_header
from gateway.app_state import ACCOUNTS, CLOCK, LEDGER, METRICS, OUTBOX_WAKEUP, SETTINGS, SETTLER, TOKEN_COUNTER
from gateway.billing.pricing import credits_number
from gateway.billing.settler import REDIS_UNAVAILABLE
from gateway.config import ModelConfig, Settings
from gateway.errors import (
    GatewayError,
    ModelNotFound,
    PayloadTooLarge,
    ProviderKeyMissing,
    RequestTimeout,
    ServiceUnavailable,
    UnsupportedMediaType,
    json_response,
)
from gateway.insights.fingerprints import Fingerprint, take_fingerprint
from gateway.proxy.chat_request import ChatRequest, parse_chat_request
from gateway.proxy.exchange import ChatExchange
from gateway.proxy.metering import CREDITS_USED_HEADER, check_context, hold_credits
from gateway.proxy.preview import price_preview
from gateway.proxy.priced_fields import priced_model
from gateway.request_ids import request_id_of
from gateway.tokens import TokenCounter

# Up to this size a body is read and counted before its key is checked (by the reserve script): counting it
# takes a few milliseconds at worst. Beyond it, the key is checked first and counting runs on a thread.
INLINE_COUNT_BYTES = 16 * 1024

log = logging.getLogger(__name__)


async def read_body(request: web.Request, settings: Settings) -> bytes:
    """The raw body: 415 if compressed (never inflated), 413 if too large, 408 if it stalls."""
    if request.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
        raise UnsupportedMediaType()
    limit = settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"Request body is {request.content_length} bytes; the limit is {limit}.")
    try:
        async with asyncio.timeout(settings.body_timeout):
            return await request.read()  # the app's client_max_size enforces the limit on chunked bodies
    except TimeoutError:
        raise RequestTimeout() from None
    except web.HTTPRequestEntityTooLarge:  # a chunked body past the limit: counted as a refusal like any other
        raise PayloadTooLarge(f"Request body is over the limit of {limit} bytes.") from None


async def post_chat_completions(request: web.Request) -> web.StreamResponse:
    started = time.monotonic()
    try:
        return await _relay_chat_completion(request, request_id_of(request), started)
    except GatewayError as error:
        if CREDITS_HEADER in error.headers:  # refused before a hold: nothing was charged
            error.headers.setdefault(CREDITS_USED_HEADER, "0")
        raise


async def _relay_chat_completion(request: web.Request, request_id: str, started: float) -> web.StreamResponse:
    app = request.app
    settings = app[SETTINGS]
    try:
        api_key = bearer_api_key(request.headers)
        tenant = None
        if request.content_length is None or request.content_length > INLINE_COUNT_BYTES:
            tenant = await authenticate(app[ACCOUNTS], api_key)
        chat, model, size = await _checked_request(request, api_key, tenant)
        prompt_tokens, fingerprint = await _measure(app[TOKEN_COUNTER], chat, size)
        await _check_forwardable(request, api_key, tenant, chat, model, prompt_tokens)
        reservation = await hold_credits(
            app[LEDGER],
            app[SETTLER],
            settings,
            model,
            api_key,
            request_id,
            chat,
            prompt_tokens,
            app[OUTBOX_WAKEUP],
            request_hash=fingerprint.request_hash,
        )
    except REDIS_UNAVAILABLE as exc:  # the key check of a large body: Redis is away
        app[METRICS].redis_error()
        app[METRICS].refused.labels("503").inc()
        raise ServiceUnavailable() from exc
    except GatewayError as error:
        app[METRICS].refused.labels(str(error.status)).inc()  # refused before a hold: nothing to settle
        raise
    return await ChatExchange(request, chat, model, reservation, prompt_tokens, started, fingerprint).run()


async def _checked_request(
    request: web.Request, api_key: ParsedApiKey, tenant: Tenant | None
) -> tuple[ChatRequest, ModelConfig, int]:
    """The parsed body, its model and its size. On 4xx the key is checked first, so a bad key always gets 401."""
    settings = request.app[SETTINGS]
    try:
        raw = await read_body(request, settings)
        chat = parse_chat_request(raw)
        model = priced_model(chat, settings)
    except GatewayError as error:
        tenant = tenant or await authenticate(request.app[ACCOUNTS], api_key)
        error.headers.update(credits_header(tenant.balance_micros))
        raise
    return chat, model, len(raw)


async def _check_forwardable(
    request: web.Request,
    api_key: ParsedApiKey,
    tenant: Tenant | None,
    chat: ChatRequest,
    model: ModelConfig,
    prompt_tokens: int,
) -> None:
    """Refuse before any hold what the upstream would: a prompt past the model's context (400), or an upstream
    whose provider key is missing (502). The key is checked first, so a bad key always gets 401."""
    try:
        check_context(chat, model, prompt_tokens)
        upstream = request.app[SETTINGS].upstreams[model.upstream]
        if upstream.key_missing:
            log.error(
                "model %s: upstream %r has no provider key (%s is not set)",
                model.name,
                upstream.name,
                upstream.api_key_env,
            )
            raise ProviderKeyMissing()
    except GatewayError as error:
        tenant = tenant or await authenticate(request.app[ACCOUNTS], api_key)
        error.headers.update(credits_header(tenant.balance_micros))
        raise


async def _count_prompt_tokens(counter: TokenCounter, chat: ChatRequest, size: int) -> int:
    """Small prompts are counted inline; large ones on a thread, so other requests are not held up
    (tiktoken releases the GIL while it encodes)."""
    if size <= INLINE_COUNT_BYTES:
        return counter.count_prompt_tokens(chat.model, chat.body)
    return await asyncio.to_thread(counter.count_prompt_tokens, chat.model, chat.body)


async def _measure(counter: TokenCounter, chat: ChatRequest, size: int) -> tuple[int, Fingerprint]:
    """Prompt tokens and the request's fingerprint (usage insights): inline for a small body, else both on one
    thread, as counting alone would be."""
    if size <= INLINE_COUNT_BYTES:
        return counter.count_prompt_tokens(chat.model, chat.body), take_fingerprint(chat.body)

    def measure() -> tuple[int, Fingerprint]:
        return counter.count_prompt_tokens(chat.model, chat.body), take_fingerprint(chat.body)

    return await asyncio.to_thread(measure)


async def post_count_tokens(request: web.Request) -> web.Response:
    """POST /v1/chat/completions/count_tokens: what the same body would be counted and held, never forwarded
    or charged. Refused exactly as the proxy would refuse it (401, 400, 404, 413, 415)."""
    api_key = bearer_api_key(request.headers)
    tenant = await authenticate(request.app[ACCOUNTS], api_key)  # first: this path is not the hot one
    chat, model, size = await _checked_request(request, api_key, tenant)
    prompt_tokens = await _count_prompt_tokens(request.app[TOKEN_COUNTER], chat, size)
    try:
        check_context(chat, model, prompt_tokens)
    except GatewayError as error:
        error.headers.update(credits_header(tenant.balance_micros))
        raise
    preview = price_preview(chat, model, request.app[SETTINGS], prompt_tokens)
    return json_response(preview, headers=credits_header(tenant.balance_micros))


async def get_models(request: web.Request) -> web.Response:
    tenant = await authenticate(request.app[ACCOUNTS], bearer_api_key(request.headers))
    created = int(request.app[CLOCK]())
    models = request.app[SETTINGS].models
    data = [_model_object(model, created) for model in models.values()]
    return json_response({"object": "list", "data": data}, headers=credits_header(tenant.balance_micros))


async def get_model(request: web.Request) -> web.Response:
    tenant = await authenticate(request.app[ACCOUNTS], bearer_api_key(request.headers))
    name = request.match_info["model"]
    model = request.app[SETTINGS].models.get(name)
    if model is None:
        raise ModelNotFound(f"The model '{name}' does not exist or is not served here.", param="model")
    created = int(request.app[CLOCK]())
    return json_response(_model_object(model, created), headers=credits_header(tenant.balance_micros))


def _model_object(model: ModelConfig, created: int) -> dict[str, object]:
    """OpenAI's model object, and its prices in credits per million tokens (cached input: the price it is
    billed at, which is the input price unless the model sets one)."""
    price = model.price
    cached = price.cached_input_micros_per_million
    return {
        "id": model.name,
        "object": "model",
        "created": created,
        "owned_by": "gateway",
        "pricing": {
            "input_credits_per_million": credits_number(price.input_micros_per_million),
            "output_credits_per_million": credits_number(price.output_micros_per_million),
            "cached_input_credits_per_million": credits_number(
                price.input_micros_per_million if cached is None else cached
            ),
        },
    }


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", post_chat_completions)
    app.router.add_post("/v1/chat/completions/count_tokens", post_count_tokens)
    app.router.add_get("/v1/models", get_models)
    app.router.add_get("/v1/models/{model:.+}", get_model)
