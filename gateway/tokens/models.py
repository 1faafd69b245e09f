"""What a requested model name means for counting: its base model, encoding and chat format.

A name resolves in this order:

1. an exact entry of the configured override map (deployment alias -> encoding name, or -> another
   model name, followed transitively);
2. a fine-tune `ft:BASE:org::id` becomes BASE, which is looked up again from step 1;
3. the longest matching prefix of `MODEL_PREFIXES`, so dated snapshots (`gpt-4o-2024-08-06`) count
   as their family;
4. the configured default encoding, for unknown and self-hosted models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.tokens.encodings import ENCODING_NAMES

O200K = "o200k_base"
CL100K = "cl100k_base"

# Models whose whole name is the key; prefixes below would match too much ("gpt-4" vs "gpt-4.7").
MODEL_NAMES: dict[str, str] = {"gpt-4": CL100K, "text-embedding-ada-002": CL100K}
MODEL_PREFIXES: dict[str, str] = {
    "gpt-4o": O200K,
    "chatgpt-4o": O200K,
    "gpt-4.1": O200K,
    "gpt-4.5": O200K,
    "gpt-5": O200K,
    "gpt-oss": O200K,
    "o1": O200K,
    "o3": O200K,
    "o4": O200K,
    "gpt-4-": CL100K,
    "gpt-3.5-turbo": CL100K,
    "gpt-35-turbo": CL100K,
    "text-embedding-3-": CL100K,
}
_PREFIXES_LONGEST_FIRST = sorted(MODEL_PREFIXES.items(), key=lambda item: -len(item[0]))
# Bounds alias chains, including loops through fine-tune names that the init check cannot see.
_MAX_HOPS = 16


@dataclass(frozen=True)
class ModelInfo:
    """A resolved model: `base` is the lower-case family name used for format and image tables."""

    base: str
    encoding_name: str


@dataclass(frozen=True)
class ChatFormat:
    """Per-model constants of the chat prompt layout, from OpenAI's "How to count tokens with tiktoken".

    tokens_per_message/name: `<|start|>{role}<|message|>{content}<|end|>` framing; `reply_priming`:
    `<|start|>assistant<|message|>`. Function definitions render the same for every model (`functions`).
    """

    tokens_per_message: int = 3
    tokens_per_name: int = 1
    reply_priming: int = 3


_CHAT_FORMAT = ChatFormat()
# gpt-3.5-turbo-0301 put the name in place of the role: 4 per message, -1 per name.
_LEGACY_0301_FORMAT = ChatFormat(tokens_per_message=4, tokens_per_name=-1)


def chat_format(info: ModelInfo) -> ChatFormat:
    """The prompt-layout constants for a resolved model."""
    return _LEGACY_0301_FORMAT if info.base.startswith("gpt-3.5-turbo-0301") else _CHAT_FORMAT


def fine_tune_base(model: str) -> str:
    """`ft:gpt-4o-mini:org::id` -> `gpt-4o-mini`; any other name is returned unchanged."""
    if model[:3].lower() != "ft:":
        return model
    base, _, _ = model[3:].partition(":")
    return base or model


def table_encoding(base: str, default: str) -> str:
    """The encoding of a lower-case base model name from the built-in tables, else `default`."""
    exact = MODEL_NAMES.get(base)
    if exact is not None:
        return exact
    for prefix, encoding in _PREFIXES_LONGEST_FIRST:
        if base.startswith(prefix):
            return encoding
    return default


class ModelResolver:
    """Maps requested model names to `ModelInfo`, honouring a configured alias map and default encoding.

    Raises ValueError at construction for an unknown default encoding or an alias cycle, so a bad
    config fails at startup rather than per request.
    """

    def __init__(self, default_encoding: str, overrides: Mapping[str, str]) -> None:
        if default_encoding not in ENCODING_NAMES:
            raise ValueError(f"unknown default encoding {default_encoding!r}; known: {sorted(ENCODING_NAMES)}")
        self._default = default_encoding
        self._overrides = dict(overrides)
        for alias in self._overrides:
            self._check_chain(alias)

    def _check_chain(self, alias: str) -> None:
        seen = {alias}
        target = self._overrides[alias]
        while target in self._overrides and target not in ENCODING_NAMES:
            if target in seen:
                raise ValueError(f"model_encodings has an alias cycle through {alias!r}")
            seen.add(target)
            target = self._overrides[target]

    def resolve(self, model: str) -> ModelInfo:
        """Resolve `model`; never raises, unknown names get the default encoding."""
        name = model.strip()
        for _ in range(_MAX_HOPS):
            target = self._overrides.get(name)
            if target is not None and target in ENCODING_NAMES:
                return ModelInfo(base=name.lower(), encoding_name=target)
            next_name = target if target is not None else fine_tune_base(name)
            if next_name == name:
                break
            name = next_name
        base = name.lower()
        return ModelInfo(base=base, encoding_name=table_encoding(base, self._default))
