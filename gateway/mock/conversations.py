"""The mock upstream's Conversations API, kept in memory (`MockConversations`): `POST /conversations`, `GET`,
`POST` (metadata) and `DELETE /conversations/{id}`, `POST` and `GET /conversations/{id}/items`, and `GET` and
`DELETE /conversations/{id}/items/{item_id}`, as OpenAI answers them.

A response made in a conversation (`conversation` on `POST /responses`, mock/responses.py) is charged its context
as input (`MockConversation.context_tokens`): the input and output tokens of the last response made in it (which
were charged everything before), plus the items added since, counted together as one request's messages with the
response's model. The response's input items and its output then join the conversation. An item deleted before a
response is charged is not charged; one deleted after stays in the context (the mock does not render it again).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from gateway.mock.options import MockOptions

MAX_ITEMS = 20  # per create or items call, as OpenAI takes them


@dataclass
class MockConversation:
    """One conversation: its items (each with an id), the context the last response left, and the items added
    since (not yet charged)."""

    id: str
    metadata: object
    items: list[dict[str, object]] = field(default_factory=list)
    charged_tokens: int = 0  # the last response's input + output tokens
    uncharged: list[dict[str, object]] = field(default_factory=list)
    created_at: int = field(default_factory=lambda: int(time.time()))

    def payload(self) -> dict[str, object]:
        return {"id": self.id, "object": "conversation", "created_at": self.created_at, "metadata": self.metadata}

    def add(self, items: list[dict[str, object]]) -> None:
        self.items += items
        self.uncharged += items

    def context_tokens(self, count_items: Callable[[list[dict[str, object]]], int]) -> int:
        """What a response made in it is charged for it: `count_items` counts the items not charged yet."""
        return self.charged_tokens + (count_items(self.uncharged) if self.uncharged else 0)

    def add_turn(self, items: list[dict[str, object]], input_tokens: int, output_tokens: int) -> None:
        """A response made in it: its input and output items join it, charged."""
        self.items += items
        self.uncharged = []
        self.charged_tokens = input_tokens + output_tokens


@dataclass
class MockConversations:
    """The mock's conversations, and the calls it answered on them (method and path)."""

    options: MockOptions
    kept: dict[str, MockConversation] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)


MOCK_CONVERSATIONS = web.AppKey("mock_conversations", MockConversations)


def add_conversations_routes(app: web.Application, options: MockOptions) -> None:
    """Serve the Conversations API under /v1 and at the root."""
    app[MOCK_CONVERSATIONS] = MockConversations(options)
    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/conversations", create_conversation)
        app.router.add_get(f"{prefix}/conversations/{{id}}", retrieve_conversation)
        app.router.add_post(f"{prefix}/conversations/{{id}}", update_conversation)
        app.router.add_delete(f"{prefix}/conversations/{{id}}", delete_conversation)
        app.router.add_post(f"{prefix}/conversations/{{id}}/items", create_items)
        app.router.add_get(f"{prefix}/conversations/{{id}}/items", list_items)
        app.router.add_get(f"{prefix}/conversations/{{id}}/items/{{item_id}}", retrieve_item)
        app.router.add_delete(f"{prefix}/conversations/{{id}}/items/{{item_id}}", delete_item)


def _error(status: int, message: str, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}
    return web.json_response(body, status=status)


def stored_items(raw: list[object]) -> list[dict[str, object]]:
    """Input items as a conversation keeps them: each with an id and a status, a message's text content as parts."""
    items = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        kept = {"id": f"msg_{uuid.uuid4().hex}", "type": "message", "status": "completed", **item}
        if kept["type"] == "message" and isinstance(kept.get("content"), str):
            part = "output_text" if kept.get("role") == "assistant" else "input_text"
            kept["content"] = [{"type": part, "text": kept["content"]}]
        items.append(kept)
    return items


async def _refused(request: web.Request) -> web.Response | None:
    """The answer a call gets before it reaches a conversation: a wrong key, or the error the options play."""
    state = request.app[MOCK_CONVERSATIONS]
    state.calls.append((request.method, request.path))
    if state.options.api_key and request.headers.get("Authorization") != f"Bearer {state.options.api_key}":
        return _error(401, "Incorrect API key provided.")
    if state.options.error_status:
        body = state.options.error_body
        return web.Response(status=state.options.error_status, body=body, content_type="application/json")
    return None


async def _body(request: web.Request) -> dict[str, object] | web.Response:
    try:
        body = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError:
        return _error(400, "We could not parse the JSON body of your request.")
    return body if isinstance(body, dict) else _error(400, "The body must be a JSON object.")


def _items(body: dict[str, object], least: int) -> list[object] | web.Response:
    items = body.get("items", [] if least == 0 else None)
    if not isinstance(items, list) or not least <= len(items) <= MAX_ITEMS:
        return _error(400, f"'items' must be an array of {least} to {MAX_ITEMS} items.", "items")
    return items


async def _conversation(request: web.Request) -> MockConversation | web.Response:
    refused = await _refused(request)
    if refused is not None:
        return refused
    conversation_id = request.match_info["id"]
    conversation = request.app[MOCK_CONVERSATIONS].kept.get(conversation_id)
    return conversation or _error(404, f"Conversation with id '{conversation_id}' not found.")


async def create_conversation(request: web.Request) -> web.Response:
    refused = await _refused(request)
    body = refused or await _body(request)
    if isinstance(body, web.Response):
        return body
    items = _items(body, 0)
    if isinstance(items, web.Response):
        return items
    conversation = MockConversation(f"conv_{uuid.uuid4().hex}", body.get("metadata") or {})
    conversation.add(stored_items(items))
    request.app[MOCK_CONVERSATIONS].kept[conversation.id] = conversation
    return web.json_response(conversation.payload())


async def retrieve_conversation(request: web.Request) -> web.Response:
    conversation = await _conversation(request)
    return conversation if isinstance(conversation, web.Response) else web.json_response(conversation.payload())


async def update_conversation(request: web.Request) -> web.Response:
    conversation = await _conversation(request)
    body = conversation if isinstance(conversation, web.Response) else await _body(request)
    if isinstance(body, web.Response):
        return body
    assert isinstance(conversation, MockConversation)
    conversation.metadata = body.get("metadata") or {}
    return web.json_response(conversation.payload())


async def delete_conversation(request: web.Request) -> web.Response:
    conversation = await _conversation(request)
    if isinstance(conversation, web.Response):
        return conversation
    del request.app[MOCK_CONVERSATIONS].kept[conversation.id]
    return web.json_response({"id": conversation.id, "object": "conversation.deleted", "deleted": True})


def _listing(items: list[dict[str, object]], has_more: bool = False) -> web.Response:
    first, last = (items[0]["id"], items[-1]["id"]) if items else (None, None)
    return web.json_response(
        {"object": "list", "data": items, "first_id": first, "last_id": last, "has_more": has_more}
    )


async def create_items(request: web.Request) -> web.Response:
    conversation = await _conversation(request)
    body = conversation if isinstance(conversation, web.Response) else await _body(request)
    items = body if isinstance(body, web.Response) else _items(body, 1)
    if isinstance(items, web.Response):
        return items
    assert isinstance(conversation, MockConversation)
    added = stored_items(items)
    conversation.add(added)
    return _listing(added)


async def list_items(request: web.Request) -> web.Response:
    """The items, newest first unless `order=asc`, after the item `after`, at most `limit` (20)."""
    conversation = await _conversation(request)
    if isinstance(conversation, web.Response):
        return conversation
    items = conversation.items if request.query.get("order") == "asc" else conversation.items[::-1]
    after = request.query.get("after")
    ids = [item["id"] for item in items]
    if after is not None:
        items = items[ids.index(after) + 1 :] if after in ids else []
    limit = request.query.get("limit", "20")
    if not limit.isdigit() or not 1 <= int(limit) <= 100:
        return _error(400, "'limit' must be an integer from 1 to 100.", "limit")
    return _listing(items[: int(limit)], has_more=len(items) > int(limit))


def _item(conversation: MockConversation, request: web.Request) -> dict[str, object] | web.Response:
    item_id = request.match_info["item_id"]
    found = [item for item in conversation.items if item["id"] == item_id]
    return found[0] if found else _error(404, f"Item with id '{item_id}' not found.")


async def retrieve_item(request: web.Request) -> web.Response:
    conversation = await _conversation(request)
    item = conversation if isinstance(conversation, web.Response) else _item(conversation, request)
    return item if isinstance(item, web.Response) else web.json_response(item)


async def delete_item(request: web.Request) -> web.Response:
    conversation = await _conversation(request)
    item = conversation if isinstance(conversation, web.Response) else _item(conversation, request)
    if isinstance(item, web.Response):
        return item
    assert isinstance(conversation, MockConversation)
    conversation.items = [kept for kept in conversation.items if kept is not item]
    conversation.uncharged = [kept for kept in conversation.uncharged if kept is not item]
    return web.json_response(conversation.payload())
