"""Prompt tokens of a whole `/v1/chat/completions` request body.

Messages follow OpenAI's cookbook "How to count tokens with tiktoken" (`num_tokens_from_messages`):
`tokens_per_message` per message, the tokens of its role, content and name (`tokens_per_name` extra with
a name), and `reply_priming` once. Content given as a list of parts counts its text and refusal parts and
its images (see `images`); audio and file parts have no published formula and count zero. Function
definitions, tool choices, function results and assistant tool calls are counted as the API renders them
(see `functions`, which also holds the message loop so that the two agree on every message).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import tiktoken

from gateway.tokens.functions import count_prompt_tokens_with_functions
from gateway.tokens.images import ImageProfile, image_part_tokens
from gateway.tokens.models import ChatFormat
from gateway.tokens.payload import JSONObject


@dataclass(frozen=True)
class PromptPlan:
    """Everything model-specific the prompt count needs, resolved once per model name."""

    encoding: tiktoken.Encoding
    fmt: ChatFormat
    image_profile: ImageProfile
    remote_image_size: tuple[int, int]

    def count(self, text: str) -> int:
        """Tokens of plain text; special-token strings in user text count as ordinary text, as upstream."""
        return len(self.encoding.encode_ordinary(text)) if text else 0


def count_prompt_tokens(plan: PromptPlan, body: JSONObject) -> int:
    """Prompt tokens of `body`; malformed parts are skipped, never raised on."""
    return count_prompt_tokens_with_functions(
        plan.count, plan.fmt, body, lambda content: _content_tokens(plan, content)
    )


def _content_tokens(plan: PromptPlan, content: object) -> int:
    if isinstance(content, str):
        return plan.count(content)
    if not isinstance(content, list):
        return 0
    total = 0
    for part in content:
        if isinstance(part, str):
            total += plan.count(part)
        elif not isinstance(part, Mapping):
            continue
        elif part.get("type") == "image_url":
            total += image_part_tokens(plan.image_profile, part.get("image_url"), plan.remote_image_size)
        else:
            for key in ("text", "refusal"):
                text = part.get(key)
                if isinstance(text, str):
                    total += plan.count(text)
    return total
