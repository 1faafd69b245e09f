"""The store of relayed answer ids (proxy/answers.py) on a real Redis: owned per account, kept for the retention,
never recreated once deleted."""

from __future__ import annotations

from redis.asyncio import Redis

from gateway.billing import keyspace
from gateway.proxy.answers import AnswerStore, StoredAnswer

DAY = 86400


def store(redis: Redis, now: float = 1_790_000_000.0) -> AnswerStore:
    return AnswerStore(redis, retention_s=30 * DAY, clock=lambda: now)


async def test_an_answer_is_its_accounts_alone_and_kept_for_the_retention(redis_client: Redis) -> None:
    answers = store(redis_client)
    made = StoredAnswer("m-main", context_tokens=300, created_ms=answers.now_ms())
    await answers.remember("acct_a", "resp_1", made)
    assert await answers.find("acct_a", "resp_1") == made
    assert await answers.find("acct_b", "resp_1") is None
    assert await answers.find("acct_a", "resp_2") is None
    key = keyspace.stored_answer("acct_a", "resp_1")
    assert key == "gw:{acct:acct_a}:answer:resp_1"  # in the account's slot
    assert 30 * DAY - 5 <= await redis_client.ttl(key) <= 30 * DAY


async def test_the_billed_context_replaces_the_bound_and_keeps_the_ttl(redis_client: Redis) -> None:
    answers = store(redis_client)
    made = StoredAnswer("m-main", context_tokens=4096, created_ms=1)
    await answers.remember("acct_a", "resp_1", made)
    await redis_client.expire(keyspace.stored_answer("acct_a", "resp_1"), 100)
    await answers.set_context("acct_a", "resp_1", made, 57)
    assert await answers.find("acct_a", "resp_1") == StoredAnswer("m-main", 57, 1)
    assert 0 < await redis_client.ttl(keyspace.stored_answer("acct_a", "resp_1")) <= 100


async def test_a_forgotten_answer_is_not_brought_back_by_its_settlement(redis_client: Redis) -> None:
    answers = store(redis_client)
    made = StoredAnswer("m-main", context_tokens=10, created_ms=1)
    await answers.remember("acct_a", "resp_1", made)
    await answers.forget("acct_a", "resp_1")
    await answers.set_context("acct_a", "resp_1", made, 57)
    assert await answers.find("acct_a", "resp_1") is None
    assert await redis_client.exists(keyspace.stored_answer("acct_a", "resp_1")) == 0


async def test_ids_that_cannot_be_a_providers_are_nobodys(redis_client: Redis) -> None:
    answers = store(redis_client)
    for odd in ("", "resp 1", "resp/../1", "r" * 201, "résp"):
        assert await answers.find("acct_a", odd) is None
