"""Billing periods: UTC calendar months."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache


def period_bounds(now: datetime) -> tuple[datetime, datetime]:
    """First instant of the month of `now` and the first instant of the next month (UTC)."""
    now = now.astimezone(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    next_month = (start + timedelta(days=32)).replace(day=1)
    return start, next_month


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def period_texts(now: datetime) -> tuple[str, str]:
    """The period of `now` as every API and webhook shows it: its first second and its last (both inclusive,
    as the product page writes them: "2024-01-01T00:00:00Z" to "2024-01-31T23:59:59Z")."""
    start, end = period_bounds(now)
    return iso_utc(start), iso_utc(end - timedelta(seconds=1))


def period_view(now: datetime) -> dict[str, str]:
    """`period_start` / `period_end` of the account and usage APIs."""
    start, end = period_texts(now)
    return {"period_start": start, "period_end": end}


def period_id(ms: int) -> str:
    """The billing period of a unix-ms moment as the money scripts keep it: "YYYYMM" (UTC)."""
    return _period_of_hour(ms // 3_600_000)  # periods start on whole hours: one formatting per hour


@lru_cache(maxsize=256)
def _period_of_hour(hour: int) -> str:
    return datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y%m")
