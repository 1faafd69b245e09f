"""The request-level export: formats and headers, streaming 100,000 records in bounded memory, retention."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import time
import tracemalloc
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import ClientPayloadError, ClientResponse, web
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.billing import keyspace
from gateway.config import ModelConfig
from gateway.redis_server import free_port
from gateway.usage import export
from gateway.usage.export import COLUMNS
from tests.common import (
    ADMIN_TOKEN,
    REFERENCE,
    TEST_PRICE,
    FakeClock,
    Gateway,
    StartGateway,
    StartUpstream,
    make_settings,
    user_message,
)
from tests.usage.traffic import NOW, get_json, new_tenant, scheduled_traffic, send, utc

MB = 1024 * 1024


async def test_csv_export_rows_headers_and_values(start_gateway: StartGateway) -> None:
    gateway, tenant = await scheduled_traffic(start_gateway)
    response = await gateway.client.get("/v1/usage/export", params={"format": "csv"}, headers=tenant.auth())
    assert response.status == 200 and response.headers["Content-Type"] == "text/csv; charset=utf-8"
    filename = f"usage-{tenant.account_id}-20260901-20260930.csv"
    assert response.headers["Content-Disposition"] == f'attachment; filename="{filename}"'
    balance = await gateway.balance_micros(tenant.account_id)
    assert response.headers["x-credits-remaining"] == str(Decimal(balance) / 10**6).rstrip("0")
    reader = csv.reader(io.StringIO(await response.text()))
    assert next(reader) == list(COLUMNS)
    rows = [dict(zip(COLUMNS, row, strict=True)) for row in reader]
    sent = tenant.within(date(2026, 9, 1), NOW.date())
    assert len(rows) == len(sent) == 11
    for row, request in zip(rows, sent, strict=True):  # oldest first
        assert row["time"] == request.when.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        assert row["request_id"].startswith("req_") and row["key_id"] == request.key_id
        assert row["model"] == request.model and int(row["status"]) == request.status
        assert (int(row["prompt_tokens"]), int(row["completion_tokens"])) == (
            request.prompt_tokens,
            request.completion_tokens,
        )
        assert int(row["total_tokens"]) == request.prompt_tokens + request.completion_tokens
        assert int(row["credits_micros"]) == request.credits_micros
        assert Decimal(row["credits"]) == Decimal(request.credits_micros) / 10**6
        assert int(row["latency_ms"]) >= 0
    assert len({row["request_id"] for row in rows}) == len(rows)


async def test_json_and_ndjson_exports_carry_the_same_records(start_gateway: StartGateway) -> None:
    gateway, tenant = await scheduled_traffic(start_gateway)
    params = {"start": "2026-08-31", "end": "2026-09-21"}
    csv_text = await (await gateway.client.get("/v1/usage/export", params=params, headers=tenant.auth())).text()
    csv_rows = list(csv.DictReader(io.StringIO(csv_text)))
    response = await gateway.client.get("/v1/usage/export", params=params | {"format": "json"}, headers=tenant.auth())
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Content-Disposition"].endswith('-20260831-20260921.json"')
    records = json.loads(await response.text())
    assert isinstance(records, list) and len(records) == len(csv_rows) == 12
    assert [list(record) for record in records] == [list(COLUMNS)] * 12
    assert [{k: str(v) for k, v in record.items()} for record in records] == csv_rows
    response = await gateway.client.get("/v1/usage/export", params=params | {"format": "ndjson"}, headers=tenant.auth())
    assert response.headers["Content-Type"] == "application/x-ndjson"
    assert [json.loads(line) for line in (await response.text()).splitlines()] == records


async def test_an_empty_range_exports_no_rows(start_gateway: StartGateway) -> None:
    gateway, tenant = await scheduled_traffic(start_gateway)
    params = {"start": "2026-09-10", "end": "2026-09-12"}
    expected = {"csv": ",".join(COLUMNS) + "\r\n", "json": "[]\n", "ndjson": ""}
    for fmt, body in expected.items():
        response = await gateway.client.get("/v1/usage/export", params=params | {"format": fmt}, headers=tenant.auth())
        assert response.status == 200 and await response.text() == body


# Cells Excel or LibreOffice would run: a DDE call, a function, and arithmetic behind a tab and a carriage return.
DDE_MODEL = "=cmd|' /C calc'!A0"
FORMULA_KEY_ID = "@SUM(1+1)*cmd|' /C calc'!A0"


async def test_csv_cells_a_spreadsheet_would_run_are_neutralised_and_json_stays_raw(
    start_gateway: StartGateway, redis_client: Redis
) -> None:
    model = ModelConfig(name=DDE_MODEL, upstream="main", upstream_model="gpt-4o-mini", price=TEST_PRICE)
    gateway = await start_gateway({"models": {DDE_MODEL: model}})
    account_id, key = await gateway.new_account()
    response = await gateway.chat(key, {"model": DDE_MODEL, "messages": user_message(), "max_tokens": 5})
    assert response.status == 200
    served_id = response.headers["x-request-id"]
    # Records no client can make (key ids and request ids are the gateway's), written as settle.lua writes them.
    now_ms = int(gateway.clock.now * 1000)
    planted = [
        (FORMULA_KEY_ID, "\t=1+2", "+1+1", "-5"),
        ("-2+3", '\r=HYPERLINK("http://x")', "m-main", "7"),
    ]
    for offset, (key_id, request_id, record_model, latency) in enumerate(planted, start=1):
        await redis_client.execute_command(
            *("XADD", keyspace.request_log(account_id), f"{now_ms + offset}-0", "request_id", request_id),
            *("key_id", key_id, "model", record_model, "prompt_tokens", 3, "completion_tokens", 4),
            *("credits_micros", 11, "status", 200, "latency_ms", latency),
        )
    auth = {"Authorization": f"Bearer {key}"}
    text = await (await gateway.client.get("/v1/usage/export", headers=auth)).text()
    rows = [dict(zip(COLUMNS, row, strict=True)) for row in list(csv.reader(io.StringIO(text, newline="")))[1:]]
    assert [(row["request_id"], row["key_id"], row["model"]) for row in rows] == [
        (served_id, rows[0]["key_id"], "'" + DDE_MODEL),
        ("'\t=1+2", "'" + FORMULA_KEY_ID, "'+1+1"),
        ('\'\r=HYPERLINK("http://x")', "'-2+3", "m-main"),
    ]
    assert rows[0]["key_id"].startswith("key_")
    # Numbers stay numbers, a negative one included.
    assert [row["latency_ms"] for row in rows[1:]] == ["-5", "7"]
    assert [(row["credits"], row["credits_micros"]) for row in rows[1:]] == [("0.000011", "11")] * 2
    assert 'Z,"\'\r=HYPERLINK(""http://x"")",' in text  # a cell with a CR in it is quoted
    raw = [(served_id, rows[0]["key_id"], DDE_MODEL, rows[0]["latency_ms"])] + [
        (request_id, key_id, record_model, latency) for key_id, request_id, record_model, latency in planted
    ]
    json_records = await (await gateway.client.get("/v1/usage/export", params={"format": "json"}, headers=auth)).json()
    ndjson = await (await gateway.client.get("/v1/usage/export", params={"format": "ndjson"}, headers=auth)).text()
    for records in (json_records, [json.loads(line) for line in ndjson.splitlines()]):
        assert [(r["request_id"], r["key_id"], r["model"], str(r["latency_ms"])) for r in records] == raw
        assert records[1]["latency_ms"] == -5


async def _fill_request_log(redis: Redis, account_id: str, key_id: str, count: int, first_ms: int) -> int:
    """Write `count` realistic request records straight into the stream, 400 ms apart. Returns their credits."""
    stream, total = keyspace.request_log(account_id), 0
    for offset in range(0, count, 10_000):
        async with redis.pipeline(transaction=False) as pipe:
            for index in range(offset, min(offset + 10_000, count)):
                prompt, completion = 40 + index % 997, 1 + index % 311
                micros = REFERENCE.cost_micros(prompt, completion)
                total += micros
                model = "m-main" if index % 3 else "gpt-4o-mini:2024-07-18"
                # The fields settle.lua writes, in its order.
                pipe.execute_command(
                    *("XADD", stream, f"{first_ms + index * 400}-0", "request_id", f"req_{index:032x}"),
                    *("key_id", key_id, "model", model, "prompt_tokens", prompt, "completion_tokens", completion),
                    *("credits_micros", micros, "cost_micros", micros, "status", 200, "latency_ms", 100 + index % 2000),
                    *("stream", index % 2, "usage_source", "upstream", "cached_tokens", 0, "reasoning_tokens", 0),
                    *("gateway_prompt_tokens", prompt, "gateway_completion_tokens", completion),
                    *("hold_micros", micros + 500_000),
                )
            await pipe.execute()
    return total


async def _download(response: ClientResponse, path: Path) -> int:
    """Stream the body to a file chunk by chunk, as a client saving an export does. Returns its size."""
    size = 0
    with path.open("wb") as out:
        async for chunk in response.content.iter_chunked(64 * 1024):
            out.write(chunk)
            size += len(chunk)
    return size


async def _measured_export(gateway: Gateway, auth: dict[str, str], fmt: str, path: Path) -> tuple[int, int]:
    """(bytes downloaded, peak growth of the process's Python heap while the export streamed)."""
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        response = await gateway.client.get("/v1/usage/export", params={"format": fmt}, headers=auth)
        assert response.status == 200
        size = await _download(response, path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return size, peak - baseline


# CPU-bound (100k records written, then exported twice under tracemalloc): about 15 s on a quiet 2-core machine,
# over a minute on a busy one. The bound is there to end a hang.
@pytest.mark.timeout(300)
async def test_export_of_100k_records_streams_in_bounded_memory(
    start_gateway: StartGateway, redis_client: Redis, tmp_path: Path
) -> None:
    gateway = await start_gateway()
    account_id, key = await gateway.new_account()
    first_ms = int(utc(2026, 9, 21).timestamp() * 1000)  # 100,000 records 400 ms apart: 00:00 to 11:06 today
    credits = await _fill_request_log(redis_client, account_id, "key_0123456789abcdef", 100_000, first_ms)
    auth = {"Authorization": f"Bearer {key}"}
    started = time.monotonic()
    csv_size, csv_growth = await _measured_export(gateway, auth, "csv", tmp_path / "usage.csv")
    json_size, json_growth = await _measured_export(gateway, auth, "json", tmp_path / "usage.json")
    elapsed = time.monotonic() - started
    print(
        f"100k export: csv {csv_size / MB:.1f} MB, peak heap growth {csv_growth / MB:.2f} MB; "
        f"json {json_size / MB:.1f} MB, peak heap growth {json_growth / MB:.2f} MB; {elapsed:.1f} s (traced)"
    )
    assert csv_size > 10 * MB and json_size > 20 * MB
    # The export never sits in memory: the peak is a few pages' worth (server and client together).
    assert csv_growth < 5 * MB and json_growth < 5 * MB

    with (tmp_path / "usage.csv").open(newline="") as handle:
        reader = csv.reader(handle)
        assert next(reader) == list(COLUMNS)
        rows = sum_rows = 0
        for row in reader:
            rows += 1
            sum_rows += int(row[COLUMNS.index("credits_micros")])
    assert rows == 100_000 and sum_rows == credits
    records = json.loads((tmp_path / "usage.json").read_text())
    assert len(records) == 100_000 and sum(record["credits_micros"] for record in records) == credits
    assert records[0]["time"] == "2026-09-21T00:00:00.000Z" and records[-1]["model"] == "gpt-4o-mini:2024-07-18"
    assert records[99_999]["time"] == "2026-09-21T11:06:39.600Z"


async def test_records_past_retention_leave_the_export_but_still_count(start_gateway: StartGateway) -> None:
    gateway = await start_gateway({"redis": {"request_log_retention_days": 2}}, first={})
    tenant = await new_tenant(gateway, keys=("web",))
    for hour in (8, 9, 10):
        await send(gateway, tenant, 0, "m-first", utc(2026, 9, 10, hour))
    await send(gateway, tenant, 0, "m-first", utc(2026, 9, 19, 13, 29))  # 2 days and a minute before NOW
    await send(gateway, tenant, 0, "m-first", utc(2026, 9, 20, 12))
    await send(gateway, tenant, 0, "m-first", utc(2026, 9, 21, 9))
    gateway.clock.now = NOW.timestamp()
    response = await gateway.client.get("/v1/usage/export", headers=tenant.auth())
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert [row["time"] for row in rows] == ["2026-09-20T12:00:00.000Z", "2026-09-21T09:00:00.000Z"]
    _, usage = await get_json(gateway, "/v1/usage", tenant.auth())
    assert usage["total_requests"] == 6
    assert usage["total_credits_used_micros"] == sum(sent.credits_micros for sent in tenant.sent)
    assert [day["requests"] for day in usage["daily_breakdown"] if day["requests"]] == [1, 1, 1, 3]


async def test_settlement_trims_records_past_retention(start_gateway: StartGateway, redis_client: Redis) -> None:
    gateway = await start_gateway({"redis": {"request_log_retention_days": 2}}, first={})
    tenant = await new_tenant(gateway, keys=("web",))
    old_ms = int(utc(2026, 9, 1).timestamp() * 1000)
    await _fill_request_log(redis_client, tenant.account_id, tenant.key_id(0), 1_000, old_ms)
    stream = keyspace.request_log(tenant.account_id)
    assert await redis_client.xlen(stream) == 1_000
    await send(gateway, tenant, 0, "m-first", NOW)
    # MINID ~ drops whole stream nodes (100 entries each by default): all ten old ones go, the new record stays.
    assert await redis_client.xlen(stream) <= 100
    (last_id, last), *_ = await redis_client.xrevrange(stream, count=1)
    assert last_id == f"{int(NOW.timestamp() * 1000)}-0" and last["request_id"].startswith("req_")


async def test_retention_zero_keeps_records_by_count_only(start_gateway: StartGateway, redis_client: Redis) -> None:
    gateway = await start_gateway(first={})
    tenant = await new_tenant(gateway, keys=("web",))
    await _fill_request_log(
        redis_client, tenant.account_id, tenant.key_id(0), 1_000, int(utc(2020, 1, 1).timestamp() * 1000)
    )
    await send(gateway, tenant, 0, "m-first", NOW)
    assert await redis_client.xlen(keyspace.request_log(tenant.account_id)) == 1_001


@pytest.fixture
async def served(redis_url: str, start_upstream: StartUpstream) -> AsyncIterator[str]:
    """The gateway on a real port, run as `gateway serve` runs it (no handler cancellation on disconnects)."""
    upstream = await start_upstream()
    runner = web.AppRunner(create_app(make_settings(redis_url, {"main": upstream.base_url}), clock=FakeClock()))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_a_client_that_leaves_mid_export_stops_it(
    served: str, redis_client: Redis, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    progress = {"pages": 0, "closed": 0}
    read_pages = export.read_pages

    async def counted_pages(*args: Any) -> AsyncIterator[list[str]]:
        try:
            async for page in read_pages(*args):
                progress["pages"] += 1
                yield page
        finally:
            progress["closed"] += 1

    monkeypatch.setattr(export, "read_pages", counted_pages)
    caplog.set_level(logging.INFO, logger="gateway.usage.export")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
        account = await (await admin.post(f"{served}/admin/accounts", json={"name": "a", "credits": 1})).json()
        key = await (await admin.post(f"{served}/admin/accounts/{account['id']}/keys", json={"name": "k"})).json()
    first_ms = int(utc(2026, 9, 21).timestamp() * 1000)
    await _fill_request_log(redis_client, account["id"], key["id"], 50_000, first_ms)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key['key']}"}) as client:
        response = await client.get(f"{served}/v1/usage/export")
        assert (await response.content.readline()).decode().startswith("time,request_id")
        response.close()
        for _ in range(500):  # the server notices at its next write
            if progress["closed"]:
                break
            await asyncio.sleep(0.01)
        assert progress["closed"] == 1 and progress["pages"] < 50
        assert "client went away" in caplog.text and "failed midway" not in caplog.text
        assert (await client.get(f"{served}/v1/usage")).status == 200


async def test_a_failure_midway_cuts_the_body_short(
    start_gateway: StartGateway, redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = await start_gateway()
    account_id, key = await gateway.new_account()
    await _fill_request_log(
        redis_client, account_id, "key_0123456789abcdef", 2_500, int(utc(2026, 9, 21).timestamp() * 1000)
    )
    pages: list[int] = []
    encode = export.encode_page

    def failing_encode(fmt: export.ExportFormat, page: list[str], *, first: bool) -> bytes:
        pages.append(len(page))
        if len(pages) == 2:
            raise RuntimeError("redis went away")
        return encode(fmt, page, first=first)

    monkeypatch.setattr(export, "encode_page", failing_encode)
    response = await gateway.client.get(
        "/v1/usage/export", params={"format": "json"}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status == 200
    with pytest.raises(ClientPayloadError):
        await response.read()


async def test_head_is_not_an_export(start_gateway: StartGateway) -> None:
    # A HEAD answer must carry no body; the export streams one, so it answers GET only.
    gateway = await start_gateway()
    _, key = await gateway.new_account()
    auth = {"Authorization": f"Bearer {key}"}
    head = await gateway.client.head("/v1/usage/export", headers=auth)
    assert head.status == 405
    after = await gateway.client.get("/v1/usage/export", headers=auth)  # the connection is still sound
    assert after.status == 200 and (await after.text()).startswith("time,request_id")
