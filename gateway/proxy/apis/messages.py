"""Anthropic Messages (`POST /v1/messages`): the `Api` of models whose upstream has `api = "anthropic"`.

The request is checked as far as the gateway relies on it: `model`, `messages` (roles user and assistant, content a
string or blocks), `max_tokens` (required, as Anthropic requires it: the hold's output bound), `thinking` (its
budget within max_tokens, as Anthropic requires), `system`, `tools`, `stream`. The prompt is an upper estimate
(tokens/claude.py): no public tokenizer counts Claude's tokens; the bill is the provider's usage.

Usage is Anthropic's: `input_tokens` (not read from or written to the cache), `cache_creation_input_tokens`,
`cache_read_input_tokens`, `output_tokens`; billed as prompt = the three inputs, cached = cache reads, cache writes
apart (their own price), completion = output. Web searches (the server tool `web_search_YYYYMMDD`, priced per use
by the model's `tool_call_credits.web_search`) are `server_tool_use.web_search_requests`, bounded by the tool's
`max_uses` (the gateway sets it when absent, proxy/tool_calls.py); a stream the client left is billed the
`server_tool_use` blocks it was sent. A stream reports it in `message_start` and, cumulatively, in
`message_delta` (the last figures win); the bill (`cost`, `credits_remaining`) rides in the `usage` of a plain
answer and of the stream's `message_delta`, which the gateway adds when the upstream sent none. Errors have
Anthropic's shape, `{"type": "error", "error": {"type", "message"}}`, with the gateway's status codes, also inside
a stream (`event: error`).
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from gateway.billing.record import Usage
from gateway.billing.scripts import SettleOutcome
from gateway.billing.tool_calls import TOOL_TYPES, undated
from gateway.config import ModelConfig, UpstreamConfig
from gateway.errors import GatewayError, InvalidRequest
from gateway.insights.fingerprints import Fingerprint, take_fingerprint
from gateway.proxy.apis import JSON, ApiRequest, NoStoredAnswer, StatelessApi
from gateway.proxy.apis.chat import decode_body, with_bill
from gateway.proxy.priced_fields import PER_USE_TOOLS, PRICED_FIELDS
from gateway.proxy.sse import Event, encode_typed_event
from gateway.tokens import CompletionCounter, TokenCounter
from gateway.tokens.claude import estimate_input_tokens

ROLES = frozenset({"user", "assistant"})
# Anthropic's error types by the HTTP status the gateway answers with; other 4xx are invalid requests, 5xx api errors.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}
USAGE_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
# A web search, as the price table names its calls (billing/tool_calls.py).
SEARCH_CALL = "web_search_call"


class Messages(StatelessApi):
    """The `Api` of /v1/messages."""

    name = "messages"
    upstream_path = "/messages"
    upstream_api = "anthropic"
    priced_fields = PRICED_FIELDS

    def parse(self, raw: bytes) -> ApiRequest:
        return parse_messages_request(raw)

    def parse_count(self, raw: bytes) -> ApiRequest:
        return parse_messages_request(raw, counting=True)

    def count_prompt(self, counter: TokenCounter, request: ApiRequest) -> int:
        return estimate_input_tokens(request.body)

    def fingerprint(self, request: ApiRequest) -> Fingerprint:
        return take_fingerprint(request.body)

    def history_tokens(self, counter: TokenCounter, request: ApiRequest, prompt_tokens: int) -> int:
        messages = request.body["messages"]
        assert isinstance(messages, list)
        return prompt_tokens - estimate_input_tokens({**request.body, "messages": messages[-1:]})

    def upstream_body(
        self, request: ApiRequest, model: ModelConfig, upstream: UpstreamConfig, forced_max_tokens: int | None
    ) -> bytes:
        body = {**request.body, "model": model.upstream_model}
        if forced_max_tokens is not None:  # never: max_tokens is required; kept for the interface's contract
            body["max_tokens"] = forced_max_tokens
        tools = body.get("tools")
        if request.max_tool_calls is not None and isinstance(tools, list):
            body["tools"] = [_with_max_uses(tool, request.max_tool_calls) for tool in tools]
        return orjson.dumps(body)

    def read_answer(self, payload: Mapping[str, object], counter: CompletionCounter) -> Usage | None:
        content = payload.get("content")
        for index, block in enumerate(content if isinstance(content, list) else ()):
            if isinstance(block, Mapping):
                _count_block(counter, index, block)
        return usage_from_upstream(payload.get("usage"))

    def stamp_answer(self, payload: JSON, usage: Usage, bill: SettleOutcome) -> JSON:
        shown = payload.get("usage")
        if usage.source != "upstream" or usage.clamped or not isinstance(shown, Mapping):
            shown = usage_object(usage)
        return {**payload, "usage": with_bill(shown, bill)}

    def stream_format(self, request: ApiRequest, request_id: str) -> MessagesStream:
        return MessagesStream()

    def error_body(self, error: GatewayError) -> JSON:
        return error_object(error)

    def count_answer(self, request: ApiRequest, prompt_tokens: int, preview: JSON) -> JSON:
        return {"input_tokens": prompt_tokens}


class MessagesStream(NoStoredAnswer):
    """The `StreamFormat` of Messages events; it keeps `message_start`'s usage for `message_delta`'s."""

    wants_bill = True  # Anthropic's streams always end with their usage: the bill rides in it

    def __init__(self) -> None:
        self.started: dict[str, int] = {}  # message_start's usage figures
        self.started_searches: int | None = None  # ... and its server_tool_use.web_search_requests

    def is_end(self, event: Event) -> bool:
        return b"message_stop" in event.raw and _type(event.data) == "message_stop"

    def usage(self, chunk: Mapping[str, object]) -> Usage | None:
        kind = chunk.get("type")
        if kind == "message_start":
            message = chunk.get("message")
            usage = message.get("usage") if isinstance(message, Mapping) else None
            self.started, self.started_searches = _counts(usage), _searches(usage)
        elif kind == "message_delta":
            return usage_from_upstream(self._merged(chunk))
        return None

    def prompt_usage(self, chunk: Mapping[str, object]) -> Usage | None:
        if chunk.get("type") != "message_start":
            return None
        message = chunk.get("message")
        return usage_from_upstream(message.get("usage") if isinstance(message, Mapping) else None)

    def is_final(self, chunk: Mapping[str, object]) -> bool:
        return chunk.get("type") == "message_delta"

    def is_error(self, chunk: Mapping[str, object]) -> bool:
        return chunk.get("type") == "error"

    def stamp(self, chunk: Mapping[str, object], usage: Usage, bill: SettleOutcome | None) -> JSON:
        shown: Mapping[str, object] = self._merged(chunk)
        if usage.clamped or usage_from_upstream(shown) is None:
            shown = usage_object(usage)  # what is billed, not what was claimed
        return {**chunk, "usage": shown if bill is None else with_bill(shown, bill)}

    def closing_event(self, usage: Usage, bill: SettleOutcome, last: Mapping[str, object]) -> JSON:
        delta = {"stop_reason": None, "stop_sequence": None}
        return {"type": "message_delta", "delta": delta, "usage": with_bill(usage_object(usage), bill)}

    def count(self, counter: CompletionCounter, chunk: Mapping[str, object]) -> None:
        kind, index = chunk.get("type"), chunk.get("index")
        part = index if isinstance(index, int) else 0
        if kind == "content_block_start":
            block = chunk.get("content_block")
            if isinstance(block, Mapping):
                _count_block(counter, part, block, streamed=True)
        elif kind == "content_block_delta":
            delta = chunk.get("delta")
            if isinstance(delta, Mapping):
                counter.add_text(delta.get("text"), part=part)
                counter.add_text(delta.get("partial_json"), part=part, kind="input")
                counter.add_text(delta.get("thinking"), part=part, kind="thinking")

    def encode(self, event: Mapping[str, object]) -> bytes:
        return encode_typed_event(event, "message")

    def _merged(self, chunk: Mapping[str, object]) -> dict[str, object]:
        """message_start's figures, overwritten by those this event reports (cumulative)."""
        merged: dict[str, object] = {**self.started, **_counts(chunk.get("usage"))}
        searches = _searches(chunk.get("usage"))
        searches = self.started_searches if searches is None else searches
        if searches is not None:
            merged["server_tool_use"] = {"web_search_requests": searches}
        return merged


MESSAGES = Messages()


def _type(data: bytes | None) -> object:
    try:
        parsed = orjson.loads(data) if data is not None else None
    except orjson.JSONDecodeError:
        return None
    return parsed.get("type") if isinstance(parsed, dict) else None


def _count_block(counter: CompletionCounter, part: int, block: Mapping[str, object], *, streamed: bool = False) -> None:
    """A content block of the answer; streamed, a tool call's input arrives later as JSON text."""
    kind = block.get("type")
    if kind == "text":
        counter.add_text(block.get("text"), part=part)
    elif kind == "thinking":
        counter.add_text(block.get("thinking"), part=part, kind="thinking")
    elif kind == "tool_use":
        counter.add_text(block.get("name"), part=part, kind="name")
        if not streamed:
            counter.add_text(orjson.dumps(block.get("input")).decode(), part=part, kind="input")
    elif kind == "server_tool_use" and block.get("name") == "web_search":
        block_id = block.get("id")
        counter.add_builtin_call(SEARCH_CALL, f"id:{block_id}" if isinstance(block_id, str) else f"at:{part}")


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _counts(usage: object) -> dict[str, int]:
    """The usage fields that are whole numbers (a stream's events may leave some null)."""
    if not isinstance(usage, Mapping):
        return {}
    figures = {name: usage.get(name) for name in USAGE_FIELDS}
    return {name: value for name, value in figures.items() if isinstance(value, int) and _is_count(value)}


def _searches(usage: object) -> int | None:
    """`server_tool_use.web_search_requests`, if a whole number."""
    used = usage.get("server_tool_use") if isinstance(usage, Mapping) else None
    searches = used.get("web_search_requests") if isinstance(used, Mapping) else None
    return searches if isinstance(searches, int) and _is_count(searches) else None


def usage_from_upstream(usage: object) -> Usage | None:
    """Anthropic's `usage`, if usable: input and output are whole numbers, the cache figures too when given."""
    if not isinstance(usage, Mapping):
        return None
    figures = _counts(usage)
    if "input_tokens" not in figures or "output_tokens" not in figures:
        return None
    if any(usage.get(name) is not None and name not in figures for name in USAGE_FIELDS):
        return None
    written = figures.get("cache_creation_input_tokens", 0)
    read = figures.get("cache_read_input_tokens", 0)
    searches = _searches(usage)
    return Usage(
        figures["input_tokens"] + written + read,
        figures["output_tokens"],
        cached_tokens=read,
        cache_write_tokens=written,
        source="upstream",
        tool_calls=((SEARCH_CALL, searches),) if searches else (),
    )


def usage_object(usage: Usage) -> dict[str, int]:
    """A billed `Usage` in Anthropic's words."""
    return {
        "input_tokens": usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "output_tokens": usage.completion_tokens,
    }


def error_object(error: GatewayError) -> JSON:
    """A gateway error in Anthropic's shape, its type chosen by its status."""
    kind = ERROR_TYPES.get(error.status, "api_error" if error.status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def parse_messages_request(raw: bytes, *, counting: bool = False) -> ApiRequest:
    """Decode and check the body; raise InvalidRequest naming the offending field. A body to count
    (`counting`: count_tokens') may leave out max_tokens."""
    body = decode_body(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: Field required (a non-empty string).", param="model")
    _check_messages(body.get("messages"))
    _check_system(body.get("system"))
    max_tokens = body.get("max_tokens")
    if max_tokens is not None or not counting:
        if not _is_count(max_tokens) or max_tokens == 0:
            raise InvalidRequest("max_tokens: Field required (a positive integer).", param="max_tokens")
        assert isinstance(max_tokens, int)
        _check_thinking(body.get("thinking"), max_tokens)
    if body.get("tools") is not None and not isinstance(body["tools"], list):
        raise InvalidRequest("tools: Input should be a valid list.", param="tools")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("stream: Input should be a valid boolean.", param="stream")
    server_tools, max_uses, field = _server_tools(body.get("tools"))
    bound = max_tokens if isinstance(max_tokens, int) else None
    return ApiRequest(
        body,
        model,
        bool(stream),
        bool(stream),
        bound,
        1,
        builtin_tools=server_tools,
        max_tool_calls=max_uses,
        tool_calls_field=field,
    )


def _server_tools(tools: object) -> tuple[tuple[str, ...], int | None, str]:
    """The server tools billed per use the request offers (their types); the bound on the uses of those the price
    table knows (web search: the sum of their `max_uses`, None unless each sets one) and the field that sets it."""
    types: list[str] = []
    bounds: list[object] = []
    field = "max_tool_calls"
    for index, tool in enumerate(tools if isinstance(tools, list) else []):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(kind, str) or not kind.startswith(PER_USE_TOOLS):
            continue
        types.append(kind)
        if undated(kind) not in TOOL_TYPES:
            continue  # code execution: billed by the hour, refused unless allowed_fields covers it
        field = f"tools.{index}.max_uses"
        uses = tool.get("max_uses")
        if uses is not None and (not _is_count(uses) or uses == 0):
            raise InvalidRequest(f"{field}: Input should be a positive integer.", param=field)
        bounds.append(uses)
    known = [uses for uses in bounds if isinstance(uses, int)]
    return tuple(types), sum(known) if bounds and len(known) == len(bounds) else None, field


def _with_max_uses(tool: object, uses: int) -> object:
    """A web search tool with the gateway's bound on its uses when it has none of its own."""
    if isinstance(tool, dict) and str(tool.get("type")).startswith("web_search") and tool.get("max_uses") is None:
        return {**tool, "max_uses": uses}
    return tool


def _check_messages(messages: object) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: Field required (a non-empty list).", param="messages")
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            raise InvalidRequest(f"{where}: Input should be an object.", param=where)
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise InvalidRequest(f"{where}.role: Input should be 'user' or 'assistant'.", param=f"{where}.role")
        _check_content(message.get("content"), f"{where}.content")


def _check_content(content: object, where: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}: Input should be a string or a list of content blocks.", param=where)
    for index, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise InvalidRequest(f"{where}.{index}: a content block must be an object with a type.", param=where)


def _check_system(system: object) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list) or not all(
        isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
        for block in system
    ):
        raise InvalidRequest("system: Input should be a string or a list of text blocks.", param="system")


def _check_thinking(thinking: object, max_tokens: int) -> None:
    """Extended thinking is output: its budget must fit in max_tokens (Anthropic refuses it otherwise)."""
    if thinking is None:
        return
    if not isinstance(thinking, dict) or not isinstance(thinking.get("type"), str):
        raise InvalidRequest("thinking: Input should be an object with a type.", param="thinking")
    if thinking["type"] != "enabled":
        return
    budget = thinking.get("budget_tokens")
    if not _is_count(budget) or not 1024 <= budget < max_tokens:  # type: ignore[operator]
        raise InvalidRequest(
            "thinking.budget_tokens: must be at least 1024 and less than max_tokens.", param="thinking.budget_tokens"
        )
