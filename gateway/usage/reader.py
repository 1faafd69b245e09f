"""Usage aggregates read back: the day and hour hashes settlement writes, summed over a range.

Every read is one pipelined round trip, however many days, models or keys the range holds. Settlement adds
the same amounts to a day's totals of the request's API (`a:<api>:<stat>`), to its `a:<api>:m:<model>:` fields and
to its `a:<api>:k:<key id>:` fields in one script, so totals, per-model, per-key and per-API sums agree exactly
(all amounts are integers; credits in micro-credits). Hashes written before usage was kept per API have the same
fields without the `a:<api>:` scope: they are read as chat completions', the only API there was.

    range_usage = await UsageReader(redis).account_usage(account_id, usage_range, now, api=None)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from gateway.admin.accounts import ApiKeyRecord
from gateway.billing import keyspace
from gateway.billing.client import RedisClient
from gateway.billing.keyspace import as_text
from gateway.billing.record import LEGACY_API
from gateway.usage.ranges import Granularity, UsageRange

# Hash field -> Counts attribute.
STATS = {
    "requests": "requests",
    "prompt_tokens": "prompt_tokens",
    "completion_tokens": "completion_tokens",
    "credits": "credits_micros",
    "errors": "errors",
}
SUMMARY_BATCH = 100  # accounts per round trip in the cross-account summary


@dataclass
class Counts:
    """Sums of one subject (a bucket, a model, a key, an account). Credits in micro-credits."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    credits_micros: int = 0
    errors: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add_stat(self, stat: str, value: object) -> None:
        name = STATS.get(stat)
        if name is not None:
            setattr(self, name, getattr(self, name) + int(as_text(value)))

    def merge(self, other: Counts) -> None:
        for name in STATS.values():
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class RangeUsage:
    """One account's usage over a range, of one API or (`api` None) of all: per bucket (oldest first), in total,
    per model, per API key and per API."""

    api: str | None = None
    buckets: list[tuple[datetime, Counts]] = field(default_factory=list)
    totals: Counts = field(default_factory=Counts)
    models: dict[str, Counts] = field(default_factory=dict)
    api_keys: dict[str, Counts] = field(default_factory=dict)
    apis: dict[str, Counts] = field(default_factory=dict)

    def add_bucket(self, start: datetime, fields: Mapping[object, object]) -> None:
        """Fold one day or hour hash in. API names hold no ':'; model names may, so the stat is after the last."""
        counts = Counts()
        for raw_name, value in fields.items():
            name = as_text(raw_name)
            api = LEGACY_API
            if name.startswith("a:"):
                api, _, name = name[2:].partition(":")
            if self.api is not None and api != self.api:
                continue
            if name.startswith(("m:", "k:")):
                subject, _, stat = name[2:].rpartition(":")
                table = self.models if name[0] == "m" else self.api_keys
                table.setdefault(subject, Counts()).add_stat(stat, value)
            else:
                counts.add_stat(name, value)
                self.apis.setdefault(api, Counts()).add_stat(name, value)
        self.buckets.append((start, counts))
        self.totals.merge(counts)


@dataclass
class ApiKeyUsage:
    """Usage per API key of an account, with the keys' records and last-use times (ms)."""

    range_usage: RangeUsage
    records: list[ApiKeyRecord]
    last_used_ms: dict[str, int]


@dataclass
class AccountSummary:
    account_id: str
    name: str
    balance_micros: int
    counts: Counts


def bucket_key(account_id: str, granularity: Granularity, start: datetime) -> str:
    if granularity is Granularity.HOUR:
        return keyspace.usage_hour(account_id, start)
    return keyspace.usage_day(account_id, start)


class UsageReader:
    """Reads usage aggregates, one pipelined round trip per call (the summary: one per batch of accounts)."""

    def __init__(self, redis: RedisClient):
        self.redis = redis

    async def account_usage(
        self, account_id: str, usage_range: UsageRange, now: datetime, *, api: str | None = None
    ) -> RangeUsage:
        """The account's usage over the range, of `api` only when given."""
        starts = usage_range.buckets(now)
        async with self.redis.pipeline(transaction=False) as pipe:
            for start in starts:
                pipe.hgetall(bucket_key(account_id, usage_range.granularity, start))
            replies = await pipe.execute()
        return _fold(starts, replies, api)

    async def api_key_usage(
        self, account_id: str, usage_range: UsageRange, now: datetime, *, api: str | None = None
    ) -> ApiKeyUsage:
        starts = usage_range.buckets(now)
        async with self.redis.pipeline(transaction=False) as pipe:
            for start in starts:
                pipe.hgetall(bucket_key(account_id, usage_range.granularity, start))
            pipe.hvals(keyspace.api_key_records(account_id))
            pipe.hgetall(keyspace.api_key_last_used(account_id))
            *replies, records, last_used = await pipe.execute()
        return ApiKeyUsage(
            range_usage=_fold(starts, replies, api),
            records=sorted((ApiKeyRecord.from_json(raw) for raw in records), key=ApiKeyRecord.sort_key),
            last_used_ms={as_text(key_id): int(as_text(ms)) for key_id, ms in last_used.items()},
        )

    async def summary(
        self, account_ids: list[str], usage_range: UsageRange, now: datetime, *, api: str | None = None
    ) -> tuple[list[AccountSummary], dict[str, Counts]]:
        """Totals per account and per model across accounts (of `api` only when given), reading SUMMARY_BATCH
        accounts per round trip."""
        starts = usage_range.buckets(now)
        accounts: list[AccountSummary] = []
        models: dict[str, Counts] = {}
        for offset in range(0, len(account_ids), SUMMARY_BATCH):
            batch = account_ids[offset : offset + SUMMARY_BATCH]
            async with self.redis.pipeline(transaction=False) as pipe:
                for account_id in batch:
                    pipe.hmget(keyspace.account(account_id), ["name", "balance"])
                    for start in starts:
                        pipe.hgetall(bucket_key(account_id, usage_range.granularity, start))
                replies = await pipe.execute()
            stride = len(starts) + 1
            for index, account_id in enumerate(batch):
                (name, balance), *days = replies[index * stride : (index + 1) * stride]
                range_usage = _fold(starts, days, api)
                name_text, balance_micros = as_text(name or ""), int(balance or 0)
                accounts.append(AccountSummary(account_id, name_text, balance_micros, range_usage.totals))
                _merge_into(models, range_usage.models.items())
        return accounts, models


def _fold(starts: list[datetime], replies: list[Mapping[object, object]], api: str | None) -> RangeUsage:
    range_usage = RangeUsage(api)
    for start, fields in zip(starts, replies, strict=True):
        range_usage.add_bucket(start, fields)
    return range_usage


def _merge_into(target: dict[str, Counts], items: Iterable[tuple[str, Counts]]) -> None:
    for name, counts in items:
        target.setdefault(name, Counts()).merge(counts)
