"""Range parameters at the ends of the calendar: always a 400 naming the parameter, never an overflow."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.errors import InvalidRequest
from gateway.usage.ranges import EARLIEST, LATEST, Granularity, parse_moment, parse_range

NOW = datetime(2026, 9, 21, 13, 0, tzinfo=UTC)
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
