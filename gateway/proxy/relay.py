"""A streamed answer relayed to the client event by event as it arrives, counted as it is written.

Events that arrive in one upstream read go out in one write, and are counted once written. The request is
settled before the stream's end goes out. When the client asked for usage, that is just before its final usage
chunk, which carries the bill (`cost`, `credits_remaining`): the upstream's usage chunk (the one with no
choices), or, when the upstream sent none or put its usage on a content chunk, one the gateway adds before
`[DONE]`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import aiohttp
import orjson
from aiohttp import web

from gateway.billing.pricing import credits_number
from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout
from gateway.proxy.chat_request import ChatRequest
from gateway.proxy.metering import Charged, Usage, usage_from_upstream
from gateway.proxy.sse import DONE, Event, EventSplitter, EventTooLarge, encode_event
from gateway.tokens import CompletionCounter

log = logging.getLogger(__name__)

CLIENT_CLOSED = 499  # nginx's code for "the client went away"; recorded, never sent


class StreamRelay:
    """Relays one upstream SSE stream. Afterwards `upstream_usage` holds the upstream's usage (bounded), if
    it sent one, and the counter holds what the client was sent."""

    def __init__(
        self,
        request: web.Request,
        chat: ChatRequest,
        counter: CompletionCounter,
        take_usage: Callable[[Usage], Usage],
        settle: Callable[[int], Awaitable[Charged]],
        *,
        prompt_tokens: int,
        request_id: str,
        max_event_bytes: int,
    ):
        self.request = request
        self.chat = chat
        self.counter = counter
        self.prompt_tokens = prompt_tokens  # the gateway's own count
        self.take_usage = take_usage  # the upstream's usage, bounded (metering.bounded_usage), now billed
        self.settle = settle  # settles the request once, with the status given; the charge
        self.bill_sent = False  # the final usage chunk, with the bill, went out
        self.request_id = request_id
        self.max_event_bytes = max_event_bytes
        self.upstream_usage: Usage | None = None
        self.error_event = False  # the upstream reported an error in the stream
        self.last_chunk: dict[str, object] = {}
        self._unsent: list[bytes] = []  # queued for the client's next write
        self._unsent_chunks: list[dict[str, object]] = []  # their parsed chunks, counted once written

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
            await self.settle(status)  # before the end goes out: a client that has read it finds its bill in
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
        # No [DONE]: an upstream that sent its usage has finished (vLLM-style streams end without [DONE]).
        if self.upstream_usage is None:
            return 502
        await self._send_bill(client)
        await self._flush(client)
        return self._finished()

    def _finished(self) -> int:
        return 502 if self.error_event else 200

    async def _relay_events(self, events: list[Event], client: web.StreamResponse) -> bool:
        """Queue each event, then write them out together; True once [DONE] was among them."""
        try:
            for event in events:
                if await self._relay_event(event, client):
                    return True
            return False
        finally:
            await self._flush(client)

    async def _relay_event(self, event: Event, client: web.StreamResponse) -> bool:
        """Queue one event for the client; True once it was [DONE]."""
        if event.data == DONE:
            await self._send_bill(client)
            self._queue(event.raw + b"\n\n", None)
            return True
        chunk = _json_object(event.data) if event.data is not None else None
        raw = event.raw + b"\n\n"
        if chunk is not None:
            reported = usage_from_upstream(chunk.get("usage"))
            if reported is not None:
                self.upstream_usage = self.take_usage(reported)
                final = not chunk.get("choices")  # the usage chunk; usage on content chunks is running totals
                if final and not self.chat.client_wants_usage:
                    return False  # the usage chunk the gateway asked for on its own behalf
                shown = chunk["usage"]  # a mapping: usage_from_upstream read it
                if self.upstream_usage.clamped or not isinstance(shown, Mapping):
                    shown = usage_object(self.upstream_usage)  # what is billed, not what was claimed
                if final:
                    raw = encode_event(orjson.dumps({**chunk, "usage": await self._billed(shown, client)}))
                    self.bill_sent = True
                elif self.upstream_usage.clamped:
                    raw = encode_event(orjson.dumps({**chunk, "usage": shown}))
            if isinstance(chunk.get("error"), dict):
                self.error_event = True
        self._queue(raw, chunk)
        return False

    def _queue(self, raw: bytes, chunk: dict[str, object] | None) -> None:
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
            self.counter.add_chunk(chunk)
        if chunks:
            self.last_chunk = chunks[-1]

    async def _send_bill(self, client: web.StreamResponse) -> None:
        """Queue the final usage chunk, with the bill, if the client asked for usage and none went out yet."""
        if not self.chat.client_wants_usage or self.bill_sent:
            return
        billed = await self._billed(None, client)
        self._queue(encode_event(orjson.dumps(self._usage_chunk(billed))), None)
        self.bill_sent = True

    async def _billed(self, usage: Mapping[str, object] | None, client: web.StreamResponse) -> dict[str, object]:
        """`usage` with the bill (None: the upstream's usage if it sent any, else the gateway's count). What is
        queued goes out first, so the request is settled as it stands, everything sent counted."""
        await self._flush(client)
        if usage is None:
            usage = usage_object(self.upstream_usage if self.upstream_usage is not None else self.estimate())
        return with_charge(dict(usage), await self.settle(self._finished()))

    def estimate(self) -> Usage:
        """The gateway's own count: the prompt, and what the client was sent."""
        return Usage(self.prompt_tokens, self.counter.count_completion_tokens())

    def _usage_chunk(self, usage: dict[str, object]) -> dict[str, object]:
        """A usage chunk the gateway adds: the upstream sent none (its own count), or not on its own."""
        last = self.last_chunk
        return {
            "id": last.get("id", self.request_id),
            "object": "chat.completion.chunk",
            "created": last.get("created", int(time.time())),
            "model": last.get("model", self.chat.model),
            "choices": [],
            "usage": usage,
        }

    async def _send_error(self, client: web.StreamResponse, error: GatewayError) -> None:
        self._queue(encode_event(orjson.dumps(error.body())), None)
        await self._flush(client)


def with_charge(usage: dict[str, object], charged: Charged) -> dict[str, object]:
    """A `usage` object with the request's bill: `cost` (credits charged) and `credits_remaining`, both exact
    decimal numbers of credits. Extra fields, which OpenAI's clients keep and pass on."""
    return {
        **usage,
        "cost": credits_number(charged.micros),
        "credits_remaining": credits_number(charged.balance_micros),
    }


def usage_object(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def _json_object(data: bytes) -> dict[str, object] | None:
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None
