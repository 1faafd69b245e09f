"""One request's bill in the ledger's words, shared by whoever bills, records or reads it.

`Usage` is what a request is billed for: its token counts and who counted them. The field names below are the
request-record fields settle.lua reads for the usage insights (gateway/insights writes them): hashes and counts
only, never text. A settlement carrying REQUEST_HASH is "fingerprinted".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of a finished request, and who counted them."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # of the prompt tokens, those the provider's cache served
    cache_write_tokens: int = 0  # of the prompt tokens, those the provider wrote to its cache
    reasoning_tokens: int = 0  # of the completion tokens, those the answer never showed
    source: str = "gateway"  # "upstream" when the upstream reported them
    clamped: tuple[str, ...] = ()  # the reported counts that were beyond belief and cut to their bound


NO_USAGE = Usage(0, 0)

# The APIs a request can be metered on (each `proxy.apis` plug-in's `name`): a fixed vocabulary, so the usage
# aggregates, their `api` filter and the metrics' `api` label stay bounded.
API_NAMES = ("chat.completions", "responses", "embeddings", "completions", "messages")
# What usage recorded before requests carried their API was: the only API there was.
LEGACY_API = "chat.completions"

REQUEST_HASH = "req_hash"  # the normalised request
CONVERSATION_HASH = "conv_hash"  # the messages but the last ("" for one message)
MESSAGES = "messages"  # how many
# Only on a request of a long conversation: the conversation hash its previous turn had, the prompt tokens it
# resent (every message but the last) and what they cost at the model's input price.
PREVIOUS_CONVERSATION_HASH = "conv_prev"
HISTORY_TOKENS = "history_tokens"
HISTORY_MICROS = "history_micros"
# Only on a small request to a model with a cheaper alternative: that model, and the request's cost there.
ALTERNATIVE_MODEL = "alt_model"
ALTERNATIVE_MICROS = "alt_micros"
