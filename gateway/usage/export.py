"""Request records streamed to the client as they are read: CSV, a JSON array, or NDJSON.

A CSV text cell that a spreadsheet would run as a formula gets a leading `'` (OWASP's CSV injection advice);
numbers stay bare and the JSON formats carry every value as recorded.

Records are read from the account's request log with XRANGE, a page at a time, and each page is written
before the next is read, so memory stays flat however many records the range holds (aiohttp's `write`
waits while the client is slow). Record ids are settlement times in ms, so a time range is an id range.
"""

from __future__ import annotations

import csv
import enum
import functools
import io
import logging
import time
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from typing import NamedTuple, cast

import orjson
from aiohttp import web

from gateway.billing import keyspace
from gateway.billing.client import RedisClient
from gateway.billing.pricing import format_credits
from gateway.billing.record import LEGACY_API
from gateway.billing.scripts import lua_source
from gateway.errors import InvalidRequest

log = logging.getLogger(__name__)

PAGE_SIZE = 1000  # records per XRANGE: ~100 KB of CSV
COLUMNS = (
    "time",
    "request_id",
    "key_id",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "credits",
    "credits_micros",
    "status",
    "latency_ms",
    "api",
    "tool_calls",
    "tool_call_micros",
)
# A row as exported, in COLUMNS order.
Row = tuple[str, str, str, str, int, int, int, str, int, int, int, str, int, int]
API_COLUMN = COLUMNS.index("api")
# Excel and LibreOffice read a cell starting with one of these as a formula (or DDE call).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


class ProjectedRecord(NamedTuple):
    """One request record as export_page.lua returns it: the stream entry id, then the fields it projects."""

    entry_id: str
    request_id: str
    key_id: str
    model: str
    prompt_tokens: str
    completion_tokens: str
    credits_micros: str
    status: str
    latency_ms: str
    api: str  # '' in records from before requests carried their API: chat completions'
    tool_calls: str  # built-in tool calls billed ('' when none)
    tool_call_micros: str  # what they cost, part of credits_micros


PROJECTED_FIELDS = ProjectedRecord._fields[1:]  # what the script is asked for, in this order
WIDTH = len(ProjectedRecord._fields)  # values per record in a flat page


class ExportFormat(enum.StrEnum):
    CSV = "csv"
    JSON = "json"
    NDJSON = "ndjson"


CONTENT_TYPES = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.JSON: "application/json",
    ExportFormat.NDJSON: "application/x-ndjson",
}


def parse_format(value: str | None) -> ExportFormat:
    """The `format` parameter (default csv); 400 for anything else."""
    try:
        return ExportFormat(value or "csv")
    except ValueError:
        raise InvalidRequest("'format' must be 'csv', 'json' or 'ndjson'.", param="format") from None


def page_rows(page: list[str], api: str | None = None) -> list[Row]:
    """Rows from a flat page (see export_page.lua), of `api` only if given. `credits` is the exact decimal text of
    `credits_micros`."""
    rows = []
    for offset in range(0, len(page), WIDTH):
        record = ProjectedRecord._make(page[offset : offset + WIDTH])
        prompt_tokens, completion_tokens = int(record.prompt_tokens or 0), int(record.completion_tokens or 0)
        credits_micros = int(record.credits_micros or 0)
        rows.append(
            (
                iso_ms(int(record.entry_id.partition("-")[0])),
                record.request_id,
                record.key_id,
                record.model,
                prompt_tokens,
                completion_tokens,
                prompt_tokens + completion_tokens,
                format_credits(credits_micros),
                credits_micros,
                int(record.status or 0),
                int(record.latency_ms or 0),
                record.api or LEGACY_API,
                int(record.tool_calls or 0),
                int(record.tool_call_micros or 0),
            )
        )
    return rows if api is None else [row for row in rows if row[API_COLUMN] == api]


def iso_ms(ms: int) -> str:
    """Unix milliseconds as ISO 8601 UTC with milliseconds: 2026-09-21T13:33:20.125Z."""
    seconds, millis = divmod(ms, 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{millis:03d}Z"


def encode_head(fmt: ExportFormat) -> bytes:
    if fmt is ExportFormat.CSV:
        return encode_csv([COLUMNS])
    return b"[" if fmt is ExportFormat.JSON else b""


def encode_tail(fmt: ExportFormat) -> bytes:
    return b"]\n" if fmt is ExportFormat.JSON else b""


def encode_page(fmt: ExportFormat, rows: list[Row], *, first: bool) -> bytes:
    """One page of rows in `fmt`; JSON array elements after the first page start with a comma."""
    if fmt is ExportFormat.CSV:
        return encode_csv(map(spreadsheet_row, rows))
    # One growing buffer: each record's bytes are freed as soon as they are copied in (orjson over-allocates
    # its output, so holding a page's worth of separate records would cost several times the page).
    separator = b"\n" if fmt is ExportFormat.NDJSON else b","
    buffer = bytearray()
    for index, row in enumerate(rows):
        if fmt is ExportFormat.JSON and (index or not first):
            buffer += separator
        buffer += orjson.dumps(dict(zip(COLUMNS, row, strict=True)))
        if fmt is ExportFormat.NDJSON:
            buffer += separator
    return bytes(buffer)


def spreadsheet_safe(text: str) -> str:
    """`text` as a spreadsheet shows it and never runs it: "=1+1" becomes "'=1+1"."""
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def spreadsheet_row(row: Row) -> Row:
    """The row with its free-text cells (request id, key id, model) made safe; `time` and numbers as they are."""
    time_, request_id, key_id, model, *_ = row
    return (time_, spreadsheet_safe(request_id), spreadsheet_safe(key_id), spreadsheet_safe(model), *row[4:])


def encode_csv(rows: Iterable[Sequence[str | int]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode()


@functools.cache
def _page_script() -> str:
    return lua_source("gateway.usage", "export_page.lua")


async def read_pages(
    redis: RedisClient, account_id: str, first_ms: int, end_ms: int
) -> AsyncGenerator[list[str], None]:
    """Flat pages of the records with first_ms <= settlement ms < end_ms, oldest first.

    A script projects each record to the exported fields server-side: a third of the data crosses the wire
    and is parsed, which is most of an export's cost.
    """
    script = redis.register_script(_page_script())
    stream = keyspace.request_log(account_id)
    low, high = str(first_ms), str(end_ms - 1)  # a bare ms id covers every entry of that millisecond
    while True:
        # The gateway's client decodes responses: the page is text.
        page = cast(list[str], await script([stream], [low, high, PAGE_SIZE, *PROJECTED_FIELDS]))
        if page:
            yield page
        if len(page) < PAGE_SIZE * WIDTH:
            return
        low = "(" + page[-WIDTH]


async def stream_export(
    request: web.Request,
    redis: RedisClient,
    account_id: str,
    span: tuple[int, int],
    fmt: ExportFormat,
    headers: Mapping[str, str],
    *,
    api: str | None = None,
) -> web.StreamResponse:
    """Write the records of `span` (ms, [first, end)), of `api` only if given, to the client page by page, with
    `headers` added.

    The first page is read before the response starts, so a Redis failure there is still a clean 500. A client
    that goes away stops the loop; a failure after the start cuts the body short, so the client sees it.
    """
    pages = read_pages(redis, account_id, *span)
    page = await anext(pages, None)
    response = web.StreamResponse(headers={**headers, "Content-Type": CONTENT_TYPES[fmt], "Cache-Control": "no-store"})
    await response.prepare(request)
    try:
        await response.write(encode_head(fmt))
        first = True
        while page is not None:
            rows = page_rows(page, api)
            if rows:
                await response.write(encode_page(fmt, rows, first=first))
                first = False
            page = await anext(pages, None)
        await response.write(encode_tail(fmt))
    except ConnectionResetError:
        log.info("usage export for %s stopped: the client went away", account_id)
        return response
    except Exception:
        # The status line is gone: all that is left is to end the body early so the download is seen as failed.
        log.exception("usage export for %s failed midway", account_id)
        if request.transport is not None:
            request.transport.close()
        return response
    finally:
        await pages.aclose()
    await response.write_eof()
    return response
