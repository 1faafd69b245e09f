"""Money scripts called on the hot path: one EVALSHA packed here and sent over a pooled connection.

redis-py's generic command path costs more CPU per call than the rest of a request's Redis work: it encodes
each argument through its type checks, wraps the call in its retry loop and records observability events.
A script call's arguments are known to be text and whole numbers, so `ScriptCall` packs the RESP bytes in
one pass and sends them itself. Whatever is not the plain case goes through redis-py, which knows it:
- a Redis Cluster client (slot routing, redirections);
- NOSCRIPT (Redis restarted or flushed its scripts): redis-py loads the script and calls again;
- a connection error: redis-py's retry with backoff, as for every other command (every money script is
  idempotent by request id, so a call that did run before the connection broke changes nothing the
  second time).
A timeout is not retried (its call may still run): it propagates, like every other error, after the
connection is dropped, so a reply still on its way can never be read as another call's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from gateway.billing.client import RedisClient

Arg = str | int


def pack_command(words: Sequence[bytes]) -> bytes:
    """A RESP array of bulk strings."""
    return b"".join((b"*%d\r\n" % len(words), *(b"$%d\r\n%s\r\n" % (len(word), word) for word in words)))


def encode(value: Arg) -> bytes:
    """What redis-py sends for the argument: UTF-8 text, or an int's decimal digits (bools are refused by
    the callers' checks before they get here)."""
    return value.encode() if isinstance(value, str) else b"%d" % value


class ScriptCall:
    """Calls `script` (registered on `redis`) as `await call(keys, args)`; the reply as redis-py gives it."""

    def __init__(self, redis: RedisClient, script: AsyncScript):
        self.script = script
        self.sha = script.sha
        self._pool = redis.connection_pool if isinstance(redis, Redis) and not redis.single_connection_client else None
        self._evalsha = [b"EVALSHA", script.sha.encode()]

    async def __call__(self, keys: Sequence[str], args: Sequence[Arg]) -> Any:  # as redis-py's script call
        if self._pool is None:
            return await self.script(keys, args)
        words = [*self._evalsha, b"%d" % len(keys), *(key.encode() for key in keys), *(encode(a) for a in args)]
        packed = pack_command(words)
        try:
            connection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        except RedisConnectionError:
            return await self.script(keys, args)
        try:
            await connection.send_packed_command(packed)
            reply = await connection.read_response()
        except NoScriptError:
            reply = _REDIS_PY  # the connection read the whole answer: it stays usable
        except RedisConnectionError:
            await connection.disconnect()
            reply = _REDIS_PY
        except BaseException:
            await connection.disconnect()  # a timeout or a cancellation: a reply may still be on its way
            raise
        finally:
            await self._pool.release(connection)
        return await self.script(keys, args) if reply is _REDIS_PY else reply


_REDIS_PY = object()  # "hand this call to redis-py"
