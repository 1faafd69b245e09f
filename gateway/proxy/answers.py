"""Answers the provider keeps (Responses' response ids), remembered per account: who owns each id the gateway
relayed, the model it was made with, and the context size the provider billed for it (input + output tokens).

All tenants share one provider key, so the provider cannot tell them apart: the gateway answers for an id only
to the account whose request got it, and a later turn that continues it is held for its context. An id is kept
`redis.response_retention_days` (OpenAI keeps stored responses 30 days), one key per id, hash-tagged with its
account (keyspace.stored_answer).

A background answer (Responses' `background: true`) is answered before it is made, so its bill waits: its record
carries a `PendingBill`, everything its settlement needs, and the id is listed in a global index
(keyspace.BACKGROUND_ANSWERS, scored by when it is next due a look), so any gateway process can bill it once the
answer is seen finished (proxy/background.py).

    store = AnswerStore(redis, retention_s=30 * 86400, clock=time.time)
    await store.remember("acct", "resp_1", StoredAnswer("gpt-4o", context_tokens=900, created_ms=...))
    stored = await store.find("acct", "resp_1")  # None: not this account's (or never relayed)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import orjson

from gateway.billing import keyspace
from gateway.billing.client import RedisClient
from gateway.insights.fingerprints import Fingerprint

# What a provider's answer id looks like ("resp_" and hex for OpenAI); anything else is nobody's, unasked.
ANSWER_ID = re.compile(r"[A-Za-z0-9_\-]{1,200}")


@dataclass(frozen=True)
class PendingBill:
    """The bill of a background answer not yet seen finished: its hold (request id, key, amounts and deadline),
    the gateway's prompt count and output bound, the record fields fixed at its creation (the fingerprint, the
    history tokens), when it was created, for its latency, and what its built-in tool calls cost."""

    request_id: str
    api_key_id: str
    hold_micros: int
    balance_micros: int  # available after the hold, for a spooled settlement's projected outcome
    prompt_tokens: int
    completion_limit: int
    deadline_ms: int  # the hold's: the answer must be billed before it
    started_ms: int
    stream: bool
    fingerprint: Fingerprint
    history_tokens: int
    # Its built-in tool calls' prices, micro-credits per call by call item type, and their bound (proxy/tool_calls.py).
    call_micros: dict[str, int] = field(default_factory=dict)
    max_tool_calls: int = 0


@dataclass(frozen=True)
class StoredAnswer:
    """One relayed answer: the model it was made with, its context size in tokens, when it was made, and its
    bill while it waits for a background answer to finish."""

    model: str
    context_tokens: int
    created_ms: int
    pending: PendingBill | None = None


def is_answer_id(value: str) -> bool:
    return ANSWER_ID.fullmatch(value) is not None


def background_member(account_id: str, answer_id: str) -> str:
    """The index's member for an answer: answer ids have no spaces, so the last space ends the account id."""
    return f"{account_id} {answer_id}"


def parse_background_member(member: str) -> tuple[str, str]:
    account_id, _, answer_id = member.rpartition(" ")
    return account_id, answer_id


class AnswerStore:
    """Which account owns which relayed answer id, in Redis. Built once, at start-up."""

    def __init__(self, redis: RedisClient, *, retention_s: int, clock: Callable[[], float]):
        self.redis = redis
        self.retention_s = retention_s
        self.clock = clock  # unix seconds

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def remember(self, account_id: str, answer_id: str, answer: StoredAnswer) -> None:
        """Record `answer_id` as `account_id`'s (a second record of the same id replaces the first)."""
        key = keyspace.stored_answer(account_id, answer_id)
        await self.redis.set(key, orjson.dumps(asdict(answer)), ex=self.retention_s)

    async def set_context(self, account_id: str, answer_id: str, answer: StoredAnswer, context_tokens: int) -> None:
        """The context size the provider billed, once known; never recreates an id deleted meanwhile."""
        key = keyspace.stored_answer(account_id, answer_id)
        value = orjson.dumps(asdict(replace(answer, context_tokens=context_tokens)))
        await self.redis.set(key, value, xx=True, keepttl=True)

    async def find(self, account_id: str, answer_id: str) -> StoredAnswer | None:
        """The account's answer `answer_id`, or None: another account's and one never relayed look the same."""
        if not is_answer_id(answer_id):
            return None
        raw = await self.redis.get(keyspace.stored_answer(account_id, answer_id))
        if raw is None:
            return None
        fields = orjson.loads(raw)
        pending = fields.get("pending")
        return StoredAnswer(
            str(fields["model"]),
            int(fields["context_tokens"]),
            int(fields["created_ms"]),
            _pending_bill(pending) if isinstance(pending, dict) else None,
        )

    async def defer(self, account_id: str, answer_id: str, answer: StoredAnswer, due_ms: int) -> None:
        """Record `answer` (with its pending bill) as the account's, and list it to be looked at from `due_ms`."""
        await self.remember(account_id, answer_id, answer)
        await self.redis.zadd(keyspace.BACKGROUND_ANSWERS, {background_member(account_id, answer_id): due_ms})

    async def due(self, now_ms: int, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` listed background answers due a look by `now_ms`: (account id, answer id), oldest first."""
        members = await self.redis.zrangebyscore(keyspace.BACKGROUND_ANSWERS, "-inf", now_ms, start=0, num=limit)
        return [parse_background_member(keyspace.as_text(member)) for member in members]

    async def reschedule(self, account_id: str, answer_id: str, due_ms: int) -> None:
        """Look at it again from `due_ms` (unless it was billed meanwhile)."""
        await self.redis.zadd(keyspace.BACKGROUND_ANSWERS, {background_member(account_id, answer_id): due_ms}, xx=True)

    async def billed(self, account_id: str, answer_id: str, answer: StoredAnswer, context_tokens: int) -> None:
        """Its bill is settled: keep the answer with the context the provider billed, and unlist it."""
        await self.set_context(account_id, answer_id, replace(answer, pending=None), context_tokens)
        await self.unlist(account_id, answer_id)

    async def unlist(self, account_id: str, answer_id: str) -> None:
        await self.redis.zrem(keyspace.BACKGROUND_ANSWERS, background_member(account_id, answer_id))

    async def forget(self, account_id: str, answer_id: str) -> None:
        """The provider deleted it: a later turn continuing it is 404, as the provider would answer."""
        await self.redis.delete(keyspace.stored_answer(account_id, answer_id))


def _pending_bill(fields: dict[str, object]) -> PendingBill:
    fingerprint = fields["fingerprint"]
    assert isinstance(fingerprint, dict)
    return PendingBill(**{**fields, "fingerprint": Fingerprint(**fingerprint)})  # type: ignore[arg-type]
