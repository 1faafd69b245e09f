"""The sweeper returns holds whose deadline has passed, once, whichever process gets there: a hold exactly at
deadline + grace stays, one past it goes; an abandoned request counts as one error with no tokens and no charge;
every account is swept, in batches; one pass per interval; the loop goes on through failures."""

from __future__ import annotations

import asyncio
import types
from datetime import UTC, datetime

import pytest
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from gateway.admin.accounts import AccountStore, parse_api_key
from gateway.billing import Ledger, keyspace
from gateway.billing import sweeper as sweeper_module
from gateway.billing.settler import Settler
from gateway.billing.spool import Spool
from gateway.billing.sweeper import Sweeper
from tests.billing.common import RETENTION, funded_ledger, settlement
from tests.common import FakeClock


def _clock(ledger: Ledger) -> FakeClock:
    assert isinstance(ledger.clock, FakeClock)
    return ledger.clock


async def test_expired_holds_are_released_as_abandoned_and_live_ones_kept(redis_client: Redis, spool: Spool) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 10_000)
    clock = _clock(ledger)
    await ledger.reserve(account, sha, "old", hold_micros=300, min_hold_micros=300, ttl_s=10, model="gpt-x")
    clock.now += 5
    await ledger.reserve(account, sha, "young", hold_micros=200, min_hold_micros=200, ttl_s=10, model="gpt-x")
    clock.now += 5 + 2  # "old" is 2 s past its deadline, "young" 3 s short of it
    sweeper = Sweeper(redis_client, Settler(ledger, spool), interval_s=30, grace_ms=1000)
    assert await sweeper.sweep() == 1
    assert await ledger.reserved(account) == 200 and await ledger.balance(account) == 10_000 - 200
    [(_, record)] = await redis_client.xrange(keyspace.request_log(account))
    assert record["request_id"] == "old" and record["outcome"] == "abandoned" and record["status"] == "0"
    assert record["credits_micros"] == "0" and record["model"] == "gpt-x" and record["hold_micros"] == "300"
    # A late settlement of the abandoned request (its gateway came back) changes nothing: released once.
    assert not (await ledger.settle(settlement(account, "old", 50))).settled
    assert await ledger.balance(account) == 10_000 - 200


async def test_one_pass_per_interval_and_concurrent_passes_release_once(redis_client: Redis, spool: Spool) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 10_000)
    clock = _clock(ledger)
    for index in range(20):
        await ledger.reserve(account, sha, f"r{index}", hold_micros=100, min_hold_micros=100, ttl_s=1)
    clock.now += 60
    first, second = (Sweeper(redis_client, Settler(ledger, spool), interval_s=30, grace_ms=0) for _ in range(2))
    assert await first.sweep() == 20
    assert await second.sweep() == 0  # the first process's pass holds the lock for this interval
    assert await redis_client.xlen(keyspace.request_log(account)) == 20

    for index in range(20, 40):
        await ledger.reserve(account, sha, f"r{index}", hold_micros=100, min_hold_micros=100, ttl_s=1)
    clock.now += 60
    # Two passes at once (as if the lock had expired mid-pass): each hold is still released exactly once.
    released = await asyncio.gather(first._sweep_batch([account]), second._sweep_batch([account]))
    assert sum(released) == 20
    assert await redis_client.xlen(keyspace.request_log(account)) == 40
    assert await ledger.balance(account) == 10_000 and await ledger.reserved(account) == 0


async def test_a_hold_exactly_at_deadline_plus_grace_stays_and_one_ms_later_goes(
    redis_client: Redis, spool: Spool
) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=10)
    _clock(ledger).now += 11  # 1,000 ms past the deadline
    at_the_line = Sweeper(redis_client, Settler(ledger, spool), interval_s=30, grace_ms=1_000)
    assert await at_the_line.sweep() == 0
    assert await ledger.reserved(account) == 300
    await redis_client.delete(keyspace.SWEEP_LOCK)
    past_it = Sweeper(redis_client, Settler(ledger, spool), interval_s=30, grace_ms=999)
    assert await past_it.sweep() == 1
    assert await ledger.reserved(account) == 0 and await ledger.balance(account) == 1_000


async def test_an_expired_hold_behind_a_live_one_is_released(redis_client: Redis, spool: Spool) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await ledger.reserve(account, sha, "live", hold_micros=100, min_hold_micros=100, ttl_s=600)
    await ledger.reserve(account, sha, "expired", hold_micros=200, min_hold_micros=200, ttl_s=1)
    _clock(ledger).now += 60
    assert await Sweeper(redis_client, Settler(ledger, spool), interval_s=30, grace_ms=0).sweep() == 1
    assert await redis_client.hkeys(keyspace.holds(account)) == ["live"]


async def test_an_abandoned_request_counts_as_one_error_with_no_tokens_and_no_charge(
    redis_client: Redis, spool: Spool
) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    held = await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=1, model="gpt-x")
    _clock(ledger).now += 60
    await Sweeper(redis_client, Settler(ledger, spool), interval_s=30, grace_ms=0).sweep()
    day = await redis_client.hgetall(keyspace.usage_day(account, datetime.fromtimestamp(ledger.clock(), UTC)))
    api = "a:chat.completions:"
    key = f"{api}k:{held.api_key_id}:"
    assert day[f"{api}requests"] == day[f"{api}errors"] == day[f"{api}m:gpt-x:errors"] == day[f"{key}errors"] == "1"
    assert day[f"{api}prompt_tokens"] == day[f"{api}completion_tokens"] == day[f"{api}credits"] == "0"
    [(_, record)] = await redis_client.xrange(keyspace.request_log(account))
    assert record["prompt_tokens"] == record["completion_tokens"] == record["credits_micros"] == "0"


async def test_an_abandoned_request_keeps_the_api_it_was_made_on(redis_client: Redis, spool: Spool) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    # A model name with ':' in it: the hold's fields are split from the left, its API from the right.
    await ledger.reserve(
        account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=1, model="ft:x:y", api="messages"
    )
    await ledger.reserve(account, sha, "r2", hold_micros=100, min_hold_micros=100, ttl_s=1, model="gpt-x")
    assert (await ledger.holds_of([account]))[0]["r1"].api == "messages"
    _clock(ledger).now += 60
    assert await Sweeper(redis_client, Settler(ledger, spool), interval_s=30, grace_ms=0).sweep() == 2
    records = {record["request_id"]: record for _, record in await redis_client.xrange(keyspace.request_log(account))}
    assert (records["r1"]["api"], records["r1"]["model"]) == ("messages", "ft:x:y")
    assert (records["r2"]["api"], records["r2"]["model"]) == ("chat.completions", "gpt-x")
    day = await redis_client.hgetall(keyspace.usage_day(account, datetime.fromtimestamp(ledger.clock(), UTC)))
    assert day["a:messages:m:ft:x:y:errors"] == day["a:chat.completions:m:gpt-x:errors"] == "1"


async def _accounts_with_expired_holds(redis: Redis, ledger: Ledger, count: int) -> list[str]:
    store = AccountStore(redis, clock=ledger.clock)
    accounts = []
    for index in range(count):
        account = await store.insert_account(f"a{index}", 1_000)
        _, key = await store.insert_api_key(account.id, "app")
        parsed = parse_api_key(key)
        assert parsed is not None
        await ledger.reserve(account.id, parsed.sha256, "r1", hold_micros=100, min_hold_micros=100, ttl_s=1)
        accounts.append(account.id)
    return accounts


async def test_every_account_is_swept_whatever_the_batch_size(
    redis_client: Redis, spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweeper_module, "BATCH", 2)  # 5 accounts: batches of 2, 2 and 1
    ledger = Ledger(redis_client, clock=FakeClock(), retention=RETENTION)
    accounts = await _accounts_with_expired_holds(redis_client, ledger, 5)
    _clock(ledger).now += 60
    assert await Sweeper(redis_client, Settler(ledger, spool), interval_s=30, grace_ms=0).sweep() == 5
    assert await ledger.reserved_many(accounts) == [0, 0, 0, 0, 0]


async def test_one_pass_per_interval_even_with_new_expired_holds(redis_client: Redis, spool: Spool) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    first = Sweeper(redis_client, Settler(ledger, spool), interval_s=30, grace_ms=0)
    second = Sweeper(redis_client, Settler(ledger, spool), interval_s=30, grace_ms=0)
    assert await first.sweep() == 0  # nothing to release, but the pass takes the interval's lock
    assert 29_000 < await redis_client.pttl(keyspace.SWEEP_LOCK) <= 30_000
    await ledger.reserve(account, sha, "r1", hold_micros=100, min_hold_micros=100, ttl_s=1)
    _clock(ledger).now += 60
    assert await second.sweep() == 0
    assert await ledger.reserved(account) == 100  # left for the next interval's pass


class Stop(Exception):
    pass


class ScriptedSettler:
    """replay() answers from a script: a number left in the spool, or an exception to raise."""

    def __init__(self, ledger: Ledger, answers: list[int | Exception]) -> None:
        self.ledger = ledger
        self.answers = iter(answers)

    async def replay(self) -> int:
        answer = next(self.answers)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_the_loop_sweeps_after_each_drained_replay_and_survives_failures(
    redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger(redis_client, clock=FakeClock(), retention=RETENTION)
    answers: list[int | Exception] = [0, 2, 0, redis_errors.ConnectionError("gone"), 0]
    sweeper = Sweeper(redis_client, ScriptedSettler(ledger, answers), interval_s=7, grace_ms=0)  # type: ignore[arg-type]
    sweeps = 0

    async def sweep() -> int:
        nonlocal sweeps
        sweeps += 1
        if sweeps == 2:
            raise RuntimeError("a bug in one pass")
        return 0

    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) > len(answers):
            raise Stop()

    monkeypatch.setattr(sweeper, "sweep", sweep)
    monkeypatch.setattr(sweeper_module, "asyncio", types.SimpleNamespace(sleep=sleep))
    with pytest.raises(Stop):
        await sweeper.run()
    # Passes 1, 3 and 5 found the spool drained and swept (pass 3's sweep failed, and the loop went on); pass 2
    # had settlements left, pass 4 could not reach Redis.
    assert sweeps == 3
    assert sleeps == [7] * 6
