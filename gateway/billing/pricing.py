"""Prices and credit amounts as exact integers.

The ledger unit is the micro-credit (1 credit = 1,000,000 micros). Prices are held as micro-credits per
million tokens, so a price written in config with up to six decimals is an exact integer here.

Rounding, the one rule: a request costs
    ceil((uncached_prompt * input + cached_prompt * cached_input + completion * output) / 1_000_000)
micro-credits, i.e. the exact product rounded up once per request to the next micro-credit. A request that
used any priced token therefore never costs zero.
"""

from __future__ import annotations

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

    def cost_micros(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> int:
        """Exact cost of a request in micro-credits, rounded up once."""
        cached = min(max(cached_tokens, 0), prompt_tokens)
        cached_price = self.input_micros_per_million
        if self.cached_input_micros_per_million is not None:
            cached_price = self.cached_input_micros_per_million
        numerator = (
            (prompt_tokens - cached) * self.input_micros_per_million
            + cached * cached_price
            + completion_tokens * self.output_micros_per_million
        )
        return -(-numerator // TOKENS_PER_MILLION)

    def affordable_completion_tokens(self, balance_micros: int, prompt_tokens: int) -> int:
        """The most completion tokens whose cost, with the prompt, fits in `balance_micros`."""
        if self.output_micros_per_million == 0:
            return 1 << 62
        budget = balance_micros * TOKENS_PER_MILLION - prompt_tokens * self.input_micros_per_million
        return max(budget // self.output_micros_per_million, 0)


def credits_to_micros(amount: Decimal) -> int:
    """Convert a credit amount with at most six decimals to micro-credits; more precision is an error."""
    if not amount.is_finite():
        raise ValueError("amount must be a finite number")
    micros = amount * MICROS_PER_CREDIT
    if micros != micros.to_integral_value():
        raise ValueError("amount has more than 6 decimal places")
    return int(micros)


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
