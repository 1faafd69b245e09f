"""Webhook subscriptions as a tenant (or the operator, for any account) manages them: checked input, views.

service = WebhookService(store, outbox, Limits.configured(settings.webhooks), clock=time.time)
view = await service.create(account_id, {"url": ..., "events": [...], "settings": {...}})
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from gateway.billing.pricing import credits_number
from gateway.config import WebhooksConfig
from gateway.errors import InvalidRequest, NotFound
from gateway.numbers import parse_credits, parse_whole_number
from gateway.webhooks.outbox import Outbox
from gateway.webhooks.signing import new_secret
from gateway.webhooks.store import CREDITS_LOW, EVENT_TYPES, USAGE_THRESHOLD, Subscription, WebhookStore
from gateway.webhooks.targets import TargetRefused, check_resolved, check_url

DEFAULT_USAGE_PERCENT = 80
ROTATION_WINDOW_MS = 24 * 3600 * 1000  # the previous secret still signs for a day, so receivers can switch
SETTING_NAMES = ("usage_threshold_percent", "credits_low_threshold")


@dataclass(frozen=True)
class Limits:
    max_per_account: int
    allow_private_targets: bool

    @classmethod
    def configured(cls, config: WebhooksConfig) -> Limits:
        return cls(config.max_per_account, config.allow_private_targets)


class WebhookService:
    def __init__(self, store: WebhookStore, outbox: Outbox, limits: Limits, *, clock: Callable[[], float]):
        self.store = store
        self.outbox = outbox
        self.limits = limits
        self.clock = clock

    async def create(self, account_id: str, payload: Mapping[str, object]) -> dict[str, object]:
        if await self.store.count(account_id) >= self.limits.max_per_account:
            raise InvalidRequest(f"An account may have at most {self.limits.max_per_account} webhooks.")
        url = await self._url(payload.get("url"))
        events = _events(payload.get("events"))
        percent, low = _settings(payload.get("settings", {}), events, current=None)
        subscription = Subscription(
            id="wh_" + secrets.token_hex(8),
            account_id=account_id,
            url=url,
            events=events,
            usage_threshold_percent=percent,
            credits_low_threshold_micros=low,
            enabled=_enabled(payload.get("enabled", True)),
            created_at=int(self.clock()),
            secret=new_secret(),
        )
        await self.store.save(subscription, rearm=True)
        return {**view(subscription), "secret": subscription.secret}

    async def list_for(self, account_id: str) -> dict[str, object]:
        return {"object": "list", "data": [view(s) for s in await self.store.list_for(account_id)]}

    async def show(self, account_id: str, subscription_id: str) -> dict[str, object]:
        return view(await self._existing(account_id, subscription_id))

    async def update(self, account_id: str, subscription_id: str, payload: Mapping[str, object]) -> dict[str, object]:
        """PATCH: url, events, settings and enabled; new thresholds re-arm, re-enabling forgets past failures."""
        current = await self._existing(account_id, subscription_id)
        unknown = set(payload) - {"url", "events", "settings", "enabled"}
        if unknown:
            raise InvalidRequest(f"Unknown field '{sorted(unknown)[0]}'.", param=sorted(unknown)[0])
        url = current.url if "url" not in payload else await self._url(payload["url"])
        events = current.events if "events" not in payload else _events(payload["events"])
        percent, low = _settings(payload.get("settings", {}), events, current=current)
        enabled = current.enabled if "enabled" not in payload else _enabled(payload["enabled"])
        changed = replace(
            current, url=url, events=events, usage_threshold_percent=percent, credits_low_threshold_micros=low
        )
        if enabled and not current.enabled:
            changed = replace(changed, disabled_reason=None, failing_since_ms=None)
        changed = replace(changed, enabled=enabled)
        rearm = (changed.events, percent, low) != (
            current.events,
            current.usage_threshold_percent,
            current.credits_low_threshold_micros,
        )
        await self.store.save(changed, rearm=rearm)
        return view(changed)

    async def delete(self, account_id: str, subscription_id: str) -> dict[str, object]:
        await self._existing(account_id, subscription_id)
        await self.store.delete(account_id, subscription_id)
        return {"id": subscription_id, "object": "webhook", "deleted": True}

    async def rotate_secret(self, account_id: str, subscription_id: str) -> dict[str, object]:
        current = await self._existing(account_id, subscription_id)
        until = self.outbox.now_ms() + ROTATION_WINDOW_MS  # on the senders' clock, which checks it
        rotated = replace(current, secret=new_secret(), previous_secret=current.secret, previous_secret_until_ms=until)
        await self.store.save(rotated, rearm=False)
        return {**view(rotated), "secret": rotated.secret}

    async def send_test(self, account_id: str, subscription_id: str) -> dict[str, object]:
        subscription = await self._existing(account_id, subscription_id)
        event_id = await self.outbox.append_test(subscription)
        return {"id": event_id, "object": "webhook_event", "type": "webhook.test", "webhook_id": subscription.id}

    async def deliveries(self, account_id: str, subscription_id: str, limit: int) -> dict[str, object]:
        await self._existing(account_id, subscription_id)
        return {"object": "list", "data": await self.outbox.delivery_log(account_id, subscription_id, limit)}

    async def redeliver(self, account_id: str, subscription_id: str, event_id: str) -> dict[str, object]:
        await self._existing(account_id, subscription_id)
        if not await self.outbox.redeliver(account_id, subscription_id, event_id):
            raise NotFound(f"No failed event '{event_id[:80]}' for this webhook.", param="event_id")
        return {"id": event_id, "object": "webhook_event", "status": "scheduled"}

    async def _existing(self, account_id: str, subscription_id: str) -> Subscription:
        subscription = await self.store.get(account_id, subscription_id)
        if subscription is None:
            raise NotFound(f"No webhook with id '{subscription_id[:80]}'.")
        return subscription

    async def _url(self, value: object) -> str:
        if not isinstance(value, str):
            raise InvalidRequest("'url' is required: an http(s) URL.", param="url")
        try:
            url = check_url(value)
            await check_resolved(url, allow_private=self.limits.allow_private_targets)
        except TargetRefused as exc:
            raise InvalidRequest(f"'url' is refused: {exc}", param="url") from exc
        return url


def view(subscription: Subscription) -> dict[str, object]:
    """A subscription as the API shows it: never its secrets."""
    settings: dict[str, object] = {}
    if subscription.usage_threshold_percent is not None:
        settings["usage_threshold_percent"] = subscription.usage_threshold_percent
    if subscription.credits_low_threshold_micros is not None:
        settings["credits_low_threshold"] = credits_number(subscription.credits_low_threshold_micros)
    return {
        "id": subscription.id,
        "object": "webhook",
        "url": subscription.url,
        "events": list(subscription.events),
        "settings": settings,
        "enabled": subscription.enabled,
        "disabled_reason": subscription.disabled_reason,
        "created_at": subscription.created_at,
    }


def _events(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise InvalidRequest(f"'events' must be a non-empty array of: {', '.join(EVENT_TYPES)}.", param="events")
    for item in value:
        if item not in EVENT_TYPES:
            raise InvalidRequest(f"Unknown event '{item[:80]}'; known: {', '.join(EVENT_TYPES)}.", param="events")
    return tuple(dict.fromkeys(value))


def _enabled(value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest("'enabled' must be a boolean.", param="enabled")
    return value


def _settings(value: object, events: tuple[str, ...], current: Subscription | None) -> tuple[int | None, int | None]:
    """(usage percent, low threshold in micros); what the request leaves out keeps its current value."""
    if not isinstance(value, Mapping):
        raise InvalidRequest("'settings' must be an object.", param="settings")
    for name in value:
        if name not in SETTING_NAMES:
            raise InvalidRequest(f"Unknown setting '{str(name)[:80]}'.", param=f"settings.{name}")
    percent = current.usage_threshold_percent if current else None
    low = current.credits_low_threshold_micros if current else None
    if "usage_threshold_percent" in value:
        percent = _percent(value["usage_threshold_percent"])
    if "credits_low_threshold" in value:
        low = _credits(value["credits_low_threshold"])
    if USAGE_THRESHOLD in events and percent is None:
        percent = DEFAULT_USAGE_PERCENT
    if CREDITS_LOW in events and low is None:
        raise InvalidRequest("'settings.credits_low_threshold' is required for credits.low.", param="settings")
    return percent, low


def _percent(value: object) -> int:
    return parse_whole_number(value, "settings.usage_threshold_percent", minimum=1, maximum=100)


def _credits(value: object) -> int:
    return parse_credits(value, "settings.credits_low_threshold", allow_negative=False)
