"""What one finished request shows, beyond its fingerprint, for the detectors that need prices or the tokenizer:
whether it resent the history of a long conversation, and whether a cheaper model could have answered it.

Worked out once, when the request is billed, into request-record fields (hashes and counts only); settle.lua
counts them in the day's insights. Duplicates, retry loops and abandoned answers need no fields of their own:
settle.lua finds them from the fingerprint and the status.

    fields = settlement_fields(fingerprint, usage, status, model, settings, history=lambda: api.history_tokens(...))
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.billing.record import (
    ALTERNATIVE_MICROS,
    ALTERNATIVE_MODEL,
    HISTORY_MICROS,
    HISTORY_TOKENS,
    PREVIOUS_CONVERSATION_HASH,
    Usage,
)
from gateway.config import ModelConfig, Settings
from gateway.insights.fingerprints import Fingerprint


def settlement_fields(
    fingerprint: Fingerprint,
    billed: Usage,
    status: int,
    model: ModelConfig,
    settings: Settings,
    *,
    history: Callable[[], int],
) -> dict[str, str | int]:
    """The fingerprint's record fields, and those of the signals the request shows, billed `billed` and ended
    with `status`. `history` counts the prompt tokens of every message but the last; it is called only for a
    request of a long conversation."""
    fields = fingerprint.record_fields()
    if is_long_conversation(fingerprint, billed, settings):
        resent = max(min(history(), billed.prompt_tokens), 0)
        fields[PREVIOUS_CONVERSATION_HASH] = fingerprint.previous_conversation_hash
        fields[HISTORY_TOKENS] = resent
        # Summarised at that point, the history would not be resent: its cost at the input price is the saving.
        fields[HISTORY_MICROS] = model.price.cost_micros(resent, 0)
    alternative = cheaper_alternative(model, billed, status, settings)
    if alternative is not None:
        fields[ALTERNATIVE_MODEL] = alternative.name
        fields[ALTERNATIVE_MICROS] = alternative.price.cost_micros(
            billed.prompt_tokens, billed.completion_tokens, billed.cached_tokens
        )
    return fields


def is_long_conversation(fingerprint: Fingerprint, billed: Usage, settings: Settings) -> bool:
    """A request resending a history (it has more than one message) past the turns or the prompt size allowed."""
    return (
        fingerprint.messages > 1
        and billed.prompt_tokens > 0
        and (
            fingerprint.turns > settings.insights.long_conversation_turns
            or billed.prompt_tokens > settings.insights.long_prompt_tokens
        )
    )


def cheaper_alternative(model: ModelConfig, billed: Usage, status: int, settings: Settings) -> ModelConfig | None:
    """The configured cheaper model, for an answered request whose prompt and output were both small."""
    if model.cheaper_alternative is None or status != 200:
        return None
    if billed.prompt_tokens > settings.insights.small_prompt_tokens:
        return None
    if billed.completion_tokens > settings.insights.small_completion_tokens:
        return None
    return settings.models.get(model.cheaper_alternative)
