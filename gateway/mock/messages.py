"""Anthropic's Messages API as the mock upstream speaks it: `POST /v1/messages`, plain and streamed.

Answers are text (the mock's one-token words, never more than `max_tokens`) or, with `tool_call_arguments` set and
tools in the request, a `tool_use` block calling the first tool with those arguments; with `builtin_tool_calls`,
after that many web searches (`builtin_calls`), which no token count includes. Usage is counted by the mock's
own rules (`claude`): `input_tokens`, `cache_creation_input_tokens` and `cache_read_input_tokens` (prompt caching
by `cache_control`, remembered per mock), `output_tokens`. A stream sends Anthropic's events: `message_start` (its
usage, `output_tokens` 1), `content_block_start`, `ping`, `content_block_delta`s, `content_block_stop`,
`message_delta` (cumulative usage: `output_tokens` alone, or every figure with `message_delta_usage = "full"`),
`message_stop`. With an `api_key` set, requests must carry it as `x-api-key` and say an `anthropic-version`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping

import orjson
from aiohttp import web

from gateway.mock import claude, counting
from gateway.mock.builtin_calls import search_blocks, searches_for
from gateway.mock.exchange import MOCK_OPTIONS, MOCK_STATE, MockState, send_stream
from gateway.mock.options import MockOptions
from gateway.mock.reply import WORDS, dumps


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"type": "error", "error": {"type": kind, "message": message}}, status=status)


async def messages(request: web.Request) -> web.StreamResponse:
    options = request.app[MOCK_OPTIONS]
    state = request.app[MOCK_STATE]
    state.headers.append({str(name): value for name, value in request.headers.items()})
    if options.api_key:
        if request.headers.get("x-api-key") != options.api_key:
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _error(400, "invalid_request_error", "The request body is not valid JSON.")
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return _error(400, "invalid_request_error", "messages: Field required")
    if not isinstance(body.get("max_tokens"), int):
        return _error(400, "invalid_request_error", "max_tokens: Field required")
    state.requests.append(body)
    if options.latency_ms:
        await asyncio.sleep(options.latency_ms / 1000)
    if options.fail_status:
        return _error(options.fail_status, "api_error", f"Mock failure {options.fail_status}.")
    if options.error_status:
        return web.Response(status=options.error_status, body=options.error_body, content_type="application/json")
    answer = Answer.for_request(body, options, state)
    if body.get("stream"):
        return await _stream(request, answer, options)
    return web.json_response(answer.message(), dumps=lambda obj: dumps(obj).decode())


class Answer:
    """One answer: its content blocks, the pieces a stream sends them in, and its usage."""

    def __init__(self, model: str, blocks: list[dict[str, object]], pieces: list[list[str]], usage: object):
        self.id = f"msg_mock{uuid.uuid4().hex[:20]}"
        self.model = model
        self.blocks = blocks
        self.pieces = pieces  # per block: text (or tool input JSON) in the pieces a stream sends
        self.usage = usage

    @classmethod
    def for_request(cls, body: Mapping[str, object], options: MockOptions, state: MockState) -> Answer:
        model = str(body.get("model", "mock-claude"))
        size = max(options.chunk_chars, 1)
        tools = body.get("tools")
        tool = tools[0] if isinstance(tools, list) and tools and isinstance(tools[0], dict) else None
        if options.tool_call_arguments is not None and tool is not None:
            arguments = options.tool_call_arguments
            block = {"type": "tool_use", "id": "toolu_mock", "name": tool.get("name"), "input": orjson.loads(arguments)}
            output = counting.count_text("gpt-4o", str(tool.get("name"))) + counting.count_text("gpt-4o", arguments)
            pieces = [arguments[i : i + size] for i in range(0, len(arguments), size)]
        else:
            limit = body.get("max_tokens")
            length = min(options.completion_tokens, limit if isinstance(limit, int) else options.completion_tokens)
            text = options.text if options.text is not None else "".join(WORDS[i % len(WORDS)] for i in range(length))
            text = text.lstrip() if options.text is None else text
            block = {"type": "text", "text": text}
            output = counting.count_text("gpt-4o", text)
            pieces = (
                [text[i : i + size] for i in range(0, len(text), size)] if options.text is not None else _words(text)
            )
        usage = options.reported_usage if options.reported_usage is not None else _usage(body, output, state)
        searches = searches_for(body, options)
        if searches and isinstance(usage, dict):
            usage = {**usage, "server_tool_use": {"web_search_requests": searches}}
        lead = [part for number in range(searches) for part in search_blocks(number)]
        lead_pieces = [[orjson.dumps(part["input"]).decode()] if "input" in part else [] for part in lead]
        return cls(model, [*lead, block], [*lead_pieces, pieces], usage if options.usage else None)

    def message(self, stop_reason: str | None = None, usage: object = None) -> dict[str, object]:
        tool = self.blocks[-1]["type"] == "tool_use"
        payload: dict[str, object] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": self.blocks,
            "stop_reason": stop_reason or ("tool_use" if tool else "end_turn"),
            "stop_sequence": None,
        }
        if self.usage is not None or usage is not None:
            payload["usage"] = usage if usage is not None else self.usage
        return payload

    def events(self, options: MockOptions) -> list[bytes]:
        usage = self.usage if isinstance(self.usage, dict) else None
        start_usage = {**usage, "output_tokens": 1} if usage is not None else None
        if start_usage is not None and "server_tool_use" in start_usage:
            start_usage["server_tool_use"] = {"web_search_requests": 0}  # none made yet
        start = {**self.message(usage=start_usage), "content": [], "stop_reason": None}
        if start_usage is None:
            start.pop("usage", None)
        out = [_event("message_start", {"type": "message_start", "message": start})]
        for index, block in enumerate(self.blocks):
            called = block["type"] in ("tool_use", "server_tool_use")
            empty = {**block, "input": {}} if called else {**block, "text": ""} if block["type"] == "text" else block
            out.append(
                _event("content_block_start", {"type": "content_block_start", "index": index, "content_block": empty})
            )
            out.append(_event("ping", {"type": "ping"}))
            for piece in self.pieces[index]:
                delta = (
                    {"type": "input_json_delta", "partial_json": piece}
                    if called
                    else {"type": "text_delta", "text": piece}
                )
                out.append(
                    _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
                )
            out.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
        delta_event: dict[str, object] = {
            "type": "message_delta",
            "delta": {"stop_reason": self.message()["stop_reason"], "stop_sequence": None},
        }
        if isinstance(self.usage, dict) and options.message_delta_usage != "full":
            searched = {"server_tool_use": self.usage["server_tool_use"]} if "server_tool_use" in self.usage else {}
            delta_event["usage"] = {"output_tokens": self.usage.get("output_tokens"), **searched}
        elif self.usage is not None:
            delta_event["usage"] = self.usage
        out.append(_event("message_delta", delta_event))
        out.append(_event("message_stop", {"type": "message_stop"}))
        return out


def _words(text: str) -> list[str]:
    """The reply streamed a word at a time (each word is one token, with its leading space)."""
    words = [" " + word for word in text.split(" ")]
    if words:
        words[0] = words[0][1:]
    return [word for word in words if word]


def _usage(body: Mapping[str, object], output: int, state: MockState) -> dict[str, int]:
    prefix = claude.count_input(body)
    written = read = 0
    if prefix.cached:
        if prefix.digest in state.prompt_cache:
            read = prefix.cached
        else:
            written = prefix.cached
            state.prompt_cache.add(prefix.digest)
    return {
        "input_tokens": prefix.tokens - written - read,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "output_tokens": output,
    }


def _event(name: str, payload: Mapping[str, object]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + dumps(payload) + b"\n\n"


async def _stream(request: web.Request, answer: Answer, options: MockOptions) -> web.StreamResponse:
    return await send_stream(request, answer.events(options), answer.id, end=b"")
