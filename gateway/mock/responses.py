"""The mock upstream's Responses API: `POST /responses` plain and streamed (the real typed event sequence),
`GET` and `DELETE /responses/{id}`, `POST /responses/{id}/cancel` and `GET /responses/{id}/input_items`.

Every response it makes is kept (`MockResponses`), so `previous_response_id` works: the earlier turn's input and
output tokens are charged again as input, as OpenAI charges the context it keeps. So does `conversation`, one of
the mock's conversations (mock/conversations.py): its context is charged as input, and the response joins it.
Counting is the mock's own (`counting`, tiktoken directly, never the gateway's): the request is turned into the
chat messages it amounts to, by the rule written out in `chat_messages`, and counted as chat's; the reply is
`Reply`'s words or tool call, after the built-in tool calls the options ask for (`builtin_calls`).
A background response (`background: true`) is answered `queued` at once; it shows `in_progress` to the next
`background_looks` retrievals, then finished. Cancelled before that, it is `cancelled` with no output and no usage
(or, with `cancel_with_output`, with its output and usage). Retrieved with `stream=true`, a response streams
`response.in_progress` and its terminal event (after `starting_after`), finishing meanwhile. Cancelling any other
response answers 400, as OpenAI does for a response that was not created in the background.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from gateway.mock.builtin_calls import BuiltinCall, calls_for
from gateway.mock.conversations import MOCK_CONVERSATIONS, MockConversation
from gateway.mock.counting import count_prompt
from gateway.mock.options import MockOptions
from gateway.mock.reply import Reply, dumps


@dataclass
class StoredResponse:
    response: dict[str, object]
    input_items: list[dict[str, object]]
    looks_left: int = 0  # a background response: retrievals that still show it in progress
    background: bool = False

    def shown(self) -> dict[str, object]:
        """The response as a retrieval sees it now."""
        if self.looks_left <= 0:
            return self.response
        self.looks_left -= 1
        return {**self.response, "status": "in_progress", "output": [], "usage": None}


@dataclass
class MockResponses:
    """The mock's Responses state: its options, the create bodies it saw, the responses it made, the retrieval
    calls it answered (method and path), and how its streams ended."""

    options: MockOptions
    requests: list[dict[str, object]] = field(default_factory=list)
    stored: dict[str, StoredResponse] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    aborted_streams: int = 0
    finished_streams: int = 0


MOCK_RESPONSES = web.AppKey("mock_responses", MockResponses)


def add_responses_routes(app: web.Application, options: MockOptions) -> None:
    """Serve the Responses API under /v1 and at the root."""
    app[MOCK_RESPONSES] = MockResponses(options)
    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/responses", create_response)
        app.router.add_get(f"{prefix}/responses/{{id}}", retrieve_response)
        app.router.add_delete(f"{prefix}/responses/{{id}}", delete_response)
        app.router.add_post(f"{prefix}/responses/{{id}}/cancel", cancel_response)
        app.router.add_get(f"{prefix}/responses/{{id}}/input_items", list_input_items)


def _error(status: int, message: str, code: str | None, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    return web.json_response(body, status=status)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


async def create_response(request: web.Request) -> web.StreamResponse:
    store = request.app[MOCK_RESPONSES]
    options = store.options
    if options.api_key and request.headers.get("Authorization") != f"Bearer {options.api_key}":
        return _error(401, "Incorrect API key provided.", "invalid_api_key")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _error(400, "We could not parse the JSON body of your request.", "invalid_json")
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return _error(400, "'model' is required.", "invalid_request")
    store.requests.append(body)
    if options.latency_ms:
        await asyncio.sleep(options.latency_ms / 1000)
    if options.fail_status:
        return _error(options.fail_status, f"Mock failure {options.fail_status}.", "mock_failure")
    context = _context(request, body)
    if isinstance(context, web.Response):
        return context
    made = MadeResponse.of(body, options, context)
    background = body.get("background") is True
    stored = StoredResponse(made.final(), input_items(body), background=background)
    store.stored[made.id] = stored
    conversation = _conversation(request, body)
    if isinstance(conversation, MockConversation):
        turn = [*input_items(body), made.item(True)]
        conversation.add_turn(turn, made.reply.prompt_tokens + context, made.reply.completion_tokens)
    if body.get("stream"):
        return await _stream(request, made, options)
    answer = made.final()
    if background:
        stored.looks_left = options.background_looks
        answer = {**answer, "status": "queued", "output": [], "usage": None}
    return web.json_response(answer, dumps=lambda obj: dumps(obj).decode())


def _context(request: web.Request, body: dict[str, object]) -> int | web.Response:
    """The context the request continues (a previous response's, or a conversation's), charged as input; or the
    error it gets when there is none such."""
    previous_id = body.get("previous_response_id")
    if previous_id is not None and body.get("conversation") is not None:
        message = "Mutually exclusive parameters: send 'previous_response_id' or 'conversation', not both."
        return _error(400, message, None, "conversation")
    conversation = _conversation(request, body)
    if conversation is not None:
        if isinstance(conversation, web.Response):
            return conversation
        model = str(body["model"])
        return conversation.context_tokens(
            lambda items: count_prompt({"model": model, "messages": chat_messages({"input": items})})
        )
    if previous_id is None:
        return 0
    previous = request.app[MOCK_RESPONSES].stored.get(str(previous_id))
    if previous is None:
        message = f"Previous response with id '{previous_id}' not found."
        return _error(404, message, "previous_response_not_found", "previous_response_id")
    usage = previous.response.get("usage")
    return int(usage["input_tokens"]) + int(usage["output_tokens"]) if isinstance(usage, Mapping) else 0


def _conversation(request: web.Request, body: dict[str, object]) -> MockConversation | web.Response | None:
    """The conversation the request is made in (`conversation`: its id or `{"id": ...}`), if it names one."""
    named = body.get("conversation")
    conversation_id = named.get("id") if isinstance(named, Mapping) else named
    if conversation_id is None:
        return None
    conversation = request.app[MOCK_CONVERSATIONS].kept.get(str(conversation_id))
    return conversation or _error(404, f"Conversation with id '{conversation_id}' not found.", None, "conversation")


@dataclass
class MadeResponse:
    """One response: its reply, its usage with the earlier context, and its events."""

    body: dict[str, object]
    reply: Reply
    options: MockOptions
    context_tokens: int
    calls: list[BuiltinCall] = field(default_factory=list)  # built-in tool calls, before the reply
    id: str = field(default_factory=lambda: _new_id("resp"))
    item_id: str = field(default_factory=lambda: _new_id("msg"))
    created_at: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def of(cls, body: dict[str, object], options: MockOptions, context_tokens: int) -> MadeResponse:
        chat: dict[str, object] = {"model": body["model"], "messages": chat_messages(body)}
        tools = [_chat_tool(tool) for tool in _list(body.get("tools")) if _is_function(tool)]
        if tools:
            chat["tools"] = tools
        if isinstance(body.get("max_output_tokens"), int):
            chat["max_tokens"] = body["max_output_tokens"]
        return cls(body, Reply.for_request(chat, options), options, context_tokens, calls_for(body, options))

    @property
    def incomplete(self) -> bool:
        limit = self.body.get("max_output_tokens")
        return self.reply.tool_call is None and isinstance(limit, int) and limit < self.options.completion_tokens

    def usage(self) -> object:
        if self.reply.reported_usage is not None:
            return self.reply.reported_usage
        if not self.options.usage:
            return None
        prompt = self.reply.prompt_tokens + self.context_tokens
        return {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": min(self.reply.cached_tokens, prompt)},
            "output_tokens": self.reply.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reply.reasoning_tokens},
            "total_tokens": prompt + self.reply.completion_tokens,
        }

    def item(self, done: bool) -> dict[str, object]:
        status = "completed" if done else "in_progress"
        call = self.reply.tool_call
        if call is not None:
            arguments = call.arguments if done else ""
            return {
                "id": self.item_id,
                "type": "function_call",
                "status": status,
                "call_id": f"call_{self.item_id}",
                "name": call.name,
                "arguments": arguments,
            }
        content = [self.part()] if done else []
        return {"id": self.item_id, "type": "message", "status": status, "role": "assistant", "content": content}

    def part(self, text: str | None = None) -> dict[str, object]:
        text = "".join(self.reply.pieces[0]) if text is None else text
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def response(self, status: str, output: list[dict[str, object]], usage: object) -> dict[str, object]:
        body = self.body
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": body.get("background") is True,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": body["model"],
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "store": body.get("store", True),
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage,
            "metadata": {},
        }

    def final(self) -> dict[str, object]:
        output = [*(call.item(True) for call in self.calls), self.item(True)]
        return self.response("incomplete" if self.incomplete else "completed", output, self.usage())

    def events(self) -> list[dict[str, object]]:
        """The stream's events, in OpenAI's order, without their sequence numbers."""
        started = self.response("in_progress", [], None)
        events: list[dict[str, object]] = [
            {"type": "response.created", "response": started},
            {"type": "response.in_progress", "response": started},
        ]
        for index, builtin in enumerate(self.calls):
            events += builtin.events(index)
        index = len(self.calls)  # the reply's output index
        events.append({"type": "response.output_item.added", "output_index": index, "item": self.item(False)})
        where = {"item_id": self.item_id, "output_index": index}
        call = self.reply.tool_call
        if call is not None:
            events += [{"type": "response.function_call_arguments.delta", **where, "delta": p} for p in call.pieces]
            events.append({"type": "response.function_call_arguments.done", **where, "arguments": call.arguments})
        else:
            where = {**where, "content_index": 0}
            events.append({"type": "response.content_part.added", **where, "part": self.part("")})
            events += [
                {"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
                for piece in self.reply.pieces[0]
            ]
            text = "".join(self.reply.pieces[0])
            events.append({"type": "response.output_text.done", **where, "text": text, "logprobs": []})
            events.append({"type": "response.content_part.done", **where, "part": self.part()})
        events.append({"type": "response.output_item.done", "output_index": index, "item": self.item(True)})
        final = self.final()
        events.append({"type": f"response.{final['status']}", "response": final})
        return events


async def _stream(request: web.Request, made: MadeResponse, options: MockOptions) -> web.StreamResponse:
    state = request.app[MOCK_RESPONSES]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "x-request-id": made.id})
    await response.prepare(request)
    encoded = [
        b"event: " + str(event["type"]).encode() + b"\ndata: " + dumps({**event, "sequence_number": n}) + b"\n\n"
        for n, event in enumerate(made.events())
    ]
    try:
        for sent, chunk in enumerate(encoded):
            if options.stall_after_chunks is not None and sent >= options.stall_after_chunks:
                await _until_closed(request)
            if options.cut_after_chunks is not None and sent >= options.cut_after_chunks:
                assert request.transport is not None
                request.transport.close()
                return response
            await response.write(chunk)
            if options.chunk_delay_ms:
                await asyncio.sleep(options.chunk_delay_ms / 1000)
        await response.write_eof()
        state.finished_streams += 1
    except (ConnectionError, asyncio.CancelledError):
        state.aborted_streams += 1
        raise
    return response


async def _until_closed(request: web.Request) -> None:
    while request.transport is not None and not request.transport.is_closing():
        await asyncio.sleep(0.05)
    raise ConnectionResetError("peer closed a stalled stream")


def _stored(request: web.Request) -> StoredResponse | web.Response:
    store = request.app[MOCK_RESPONSES]
    store.calls.append((request.method, request.path))
    answer_id = request.match_info["id"]
    stored = store.stored.get(answer_id)
    if stored is None:
        return _error(404, f"Response with id '{answer_id}' not found.", None)
    return stored


async def retrieve_response(request: web.Request) -> web.StreamResponse:
    stored = _stored(request)
    if isinstance(stored, web.Response):
        return stored
    if request.query.get("stream") != "true":
        return web.json_response(stored.shown())
    # Streamed: the rest of its events (after `starting_after`), the response running to its end meanwhile.
    running = {**stored.response, "status": "in_progress", "output": [], "usage": None}
    stored.looks_left = 0
    final = stored.response
    events = [
        {"type": "response.in_progress", "response": running},
        {"type": f"response.{final['status']}", "response": final},
    ]
    after = int(request.query.get("starting_after", "-1"))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for number, event in enumerate(events):
        if number > after:
            await response.write(
                b"event: "
                + str(event["type"]).encode()
                + b"\ndata: "
                + dumps({**event, "sequence_number": number})
                + b"\n\n"
            )
    await response.write_eof()
    return response


async def delete_response(request: web.Request) -> web.Response:
    stored = _stored(request)
    if isinstance(stored, web.Response):
        return stored
    answer_id = request.match_info["id"]
    del request.app[MOCK_RESPONSES].stored[answer_id]
    return web.json_response({"id": answer_id, "object": "response.deleted", "deleted": True})


async def cancel_response(request: web.Request) -> web.Response:
    stored = _stored(request)
    if isinstance(stored, web.Response):
        return stored
    if not stored.background:
        return _error(400, "Only responses created with background=true can be cancelled.", None)
    if stored.looks_left > 0:  # still running: stopped where it is
        stored.looks_left = 0
        if not request.app[MOCK_RESPONSES].options.cancel_with_output:
            stored.response = {**stored.response, "output": [], "usage": None}
        stored.response = {**stored.response, "status": "cancelled", "incomplete_details": None}
    return web.json_response(stored.response)


async def list_input_items(request: web.Request) -> web.Response:
    stored = _stored(request)
    if isinstance(stored, web.Response):
        return stored
    items = stored.input_items
    return web.json_response(
        {
            "object": "list",
            "data": items,
            "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None,
            "has_more": False,
        }
    )


def input_items(body: Mapping[str, object]) -> list[dict[str, object]]:
    """The request's input as stored items, each with an id (a string input is one user message)."""
    raw = body.get("input")
    if isinstance(raw, str):
        raw = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": raw}]}]
    items = [dict(item) for item in _list(raw) if isinstance(item, Mapping)]
    return [{"id": _new_id("msg"), **item} for item in items]


def chat_messages(body: Mapping[str, object]) -> list[dict[str, object]]:
    """The chat messages a Responses request amounts to: instructions a system message, a string input a user
    message, a message item itself (its parts' text counted), a function call an assistant message calling it, a
    function call's output a tool message; other items nothing."""
    messages: list[dict[str, object]] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    raw = body.get("input")
    if isinstance(raw, str):
        return [*messages, {"role": "user", "content": raw}]
    for item in _list(raw):
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type", "message")
        if kind == "message":
            messages.append({"role": item.get("role"), "content": item.get("content")})
        elif kind == "function_call":
            function = {"name": item.get("name"), "arguments": item.get("arguments")}
            messages.append({"role": "assistant", "tool_calls": [{"function": function}]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "content": item.get("output")})
    return messages


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _is_function(tool: object) -> bool:
    return isinstance(tool, Mapping) and tool.get("type") == "function"


def _chat_tool(tool: object) -> dict[str, object]:
    assert isinstance(tool, Mapping)
    function = {key: tool[key] for key in ("name", "description", "parameters") if tool.get(key) is not None}
    return {"type": "function", "function": function}
