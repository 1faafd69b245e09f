"""Embeddings (`POST /v1/embeddings`): a request whose answer has no output tokens.

`input` is counted exactly (proxy/apis/inputs.py, tokens/inputs.py) and the hold covers it alone, at the model's
input price; a batch is one request, one hold, one record. `dimensions`, `encoding_format`, `user` and any other
field go upstream untouched. The answer's `usage` (`prompt_tokens`, `total_tokens`) shows what was billed and
carries the bill (`cost`, `credits_remaining`), as chat's does. An embeddings request never streams.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from gateway.billing.record import Usage
from gateway.billing.scripts import SettleOutcome
from gateway.config import ModelConfig, UpstreamConfig
from gateway.errors import GatewayError
from gateway.insights.fingerprints import Fingerprint
from gateway.proxy.apis import JSON, ApiRequest, StatelessApi, StreamFormat
from gateway.proxy.apis.chat import decode_body, required_model, usage_from_upstream, with_bill
from gateway.proxy.apis.inputs import parse_inputs, text_fingerprint
from gateway.proxy.priced_fields import PRICED_FIELDS
from gateway.tokens import CompletionCounter, TokenCounter


class Embeddings(StatelessApi):
    """The `Api` of /v1/embeddings."""

    name = "embeddings"
    upstream_path = "/embeddings"
    upstream_api = "openai"
    priced_fields = PRICED_FIELDS

    def count_answer(self, request: ApiRequest, prompt_tokens: int, preview: JSON) -> JSON:
        return preview

    def parse(self, raw: bytes) -> ApiRequest:
        body = decode_body(raw)
        model = required_model(body)
        parse_inputs(body, "input", empty_text=False)
        return ApiRequest(
            body, model, stream=False, client_wants_usage=False, max_tokens=None, n=1, produces_output=False
        )

    def count_prompt(self, counter: TokenCounter, request: ApiRequest) -> int:
        return counter.count_input_tokens(request.model, request.body["input"])

    def fingerprint(self, request: ApiRequest) -> Fingerprint:
        return text_fingerprint(request.body)

    def history_tokens(self, counter: TokenCounter, request: ApiRequest, prompt_tokens: int) -> int:
        return 0  # no conversation

    def upstream_body(
        self, request: ApiRequest, model: ModelConfig, upstream: UpstreamConfig, forced_max_tokens: int | None
    ) -> bytes:
        return orjson.dumps({**request.body, "model": model.upstream_model})

    def read_answer(self, payload: Mapping[str, object], counter: CompletionCounter) -> Usage | None:
        return embedding_usage(payload.get("usage"))

    def stamp_answer(self, payload: JSON, usage: Usage, bill: SettleOutcome) -> JSON:
        shown = payload.get("usage")
        if usage.source != "upstream" or usage.clamped or not isinstance(shown, Mapping):
            shown = {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens}
        return {**payload, "usage": with_bill(shown, bill)}

    def stream_format(self, request: ApiRequest, request_id: str) -> StreamFormat:
        raise NotImplementedError("an embeddings request never streams")  # parse sets stream=False

    def error_body(self, error: GatewayError) -> JSON:
        return error.body()

    def parse_count(self, raw: bytes) -> ApiRequest:
        return self.parse(raw)


EMBEDDINGS = Embeddings()


def embedding_usage(usage: object) -> Usage | None:
    """OpenAI's embeddings `usage` (`prompt_tokens`, `total_tokens`), if it is a usable one. A completion count,
    which no embeddings answer has, is read too, so the bound on it (0) shows as a clamp."""
    if not isinstance(usage, Mapping):
        return None
    return usage_from_upstream({"completion_tokens": 0, **usage})
