"""One request's bill in the ledger's words, shared by whoever bills, records or reads it.

`Usage` is what a request is billed for: its token counts, its built-in tool calls (billing/tool_calls.py) and who
counted them. The field names below are request-record fields: those settle.lua reads for the usage insights
(gateway/insights writes them: hashes and counts only, never text), and a request's tool calls. A settlement
carrying REQUEST_HASH is "fingerprinted".
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.billing.tool_calls import Calls


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts and built-in tool calls of a finished request, and who counted them."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # of the prompt tokens, those the provider's cache served
    cache_write_tokens: int = 0  # of the prompt tokens, those the provider wrote to its cache
    reasoning_tokens: int = 0  # of the completion tokens, those the answer never showed
    source: str = "gateway"  # "upstream" when the upstream reported them
    clamped: tuple[str, ...] = ()  # the reported counts that were beyond belief and cut to their bound
    # Built-in tool calls the answer showed, by call item type: billed per call at the request's tool prices.
    tool_calls: Calls = ()


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
# Only on a request billed for built-in tool calls: how many, and what they cost (part of its cost).
TOOL_CALLS = "tool_calls"
TOOL_CALL_MICROS = "tool_call_micros"
# Only on a small request to a model with a cheaper alternative: that model, and the request's cost there.
ALTERNATIVE_MODEL = "alt_model"
ALTERNATIVE_MICROS = "alt_micros"
