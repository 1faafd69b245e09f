"""OpenAI Responses (`POST /v1/responses`): the `Api` of the provider's stateful API.

The request: `model`; `input`, a string or a list of items (messages whose content is a string or input_text,
input_image, input_file parts; function_call and function_call_output items; reasoning items; ...);
`instructions`; `tools` (function tools are flat: `{type: function, name, description, parameters, strict}`; the
built-in ones are priced fields, proxy/priced_fields.py); `max_output_tokens`, the output bound (the gateway sets
it when absent, as for chat); `max_tool_calls`, the bound on built-in tool calls (the gateway sets it when absent
and the model prices a tool offered, proxy/tool_calls.py); `stream`; `store`; `previous_response_id`, an earlier
answer, or `conversation` (an id, or `{"id": ...}`), a conversation object, whose context the provider bills
again as input (`prior_context`); never both; `background: true`, an answer the provider goes on making after the
request was answered, held at creation and billed once it is seen finished (`finishes_later`,
proxy/background.py). Refused with 400, as what the gateway could not hold or bill for: `prompt` (a stored prompt
template).

The request is checked and counted by `response_items` (the chat request it amounts to, with chat's rules).

Usage is `input_tokens` (`input_tokens_details.cached_tokens`) and `output_tokens`
(`output_tokens_details.reasoning_tokens`), with the built-in tool calls among the answer's `output` items
(`web_search_call` and the like, each id once; billing/tool_calls.py): a stream's are its terminal event's
`response.output`, and the calls a client was sent those of the `response.output_item.added` and `.done` events it
got. The bill rides in usage as `cost` and `credits_remaining`: on a plain answer, and on a stream's terminal event
(`response.completed`, `response.incomplete`, `response.failed`), the only one that carries usage. A stream has
no end marker; it ends after its terminal event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import orjson

from gateway.billing.record import Usage
from gateway.billing.scripts import SettleOutcome
from gateway.billing.tool_calls import CALL_ITEMS, count_calls
from gateway.config import ModelConfig, UpstreamConfig
from gateway.errors import GatewayError
from gateway.insights.fingerprints import Fingerprint, take_fingerprint
from gateway.proxy.apis import JSON, ApiRequest, PriorContext
from gateway.proxy.apis.chat import with_bill
from gateway.proxy.apis.response_items import chat_equivalent, conversation_id, parse_responses_request
from gateway.proxy.priced_fields import RESPONSES_PRICED_FIELDS
from gateway.proxy.sse import DONE, Event, encode_typed_event
from gateway.tokens import CompletionCounter, TokenCounter

TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
LIFECYCLE = frozenset({"response.created", "response.queued", "response.in_progress"})


class Responses:
    """The `Api` of /v1/responses."""

    name = "responses"
    upstream_path = "/responses"
    upstream_api = "openai"
    priced_fields = RESPONSES_PRICED_FIELDS

    def parse(self, raw: bytes) -> ApiRequest:
        return parse_responses_request(raw)

    def parse_count(self, raw: bytes) -> ApiRequest:
        return parse_responses_request(raw)

    def count_prompt(self, counter: TokenCounter, request: ApiRequest) -> int:
        return counter.count_prompt_tokens(request.model, chat_equivalent(request.body))

    def prior_context(self, request: ApiRequest) -> PriorContext | None:
        previous = request.body.get("previous_response_id")
        if isinstance(previous, str):
            return PriorContext("previous_response_id", previous, "answer")
        conversation = conversation_id(request.body)
        return None if conversation is None else PriorContext("conversation", conversation, "conversation")

    def finishes_later(self, request: ApiRequest) -> bool:
        return request.body.get("background") is True

    def count_answer(self, request: ApiRequest, prompt_tokens: int, preview: JSON) -> JSON:
        return {"object": "response.input_tokens", "input_tokens": prompt_tokens}

    def fingerprint(self, request: ApiRequest) -> Fingerprint:
        chat = chat_equivalent(request.body)
        others = {name: value for name, value in request.body.items() if name not in ("input", "instructions")}
        return take_fingerprint({**others, "messages": chat["messages"] or [{"role": "user", "content": ""}]})

    def history_tokens(self, counter: TokenCounter, request: ApiRequest, prompt_tokens: int) -> int:
        """All but the last input item: the prompt (with the earlier answer's context) less the request with its
        last item alone."""
        items = request.body.get("input")
        last = {**request.body, "input": items[-1:]} if isinstance(items, list) else request.body
        return max(prompt_tokens - counter.count_prompt_tokens(request.model, chat_equivalent(last)), 0)

    def upstream_body(
        self, request: ApiRequest, model: ModelConfig, upstream: UpstreamConfig, forced_max_tokens: int | None
    ) -> bytes:
        body = dict(request.body)
        body["model"] = model.upstream_model
        if forced_max_tokens is not None:
            body["max_output_tokens"] = forced_max_tokens
        if request.max_tool_calls is not None:
            body["max_tool_calls"] = request.max_tool_calls
        return orjson.dumps(body)  # usage always comes, streamed or not

    def read_answer(self, payload: Mapping[str, object], counter: CompletionCounter) -> Usage | None:
        output = payload.get("output")
        counter.add_response({"choices": output_choices(output)})
        for kind, key in output_calls(output):
            counter.add_builtin_call(kind, key)
        return usage_from_upstream(payload.get("usage"), output)

    def answer_id(self, payload: Mapping[str, object]) -> str | None:
        answer_id = payload.get("id")
        return answer_id if isinstance(answer_id, str) and payload.get("object") == "response" else None

    def stamp_answer(self, payload: JSON, usage: Usage, bill: SettleOutcome) -> JSON:
        shown = payload.get("usage")
        if usage.source != "upstream" or usage.clamped or not isinstance(shown, Mapping):
            shown = usage_object(usage)
        return {**payload, "usage": with_bill(shown, bill)}

    def stream_format(self, request: ApiRequest, request_id: str) -> ResponsesStream:
        return ResponsesStream(request, request_id)

    def error_body(self, error: GatewayError) -> JSON:
        return error.body()


class ResponsesStream:
    """The `StreamFormat` of Responses' typed events; keeps the response as the lifecycle events show it."""

    wants_bill = True  # the terminal event always carries usage, and so the bill

    def __init__(self, request: ApiRequest, request_id: str):
        self.request = request
        self.request_id = request_id
        self.response: Mapping[str, object] = {}  # the latest lifecycle event's response
        self.sequence = 0  # the latest event's sequence_number

    def is_end(self, event: Event) -> bool:
        return event.data == DONE  # not OpenAI's (its streams just end); some compatible servers send it

    def usage(self, chunk: Mapping[str, object]) -> Usage | None:
        response = chunk.get("response")
        if chunk.get("type") not in TERMINAL or not isinstance(response, Mapping):
            return None
        return usage_from_upstream(response.get("usage"), response.get("output"))

    def prompt_usage(self, chunk: Mapping[str, object]) -> Usage | None:
        return None  # only the terminal event has usage

    def is_final(self, chunk: Mapping[str, object]) -> bool:
        return chunk.get("type") in TERMINAL

    def is_error(self, chunk: Mapping[str, object]) -> bool:
        return chunk.get("type") in ("error", "response.failed") or isinstance(chunk.get("error"), dict)

    def stamp(self, chunk: Mapping[str, object], usage: Usage, bill: SettleOutcome | None) -> JSON:
        response = chunk.get("response")
        response = response if isinstance(response, Mapping) else {}
        shown = response.get("usage")
        if usage.clamped or not isinstance(shown, Mapping):
            shown = usage_object(usage)  # what is billed, not what was claimed
        return {**chunk, "response": {**response, "usage": shown if bill is None else with_bill(shown, bill)}}

    def closing_event(self, usage: Usage, bill: SettleOutcome, last: Mapping[str, object]) -> JSON:
        """A `response.incomplete` event: the upstream ended without its terminal event."""
        response = self.response or {"id": self.request_id, "object": "response", "model": self.request.model}
        return {
            "type": "response.incomplete",
            "sequence_number": self.sequence + 1,
            "response": {**response, "status": "incomplete", "usage": with_bill(usage_object(usage), bill)},
        }

    def count(self, counter: CompletionCounter, chunk: Mapping[str, object]) -> None:
        kind = chunk.get("type")
        sequence = chunk.get("sequence_number")
        if isinstance(sequence, int):
            self.sequence = sequence
        if kind in LIFECYCLE and isinstance(chunk.get("response"), Mapping):
            self.response = cast(Mapping[str, object], chunk["response"])
            return
        index = chunk.get("output_index")
        index = index if isinstance(index, int) and not isinstance(index, bool) and index >= 0 else 0
        delta = chunk.get("delta")
        if kind == "response.output_text.delta":
            counter.add_chunk(_choice(index, {"content": delta}))
        elif kind == "response.refusal.delta":
            counter.add_chunk(_choice(index, {"refusal": delta}))
        elif kind == "response.function_call_arguments.delta":
            counter.add_chunk(_choice(index, {"tool_calls": [{"index": 0, "function": {"arguments": delta}}]}))
        elif kind in ("response.output_item.added", "response.output_item.done"):
            item = chunk.get("item")
            if not isinstance(item, Mapping):
                return
            if item.get("type") in CALL_ITEMS:
                counter.add_builtin_call(str(item["type"]), _item_key(item, index))
            elif item.get("type") == "function_call" and kind == "response.output_item.added":
                call = {"index": 0, "function": {"name": item.get("name")}}
                counter.add_chunk(_choice(index, {"tool_calls": [call]}))

    def encode(self, event: Mapping[str, object]) -> bytes:
        return encode_typed_event(event, "response.event")

    def answer_id(self, chunk: Mapping[str, object]) -> str | None:
        response = chunk.get("response")
        if chunk.get("type") not in LIFECYCLE or not isinstance(response, Mapping):
            return None
        answer_id = response.get("id")
        return answer_id if isinstance(answer_id, str) else None


RESPONSES = Responses()


def _choice(index: int, delta: JSON) -> JSON:
    return {"choices": [{"index": index, "delta": delta}]}


def output_choices(output: object) -> list[JSON]:
    """A plain answer's output items as chat choices, one per item, for the completion count: a message's text
    and refusals, a function call's name and arguments."""
    choices: list[JSON] = []
    for index, item in enumerate(output if isinstance(output, list) else []):
        if not isinstance(item, Mapping):
            continue
        if item.get("type") == "function_call":
            function = {"name": item.get("name"), "arguments": item.get("arguments")}
            choices.append({"index": index, "message": {"tool_calls": [{"function": function}]}})
        elif item.get("type") == "message" and isinstance(item.get("content"), list):
            parts = [part for part in cast(list[object], item["content"]) if isinstance(part, Mapping)]
            text = "".join(str(p.get("text")) for p in parts if isinstance(p.get("text"), str))
            refusal = "".join(str(p.get("refusal")) for p in parts if isinstance(p.get("refusal"), str))
            choices.append({"index": index, "message": {"content": text, "refusal": refusal}})
    return choices


def output_calls(output: object) -> list[tuple[str, str]]:
    """The built-in tool calls in an answer's output items: (call item type, the item's id or position)."""
    items = output if isinstance(output, list) else []
    return [
        (str(item["type"]), _item_key(item, position))
        for position, item in enumerate(items)
        if isinstance(item, Mapping) and item.get("type") in CALL_ITEMS
    ]


def _item_key(item: Mapping[str, object], position: int) -> str:
    """What tells one output item from another: its id, else its position in the output."""
    item_id = item.get("id")
    return f"id:{item_id}" if isinstance(item_id, str) else f"at:{position}"


def usage_object(usage: Usage) -> JSON:
    """Responses' `usage` object of what is billed."""
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def usage_from_upstream(usage: object, output: object = None) -> Usage | None:
    """The upstream's Responses `usage`, if it is a usable one (counts are whole numbers, never negative), with the
    built-in tool calls of the answer's `output`, each item once."""
    if not isinstance(usage, Mapping):
        return None
    prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
    if not _count(prompt) or not _count(completion):
        return None
    assert isinstance(prompt, int) and isinstance(completion, int)
    return Usage(
        prompt,
        completion,
        cached_tokens=min(_detail(usage.get("input_tokens_details"), "cached_tokens"), prompt),
        reasoning_tokens=min(_detail(usage.get("output_tokens_details"), "reasoning_tokens"), completion),
        source="upstream",
        tool_calls=count_calls(kind for kind, _ in dict.fromkeys(output_calls(output))),
    )


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _detail(details: object, name: str) -> int:
    value = details.get(name) if isinstance(details, Mapping) else None
    return value if _count(value) and isinstance(value, int) else 0
