"""One chat completion in flight: forward it upstream, relay the answer, count it, bill it exactly once."""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import orjson
from aiohttp import web

from gateway.admin.auth import credits_header
from gateway.app_state import LEDGER, METRICS, SETTINGS, TOKEN_COUNTER, UPSTREAM_SESSION
from gateway.config import ModelConfig, UpstreamConfig
from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout
from gateway.proxy.chat_request import ChatRequest
from gateway.proxy.metering import Reservation, Usage, bill, usage_from_upstream
from gateway.proxy.sse import DONE, Event, EventSplitter, EventTooLarge, encode_event
from gateway.proxy.upstream import post_upstream, relayed_headers

log = logging.getLogger(__name__)

CLIENT_CLOSED = 499  # nginx's code for "the client went away"; recorded, never sent


class ChatExchange:
    """Holds what one request knows as it goes; `bill_if_unbilled` guarantees the hold is released."""

    def __init__(
        self,
        request: web.Request,
        chat: ChatRequest,
        model: ModelConfig,
        reservation: Reservation,
        prompt_tokens: int,
        started: float,
    ):
        self.request = request
        self.app = request.app
        self.chat = chat
        self.model = model
        self.reservation = reservation
        self.prompt_tokens = prompt_tokens
        self.started = started
        self.counter = self.app[TOKEN_COUNTER].completion_counter(chat.model)
        self.upstream_usage: Usage | None = None
        self.status = 502
        self.billed = False
        self.forwarded = False  # the request went upstream, so the upstream has (at least) read its prompt
        self.last_chunk: dict[str, object] = {}

    def upstream_body(self, upstream: UpstreamConfig) -> bytes:
        body = dict(self.chat.body)
        body["model"] = self.model.upstream_model
        if self.reservation.forced_max_tokens is not None:
            for name in ("max_tokens", "max_completion_tokens"):
                if name in body and body[name] is None:
                    del body[name]  # explicit nulls; some upstreams refuse a null next to the other field
            body[self.model.max_tokens_field] = self.reservation.forced_max_tokens
        if self.chat.stream and upstream.stream_usage:
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        return orjson.dumps(body)

    def base_headers(self) -> dict[str, str]:
        return {"x-request-id": self.reservation.request_id}

    async def run(self) -> web.StreamResponse:
        settings = self.app[SETTINGS]
        upstream = settings.upstreams[self.model.upstream]
        session = self.app[UPSTREAM_SESSION]
        body = self.upstream_body(upstream)
        self.forwarded = True
        response = await post_upstream(session, upstream, "/chat/completions", body, stream=self.chat.stream)
        async with response:
            if response.status >= 400:
                return await self._upstream_error(response)
            if self.chat.stream and response.content_type == "text/event-stream":
                return await self._relay_stream(response)
            return await self._forward_plain(response)

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self.app[SETTINGS].max_upstream_response_bytes
        parts: list[bytes] = []
        size = 0
        try:
            # StreamReader.read(n) returns what has arrived so far, so read until EOF, bounded.
            async for part in response.content.iter_any():
                size += len(part)
                if size > limit:
                    raise UpstreamError("The upstream response is larger than the gateway accepts.")
                parts.append(part)
        except TimeoutError as exc:
            raise UpstreamTimeout("The upstream timed out while sending its response.") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError("The upstream connection failed while sending its response.") from exc
        return b"".join(parts)

    async def _upstream_error(self, response: aiohttp.ClientResponse) -> web.Response:
        """Upstream errors pass through with their status and cost nothing."""
        self.status = response.status
        body = await self._read(response)
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        if not (isinstance(parsed, dict) and isinstance(parsed.get("error"), dict)):
            message = f"The upstream answered with HTTP {response.status}."
            body = orjson.dumps(UpstreamError(message).body())
        balance = await self._bill(Usage(0, 0))
        headers = {**relayed_headers(response), **self.base_headers(), **credits_header(balance)}
        return web.Response(body=body, status=response.status, headers=headers, content_type="application/json")

    async def _forward_plain(self, response: aiohttp.ClientResponse) -> web.Response:
        body = await self._read(response)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("The upstream sent a response that is not valid JSON.") from exc
        if not isinstance(payload, dict):
            raise UpstreamError("The upstream sent a response that is not a JSON object.")
        self.counter.add_response(payload)
        self.upstream_usage = usage_from_upstream(payload.get("usage"))
        self.status = response.status
        usage = self.billed_usage()
        balance = await self._bill(usage)
        if usage.source != "upstream":
            # Clients rely on `usage`; fill it in when the upstream left it out (this is the only re-encode).
            payload["usage"] = usage_object(usage)
            body = orjson.dumps(payload)
        headers = {**relayed_headers(response), **self.base_headers(), **credits_header(balance)}
        return web.Response(body=body, status=response.status, headers=headers, content_type="application/json")

    async def _relay_stream(self, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
        client = web.StreamResponse(
            status=200,
            headers={
                **relayed_headers(upstream),
                **self.base_headers(),
                # For streams the balance is known only up to the hold; settlement comes after the last byte.
                **credits_header(self.reservation.balance_micros),
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )
        self.status = 200
        try:
            await client.prepare(self.request)
            finished = await self._pump(upstream, client)
            if not finished:
                self.status = 502
                await self._send_error(client, UpstreamError("The upstream stream ended early."))
            await client.write_eof()
        except (ConnectionError, asyncio.CancelledError) as exc:
            # The client went away (a failed write, or aiohttp cancelling the handler): stop reading; closing
            # the upstream response cancels the upstream request.
            self.status = CLIENT_CLOSED
            upstream.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            await self._bill(self.billed_usage())
        return client

    async def _pump(self, upstream: aiohttp.ClientResponse, client: web.StreamResponse) -> bool:
        """Relay events as they complete. True when the upstream sent [DONE] or at least its usage."""
        splitter = EventSplitter(self.app[SETTINGS].max_upstream_response_bytes)
        try:
            async for chunk in upstream.content.iter_any():
                for event in splitter.feed(chunk):
                    if await self._relay_event(event, client):
                        return True
            for event in splitter.rest():
                if await self._relay_event(event, client):
                    return True
        except TimeoutError:
            self.status = 504
            await self._send_error(client, UpstreamTimeout("The upstream timed out in the middle of the stream."))
            return True
        except ConnectionResetError:
            raise  # the client's side (aiohttp's reset error is also a ClientError)
        except (aiohttp.ClientError, EventTooLarge):
            log.info("upstream stream cut for %s", self.reservation.request_id)
        return self.upstream_usage is not None

    async def _relay_event(self, event: Event, client: web.StreamResponse) -> bool:
        """Forward one event; True once it was [DONE]."""
        if event.data == DONE:
            if self.chat.client_wants_usage and self.upstream_usage is None:
                await client.write(encode_event(orjson.dumps(self._usage_chunk())))
            await client.write(event.raw + b"\n\n")
            return True
        chunk = _json_object(event.data) if event.data is not None else None
        if chunk is not None:
            usage = usage_from_upstream(chunk.get("usage"))
            if usage is not None:
                self.upstream_usage = usage
                if not self.chat.client_wants_usage and not chunk.get("choices"):
                    return False  # the usage chunk the gateway asked for on its own behalf
            if isinstance(chunk.get("error"), dict):
                self.status = 502
        await client.write(event.raw + b"\n\n")
        if chunk is not None:
            # Counted only once written: a client that leaves mid-stream pays for what it was sent.
            self.counter.add_chunk(chunk)
            self.last_chunk = chunk
        return False

    def _usage_chunk(self) -> dict[str, object]:
        last = self.last_chunk
        return {
            "id": last.get("id", self.reservation.request_id),
            "object": "chat.completion.chunk",
            "created": last.get("created", int(time.time())),
            "model": last.get("model", self.chat.model),
            "choices": [],
            "usage": usage_object(self.billed_usage()),
        }

    async def _send_error(self, client: web.StreamResponse, error: GatewayError) -> None:
        await client.write(encode_event(orjson.dumps(error.body())))

    def billed_usage(self) -> Usage:
        """The upstream's usage when it reported one, else the gateway's own count."""
        if self.upstream_usage is not None and self.status != CLIENT_CLOSED:
            return self.upstream_usage
        return self.estimate()

    def estimate(self) -> Usage:
        return Usage(self.prompt_tokens, self.counter.count_completion_tokens())

    async def _bill(self, usage: Usage) -> int:
        self.billed = True
        estimate = self.estimate()
        if usage.source == "upstream":
            # Reasoning tokens are never in the visible text the gateway counts; leave them out of the drift.
            visible = usage.completion_tokens - usage.reasoning_tokens
            self.app[METRICS].observe_drift(
                self.model.name,
                prompt=usage.prompt_tokens - estimate.prompt_tokens,
                completion=visible - estimate.completion_tokens,
            )
        outcome = await bill(
            self.app[LEDGER],
            self.reservation,
            self.model,
            usage,
            estimate,
            status=self.status,
            latency_ms=int((time.monotonic() - self.started) * 1000),
            stream=self.chat.stream,
        )
        return outcome.balance_micros

    async def bill_if_unbilled(self, status: int) -> int | None:
        """Bill a request that ended before it was billed; None if it had been billed already.

        Failures are free. A client that hung up after its request went upstream pays for the prompt the
        upstream processed (and any output it was sent), so hanging up late is never a way to get work free.
        """
        if self.billed:
            return None
        self.status = status
        usage = self.estimate() if status == CLIENT_CLOSED and self.forwarded else Usage(0, 0)
        return await self._bill(usage)


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
