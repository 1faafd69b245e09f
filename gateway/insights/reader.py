"""The day's insights hashes settle.lua writes (keyspace.insights_day), summed over a range, for the account or
for one of its API keys, of every API or one, in one pipelined round trip.

Each field is scoped by the request's API (`a:<api>:`, see insights.lua); fields without that scope were written
before insights were kept per API and are chat completions'.

    found = await InsightsReader(redis).read(account_id, days, key_id=None, api=None, examples_from=cutoff)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from gateway.billing import keyspace
from gateway.billing.client import RedisClient
from gateway.billing.keyspace import as_text
from gateway.billing.record import LEGACY_API

Stats = dict[str, int]
EXAMPLES = 5  # example request ids per type in a report (each day keeps its first as many)
PER_MODEL = ("mix:m:", "cache:m:")  # prefixes of the per-model counters (model names may hold ':')


@dataclass
class Found:
    """Insight counters summed over a range: per type ("dup", "retry", ...), per model for "mix" and "cache",
    and the retry loops per API key; example request ids per type, the newest day's first."""

    kinds: dict[str, Stats] = field(default_factory=dict)
    models: dict[str, dict[str, Stats]] = field(default_factory=dict)  # "mix" / "cache" -> model -> stats
    examples: dict[str, list[str]] = field(default_factory=dict)
    loops_by_key: dict[str, Stats] = field(default_factory=dict)
    key_known: bool = True  # False: the API key asked for is not one of the account's

    def stats(self, kind: str) -> Stats:
        return self.kinds.get(kind, {})

    def add(self, name: str, value: str, *, with_examples: bool) -> None:
        """Fold one field of a day's hash in (the scope's prefix already taken off)."""
        for prefix in PER_MODEL:
            if name.startswith(prefix):
                model, _, stat = name[len(prefix) :].rpartition(":")
                stats = self.models.setdefault(prefix.partition(":")[0], {}).setdefault(model, {})
                stats[stat] = stats.get(stat, 0) + int(value)
                return
        kind, _, stat = name.partition(":")
        if stat == "x":
            if with_examples:
                kept = self.examples.setdefault(kind, [])
                kept.extend(value.split()[: EXAMPLES - len(kept)])
            return
        stats = self.kinds.setdefault(kind, {})
        stats[stat] = stats.get(stat, 0) + int(value)

    def add_key_loops(self, key_id: str, stat: str, value: str) -> None:
        stats = self.loops_by_key.setdefault(key_id, {})
        stats[stat] = stats.get(stat, 0) + int(value)


class InsightsReader:
    def __init__(self, redis: RedisClient):
        self.redis = redis

    async def read(
        self,
        account_id: str,
        days: list[datetime],
        *,
        key_id: str | None,
        examples_from: datetime | None,
        api: str | None = None,
    ) -> Found:
        """Sum the days (oldest first, as UsageRange.buckets gives them), of `api` only when given. Examples come
        only from days that start at or after `examples_from` (records older than the request log's retention are
        no longer exported)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hgetall(keyspace.insights_day(account_id, day))
            if key_id is not None:
                pipe.hexists(keyspace.api_key_records(account_id), key_id)
            replies = await pipe.execute()
        found = Found()
        if key_id is not None:
            found.key_known = bool(replies.pop())
        for day, fields in reversed(list(zip(days, replies, strict=True))):  # the newest day's examples first
            with_examples = examples_from is None or day >= examples_from
            _fold_day(found, fields, key_id, api, with_examples=with_examples)
        return found


def _fold_day(
    found: Found, fields: Mapping[object, object], key_id: str | None, api: str | None, *, with_examples: bool
) -> None:
    scope = None if key_id is None else f"k:{key_id}:"
    for raw_name, raw_value in fields.items():
        name, value = as_text(raw_name), as_text(raw_value)
        field_api = LEGACY_API
        if name.startswith("a:"):
            field_api, _, name = name[2:].partition(":")
        if api is not None and field_api != api:
            continue
        if scope is not None:
            if name.startswith(scope):
                _fold_key_field(found, str(key_id), name[len(scope) :], value, with_examples=with_examples)
            continue
        if not name.startswith("k:"):
            found.add(name, value, with_examples=with_examples)
            continue
        # A key's own counters: the account's report names the keys its retry loops came from.
        key, _, rest = name[2:].partition(":")
        if rest.startswith("retry:") and rest != "retry:x":
            found.add_key_loops(key, rest[len("retry:") :], value)


def _fold_key_field(found: Found, key_id: str, name: str, value: str, *, with_examples: bool) -> None:
    found.add(name, value, with_examples=with_examples)
    if name.startswith("retry:") and name != "retry:x":
        found.add_key_loops(key_id, name[len("retry:") :], value)
