"""One metered request in flight: forward it upstream, relay the answer (plain or streamed), and see that its
meter settles it exactly once, before the answer's end goes out, so a client that has read it finds its bill in
(a plain body carries its cost; a stream is settled at the event that carries the bill or before its last bytes),
else in `run`'s `finally`, whatever the path (the client left, the upstream failed). What the request costs is
the meter's business (proxy/meter.py); what differs per API, the `Api`'s (proxy/apis/).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import aiohttp
import orjson
from aiohttp import web

from gateway.app_state import METRICS, SETTINGS, UPSTREAM_SESSION
from gateway.bill_headers import balance_headers, charge_headers
from gateway.billing.scripts import SettleOutcome
from gateway.config import UpstreamConfig
from gateway.errors import GatewayError, UpstreamAuthFailed, UpstreamError
from gateway.proxy.meter import CLIENT_CLOSED, Meter
from gateway.proxy.relay import StreamRelay
from gateway.proxy.upstream import ERROR_BODY_LIMIT, post_upstream, read_bounded, relayed_headers, scrubbed_error_body
from gateway.request_ids import REQUEST_ID_HEADER

log = logging.getLogger(__name__)

# A bill of nothing, to check that an answer with its bill in can be encoded before the request is settled.
NO_BILL = SettleOutcome(settled=False, balance_micros=0, charged_micros=0)


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


class Exchange:
    """Forwards one held request and relays its answer; its meter keeps the bill."""

    def __init__(self, request: web.Request, meter: Meter):
        self.request = request
        self.app = request.app
        self.meter = meter
        self.ticket = meter.ticket
        self.api = meter.ticket.api
        self.upstream_s = 0.0  # from sending the request upstream to the last byte of its answer

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
            bill = await self.meter.settle(ending.status)
            if self.meter.deferred:  # nothing charged yet: the balance as the hold left it
                ending.add_headers(balance_headers(bill.balance_micros))
            else:
                ending.add_headers(charge_headers(bill.charged_micros, bill.balance_micros))
            self._observe_times()

    async def _exchange(self) -> tuple[web.StreamResponse, int]:
        ticket = self.ticket
        upstream = self.app[SETTINGS].upstreams[ticket.model.upstream]
        forced = ticket.reservation.forced_max_tokens
        body = self.api.upstream_body(ticket.request, ticket.model, upstream, forced)
        self.meter.forwarded = True
        sent = time.monotonic()
        try:
            return await self._answer(upstream, body)
        finally:
            self.upstream_s = time.monotonic() - sent

    async def _answer(self, upstream: UpstreamConfig, body: bytes) -> tuple[web.StreamResponse, int]:
        stream = self.ticket.request.stream
        session = self.app[UPSTREAM_SESSION]
        response = await post_upstream(session, upstream, self.api.upstream_path, body, stream=stream)
        async with response:
            if 300 <= response.status < 400:
                # Never followed: a redirect would carry the body, and perhaps the provider key, elsewhere.
                raise UpstreamError(f"The upstream answered with a redirect (HTTP {response.status}).")
            if response.status >= 400:
                return await self._upstream_error(response, upstream)
            headers = {**relayed_headers(response), REQUEST_ID_HEADER: self.ticket.reservation.request_id}
            if stream and response.content_type == "text/event-stream":
                return await self._relay_stream(response, headers)
            return await self._forward_plain(response, headers), response.status

    async def _upstream_error(
        self, response: aiohttp.ClientResponse, upstream: UpstreamConfig
    ) -> tuple[web.Response, int]:
        """Upstream errors cost nothing. Their bodies pass through bounded and scrubbed of anything that looks
        like a credential; the upstream refusing the gateway's own credentials is the operator's business."""
        if response.status in (401, 403):
            log.error("upstream %r refused the gateway's credentials (HTTP %d)", upstream.name, response.status)
            raise UpstreamAuthFailed()
        try:
            body = scrubbed_error_body(await read_bounded(response, ERROR_BODY_LIMIT), upstream)
        except UpstreamError:
            body = None
        if body is None:
            error = UpstreamError(f"The upstream answered with HTTP {response.status}.")
            body = orjson.dumps(self.api.error_body(error))
        headers = {**relayed_headers(response), REQUEST_ID_HEADER: self.ticket.reservation.request_id}
        answer = web.Response(body=body, status=response.status, headers=headers, content_type="application/json")
        return answer, response.status

    async def _forward_plain(self, response: aiohttp.ClientResponse, headers: dict[str, str]) -> web.Response:
        body = await read_bounded(response, self.app[SETTINGS].limits.max_upstream_response_bytes)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("The upstream sent a response that is not valid JSON.") from exc
        if not isinstance(payload, dict):
            raise UpstreamError("The upstream sent a response that is not a JSON object.")
        meter = self.meter
        reported = self.api.read_answer(payload, meter.counter)
        if reported is not None:
            meter.take_usage(reported)
        answer_id = self.api.answer_id(payload)
        if answer_id is not None:
            await meter.answer_seen(answer_id)  # recorded before the answer goes out
        usage = meter.answer_usage()
        # Encoded once before settling, so an answer that cannot be re-encoded (nested past orjson's limit) is
        # refused unbilled; with the bill in, the same structure encodes again.
        try:
            orjson.dumps(self.api.stamp_answer(payload, usage, NO_BILL))
        except orjson.JSONEncodeError as exc:
            raise UpstreamError("The upstream sent a response the gateway cannot relay.") from exc
        meter.answered = True  # from here on the answer goes out
        bill = await meter.settle(response.status)
        # A background answer relayed unfinished has no usage yet, nor a bill: it goes out as the provider sent it.
        billed = payload if meter.deferred else self.api.stamp_answer(payload, usage, bill)
        return web.Response(
            body=orjson.dumps(billed), status=response.status, headers=headers, content_type="application/json"
        )

    async def _relay_stream(
        self, response: aiohttp.ClientResponse, headers: dict[str, str]
    ) -> tuple[web.StreamResponse, int]:
        relay = StreamRelay(
            self.request,
            self.api,
            self.meter,
            request_id=self.ticket.reservation.request_id,
            max_event_bytes=self.app[SETTINGS].limits.max_upstream_response_bytes,
        )
        # Headers go out first: the balance after the hold. The charge comes in the stream's bill, if asked for.
        headers = {**headers, **balance_headers(self.ticket.reservation.balance_micros)}
        self.meter.answered = True
        in_flight = self.app[METRICS].streams_in_flight
        in_flight.inc()
        try:
            return await relay.run(response, headers)
        finally:
            in_flight.dec()

    def _observe_times(self) -> None:
        if not self.meter.forwarded:
            return
        metrics = self.app[METRICS]
        metrics.observe_upstream(self.ticket.model.name, self.upstream_s)
        metrics.overhead_seconds.observe(max(time.monotonic() - self.ticket.started - self.upstream_s, 0.0))
