"""How `start`, `end` and `granularity` become UTC instants: offsets and their absence, widening to whole
buckets, ranges given by one end only, the 400 messages a tenant reads, and the ends of the calendar, which are
always a 400 naming the parameter, never an overflow."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.errors import InvalidRequest
from gateway.usage.ranges import EARLIEST, LATEST, Granularity, parse_api, parse_granularity, parse_moment, parse_range

NOW = datetime(2026, 9, 21, 13, 0, tzinfo=UTC)


def _range(query: dict[str, str], granularity: Granularity = Granularity.DAY, *, exact: bool = False):  # type: ignore[no-untyped-def]
    return parse_range(query, NOW, granularity, max_days=400, max_hours=744, exact=exact)


def test_a_date_time_without_an_offset_is_utc() -> None:
    moment = parse_moment({"start": "2026-09-01T10:00:00"}, "start")
    assert moment == datetime(2026, 9, 1, 10, tzinfo=UTC) and moment.utcoffset() is not None
    assert moment.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


@pytest.mark.usefixtures("local_zone_tokyo")
def test_day_ranges_follow_utc_midnight_whatever_the_local_zone() -> None:
    # 10:00+02:00 is 08:00Z on Sept 1 (17:00 in Tokyo); 2026-09-02T01:00+02:00 is 23:00Z on Sept 1.
    usage_range = _range({"start": "2026-09-01T10:00:00+02:00", "end": "2026-09-02T01:00:00+02:00"})
    assert (usage_range.start, usage_range.end) == (datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 9, 2, tzinfo=UTC))
    assert usage_range.start.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_date_times_widen_to_whole_buckets_unless_exact() -> None:
    query = {"start": "2026-09-01T10:30:00.500Z", "end": "2026-09-01T12:00:00.250Z"}
    days = _range(query)
    assert (days.start, days.end) == (datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 9, 2, tzinfo=UTC))
    hours = _range(query, Granularity.HOUR)
    assert (hours.start, hours.end) == (datetime(2026, 9, 1, 10, tzinfo=UTC), datetime(2026, 9, 1, 13, tzinfo=UTC))
    assert parse_range(query, NOW, Granularity.DAY, max_days=400, max_hours=744) == days  # widened by default
    exact = _range(query, exact=True)
    assert exact.start == datetime(2026, 9, 1, 10, 30, 0, 500_000, tzinfo=UTC)
    assert exact.end == datetime(2026, 9, 1, 12, 0, 0, 250_000, tzinfo=UTC)


def test_an_empty_start_and_end_mean_the_billing_period() -> None:
    usage_range = _range({"start": "", "end": ""})
    assert (usage_range.start, usage_range.end) == (datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC))


def test_an_end_alone_starts_at_the_beginning_of_its_period() -> None:
    # The inclusive end day Sept 30 ends at Oct 1 00:00; its period is September.
    usage_range = _range({"end": "2026-09-30"})
    assert (usage_range.start, usage_range.end) == (datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC))


def test_an_hourly_end_alone_starts_at_the_beginning_of_its_day() -> None:
    usage_range = _range({"end": "2026-09-21T05:00:00Z"}, Granularity.HOUR)
    assert usage_range.start == datetime(2026, 9, 21, tzinfo=UTC)
    # An end exactly at midnight: the range is the day before, up to that midnight.
    midnight = _range({"end": "2026-09-21T00:00:00Z"}, Granularity.HOUR)
    assert (midnight.start, midnight.end) == (datetime(2026, 9, 20, tzinfo=UTC), datetime(2026, 9, 21, tzinfo=UTC))


def test_a_start_alone_runs_to_the_end_of_the_current_bucket() -> None:
    assert _range({"start": "2026-09-20"}).end == datetime(2026, 9, 22, tzinfo=UTC)
    assert _range({"start": "2026-09-21T10:00:00Z"}, Granularity.HOUR).end == datetime(2026, 9, 21, 14, tzinfo=UTC)


def test_an_end_not_after_the_start_is_refused_with_its_reason() -> None:
    with pytest.raises(InvalidRequest) as refused:
        _range({"start": "2026-09-02", "end": "2026-09-01"})
    assert (refused.value.message, refused.value.param) == ("'end' must be after 'start'.", "end")


def test_too_long_ranges_are_refused_with_the_limit() -> None:
    with pytest.raises(InvalidRequest) as hourly:
        _range({"start": "2026-08-01T00:00:00Z", "end": "2026-09-01T01:00:00Z"}, Granularity.HOUR)
    assert (hourly.value.message, hourly.value.param) == ("An hourly range may span at most 744 hours.", "end")
    with pytest.raises(InvalidRequest) as daily:
        _range({"start": "2025-01-01", "end": "2026-09-01"})
    assert (daily.value.message, daily.value.param) == ("A range may span at most 400 days.", "end")


def test_a_malformed_moment_is_refused_showing_its_first_40_characters() -> None:
    text = "2026-09-01 at noon, give or take an hour or two"
    with pytest.raises(InvalidRequest) as refused:
        _range({"start": text})
    assert refused.value.param == "start"
    assert refused.value.message == (
        "'start' must be a date (YYYY-MM-DD) or an ISO 8601 date-time, got '2026-09-01 at noon, give or take an hour'."
    )


def test_granularity_is_day_by_default_and_refused_outside_what_is_allowed() -> None:
    assert parse_granularity(None) is Granularity.DAY and parse_granularity("hour") is Granularity.HOUR
    with pytest.raises(InvalidRequest) as refused:
        parse_granularity("week")
    assert (refused.value.message, refused.value.param) == (
        "'granularity' must be 'day' or 'hour' here.",
        "granularity",
    )
    with pytest.raises(InvalidRequest, match=r"^'granularity' must be 'day' here\.$"):
        parse_granularity("hour", allowed=(Granularity.DAY,))


EXTREMES = [
    "9999-12-31",
    "0001-01-01",
    "9000-01-01T00:00:00-23:59",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:59:59.999999-23:59",
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00+23:59",
    "0001-01-01T00:00:00 01:00",  # an unencoded '+' arrives as a space
    "1999-12-31T23:59:59Z",
]


@pytest.mark.parametrize("param", ["start", "end"])
@pytest.mark.parametrize("value", EXTREMES)
@pytest.mark.parametrize("granularity", list(Granularity))
def test_extreme_dates_are_a_400_naming_the_parameter(param: str, value: str, granularity: Granularity) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_range({param: value}, NOW, granularity, max_days=400, max_hours=744, exact=granularity is Granularity.DAY)
    assert caught.value.param == param and "between 2000 and 9000" in caught.value.message


def test_the_last_accepted_day() -> None:
    # 8999-12-31 as the inclusive end day ends at 9000-01-01, the latest instant a range may reach.
    usage_range = parse_range(
        {"start": "8999-12-01", "end": "8999-12-31"}, NOW, Granularity.DAY, max_days=400, max_hours=744
    )
    assert usage_range.end == datetime(9000, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidRequest, match="'end' must be between"):
        parse_range({"start": "8999-12-01", "end": "9000-01-01"}, NOW, Granularity.DAY, max_days=400, max_hours=744)


def test_the_first_accepted_day() -> None:
    # 2000-01-01 is the earliest instant a range may start at; the millisecond before is refused.
    usage_range = parse_range(
        {"start": "2000-01-01", "end": "2000-01-31"}, NOW, Granularity.DAY, max_days=400, max_hours=744
    )
    assert usage_range.start == datetime(2000, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidRequest, match="'start' must be between"):
        parse_range({"start": "1999-12-31T23:59:59.999Z"}, NOW, Granularity.DAY, max_days=10_000, max_hours=744)


@given(st.text(alphabet="0123456789-+:.TZW tz\u0665\uff15", max_size=40), st.sampled_from(["start", "end"]))
@example("2026-09-01T00:00:00.1234567890+05:00", "start")
@example("\uff12\uff10\uff12\uff16-09-01", "end")  # fullwidth digits
def test_any_text_is_a_range_bound_or_a_400_naming_it(text: str, param: str) -> None:
    """Whatever a tenant writes: a UTC instant from 2000 to 9000, or a 400 that names the parameter."""
    try:
        moment = parse_moment({param: text}, param)
    except InvalidRequest as refused:
        assert refused.param == param
        return
    assert moment is None or (moment.tzinfo is UTC and EARLIEST <= moment <= LATEST)


def test_an_unknown_api_is_refused_naming_every_api() -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_api("chat")
    assert refused.value.param == "api"
    names = "chat.completions, responses, embeddings, completions, messages"
    assert refused.value.message == f"'api' must be one of {names}."
    assert parse_api(None) is None and parse_api("messages") == "messages"
