"""Built-in tools the provider runs and bills per call, beside tokens: their names, the output items their calls
show up as, and what one request's calls cost (`CallPrices`).

A model prices them per tool type (`[models."NAME".tool_call_credits]`, held here as micro-credits per call). A
dated variant (OpenAI's `web_search_preview_2025_03_11`, Anthropic's `web_search_20250305`) has the price of its
undated name; calls are counted by the output item OpenAI shows them as (Anthropic's web searches as
`web_search_call`). A call is billed at the price of the request's tool that makes it (the dearer one when two do: a
request offering both `web_search` and `web_search_preview`), and a request is billed for at most its bound of
calls (the `max_tool_calls` forwarded), the dearest first. Calls of a tool the request did not offer cost nothing.

    prices = CallPrices.of({"web_search": 10_000}, ["web_search"], limit=16)
    prices.hold_micros                               # 160_000: every call it may make, at the dearest price
    calls, cut = prices.bounded((("web_search_call", 3),))
    prices.cost_micros(calls)                        # 30_000
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# (call item type, calls), one pair per type, sorted: the built-in tool calls of one answer.
Calls = tuple[tuple[str, int], ...]

# The output item a call shows up as (OpenAI Responses' `output` item types) -> the tool types that make it.
CALL_ITEMS: dict[str, tuple[str, ...]] = {
    "web_search_call": ("web_search", "web_search_preview"),
    "file_search_call": ("file_search",),
    "code_interpreter_call": ("code_interpreter",),
    "image_generation_call": ("image_generation",),
    "computer_call": ("computer_use_preview", "computer"),
    "mcp_call": ("mcp",),
    "local_shell_call": ("local_shell",),
}
# The tool types a model may price (undated names).
TOOL_TYPES = tuple(tool for tools in CALL_ITEMS.values() for tool in tools)
# OpenAI dates a variant as _YYYY_MM_DD, Anthropic as _YYYYMMDD.
_DATE_SUFFIX = re.compile(r"_(?:[0-9]{4}_[0-9]{2}_[0-9]{2}|[0-9]{8})\Z", re.ASCII)


def undated(tool_type: str) -> str:
    """The tool type without its date: "web_search_preview_2025_03_11" -> "web_search_preview"."""
    return _DATE_SUFFIX.sub("", tool_type)


def count_calls(kinds: Iterable[str]) -> Calls:
    """`Calls` from one call item type per call."""
    tally: dict[str, int] = {}
    for kind in kinds:
        tally[kind] = tally.get(kind, 0) + 1
    return tuple(sorted(tally.items()))


def total_calls(calls: Calls) -> int:
    return sum(count for _, count in calls)


@dataclass(frozen=True)
class CallPrices:
    """What one request's built-in tool calls may cost: micro-credits per call of each call item type its priced
    tools make, and the most calls billed."""

    micros_per_call: Mapping[str, int]  # call item type -> micro-credits; a type not here is not billed
    limit: int  # the bound on calls forwarded upstream (max_tool_calls)

    @classmethod
    def of(cls, prices: Mapping[str, int], tool_types: Iterable[str], limit: int) -> CallPrices:
        """The prices of a request offering `tool_types`, from a model's per-call `prices` by undated tool type."""
        micros: dict[str, int] = {}
        for tool in {undated(tool) for tool in tool_types}:
            price = prices.get(tool)
            if price is None:
                continue
            for kind, makers in CALL_ITEMS.items():
                if tool in makers:
                    micros[kind] = max(micros.get(kind, 0), price)
        return cls(micros, limit)

    @property
    def hold_micros(self) -> int:
        """The most the calls can cost: `limit` calls at the dearest price."""
        return self.limit * max(self.micros_per_call.values(), default=0)

    def bounded(self, calls: Calls) -> tuple[Calls, bool]:
        """The calls that are billed: those of priced types, at most `limit` of them, the dearest first; and whether
        any priced call was cut."""
        priced = sorted(
            ((kind, count) for kind, count in calls if kind in self.micros_per_call and count > 0),
            key=lambda pair: (-self.micros_per_call[pair[0]], pair[0]),
        )
        billed: dict[str, int] = {}
        room = self.limit
        for kind, count in priced:
            if room > 0:
                billed[kind] = min(count, room)
                room -= billed[kind]
        return tuple(sorted(billed.items())), total_calls(tuple(priced)) > self.limit

    def cost_micros(self, calls: Calls) -> int:
        """What `calls` cost, exactly (prices per call are whole micro-credits)."""
        return sum(count * self.micros_per_call.get(kind, 0) for kind, count in calls)


NO_CALL_PRICES = CallPrices({}, 0)
