"""Prices against a reference written with fractions.Fraction: the exact cost, rounded up once per request.

Expected values are literals worked out by hand (in the comments) or come from `reference_cost_micros` below,
which shares no code with `Price.cost_micros`.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from gateway.billing.pricing import AmountError, Price, credits_number, credits_to_micros, format_credits

LIMIT = 10**15  # a billion credits, in micro-credits


def reference_cost_micros(
    credits_per_million: tuple[str, str, str | None], prompt: int, completion: int, cached: int = 0
) -> int:
    """The README's rule from credit prices as decimal text: ceil of the exact sum, in micro-credits."""
    input_price, output_price, cached_price = (Fraction(p) if p is not None else None for p in credits_per_million)
    assert input_price is not None and output_price is not None
    cached = min(max(cached, 0), prompt)
    per_cached = input_price if cached_price is None else cached_price
    credits = ((prompt - cached) * input_price + cached * per_cached + completion * output_price) / 1_000_000
    return math.ceil(credits * 1_000_000)


def price(input_credits: str, output_credits: str, cached_credits: str | None = None) -> Price:
    """A Price from credits per million tokens as they are written in config."""
    cached = None if cached_credits is None else credits_to_micros(cached_credits, LIMIT)
    return Price(credits_to_micros(input_credits, LIMIT), credits_to_micros(output_credits, LIMIT), cached)


# 2.5 credits per million input tokens is 2.5 micro-credits per token, 0.15 is 0.15: fractions of a micro-credit.
FRACTIONAL = ("2.5", "10", "1.25")
CHEAP = ("0.15", "0.6", None)


@pytest.mark.parametrize(
    ("prompt", "completion", "cached", "expected"),
    [
        (1, 0, 0, 3),  # 2.5 -> 3: the whole cost is the rounding
        (2, 0, 0, 5),  # 5.0 exactly: nothing to round
        (3, 1, 0, 18),  # 7.5 + 10 = 17.5 -> 18
        (4, 1, 2, 18),  # 2 x 2.5 + 2 x 1.25 + 10 = 17.5 -> 18
        (4, 1, 1, 19),  # 3 x 2.5 + 1.25 + 10 = 18.75 -> 19
        (4, 0, 4, 5),  # 4 x 1.25 = 5.0 exactly
        (1_000_000, 1_000_000, 0, 12_500_000),  # 2.5 + 10 credits
        (0, 0, 0, 0),  # nothing used costs nothing
    ],
)
def test_fractional_prices_round_up_once_per_request(prompt: int, completion: int, cached: int, expected: int) -> None:
    assert price(*FRACTIONAL).cost_micros(prompt, completion, cached) == expected
    assert reference_cost_micros(FRACTIONAL, prompt, completion, cached) == expected


@pytest.mark.parametrize(
    ("prompt", "completion", "expected"),
    [
        (1, 0, 1),  # 0.15 -> 1: a tiny prompt still costs one micro-credit
        (20, 0, 3),  # 3.0 exactly: on the boundary, not rounded past it
        (21, 0, 4),  # 3.15 -> 4
        (7, 3, 3),  # 1.05 + 1.8 = 2.85 -> 3
        (0, 5, 3),  # 3.0 exactly
    ],
)
def test_a_cheap_model_on_and_off_rounding_boundaries(prompt: int, completion: int, expected: int) -> None:
    assert price(*CHEAP).cost_micros(prompt, completion) == expected
    assert reference_cost_micros(CHEAP, prompt, completion) == expected


@pytest.mark.parametrize("prompt", [0, 1, 7, 99, 1_001, 123_457])
@pytest.mark.parametrize("completion", [0, 1, 3, 10_001])
@pytest.mark.parametrize("cached", [0, 1, 50, 10**9])
def test_cost_agrees_with_the_fraction_reference(prompt: int, completion: int, cached: int) -> None:
    for prices in (FRACTIONAL, CHEAP, ("0.000001", "0.000003", "0")):
        assert price(*prices).cost_micros(prompt, completion, cached) == reference_cost_micros(
            prices, prompt, completion, cached
        )


def test_rounding_is_once_per_request_not_per_kind_of_token() -> None:
    # 1 input token at 0.15 and 1 output token at 0.6: 0.75 -> 1, where rounding each part up would give 2.
    assert price(*CHEAP).cost_micros(1, 1) == 1


def test_without_cached_tokens_every_prompt_token_is_at_the_input_price() -> None:
    discounted = price("2", "8", cached_credits="0.5")
    # 1,000 x 2 = 2,000, not 999 x 2 + 0.5 = 1,998.5 -> 1,999
    assert discounted.cost_micros(1_000, 0) == 2_000
    assert discounted.cost_micros(1_000, 0, 0) == 2_000


def test_cached_tokens_at_their_own_price_and_never_more_than_the_prompt() -> None:
    discounted = price("2", "8", cached_credits="0.5")
    assert discounted.cost_micros(1_000, 0, 400) == 1_400  # 600 x 2 + 400 x 0.5
    assert discounted.cost_micros(1_000, 0, 5_000) == 500  # all 1,000 cached: 1,000 x 0.5
    assert discounted.cost_micros(1_000, 0, -7) == 2_000  # a negative count is none
    # Without a cached price, cached tokens cost the input price.
    assert price("2", "8").cost_micros(1_000, 0, 400) == 2_000


def test_affordable_completion_tokens_fit_the_balance_exactly() -> None:
    p = price("2.5", "10")  # 2.5 and 10 micro-credits per token
    # 100 micro-credits, 4 prompt tokens (10): 90 / 10 = 9 output tokens; 9 cost exactly 100 in all.
    assert p.affordable_completion_tokens(100, 4) == 9
    assert p.cost_micros(4, 9) == 100
    # 99 micro-credits: 89 / 10 -> 8
    assert p.affordable_completion_tokens(99, 4) == 8
    # 9 micro-credits cannot pay the prompt: no output token at all, never a negative count.
    assert p.affordable_completion_tokens(9, 4) == 0
    assert p.affordable_completion_tokens(0, 4) == 0


def test_affordable_completion_tokens_with_the_smallest_output_price() -> None:
    p = Price(input_micros_per_million=0, output_micros_per_million=1)  # 0.000001 micro-credits per token
    assert p.affordable_completion_tokens(3, 0) == 3_000_000


def test_free_output_is_unbounded() -> None:
    # No output price: any number of output tokens fits; the bound is above anything a request can ask.
    assert price("1", "0").affordable_completion_tokens(0, 0) >= 2**53


@pytest.mark.parametrize(
    ("amount", "micros"),
    [("1", 1_000_000), ("0.000001", 1), ("999.9085", 999_908_500), ("-2.5", -2_500_000), ("0", 0)],
)
def test_credits_to_micros_is_exact(amount: str, micros: int) -> None:
    assert credits_to_micros(amount, LIMIT) == micros
    assert credits_to_micros(float(amount), LIMIT) == micros


def test_credits_to_micros_refuses_what_it_cannot_hold_exactly() -> None:
    with pytest.raises(AmountError, match=r"^must have at most 6 decimals$"):
        credits_to_micros(0.0000001, LIMIT)
    with pytest.raises(AmountError, match=r"^must be a number of credits: digits"):
        credits_to_micros("0.0000001", LIMIT)
    for value in (float("nan"), float("inf"), float("-inf"), LIMIT, "1000000000.000001"):
        with pytest.raises(AmountError, match=r"^is beyond the limit of 1000000000 credits$"):
            credits_to_micros(value, LIMIT)


def test_the_limit_itself_is_an_amount_in_every_form() -> None:
    """A billion credits, written as an int, a float or text, is exactly the limit; one more is beyond it."""
    for value in (10**9, 1e9, "1000000000", "-1000000000.000000"):
        assert abs(credits_to_micros(value, LIMIT)) == LIMIT
    with pytest.raises(AmountError, match=r"^is beyond the limit of 1000000000 credits$"):
        credits_to_micros(10**9 + 1, LIMIT)
    for value in (True, None, [1], {"credits": 1}):
        with pytest.raises(AmountError) as refused:
            credits_to_micros(value, LIMIT)
        assert str(refused.value) == "must be a number of credits"


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "0"),
        (1, "0.000001"),
        (10, "0.00001"),
        (1_500_000, "1.5"),
        (2_000_000, "2"),
        (999_908_500, "999.9085"),
        (-1, "-0.000001"),
        (-1_500_000, "-1.5"),
        (-3_000_000, "-3"),
    ],
)
def test_format_credits_is_the_exact_decimal(micros: int, text: str) -> None:
    assert format_credits(micros) == text


@pytest.mark.parametrize(
    ("micros", "number"),
    [(0, 0), (2_000_000, 2), (-3_000_000, -3), (1, 0.000001), (1_500_000, 1.5), (2_000_001, 2.000001)],
)
def test_credits_number_is_an_int_when_whole_else_the_exact_float(micros: int, number: float) -> None:
    value = credits_number(micros)
    assert value == number
    assert type(value) is type(number)


def test_cache_writes_are_priced_only_when_counted_and_only_within_the_uncached_prompt() -> None:
    """Input 1, cache writes 2, cached reads 0.5 micro-credits per token (per million: x 10^6)."""
    price = Price(
        input_micros_per_million=1_000_000,
        output_micros_per_million=4_000_000,
        cached_input_micros_per_million=500_000,
        cache_write_micros_per_million=2_000_000,
    )
    assert price.cost_micros(10, 0) == 10  # no cache write unless one is counted
    assert price.cost_micros(10, 0, cache_write_tokens=4) == 6 * 1 + 4 * 2
    # 8 cached of 10: at most 2 written, whatever is claimed; 8 x 0.5 + 2 x 2 = 8
    assert price.cost_micros(10, 0, cached_tokens=8, cache_write_tokens=5) == 8
