"""`TokenCounter`: the one object the proxy holds for counting prompt and completion tokens."""

from __future__ import annotations

from collections.abc import Mapping

import tiktoken

from gateway.tokens.completion import CompletionCounter
from gateway.tokens.encodings import get_encoding
from gateway.tokens.images import image_profile
from gateway.tokens.inputs import count_input_tokens
from gateway.tokens.models import ModelResolver, chat_format
from gateway.tokens.payload import JSONObject
from gateway.tokens.prompt import PromptPlan, count_prompt_tokens

# Plans are keyed by client-supplied model names, so the cache is bounded.
_MAX_PLANS = 4096


class TokenCounter:
    """Counts tokens of requests and responses per model; pure, safe to share across requests.

        counter = TokenCounter(model_encodings={"my-deployment": "gpt-4o"})
        prompt = counter.count_prompt_tokens("my-deployment", body)

    `model_encodings` maps an alias to an encoding name (`"o200k_base"`) or to another model name
    whose encoding, prompt format and image pricing it then shares. Unknown models use
    `default_encoding`. Remote image URLs are never fetched; they count as `remote_image_size`.
    Raises ValueError for an unknown default encoding or an alias cycle.
    """

    def __init__(
        self,
        *,
        default_encoding: str = "o200k_base",
        model_encodings: Mapping[str, str] | None = None,
        remote_image_size: tuple[int, int] = (1024, 1024),
    ) -> None:
        width, height = remote_image_size
        if width <= 0 or height <= 0:
            raise ValueError(f"remote_image_size must be positive, got {remote_image_size!r}")
        self._resolver = ModelResolver(default_encoding, model_encodings or {})
        self._remote_image_size = (width, height)
        self._plans: dict[str, PromptPlan] = {}

    def encoding_name_for(self, model: str) -> str:
        """The tiktoken encoding name `model` resolves to (does not load the vocabulary)."""
        return self._resolver.resolve(model).encoding_name

    def encoding_for(self, model: str) -> tiktoken.Encoding:
        """The process-wide `tiktoken.Encoding` for `model` (loaded from package data on first use)."""
        return self._plan(model).encoding

    def count_prompt_tokens(self, model: str, body: JSONObject) -> int:
        """Prompt tokens of a whole /v1/chat/completions request body, as the API bills them."""
        return count_prompt_tokens(self._plan(model), body)

    def count_input_tokens(self, model: str, value: object) -> int:
        """Tokens of an embeddings `input` or a completions `prompt` (a string, a list of strings, a token array
        or a list of token arrays), as the API bills them: the text's tokens, a token array's length."""
        return count_input_tokens(self._plan(model).encoding, value)

    def count_text_tokens(self, model: str, text: str) -> int:
        """Tokens of plain text (special-token strings count as ordinary text)."""
        return self._plan(model).count(text)

    def completion_counter(self, model: str) -> CompletionCounter:
        """A fresh accumulator for the completion of one request to `model`."""
        return CompletionCounter(self._plan(model).encoding)

    def _plan(self, model: str) -> PromptPlan:
        # Resolved once per model name: the per-request cost is one dict lookup.
        plan = self._plans.get(model)
        if plan is None:
            info = self._resolver.resolve(model)
            plan = PromptPlan(
                encoding=get_encoding(info.encoding_name),
                fmt=chat_format(info),
                image_profile=image_profile(info.base),
                remote_image_size=self._remote_image_size,
            )
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            self._plans[model] = plan
        return plan
