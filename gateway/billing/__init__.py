"""Money: prices, the Redis ledger, its Lua scripts, the Redis keyspace and billing periods.

Owns every step that moves credits: `reserve.lua` (authenticate and hold), `settle.lua` (charge, release,
aggregate, record), `grant.lua`. Amounts are integer micro-credits; each step is one atomic script on keys
hash-tagged per account.

May import: nothing else of the gateway. Only the standard library and redis-py; everything above uses it.
"""

from __future__ import annotations

from gateway.billing.ledger import Clock, GrantError, Ledger
from gateway.billing.pricing import Price
from gateway.billing.scripts import (
    Hold,
    InsightRules,
    ReserveOutcome,
    ReserveStatus,
    Retention,
    Settlement,
    SettleOutcome,
)

__all__ = [
    "Clock",
    "GrantError",
    "Hold",
    "InsightRules",
    "Ledger",
    "Price",
    "ReserveOutcome",
    "ReserveStatus",
    "Retention",
    "SettleOutcome",
    "Settlement",
]
