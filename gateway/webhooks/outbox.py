"""The webhook outbox in Redis: new events, the retry queue, failed events and the delivery log.

New events sit in the account's outbox stream (the money scripts append them in the step that crosses the
threshold) and are read by the `senders` consumer group, so several gateway processes share them and each
is handed to one. An entry stays pending until its first attempt is over: one whose consumer died is
claimed by another after `CLAIM_IDLE_MS`. A failed attempt moves the event to the retry queue (a sorted set
by due time, the event kept in a hash); whoever removes it from the queue first makes the next attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from gateway.billing import keyspace
from gateway.billing.client import RedisClient
from gateway.billing.keyspace import as_text
from gateway.webhooks.events import Event
from gateway.webhooks.store import Subscription

# A pending first attempt older than this belongs to a consumer that is gone: a live one finishes an attempt
# within the delivery timeout (at most 30 s) even behind a full batch. With the sender's CLAIM_EVERY_S, a
# dead consumer's entries are taken over within a minute.
CLAIM_IDLE_MS = 45_000
# Reset an entry's idle time, but only while it is still the caller's: a consumer about to make a first attempt
# keeps the entry from being claimed during it, and learns whether another process took it over meanwhile.
KEEP_IF_MINE = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2]) == 0 then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
"""
LOG_LENGTH = 1000  # delivery attempts kept per subscription
FAILED_KEPT_MS = 7 * 86_400_000  # a failed event stays redeliverable this long


class Outbox:
    def __init__(self, redis: RedisClient, *, clock: Callable[[], float]):
        self.redis = redis
        self.clock = clock
        self._keep_if_mine = redis.register_script(KEEP_IF_MINE)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def append_test(self, subscription: Subscription) -> str:
        event = Event.test(subscription.account_id, subscription.id, self.now_ms())
        await self.redis.xadd(keyspace.outbox(subscription.account_id), event.outbox_fields())  # type: ignore[arg-type]
        return event.id

    async def read_new(self, account_ids: list[str], consumer: str, count: int) -> list[tuple[str, Event]]:
        """Entries no consumer has had yet, from every account's outbox (one round trip); (entry id, event)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for account_id in account_ids:
                streams = {keyspace.outbox(account_id): ">"}
                pipe.xreadgroup(keyspace.OUTBOX_GROUP, consumer, streams, count=count)  # type: ignore[arg-type]
            replies = await pipe.execute(raise_on_error=False)
        return [item for reply in replies if not isinstance(reply, Exception) for item in _entries(reply)]

    async def claim_stale(self, account_id: str, consumer: str, count: int) -> list[tuple[str, Event]]:
        """Entries whose consumer has held them past CLAIM_IDLE_MS (it died mid-attempt), now this one's."""
        reply = await self.redis.xautoclaim(
            keyspace.outbox(account_id), keyspace.OUTBOX_GROUP, consumer, CLAIM_IDLE_MS, "0", count=count
        )
        return [(as_text(entry_id), Event.from_outbox(_text(fields))) for entry_id, fields in reply[1] if fields]

    async def keep(self, account_id: str, entry_id: str, consumer: str) -> bool:
        """Whether the entry is still this consumer's; if so its idle time starts again (see KEEP_IF_MINE)."""
        stream = keyspace.outbox(account_id)
        return bool(await self._keep_if_mine(keys=[stream], args=[keyspace.OUTBOX_GROUP, consumer, entry_id]))

    async def ack(self, account_id: str, entry_id: str) -> None:
        stream = keyspace.outbox(account_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(stream, keyspace.OUTBOX_GROUP, entry_id)
            pipe.xdel(stream, entry_id)
            await pipe.execute()

    async def schedule_retry(self, event: Event, due_ms: int) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keyspace.webhook_events(event.account_id), event.id, event.to_json())
            pipe.zadd(keyspace.webhook_retries(event.account_id), {event.id: due_ms})
            await pipe.execute()

    async def take_due(self, account_ids: list[str], count: int) -> list[Event]:
        """Retries that are due, each taken by exactly one process (whoever removes it from the queue first).
        One round trip finds them across every account; taking one costs a round trip more."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for account_id in account_ids:
                pipe.zrangebyscore(keyspace.webhook_retries(account_id), "-inf", self.now_ms(), start=0, num=count)
            replies = await pipe.execute()
        taken = []
        for account_id, due in zip(account_ids, replies, strict=True):
            retries, events = keyspace.webhook_retries(account_id), keyspace.webhook_events(account_id)
            for event_id in (as_text(item) for item in due):
                if await self.redis.zrem(retries, event_id):
                    raw = await self.redis.hget(events, event_id)
                    if raw is not None:
                        taken.append(Event.from_json(raw))
        return taken

    async def finish(self, event: Event) -> None:
        """Delivered (or its subscription is gone): nothing more to keep."""
        await self.redis.hdel(keyspace.webhook_events(event.account_id), event.id)

    async def mark_failed(self, event: Event) -> None:
        """The schedule is used up: kept, redeliverable by hand, for FAILED_KEPT_MS."""
        failed = keyspace.webhook_failed(event.account_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keyspace.webhook_events(event.account_id), event.id, event.to_json())
            pipe.zadd(failed, {event.id: self.now_ms()})
            pipe.zremrangebyscore(failed, "-inf", self.now_ms() - FAILED_KEPT_MS)
            await pipe.execute()

    async def redeliver(self, account_id: str, subscription_id: str, event_id: str) -> bool:
        """Put a failed event back in the queue, due now, with a fresh schedule."""
        failed = keyspace.webhook_failed(account_id)
        raw = await self.redis.hget(keyspace.webhook_events(account_id), event_id)
        if raw is None or await self.redis.zscore(failed, event_id) is None:
            return False
        event = Event.from_json(raw)
        if event.subscription_id != subscription_id:
            return False
        await self.redis.zrem(failed, event_id)
        await self.schedule_retry(replace(event, attempts=0), self.now_ms())
        return True

    async def log_attempt(self, event: Event, fields: dict[str, str | int]) -> None:
        stream = keyspace.webhook_deliveries(event.account_id, event.subscription_id)
        record: dict[str, str | int] = {"event_id": event.id, "type": event.type, "time_ms": self.now_ms(), **fields}
        await self.redis.xadd(stream, record, maxlen=LOG_LENGTH, approximate=True)  # type: ignore[arg-type]

    async def delivery_log(self, account_id: str, subscription_id: str, limit: int) -> list[dict[str, object]]:
        stream = keyspace.webhook_deliveries(account_id, subscription_id)
        entries: list[tuple[str, dict[str, str]]] = await self.redis.xrevrange(stream, count=limit)  # type: ignore[assignment]
        return [_attempt_view(_text(fields)) for _, fields in entries]


def _text(fields: Mapping[Any, Any]) -> dict[str, str]:
    return {as_text(name): as_text(value) for name, value in fields.items()}


def _entries(reply: list[tuple[str, list[tuple[str, dict[str, str]]]]]) -> list[tuple[str, Event]]:
    """The (entry id, event) pairs of one XREADGROUP reply: [[stream, [(id, fields), ...]], ...]."""
    return [
        (as_text(entry_id), Event.from_outbox(_text(fields)))
        for _, messages in reply or []
        for entry_id, fields in messages
        if fields  # an entry deleted while pending comes back without its fields
    ]


def _attempt_view(fields: dict[str, str]) -> dict[str, object]:
    def number(name: str) -> int | None:
        return int(fields[name]) if fields.get(name) else None

    return {
        "event_id": fields.get("event_id"),
        "type": fields.get("type"),
        "time_ms": number("time_ms"),
        "attempt": number("attempt"),
        "status": fields.get("outcome"),
        "response_status": number("response_status"),
        "latency_ms": number("latency_ms"),
        "error": fields.get("error") or None,
        "next_retry_ms": number("next_retry_ms"),
    }
