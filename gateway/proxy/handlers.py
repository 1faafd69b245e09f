"""/v1 handlers: one metered path for every API (authenticate -> hold credits -> forward -> relay and count ->
bill), its price beforehand (`count_tokens`), and /v1/models with prices.

Every metered request takes two Redis round trips on its happy path: the reserve script (which also
authenticates the API key) and the settle script. A body larger than INLINE_COUNT_BYTES (or of unknown size)
is only read once its key has been checked, one round trip more, and is counted on a thread: nothing heavy
happens for a key that is not one. Error paths may take one more round trip to tell 401 from 400/404. A request
that continues an answer or a conversation the provider keeps (`Api.prior_context`) takes two more: its key is
checked, then the answer's or the conversation's owner and context size are read (proxy/answers.py,
proxy/conversation_store.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from gateway.admin.accounts import ParsedApiKey, Tenant
from gateway.admin.auth import authenticate, bearer_api_key
from gateway.app_state import (
    ACCOUNTS,
    ANSWERS,
    BACKGROUND_BILLS,
    BILLER,
    CLOCK,
    CONVERSATIONS,
    LEDGER,
    METRICS,
    REDIS,
    SETTINGS,
    SETTLER,
    TOKEN_COUNTER,
    UPSTREAM_SESSION,
)
from gateway.bill_headers import CREDITS_REMAINING, CREDITS_USED, balance_headers, charge_headers
from gateway.billing.pricing import credits_number
from gateway.billing.settler import REDIS_UNAVAILABLE
from gateway.bodies import read_body
from gateway.config import ModelConfig, Settings, missing_provider_keys
from gateway.errors import (
    GatewayError,
    InsufficientCredits,
    InvalidRequest,
    ModelNotFound,
    NotFound,
    ProviderKeyMissing,
    ServiceUnavailable,
    json_response,
)
from gateway.insights.fingerprints import Fingerprint
from gateway.proxy.answers import AnswerStore
from gateway.proxy.apis import Api, ApiRequest, PriorContext
from gateway.proxy.apis.chat import CHAT
from gateway.proxy.apis.completions import COMPLETIONS
from gateway.proxy.apis.embeddings import EMBEDDINGS
from gateway.proxy.apis.messages import MESSAGES
from gateway.proxy.apis.responses import RESPONSES
from gateway.proxy.background import BackgroundBills, BackgroundPoller
from gateway.proxy.conversation_store import ConversationStore, ConversationTurn
from gateway.proxy.conversations import add_conversation_routes
from gateway.proxy.exchange import Exchange
from gateway.proxy.meter import Meter
from gateway.proxy.metering import Biller, Ticket, check_context, hold_credits
from gateway.proxy.preview import price_preview
from gateway.proxy.priced_fields import priced_model
from gateway.proxy.stored import add_stored_routes
from gateway.proxy.tool_calls import bound_tool_calls
from gateway.proxy.upstream import USER_AGENT
from gateway.request_ids import request_id_of
from gateway.tokens import TokenCounter

# Up to this size a body is read and counted before its key is checked (by the reserve script): counting it
# takes a few milliseconds at worst. Beyond it, the key is checked first and counting runs on a thread.
INLINE_COUNT_BYTES = 16 * 1024

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def metered(api: Api) -> Handler:
    """The handler of one API's metered route; its errors in the API's own shape."""

    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        try:
            return await _metered_request(request, api, started)
        except GatewayError as error:
            if isinstance(error, InsufficientCredits):
                error.headers.update(charge_headers(0, error.balance_micros))
            elif CREDITS_REMAINING in error.headers:  # refused before a hold: nothing was charged
                error.headers.setdefault(CREDITS_USED, "0")
            return _error_response(api, error)

    return handle


def _error_response(api: Api, error: GatewayError) -> web.Response:
    return json_response(api.error_body(error), status=error.status, headers=error.headers)


async def _metered_request(request: web.Request, api: Api, started: float) -> web.StreamResponse:
    app = request.app
    settings = app[SETTINGS]
    try:
        api_key = bearer_api_key(request.headers)
        tenant = None
        if request.content_length is None or request.content_length > INLINE_COUNT_BYTES:
            tenant = await authenticate(app[ACCOUNTS], api_key)
        parsed, model, size = await _checked_request(request, api, api_key, tenant)
        prompt_tokens, fingerprint = await _measure(app[TOKEN_COUNTER], api, parsed, size)
        prior_tokens, tenant, turn = await _prior_context(request, api, parsed, model, api_key, tenant)
        prompt_tokens += prior_tokens
        await _check_forwardable(request, api_key, tenant, parsed, model, prompt_tokens)
        reservation = await hold_credits(
            app[LEDGER],
            app[SETTLER],
            settings,
            model,
            api_key,
            request_id_of(request),
            parsed,
            prompt_tokens,
            api=api.name,
            request_hash=fingerprint.request_hash,
            ttl_s=settings.limits.background_hold_seconds if api.finishes_later(parsed) else None,
        )
    except REDIS_UNAVAILABLE as exc:  # the key check of a large body: Redis is away
        app[METRICS].redis_error()
        app[METRICS].refused.labels("503").inc()
        raise ServiceUnavailable() from exc
    except GatewayError as error:
        app[METRICS].refused.labels(str(error.status)).inc()  # refused before a hold: nothing to settle
        raise
    ticket = Ticket(api, parsed, model, reservation, prompt_tokens, fingerprint, started)
    counter = app[TOKEN_COUNTER].completion_counter(parsed.model)
    if parsed.echo is not None:
        counter.expect_echo(*parsed.echo)
    meter = Meter(ticket, counter, app[BILLER], settings, app[ANSWERS], conversation=turn)
    return await Exchange(request, meter).run()


async def _checked_request(
    request: web.Request, api: Api, api_key: ParsedApiKey, tenant: Tenant | None, *, to_count: bool = False
) -> tuple[ApiRequest, ModelConfig, int]:
    """The parsed body (`to_count`: a count_tokens body) with its bound on built-in tool calls, its model and its
    size. On 4xx the key is checked first, so a bad key always gets 401."""
    settings = request.app[SETTINGS]
    try:
        raw = await read_body(request, settings)
        parsed = api.parse_count(raw) if to_count else api.parse(raw)
        model = priced_model(parsed, settings, api.priced_fields)
        parsed = bound_tool_calls(parsed, model, settings)
        _check_api_family(api, model, settings)
    except GatewayError as error:
        tenant = tenant or await authenticate(request.app[ACCOUNTS], api_key)
        error.headers.update(balance_headers(tenant.balance_micros))
        raise
    return parsed, model, len(raw)


def _check_api_family(api: Api, model: ModelConfig, settings: Settings) -> None:
    """404 for a model whose upstream speaks another API family than the route's (a Messages model on chat
    completions, or the other way round): the upstream could not answer it."""
    if settings.upstreams[model.upstream].api != api.upstream_api:
        raise ModelNotFound(
            f"The model '{model.name}' is not served on this API ({api.name}): its upstream speaks another one.",
            param="model",
        )


async def _prior_context(
    request: web.Request,
    api: Api,
    parsed: ApiRequest,
    model: ModelConfig,
    api_key: ParsedApiKey,
    tenant: Tenant | None,
) -> tuple[int, Tenant | None, ConversationTurn | None]:
    """The context size of the answer or conversation the request continues (0 when none), the tenant if it was
    checked, and the turn the request makes in a conversation. An answer or a conversation the key's account never
    got is 404, whoever else has it: the key is checked first, so the 404 never tells another account's id from
    none."""
    prior = api.prior_context(parsed)
    if prior is None:
        return 0, tenant, None
    tenant = tenant or await authenticate(request.app[ACCOUNTS], api_key)
    headers = balance_headers(tenant.balance_micros)
    if prior.kind == "conversation":
        turn = await _conversation_turn(request.app[CONVERSATIONS], prior, model, tenant, headers)
        return turn.context_tokens, tenant, turn
    stored = await request.app[ANSWERS].find(tenant.account_id, prior.id)
    if stored is None:
        raise NotFound(f"{prior.field} '{prior.id}' was not found.", param=prior.field, headers=headers)
    return stored.context_tokens, tenant, None


async def _conversation_turn(
    store: ConversationStore, prior: PriorContext, model: ModelConfig, tenant: Tenant, headers: dict[str, str]
) -> ConversationTurn:
    """The turn a request makes in the account's conversation; 404 when not the account's, 400 when the model's
    upstream is not the one that keeps it (which would answer 404 itself)."""
    stored = await store.find(tenant.account_id, prior.id)
    if stored is None:
        raise NotFound(f"Conversation with id '{prior.id}' not found.", param=prior.field, headers=headers)
    if stored.upstream != model.upstream:
        message = f"The model '{model.name}' cannot be used in this conversation: it is kept by another upstream."
        raise InvalidRequest(message, param="model", headers=headers)
    return ConversationTurn(store, tenant.account_id, prior.id, stored.context_tokens)


async def _check_forwardable(
    request: web.Request,
    api_key: ParsedApiKey,
    tenant: Tenant | None,
    parsed: ApiRequest,
    model: ModelConfig,
    prompt_tokens: int,
) -> None:
    """Refuse before any hold what the upstream would: a prompt past the model's context (400), or an upstream
    whose provider key is missing (502). The key is checked first, so a bad key always gets 401."""
    try:
        check_context(parsed, model, prompt_tokens)
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
        error.headers.update(balance_headers(tenant.balance_micros))
        raise


async def _count_prompt_tokens(counter: TokenCounter, api: Api, parsed: ApiRequest, size: int) -> int:
    """Small prompts are counted inline; large ones on a thread, so other requests are not held up
    (tiktoken releases the GIL while it encodes)."""
    if size <= INLINE_COUNT_BYTES:
        return api.count_prompt(counter, parsed)
    return await asyncio.to_thread(api.count_prompt, counter, parsed)


async def _measure(counter: TokenCounter, api: Api, parsed: ApiRequest, size: int) -> tuple[int, Fingerprint]:
    """Prompt tokens and the request's fingerprint (usage insights): inline for a small body, else both on one
    thread, as counting alone would be."""
    if size <= INLINE_COUNT_BYTES:
        return api.count_prompt(counter, parsed), api.fingerprint(parsed)

    def measure() -> tuple[int, Fingerprint]:
        return api.count_prompt(counter, parsed), api.fingerprint(parsed)

    return await asyncio.to_thread(measure)


def counted(api: Api) -> Handler:
    """The handler of an API's `count_tokens` route: what the same body would be counted and held, never forwarded
    or charged. Refused exactly as the proxy would refuse it (401, 400, 404, 413, 415)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await _counted_request(request, api)
        except REDIS_UNAVAILABLE:  # the key check: Redis is away
            request.app[METRICS].redis_error()
            return _error_response(api, ServiceUnavailable())
        except GatewayError as error:
            return _error_response(api, error)

    return handle


async def _counted_request(request: web.Request, api: Api) -> web.Response:
    api_key = bearer_api_key(request.headers)
    tenant = await authenticate(request.app[ACCOUNTS], api_key)  # first: this path is not the hot one
    parsed, model, size = await _checked_request(request, api, api_key, tenant, to_count=True)
    prompt_tokens = await _count_prompt_tokens(request.app[TOKEN_COUNTER], api, parsed, size)
    prompt_tokens += (await _prior_context(request, api, parsed, model, api_key, tenant))[0]
    try:
        check_context(parsed, model, prompt_tokens)
    except GatewayError as error:
        error.headers.update(balance_headers(tenant.balance_micros))
        raise
    preview = price_preview(parsed, model, request.app[SETTINGS], prompt_tokens)
    answer = api.count_answer(parsed, prompt_tokens, preview)
    return json_response(answer, headers=balance_headers(tenant.balance_micros))


async def get_models(request: web.Request) -> web.Response:
    tenant = await authenticate(request.app[ACCOUNTS], bearer_api_key(request.headers))
    created = int(request.app[CLOCK]())
    models = request.app[SETTINGS].models
    data = [_model_object(model, created) for model in models.values()]
    return json_response({"object": "list", "data": data}, headers=balance_headers(tenant.balance_micros))


async def get_model(request: web.Request) -> web.Response:
    tenant = await authenticate(request.app[ACCOUNTS], bearer_api_key(request.headers))
    name = request.match_info["model"]
    model = request.app[SETTINGS].models.get(name)
    if model is None:
        raise ModelNotFound(f"The model '{name}' does not exist or is not served here.", param="model")
    created = int(request.app[CLOCK]())
    return json_response(_model_object(model, created), headers=balance_headers(tenant.balance_micros))


def _model_object(model: ModelConfig, created: int) -> dict[str, object]:
    """OpenAI's model object, and its prices in credits per million tokens (cached input and cache writes: the
    prices they are billed at, which are the input price unless the model sets its own) and in credits per call of
    the built-in tools it prices."""
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
            "cache_write_credits_per_million": credits_number(price.cache_write_price),
            "tool_call_credits": {tool: credits_number(micros) for tool, micros in model.tool_call_micros.items()},
        },
    }


async def upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the pooled upstream session for the app's lifetime; warn about upstreams without their provider key
    (their models answer 502 provider_key_missing), so the operator hears of it at start-up, not from a tenant."""
    settings = app[SETTINGS]
    for warning in missing_provider_keys(settings):
        log.warning("%s", warning)
    timeout = aiohttp.ClientTimeout(
        total=settings.timeouts.total, sock_connect=settings.timeouts.connect, sock_read=settings.timeouts.read
    )
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=1000, ttl_dns_cache=300, enable_cleanup_closed=True)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, headers={"User-Agent": USER_AGENT}, raise_for_status=False
    ) as session:
        app[UPSTREAM_SESSION] = session
        yield


async def biller_ctx(app: web.Application) -> AsyncIterator[None]:
    """Build the biller once, after the settler (storage.redis_ctx) exists."""
    app[BILLER] = Biller(app[SETTLER], app[METRICS], app[TOKEN_COUNTER], app[SETTINGS], time.monotonic)
    yield


async def answers_ctx(app: web.Application) -> AsyncIterator[None]:
    """Build the store of relayed answer ids once, after Redis (storage.redis_ctx) is open."""
    retention_s = app[SETTINGS].redis.response_retention_days * 86400
    app[ANSWERS] = AnswerStore(app[REDIS], retention_s=retention_s, clock=app[CLOCK])
    yield


async def background_ctx(app: web.Application) -> AsyncIterator[None]:
    """Build the biller of background answers once (after the biller, the answer store and the upstream session)
    and run its poller."""
    bills = app[BACKGROUND_BILLS] = BackgroundBills(
        app[ANSWERS], app[BILLER], app[SETTINGS], app[UPSTREAM_SESSION], app[TOKEN_COUNTER]
    )
    task = asyncio.create_task(BackgroundPoller(bills).run(), name="background-answers")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def conversations_ctx(app: web.Application) -> AsyncIterator[None]:
    """Build the store of relayed conversation ids once, after Redis (storage.redis_ctx) is open."""
    retention_s = app[SETTINGS].redis.response_retention_days * 86400
    app[CONVERSATIONS] = ConversationStore(app[REDIS], retention_s=retention_s, clock=app[CLOCK])
    yield


def add_api_route(app: web.Application, path: str, api: Api, count_path: str | None = None) -> None:
    """A metered route for `api` at `path`, and its count beforehand (`Api.count_answer`) at `count_path`,
    by default `path/count_tokens`."""
    app.router.add_post(path, metered(api))
    app.router.add_post(count_path or f"{path}/count_tokens", counted(api))


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(upstream_ctx)
    app.cleanup_ctx.append(biller_ctx)
    app.cleanup_ctx.append(answers_ctx)
    app.cleanup_ctx.append(background_ctx)
    app.cleanup_ctx.append(conversations_ctx)
    add_api_route(app, "/v1/chat/completions", CHAT)
    add_api_route(app, "/v1/embeddings", EMBEDDINGS)
    add_api_route(app, "/v1/completions", COMPLETIONS)
    add_api_route(app, "/v1/messages", MESSAGES)
    add_api_route(app, "/v1/responses", RESPONSES, count_path="/v1/responses/input_tokens")
    add_stored_routes(app)
    add_conversation_routes(app)
    app.router.add_get("/v1/models", get_models)
    app.router.add_get("/v1/models/{model:.+}", get_model)
