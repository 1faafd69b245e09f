"""Helpers the ledger and script tests import by name: a funded account with a live API key, and settlements."""

from __future__ import annotations

from redis.asyncio import Redis

from gateway.admin.accounts import AccountStore, parse_api_key
from gateway.billing import Ledger, Retention, Settlement
from tests.common import FakeClock

RETENTION = Retention(request_log_maxlen=1000, request_log_retention_ms=0, hour_ttl_s=86400, settled_ids_ms=3_600_000)


async def funded_ledger(redis: Redis, credits_micros: int) -> tuple[Ledger, str, str]:
    """A ledger on a fake clock, a new account holding `credits_micros`, and the sha256 of its API key."""
    clock = FakeClock()
    store = AccountStore(redis, clock=clock)
    account = await store.insert_account("acme", credits_micros)
    _, key = await store.insert_api_key(account.id, "app")
    parsed = parse_api_key(key)
    assert parsed is not None
    return Ledger(redis, clock=clock, retention=RETENTION), account.id, parsed.sha256


def settlement(account_id: str, request_id: str, cost: int, **fields: object) -> Settlement:
    """A settlement of 10 prompt and 5 completion tokens on model "m" costing `cost` micro-credits."""
    return Settlement(
        account_id=account_id,
        request_id=request_id,
        model="m",
        cost_micros=cost,
        prompt_tokens=10,
        completion_tokens=5,
        **fields,  # type: ignore[arg-type]
    )
