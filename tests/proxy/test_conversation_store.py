"""The store of relayed conversation ids (proxy/conversation_store.py) on a real Redis: owned per account, kept for
the retention from the last write, its context only ever added to, and never brought back once deleted."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from gateway.billing import keyspace
from gateway.proxy.conversation_store import ConversationStore, ConversationTurn, StoredConversation

DAY = 86400


def store(redis: Redis) -> ConversationStore:
    return ConversationStore(redis, retention_s=30 * DAY, clock=lambda: 1_790_000_000.0)


async def test_a_conversation_is_its_accounts_alone_and_kept_for_the_retention(redis_client: Redis) -> None:
    conversations = store(redis_client)
    made = StoredConversation("main", context_tokens=40, created_ms=conversations.now_ms())
    await conversations.remember("acct_a", "conv_1", made)
    assert await conversations.find("acct_a", "conv_1") == made
    assert await conversations.find("acct_b", "conv_1") is None
    assert await conversations.find("acct_a", "conv_2") is None
    key = keyspace.kept_conversation("acct_a", "conv_1")
    assert key == "gw:{acct:acct_a}:conversation:conv_1"  # in the account's slot
    assert 30 * DAY - 5 <= await redis_client.ttl(key) <= 30 * DAY


async def test_additions_count_in_and_keep_it_for_the_retention_again(redis_client: Redis) -> None:
    conversations = store(redis_client)
    await conversations.remember("acct_a", "conv_1", StoredConversation("main", 40, 1))
    key = keyspace.kept_conversation("acct_a", "conv_1")
    await redis_client.expire(key, 100)
    await conversations.add_tokens("acct_a", "conv_1", 9)
    assert await conversations.find("acct_a", "conv_1") == StoredConversation("main", 49, 1)
    assert 30 * DAY - 5 <= await redis_client.ttl(key) <= 30 * DAY


async def test_a_turn_sets_the_billed_context_and_concurrent_turns_each_add_their_share(redis_client: Redis) -> None:
    conversations = store(redis_client)
    await conversations.remember("acct_a", "conv_1", StoredConversation("main", 40, 1))
    # One turn after another: the conversation is what the turn's bill says (its input included the 40).
    await ConversationTurn(conversations, "acct_a", "conv_1", 40).ended(40 + 9 + 12)
    assert await conversations.find("acct_a", "conv_1") == StoredConversation("main", 61, 1)
    # Two turns that both read 61: each adds its own 9 + 12, as the provider appends both.
    turns = [ConversationTurn(conversations, "acct_a", "conv_1", 61) for _ in range(2)]
    await asyncio.gather(*(turn.ended(61 + 9 + 12) for turn in turns))
    assert await conversations.find("acct_a", "conv_1") == StoredConversation("main", 61 + 2 * 21, 1)


async def test_a_forgotten_conversation_is_not_brought_back_by_a_late_turn(redis_client: Redis) -> None:
    conversations = store(redis_client)
    await conversations.remember("acct_a", "conv_1", StoredConversation("main", 40, 1))
    await conversations.forget("acct_a", "conv_1")
    await ConversationTurn(conversations, "acct_a", "conv_1", 40).ended(61)
    assert await conversations.find("acct_a", "conv_1") is None
    # What the late turn left has no owner and goes with the retention.
    assert 0 < await redis_client.ttl(keyspace.kept_conversation("acct_a", "conv_1")) <= 30 * DAY


async def test_a_context_taken_below_zero_reads_as_zero(redis_client: Redis) -> None:
    conversations = store(redis_client)
    await conversations.remember("acct_a", "conv_1", StoredConversation("main", 10, 1))
    await conversations.add_tokens("acct_a", "conv_1", -25)
    assert await conversations.find("acct_a", "conv_1") == StoredConversation("main", 0, 1)


async def test_ids_that_cannot_be_a_providers_are_nobodys(redis_client: Redis) -> None:
    conversations = store(redis_client)
    for odd in ("", "conv 1", "conv/../1", "c" * 201, "cönv"):
        assert await conversations.find("acct_a", odd) is None
