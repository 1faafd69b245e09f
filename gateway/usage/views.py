"""The usage API's JSON shapes. Credits appear as exact decimal numbers, each with an integer `*_micros` twin
that clients sum exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.billing.periods import iso_utc
from gateway.billing.pricing import credits_number
from gateway.usage.ranges import Granularity, UsageRange
from gateway.usage.reader import AccountSummary, ApiKeyUsage, Counts, RangeUsage


def usage_view(usage_range: UsageRange, range_usage: RangeUsage, balance_micros: int) -> dict[str, object]:
    """`GET /v1/usage`: totals of the range and its breakdown, newest first."""
    hourly = usage_range.granularity is Granularity.HOUR
    breakdown = [_bucket(start, counts, hourly=hourly) for start, counts in reversed(range_usage.buckets)]
    totals = range_usage.totals
    return {
        **usage_range.view(),
        "api": range_usage.api,
        "total_requests": totals.requests,
        "total_tokens": totals.total_tokens,
        "total_credits_used": credits_number(totals.credits_micros),
        "total_credits_used_micros": totals.credits_micros,
        "credits_remaining": credits_number(balance_micros),
        "credits_remaining_micros": balance_micros,
        "hourly_breakdown" if hourly else "daily_breakdown": breakdown,
        "api_breakdown": [api_entry(name, counts) for name, counts in _ranked(range_usage.apis)],
    }


def api_entry(name: str, counts: Counts) -> dict[str, object]:
    return {
        "api": name,
        "requests": counts.requests,
        "prompt_tokens": counts.prompt_tokens,
        "completion_tokens": counts.completion_tokens,
        "total_tokens": counts.total_tokens,
        "credits_used": credits_number(counts.credits_micros),
        "credits_used_micros": counts.credits_micros,
    }


def _bucket(start: datetime, counts: Counts, *, hourly: bool) -> dict[str, object]:
    label = {"hour": iso_utc(start)} if hourly else {"date": start.strftime("%Y-%m-%d")}
    return {
        **label,
        "requests": counts.requests,
        "tokens": counts.total_tokens,
        "credits": credits_number(counts.credits_micros),
        "credits_micros": counts.credits_micros,
    }


def model_usage_view(usage_range: UsageRange, per_model: dict[str, Counts], api: str | None) -> dict[str, object]:
    """`GET /v1/usage/models`: one entry per model used in the range (on `api`, if given), most credits first."""
    data = [model_entry(name, counts) for name, counts in _ranked(per_model)]
    return {"object": "list", **usage_range.view(), "api": api, "data": data}


def model_entry(name: str, counts: Counts) -> dict[str, object]:
    return {
        "model": name,
        "requests": counts.requests,
        "prompt_tokens": counts.prompt_tokens,
        "completion_tokens": counts.completion_tokens,
        "total_tokens": counts.total_tokens,
        "credits_used": credits_number(counts.credits_micros),
        "credits_used_micros": counts.credits_micros,
    }


def api_key_usage_view(usage_range: UsageRange, api_key_usage: ApiKeyUsage, api: str | None) -> dict[str, object]:
    """`GET /v1/usage/keys`: every API key of the account (revoked ones too), most credits first (on `api`, if
    given)."""
    records = {record.id: record for record in api_key_usage.records}
    per_key = {key_id: Counts() for key_id in records} | api_key_usage.range_usage.api_keys
    data = []
    for key_id, counts in _ranked(per_key):
        record = records.get(key_id)
        last_used = api_key_usage.last_used_ms.get(key_id)
        data.append(
            {
                "key_id": key_id,
                "name": None if record is None else record.name,
                "masked_key": None if record is None else record.masked_key,
                "revoked": record is not None and record.revoked_at is not None,
                "requests": counts.requests,
                "prompt_tokens": counts.prompt_tokens,
                "completion_tokens": counts.completion_tokens,
                "tokens": counts.total_tokens,
                "credits_used": credits_number(counts.credits_micros),
                "credits_used_micros": counts.credits_micros,
                "last_used_at": None if last_used is None else iso_utc(datetime.fromtimestamp(last_used / 1000, UTC)),
            }
        )
    return {"object": "list", **usage_range.view(), "api": api, "data": data}


def summary_view(
    usage_range: UsageRange,
    totals: Counts,
    accounts: list[AccountSummary],
    per_model: dict[str, Counts],
    limit: int,
    api: str | None,
) -> dict[str, object]:
    """`GET /admin/usage/summary`: gateway-wide totals, top accounts and top models by credits (on `api`, if
    given)."""
    used = sorted(
        (account for account in accounts if account.counts.requests),
        key=lambda a: (-a.counts.credits_micros, -a.counts.requests, a.account_id),
    )
    return {
        "object": "usage_summary",
        **usage_range.view(),
        "api": api,
        "accounts": len(accounts),
        "active_accounts": len(used),
        "total_requests": totals.requests,
        "total_tokens": totals.total_tokens,
        "total_credits_used": credits_number(totals.credits_micros),
        "total_credits_used_micros": totals.credits_micros,
        "top_accounts": [_account_entry(account) for account in used[:limit]],
        "top_models": [model_entry(name, counts) for name, counts in _ranked(per_model)[:limit]],
    }


def _account_entry(account: AccountSummary) -> dict[str, object]:
    counts = account.counts
    return {
        "account_id": account.account_id,
        "name": account.name,
        "requests": counts.requests,
        "tokens": counts.total_tokens,
        "credits_used": credits_number(counts.credits_micros),
        "credits_used_micros": counts.credits_micros,
        "credits_remaining": credits_number(account.balance_micros),
    }


def export_filename(account_id: str, usage_range: UsageRange) -> str:
    """`usage-<account>-<first day>-<last day>` (UTC), without the extension."""
    last = usage_range.end - timedelta(microseconds=1)
    return f"usage-{account_id}-{usage_range.start:%Y%m%d}-{last:%Y%m%d}"


def _ranked(table: dict[str, Counts]) -> list[tuple[str, Counts]]:
    """Most credits first, then most requests, then by name, so the order is stable."""
    return sorted(table.items(), key=lambda item: (-item[1].credits_micros, -item[1].requests, item[0]))
