"""Numbers that cross the API, checked by size before any conversion whose cost grows with the value.

- Credit amounts (admin grants and accounts, webhook thresholds): a JSON number, or text in one grammar
  (`billing.pricing.AMOUNT_PATTERN`: `-?DIGITS[.DIGITS]`, at most 6 decimals), at most a billion credits.
- Whole numbers in JSON bodies (percents, counts): JSON integers only, within a documented range.
- Whole numbers in query strings (`limit`): ASCII digits only, a few of them.

Each answers 400 in the API's error shape, naming the parameter.
"""

from __future__ import annotations

import re

from gateway.billing.pricing import AmountError, credits_to_micros
from gateway.errors import InvalidRequest

MAX_CREDITS_MICROS = 10**15  # a billion credits: far below where Lua's doubles stop being exact (2**53)
# Query counts: digits only, no sign, no spaces, no "_", no other scripts' digits (all of which int() takes).
_QUERY_DIGITS = re.compile(r"[0-9]{1,9}", re.ASCII)


def parse_credits(value: object, param: str, *, allow_negative: bool) -> int:
    """A credit amount in micro-credits, at most a billion credits either way; 400 otherwise."""
    try:
        micros = credits_to_micros(value, MAX_CREDITS_MICROS)
    except AmountError as exc:
        raise InvalidRequest(f"'{param}' {exc}.", param=param) from None
    if micros < 0 and not allow_negative:
        raise InvalidRequest(f"'{param}' must not be negative.", param=param)
    return micros


def parse_whole_number(value: object, param: str, *, minimum: int, maximum: int) -> int:
    """A JSON integer from `minimum` to `maximum`; 400 otherwise (true and 1.0 are not whole numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InvalidRequest(f"'{param}' must be a whole number from {minimum} to {maximum}.", param=param)
    return value


def parse_query_count(value: str | None, param: str, *, default: int, maximum: int) -> int:
    """A count from the query string, 1 to `maximum`, `default` when absent or empty; 400 otherwise."""
    if value is None or value == "":
        return default
    if _QUERY_DIGITS.fullmatch(value) is None or not 1 <= int(value) <= maximum:
        raise InvalidRequest(f"'{param}' must be a whole number from 1 to {maximum}.", param=param)
    return int(value)
