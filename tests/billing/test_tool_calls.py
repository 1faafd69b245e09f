"""Built-in tool call prices, called directly: dated tool types, the request's dearest tool per call type, the hold,
and the bound on what is billed. Amounts are micro-credits per call, worked out by hand in the comments."""

from __future__ import annotations

import pytest

from gateway.billing.tool_calls import CallPrices, count_calls, undated

# 0.01 credits per web search, 0.025 per preview web search, 0.0025 per file search.
PRICES = {"web_search": 10_000, "web_search_preview": 25_000, "file_search": 2_500}


@pytest.mark.parametrize(
    ("dated", "name"),
    [
        ("web_search_preview_2025_03_11", "web_search_preview"),  # OpenAI's dating
        ("web_search_2025_08_26", "web_search"),
        ("web_search_20250305", "web_search"),  # Anthropic's
        ("code_execution_20250522", "code_execution"),
        ("web_search", "web_search"),
        ("web_search_2025", "web_search_2025"),  # no date: kept
        ("mcp_2025_03_1", "mcp_2025_03_1"),
    ],
)
def test_a_dated_tool_type_is_its_undated_name(dated: str, name: str) -> None:
    assert undated(dated) == name


def test_a_call_costs_the_price_of_the_requests_dearest_tool_that_makes_it() -> None:
    both = CallPrices.of(PRICES, ["web_search", "web_search_preview_2025_03_11", "function"], limit=4)
    assert both.micros_per_call == {"web_search_call": 25_000}
    one = CallPrices.of(PRICES, ["web_search", "file_search", "code_interpreter"], limit=4)
    # code_interpreter has no price here: its calls are not billed.
    assert one.micros_per_call == {"web_search_call": 10_000, "file_search_call": 2_500}


def test_the_hold_is_every_call_at_the_dearest_price() -> None:
    assert CallPrices.of(PRICES, ["web_search", "file_search"], limit=16).hold_micros == 16 * 10_000
    assert CallPrices.of(PRICES, ["web_search"], limit=0).hold_micros == 0
    assert CallPrices.of(PRICES, ["code_interpreter"], limit=16).hold_micros == 0  # nothing priced


def test_at_most_the_bound_is_billed_the_dearest_calls_first() -> None:
    prices = CallPrices.of(PRICES, ["web_search", "file_search"], limit=4)
    calls = count_calls(["file_search_call"] * 3 + ["web_search_call"] * 2 + ["code_interpreter_call"])
    assert calls == (("code_interpreter_call", 1), ("file_search_call", 3), ("web_search_call", 2))
    billed, cut = prices.bounded(calls)
    # 5 priced calls past a bound of 4: both web searches (10,000 each) and two of the three file searches.
    assert billed == (("file_search_call", 2), ("web_search_call", 2)) and cut
    assert prices.cost_micros(billed) == 2 * 2_500 + 2 * 10_000 == 25_000
    assert prices.cost_micros(billed) <= prices.hold_micros
    within, cut = prices.bounded((("web_search_call", 4),))
    assert within == (("web_search_call", 4),) and not cut  # exactly the bound is believed
    assert prices.bounded((("code_interpreter_call", 9),)) == ((), False)  # unpriced calls are not billed
