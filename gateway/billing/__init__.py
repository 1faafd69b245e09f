"""Money: prices, the Redis ledger, its Lua scripts, the Redis keyspace and billing periods.

Owns every step that moves credits: `reserve.lua` (authenticate and hold), `settle.lua` (charge, release,
aggregate, record), `grant.lua`. Amounts are integer micro-credits; each step is one atomic script on keys
hash-tagged per account.

Modules: `ledger` (reserve, settle and grant), `scripts` (the scripts' KEYS, ARGV and replies, built and read
there only), `fastcall` (the hot path's script calls, pipelined on one shared connection), `settler` (every
reserved request settled exactly once), `spool` (settlements waiting for Redis, in a local file), `sweeper`
(holds past their deadline, released as abandoned), `pricing` (prices and credit amounts as exact integers),
`periods` (billing months, UTC), `keyspace` (every Redis key name), `client` (one server or a Redis Cluster),
`health` (whether Redis answers and holds the scripts), `record` (a request's billed usage and the insights'
record fields), `tool_calls` (built-in tools billed per call: their names and a request's call prices).

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
