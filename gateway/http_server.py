"""The HTTP server around the app: aiohttp's runner on listening sockets, with a connection protocol of our own.

aiohttp answers a request its HTTP parser refuses (a header line over 8190 bytes, a malformed request line, a
bad header name, chunked garbage) before the app or any middleware sees it, in plain text that quotes the
offending bytes, which may hold a key; it has no setting for that answer (aio-libs/aiohttp#3287).
`GatewayProtocol` is aiohttp's `RequestHandler` with `handle_error`, its public method for exactly that
answer, overridden; `serve_app` serves the app with it, since `web.run_app` hard-wires aiohttp's own.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from gateway.access_log import access_log_options
from gateway.errors import HeadersTooLarge, InvalidRequest, MalformedRequest, error_response
from gateway.request_ids import REQUEST_ID_HEADER, new_request_id

log = logging.getLogger(__name__)

BACKLOG = 128  # per listening socket, as aiohttp's own sites
KEEPALIVE_TIMEOUT_S = 75.0  # an idle keep-alive connection is closed after this, as under web.run_app
TOO_MANY_HEADERS = "Too many headers received"  # the message of both of aiohttp's parsers (C and Python)


class GatewayProtocol(web.RequestHandler):
    """aiohttp's connection protocol, answering what its parser refuses as the gateway answers every error.

    The answer is OpenAI's error shape with an `x-request-id`: 431 `request_header_fields_too_large` for an
    over-long request line or header line, or too many headers (the request line counts as part of the head, as
    Envoy counts `:path` in its header limit); 400 `malformed_request` for anything else the parser refuses.
    Neither the answer nor the log line holds a byte of the request. The connection is closed after it.
    """

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):  # a handler's error that escaped the middleware: aiohttp's 500
            return super().handle_error(request, status, exc, message)
        error = self._refusal(exc)
        request_id = new_request_id()
        log.info(
            "refused a request from %s that is not valid HTTP: %d %s (%s), x-request-id %s",
            request.remote,
            error.status,
            error.code,
            type(exc).__name__,
            request_id,
        )
        response = error_response(error)
        response.headers[REQUEST_ID_HEADER] = request_id
        response.force_close()
        return response

    def _refusal(self, exc: HttpProcessingError) -> InvalidRequest:
        if isinstance(exc, LineTooLong) or exc.message == TOO_MANY_HEADERS:
            return HeadersTooLarge(
                f"Request header fields too large: the request line may be at most {self.max_line_size} bytes,"
                f" each header {self.max_field_size} bytes, and a request may have at most {self.max_headers} headers."
            )
        return MalformedRequest()


def protocol_factory(server: web.Server, **options: object) -> Callable[[], GatewayProtocol]:
    """Connections of `server` (an AppRunner's) for `loop.create_server`, with web.run_app's keep-alive."""
    loop = asyncio.get_running_loop()
    settings = {"keepalive_timeout": KEEPALIVE_TIMEOUT_S, "auto_decompress": False, **options}

    def connection() -> GatewayProtocol:
        return GatewayProtocol(server, loop=loop, **settings)  # type: ignore[arg-type]

    return connection


async def serve_app(app: web.Application, sockets: list[socket.socket], *, access_log: bool) -> None:
    """Serve `app` on the listening `sockets` until SIGTERM or SIGINT, then stop as `web.run_app` does:
    stop accepting, let requests in flight finish (60 s at most), run the app's shutdown and cleanup."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app)
    await runner.setup()
    server = runner.server
    assert server is not None  # set by setup()
    # The access log (off unless configured) never writes headers, so keys never reach the log. Bodies are never
    # inflated: a compressed one is refused with 415 before it is read, so a gzip bomb costs nothing.
    connection = protocol_factory(server, **access_log_options(access_log))
    listening: list[asyncio.AbstractServer] = []
    try:
        for sock in sockets:
            listening.append(await loop.create_server(connection, sock=sock, backlog=BACKLOG))
        await stop.wait()
    finally:
        for listener in listening:
            listener.close()
        await runner.cleanup()
