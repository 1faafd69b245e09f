"""Legacy completions (`POST /v1/completions`), plain and streamed.

`prompt` is a string, a list of strings, a token array or a list of token arrays (proxy/apis/inputs.py), counted
exactly with no chat framing, a `suffix` once per prompt. `max_tokens` defaults to 16, as OpenAI's does, and that
default is forwarded, so no upstream produces more than the hold covers; the hold covers every completion
generated: `best_of` (else `n`) per prompt. `echo`, `suffix`, `logprobs` and `stop` go upstream untouched. With
`echo` each choice's text starts with its prompt: the client is billed the completion tokens only, as OpenAI
bills them, and the gateway's own count leaves the echo out. Usage and the bill are chat's (`usage`, the final
chunk with no choices, `[DONE]`); the chunks' object is `text_completion`.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from gateway.billing.record import Usage
from gateway.billing.scripts import SettleOutcome
from gateway.config import ModelConfig, UpstreamConfig
from gateway.errors import GatewayError, InvalidRequest
from gateway.insights.fingerprints import Fingerprint
from gateway.proxy.apis import JSON, ApiRequest, StatelessApi
from gateway.proxy.apis.chat import (
    CHAT,
    MAX_N,
    ChatStream,
    decode_body,
    optional_field,
    required_model,
    usage_from_upstream,
)
from gateway.proxy.apis.inputs import item_count, parse_inputs, text_fingerprint
from gateway.proxy.priced_fields import PRICED_FIELDS
from gateway.tokens import CompletionCounter, TokenCounter

DEFAULT_MAX_TOKENS = 16  # OpenAI's, when the client sets none
MAX_BEST_OF = 20


class Completions(StatelessApi):
    """The `Api` of /v1/completions."""

    name = "completions"
    upstream_path = "/completions"
    upstream_api = "openai"
    priced_fields = PRICED_FIELDS

    def count_answer(self, request: ApiRequest, prompt_tokens: int, preview: JSON) -> JSON:
        return preview

    def parse(self, raw: bytes) -> ApiRequest:
        return parse_completion_request(raw)

    def count_prompt(self, counter: TokenCounter, request: ApiRequest) -> int:
        body = request.body
        prompt_tokens = counter.count_input_tokens(request.model, body["prompt"])
        suffix = body.get("suffix")
        if isinstance(suffix, str) and suffix:  # read with every prompt
            prompt_tokens += counter.count_text_tokens(request.model, suffix) * item_count(body["prompt"])
        return prompt_tokens

    def fingerprint(self, request: ApiRequest) -> Fingerprint:
        return text_fingerprint(request.body)

    def history_tokens(self, counter: TokenCounter, request: ApiRequest, prompt_tokens: int) -> int:
        return 0  # no conversation

    def upstream_body(
        self, request: ApiRequest, model: ModelConfig, upstream: UpstreamConfig, forced_max_tokens: int | None
    ) -> bytes:
        body = dict(request.body)
        body["model"] = model.upstream_model
        body["max_tokens"] = request.max_tokens  # the client's, or OpenAI's default made explicit for any upstream
        if request.stream and upstream.stream_usage:
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        return orjson.dumps(body)

    def read_answer(self, payload: Mapping[str, object], counter: CompletionCounter) -> Usage | None:
        counter.add_text_completion(payload)
        return usage_from_upstream(payload.get("usage"))

    def stamp_answer(self, payload: JSON, usage: Usage, bill: SettleOutcome) -> JSON:
        return CHAT.stamp_answer(payload, usage, bill)

    def stream_format(self, request: ApiRequest, request_id: str) -> CompletionStream:
        return CompletionStream(request, request_id)

    def error_body(self, error: GatewayError) -> JSON:
        return error.body()

    def parse_count(self, raw: bytes) -> ApiRequest:
        return self.parse(raw)


class CompletionStream(ChatStream):
    """The `StreamFormat` of `text_completion` chunks: chat's, but for what the chunks carry."""

    chunk_object = "text_completion"

    def count(self, counter: CompletionCounter, chunk: Mapping[str, object]) -> None:
        counter.add_text_completion(chunk)


COMPLETIONS = Completions()


def parse_completion_request(raw: bytes) -> ApiRequest:
    """Decode and check the body; raise InvalidRequest naming the offending field."""
    body = decode_body(raw)
    model = required_model(body)
    prompts = parse_inputs(body, "prompt", empty_text=True)
    stream = optional_field(body, "stream", bool, False)
    options = optional_field(body, "stream_options", dict, {})
    include_usage = options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise InvalidRequest("'stream_options.include_usage' must be a boolean.", param="stream_options")
    n = optional_field(body, "n", int, 1)
    if not 1 <= n <= MAX_N:
        raise InvalidRequest(f"'n' must be between 1 and {MAX_N}.", param="n")
    generated = _best_of(body, n, stream)
    max_tokens = optional_field(body, "max_tokens", int, DEFAULT_MAX_TOKENS)
    if max_tokens < 0:  # 0 is allowed: with `echo`, the prompt's logprobs alone
        raise InvalidRequest("'max_tokens' must be a non-negative integer.", param="max_tokens")
    optional_field(body, "suffix", str, "")
    echo = optional_field(body, "echo", bool, False)
    return ApiRequest(
        body,
        model,
        stream,
        stream and include_usage,
        max_tokens,
        generated * len(prompts),
        echo=(prompts, n) if echo else None,
    )


def _best_of(body: JSON, n: int, stream: bool) -> int:
    """Completions generated per prompt: `best_of` candidates (at least n, at most MAX_BEST_OF), else n."""
    if body.get("best_of") is None:
        return n
    best_of = optional_field(body, "best_of", int, n)
    if not n <= best_of <= MAX_BEST_OF:
        raise InvalidRequest(f"'best_of' must be at least 'n' ({n}) and at most {MAX_BEST_OF}.", param="best_of")
    if stream and best_of > n:
        raise InvalidRequest("'best_of' above 'n' cannot be streamed.", param="best_of")
    return best_of
