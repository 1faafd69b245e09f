"""Webhook subscriptions in Redis, with the alert thresholds the money scripts read.

A subscription's record and its thresholds in `keyspace.alerts` are written in one transaction in the
account's slot, so settle.lua never sees one without the other. The set of accounts with subscriptions
(`keyspace.WEBHOOK_ACCOUNTS`) tells the sender which outboxes to read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import orjson
from redis.exceptions import ResponseError

from gateway.billing import keyspace
from gateway.billing.client import RedisClient
from gateway.billing.keyspace import as_text

USAGE_THRESHOLD = "usage.threshold"
CREDITS_LOW = "credits.low"
CREDITS_EXHAUSTED = "credits.exhausted"
WEBHOOK_TEST = "webhook.test"
EVENT_TYPES = (USAGE_THRESHOLD, CREDITS_LOW, CREDITS_EXHAUSTED)


@dataclass(frozen=True)
class Subscription:
    id: str
    account_id: str
    url: str
    events: tuple[str, ...]
    usage_threshold_percent: int | None
    credits_low_threshold_micros: int | None
    enabled: bool
    created_at: int  # unix seconds
    secret: str
    previous_secret: str | None = None  # still signs during a rotation window
    previous_secret_until_ms: int = 0
    disabled_reason: str | None = None
    failing_since_ms: int | None = None  # first failed delivery since the last success

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Subscription:
        fields = orjson.loads(raw)
        fields["events"] = tuple(fields["events"])
        return cls(**fields)

    def secrets(self, now_ms: int) -> list[str]:
        """The secrets to sign with: the current one, and the previous one while its window lasts."""
        if self.previous_secret and now_ms < self.previous_secret_until_ms:
            return [self.secret, self.previous_secret]
        return [self.secret]

    def alert_fields(self) -> dict[str, int]:
        """This subscription's thresholds as the money scripts read them (nothing while disabled)."""
        if not self.enabled:
            return {}
        fields: dict[str, int] = {}
        if USAGE_THRESHOLD in self.events and self.usage_threshold_percent is not None:
            fields[f"u:{self.id}"] = self.usage_threshold_percent
        if CREDITS_LOW in self.events and self.credits_low_threshold_micros is not None:
            fields[f"l:{self.id}"] = self.credits_low_threshold_micros
        if CREDITS_EXHAUSTED in self.events:
            fields[f"x:{self.id}"] = 1
        return fields


# Threshold field -> its fired marker, in `keyspace.alerts` (usage, low balance, exhausted).
ALERT_KINDS = {"u": "uf", "l": "lf", "x": "xf"}


def _alert_names(subscription_id: str) -> list[str]:
    """Every field of `keyspace.alerts` a subscription may own: thresholds and their fired markers."""
    return [f"{name}:{subscription_id}" for pair in ALERT_KINDS.items() for name in pair]


class WebhookStore:
    def __init__(self, redis: RedisClient, *, clock: Callable[[], float]):
        self.redis = redis
        self.clock = clock

    async def save(self, subscription: Subscription, *, rearm: bool) -> None:
        """Write the record and its thresholds together. `rearm` forgets what already fired (new thresholds)."""
        account_id = subscription.account_id
        thresholds = subscription.alert_fields()
        stale = []
        for kind, fired in ALERT_KINDS.items():
            if f"{kind}:{subscription.id}" not in thresholds:
                stale += [f"{kind}:{subscription.id}", f"{fired}:{subscription.id}"]
            elif rearm:
                stale.append(f"{fired}:{subscription.id}")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keyspace.webhooks(account_id), subscription.id, subscription.to_json())
            if stale:
                pipe.hdel(keyspace.alerts(account_id), *stale)
            for name, value in thresholds.items():
                pipe.hset(keyspace.alerts(account_id), name, value)
            await pipe.execute()
        await self.redis.sadd(keyspace.WEBHOOK_ACCOUNTS, account_id)
        await self._ensure_group(account_id)

    async def _ensure_group(self, account_id: str) -> None:
        try:
            await self.redis.xgroup_create(keyspace.outbox(account_id), keyspace.OUTBOX_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def get(self, account_id: str, subscription_id: str) -> Subscription | None:
        raw = await self.redis.hget(keyspace.webhooks(account_id), subscription_id)
        return None if raw is None else Subscription.from_json(raw)

    async def list_for(self, account_id: str) -> list[Subscription]:
        raw = await self.redis.hvals(keyspace.webhooks(account_id))
        return sorted((Subscription.from_json(value) for value in raw), key=lambda s: (s.created_at, s.id))

    async def count(self, account_id: str) -> int:
        return int(await self.redis.hlen(keyspace.webhooks(account_id)))

    async def delete(self, account_id: str, subscription_id: str) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(keyspace.webhooks(account_id), subscription_id)
            pipe.hdel(keyspace.alerts(account_id), *_alert_names(subscription_id))
            pipe.delete(keyspace.webhook_deliveries(account_id, subscription_id))
            pipe.hlen(keyspace.webhooks(account_id))
            removed, _, _, left = await pipe.execute()
        if not left:
            await self.redis.srem(keyspace.WEBHOOK_ACCOUNTS, account_id)
        return bool(removed)

    async def update_failure_state(
        self, subscription: Subscription, *, failing_since_ms: int | None, disabled_reason: str | None = None
    ) -> Subscription:
        """Record a delivery's outcome on the subscription; a reason disables it (its thresholds go too)."""
        current = await self.get(subscription.account_id, subscription.id)
        if current is None:
            return subscription
        changed = replace(current, failing_since_ms=failing_since_ms)
        if disabled_reason is not None:
            changed = replace(changed, enabled=False, disabled_reason=disabled_reason)
        if changed != current:
            await self.save(changed, rearm=False)
        return changed

    async def account_ids(self) -> list[str]:
        return sorted(as_text(account_id) for account_id in await self.redis.smembers(keyspace.WEBHOOK_ACCOUNTS))
