"""The Redis client type: one server (`Redis`) or a Redis Cluster (`RedisCluster`, `redis.cluster = true`).

Everything the gateway sends works on both: each script's KEYS share the account's hash tag, transactions
stay within one account's slot, and the cluster client splits plain pipelines by node.
"""

from __future__ import annotations

from typing import TypeAlias

from redis.asyncio import Redis, RedisCluster

RedisClient: TypeAlias = Redis | RedisCluster
