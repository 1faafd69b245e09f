"""The operations and schemas of the metered APIs beside chat that take text inputs: embeddings and legacy
completions (their routes and their `count_tokens` twins)."""

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
    nullable,
    obj,
    op,
    ref,
)
from gateway.proxy.apis.chat import MAX_DEPTH, MAX_N
from gateway.proxy.apis.completions import DEFAULT_MAX_TOKENS, MAX_BEST_OF
from gateway.proxy.apis.inputs import MAX_ITEMS, MAX_TOKEN_ID

TOKEN_ARRAY = array({"type": "integer", "minimum": 0, "maximum": MAX_TOKEN_ID}, minItems=1)


def text_input(min_length: int) -> Schema:
    """A string, an array of strings, a token array or an array of token arrays."""
    text = {"type": "string", "minLength": min_length}
    return {
        "anyOf": [
            text,
            array(text, minItems=1, maxItems=MAX_ITEMS),
            TOKEN_ARRAY,
            array(TOKEN_ARRAY, minItems=1, maxItems=MAX_ITEMS),
        ]
    }


BILL = {
    "cost": NUMBER | {"description": "Credits charged for this request (exact decimal)."},
    "credits_remaining": NUMBER | {"description": "The balance after this request, in credits."},
}
TEXT_API_SCHEMAS: dict[str, Schema] = {
    "EmbeddingRequest": obj(
        {
            "model": {"type": "string", "minLength": 1, "description": "A model configured on the gateway."},
            "input": text_input(1),
            "dimensions": {"description": "Passed upstream untouched."},
            "encoding_format": {"description": "`float` or `base64`, passed upstream untouched."},
            "user": {"description": "Passed upstream untouched."},
        },
        required=("model", "input"),
        extra=True,
    )
    | {
        "description": "OpenAI's embeddings request: counted exactly, held and billed at the model's input price. "
        f"Every field but `model` goes upstream untouched; arrays and objects may nest at most {MAX_DEPTH} levels."
    },
    "Embeddings": obj(
        {"object": {"const": "list"}, "data": array({"type": "object"}), "usage": ref("EmbeddingUsage")},
        required=("data", "usage"),
        extra=True,
    ),
    "EmbeddingUsage": obj(
        {"prompt_tokens": INTEGER, "total_tokens": INTEGER, **BILL},
        required=("prompt_tokens", "total_tokens"),
        extra=True,
    ),
    "CompletionRequest": obj(
        {
            "model": {"type": "string", "minLength": 1, "description": "A model configured on the gateway."},
            "prompt": text_input(0),
            "max_tokens": nullable({"type": "integer", "minimum": 0, "default": DEFAULT_MAX_TOKENS}),
            "n": nullable({"type": "integer", "minimum": 1, "maximum": MAX_N}),
            "best_of": nullable({"type": "integer", "minimum": 1, "maximum": MAX_BEST_OF}),
            "echo": nullable({"type": "boolean"}),
            "suffix": nullable(STRING),
            "stream": nullable({"type": "boolean"}),
            "stream_options": nullable(obj({"include_usage": {"type": "boolean"}}, required=(), extra=True)),
        },
        required=("model", "prompt"),
        extra=True,
    )
    | {
        "description": "OpenAI's legacy completions request. `max_tokens` defaults to "
        f"{DEFAULT_MAX_TOKENS}, and is forwarded; the hold covers `best_of` (at least `n`; else `n`) completions "
        "per prompt. `best_of` above `n` cannot be streamed. `echo`, `suffix`, `logprobs` and `stop` go upstream "
        "untouched."
    },
    "Completion": obj({"choices": array({"type": "object"}), "usage": ref("Usage")}, extra=True),
}


def text_api_operations() -> list[Operation]:
    passed_through = {"default": content(ref("Error"), "An upstream error, passed through with its status (free).")}
    event = obj(
        {"data": {"type": "string", "description": "A text_completion chunk as JSON, then [DONE]."}}, extra=True
    )
    return [
        op(
            "POST /v1/embeddings",
            "Metered embeddings: one request, one hold, one record for a whole batch",
            TENANT,
            ref("Embeddings"),
            body=ref("EmbeddingRequest"),
            fails=(*BODY_ERRORS, 402, 404, 502, 504),
            others=passed_through,
        ),
        op(
            "POST /v1/embeddings/count_tokens",
            "An embeddings body's tokens and price, as the proxy would count and hold it (free, not sent)",
            TENANT,
            ref("TokenCount"),
            body=ref("EmbeddingRequest"),
            fails=(*BODY_ERRORS, 404),
        ),
        op(
            "POST /v1/completions",
            "A metered legacy completion (SSE with `stream: true`)",
            TENANT,
            MediaTypes({"application/json": ref("Completion"), "text/event-stream": event}),
            body=ref("CompletionRequest"),
            fails=(*BODY_ERRORS, 402, 404, 502, 504),
            others=passed_through,
        ),
        op(
            "POST /v1/completions/count_tokens",
            "A completions body's prompt tokens and price range, as the proxy would count and hold it (free, not sent)",
            TENANT,
            ref("TokenCount"),
            body=ref("CompletionRequest"),
            fails=(*BODY_ERRORS, 404),
        ),
    ]
