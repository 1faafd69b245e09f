"""Helpers the webhook tests import by name: the receiver the `receiver` fixture starts and what it got, the
settings that let webhooks reach it, and a subscription made through the API."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from aiohttp.test_utils import TestServer
from standardwebhooks.webhooks import Webhook

from tests.common import Gateway


@dataclass
class Delivery:
    """One request the receiver got: its headers (names lower-cased) and body."""

    headers: dict[str, str]
    body: bytes

    def verified(self, secret: str) -> dict[str, object]:
        """The payload, once the `standardwebhooks` package has checked its signature (it raises if not)."""
        payload: dict[str, object] = Webhook(secret).verify(self.body, self.headers)
        return payload


@dataclass
class Receiver:
    """The receiver the `receiver` fixture starts, at `url`: what it got, and how it answers."""

    server: TestServer
    statuses: list[int] = field(default_factory=list)  # answered in order; 200 once they run out
    got: list[Delivery] = field(default_factory=list)
    delay_s: float = 0.0  # before answering

    @property
    def url(self) -> str:
        return str(self.server.make_url("/hook"))

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[Delivery]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.got) < count:
            assert asyncio.get_running_loop().time() < deadline, f"got {len(self.got)} of {count} deliveries"
            await asyncio.sleep(0.05)
        return self.got

    def event_ids(self) -> list[str]:
        return [json.loads(delivery.body)["id"] for delivery in self.got]


# Webhooks to 127.0.0.1 (the test receiver), and retries a second apart instead of hours.
WEBHOOK_SETTINGS: dict[str, dict[str, object]] = {
    "webhooks": {"allow_private_targets": True, "retry_schedule_seconds": (1, 1, 1)}
}


async def subscribe(gateway: Gateway, key: str, url: str, events: list[str], **settings: object) -> dict[str, object]:
    body = {"url": url, "events": events, "settings": settings}
    response = await gateway.client.post("/v1/webhooks", json=body, headers={"Authorization": f"Bearer {key}"})
    created: dict[str, object] = await response.json()
    assert response.status == 201, created
    return created
