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


def period_view(now: datetime) -> dict[str, str]:
    """`period_start` / `period_end` as the product page shows them (end is the period's last second)."""
    start, end = period_bounds(now)
    return {"period_start": iso_utc(start), "period_end": iso_utc(end - timedelta(seconds=1))}


def period_id(ms: int) -> str:
    """The billing period of a unix-ms moment as the money scripts keep it: "YYYYMM" (UTC)."""
    return _period_of_hour(ms // 3_600_000)  # periods start on whole hours: one formatting per hour


@lru_cache(maxsize=256)
def _period_of_hour(hour: int) -> str:
    return datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y%m")
