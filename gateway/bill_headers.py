"""The bill on an answer's headers, named and written here only: `x-credits-remaining` (the balance) on every
answer to a known API key, and `x-credits-used` (what the request was charged) on every metered one, refusals
included (they say 0)."""

from __future__ import annotations

from gateway.billing.pricing import format_credits

CREDITS_REMAINING = "x-credits-remaining"
CREDITS_USED = "x-credits-used"


def balance_headers(balance_micros: int) -> dict[str, str]:
    """The balance, for any answer to a known key."""
    return {CREDITS_REMAINING: format_credits(balance_micros)}


def charge_headers(charged_micros: int, balance_micros: int) -> dict[str, str]:
    """What a metered request was charged and the balance after it (a refusal: 0 and the balance as it is)."""
    return {CREDITS_REMAINING: format_credits(balance_micros), CREDITS_USED: format_credits(charged_micros)}
