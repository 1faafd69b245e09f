"""Numbers that cross the API (gateway/numbers.py): credit amounts in one grammar, exact micro-credits, the bounds
that keep every amount exact in Redis's Lua (doubles are exact up to 2**53), whole numbers and query counts. Each
is checked by size before it is converted, so a few bytes can never cost seconds of CPU."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.billing.pricing import AMOUNT_PATTERN
from gateway.errors import InvalidRequest
from gateway.numbers import parse_credits, parse_query_count, parse_whole_number
from tests.common import StartGateway
from tests.webhooks.common import WEBHOOK_SETTINGS

BILLION_MICROS = 10**15
GRAMMAR_MESSAGE = """'amount' must be a number of credits: digits, an optional "-" and at most 6 decimals."""
TOO_LARGE = "'amount' is beyond the limit of 1000000000 credits."


@pytest.mark.parametrize(
    ("value", "micros"),
    [
        (5, 5_000_000),
        ("1.000001", 1_000_001),  # the sixth decimal is one micro-credit
        (0.5, 500_000),
        (1e-05, 10),  # a float whose shortest text has an exponent
        ("1000000000", 10**15),  # a billion credits: the largest amount
        ("1000000000.000000", 10**15),
        (-1_000_000_000, -(10**15)),  # ...either way, where negatives are allowed
        ("-0", 0),
        ("007", 7_000_000),
    ],
)
def test_amounts_are_exact_micro_credits_up_to_a_billion_credits(value: object, micros: int) -> None:
    assert parse_credits(value, "amount", allow_negative=True) == micros


@pytest.mark.parametrize(
    ("value", "allow_negative", "message"),
    [
        ("1000000000.000001", True, TOO_LARGE),
        ("-1000000000.000001", True, TOO_LARGE),
        (1_000_000_001, True, TOO_LARGE),
        (2**64, True, TOO_LARGE),
        (1e300, True, TOO_LARGE),
        (float("nan"), True, TOO_LARGE),
        (float("-inf"), True, TOO_LARGE),
        ("-0.000001", False, "'amount' must not be negative."),
        ("1.0000001", True, GRAMMAR_MESSAGE),
        (1e-07, True, "'amount' must have at most 6 decimals."),
        (0.1 + 0.2, True, "'amount' must have at most 6 decimals."),  # 0.30000000000000004
        ("lots", True, GRAMMAR_MESSAGE),
        # What Python's Decimal, int() and float() take, and the grammar does not.
        ("5_000", True, GRAMMAR_MESSAGE),
        (" 5", True, GRAMMAR_MESSAGE),
        ("5 ", True, GRAMMAR_MESSAGE),
        ("5\n", True, GRAMMAR_MESSAGE),
        ("\u0665", True, GRAMMAR_MESSAGE),  # ARABIC-INDIC DIGIT FIVE
        ("\uff15", True, GRAMMAR_MESSAGE),  # FULLWIDTH DIGIT FIVE
        ("+5", True, GRAMMAR_MESSAGE),
        (".5", True, GRAMMAR_MESSAGE),
        ("5.", True, GRAMMAR_MESSAGE),
        ("1e3", True, GRAMMAR_MESSAGE),
        ("Infinity", True, GRAMMAR_MESSAGE),
        ("NaN", True, GRAMMAR_MESSAGE),
        ("0x10", True, GRAMMAR_MESSAGE),
        ("", True, GRAMMAR_MESSAGE),
        ("12345678901", True, GRAMMAR_MESSAGE),  # 11 integer digits: past the grammar, whatever their value
        # Exponents a few bytes long: Decimal took seconds (and more with each digit) to make these integers, or
        # raised decimal.Overflow (a 500).
        ("1e9999999", True, GRAMMAR_MESSAGE),
        ("1E999999999999999999", True, GRAMMAR_MESSAGE),
        ("-1e-99999999", True, GRAMMAR_MESSAGE),  # Decimal rounded this to 0 and accepted it
        (True, True, "'amount' must be a number of credits."),
        (None, True, "'amount' must be a number of credits."),
        ([5], True, "'amount' must be a number of credits."),
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


AMOUNT = re.compile(r"-?([0-9]{1,10})(\.[0-9]{1,6})?", re.ASCII)  # the README's grammar, written out again


@given(st.text(alphabet="0123456789-+.eE_ \u0665\uff15", max_size=24))
@example("1e99999999")
def test_text_is_an_amount_exactly_when_it_is_in_the_grammar(text: str) -> None:
    """Any short text over the characters number parsers care about: in the grammar it is its exact decimal
    value (bounded), outside it a 400 naming the grammar."""
    match = AMOUNT.fullmatch(text)
    if match is None:
        with pytest.raises(InvalidRequest) as refused:
            parse_credits(text, "amount", allow_negative=True)
        assert refused.value.message == GRAMMAR_MESSAGE
        return
    exact = Decimal(text) * 1_000_000  # the oracle: exact decimal arithmetic on text known to be small
    if abs(exact) > BILLION_MICROS:
        with pytest.raises(InvalidRequest, match="beyond the limit"):
            parse_credits(text, "amount", allow_negative=True)
    else:
        assert parse_credits(text, "amount", allow_negative=True) == int(exact)


@given(st.integers(min_value=-(10**9), max_value=10**9), st.integers(min_value=0, max_value=999_999))
def test_every_micro_credit_in_range_is_written_one_way(whole: int, fraction: int) -> None:
    """Every amount within the bounds, written as the grammar's text, is that many micro-credits."""
    sign = "-" if whole < 0 else ""
    text = f"{sign}{abs(whole)}.{fraction:06d}"
    micros = (abs(whole) * 1_000_000 + fraction) * (-1 if whole < 0 else 1)
    if abs(micros) > BILLION_MICROS:
        with pytest.raises(InvalidRequest, match="beyond the limit"):
            parse_credits(text, "amount", allow_negative=True)
    else:
        assert parse_credits(text, "amount", allow_negative=True) == micros


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_floats_are_exact_or_refused(value: float) -> None:
    """A JSON number: its shortest decimal form with at most 6 decimals is its amount; anything else is a 400."""
    try:
        micros = parse_credits(value, "amount", allow_negative=True)
    except InvalidRequest:
        exact = Decimal(repr(value)) * 1_000_000 if abs(value) <= 10**10 else None
        assert exact is None or abs(exact) > BILLION_MICROS or exact != exact.to_integral_value()
        return
    assert Decimal(micros) == Decimal(repr(value)) * 1_000_000


@given(st.from_regex(AMOUNT_PATTERN, fullmatch=True))
def test_the_openapi_pattern_admits_only_what_the_gateway_takes(text: str) -> None:
    """The documented pattern (served in /openapi.json) and the parser agree: everything it admits is taken
    (or, past a billion, refused for its size, not its form)."""
    try:
        parse_credits(text, "amount", allow_negative=True)
    except InvalidRequest as refused:
        assert "beyond the limit" in refused.message


@pytest.mark.parametrize("value", [0, 101, -1, True, 80.0, 80.5, "80", None, 2**70])
def test_whole_numbers_are_json_integers_in_range(value: object) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_whole_number(value, "percent", minimum=1, maximum=100)
    assert refused.value.message == "'percent' must be a whole number from 1 to 100."
    assert parse_whole_number(100, "percent", minimum=1, maximum=100) == 100


@pytest.mark.parametrize(
    "text", ["0", "1001", "-1", "+5", " 5", "5 ", "5_0", "\u0665", "\uff15", "1e2", "0x10", "5.0", "9" * 5000]
)
def test_query_counts_are_ascii_digits_in_range(text: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_query_count(text, "limit", default=10, maximum=1000)
    assert refused.value.message == "'limit' must be a whole number from 1 to 1000."


def test_query_counts_default_when_absent() -> None:
    assert parse_query_count(None, "limit", default=10, maximum=1000) == 10
    assert parse_query_count("", "limit", default=10, maximum=1000) == 10
    assert parse_query_count("0007", "limit", default=10, maximum=1000) == 7


@pytest.mark.parametrize(
    "credits",
    # A few bytes of exponent: each froze the worker for seconds or more, or answered 500 (decimal.Overflow).
    ["1e9999999", "9E999999999999999999", "-1e-99999999", "5_000", " 5 ", "\u0665"],
)
async def test_hostile_amounts_get_400_over_http_and_change_nothing(start_gateway: StartGateway, credits: str) -> None:
    gateway = await start_gateway(WEBHOOK_SETTINGS)  # private targets allowed: no DNS lookup offline
    account_id, key = await gateway.new_account(credits=10)
    for method, path, body in [
        ("POST", "/admin/accounts", {"name": "x", "credits": credits}),
        ("POST", f"/admin/accounts/{account_id}/credits", {"amount": credits}),
    ]:
        status, error = await gateway.admin(method, path, body)
        assert status == 400 and error["error"]["type"] == "invalid_request_error", error  # type: ignore[index]
    response = await gateway.client.post(
        "/v1/webhooks",
        json={
            "url": "https://hooks.example.com/x",
            "events": ["credits.low"],
            "settings": {"credits_low_threshold": credits},
        },
        headers={"Authorization": f"Bearer {key}"},
    )
    error = await response.json()
    assert response.status == 400 and error["error"]["param"] == "settings.credits_low_threshold", error
    assert await gateway.balance_micros(account_id) == 10_000_000
    status, accounts = await gateway.admin("GET", "/admin/accounts")
    assert [account["id"] for account in accounts["data"]] == [account_id]  # type: ignore[index]


@pytest.mark.parametrize("limit", ["\uff15", "5_0", " 5", "1e3", "9" * 100])
async def test_hostile_query_counts_get_400_over_http(start_gateway: StartGateway, limit: str) -> None:
    gateway = await start_gateway()
    status, error = await gateway.admin("GET", f"/admin/usage/summary?limit={limit}")
    assert status == 400 and error["error"]["param"] == "limit", error  # type: ignore[index]
