"""The operations and schemas of Anthropic's Messages API (`/v1/messages` and its `count_tokens` twin): Anthropic's
request and answer shapes, and its error shape on both routes."""

from __future__ import annotations

from gateway.openapi.builders import (
    BODY_ERRORS,
    INTEGER,
    NUMBER,
    STRING,
    TENANT,
    MediaTypes,
    Operation,
    Schema,
    array,
    content,
    obj,
    op,
    ref,
)
from gateway.proxy.apis.messages import ROLES


def messages_request(*, to_count: bool = False) -> Schema:
    """Anthropic's Messages body as the gateway checks it; count_tokens takes no max_tokens."""
    block = obj({"type": STRING}, required=("type",), extra=True)
    schema = obj(
        {
            "model": {"type": "string", "minLength": 1, "description": 'A model of an `api = "anthropic"` upstream.'},
            "messages": array(
                obj(
                    {"role": {"enum": sorted(ROLES)}, "content": {"anyOf": [STRING, array(block)]}},
                    required=("role", "content"),
                    extra=True,
                ),
                minItems=1,
            ),
            "max_tokens": {"type": "integer", "minimum": 1},
            "system": {"anyOf": [STRING, array(obj({"type": {"const": "text"}, "text": STRING}, extra=True))]},
            "tools": array({"type": "object"}),
            "stream": {"type": "boolean"},
            "thinking": obj(
                {"type": STRING, "budget_tokens": {"type": "integer", "minimum": 1024}}, required=("type",), extra=True
            ),
        },
        required=("model", "messages") if to_count else ("model", "messages", "max_tokens"),
        extra=True,
    )
    return schema | {
        "description": "Anthropic's Messages body. The gateway checks the fields named here and forwards the rest; "
        "`max_tokens` is the hold's output bound (a `thinking` budget must be below it), the input is an upper "
        "estimate (Claude's tokenizer is not public) and the bill the provider's usage."
    }


MESSAGES_SCHEMAS: dict[str, Schema] = {
    "AnthropicError": obj(
        # extra: an upstream's error passes through, scrubbed, with whatever else it holds
        {"type": {"const": "error"}, "error": obj({"type": STRING, "message": STRING}, extra=True)}
    ),
    "MessagesRequest": messages_request(),
    "MessagesCountRequest": messages_request(to_count=True),
    "Message": obj({"content": array({"type": "object"}), "usage": ref("MessagesUsage")}, extra=True),
    "MessagesUsage": obj(
        {
            "input_tokens": INTEGER,
            "output_tokens": INTEGER,
            "cache_creation_input_tokens": INTEGER,
            "cache_read_input_tokens": INTEGER,
            "cost": NUMBER | {"description": "Credits charged for this request (exact decimal)."},
            "credits_remaining": NUMBER | {"description": "The balance after this request, in credits."},
        },
        required=("input_tokens", "output_tokens"),
        extra=True,
    ),
    "MessagesTokenCount": obj({"input_tokens": INTEGER}),
}


def messages_operations() -> list[Operation]:
    """/v1/messages and /v1/messages/count_tokens, their errors in Anthropic's shape."""
    # For SSE the schema describes one event, as OpenAPI 3.1 tools read it.
    event = obj(
        {"event": STRING, "data": {"type": "string", "description": "The event's JSON (message_start, ...)."}},
        extra=True,
    )
    answer = MediaTypes({"application/json": ref("Message"), "text/event-stream": event})
    return [
        op(
            "POST /v1/messages",
            "A metered Anthropic Messages call (SSE with `event:` lines with `stream: true`)",
            TENANT,
            answer,
            body=ref("MessagesRequest"),
            fails=(*BODY_ERRORS, 402, 404, 502, 504),
            others={"default": content(ref("AnthropicError"), "An upstream error, passed through (free).")},
            error="AnthropicError",
        ),
        op(
            "POST /v1/messages/count_tokens",
            "A Messages body's input tokens as the gateway estimates and would hold them (free, never forwarded)",
            TENANT,
            ref("MessagesTokenCount"),
            body=ref("MessagesCountRequest"),
            fails=(*BODY_ERRORS, 404),
            error="AnthropicError",
        ),
    ]
