"""Money scripts called on the hot path: one EVALSHA packed here, pipelined on one shared connection.

redis-py's generic command path costs more CPU per call than the rest of a request's Redis work: it encodes
each argument through its type checks, checks a connection out of the pool and back in, wraps the call in its
retry loop and records observability events. A script call's arguments are known to be text and whole
numbers, so `ScriptCall` packs the RESP bytes in one pass, and every script call of the process goes over one
connection (`SharedConnection`): the commands of one turn of the event loop leave in one write, and the
replies come back in order, each to its caller. Redis runs commands one at a time anyway, so one connection
costs no concurrency, and under load one write and one read serve many requests.

Whatever is not the plain case goes through redis-py, which knows it:
- a Redis Cluster client (slot routing, redirections);
- a connection error: redis-py's retry with backoff, as for every other command (every money script is
  idempotent by request id, so a call that did run before the connection broke changes nothing the
  second time).
NOSCRIPT (Redis restarted or flushed its scripts) loads the script on the shared connection and calls again.
A timeout is not retried (its call may still run): it propagates, to every call waiting on the connection,
after the connection is dropped, so a reply still on its way can never be read as another call's.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from gateway.billing.client import RedisClient

Arg = str | int


def pack_command(words: Sequence[bytes]) -> bytes:
    """A RESP array of bulk strings."""
    return b"".join((b"*%d\r\n" % len(words), *(b"$%d\r\n%s\r\n" % (len(word), word) for word in words)))


def encode(value: Arg) -> bytes:
    """What redis-py sends for the argument: UTF-8 text, or an int's decimal digits (bools are refused by
    the callers' checks before they get here)."""
    return value.encode() if isinstance(value, str) else b"%d" % value


class _Link:
    """One connection and what is queued on it: the calls waiting for a reply, oldest first, and the commands
    not yet written. Dropping a connection drops its link, so nothing queued on it reaches the next one."""

    def __init__(self, connection: AbstractConnection):
        self.connection = connection
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.outgoing: list[bytes] = []  # not empty: a write of them is scheduled
        self.reader: asyncio.Task[None] | None = None


class SharedConnection:
    """One connection of `pool`, kept, that calls share: `await shared.call(packed)` is the reply.

    Commands are written in the order they are queued, at the end of the loop's turn, all in one write; one
    reader task (alive only while replies are due) hands each reply to the oldest waiting call. A caller that
    is cancelled keeps its place in the queue, so its reply is read and dropped, never given to another. A
    read that fails or times out fails every call waiting on the connection with that error and drops the
    connection; the next call takes a new one from the pool."""

    def __init__(self, pool: ConnectionPool):
        self._pool = pool
        self._link: _Link | None = None
        self._connecting = asyncio.Lock()

    async def call(self, packed: bytes) -> Any:
        link = self._link or await self._connect()
        loop = asyncio.get_running_loop()
        reply = loop.create_future()
        link.waiting.append(reply)
        link.outgoing.append(packed)
        if len(link.outgoing) == 1:  # the turn's first: write them all at its end
            loop.call_soon(self._flush, link)
        if link.reader is None:
            link.reader = asyncio.create_task(self._read(link))
        return await reply

    async def _connect(self) -> _Link:
        async with self._connecting:  # one new connection however many calls find none
            if self._link is None:
                connection: AbstractConnection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
                self._link = _Link(connection)
            return self._link

    def _flush(self, link: _Link) -> None:
        commands, link.outgoing = link.outgoing, []
        writer = link.connection._writer  # redis-py's stream: a sync write, so the turn's commands leave together
        if link is self._link and writer is not None:
            writer.write(b"".join(commands))

    async def _read(self, link: _Link) -> None:
        try:
            while link.waiting:
                try:
                    reply: Any = await link.connection.read_response()
                except ResponseError as error:  # an error reply (NOSCRIPT, a script's error): this call's answer
                    reply = error
                waiting = link.waiting.popleft()
                if waiting.done():  # its caller was cancelled
                    continue
                if isinstance(reply, ResponseError):
                    waiting.set_exception(reply)
                else:
                    waiting.set_result(reply)
        except BaseException as error:  # lost, timed out, not the protocol, or cancelled: no reply can be trusted
            await self._drop(link, error)
            if not isinstance(error, Exception):
                raise
        finally:
            link.reader = None

    async def _drop(self, link: _Link, error: BaseException) -> None:
        if self._link is link:
            self._link = None
        try:
            await link.connection.disconnect(nowait=True)
            await self._pool.release(link.connection)  # before the callers fall back to the pool
        finally:
            failure = error if isinstance(error, Exception) else RedisConnectionError("the call was cut short")
            while link.waiting:
                waiting = link.waiting.popleft()
                if not waiting.done():
                    waiting.set_exception(failure)


# One per connection pool, so every script call of a client shares it; gone with the pool.
_SHARED: weakref.WeakKeyDictionary[ConnectionPool, SharedConnection] = weakref.WeakKeyDictionary()


def shared_connection(pool: ConnectionPool) -> SharedConnection:
    shared = _SHARED.get(pool)
    if shared is None:
        shared = _SHARED[pool] = SharedConnection(pool)
    return shared


class ScriptCall:
    """Calls `script` (registered on `redis`) as `await call(keys, args)`; the reply as redis-py gives it."""

    def __init__(self, redis: RedisClient, script: AsyncScript):
        self.script = script
        self.sha = script.sha
        self._shared: SharedConnection | None = None  # a cluster client routes each call itself
        if isinstance(redis, Redis) and not redis.single_connection_client:
            self._shared = shared_connection(redis.connection_pool)
        self._evalsha = [b"EVALSHA", script.sha.encode()]
        body = script.script
        self._load = pack_command([b"SCRIPT", b"LOAD", body.encode() if isinstance(body, str) else bytes(body)])

    async def __call__(self, keys: Sequence[str], args: Sequence[Arg]) -> Any:  # as redis-py's script call
        if self._shared is None:
            return await self.script(keys, args)
        words = [*self._evalsha, b"%d" % len(keys), *(key.encode() for key in keys), *(encode(a) for a in args)]
        packed = pack_command(words)
        try:
            try:
                return await self._shared.call(packed)
            except NoScriptError:
                await self._shared.call(self._load)
                return await self._shared.call(packed)
        except RedisConnectionError:
            return await self.script(keys, args)
