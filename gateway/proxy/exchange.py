"""One chat completion in flight: forward it upstream, relay the answer, count it, settle it exactly once.

How a request ended decides what it costs, worked out once, in `billed_usage`, when it has ended:
- the upstream answered (a plain body, or a stream the client was sent): its usage, bounded, else the
  gateway's own count of what was sent;
- the client left: the gateway's count of what it was sent, and the prompt if the upstream had it;
- anything else (the upstream failed or refused, the gateway refused): nothing.
It is settled exactly once (`_settle_once`), before the answer's end goes out, so a client that has read it
finds its bill in (a plain body carries its cost; a stream is settled at its usage chunk or before its last
bytes), else in `run`'s `finally`, whatever the path (the client left, the upstream failed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import aiohttp
import orjson
from aiohttp import web

from gateway.admin.auth import credits_header
from gateway.app_state import METRICS, OUTBOX_WAKEUP, SETTINGS, SETTLER, TOKEN_COUNTER, UPSTREAM_SESSION
from gateway.config import ModelConfig, UpstreamConfig
from gateway.errors import GatewayError, UpstreamAuthFailed, UpstreamError, UpstreamTimeout
from gateway.insights.fingerprints import Fingerprint
from gateway.insights.signals import Billed, resent_tokens, settlement_fields
from gateway.proxy.chat_request import ChatRequest
from gateway.proxy.metering import (
    Charged,
    Reservation,
    Usage,
    bill,
    bounded_usage,
    charged_headers,
    usage_from_upstream,
)
from gateway.proxy.relay import CLIENT_CLOSED, StreamRelay, usage_object, with_charge
from gateway.proxy.upstream import post_upstream, relayed_headers, scrubbed_error_body

log = logging.getLogger(__name__)

ERROR_BODY_LIMIT = 64 * 1024  # an upstream error body beyond this is not relayed


@dataclass
class Ending:
    """How a request ended: the status it is recorded with, and where its balance header can still go."""

    status: int = CLIENT_CLOSED  # what stands if the handler is cancelled: the client went away
    response: web.StreamResponse | None = None
    error: GatewayError | None = None

    def add_headers(self, headers: dict[str, str]) -> None:
        if self.error is not None:
            self.error.headers.update(headers)
        elif self.response is not None and not self.response.prepared:
            self.response.headers.update(headers)


class ChatExchange:
    """What one request knows as it goes; `run` forwards, relays and settles it."""

    def __init__(
        self,
        request: web.Request,
        chat: ChatRequest,
        model: ModelConfig,
        reservation: Reservation,
        prompt_tokens: int,
        started: float,
        fingerprint: Fingerprint,
    ):
        self.request = request
        self.fingerprint = fingerprint
        self.app = request.app
        self.chat = chat
        self.model = model
        self.reservation = reservation
        self.prompt_tokens = prompt_tokens
        self.started = started
        self.counter = self.app[TOKEN_COUNTER].completion_counter(chat.model)
        self.upstream_usage: Usage | None = None  # bounded
        self.forwarded = False  # the request went upstream, so the upstream has (at least) read its prompt
        self.answered = False  # the upstream's answer reached the client, whole or in part
        self.upstream_s = 0.0  # from sending the request upstream to the last byte of its answer
        self._settlement: asyncio.Future[Charged] | None = None  # started by the first `_settle_once`

    async def run(self) -> web.StreamResponse:
        """Forward and relay; settle exactly once, and put the charge and balance on the answer's headers if
        they can still go."""
        ending = Ending()
        try:
            ending.response, ending.status = await self._exchange()
            return ending.response
        except GatewayError as error:
            ending.status, ending.error = error.status, error
            raise
        except Exception:
            ending.status = 500
            raise
        finally:
            ending.add_headers(charged_headers(await self._settle_once(ending.status)))
            self._observe_times()

    async def _exchange(self) -> tuple[web.StreamResponse, int]:
        upstream = self.app[SETTINGS].upstreams[self.model.upstream]
        body = self.upstream_body(upstream)
        self.forwarded = True
        sent = time.monotonic()
        try:
            return await self._answer(upstream, body)
        finally:
            self.upstream_s = time.monotonic() - sent

    async def _answer(self, upstream: UpstreamConfig, body: bytes) -> tuple[web.StreamResponse, int]:
        response = await post_upstream(
            self.app[UPSTREAM_SESSION], upstream, "/chat/completions", body, stream=self.chat.stream
        )
        async with response:
            if 300 <= response.status < 400:
                # Never followed: a redirect would carry the body, and perhaps the provider key, elsewhere.
                raise UpstreamError(f"The upstream answered with a redirect (HTTP {response.status}).")
            if response.status >= 400:
                return await self._upstream_error(response, upstream)
            headers = {**relayed_headers(response), "x-request-id": self.reservation.request_id}
            if self.chat.stream and response.content_type == "text/event-stream":
                return await self._relay_stream(response, headers)
            return await self._forward_plain(response, headers), response.status

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

    async def _read(self, response: aiohttp.ClientResponse, limit: int) -> bytes:
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

    async def _upstream_error(
        self, response: aiohttp.ClientResponse, upstream: UpstreamConfig
    ) -> tuple[web.Response, int]:
        """Upstream errors cost nothing. Their bodies pass through bounded and scrubbed of anything that looks
        like a credential; the upstream refusing the gateway's own credentials is the operator's business."""
        if response.status in (401, 403):
            log.error("upstream %r refused the gateway's credentials (HTTP %d)", upstream.name, response.status)
            raise UpstreamAuthFailed()
        try:
            body = scrubbed_error_body(await self._read(response, ERROR_BODY_LIMIT), upstream)
        except UpstreamError:
            body = None
        if body is None:
            body = orjson.dumps(UpstreamError(f"The upstream answered with HTTP {response.status}.").body())
        headers = {**relayed_headers(response), "x-request-id": self.reservation.request_id}
        answer = web.Response(body=body, status=response.status, headers=headers, content_type="application/json")
        return answer, response.status

    async def _forward_plain(self, response: aiohttp.ClientResponse, headers: dict[str, str]) -> web.Response:
        body = await self._read(response, self.app[SETTINGS].max_upstream_response_bytes)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("The upstream sent a response that is not valid JSON.") from exc
        if not isinstance(payload, dict):
            raise UpstreamError("The upstream sent a response that is not a JSON object.")
        self.counter.add_response(payload)
        reported = usage_from_upstream(payload.get("usage"))
        if reported is not None:
            self._take_upstream_usage(reported)
        usage = self.answer_usage()
        if usage.source != "upstream" or usage.clamped:
            # Clients rely on `usage`: it shows what is billed.
            payload["usage"] = usage_object(usage)
        # Encoded once before settling, so an answer that cannot be re-encoded (nested past orjson's limit) is
        # refused unbilled; with the charge in, the same structure encodes again.
        payload["usage"] = with_charge(payload["usage"], Charged(0, 0))
        try:
            orjson.dumps(payload)
        except orjson.JSONEncodeError as exc:
            raise UpstreamError("The upstream sent a response the gateway cannot relay.") from exc
        self.answered = True  # from here on the answer goes out
        payload["usage"] = with_charge(payload["usage"], await self._settle_once(response.status))
        return web.Response(
            body=orjson.dumps(payload), status=response.status, headers=headers, content_type="application/json"
        )

    async def _relay_stream(
        self, response: aiohttp.ClientResponse, headers: dict[str, str]
    ) -> tuple[web.StreamResponse, int]:
        relay = StreamRelay(
            self.request,
            self.chat,
            self.counter,
            self._take_upstream_usage,
            self._settle_once,
            prompt_tokens=self.prompt_tokens,
            request_id=self.reservation.request_id,
            max_event_bytes=self.app[SETTINGS].max_upstream_response_bytes,
        )
        # Headers go out first: the balance after the hold. The charge comes in the usage chunk, if asked for.
        headers = {**headers, **credits_header(self.reservation.balance_micros)}
        self.answered = True
        in_flight = self.app[METRICS].streams_in_flight
        in_flight.inc()
        try:
            return await relay.run(response, headers)
        finally:
            in_flight.dec()

    def _observe_times(self) -> None:
        if not self.forwarded:
            return
        metrics = self.app[METRICS]
        metrics.observe_upstream(self.model.name, self.upstream_s)
        metrics.overhead_seconds.observe(max(time.monotonic() - self.started - self.upstream_s, 0.0))

    def _take_upstream_usage(self, reported: Usage) -> Usage:
        """The upstream's usage, bounded, is what the answer is billed from now on (a stream may send several)."""
        settings = self.app[SETTINGS]
        self.upstream_usage = bounded_usage(reported, self.prompt_tokens, self.reservation.completion_limit, settings)
        return self.upstream_usage

    def billed_usage(self, status: int) -> Usage:
        """What the request costs, given how it ended (see the module's docstring)."""
        if status == CLIENT_CLOSED:
            return self.estimate() if self.forwarded else Usage(0, 0)
        return self.answer_usage() if self.answered else Usage(0, 0)

    def answer_usage(self) -> Usage:
        """What an answer is billed: the upstream's usage, bounded, else the gateway's own count of it."""
        return self.upstream_usage if self.upstream_usage is not None else self.estimate()

    def estimate(self) -> Usage:
        return Usage(self.prompt_tokens, self.counter.count_completion_tokens())

    def _insight_fields(self, usage: Usage, status: int) -> dict[str, str | int]:
        """The request's fingerprint and the signals it shows, for its record and the usage insights."""
        chat, counter = self.chat, self.app[TOKEN_COUNTER]
        billed = Billed(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, status)
        return settlement_fields(
            self.fingerprint,
            billed,
            self.model,
            self.app[SETTINGS],
            history=lambda: resent_tokens(counter, chat.model, chat.body, self.prompt_tokens),
        )

    async def _settle_once(self, status: int) -> Charged:
        """Settle on the first call, as the request ended with `status`; later calls (even while the first
        is still under way, its caller cancelled by a departing client) wait for that same charge."""
        if self._settlement is None:
            self._settlement = asyncio.ensure_future(self._settle(status))
        return await asyncio.shield(self._settlement)

    async def _settle(self, status: int) -> Charged:
        usage, estimate = self.billed_usage(status), self.estimate()
        metrics = self.app[METRICS]
        if usage.clamped:
            metrics.observe_clamped(self.model.name, usage.clamped)
        elif usage.source == "upstream":
            # Reasoning tokens are never in the visible text the gateway counts; leave them out of the drift.
            visible = usage.completion_tokens - usage.reasoning_tokens
            metrics.observe_drift(
                self.model.name,
                prompt=usage.prompt_tokens - estimate.prompt_tokens,
                completion=visible - estimate.completion_tokens,
            )
        charged = await bill(
            self.app[SETTLER],
            self.reservation,
            self.model,
            usage,
            estimate,
            status=status,
            latency_ms=int((time.monotonic() - self.started) * 1000),
            stream=self.chat.stream,
            insight=self._insight_fields(usage, status),
        )
        if charged.alerts:
            self.app[OUTBOX_WAKEUP].set()  # a threshold was crossed: deliver its webhook now
        return charged
