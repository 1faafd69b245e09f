"""The ledger: reserve, settle and grant credits, each one atomic Lua script in the account's slot.

ledger = Ledger(redis, clock=time.time)
outcome = await ledger.reserve(account_id, key_sha, request_id, hold_micros=900, min_hold_micros=900, ttl_s=600)
settled = await ledger.settle(SettleRequest(...))
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from gateway.billing import redis_keys
from gateway.billing.redis_keys import as_text

Clock = Callable[[], float]


class ReserveStatus(enum.IntEnum):
    HELD = 1
    PARTIAL = 0  # the balance covers the minimum but not the full hold
    UNKNOWN_KEY = -1
    INSUFFICIENT = -2


@dataclass(frozen=True)
class ReserveOutcome:
    status: ReserveStatus
    key_id: str
    balance_micros: int  # after the hold when HELD, else the balance as it stands


@dataclass(frozen=True)
class SettleRequest:
    """The real cost of one request and the facts its usage record keeps."""

    account_id: str
    request_id: str
    model: str
    cost_micros: int
    prompt_tokens: int
    completion_tokens: int
    failed: bool = False
    record: Mapping[str, str | int] = field(default_factory=dict)


@dataclass(frozen=True)
class SettleOutcome:
    settled: bool  # False: there was no hold left to settle (already settled); nothing changed
    balance_micros: int
    charged_micros: int


class GrantError(Exception):
    pass


def _load(name: str) -> str:
    return resources.files("gateway.billing").joinpath("lua", name).read_text(encoding="utf-8")


class Ledger:
    """Credit balances in Redis. Every method that moves money is a single script call (one round trip)."""

    def __init__(
        self,
        redis: Redis,
        *,
        clock: Clock,
        request_log_maxlen: int = 1_000_000,
        hour_ttl_s: int = 0,
        request_log_retention_ms: int = 0,
    ):
        self.redis = redis
        self.clock = clock
        self.request_log_maxlen = request_log_maxlen
        self.request_log_retention_ms = request_log_retention_ms  # 0: records are capped by count only
        self.hour_ttl_s = hour_ttl_s or 35 * 86400
        # redis-py re-sends the script body when the server answers NOSCRIPT (after a restart or SCRIPT FLUSH).
        self._reserve: AsyncScript = redis.register_script(_load("reserve.lua"))
        self._settle: AsyncScript = redis.register_script(_load("settle.lua"))
        self._grant: AsyncScript = redis.register_script(_load("grant.lua"))

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def reserve(
        self,
        account_id: str,
        key_sha: str,
        request_id: str,
        *,
        hold_micros: int,
        min_hold_micros: int,
        ttl_s: int,
    ) -> ReserveOutcome:
        """Authenticate the key and hold `hold_micros`, or report why not. Nothing is held unless HELD."""
        keys = [redis_keys.account(account_id), redis_keys.api_keys(account_id), redis_keys.holds(account_id)]
        deadline = self.now_ms() + ttl_s * 1000
        reply = await self._reserve(keys, [key_sha, request_id, hold_micros, min_hold_micros, deadline])
        code, key_id, balance = reply
        return ReserveOutcome(ReserveStatus(int(code)), as_text(key_id), int(balance))

    async def settle(self, request: SettleRequest) -> SettleOutcome:
        """Charge the real cost (never more than hold + balance), release the rest, record the usage."""
        now_ms = self.now_ms()
        when = datetime.fromtimestamp(now_ms / 1000, UTC)
        account_id = request.account_id
        keys = [
            redis_keys.account(account_id),
            redis_keys.holds(account_id),
            redis_keys.usage_day(account_id, when),
            redis_keys.usage_hour(account_id, when),
            redis_keys.key_last_used(account_id),
            redis_keys.request_log(account_id),
        ]
        args: list[str | int] = [
            request.request_id,
            request.cost_micros,
            request.prompt_tokens,
            request.completion_tokens,
            request.model,
            now_ms,
            self.hour_ttl_s,
            self.request_log_maxlen,
            1 if request.failed else 0,
            max(now_ms - self.request_log_retention_ms, 1) if self.request_log_retention_ms else 0,
        ]
        for name, value in request.record.items():
            args.extend((name, value))
        settled, balance, charged = await self._settle(keys, args)
        return SettleOutcome(bool(settled), int(balance), int(charged))

    async def grant(self, account_id: str, amount_micros: int, note: str = "") -> int:
        """Add credits (negative: take back, never below zero). Returns the balance after."""
        keys = [redis_keys.account(account_id), redis_keys.grant_log(account_id)]
        code, balance = await self._grant(keys, [amount_micros, self.now_ms(), note])
        if code == -1:
            raise GrantError("account not found")
        if code == -2:
            raise GrantError("the balance cannot go below zero")
        return int(balance)

    async def balance(self, account_id: str) -> int | None:
        value = await self.redis.hget(redis_keys.account(account_id), "balance")
        return None if value is None else int(value)

    async def reserved(self, account_id: str) -> int:
        """Micro-credits currently held by requests in flight."""
        return (await self.reserved_many([account_id]))[0]

    async def reserved_many(self, account_ids: list[str]) -> list[int]:
        """`reserved` for several accounts in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for account_id in account_ids:
                pipe.hvals(redis_keys.holds(account_id))
            replies = await pipe.execute()
        return [sum(int(as_text(entry).split(":", 1)[0]) for entry in holds) for holds in replies]
