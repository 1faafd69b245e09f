"""The usage API after real traffic through the proxy: shapes, sums that agree, ranges, bad input, isolation."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from gateway.billing.pricing import credits_number
from tests.common import ADMIN_TOKEN, Gateway, StartGateway
from tests.usage.traffic import NOW, Sent, Tenant, get_json, new_tenant, scheduled_traffic, send, utc

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
USAGE_FIELDS = {
    "period_start",
    "period_end",
    "total_requests",
    "total_tokens",
    "total_credits_used",
    "total_credits_used_micros",
    "credits_remaining",
    "credits_remaining_micros",
    "daily_breakdown",
    "api",
    "api_breakdown",
}
DAY_FIELDS = {"date", "requests", "tokens", "credits", "credits_micros"}
MODEL_FIELDS = {
    "model",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "credits_used",
    "credits_used_micros",
}
KEY_FIELDS = {"key_id", "name", "masked_key", "revoked", "requests", "prompt_tokens", "completion_tokens", "tokens"}
KEY_FIELDS |= {"credits_used", "credits_used_micros", "last_used_at"}


def _sums(sent: Iterable[Sent]) -> tuple[int, int, int]:
    """(requests, tokens, micro-credits) of what the client saw."""
    sent = list(sent)
    return len(sent), sum(s.prompt_tokens + s.completion_tokens for s in sent), sum(s.credits_micros for s in sent)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


async def test_usage_has_the_product_page_shape(start_gateway: StartGateway) -> None:
    gateway, tenant = await scheduled_traffic(start_gateway)
    response = await gateway.client.get("/v1/usage", headers=tenant.auth())
    body = await response.json()
    assert response.status == 200 and set(body) == USAGE_FIELDS
    assert body["period_start"] == "2026-09-01T00:00:00Z" and body["period_end"] == "2026-09-30T23:59:59Z"
    # Newest first, every day of the period up to today; the 31 August request belongs to the previous period.
    september = _days(date(2026, 9, 1), NOW.date())
    assert [day["date"] for day in body["daily_breakdown"]] == [d.isoformat() for d in reversed(september)]
    for day in body["daily_breakdown"]:
        requests, tokens, micros = _sums(
            tenant.within(date.fromisoformat(day["date"]), date.fromisoformat(day["date"]))
        )
        assert set(day) == DAY_FIELDS
        assert (day["requests"], day["tokens"], day["credits_micros"]) == (requests, tokens, micros)
        assert day["credits"] == credits_number(micros)
    requests, tokens, micros = _sums(tenant.within(date(2026, 9, 1), NOW.date()))
    assert (body["total_requests"], body["total_tokens"], body["total_credits_used_micros"]) == (
        requests,
        tokens,
        micros,
    )
    assert requests == 11 and body["total_credits_used"] == credits_number(micros)
    balance = await gateway.balance_micros(tenant.account_id)
    assert balance == 1000 * 10**6 - _sums(tenant.sent)[2]
    assert body["credits_remaining_micros"] == balance and body["credits_remaining"] == credits_number(balance)
    assert response.headers["x-credits-remaining"] == str(Decimal(balance) / 10**6).rstrip("0")


async def test_model_usage_fields_sums_and_order(start_gateway: StartGateway) -> None:
    gateway, tenant = await scheduled_traffic(start_gateway)
    status, body = await get_json(gateway, "/v1/usage/models", tenant.auth())
    assert status == 200 and body["object"] == "list" and body["period_start"] == "2026-09-01T00:00:00Z"
    data = body["data"]
    assert [entry["model"] for entry in data] == ["m-first", "m-second", "m-broken"]  # most credits first
    for entry in data:
        sent = [s for s in tenant.within(date(2026, 9, 1), NOW.date()) if s.model == entry["model"]]
        assert set(entry) == MODEL_FIELDS
        assert entry["prompt_tokens"] == sum(s.prompt_tokens for s in sent)
        assert entry["completion_tokens"] == sum(s.completion_tokens for s in sent)
        assert (entry["requests"], entry["total_tokens"], entry["credits_used_micros"]) == _sums(sent)
        assert entry["credits_used"] == credits_number(entry["credits_used_micros"])
    assert data[2]["requests"] == 1 and data[2]["credits_used"] == 0  # the upstream failure: counted, free


async def test_key_usage_lists_every_key_with_its_sums_and_last_use(start_gateway: StartGateway) -> None:
    gateway, tenant = await scheduled_traffic(start_gateway)
    idle = tenant.key_id(2)
    assert (await gateway.admin("DELETE", f"/admin/keys/{idle}"))[0] == 200
    _, listed = await gateway.admin("GET", f"/admin/accounts/{tenant.account_id}/keys")
    masked = {record["id"]: record["masked_key"] for record in listed["data"]}
    status, body = await get_json(gateway, "/v1/usage/keys", tenant.auth())
    assert status == 200 and body["object"] == "list"
    assert [entry["key_id"] for entry in body["data"]] == [tenant.key_id(0), tenant.key_id(1), idle]
    for entry in body["data"]:
        sent = [s for s in tenant.within(date(2026, 9, 1), NOW.date()) if s.key_id == entry["key_id"]]
        ever = [s.when for s in tenant.sent if s.key_id == entry["key_id"]]
        assert set(entry) == KEY_FIELDS and entry["name"] == tenant.names[entry["key_id"]]
        assert entry["masked_key"] == masked[entry["key_id"]] and entry["masked_key"].startswith("sk-gw-")
        assert tenant.keys[entry["key_id"]] not in str(body)
        assert (entry["requests"], entry["tokens"], entry["credits_used_micros"]) == _sums(sent)
        assert entry["last_used_at"] == (max(ever).strftime("%Y-%m-%dT%H:%M:%SZ") if ever else None)
        assert entry["revoked"] == (entry["key_id"] == idle)
    assert body["data"][2]["requests"] == 0 and body["data"][2]["credits_used"] == 0


async def _export_sums(gateway: Gateway, tenant: Tenant, params: dict[str, str]) -> tuple[int, int, int]:
    """(rows, tokens, micro-credits) of the CSV export, checking each row's decimal credits too."""
    response = await gateway.client.get("/v1/usage/export", params=params, headers=tenant.auth())
    assert response.status == 200
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    for row in rows:
        assert Decimal(row["credits"]) * 10**6 == int(row["credits_micros"])
    return len(rows), sum(int(r["total_tokens"]) for r in rows), sum(int(r["credits_micros"]) for r in rows)


@pytest.mark.parametrize(
    ("params", "first", "last"),
    [
        ({}, date(2026, 9, 1), date(2026, 9, 21)),
        ({"start": "2026-08-31"}, date(2026, 8, 31), date(2026, 9, 21)),
        ({"start": "2026-08-31", "end": "2026-08-31"}, date(2026, 8, 31), date(2026, 8, 31)),
        ({"start": "2026-09-19", "end": "2026-09-20"}, date(2026, 9, 19), date(2026, 9, 20)),
        ({"start": "2026-08-20", "end": "2026-09-05"}, date(2026, 8, 20), date(2026, 9, 5)),
        ({"end": "2026-09-20"}, date(2026, 9, 1), date(2026, 9, 20)),
    ],
)
async def test_every_view_sums_to_the_same_totals(
    start_gateway: StartGateway, params: dict[str, str], first: date, last: date
) -> None:
    gateway, tenant = await scheduled_traffic(start_gateway)
    expected = _sums(tenant.within(first, last))
    _, usage = await get_json(gateway, "/v1/usage", tenant.auth(), **params)
    totals = (usage["total_requests"], usage["total_tokens"], usage["total_credits_used_micros"])
    assert totals == expected
    shown_last = last if params else date(2026, 9, 30)  # by default the whole billing period
    assert usage["period_start"] == f"{first}T00:00:00Z" and usage["period_end"] == f"{shown_last}T23:59:59Z"
    days = usage["daily_breakdown"]
    assert _column_sums(days, "requests", "tokens", "credits_micros") == expected
    _, models = await get_json(gateway, "/v1/usage/models", tenant.auth(), **params)
    assert _column_sums(models["data"], "requests", "total_tokens", "credits_used_micros") == expected
    _, keys = await get_json(gateway, "/v1/usage/keys", tenant.auth(), **params)
    assert _column_sums(keys["data"], "requests", "tokens", "credits_used_micros") == expected
    assert await _export_sums(gateway, tenant, params) == expected


def _column_sums(rows: list[dict[str, int]], *columns: str) -> tuple[int, ...]:
    return tuple(sum(row[column] for row in rows) for column in columns)


async def test_hourly_breakdown_for_todays_graph(start_gateway: StartGateway) -> None:
    gateway, tenant = await scheduled_traffic(start_gateway)
    status, today = await get_json(gateway, "/v1/usage", tenant.auth(), granularity="hour")
    assert status == 200 and set(today) == USAGE_FIELDS - {"daily_breakdown"} | {"hourly_breakdown"}
    assert today["period_start"] == "2026-09-21T00:00:00Z" and today["period_end"] == "2026-09-21T23:59:59Z"
    hours = today["hourly_breakdown"]
    assert [hour["hour"] for hour in hours] == [f"2026-09-21T{h:02d}:00:00Z" for h in range(13, -1, -1)]
    assert [hour["requests"] for hour in hours if hour["requests"]] == [1, 2, 1]  # 13:00, 09:00, 00:00
    assert _column_sums(hours, "requests", "tokens", "credits_micros") == _sums(tenant.within(NOW.date(), NOW.date()))

    # A range across midnight, in whole hours: the hours, the totals and the export agree.
    span = {"start": "2026-09-19T20:00:00Z", "end": "2026-09-20T15:00:00Z"}
    _, night = await get_json(gateway, "/v1/usage", tenant.auth(), granularity="hour", **span)
    expected = _sums(s for s in tenant.sent if utc(2026, 9, 19, 20) <= s.when < utc(2026, 9, 20, 15))
    assert len(night["hourly_breakdown"]) == 19 and expected[0] == 3
    assert _column_sums(night["hourly_breakdown"], "requests", "tokens", "credits_micros") == expected
    assert (night["total_requests"], night["total_tokens"], night["total_credits_used_micros"]) == expected
    assert await _export_sums(gateway, tenant, span) == expected


async def test_days_are_utc_and_datetime_bounds_widen_to_whole_days(start_gateway: StartGateway) -> None:
    gateway, tenant = await scheduled_traffic(start_gateway)
    # 01:00 at +02:00 is 23:00 UTC on 31 August: the range starts on that UTC day.
    for start in ("2026-09-01T01:00:00+02:00", "2026-09-01T01:00:00 02:00", "2026-08-31T23:00:00Z"):
        status, body = await get_json(gateway, "/v1/usage", tenant.auth(), start=start, end="2026-09-01T00:00:01Z")
        assert status == 200 and body["period_start"] == "2026-08-31T00:00:00Z", body
        assert body["period_end"] == "2026-09-01T23:59:59Z"
        assert [(d["date"], d["requests"]) for d in body["daily_breakdown"]] == [("2026-09-01", 2), ("2026-08-31", 1)]
    # The request settled at 23:59:59 on 31 August is August's, the one at 00:00:00 on 1 September is September's.
    _, august = await get_json(gateway, "/v1/usage", tenant.auth(), start="2026-08-01", end="2026-08-31")
    assert august["total_requests"] == 1 and august["period_end"] == "2026-08-31T23:59:59Z"
    # Exports keep date-time bounds exact, to the millisecond.
    rows = await _export_sums(gateway, tenant, {"start": "2026-08-31T23:59:59Z", "end": "2026-09-01T00:00:00.001Z"})
    assert rows[0] == 2


BAD_INPUT = [
    ("/v1/usage", {"start": "yesterday"}, "start"),
    ("/v1/usage", {"end": "2026-13-01"}, "end"),
    ("/v1/usage", {"start": "2026-09-31"}, "start"),
    ("/v1/usage", {"start": "2026-09-10", "end": "2026-09-09"}, "end"),
    ("/v1/usage", {"start": "2026-09-10T10:00:00Z", "end": "2026-09-10T09:00:00Z"}, "end"),
    ("/v1/usage", {"start": "2026-09-10T10:00:00Z", "end": "2026-09-10T10:00:00Z"}, "end"),
    ("/v1/usage", {"start": "2030-01-01"}, "end"),
    ("/v1/usage", {"start": "2025-01-01", "end": "2026-09-01"}, "end"),
    ("/v1/usage", {"start": "1999-12-31"}, "start"),
    ("/v1/usage", {"granularity": "hour", "start": "2026-08-01", "end": "2026-09-15"}, "end"),
    ("/v1/usage", {"granularity": "minute"}, "granularity"),
    ("/v1/usage/models", {"granularity": "hour"}, "granularity"),
    ("/v1/usage/models", {"start": "2026-9-1"}, "start"),
    ("/v1/usage/keys", {"end": "2026-09-01T25:00:00Z"}, "end"),
    ("/v1/usage/keys", {"start": "2026-09-20", "end": "2026-09-01"}, "end"),
    ("/v1/usage/export", {"format": "xlsx"}, "format"),
    ("/v1/usage/export", {"start": "2026-02-30"}, "start"),
    ("/v1/usage/export", {"start": "2020-01-01", "end": "2026-01-01"}, "end"),
    ("/v1/usage/export", {"start": "2026-09-02", "end": "2026-09-01"}, "end"),
    # The ends of the calendar: no overflow when a day is added or an offset applied.
    ("/v1/usage", {"end": "9999-12-31"}, "end"),
    ("/v1/usage/models", {"start": "0001-01-01T00:00:00+01:00"}, "start"),
    ("/v1/usage/keys", {"end": "9999-12-31T23:59:59-01:00"}, "end"),
    ("/v1/usage/export", {"start": "0001-01-01T00:00:00+01:00"}, "start"),
    ("/v1/usage", {"granularity": "hour", "start": "0001-01-01T00:00:00+23:59"}, "start"),
]


@pytest.mark.parametrize(("path", "params", "param"), BAD_INPUT)
async def test_bad_input_is_a_400_in_openai_shape(
    start_gateway: StartGateway, path: str, params: dict[str, str], param: str
) -> None:
    gateway = await start_gateway()
    _, key = await gateway.new_account()
    status, body = await get_json(gateway, path, {"Authorization": f"Bearer {key}"}, **params)
    assert status == 400, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] == param


async def test_admin_usage_bad_input_gets_400_naming_the_parameter(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    for path, params, param in [
        ("/v1/usage", {}, "account"),
        ("/admin/usage/summary", {"limit": "0"}, "limit"),
        ("/admin/usage/summary", {"limit": "ten"}, "limit"),
        ("/admin/usage/summary", {"start": "2026-09-05", "end": "2026-09-04"}, "end"),
        ("/admin/usage/summary", {"end": "9999-12-31"}, "end"),
    ]:
        status, body = await get_json(gateway, path, ADMIN, **params)
        assert status == 400 and body["error"]["param"] == param, body


async def test_the_maximum_range_is_configurable(start_gateway: StartGateway) -> None:
    gateway = await start_gateway({"usage": {"max_range_days": 7, "max_hour_range_hours": 24}})
    _, key = await gateway.new_account()
    auth = {"Authorization": f"Bearer {key}"}
    assert (await get_json(gateway, "/v1/usage", auth, start="2026-09-01", end="2026-09-07"))[0] == 200
    status, body = await get_json(gateway, "/v1/usage", auth, start="2026-09-01", end="2026-09-08")
    assert status == 400 and "7 days" in body["error"]["message"]
    # The default range (this month) is longer than 7 days: it must be narrowed explicitly.
    assert (await get_json(gateway, "/v1/usage", auth))[0] == 400
    assert (await get_json(gateway, "/v1/usage", auth, granularity="hour"))[0] == 200
    params = {"granularity": "hour", "start": "2026-09-20T12:00:00Z", "end": "2026-09-21T12:00:01Z"}
    assert (await get_json(gateway, "/v1/usage", auth, **params))[0] == 400


async def test_a_key_never_reads_another_accounts_usage(start_gateway: StartGateway) -> None:
    gateway, tenant = await scheduled_traffic(start_gateway)
    other = await new_tenant(gateway, keys=("theirs",), name="other")
    await send(gateway, other, 0, "m-first", NOW)
    paths = ["/v1/usage", "/v1/usage/models", "/v1/usage/keys", "/v1/usage/export"]
    for path in paths:
        for params in ({"account": other.account_id}, {"account": other.account_id, "start": "2026-09-21"}):
            response = await gateway.client.get(path, params=params, headers=tenant.auth())
            body = await response.json()
            assert response.status == 403 and body["error"]["code"] == "permission_denied" and set(body) == {"error"}
        response = await gateway.client.get(path, params={"account": tenant.account_id}, headers=tenant.auth())
        assert response.status == 200
        for headers in ({}, {"Authorization": "Bearer sk-gw-nope"}, {"Authorization": "Bearer wrong-admin"}):
            response = await gateway.client.get(path, params={"account": other.account_id}, headers=headers)
            assert response.status == 401
    # Each key sees only its own account's numbers.
    _, mine = await get_json(gateway, "/v1/usage", tenant.auth())
    _, theirs = await get_json(gateway, "/v1/usage", other.auth())
    assert mine["total_requests"] == 11 and theirs["total_requests"] == 1
    status, body = await get_json(gateway, "/admin/usage/summary", tenant.auth())
    assert status == 401


async def test_the_admin_token_reads_any_account(start_gateway: StartGateway) -> None:
    gateway, tenant = await scheduled_traffic(start_gateway)
    _, as_tenant = await get_json(gateway, "/v1/usage", tenant.auth(), start="2026-08-31")
    response = await gateway.client.get("/v1/usage", params={"account": tenant.account_id, "start": "2026-08-31"})
    assert response.status == 401
    for path in ("/v1/usage", "/v1/usage/models", "/v1/usage/keys"):
        params = {"account": tenant.account_id, "start": "2026-08-31"}
        status, as_admin = await get_json(gateway, path, ADMIN, **params)
        assert status == 200 and as_admin == (await get_json(gateway, path, tenant.auth(), start="2026-08-31"))[1]
    assert as_tenant["total_requests"] == 12
    response = await gateway.client.get("/v1/usage/export", params={"account": tenant.account_id}, headers=ADMIN)
    assert response.status == 200 and len((await response.text()).splitlines()) == 1 + 11
    status, body = await get_json(gateway, "/v1/usage", ADMIN, account="acct_0000000000000000")
    assert status == 404 and body["error"]["param"] == "account"


async def test_admin_summary_ranks_accounts_and_models(start_gateway: StartGateway) -> None:
    gateway, tenant = await scheduled_traffic(start_gateway)
    other = await new_tenant(gateway, keys=("theirs",), name="other")
    await new_tenant(gateway, keys=(), name="idle")
    for _ in range(5):
        await send(gateway, other, 0, "m-second", NOW, max_tokens=16)
    status, body = await get_json(gateway, "/admin/usage/summary", ADMIN)
    assert status == 200 and body["accounts"] == 3 and body["active_accounts"] == 2
    everything = tenant.within(date(2026, 9, 1), NOW.date()) + other.sent
    expected = _sums(everything)
    assert (body["total_requests"], body["total_tokens"], body["total_credits_used_micros"]) == expected
    assert [a["account_id"] for a in body["top_accounts"]] == [tenant.account_id, other.account_id]
    assert body["top_accounts"][1]["name"] == "other" and body["top_accounts"][1]["requests"] == 5
    assert _column_sums(body["top_accounts"], "requests", "tokens", "credits_used_micros") == expected
    assert [m["model"] for m in body["top_models"]] == ["m-second", "m-first", "m-broken"]
    assert _column_sums(body["top_models"], "requests", "total_tokens", "credits_used_micros") == expected
    _, top = await get_json(gateway, "/admin/usage/summary", ADMIN, limit="1", start="2026-09-21", end="2026-09-21")
    assert len(top["top_accounts"]) == 1 and len(top["top_models"]) == 1
    assert top["total_requests"] == len(tenant.within(NOW.date(), NOW.date())) + 5


async def test_each_read_is_one_round_trip(start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    gateway, tenant = await scheduled_traffic(start_gateway)
    trips: list[str] = []
    execute, command = Pipeline.execute, Redis.execute_command

    async def counted_execute(self: Pipeline, raise_on_error: bool = True) -> list[object]:
        trips.append(f"pipeline of {len(self.command_stack)}")
        return await execute(self, raise_on_error)

    async def counted_command(self: Redis, *args: object, **options: object) -> object:
        trips.append(str(args[0]))
        return await command(self, *args, **options)

    monkeypatch.setattr(Pipeline, "execute", counted_execute)
    monkeypatch.setattr(Redis, "execute_command", counted_command)
    year = {"start": "2025-09-22", "end": "2026-09-21"}  # 365 days, 365 hashes
    for path in ("/v1/usage", "/v1/usage/models", "/v1/usage/keys"):
        trips.clear()
        assert (await get_json(gateway, path, tenant.auth(), **year))[0] == 200
        # One to check the key, one for every day of the year (plus the key records for /keys).
        assert trips == ["pipeline of 2", f"pipeline of {365 + (2 if path.endswith('keys') else 0)}"]
    trips.clear()
    assert (await get_json(gateway, "/admin/usage/summary", ADMIN, **year))[0] == 200
    assert trips == ["ZRANGE", f"pipeline of {366}"]
