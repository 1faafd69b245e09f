"""The hand-packed script call: byte for byte what redis-py would send, and safe where redis-py's own path is
(NOSCRIPT, a connection lost, a timeout whose reply comes late), on a real Redis."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.billing.fastcall import ScriptCall, encode, pack_command, shared_connection
from tests.faults import ControlledRedis

ECHO = "return {KEYS[1], ARGV[1], ARGV[2], #ARGV}"


async def written(redis: Redis, count: int, timeout: float = 10.0) -> None:
    """Until `count` calls wait on the shared connection and nothing is left to write: their commands are in
    the socket, at Redis even while it is frozen."""
    shared = shared_connection(redis.connection_pool)
    deadline = time.monotonic() + timeout
    while (link := shared._link) is None or len(link.waiting) != count or link.outgoing:
        assert time.monotonic() < deadline, f"{count} calls were never written"
        await asyncio.sleep(0.001)


async def until_run(url: str, calls: int, timeout: float = 10.0) -> None:
    """Until Redis has run EVALSHA `calls` times since its stats were reset (with a client of its own)."""
    observer = Redis.from_url(url)
    try:
        deadline = time.monotonic() + timeout
        while (await observer.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0) < calls:
            assert time.monotonic() < deadline, f"Redis never ran {calls} script calls"
            await asyncio.sleep(0.01)
    finally:
        await observer.aclose()


async def reset_stats(url: str) -> None:
    observer = Redis.from_url(url)
    try:
        await observer.config_resetstat()
    finally:
        await observer.aclose()


@pytest.mark.parametrize(
    "args",
    [
        ["EVALSHA", "a" * 40, 1, "gw:{acct_1}:account", "req_1", 0, -7, 2**53 - 1],
        ["EVALSHA", "b" * 40, 0, "東京, 日本 🌸", "", "x" * 100_000],  # multi-byte text, empty, large
    ],
)
def test_commands_are_packed_as_redis_py_packs_them(args: list[str | int]) -> None:
    ours = pack_command([encode(arg) for arg in args])
    theirs = b"".join(Connection().pack_command(*args))
    assert ours == theirs


async def test_a_call_answers_as_redis_py_does(redis_client: Redis) -> None:
    script = redis_client.register_script(ECHO)
    call = ScriptCall(redis_client, script)
    assert await call(["gw:{a}:k"], ["é", 42]) == await script(["gw:{a}:k"], ["é", 42]) == ["gw:{a}:k", "é", "42", 2]


async def test_a_flushed_script_is_loaded_again(redis_client: Redis) -> None:
    call = ScriptCall(redis_client, redis_client.register_script(ECHO))
    await redis_client.script_flush()
    assert await call(["k"], ["a", "b"]) == ["k", "a", "b", 2]
    assert await redis_client.script_exists(call.sha) == [True]


async def test_a_restarted_redis_is_reached_again(controlled_redis: ControlledRedis) -> None:
    redis = Redis.from_url(controlled_redis.url, socket_timeout=1)
    call = ScriptCall(redis, redis.register_script(ECHO))
    assert await call(["k"], ["before", 1]) == [b"k", b"before", b"1", 2]
    controlled_redis.stop()
    controlled_redis.start()  # pooled connections died with it; redis-py reconnects, the script is loaded again
    assert await call(["k"], ["after", 2]) == [b"k", b"after", b"2", 2]
    await redis.aclose()


async def test_a_late_reply_is_never_read_as_the_next_calls(controlled_redis: ControlledRedis) -> None:
    redis = Redis.from_url(controlled_redis.url, socket_timeout=0.3, max_connections=1)
    call = ScriptCall(redis, redis.register_script(ECHO))
    await call(["k"], ["warm", 0])  # loaded, one connection in the pool
    await reset_stats(controlled_redis.url)
    controlled_redis.freeze()
    try:
        with pytest.raises(RedisTimeoutError):
            await call(["k"], ["first", 1])
    finally:
        controlled_redis.thaw()  # the first call runs now, and its reply goes out on the dropped connection
    await until_run(controlled_redis.url, 1)
    assert await call(["k"], ["second", 2]) == [b"k", b"second", b"2", 2]
    assert await call(["k"], ["third", 3]) == [b"k", b"third", b"3", 2]
    await redis.aclose()


async def test_a_cancelled_call_leaves_no_reply_behind(controlled_redis: ControlledRedis) -> None:
    redis = Redis.from_url(controlled_redis.url, socket_timeout=5, max_connections=1)
    call = ScriptCall(redis, redis.register_script(ECHO))
    await call(["k"], ["warm", 0])
    controlled_redis.freeze()
    try:
        pending = asyncio.ensure_future(call(["k"], ["cancelled", 1]))
        await written(redis, 1)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
    finally:
        controlled_redis.thaw()
    assert await call(["k"], ["next", 2]) == [b"k", b"next", b"2", 2]
    await redis.aclose()


SAY = "if ARGV[1] == 'boom' then return redis.error_reply('boom') end return ARGV[1]"


async def test_concurrent_calls_share_one_connection_and_each_gets_its_own_reply(redis_client: Redis) -> None:
    call = ScriptCall(redis_client, redis_client.register_script(SAY))
    await call([], ["warm"])  # loaded, the shared connection open
    before = len(await redis_client.client_list())
    link = shared_connection(redis_client.connection_pool)._link
    assert link is not None and link.connection._writer is not None
    writes = []
    write = link.connection._writer.write
    link.connection._writer.write = lambda data: (writes.append(data), write(data))[1]  # type: ignore[method-assign]
    words = [f"call {i}" for i in range(300)]
    assert await asyncio.gather(*(call([], [word]) for word in words)) == words
    assert len(await redis_client.client_list()) == before  # no connection more than the warm call's
    assert len(writes) == 1  # all 300 were queued in one turn of the loop


async def test_an_error_reply_goes_to_its_own_caller_only(redis_client: Redis) -> None:
    call = ScriptCall(redis_client, redis_client.register_script(SAY))
    replies = await asyncio.gather(*(call([], [word]) for word in ["a", "boom", "c"]), return_exceptions=True)
    assert replies[0] == "a" and replies[2] == "c"
    assert isinstance(replies[1], ResponseError) and "boom" in str(replies[1])


async def test_a_cancelled_caller_among_many_takes_no_others_reply(controlled_redis: ControlledRedis) -> None:
    redis = Redis.from_url(controlled_redis.url, socket_timeout=5, decode_responses=True)
    call = ScriptCall(redis, redis.register_script(SAY))
    await call([], ["warm"])
    controlled_redis.freeze()
    try:
        calls = [asyncio.ensure_future(call([], [f"call {i}"])) for i in range(10)]
        await written(redis, 10)
        calls[3].cancel()
    finally:
        controlled_redis.thaw()
    replies = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(replies[3], asyncio.CancelledError)
    assert [r for i, r in enumerate(replies) if i != 3] == [f"call {i}" for i in range(10) if i != 3]
    await redis.aclose()


class NotRedisPy(Exception):
    """Raised by a script call that must not take redis-py's path."""


def without_redis_py(call: ScriptCall) -> None:
    async def refuse(keys: object, args: object) -> None:
        raise NotRedisPy

    call.script = refuse  # type: ignore[assignment]


async def test_a_timeout_fails_every_waiting_call_and_the_next_ones_take_a_new_shared_connection(
    controlled_redis: ControlledRedis,
) -> None:
    # Two connections at most: the dropped one must go back to the pool for the new one and a plain command.
    redis = Redis.from_url(controlled_redis.url, socket_timeout=0.3, decode_responses=True, max_connections=2)
    call = ScriptCall(redis, redis.register_script(SAY))
    await call([], ["warm"])
    without_redis_py(call)  # a timeout is not retried; what follows goes over the new shared connection
    controlled_redis.freeze()
    try:
        late = await asyncio.gather(*(call([], [f"late {i}"]) for i in range(5)), return_exceptions=True)
    finally:
        controlled_redis.thaw()  # their replies go out on the dropped connection
    assert all(isinstance(reply, RedisTimeoutError) for reply in late)
    words = [f"next {i}" for i in range(20)]
    assert await asyncio.gather(*(call([], [word]) for word in words)) == words
    assert await redis.ping()
    await redis.aclose()


async def test_the_scripts_of_one_client_share_its_connection(redis_client: Redis) -> None:
    first = ScriptCall(redis_client, redis_client.register_script(SAY))
    second = ScriptCall(redis_client, redis_client.register_script(ECHO))
    before = len(await redis_client.client_list())
    assert await asyncio.gather(first([], ["one"]), second(["k"], ["two", 2])) == ["one", ["k", "two", "2", 2]]
    assert len(await redis_client.client_list()) == before + 1


async def test_a_script_given_as_bytes_is_loaded_again_too(redis_client: Redis) -> None:
    call = ScriptCall(redis_client, redis_client.register_script(SAY.encode()))
    await redis_client.script_flush()
    without_redis_py(call)
    assert await call([], ["bytes"]) == "bytes"


async def test_calls_cut_short_by_a_stopping_reader_go_through_redis_py(controlled_redis: ControlledRedis) -> None:
    """The reader task is cancelled (the loop shutting down): its waiting calls take redis-py's path, where a
    call that did run changes nothing the second time; they are never reported cancelled themselves."""
    redis = Redis.from_url(controlled_redis.url, socket_timeout=5, decode_responses=True)
    call = ScriptCall(redis, redis.register_script(SAY))
    await call([], ["warm"])
    controlled_redis.freeze()
    try:
        pending = asyncio.ensure_future(call([], ["waiting"]))
        await written(redis, 1)
        reader = shared_connection(redis.connection_pool)._link.reader  # type: ignore[union-attr]
        assert reader is not None
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader  # the call now waits on redis-py's path, for the thaw
    finally:
        controlled_redis.thaw()
    assert await pending == "waiting"
    await redis.aclose()
