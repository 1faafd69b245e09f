"""The ledger: reserve, settle and grant credits, each one atomic Lua script in the account's slot.

ledger = Ledger(redis, clock=time.time, retention=Retention(...))
outcome = await ledger.reserve(account_id, api_key_sha256, request_id, hold_micros=900, min_hold_micros=900,
                               ttl_s=600)
settled = await ledger.settle(Settlement(...))
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from gateway.billing import keyspace
from gateway.billing.client import RedisClient
from gateway.billing.fastcall import ScriptCall
from gateway.billing.keyspace import as_text
from gateway.billing.record import LEGACY_API
from gateway.billing.scripts import (
    GrantCall,
    GrantOutcome,
    GrantStatus,
    Hold,
    InsightRules,
    ReserveCall,
    ReserveOutcome,
    Retention,
    SettleCall,
    Settlement,
    SettleOutcome,
    money_script,
)

Clock = Callable[[], float]


class GrantError(Exception):
    pass


class Ledger:
    """Credit balances in Redis. Every method that moves money is a single script call (one round trip)."""

    def __init__(
        self,
        redis: RedisClient,
        *,
        clock: Clock,
        retention: Retention,
        insights: InsightRules | None = None,
        on_alerts: Callable[[], None] | None = None,
    ):
        self.redis = redis
        self.clock = clock
        self.retention = retention
        self.insights = insights  # None: fingerprinted settlements count no insights
        # Told whenever a step appended webhook events to the outbox (a reserve, a settlement, a replayed one, a
        # grant): the webhook sender delivers them now rather than at its next round.
        self.on_alerts = on_alerts
        # redis-py re-sends the script body when the server answers NOSCRIPT (after a restart or SCRIPT FLUSH).
        self._reserve = ScriptCall(redis, redis.register_script(money_script("reserve.lua")))
        self._settle = ScriptCall(redis, redis.register_script(money_script("settle.lua", "insights.lua")))
        self._grant = ScriptCall(redis, redis.register_script(money_script("grant.lua")))

    async def load_scripts(self) -> None:
        """Make sure Redis holds every money script (it forgets them on a restart without persistence or on
        SCRIPT FLUSH; calls would reload them on NOSCRIPT anyway, but readiness means loaded)."""
        scripts = (self._reserve.script, self._settle.script, self._grant.script)
        loaded = await self.redis.script_exists(*(script.sha for script in scripts))
        for script, present in zip(scripts, loaded, strict=True):
            if not present:
                await self.redis.script_load(script.script)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def reserve(
        self,
        account_id: str,
        api_key_sha256: str,
        request_id: str,
        *,
        hold_micros: int,
        min_hold_micros: int,
        ttl_s: int,
        model: str = "",
        request_hash: str = "",
        api: str = LEGACY_API,
    ) -> ReserveOutcome:
        """Authenticate the API key and hold `hold_micros`, or report why not. Nothing is held unless HELD.

        Once per request id: a repeat of a call that held returns HELD without holding more, and a call that
        comes after the request was settled (a timed-out call that ran late) returns SETTLED. With insights on,
        a refusal marks `request_hash` (the request's fingerprint), so that its repeat is seen as a retry.
        """
        now_ms = self.now_ms()
        rules = self.insights
        call = ReserveCall(
            account_id,
            api_key_sha256,
            request_id,
            hold_micros,
            min_hold_micros,
            now_ms + ttl_s * 1000,
            model,
            now_ms,
            request_hash if rules is not None else "",
            rules.request_state_ms if rules is not None else 0,
            api,
        )
        outcome = ReserveOutcome.from_reply(await self._reserve(call.keys(), call.argv()))
        self._appended(outcome.alerts)
        return outcome

    async def settle(self, settlement: Settlement, *, now_ms: int | None = None) -> SettleOutcome:
        """Charge the real cost (never more than hold + balance), release the rest, record the usage.

        Once per request id: a repeat finds no hold and changes nothing. `now_ms` is when the request ended,
        kept by a settlement replayed from the spool so that it counts on the day it happened.
        """
        call = SettleCall(settlement, self.now_ms() if now_ms is None else now_ms, self.retention, self.insights)
        outcome = SettleOutcome.from_reply(await self._settle(call.keys(), call.argv()))
        self._appended(outcome.alerts)
        return outcome

    async def grant(self, account_id: str, amount_micros: int, note: str = "", *, grant_id: str | None = None) -> int:
        """Add credits (negative: take back, never below zero). Returns the balance after.

        Once per `grant_id` (a fresh one when not given), so a retried call never grants twice.
        """
        call = GrantCall(
            account_id,
            amount_micros,
            self.now_ms(),
            note,
            grant_id or f"grant_{uuid.uuid4().hex}",
            self.retention.settled_ids_ms,
        )
        outcome = GrantOutcome.from_reply(await self._grant(call.keys(), call.argv()))
        self._appended(outcome.alerts)
        if outcome.status is GrantStatus.NO_ACCOUNT:
            raise GrantError("account not found")
        if outcome.status is GrantStatus.BELOW_ZERO:
            raise GrantError("the balance cannot go below zero")
        if outcome.status is GrantStatus.TOO_LARGE:
            raise GrantError("the balance would be too large")
        return outcome.balance_micros

    def _appended(self, alerts: int) -> None:
        if alerts and self.on_alerts is not None:
            self.on_alerts()

    async def balance(self, account_id: str) -> int | None:
        value = await self.redis.hget(keyspace.account(account_id), "balance")
        return None if value is None else int(value)

    async def reserved(self, account_id: str) -> int:
        """Micro-credits currently held by requests in flight."""
        return (await self.reserved_many([account_id]))[0]

    async def reserved_many(self, account_ids: list[str]) -> list[int]:
        """`reserved` for several accounts in one round trip."""
        return [sum(hold.amount_micros for hold in holds.values()) for holds in await self.holds_of(account_ids)]

    async def holds_of(self, account_ids: list[str]) -> list[dict[str, Hold]]:
        """The holds of each account (request id -> hold), in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for account_id in account_ids:
                pipe.hgetall(keyspace.holds(account_id))
            replies = await pipe.execute()
        return [{as_text(request_id): Hold.parse(as_text(text)) for request_id, text in r.items()} for r in replies]
