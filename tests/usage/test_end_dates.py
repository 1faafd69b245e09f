"""Inclusive end dates at the edge of a month: a request in the last millisecond of the end day counts, one in
the first millisecond of the next day does not, in the aggregates and in the export alike."""

from __future__ import annotations

from datetime import datetime

from tests.common import StartGateway, user_message
from tests.usage.traffic import utc

EDGES = {
    "before": utc(2026, 8, 31, 23, 59, 59, 999_000),
    "first": utc(2026, 9, 1, 0, 0, 0, 0),
    "last": utc(2026, 9, 30, 23, 59, 59, 999_000),
    "after": utc(2026, 10, 1, 0, 0, 0, 0),
}


def _at(moment: datetime) -> float:
    """The clock reading whose millisecond is exactly `moment`'s (half a millisecond in, so no float rounding
    moves it to the one before)."""
    return (round(moment.timestamp() * 1000) + 0.5) / 1000


async def test_an_inclusive_end_date_ends_with_its_last_millisecond(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    account, key = await gateway.new_account()
    ids = {}
    for name, moment in EDGES.items():
        gateway.clock.now = _at(moment)
        response = await gateway.chat(key, {"model": "m-main", "messages": user_message(name), "max_tokens": 4})
        assert response.status == 200
        ids[name] = (await gateway.last_record(account))["request_id"]
    gateway.clock.now = utc(2026, 10, 2, 12).timestamp()
    auth = {"Authorization": f"Bearer {key}"}
    september = {"start": "2026-09-01", "end": "2026-09-30"}

    usage = await (await gateway.client.get("/v1/usage", params=september, headers=auth)).json()
    assert usage["total_requests"] == 2
    assert [day["date"] for day in usage["daily_breakdown"] if day["requests"]] == ["2026-09-30", "2026-09-01"]
    export = await (
        await gateway.client.get("/v1/usage/export", params={**september, "format": "json"}, headers=auth)
    ).json()
    assert [row["request_id"] for row in export] == [ids["first"], ids["last"]]
    assert [row["time"] for row in export] == ["2026-09-01T00:00:00.000Z", "2026-09-30T23:59:59.999Z"]

    # A date-time end is exclusive, to the millisecond.
    exclusive = {"start": "2026-09-01T00:00:00Z", "end": "2026-09-30T23:59:59.999Z", "format": "json"}
    export = await (await gateway.client.get("/v1/usage/export", params=exclusive, headers=auth)).json()
    assert [row["request_id"] for row in export] == [ids["first"]]
    october = {"start": "2026-10-01", "end": "2026-10-01", "format": "json"}
    export = await (await gateway.client.get("/v1/usage/export", params=october, headers=auth)).json()
    assert [row["request_id"] for row in export] == [ids["after"]]
