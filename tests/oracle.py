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

    @classmethod
    def of(cls, input: str, output: str, cached_input: str | None = None) -> ReferencePrice:
        return cls(Fraction(input), Fraction(output), None if cached_input is None else Fraction(cached_input))

    def cost_micros(self, prompt: int, completion: int, cached: int = 0) -> int:
        """ceil(exact cost in micro-credits): the prices are credits per million tokens, i.e. micro-credits
        per token, so the exact cost in micros is the plain sum of tokens times prices."""
        cached_price = self.input if self.cached_input is None else self.cached_input
        exact = (prompt - cached) * self.input + cached * cached_price + completion * self.output
        return math.ceil(exact)

    def affordable_completion_tokens(self, balance_micros: int, prompt: int) -> int:
        """The most completion tokens whose exact cost, with the prompt's, fits in the balance."""
        return math.floor((balance_micros - prompt * self.input) / self.output)
