"""Chat completions (`POST /v1/chat/completions`): the reference `Api`.

The request is checked only as far as the gateway relies on it (the rest is the upstream's business); usage is
OpenAI's `usage` object; the bill rides in it as `cost` and `credits_remaining`, on a plain answer and on a
stream's final usage chunk (the one with no choices), which the gateway adds when the upstream sent none.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TypeVar, cast

import orjson

from gateway.billing.pricing import credits_number
from gateway.billing.record import Usage
from gateway.billing.scripts import SettleOutcome
from gateway.config import ModelConfig, UpstreamConfig
from gateway.errors import GatewayError, InvalidRequest
from gateway.insights.fingerprints import Fingerprint, take_fingerprint
from gateway.proxy.apis import JSON, ApiRequest, NoStoredAnswer, StatelessApi
from gateway.proxy.priced_fields import PRICED_FIELDS
from gateway.proxy.sse import DONE, Event, encode_event
from gateway.tokens import CompletionCounter, TokenCounter

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
MAX_N = 128
# orjson refuses to encode past 254 levels, and the body is re-encoded to go upstream: refuse deep bodies at
# parse time. No real request comes near this (a tool's JSON schema may nest a dozen levels).
MAX_DEPTH = 64
_CONTAINERS = (dict, list)
T = TypeVar("T")


class ChatCompletions(StatelessApi):
    """The `Api` of /v1/chat/completions."""

    name = "chat.completions"
    upstream_path = "/chat/completions"
    upstream_api = "openai"
    priced_fields = PRICED_FIELDS

    def parse(self, raw: bytes) -> ApiRequest:
        return parse_chat_request(raw)

    def parse_count(self, raw: bytes) -> ApiRequest:
        return parse_chat_request(raw)

    def count_prompt(self, counter: TokenCounter, request: ApiRequest) -> int:
        return counter.count_prompt_tokens(request.model, request.body)

    def count_answer(self, request: ApiRequest, prompt_tokens: int, preview: JSON) -> JSON:
        return preview

    def fingerprint(self, request: ApiRequest) -> Fingerprint:
        return take_fingerprint(request.body)

    def history_tokens(self, counter: TokenCounter, request: ApiRequest, prompt_tokens: int) -> int:
        """Every message but the last: the whole prompt's count less that of the same body with the last message
        alone (tools and the reply's priming are in both)."""
        messages = request.body["messages"]
        assert isinstance(messages, list)
        return prompt_tokens - counter.count_prompt_tokens(request.model, {**request.body, "messages": messages[-1:]})

    def upstream_body(
        self, request: ApiRequest, model: ModelConfig, upstream: UpstreamConfig, forced_max_tokens: int | None
    ) -> bytes:
        body = dict(request.body)
        body["model"] = model.upstream_model
        if forced_max_tokens is not None:
            for name in ("max_tokens", "max_completion_tokens"):
                if name in body and body[name] is None:
                    del body[name]  # explicit nulls; some upstreams refuse a null next to the other field
            body[model.max_tokens_field] = forced_max_tokens
        if request.stream and upstream.stream_usage:
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        return orjson.dumps(body)

    def read_answer(self, payload: Mapping[str, object], counter: CompletionCounter) -> Usage | None:
        counter.add_response(payload)
        return usage_from_upstream(payload.get("usage"))

    def stamp_answer(self, payload: JSON, usage: Usage, bill: SettleOutcome) -> JSON:
        shown = payload.get("usage")
        # Clients rely on `usage`: it shows what is billed.
        if usage.source != "upstream" or usage.clamped or not isinstance(shown, Mapping):
            shown = usage_object(usage)
        return {**payload, "usage": with_bill(shown, bill)}

    def stream_format(self, request: ApiRequest, request_id: str) -> ChatStream:
        return ChatStream(request, request_id)

    def error_body(self, error: GatewayError) -> JSON:
        return error.body()


class ChatStream(NoStoredAnswer):
    """The `StreamFormat` of chat completion chunks."""

    chunk_object = "chat.completion.chunk"  # the `object` of the usage chunk the gateway adds

    def __init__(self, request: ApiRequest, request_id: str):
        self.request = request
        self.request_id = request_id  # the id of the usage chunk the gateway adds, if the upstream gave none
        self.wants_bill = request.client_wants_usage

    def is_end(self, event: Event) -> bool:
        return event.data == DONE

    def usage(self, chunk: Mapping[str, object]) -> Usage | None:
        return usage_from_upstream(chunk.get("usage"))

    def prompt_usage(self, chunk: Mapping[str, object]) -> Usage | None:
        return None  # the usage chunk comes last, whole

    def is_final(self, chunk: Mapping[str, object]) -> bool:
        return not chunk.get("choices")  # the usage chunk; usage on content chunks is running totals

    def is_error(self, chunk: Mapping[str, object]) -> bool:
        return isinstance(chunk.get("error"), dict)

    def stamp(self, chunk: Mapping[str, object], usage: Usage, bill: SettleOutcome | None) -> JSON:
        shown = chunk.get("usage")
        if usage.clamped or not isinstance(shown, Mapping):
            shown = usage_object(usage)  # what is billed, not what was claimed
        return {**chunk, "usage": shown if bill is None else with_bill(shown, bill)}

    def closing_event(self, usage: Usage, bill: SettleOutcome, last: Mapping[str, object]) -> JSON:
        return {
            "id": last.get("id", self.request_id),
            "object": self.chunk_object,
            "created": last.get("created", int(time.time())),
            "model": last.get("model", self.request.model),
            "choices": [],
            "usage": with_bill(usage_object(usage), bill),
        }

    def count(self, counter: CompletionCounter, chunk: Mapping[str, object]) -> None:
        counter.add_chunk(chunk)

    def encode(self, event: Mapping[str, object]) -> bytes:
        return encode_event(orjson.dumps(event))


CHAT = ChatCompletions()


def with_bill(usage: Mapping[str, object], bill: SettleOutcome) -> JSON:
    """A `usage` object with the request's bill: `cost` (credits charged) and `credits_remaining`, both exact
    decimal numbers of credits. Extra fields, which OpenAI's clients keep and pass on."""
    return {
        **usage,
        "cost": credits_number(bill.charged_micros),
        "credits_remaining": credits_number(bill.balance_micros),
    }


def usage_object(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def usage_from_upstream(usage: object) -> Usage | None:
    """The upstream's `usage` object, if it is a usable one (counts are whole numbers, never negative)."""
    if not isinstance(usage, Mapping):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not _count(prompt) or not _count(completion):
        return None
    assert isinstance(prompt, int) and isinstance(completion, int)
    return Usage(
        prompt,
        completion,
        cached_tokens=_detail(usage.get("prompt_tokens_details"), "cached_tokens"),
        reasoning_tokens=_detail(usage.get("completion_tokens_details"), "reasoning_tokens"),
        source="upstream",
    )


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _detail(details: object, name: str) -> int:
    value = details.get(name) if isinstance(details, Mapping) else None
    return value if _count(value) and isinstance(value, int) else 0


def parse_chat_request(raw: bytes) -> ApiRequest:
    """Decode and check the body; raise InvalidRequest naming the offending field."""
    body = decode_body(raw)
    model = required_model(body)
    _check_messages(body.get("messages"))
    stream = optional_field(body, "stream", bool, False)
    options = optional_field(body, "stream_options", dict, {})
    include_usage = options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise InvalidRequest("'stream_options.include_usage' must be a boolean.", param="stream_options")
    n = optional_field(body, "n", int, 1)
    if not 1 <= n <= MAX_N:
        raise InvalidRequest(f"'n' must be between 1 and {MAX_N}.", param="n")
    limits = [optional_field(body, name, int, 0) for name in ("max_completion_tokens", "max_tokens")]
    for name, value in zip(("max_completion_tokens", "max_tokens"), limits, strict=True):
        if name in body and body[name] is not None and value < 1:
            raise InvalidRequest(f"'{name}' must be a positive integer.", param=name)
    max_tokens = max(limits) or None
    return ApiRequest(body, model, stream, stream and include_usage, max_tokens, n)


def decode_body(raw: bytes) -> JSON:
    """The request body as a JSON object nesting at most MAX_DEPTH levels; InvalidRequest otherwise."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest("We could not parse the JSON body of your request. The body must be valid JSON.") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    _check_depth(body)
    return body


def required_model(body: JSON) -> str:
    """The body's `model`: a non-empty string, else InvalidRequest naming it."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required and must be a non-empty string.", param="model")
    return model


def _check_depth(body: dict[str, object]) -> None:
    """400 when arrays and objects nest more than MAX_DEPTH levels (the body itself is level 1)."""
    level: list[object] = [body]
    for _ in range(MAX_DEPTH):
        # Only containers go on to the next level. orjson builds exact dicts and lists, so `type(...) in` is exact,
        # and twice as fast as isinstance: ~0.1 s for a 4 MB body of nothing but empty objects.
        level = [child for container in level for child in _children(container) if type(child) in _CONTAINERS]
        if not level:
            return
    raise InvalidRequest(f"The request body nests arrays and objects more than {MAX_DEPTH} levels deep.")


def _children(container: object) -> Iterable[object]:
    return container.values() if type(container) is dict else cast(list[object], container)


def _check_messages(messages: object) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' is required and must be a non-empty array.", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"'messages[{index}]' must be an object.", param=f"messages[{index}]")
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:  # a list or object role is unhashable
            raise InvalidRequest(
                f"'messages[{index}].role' must be one of {', '.join(sorted(ROLES))}.", param=f"messages[{index}].role"
            )


def optional_field(body: dict[str, object], name: str, kind: type[T], default: T) -> T:
    """The field's value, `default` when absent or null; InvalidRequest naming it when of another JSON type."""
    value = body.get(name)
    if value is None:
        return default
    # bool is an int in Python; JSON true is no valid count.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidRequest(f"'{name}' must be of type {_json_type(kind)}.", param=name)
    return value


def _json_type(kind: type) -> str:
    return {bool: "boolean", int: "integer", dict: "object", str: "string", list: "array"}[kind]
