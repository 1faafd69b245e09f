"""/v1 handlers: authenticate -> reserve -> forward -> settle.

Every chat request takes two Redis round trips on its happy path: the reserve script (which also
authenticates the key) and the settle script. Error paths may take one more to tell 401 from 400/404.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from aiohttp import web

from gateway.accounts import ParsedKey, parse_key
from gateway.billing.pricing import format_credits
from gateway.chat_request import ChatRequest, parse_chat_request
from gateway.config import ModelConfig
from gateway.errors import GatewayError, ModelNotFound, PayloadTooLarge, json_response
from gateway.exchange import CLIENT_CLOSED, ChatExchange
from gateway.keys import accounts_key, clock_key, ledger_key, settings_key, token_counter_key
from gateway.metering import CREDITS_HEADER, invalid_key, reserve


def bearer_key(request: web.Request) -> ParsedKey:
    """The gateway key from `Authorization: Bearer ...`; 401 when absent or not one of ours."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise invalid_key() if header else _missing_key()
    parsed = parse_key(token.strip())
    if parsed is None:
        raise invalid_key()
    return parsed


def _missing_key() -> GatewayError:
    error = invalid_key()
    error.message = "You didn't provide an API key. Send it as `Authorization: Bearer YOUR_KEY`."
    error.code = "missing_api_key"
    return error


async def authenticated_balance(request: web.Request, key: ParsedKey) -> int:
    """Check the key (401 if unknown or revoked) and return its account's balance in micro-credits."""
    found = await request.app[accounts_key].authenticate(key)
    if found is None:
        raise invalid_key()
    return found[2]


async def read_body(request: web.Request) -> bytes:
    limit = request.app[settings_key].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"Request body is {request.content_length} bytes; the limit is {limit}.")
    return await request.read()  # the app's client_max_size enforces the limit on chunked bodies


async def chat_completions(request: web.Request) -> web.StreamResponse:
    started = time.monotonic()
    request_id = f"req_{uuid.uuid4().hex}"
    try:
        return await _chat_completions(request, request_id, started)
    except GatewayError as error:
        error.headers.setdefault("x-request-id", request_id)
        raise


async def _chat_completions(request: web.Request, request_id: str, started: float) -> web.StreamResponse:
    app = request.app
    settings = app[settings_key]
    key = bearer_key(request)
    chat, model = await _checked_request(request, key)
    prompt_tokens = app[token_counter_key].count_prompt_tokens(chat.model, chat.body)
    reservation = await reserve(app[ledger_key], settings, model, key, request_id, chat, prompt_tokens)
    exchange = ChatExchange(request, chat, model, reservation, prompt_tokens, started)
    try:
        return await exchange.run()
    except GatewayError as error:
        # An upstream failure after the hold: release it (free of charge) and still report the balance.
        balance = await exchange.settle_unsettled(error.status)
        if balance is not None:
            error.headers[CREDITS_HEADER] = format_credits(balance)
        raise
    except asyncio.CancelledError:
        await exchange.settle_unsettled(CLIENT_CLOSED)
        raise
    finally:
        await exchange.settle_unsettled(500)


async def _checked_request(request: web.Request, key: ParsedKey) -> tuple[ChatRequest, ModelConfig]:
    """The parsed body and its model. On 400/404 the key is checked first, so a bad key always gets 401."""
    try:
        raw = await read_body(request)
        chat = parse_chat_request(raw)
        model = request.app[settings_key].models.get(chat.model)
        if model is None:
            raise ModelNotFound(f"The model '{chat.model}' does not exist or is not served here.", param="model")
    except GatewayError as error:
        balance = await authenticated_balance(request, key)
        error.headers[CREDITS_HEADER] = format_credits(balance)
        raise
    return chat, model


async def list_models(request: web.Request) -> web.Response:
    balance = await authenticated_balance(request, bearer_key(request))
    created = int(request.app[clock_key]())
    models = request.app[settings_key].models
    data = [_model_object(name, created) for name in models]
    return json_response({"object": "list", "data": data}, headers={CREDITS_HEADER: format_credits(balance)})


async def get_model(request: web.Request) -> web.Response:
    balance = await authenticated_balance(request, bearer_key(request))
    name = request.match_info["model"]
    if name not in request.app[settings_key].models:
        raise ModelNotFound(f"The model '{name}' does not exist or is not served here.", param="model")
    created = int(request.app[clock_key]())
    return json_response(_model_object(name, created), headers={CREDITS_HEADER: format_credits(balance)})


def _model_object(name: str, created: int) -> dict[str, object]:
    return {"id": name, "object": "model", "created": created, "owned_by": "gateway"}


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model:.+}", get_model)
