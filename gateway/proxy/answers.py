"""Answers the provider keeps (Responses' response ids), remembered per account: who owns each id the gateway
relayed, the model it was made with, and the context size the provider billed for it (input + output tokens).

All tenants share one provider key, so the provider cannot tell them apart: the gateway answers for an id only
to the account whose request got it, and a later turn that continues it is held for its context. An id is kept
`redis.response_retention_days` (OpenAI keeps stored responses 30 days), one key per id, hash-tagged with its
account (keyspace.stored_answer).

    store = AnswerStore(redis, retention_s=30 * 86400, clock=time.time)
    await store.remember("acct", "resp_1", StoredAnswer("gpt-4o", context_tokens=900, created_ms=...))
    stored = await store.find("acct", "resp_1")  # None: not this account's (or never relayed)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import orjson

from gateway.billing import keyspace
from gateway.billing.client import RedisClient

# What a provider's answer id looks like ("resp_" and hex for OpenAI); anything else is nobody's, unasked.
ANSWER_ID = re.compile(r"[A-Za-z0-9_\-]{1,200}")


@dataclass(frozen=True)
class StoredAnswer:
    """One relayed answer: the model it was made with, its context size in tokens, and when it was made."""

    model: str
    context_tokens: int
    created_ms: int


def is_answer_id(value: str) -> bool:
    return ANSWER_ID.fullmatch(value) is not None


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
        return StoredAnswer(str(fields["model"]), int(fields["context_tokens"]), int(fields["created_ms"]))

    async def forget(self, account_id: str, answer_id: str) -> None:
        """The provider deleted it: a later turn continuing it is 404, as the provider would answer."""
        await self.redis.delete(keyspace.stored_answer(account_id, answer_id))
