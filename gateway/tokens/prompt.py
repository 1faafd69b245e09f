"""Prompt tokens of a whole `/v1/chat/completions` request body.

Messages follow OpenAI's cookbook "How to count tokens with tiktoken" (`num_tokens_from_messages`):
`tokens_per_message` per message, the tokens of every string value of the message (role, name,
tool_call_id...), `tokens_per_name` extra when a name is present, and `reply_priming` once. Content
given as a list of parts counts its text and refusal parts and its images (see `images`); audio and
file parts have no published formula and count zero. Assistant `tool_calls` / `function_call` count
the tokens of their function names and arguments, with no overhead because none is published.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import tiktoken

from gateway.tokens.images import ImageProfile, image_part_tokens
from gateway.tokens.models import ChatFormat
from gateway.tokens.payload import JSONObject
from gateway.tokens.tools import response_format_tokens, tool_choice_tokens, tool_definition_tokens


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
    total = plan.fmt.reply_priming
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, Mapping):
                total += _message_tokens(plan, message)
    total += tool_definition_tokens(plan.count, plan.fmt, body)
    total += tool_choice_tokens(plan.count, body)
    total += response_format_tokens(plan.count, body)
    return total


def _message_tokens(plan: PromptPlan, message: JSONObject) -> int:
    total = plan.fmt.tokens_per_message
    for key, value in message.items():
        if key == "content":
            total += _content_tokens(plan, value)
        elif key == "tool_calls":
            total += _tool_calls_tokens(plan, value)
        elif key == "function_call":
            total += _function_tokens(plan, value)
        elif isinstance(value, str):
            total += plan.count(value)
            if key == "name":
                total += plan.fmt.tokens_per_name
    return total


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


def _tool_calls_tokens(plan: PromptPlan, tool_calls: object) -> int:
    if not isinstance(tool_calls, list):
        return 0
    return sum(_function_tokens(plan, call.get("function")) for call in tool_calls if isinstance(call, Mapping))


def _function_tokens(plan: PromptPlan, function: object) -> int:
    if not isinstance(function, Mapping):
        return 0
    total = 0
    for key in ("name", "arguments"):
        value = function.get(key)
        if isinstance(value, str):
            total += plan.count(value)
    return total
