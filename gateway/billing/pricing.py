"""Prices and credit amounts as exact integers.

The ledger unit is the micro-credit (1 credit = 1,000,000 micros). Prices are held as micro-credits per
million tokens, so a price written in config with up to six decimals is an exact integer here.

Rounding, the one rule: a request costs
    ceil((plain_prompt * input + cached_prompt * cached_input + cache_write * cache_write_price
          + completion * output) / 1_000_000)
micro-credits (plain_prompt: the prompt tokens neither read from nor written to the provider's cache), i.e. the
exact product rounded up once per request to the next micro-credit. A request that used any priced token
therefore never costs zero.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal

MICROS_PER_CREDIT = 1_000_000
TOKENS_PER_MILLION = 1_000_000


@dataclass(frozen=True)
class Price:
    """A model's price in micro-credits per million tokens."""

    input_micros_per_million: int
    output_micros_per_million: int
    # None: cached prompt tokens cost the normal input price.
    cached_input_micros_per_million: int | None = None
    # Prompt tokens the provider writes to its cache (Anthropic bills them apart); None: the input price.
    cache_write_micros_per_million: int | None = None

    @property
    def cache_write_price(self) -> int:
        """What a prompt token written to the provider's cache costs, per million."""
        written = self.cache_write_micros_per_million
        return self.input_micros_per_million if written is None else written

    def cost_micros(
        self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, cache_write_tokens: int = 0
    ) -> int:
        """Exact cost of a request in micro-credits, rounded up once. `cached_tokens` (read from the provider's
        cache) and `cache_write_tokens` (written to it) are parts of `prompt_tokens`."""
        cached = min(max(cached_tokens, 0), prompt_tokens)
        written = min(max(cache_write_tokens, 0), prompt_tokens - cached)
        cached_price = self.input_micros_per_million
        if self.cached_input_micros_per_million is not None:
            cached_price = self.cached_input_micros_per_million
        numerator = (
            (prompt_tokens - cached - written) * self.input_micros_per_million
            + cached * cached_price
            + written * self.cache_write_price
            + completion_tokens * self.output_micros_per_million
        )
        return -(-numerator // TOKENS_PER_MILLION)

    def hold_micros(self, prompt_tokens: int, completion_tokens: int) -> int:
        """The most a request of this size can cost: every prompt token at the dearer of the input and the
        cache-write price (the provider may write the whole prompt to its cache)."""
        if self.cache_write_price > self.input_micros_per_million:
            return self.cost_micros(prompt_tokens, completion_tokens, cache_write_tokens=prompt_tokens)
        return self.cost_micros(prompt_tokens, completion_tokens)

    def affordable_completion_tokens(self, balance_micros: int, prompt_tokens: int) -> int:
        """The most completion tokens whose cost, with the prompt's as held (`hold_micros`), fits in
        `balance_micros`."""
        if self.output_micros_per_million == 0:
            return 1 << 62
        prompt_price = max(self.input_micros_per_million, self.cache_write_price)
        budget = balance_micros * TOKENS_PER_MILLION - prompt_tokens * prompt_price
        return max(budget // self.output_micros_per_million, 0)


class AmountError(ValueError):
    """Why a credit amount was refused, as the end of a sentence that names it: "must be ...", "is ..."."""


# Credits written as text: an optional "-", ASCII digits, and at most 6 decimals after a ".". Nothing else: no
# "+", exponent, spaces, "_" separators or other scripts' digits, all of which Python's own number parsers take.
AMOUNT_PATTERN = r"^-?[0-9]{1,10}(\.[0-9]{1,6})?$"
_AMOUNT_TEXT = re.compile(AMOUNT_PATTERN, re.ASCII)


def credits_to_micros(value: object, limit_micros: int) -> int:
    """A credit amount (a number, or text in the AMOUNT_TEXT grammar) in micro-credits, at most `limit_micros`
    either way; AmountError otherwise.

    The magnitude is checked before any conversion whose cost grows with the value: a few bytes of text with a
    large exponent would otherwise cost seconds of CPU, or a decimal overflow.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise AmountError("must be a number of credits")
    limit_credits = limit_micros // MICROS_PER_CREDIT
    if isinstance(value, str):
        if _AMOUNT_TEXT.fullmatch(value) is None:
            raise AmountError('must be a number of credits: digits, an optional "-" and at most 6 decimals')
        whole, _, fraction = value.removeprefix("-").partition(".")
        micros = int(whole) * MICROS_PER_CREDIT + int(fraction.ljust(6, "0"))
        micros = -micros if value.startswith("-") else micros
    elif isinstance(value, int):
        if abs(value) > limit_credits:
            raise AmountError(f"is beyond the limit of {limit_credits} credits")
        micros = value * MICROS_PER_CREDIT
    else:
        if not math.isfinite(value) or abs(value) > limit_credits + 1:
            raise AmountError(f"is beyond the limit of {limit_credits} credits")
        # The float's shortest text ("0.1", "1e-05"): its exponent is bounded, so this is cheap and exact.
        exact = Decimal(repr(value)).scaleb(6)
        if exact != exact.to_integral_value():
            raise AmountError("must have at most 6 decimals")
        micros = int(exact)
    if abs(micros) > limit_micros:
        raise AmountError(f"is beyond the limit of {limit_credits} credits")
    return micros


def format_credits(micros: int) -> str:
    """Micro-credits as an exact decimal string: 1500000 -> "1.5", 2000000 -> "2"."""
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(micros), MICROS_PER_CREDIT)
    if fraction == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:06d}".rstrip("0")


def credits_number(micros: int) -> int | float:
    """Micro-credits as a JSON number: an int when whole, else the float whose repr is the exact decimal."""
    if micros % MICROS_PER_CREDIT == 0:
        return micros // MICROS_PER_CREDIT
    return float(format_credits(micros))
