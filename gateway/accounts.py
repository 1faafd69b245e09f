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
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from gateway.billing import redis_keys
from gateway.billing.redis_keys import as_text

KEY_PREFIX = "sk-gw-"
ACCOUNT_PREFIX = "acct_"


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    balance_micros: int
    created_at: int  # unix seconds


@dataclass(frozen=True)
class KeyRecord:
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


@dataclass(frozen=True)
class ParsedKey:
    account_id: str
    sha256: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_key(key: str) -> ParsedKey | None:
    """Split a presented key into its account and hash, or None when it cannot be one of ours."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    account_hex, _, secret = key[len(KEY_PREFIX) :].partition("-")
    if len(account_hex) != 16 or not secret or any(c not in "0123456789abcdef" for c in account_hex):
        return None
    return ParsedKey(ACCOUNT_PREFIX + account_hex, hash_key(key))


def valid_account_id(account_id: str) -> bool:
    hex_part = account_id.removeprefix(ACCOUNT_PREFIX)
    return (
        account_id.startswith(ACCOUNT_PREFIX) and len(hex_part) == 16 and all(c in "0123456789abcdef" for c in hex_part)
    )


class AccountStore:
    """Create and read accounts; create, list and revoke their keys."""

    def __init__(self, redis: Redis, *, clock: Callable[[], float]):
        self.redis = redis
        self.clock = clock

    async def create_account(self, name: str, balance_micros: int) -> Account:
        account_id = ACCOUNT_PREFIX + secrets.token_hex(8)
        now = int(self.clock())
        await self.redis.hset(
            redis_keys.account(account_id),
            mapping={"name": name, "balance": balance_micros, "granted": balance_micros, "created_at": now},
        )
        await self.redis.zadd(redis_keys.ACCOUNT_INDEX, {account_id: now})
        return Account(account_id, name, balance_micros, now)

    async def get_account(self, account_id: str) -> Account | None:
        if not valid_account_id(account_id):
            return None
        return _account(account_id, await self.redis.hgetall(redis_keys.account(account_id)))

    async def list_accounts(self) -> list[Account]:
        """Every account, oldest first, in two round trips."""
        ids = [as_text(i) for i in await self.redis.zrange(redis_keys.ACCOUNT_INDEX, 0, -1)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for account_id in ids:
                pipe.hgetall(redis_keys.account(account_id))
            replies = await pipe.execute()
        accounts = [_account(account_id, fields) for account_id, fields in zip(ids, replies, strict=True)]
        return [account for account in accounts if account is not None]

    async def create_key(self, account_id: str, name: str) -> tuple[KeyRecord, str]:
        """Make a new key for the account. Returns its record and the key itself, which is not kept."""
        key = f"{KEY_PREFIX}{account_id.removeprefix(ACCOUNT_PREFIX)}-{secrets.token_urlsafe(32)}"
        record = KeyRecord(
            id="key_" + secrets.token_hex(8),
            account_id=account_id,
            name=name,
            masked_key=f"{key[:14]}...{key[-4:]}",
            created_at=int(self.clock()),
            revoked_at=None,
            sha256=hash_key(key),
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(redis_keys.key_records(account_id), record.id, orjson.dumps(asdict(record)))
            pipe.hset(redis_keys.api_keys(account_id), record.sha256, record.id)
            await pipe.execute()
        await self.redis.hset(redis_keys.KEY_INDEX, record.id, account_id)
        return record, key

    async def list_keys(self, account_id: str) -> list[KeyRecord]:
        raw = await self.redis.hvals(redis_keys.key_records(account_id))
        records = [KeyRecord(**orjson.loads(value)) for value in raw]
        return sorted(records, key=lambda record: (record.created_at, record.id))

    async def get_key(self, key_id: str) -> KeyRecord | None:
        account_id = await self.redis.hget(redis_keys.KEY_INDEX, key_id)
        if account_id is None:
            return None
        raw = await self.redis.hget(redis_keys.key_records(as_text(account_id)), key_id)
        return None if raw is None else KeyRecord(**orjson.loads(raw))

    async def revoke_key(self, key_id: str) -> KeyRecord | None:
        """Revoke at once: the key's hash leaves the live set, so the next request with it is refused."""
        record = await self.get_key(key_id)
        if record is None:
            return None
        if record.revoked_at is None:
            revoked = KeyRecord(**{**asdict(record), "revoked_at": int(self.clock())})
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hdel(redis_keys.api_keys(record.account_id), record.sha256)
                pipe.hset(redis_keys.key_records(record.account_id), key_id, orjson.dumps(asdict(revoked)))
                await pipe.execute()
            record = revoked
        return record

    async def authenticate(self, parsed: ParsedKey) -> tuple[str, str, int] | None:
        """(account id, key id, balance micros) for a live key, else None. One round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(redis_keys.api_keys(parsed.account_id), parsed.sha256)
            pipe.hget(redis_keys.account(parsed.account_id), "balance")
            key_id, balance = await pipe.execute()
        if key_id is None or balance is None:
            return None
        return parsed.account_id, as_text(key_id), int(balance)


def _account(account_id: str, fields: Mapping[Any, Any]) -> Account | None:
    if not fields:
        return None
    values = {as_text(k): as_text(v) for k, v in fields.items()}
    return Account(account_id, values["name"], int(values["balance"]), int(values["created_at"]))
