"""Webhook events: the outbox entry the money scripts (or a test request) write, and the payload sent.

An outbox entry is flat text fields, so Lua can write it: `id` (stable: the receiver deduplicates on it),
`type`, `sub` (the subscription), `account`, `ms` (when it happened), and for threshold events `period`
(YYYYMM), `used`, `budget`, `remaining` and `threshold` (micro-credits, or a percent for usage), `request`
(the request or grant that crossed it). The payload is Standard Webhooks' shape:
`{"id", "type", "created_at", "data": {...}}`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal

import orjson

from gateway.billing.periods import iso_utc, period_texts
from gateway.billing.pricing import credits_number
from gateway.webhooks.store import CREDITS_EXHAUSTED, CREDITS_LOW, USAGE_THRESHOLD, WEBHOOK_TEST


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    subscription_id: str
    account_id: str
    created_ms: int
    fields: dict[str, str] = field(default_factory=dict)  # the rest of the outbox entry
    attempts: int = 0  # delivery attempts made so far

    @classmethod
    def from_outbox(cls, entry: Mapping[str, str]) -> Event:
        fields = dict(entry)
        return cls(
            id=fields.pop("id"),
            type=fields.pop("type"),
            subscription_id=fields.pop("sub"),
            account_id=fields.pop("account"),
            created_ms=int(fields.pop("ms")),
            fields=fields,
        )

    @classmethod
    def test(cls, account_id: str, subscription_id: str, now_ms: int) -> Event:
        return cls(f"evt_test_{uuid.uuid4().hex}", WEBHOOK_TEST, subscription_id, account_id, now_ms)

    def outbox_fields(self) -> dict[str, str]:
        base = {"id": self.id, "type": self.type, "sub": self.subscription_id, "account": self.account_id}
        return {**base, "ms": str(self.created_ms), **self.fields}

    def to_json(self) -> bytes:
        """For the retry queue: the entry and how many attempts it has had."""
        return orjson.dumps({**self.outbox_fields(), "attempts": self.attempts})

    @classmethod
    def from_json(cls, raw: str | bytes) -> Event:
        fields = orjson.loads(raw)
        attempts = int(fields.pop("attempts", 0))
        return replace(cls.from_outbox({str(k): str(v) for k, v in fields.items()}), attempts=attempts)

    def payload(self) -> bytes:
        created = datetime.fromtimestamp(self.created_ms / 1000, UTC)
        body = {"id": self.id, "type": self.type, "created_at": iso_utc(created), "data": self._data(created)}
        return orjson.dumps(body)

    def _data(self, created: datetime) -> dict[str, object]:
        data: dict[str, object] = {"account_id": self.account_id, "subscription_id": self.subscription_id}
        if self.type == WEBHOOK_TEST:
            return data
        start, end = period_texts(created)
        used, remaining = int(self.fields["used"]), int(self.fields["remaining"])
        threshold = int(self.fields["threshold"])
        data |= {
            "period": {"start": start, "end": end},
            "credits_used": credits_number(used),
            "credits_used_micros": used,
            "credits_remaining": credits_number(remaining),
            "credits_remaining_micros": remaining,
            "request_id": self.fields.get("request") or None,
        }
        if self.type == USAGE_THRESHOLD:
            budget = int(self.fields["budget"])
            data |= {"budget_micros": budget, "threshold": threshold, "value": _percent(used, budget)}
        elif self.type in (CREDITS_LOW, CREDITS_EXHAUSTED):
            data |= {"threshold": credits_number(threshold), "value": credits_number(remaining)}
        return data


def _percent(used: int, budget: int) -> float:
    """Percent of the budget used, cut (never rounded up past what was used) to two decimals."""
    exact = Decimal(used * 100) / Decimal(budget) if budget else Decimal(0)
    return float(exact.quantize(Decimal("0.01"), rounding=ROUND_DOWN))
