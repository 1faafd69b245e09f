"""Real traffic through the gateway for the usage tests: tenants with several keys, requests at chosen times."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from tests.common import REFERENCE, Gateway, StartGateway, user_message


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type, misc]


@dataclass(frozen=True)
class Sent:
    """One request as the client saw it, and what it must have cost."""

    when: datetime
    key_id: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    credits_micros: int
    status: int


@dataclass
class Tenant:
    account_id: str
    keys: dict[str, str]  # key id -> the key itself
    names: dict[str, str]  # key id -> name
    sent: list[Sent] = field(default_factory=list)

    def key(self, index: int) -> str:
        return list(self.keys.values())[index]

    def key_id(self, index: int) -> str:
        return list(self.keys)[index]

    def auth(self, index: int = 0) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key(index)}"}

    def within(self, first: date, last: date) -> list[Sent]:
        return [s for s in self.sent if first <= s.when.date() <= last]


async def new_tenant(gateway: Gateway, keys: Iterable[str] = ("web", "batch", "idle"), name: str = "acme") -> Tenant:
    status, account = await gateway.admin("POST", "/admin/accounts", {"name": name, "credits": 1000})
    assert status == 201, account
    tenant = Tenant(str(account["id"]), {}, {})
    for key_name in keys:
        status, created = await gateway.admin("POST", f"/admin/accounts/{tenant.account_id}/keys", {"name": key_name})
        assert status == 201, created
        tenant.keys[str(created["id"])] = str(created["key"])
        tenant.names[str(created["id"])] = key_name
    return tenant


async def send(gateway: Gateway, tenant: Tenant, key: int, model: str, when: datetime, max_tokens: int = 16) -> Sent:
    """One chat request settled at `when` (the gateway's clock is set there first)."""
    gateway.clock.now = when.timestamp()
    body = {"model": model, "messages": user_message(f"Hello at {when:%H:%M}"), "max_tokens": max_tokens}
    response = await gateway.chat(tenant.key(key), body)
    payload = await response.json()
    prompt = completion = 0
    if response.status == 200:
        prompt, completion = payload["usage"]["prompt_tokens"], payload["usage"]["completion_tokens"]
    micros = REFERENCE.cost_micros(prompt, completion)
    sent = Sent(when, tenant.key_id(key), model, prompt, completion, micros, response.status)
    tenant.sent.append(sent)
    return sent


# (when, key index, model, max_tokens): several days, both UTC month edges, two keys, three models (one failing).
SCHEDULE = [
    (utc(2026, 8, 31, 23, 59, 59), 0, "m-first", 5),
    (utc(2026, 9, 1, 0, 0, 0), 1, "m-second", 9),
    (utc(2026, 9, 1, 12, 30), 0, "m-first", 16),
    (utc(2026, 9, 19, 8), 1, "m-first", 3),
    (utc(2026, 9, 19, 9), 0, "m-second", 16),
    (utc(2026, 9, 19, 23, 59, 59), 1, "m-second", 7),
    (utc(2026, 9, 20, 0, 0, 1), 0, "m-broken", 16),
    (utc(2026, 9, 20, 14), 0, "m-first", 11),
    (utc(2026, 9, 21, 0, 30), 1, "m-first", 16),
    (utc(2026, 9, 21, 9, 15), 1, "m-second", 2),
    (utc(2026, 9, 21, 9, 45), 0, "m-first", 4),
    (utc(2026, 9, 21, 13), 0, "m-second", 12),
]
NOW = utc(2026, 9, 21, 13, 30)


async def run_schedule(gateway: Gateway, tenant: Tenant) -> None:
    for when, key, model, max_tokens in SCHEDULE:
        await send(gateway, tenant, key, model, when, max_tokens)
    gateway.clock.now = NOW.timestamp()


async def get_json(
    gateway: Gateway, path: str, headers: dict[str, str], **params: str
) -> tuple[int, dict[str, object]]:
    response = await gateway.client.get(path, params=params, headers=headers)
    return response.status, await response.json()


async def scheduled_traffic(start_gateway: StartGateway, **settings: object) -> tuple[Gateway, Tenant]:
    """A gateway with models m-first, m-second and m-broken (its upstream fails), and a tenant that ran SCHEDULE."""
    gateway = await start_gateway(settings or None, first={}, second={}, broken={"fail_status": 500})
    tenant = await new_tenant(gateway)
    await run_schedule(gateway, tenant)
    return gateway, tenant
