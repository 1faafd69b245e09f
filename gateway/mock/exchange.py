"""What every route of the mock upstream shares: the app's options and state, the checks and faults a request
meets before it is answered, and the SSE sender with its faults (delays, a stall, a cut)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from gateway.mock.options import MockOptions


@dataclass
class MockState:
    """What the mock saw: tests read it to check what the gateway sent upstream."""

    requests: list[dict[str, object]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    aborted_streams: int = 0
    finished_streams: int = 0
    prompt_cache: set[str] = field(default_factory=set)  # Messages prompt prefixes written to the "cache"


MOCK_OPTIONS = web.AppKey("mock_options", MockOptions)
MOCK_STATE = web.AppKey("mock_state", MockState)


def error_response(status: int, message: str, code: str) -> web.Response:
    """An OpenAI-shaped error."""
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return web.json_response(body, status=status)


async def accepted_body(
    request: web.Request, valid: Callable[[dict[str, object]], bool], required: str
) -> dict[str, object] | web.Response:
    """The JSON body of a request the mock answers, or the answer it gets instead: 401 for a wrong key, 400 for
    a body that is not JSON or lacks `required` (`valid` says), else, after the latency, the fault the options
    play (an error status, an error body, a redirect). Every request is recorded in the state."""
    options = request.app[MOCK_OPTIONS]
    state = request.app[MOCK_STATE]
    state.headers.append({str(name): value for name, value in request.headers.items()})
    if options.api_key and request.headers.get("Authorization") != f"Bearer {options.api_key}":
        return error_response(401, "Incorrect API key provided.", "invalid_api_key")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return error_response(400, "We could not parse the JSON body of your request.", "invalid_json")
    if not isinstance(body, dict) or not valid(body):
        return error_response(400, f"'{required}' is required.", "invalid_request")
    state.requests.append(body)
    if options.latency_ms:
        await asyncio.sleep(options.latency_ms / 1000)
    if options.fail_status:
        return error_response(options.fail_status, f"Mock failure {options.fail_status}.", "mock_failure")
    if options.error_status:
        return web.Response(status=options.error_status, body=options.error_body, content_type="application/json")
    if options.redirect_to:
        return web.Response(status=307, headers={"Location": options.redirect_to})
    return body


def wants_usage(body: dict[str, object]) -> bool:
    """The request asked for a usage chunk (`stream_options.include_usage`)."""
    stream_options = body.get("stream_options")
    return isinstance(stream_options, dict) and stream_options.get("include_usage") is True


async def send_stream(
    request: web.Request, chunks: list[bytes], request_id: str, *, end: bytes = b"data: [DONE]\n\n"
) -> web.StreamResponse:
    """Send `chunks` as an SSE stream ended by `end` ([DONE]; nothing for Anthropic's, whose last event ends it),
    with the faults the options play (delays, a stall, a cut)."""
    options = request.app[MOCK_OPTIONS]
    state = request.app[MOCK_STATE]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "x-request-id": request_id})
    await response.prepare(request)
    chunks = [*chunks, end] if end else chunks
    try:
        for sent, chunk in enumerate(chunks):
            if options.stall_after_chunks is not None and sent >= options.stall_after_chunks:
                await _until_closed(request)
            if options.cut_after_chunks is not None and sent >= options.cut_after_chunks:
                assert request.transport is not None
                request.transport.close()
                return response
            await response.write(chunk)
            if options.chunk_delay_ms:
                await asyncio.sleep(options.chunk_delay_ms / 1000)
        await response.write_eof()
        state.finished_streams += 1
    except (ConnectionError, asyncio.CancelledError):
        state.aborted_streams += 1
        raise
    return response


async def _until_closed(request: web.Request) -> None:
    """Stay silent until the peer hangs up (polling, so server shutdown is never held up for long)."""
    while request.transport is not None and not request.transport.is_closing():
        await asyncio.sleep(0.05)
    raise ConnectionResetError("peer closed a stalled stream")
