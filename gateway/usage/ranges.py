"""Usage ranges: the `start`, `end` and `granularity` query parameters as UTC instants.

`start` and `end` are dates (`2026-09-01`, whole UTC days, `end` inclusive) or ISO 8601 date-times (`Z` or an
offset; none means UTC). Without them the range is the current billing period (hourly: today). Aggregates
exist per day and per hour, so their ranges widen to whole buckets; exports keep the instants as given.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from gateway.billing.periods import iso_utc, period_bounds
from gateway.billing.record import API_NAMES
from gateway.errors import InvalidRequest

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)
# A '+' in an unencoded query string arrives as a space: "...T10:00:00 02:00" means "+02:00".
_SPACED_OFFSET = re.compile(r"(T.+) (\d\d:?\d\d)$")


class Granularity(enum.StrEnum):
    DAY = "day"
    HOUR = "hour"

    @property
    def step(self) -> timedelta:
        return timedelta(days=1) if self is Granularity.DAY else timedelta(hours=1)

    def floor(self, moment: datetime) -> datetime:
        moment = moment.replace(minute=0, second=0, microsecond=0)
        return moment.replace(hour=0) if self is Granularity.DAY else moment

    def ceil(self, moment: datetime) -> datetime:
        floor = self.floor(moment)
        return floor if floor == moment else floor + self.step


@dataclass(frozen=True)
class UsageRange:
    """The instants [start, end) in UTC, read in buckets of `granularity`."""

    start: datetime
    end: datetime
    granularity: Granularity

    def buckets(self, now: datetime) -> list[datetime]:
        """Bucket starts from `start`, oldest first, stopping at the bucket holding `now` (none in the future)."""
        last = min(self.end, self.granularity.floor(now) + self.granularity.step)
        starts, moment = [], self.start
        while moment < last:
            starts.append(moment)
            moment += self.granularity.step
        return starts

    def view(self) -> dict[str, str]:
        """`period_start` / `period_end` as the product page shows them (end is the range's last second)."""
        return {"period_start": iso_utc(self.start), "period_end": iso_utc(self.end - timedelta(seconds=1))}

    def ms_bounds(self) -> tuple[int, int]:
        """[first, last) in unix milliseconds: a record at ms `t` is in range iff first <= t < last."""
        return _ceil_ms(self.start), _ceil_ms(self.end)


def parse_range(
    query: Mapping[str, str],
    now: datetime,
    granularity: Granularity,
    *,
    max_days: int,
    max_hours: int,
    exact: bool = False,
) -> UsageRange:
    """The range the query asks for, 400 when malformed, reversed or longer than the configured maximum.

    `exact` keeps date-time bounds as given (exports) instead of widening them to whole buckets.
    """
    start, end = parse_moment(query, "start"), parse_moment(query, "end")
    if start is None and end is None:
        start, end = _default_range(now, granularity)
    elif start is None:
        assert end is not None
        start = _default_range(end - ONE_MS, granularity)[0]
    elif end is None:
        end = granularity.floor(now) + granularity.step
    if end <= start:
        raise InvalidRequest("'end' must be after 'start'.", param="end")
    if not exact:
        start, end = granularity.floor(start), granularity.ceil(end)
    if granularity is Granularity.HOUR and end - start > timedelta(hours=max_hours):
        raise InvalidRequest(f"An hourly range may span at most {max_hours} hours.", param="end")
    if end - start > timedelta(days=max_days):
        raise InvalidRequest(f"A range may span at most {max_days} days.", param="end")
    return UsageRange(start, end, granularity)


def parse_granularity(value: str | None, allowed: tuple[Granularity, ...] = tuple(Granularity)) -> Granularity:
    """The `granularity` parameter (default day); 400 for anything not in `allowed`."""
    names = " or ".join(f"'{g.value}'" for g in allowed)
    try:
        granularity = Granularity(value or "day")
    except ValueError:
        granularity = None
    if granularity not in allowed:
        raise InvalidRequest(f"'granularity' must be {names} here.", param="granularity")
    assert granularity is not None
    return granularity


def parse_api(value: str | None) -> str | None:
    """The `api` parameter: one API's usage only (None: every API's); 400 for a name that is no API."""
    if value is None:
        return None
    if value not in API_NAMES:
        raise InvalidRequest(f"'api' must be one of {', '.join(API_NAMES)}.", param="api")
    return value


def parse_moment(query: Mapping[str, str], param: str) -> datetime | None:
    """`start` or `end` as a UTC instant; a date means its first instant, or for `end` the next day's."""
    text = query.get(param)
    if text is None or text == "":
        return None
    text = text.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        moment = _datetime(text, param)
    else:
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        # Checked before the day is added: 9999-12-31 plus one day is past what datetime can hold.
        _check_bounds(moment, param)
        moment += timedelta(days=1 if param == "end" else 0)
    _check_bounds(moment, param)
    return moment


def _check_bounds(moment: datetime, param: str) -> None:
    if not EARLIEST <= moment <= LATEST:
        raise InvalidRequest(f"'{param}' must be between 2000 and 9000.", param=param)


def _datetime(text: str, param: str) -> datetime:
    try:
        moment = datetime.fromisoformat(_SPACED_OFFSET.sub(r"\1+\2", text))
    except ValueError:
        shown = text[:40]
        raise InvalidRequest(
            f"'{param}' must be a date (YYYY-MM-DD) or an ISO 8601 date-time, got '{shown}'.", param=param
        ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # An offset that moves the first or last day of year 1 or 9999 past what datetime can hold.
        raise InvalidRequest(f"'{param}' must be between 2000 and 9000.", param=param) from None


def _default_range(now: datetime, granularity: Granularity) -> tuple[datetime, datetime]:
    """The billing period around `now`; for hourly breakdowns, the UTC day around it."""
    if granularity is Granularity.HOUR:
        day = Granularity.DAY.floor(now)
        return day, day + timedelta(days=1)
    return period_bounds(now)


def _ceil_ms(moment: datetime) -> int:
    return -(-(moment - EPOCH) // ONE_MS)
