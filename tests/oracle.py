"""Reference arithmetic for what tests expect, written apart from the gateway's own pricing code.

Expected costs in tests are literal numbers worked out in a comment, or come from here: exact fractions,
rounded up once per request, as README's "Credits and rounding" states the rule. Nothing here calls
`gateway.billing.pricing`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

MICROS_PER_CREDIT = 10**6


@dataclass(frozen=True)
class ReferencePrice:
    """Credits per million tokens, as a config file writes them ("2.5", "0.15")."""

    input: Fraction
    output: Fraction
    cached_input: Fraction | None = None
    cache_write: Fraction | None = None

    @classmethod
    def of(
        cls, input: str, output: str, cached_input: str | None = None, cache_write: str | None = None
    ) -> ReferencePrice:
        return cls(
            Fraction(input),
            Fraction(output),
            None if cached_input is None else Fraction(cached_input),
            None if cache_write is None else Fraction(cache_write),
        )

    def cost_micros(self, prompt: int, completion: int, cached: int = 0, cache_write: int = 0) -> int:
        """ceil(exact cost in micro-credits): the prices are credits per million tokens, i.e. micro-credits
        per token, so the exact cost in micros is the plain sum of tokens times prices. `cached` (cache reads)
        and `cache_write` are parts of `prompt`."""
        cached_price = self.input if self.cached_input is None else self.cached_input
        write_price = self.input if self.cache_write is None else self.cache_write
        plain = prompt - cached - cache_write
        exact = plain * self.input + cached * cached_price + cache_write * write_price + completion * self.output
        return math.ceil(exact)

    def affordable_completion_tokens(self, balance_micros: int, prompt: int) -> int:
        """The most completion tokens whose exact cost, with the prompt's, fits in the balance."""
        return math.floor((balance_micros - prompt * self.input) / self.output)


def call_micros(credits_per_call: str, calls: int) -> int:
    """What `calls` built-in tool calls cost at a config price of `credits_per_call` ("0.012345") credits each:
    exact micro-credits, as prices per call have at most 6 decimals."""
    exact = Fraction(credits_per_call) * MICROS_PER_CREDIT * calls
    assert exact.denominator == 1
    return int(exact)
