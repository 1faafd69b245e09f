"""The sender: delivers the outbox's new events, the retries that are due, and what a dead process left.

Each round reads every subscribed account's outbox through the `senders` group (new entries), takes the due
retries, and, every CLAIM_EVERY_S, claims entries another consumer left pending. Deliveries run as tasks,
at most CONCURRENCY at once. An event is acknowledged in the outbox only after its outcome is written (a
retry scheduled, or delivered, or failed for good), so a crash never loses one; at worst it is sent again,
and receivers deduplicate on its stable id.

An attempt cut short by a stop counts as failed and is retried on the schedule. A subscription whose
deliveries keep failing for `disable_after_days` is disabled, with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import aiohttp

from gateway.billing.settler import REDIS_UNAVAILABLE, rest_until_set
from gateway.config import WebhooksConfig
from gateway.metrics import Metrics
from gateway.webhooks.delivery import AttemptResult, attempt
from gateway.webhooks.events import Event
from gateway.webhooks.outbox import Outbox
from gateway.webhooks.store import Subscription, WebhookStore

log = logging.getLogger(__name__)

POLL_S = 1.0  # between rounds when nothing wakes the sender sooner
CLAIM_EVERY_S = 10.0
BATCH = 50  # entries per account per round
CONCURRENCY = 32
JITTER = 0.1  # +-10% on every retry delay, so a burst of failures does not come back as one burst


@dataclass(frozen=True)
class Schedule:
    retry_delays_s: tuple[int, ...]  # before each retry after the first, immediate attempt
    disable_after_ms: int

    @classmethod
    def configured(cls, config: WebhooksConfig) -> Schedule:
        return cls(config.retry_schedule_seconds, config.disable_after_days * 86_400_000)

    def next_retry_ms(self, attempts: int, now_ms: int, retry_after_s: float | None) -> int | None:
        """When to try again after `attempts` attempts, or None when the schedule is used up."""
        if attempts > len(self.retry_delays_s):
            return None
        delay = self.retry_delays_s[attempts - 1] * random.uniform(1 - JITTER, 1 + JITTER)
        return now_ms + int(max(delay, retry_after_s or 0) * 1000)


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class WebhookSender:
    def __init__(
        self,
        store: WebhookStore,
        outbox: Outbox,
        session: aiohttp.ClientSession,
        schedule: Schedule,
        *,
        wakeup: asyncio.Event,
        clock: Callable[[], float],
        metrics: Metrics | None = None,
    ):
        self.store, self.outbox, self.session, self.schedule = store, outbox, session, schedule
        self.metrics = metrics
        self.wakeup = wakeup
        self.clock = clock
        self.consumer = consumer_name()
        self.slots = asyncio.Semaphore(CONCURRENCY)
        self.in_flight: set[asyncio.Task[None]] = set()
        self._last_claim = 0.0

    async def run(self) -> None:
        """Rounds until cancelled; a round that fails (Redis away) is logged and the next one tries again."""
        redis_away = False
        while True:
            self.wakeup.clear()
            try:
                await self.round()
                redis_away = False
            except REDIS_UNAVAILABLE as exc:  # the next round retries; nothing was acknowledged
                if not redis_away:  # once per outage, not once a second
                    log.warning("webhook sender paused: Redis is unavailable (%s)", type(exc).__name__)
                redis_away = True
            except Exception:
                log.exception("webhook round failed")  # the next round retries; nothing was acknowledged
            await rest_until_set(self.wakeup, POLL_S)

    async def round(self) -> None:
        account_ids = await self.store.account_ids()
        if not account_ids:
            return
        for entry_id, event in await self.outbox.read_new(account_ids, self.consumer, BATCH):
            await self._start(event, entry_id)
        for event in await self.outbox.take_due(account_ids, BATCH):
            await self._start(event, None)
        if time.monotonic() - self._last_claim >= CLAIM_EVERY_S:
            self._last_claim = time.monotonic()
            for account_id in account_ids:
                for entry_id, event in await self.outbox.claim_stale(account_id, self.consumer, BATCH):
                    await self._start(event, entry_id)

    async def _start(self, event: Event, entry_id: str | None) -> None:
        await self.slots.acquire()
        task = asyncio.create_task(self._deliver_then_release(event, entry_id))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def _deliver_then_release(self, event: Event, entry_id: str | None) -> None:
        try:
            await self.deliver(event, entry_id)
        except Exception:
            log.exception("delivery of %s failed", event.id)  # still pending or queued: retried later
        finally:
            self.slots.release()

    async def drain(self, deadline_s: float) -> None:
        """On shutdown: let attempts in flight finish for a while, then cut them short (they count as failed)."""
        if self.in_flight:
            await asyncio.wait(set(self.in_flight), timeout=deadline_s)
        for task in list(self.in_flight):
            task.cancel()
        await asyncio.gather(*self.in_flight, return_exceptions=True)

    async def deliver(self, event: Event, entry_id: str | None) -> None:
        """One attempt of `event`, its outcome written, then (for a new entry) acknowledged."""
        if entry_id is not None and not await self.outbox.keep(event.account_id, entry_id, self.consumer):
            return  # it waited for a slot so long that another process claimed it: that one delivers it
        subscription = await self.store.get(event.account_id, event.subscription_id)
        if subscription is None or not subscription.enabled:
            await self._log(event, {"outcome": "skipped", "error": "the webhook is deleted or disabled"})
            await self.outbox.finish(event)
        else:
            try:
                result = await self._attempt(subscription, event)
            except asyncio.CancelledError:
                # Stopping: the attempt counts as failed and goes back on the schedule before the task ends.
                stopped = AttemptResult(False, True, None, 0, "the gateway stopped during the attempt")
                await asyncio.shield(self._record(subscription, event, stopped))
                if entry_id is not None:
                    await asyncio.shield(self.outbox.ack(event.account_id, entry_id))
                raise
            await self._record(subscription, event, result)
        if entry_id is not None:
            await self.outbox.ack(event.account_id, entry_id)

    async def _attempt(self, subscription: Subscription, event: Event) -> AttemptResult:
        now_ms = int(self.clock() * 1000)
        return await attempt(
            self.session,
            subscription.url,
            secrets=subscription.secrets(now_ms),
            msg_id=event.id,
            body=event.payload(),
            now_s=now_ms // 1000,
        )

    async def _record(self, subscription: Subscription, event: Event, result: AttemptResult) -> None:
        now_ms = int(self.clock() * 1000)
        attempts = event.attempts + 1
        fields: dict[str, str | int] = {
            "attempt": attempts,
            "response_status": result.status or "",
            "latency_ms": result.latency_ms,
            "error": result.error or "",
            "response": result.response_excerpt[:200],
        }
        if result.ok:
            await self._log(event, {**fields, "outcome": "delivered"})
            await self.outbox.finish(event)
            if subscription.failing_since_ms is not None:
                await self.store.update_failure_state(subscription, failing_since_ms=None)
            return
        failing_since = subscription.failing_since_ms or now_ms
        reason = self._disable_reason(result, failing_since, now_ms)
        due = (
            None
            if reason or not result.retryable
            else self.schedule.next_retry_ms(attempts, now_ms, result.retry_after_s)
        )
        if due is not None:
            await self.outbox.schedule_retry(replace(event, attempts=attempts), due)
            await self._log(event, {**fields, "outcome": "failed", "next_retry_ms": due})
        else:
            await self.outbox.mark_failed(replace(event, attempts=attempts))
            await self._log(event, {**fields, "outcome": "failed_for_good"})
        await self.store.update_failure_state(subscription, failing_since_ms=failing_since, disabled_reason=reason)
        if reason:
            log.warning("webhook %s of %s disabled: %s", subscription.id, subscription.account_id, reason)

    async def _log(self, event: Event, fields: dict[str, str | int]) -> None:
        """Into the subscription's delivery log, and into `gateway_webhook_deliveries_total{outcome}`."""
        await self.outbox.log_attempt(event, fields)
        if self.metrics is not None:
            self.metrics.webhook_deliveries.labels(str(fields["outcome"])).inc()

    def _disable_reason(self, result: AttemptResult, failing_since_ms: int, now_ms: int) -> str | None:
        if not result.retryable:
            return f"the receiver answered HTTP {result.status}: it asked not to be sent more"
        if now_ms - failing_since_ms >= self.schedule.disable_after_ms:
            days = self.schedule.disable_after_ms // 86_400_000
            return f"every delivery failed for {days} days (last: {result.error})"
        return None
