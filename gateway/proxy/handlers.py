"""/v1 handlers: authenticate -> hold credits -> forward -> relay and count -> bill.

Every chat request takes two Redis round trips on its happy path: the reserve script (which also
authenticates the API key) and the settle script. Error paths may take one more to tell 401 from 400/404.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from aiohttp import web

from gateway.admin.accounts import ParsedApiKey
from gateway.admin.auth import authenticate, bearer_api_key, credits_header
from gateway.app_state import ACCOUNTS, CLOCK, LEDGER, SETTINGS, TOKEN_COUNTER
from gateway.config import ModelConfig
from gateway.errors import GatewayError, ModelNotFound, PayloadTooLarge, json_response
from gateway.proxy.chat_request import ChatRequest, parse_chat_request
from gateway.proxy.exchange import CLIENT_CLOSED, ChatExchange
from gateway.proxy.metering import hold_credits


async def read_body(request: web.Request) -> bytes:
    limit = request.app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"Request body is {request.content_length} bytes; the limit is {limit}.")
    return await request.read()  # the app's client_max_size enforces the limit on chunked bodies


async def post_chat_completions(request: web.Request) -> web.StreamResponse:
    started = time.monotonic()
    request_id = f"req_{uuid.uuid4().hex}"
    try:
        return await _relay_chat_completion(request, request_id, started)
    except GatewayError as error:
        error.headers.setdefault("x-request-id", request_id)
        raise


async def _relay_chat_completion(request: web.Request, request_id: str, started: float) -> web.StreamResponse:
    app = request.app
    settings = app[SETTINGS]
    api_key = bearer_api_key(request.headers)
    chat, model = await _checked_request(request, api_key)
    prompt_tokens = app[TOKEN_COUNTER].count_prompt_tokens(chat.model, chat.body)
    reservation = await hold_credits(app[LEDGER], settings, model, api_key, request_id, chat, prompt_tokens)
    exchange = ChatExchange(request, chat, model, reservation, prompt_tokens, started)
    try:
        return await exchange.run()
    except GatewayError as error:
        # An upstream failure after the hold: release it (free of charge) and still report the balance.
        balance = await exchange.bill_if_unbilled(error.status)
        if balance is not None:
            error.headers.update(credits_header(balance))
        raise
    except asyncio.CancelledError:
        await exchange.bill_if_unbilled(CLIENT_CLOSED)
        raise
    finally:
        await exchange.bill_if_unbilled(500)


async def _checked_request(request: web.Request, api_key: ParsedApiKey) -> tuple[ChatRequest, ModelConfig]:
    """The parsed body and its model. On 400/404 the key is checked first, so a bad key always gets 401."""
    try:
        raw = await read_body(request)
        chat = parse_chat_request(raw)
        model = request.app[SETTINGS].models.get(chat.model)
        if model is None:
            raise ModelNotFound(f"The model '{chat.model}' does not exist or is not served here.", param="model")
    except GatewayError as error:
        tenant = await authenticate(request.app[ACCOUNTS], api_key)
        error.headers.update(credits_header(tenant.balance_micros))
        raise
    return chat, model


async def get_models(request: web.Request) -> web.Response:
    tenant = await authenticate(request.app[ACCOUNTS], bearer_api_key(request.headers))
    created = int(request.app[CLOCK]())
    data = [_model_object(name, created) for name in request.app[SETTINGS].models]
    return json_response({"object": "list", "data": data}, headers=credits_header(tenant.balance_micros))


async def get_model(request: web.Request) -> web.Response:
    tenant = await authenticate(request.app[ACCOUNTS], bearer_api_key(request.headers))
    name = request.match_info["model"]
    if name not in request.app[SETTINGS].models:
        raise ModelNotFound(f"The model '{name}' does not exist or is not served here.", param="model")
    created = int(request.app[CLOCK]())
    return json_response(_model_object(name, created), headers=credits_header(tenant.balance_micros))


def _model_object(name: str, created: int) -> dict[str, object]:
    return {"id": name, "object": "model", "created": created, "owned_by": "gateway"}


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", post_chat_completions)
    app.router.add_get("/v1/models", get_models)
    app.router.add_get("/v1/models/{model:.+}", get_model)
