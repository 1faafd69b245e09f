"""Conversations the provider keeps (`/v1/conversations`), remembered per account: who owns each conversation id the
gateway relayed, the upstream that keeps it, and its context size: the tokens the provider bills as input again
on every response made in it.

All tenants share one provider key, so the provider cannot tell them apart: the gateway answers for a conversation
only to the account whose request created it, and a response made in it is held for its context. One Redis hash
per id, hash-tagged with its account (keyspace.kept_conversation), kept `redis.response_retention_days` from its
last write (its creation, items added, a response made in it).

The context size only ever changes by adding to it: the gateway's count of the items added (at creation and by
`POST .../items`), and at a response's settlement what the response made of it (its billed input + output) less
what it was when the response read it (`ConversationTurn`). One turn after another thus sets it to the billed
figure, and concurrent turns and additions each add their own share. Deleted items are not taken off: the figure
is an upper bound, whose cost is a hold larger than the bill until the next turn sets it.

    store = ConversationStore(redis, retention_s=30 * 86400, clock=time.time)
    await store.remember("acct", "conv_1", StoredConversation("openai", context_tokens=40, created_ms=...))
    stored = await store.find("acct", "conv_1")  # None: not this account's (or never relayed)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.billing import keyspace
from gateway.billing.client import RedisClient
from gateway.proxy.answers import is_answer_id


@dataclass(frozen=True)
class StoredConversation:
    """One relayed conversation: the upstream that keeps it, its context size in tokens, and when it was made."""

    upstream: str
    context_tokens: int
    created_ms: int


class ConversationStore:
    """Which account owns which relayed conversation id, and its context size, in Redis. Built once, at start-up."""

    def __init__(self, redis: RedisClient, *, retention_s: int, clock: Callable[[], float]):
        self.redis = redis
        self.retention_s = retention_s
        self.clock = clock  # unix seconds

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def remember(self, account_id: str, conversation_id: str, conversation: StoredConversation) -> None:
        """Record `conversation_id` as `account_id`'s (a second record of the same id replaces the first)."""
        key = keyspace.kept_conversation(account_id, conversation_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(
                key,
                mapping={
                    "upstream": conversation.upstream,
                    "context_tokens": conversation.context_tokens,
                    "created_ms": conversation.created_ms,
                },
            )
            pipe.expire(key, self.retention_s)
            await pipe.execute()

    async def find(self, account_id: str, conversation_id: str) -> StoredConversation | None:
        """The account's conversation, or None: another account's and one never relayed look the same."""
        if not is_answer_id(conversation_id):
            return None
        fields = await self.redis.hgetall(keyspace.kept_conversation(account_id, conversation_id))
        if "upstream" not in fields or "created_ms" not in fields:
            return None  # none, or only the count a late addition left after a deletion: nobody's
        context = max(int(fields.get("context_tokens", 0)), 0)  # concurrent turns may take off more than they add
        return StoredConversation(str(fields["upstream"]), context, int(fields["created_ms"]))

    async def add_tokens(self, account_id: str, conversation_id: str, tokens: int) -> None:
        """Add `tokens` (negative: take off) to the conversation's context size, and keep it for the retention
        again. An addition that comes after a deletion leaves a count with no owner (`find` ignores it) that
        expires with the retention."""
        key = keyspace.kept_conversation(account_id, conversation_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, "context_tokens", tokens)
            pipe.expire(key, self.retention_s)
            await pipe.execute()

    async def forget(self, account_id: str, conversation_id: str) -> None:
        """The provider deleted it: every later use of it is 404, as the provider would answer."""
        await self.redis.delete(keyspace.kept_conversation(account_id, conversation_id))


@dataclass(frozen=True)
class ConversationTurn:
    """A response made in a conversation: its context size when the request read it (counted in the request's
    prompt), and where what the response made of it goes (`ended`)."""

    store: ConversationStore
    account_id: str
    conversation_id: str
    context_tokens: int

    async def ended(self, context_tokens: int) -> None:
        """The response left the conversation at `context_tokens` (its billed input + output, or a bound of them)."""
        await self.store.add_tokens(self.account_id, self.conversation_id, context_tokens - self.context_tokens)
