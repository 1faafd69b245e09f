"""Accounts and their API keys, stored in Redis.

An API key looks like `sk-gw-<account hex>-<secret>`: the account part routes the lookup to the account's
own slot, so authenticating a request and holding its credits is one script in one slot. Only sha256 of
the whole key is stored; the key itself is returned once, at creation. (sha256 without salt is the right
tool here: keys are 256-bit random, so there is nothing to brute-force.)
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import orjson

from gateway.billing import keyspace
from gateway.billing.client import RedisClient
from gateway.billing.keyspace import as_text

API_KEY_PREFIX = "sk-gw-"
ACCOUNT_PREFIX = "acct_"


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    balance_micros: int
    created_at: int  # unix seconds


@dataclass(frozen=True)
class ApiKeyRecord:
    """What is kept of an API key: never the key itself, only its sha256."""

    id: str
    account_id: str
    name: str
    masked_key: str
    created_at: int
    revoked_at: int | None
    sha256: str

    def public(self) -> dict[str, object]:
        """The record as the admin API shows it: never the hash, never the key."""
        shown = asdict(self)
        del shown["sha256"]
        return shown

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> ApiKeyRecord:
        return cls(**orjson.loads(raw))

    @staticmethod
    def sort_key(record: ApiKeyRecord) -> tuple[int, str]:
        """Oldest first, then by id, so listings are stable."""
        return record.created_at, record.id


@dataclass(frozen=True)
class Tenant:
    """A live API key, its account, and the account's balance when the key was checked."""

    account_id: str
    api_key_id: str
    balance_micros: int


@dataclass(frozen=True)
class ParsedApiKey:
    account_id: str
    sha256: str


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def parse_api_key(api_key: str) -> ParsedApiKey | None:
    """Split a presented API key into its account and hash, or None when it cannot be one of ours."""
    if not api_key.startswith(API_KEY_PREFIX) or len(api_key) > 200 or not api_key.isascii():
        return None
    account_hex, _, secret = api_key[len(API_KEY_PREFIX) :].partition("-")
    if len(account_hex) != 16 or not secret or any(c not in "0123456789abcdef" for c in account_hex):
        return None
    return ParsedApiKey(ACCOUNT_PREFIX + account_hex, hash_api_key(api_key))


def valid_account_id(account_id: str) -> bool:
    hex_part = account_id.removeprefix(ACCOUNT_PREFIX)
    return (
        account_id.startswith(ACCOUNT_PREFIX) and len(hex_part) == 16 and all(c in "0123456789abcdef" for c in hex_part)
    )


class AccountStore:
    """Create and read accounts; create, list and revoke their API keys."""

    def __init__(self, redis: RedisClient, *, clock: Callable[[], float]):
        self.redis = redis
        self.clock = clock

    async def insert_account(self, name: str, balance_micros: int) -> Account:
        account_id = ACCOUNT_PREFIX + secrets.token_hex(8)
        now = int(self.clock())
        await self.redis.hset(
            keyspace.account(account_id),
            mapping={"name": name, "balance": balance_micros, "granted": balance_micros, "created_at": now},
        )
        await self.redis.zadd(keyspace.ACCOUNT_INDEX, {account_id: now})
        return Account(account_id, name, balance_micros, now)

    async def load_account(self, account_id: str) -> Account | None:
        if not valid_account_id(account_id):
            return None
        return _account(account_id, await self.redis.hgetall(keyspace.account(account_id)))

    async def account_ids(self) -> list[str]:
        """Every account's id, oldest first."""
        return [as_text(i) for i in await self.redis.zrange(keyspace.ACCOUNT_INDEX, 0, -1)]

    async def load_accounts(self) -> list[Account]:
        """Every account, oldest first, in two round trips."""
        ids = await self.account_ids()
        async with self.redis.pipeline(transaction=False) as pipe:
            for account_id in ids:
                pipe.hgetall(keyspace.account(account_id))
            replies = await pipe.execute()
        accounts = [_account(account_id, fields) for account_id, fields in zip(ids, replies, strict=True)]
        return [account for account in accounts if account is not None]

    async def insert_api_key(self, account_id: str, name: str) -> tuple[ApiKeyRecord, str]:
        """Make a new key for the account. Returns its record and the key itself, which is not kept."""
        api_key = f"{API_KEY_PREFIX}{account_id.removeprefix(ACCOUNT_PREFIX)}-{secrets.token_urlsafe(32)}"
        record = ApiKeyRecord(
            id="key_" + secrets.token_hex(8),
            account_id=account_id,
            name=name,
            masked_key=f"{api_key[:14]}...{api_key[-4:]}",
            created_at=int(self.clock()),
            revoked_at=None,
            sha256=hash_api_key(api_key),
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keyspace.api_key_records(account_id), record.id, record.to_json())
            pipe.hset(keyspace.live_api_keys(account_id), record.sha256, record.id)
            await pipe.execute()
        await self.redis.hset(keyspace.API_KEY_INDEX, record.id, account_id)
        return record, api_key

    async def load_api_keys(self, account_id: str) -> list[ApiKeyRecord]:
        raw = await self.redis.hvals(keyspace.api_key_records(account_id))
        return sorted((ApiKeyRecord.from_json(value) for value in raw), key=ApiKeyRecord.sort_key)

    async def load_api_key(self, key_id: str) -> ApiKeyRecord | None:
        account_id = await self.redis.hget(keyspace.API_KEY_INDEX, key_id)
        if account_id is None:
            return None
        raw = await self.redis.hget(keyspace.api_key_records(as_text(account_id)), key_id)
        return None if raw is None else ApiKeyRecord.from_json(raw)

    async def mark_revoked(self, key_id: str) -> ApiKeyRecord | None:
        """Revoke at once: the key's hash leaves the live set, so the next request with it is refused."""
        record = await self.load_api_key(key_id)
        if record is None:
            return None
        if record.revoked_at is None:
            revoked = replace(record, revoked_at=int(self.clock()))
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hdel(keyspace.live_api_keys(record.account_id), record.sha256)
                pipe.hset(keyspace.api_key_records(record.account_id), key_id, revoked.to_json())
                await pipe.execute()
            record = revoked
        return record

    async def find_tenant(self, parsed: ParsedApiKey) -> Tenant | None:
        """The tenant of a live API key, else None. One round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(keyspace.live_api_keys(parsed.account_id), parsed.sha256)
            pipe.hget(keyspace.account(parsed.account_id), "balance")
            key_id, balance = await pipe.execute()
        if key_id is None or balance is None:
            return None
        return Tenant(parsed.account_id, as_text(key_id), int(balance))


def _account(account_id: str, fields: Mapping[Any, Any]) -> Account | None:
    if not fields:
        return None
    values = {as_text(k): as_text(v) for k, v in fields.items()}
    return Account(account_id, values["name"], int(values["balance"]), int(values["created_at"]))
