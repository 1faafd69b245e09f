"""A streamed answer relayed to the client event by event as it arrives, counted as it is written.

Events that arrive in one upstream read go out in one write, and are counted once written. The request is
settled (by its meter) before the stream's end goes out. When the client asked for the bill in the stream, that
is just before the event that carries it: the upstream's final usage event (the API's `StreamFormat` says which),
or, when the upstream sent none, one the format adds before the stream's end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import aiohttp
import orjson
from aiohttp import web

from gateway.billing.scripts import SettleOutcome
from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout
from gateway.proxy.apis import Api, StreamFormat
from gateway.proxy.meter import CLIENT_CLOSED, Meter
from gateway.proxy.sse import Event, EventSplitter, EventTooLarge

log = logging.getLogger(__name__)


class StreamRelay:
    """Relays one upstream SSE stream; its meter gets the upstream's usage and what the client was sent."""

    def __init__(
        self,
        request: web.Request,
        api: Api,
        meter: Meter,
        *,
        request_id: str,
        max_event_bytes: int,
    ):
        self.request = request
        self.api = api
        self.meter = meter
        self.format: StreamFormat = api.stream_format(meter.ticket.request, request_id)
        self.request_id = request_id
        self.max_event_bytes = max_event_bytes
        self.bill_sent = False  # the event carrying the bill went out
        self.error_event = False  # the upstream reported an error in the stream
        self.last_chunk: Mapping[str, object] = {}
        self._unsent: list[bytes] = []  # queued for the client's next write
        self._unsent_chunks: list[Mapping[str, object]] = []  # their parsed events, counted once written

    async def run(self, upstream: aiohttp.ClientResponse, headers: Mapping[str, str]) -> tuple[web.StreamResponse, int]:
        """Relay to the end; returns the response and the status the request ends with: 200, 502 (the upstream
        cut the stream or reported an error in it), 504 (it went silent) or 499 (the client left)."""
        client = web.StreamResponse(
            status=200,
            headers={
                **headers,
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )
        try:
            await client.prepare(self.request)
            status = await self._pump(upstream, client)
            if status == 502 and not self.error_event:
                await self._send_error(client, UpstreamError("The upstream stream ended early."))
            await self.meter.settle(status)  # before the end goes out: a client that has read it finds its bill in
            await client.write_eof()
        except (ConnectionError, asyncio.CancelledError) as exc:
            # The client went away (a failed write, or aiohttp cancelling the handler): stop reading; closing
            # the upstream response cancels the upstream request.
            upstream.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
            return client, CLIENT_CLOSED
        return client, status

    async def _pump(self, upstream: aiohttp.ClientResponse, client: web.StreamResponse) -> int:
        """Relay events as they complete, the events of one upstream read in one write; the status the stream
        ended with."""
        splitter = EventSplitter(self.max_event_bytes)
        try:
            async for data in upstream.content.iter_any():
                done = await self._relay_events(splitter.feed(data), client)
                if done:
                    return self._finished()
            if await self._relay_events(splitter.rest(), client):
                return self._finished()
        except TimeoutError:
            await self._send_error(client, UpstreamTimeout("The upstream timed out in the middle of the stream."))
            return 504
        except ConnectionResetError:
            raise  # the client's side (aiohttp's reset error is also a ClientError)
        except (aiohttp.ClientError, EventTooLarge):
            log.info("upstream stream cut for %s", self.request_id)
        # No end event: an upstream that sent its usage has finished (vLLM-style streams end without [DONE]).
        if self.meter.upstream_usage is None:
            return 502
        await self._send_bill(client)
        await self._flush(client)
        return self._finished()

    def _finished(self) -> int:
        return 502 if self.error_event else 200

    async def _relay_events(self, events: list[Event], client: web.StreamResponse) -> bool:
        """Queue each event, then write them out together; True once the stream's end was among them."""
        try:
            for event in events:
                if await self._relay_event(event, client):
                    return True
            return False
        finally:
            await self._flush(client)

    async def _relay_event(self, event: Event, client: web.StreamResponse) -> bool:
        """Queue one event for the client; True once it was the stream's end."""
        fmt = self.format
        if fmt.is_end(event):
            await self._send_bill(client)
            self._queue(event.raw + b"\n\n", None)
            return True
        chunk = _json_object(event.data) if event.data is not None else None
        raw = event.raw + b"\n\n"
        if chunk is not None:
            answer_id = fmt.answer_id(chunk)
            if answer_id is not None:
                await self.meter.answer_seen(answer_id)  # recorded before the client is sent the id
            prompt = fmt.prompt_usage(chunk)
            if prompt is not None:
                self.meter.take_prompt_usage(prompt)
            reported = fmt.usage(chunk)
            if reported is not None:
                usage = self.meter.take_usage(reported)
                final = fmt.is_final(chunk)
                if final and not fmt.wants_bill:
                    return False  # the usage event the gateway asked for on its own behalf
                if final:
                    await self._flush(client)  # what is queued goes out first: the bill counts all that was sent
                    stamped = fmt.stamp(chunk, usage, await self.meter.settle(self._finished()))
                    raw = fmt.encode(stamped)
                    self.bill_sent = True
                elif usage.clamped:
                    raw = fmt.encode(fmt.stamp(chunk, usage, None))
            if fmt.is_error(chunk):
                self.error_event = True
        self._queue(raw, chunk)
        return False

    def _queue(self, raw: bytes, chunk: Mapping[str, object] | None) -> None:
        self._unsent.append(raw)
        if chunk is not None:
            self._unsent_chunks.append(chunk)

    async def _flush(self, client: web.StreamResponse) -> None:
        """Write what is queued in one write; only then count it: a client that leaves mid-stream pays for what
        it was sent."""
        if not self._unsent:
            return
        data = b"".join(self._unsent)
        self._unsent.clear()
        chunks, self._unsent_chunks = self._unsent_chunks, []
        await client.write(data)
        for chunk in chunks:
            self.format.count(self.meter.counter, chunk)
        if chunks:
            self.last_chunk = chunks[-1]

    async def _send_bill(self, client: web.StreamResponse) -> None:
        """Queue the event the format adds to carry the bill, if the client asked for it and none went out yet.
        What is queued goes out first, so the request is settled as it stands, everything sent counted."""
        if not self.format.wants_bill or self.bill_sent:
            return
        await self._flush(client)
        bill: SettleOutcome = await self.meter.settle(self._finished())
        closing = self.format.closing_event(self.meter.answer_usage(), bill, self.last_chunk)
        self._queue(self.format.encode(closing), None)
        self.bill_sent = True

    async def _send_error(self, client: web.StreamResponse, error: GatewayError) -> None:
        self._queue(self.format.encode(self.api.error_body(error)), None)
        await self._flush(client)


def _json_object(data: bytes) -> dict[str, object] | None:
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None
