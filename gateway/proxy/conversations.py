"""Conversations the provider keeps (OpenAI's Conversations API, `client.conversations`), owned per account.

`POST /v1/conversations` creates one at the upstream that keeps them (`Settings.conversations_upstream`: the one
that sets `conversations = true`, else the first of OpenAI's family in the file; the request names no model to
pick one by) and records it as the caller's account's, with the gateway's count of its items
(proxy/conversation_store.py). `GET`, `POST` (its metadata) and `DELETE /v1/conversations/{id}`, `POST` and
`GET .../items`, and `GET` and `DELETE .../items/{item_id}` are forwarded to the upstream that keeps it, for its
owner only: any other id, another account's or one that never existed, is the same 404 `not_found`, given before
the upstream is asked. Items added count into its context; a deleted conversation is forgotten. Nothing here is
held or billed: the provider charges for a conversation only through the responses made in it (`POST
/v1/responses` with `conversation`, which holds for its context).

Bodies are read as the metered routes read theirs (415, 413 past `server.max_body_bytes`, 408 when stalled) and
checked before they are forwarded: at most MAX_ITEMS items per call, each checked as a Responses input item (a
conversation has no model: they are counted with `tokens.default_encoding`), and `metadata` of at most
MAX_METADATA_PAIRS string pairs. An upstream error passes with its status, scrubbed of anything like a credential.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import orjson
from aiohttp import web

from gateway.admin.accounts import Tenant
from gateway.admin.auth import authenticate, bearer_api_key
from gateway.app_state import ACCOUNTS, CONVERSATIONS, SETTINGS, TOKEN_COUNTER, UPSTREAM_SESSION
from gateway.bill_headers import balance_headers
from gateway.bodies import read_body
from gateway.config import UpstreamConfig
from gateway.errors import GatewayError, InvalidRequest, NotFound, ProviderKeyMissing, UpstreamError
from gateway.proxy.answers import is_answer_id
from gateway.proxy.apis import JSON
from gateway.proxy.apis.chat import decode_body
from gateway.proxy.apis.response_items import chat_equivalent, check_input_items
from gateway.proxy.conversation_store import StoredConversation
from gateway.proxy.upstream import call_upstream, relayed_headers, unmetered_answer
from gateway.tokens import TokenCounter

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Checks a request body; returns the tokens its items add to the conversation's context.
BodyCheck = Callable[[JSON, TokenCounter], int]

MAX_ITEMS = 20  # per create or items call, as OpenAI takes them
MAX_METADATA_PAIRS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512  # OpenAI's metadata limits
ITEMS_MODEL = ""  # no model: the counter's default encoding


@dataclass(frozen=True)
class Route:
    """One route on a conversation: the method and path forwarded (`suffix` after `/conversations/{id}`), the body
    it takes (`check`, None: none), and whether its success deletes the conversation."""

    method: str
    suffix: str = ""
    check: BodyCheck | None = None
    forgets: bool = False


def caller_route(action: Callable[[web.Request, Tenant, dict[str, str]], Awaitable[web.Response]]) -> Handler:
    """A handler that authenticates the key first, then runs `action`; its answer, refusal or not, carries the
    balance."""

    async def handle(request: web.Request) -> web.StreamResponse:
        tenant = await authenticate(request.app[ACCOUNTS], bearer_api_key(request.headers))
        headers = balance_headers(tenant.balance_micros)
        try:
            return await action(request, tenant, headers)
        except GatewayError as error:
            error.headers.update(headers)
            raise

    return handle


async def create_conversation(request: web.Request, tenant: Tenant, headers: dict[str, str]) -> web.Response:
    app = request.app
    upstream = app[SETTINGS].conversations_upstream
    if upstream is None:
        raise NotFound("Conversations are not served by this gateway: no upstream speaks OpenAI's API.")
    body, tokens = await _checked_body(request, _check_create)
    status, answer, relayed = await _forward(request, upstream, "POST", "/conversations", body)
    if status < 300:
        store = app[CONVERSATIONS]
        created = StoredConversation(upstream.name, tokens, store.now_ms())
        await store.remember(tenant.account_id, _created_id(answer), created)
    return _answer(status, answer, {**relayed, **headers})


def conversation_handler(route: Route) -> Handler:
    """The handler of `route` on `/v1/conversations/{id}`, for the caller's own conversations only."""

    async def action(request: web.Request, tenant: Tenant, headers: dict[str, str]) -> web.Response:
        store = request.app[CONVERSATIONS]
        conversation_id = request.match_info["id"]
        stored = await store.find(tenant.account_id, conversation_id)
        upstream = request.app[SETTINGS].upstreams.get(stored.upstream) if stored is not None else None
        if upstream is None:
            raise NotFound(f"Conversation with id '{conversation_id}' not found.", param="conversation_id")
        item_id = request.match_info.get("item_id")
        if item_id is not None and not is_answer_id(item_id):
            raise NotFound(f"Item with id '{item_id}' not found.", param="item_id")
        body, tokens = (None, 0) if route.check is None else await _checked_body(request, route.check)
        path = f"/conversations/{conversation_id}{route.suffix.format(item_id=item_id)}"
        status, answer, relayed = await _forward(request, upstream, route.method, path, body)
        if status < 300 and route.forgets:
            await store.forget(tenant.account_id, conversation_id)
        elif status < 300 and tokens:
            await store.add_tokens(tenant.account_id, conversation_id, tokens)
        return _answer(status, answer, {**relayed, **headers})

    return caller_route(action)


async def _checked_body(request: web.Request, check: BodyCheck) -> tuple[bytes, int]:
    """The body to forward (as decoded: no second reading of duplicate keys upstream) and the tokens it adds."""
    raw = await read_body(request, request.app[SETTINGS])
    body = decode_body(raw) if raw.strip() else {}
    tokens = await asyncio.to_thread(check, body, request.app[TOKEN_COUNTER])  # items may be large
    return orjson.dumps(body), tokens


def _check_create(body: JSON, counter: TokenCounter) -> int:
    _check_metadata(body)
    items = body.get("items")
    return _checked_items(body, counter, 0) if items is not None else 0


def _check_items(body: JSON, counter: TokenCounter) -> int:
    return _checked_items(body, counter, 1)


def _check_update(body: JSON, counter: TokenCounter) -> int:
    _check_metadata(body)
    return 0


def _checked_items(body: JSON, counter: TokenCounter, least: int) -> int:
    """Check `items` (`least` to MAX_ITEMS input items); their tokens, counted as Responses input."""
    items = body.get("items")
    if not isinstance(items, list) or not least <= len(items) <= MAX_ITEMS:
        raise InvalidRequest(f"'items' must be an array of {least} to {MAX_ITEMS} input items.", param="items")
    check_input_items(items, "items")
    return counter.count_prompt_tokens(ITEMS_MODEL, chat_equivalent({"input": items})) if items else 0


def _check_metadata(body: Mapping[str, object]) -> None:
    metadata = body.get("metadata")
    if metadata is None:
        return
    if (
        not isinstance(metadata, dict)
        or len(metadata) > MAX_METADATA_PAIRS
        or not all(isinstance(value, str) and len(value) <= MAX_METADATA_VALUE for value in metadata.values())
        or any(len(key) > MAX_METADATA_KEY for key in metadata)
    ):
        message = (
            f"'metadata' must be an object of at most {MAX_METADATA_PAIRS} strings, keys of at most "
            f"{MAX_METADATA_KEY} characters and values of at most {MAX_METADATA_VALUE}."
        )
        raise InvalidRequest(message, param="metadata")


async def _forward(
    request: web.Request, upstream: UpstreamConfig, method: str, path: str, body: bytes | None
) -> tuple[int, bytes, dict[str, str]]:
    """The upstream's status, body (an error's scrubbed) and relayed headers."""
    if upstream.key_missing:
        log.error("upstream %r has no provider key (%s is not set)", upstream.name, upstream.api_key_env)
        raise ProviderKeyMissing()
    session = request.app[UPSTREAM_SESSION]
    response = await call_upstream(session, upstream, method, path, list(request.query.items()), body)
    async with response:
        answer = await unmetered_answer(response, upstream, request.app[SETTINGS].limits.max_upstream_response_bytes)
        return response.status, answer, relayed_headers(response)


def _created_id(answer: bytes) -> str:
    """The id of the conversation the upstream created; 502 without one."""
    try:
        created = orjson.loads(answer)
    except orjson.JSONDecodeError:
        created = None
    conversation_id = created.get("id") if isinstance(created, dict) else None
    if not isinstance(conversation_id, str) or not is_answer_id(conversation_id):
        raise UpstreamError("The upstream created a conversation without an id the gateway can keep.")
    return conversation_id


def _answer(status: int, body: bytes, headers: dict[str, str]) -> web.Response:
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


def add_conversation_routes(app: web.Application) -> None:
    app.router.add_post("/v1/conversations", caller_route(create_conversation))
    app.router.add_get("/v1/conversations/{id}", conversation_handler(Route("GET")))
    app.router.add_post("/v1/conversations/{id}", conversation_handler(Route("POST", check=_check_update)))
    app.router.add_delete("/v1/conversations/{id}", conversation_handler(Route("DELETE", forgets=True)))
    app.router.add_post("/v1/conversations/{id}/items", conversation_handler(Route("POST", "/items", _check_items)))
    app.router.add_get("/v1/conversations/{id}/items", conversation_handler(Route("GET", "/items")))
    item = "/items/{item_id}"
    app.router.add_get(f"/v1/conversations/{{id}}{item}", conversation_handler(Route("GET", item)))
    app.router.add_delete(f"/v1/conversations/{{id}}{item}", conversation_handler(Route("DELETE", item)))
