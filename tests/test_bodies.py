"""Credit amounts in request bodies (admin grants and accounts, webhook thresholds): exact micro-credits, and the
bounds that keep every amount exact in Redis's Lua (doubles are exact up to 2**53)."""

from __future__ import annotations

import pytest

from gateway.bodies import parse_credits
from gateway.errors import InvalidRequest


@pytest.mark.parametrize(
    ("value", "micros"),
    [
        (5, 5_000_000),
        ("1.000001", 1_000_001),  # the sixth decimal is one micro-credit
        (0.5, 500_000),
        ("1000000000", 10**15),  # a billion credits: the largest amount
        (-1_000_000_000, -(10**15)),  # ...either way, where negatives are allowed
    ],
)
def test_amounts_are_exact_micro_credits_up_to_a_billion_credits(value: object, micros: int) -> None:
    assert parse_credits(value, "amount", allow_negative=True) == micros


@pytest.mark.parametrize(
    ("value", "allow_negative", "message"),
    [
        ("1000000000.000001", True, "'amount' is too large (at most 1000000000)."),
        ("-1000000000.000001", True, "'amount' is too large (at most 1000000000)."),
        ("-0.000001", False, "'amount' must not be negative."),
        ("1.0000001", True, "'amount' must be a number of credits with at most 6 decimals."),
        ("lots", True, "'amount' must be a number of credits with at most 6 decimals."),
        (True, True, "'amount' must be a number of credits."),
        (None, True, "'amount' must be a number of credits."),
    ],
)
def test_other_amounts_are_refused_naming_the_field(value: object, allow_negative: bool, message: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_credits(value, "amount", allow_negative=allow_negative)
    assert (refused.value.message, refused.value.param) == (message, "amount")


def test_zero_is_an_amount_where_negatives_are_refused() -> None:
    """A new account's credits and a low-balance threshold may be 0."""
    assert parse_credits(0, "credits", allow_negative=False) == 0
    assert parse_credits("0.000001", "credits", allow_negative=False) == 1
