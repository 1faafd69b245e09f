"""`gateway mock-upstream`: a small OpenAI-compatible server to try the gateway without a provider key.

It answers /v1/chat/completions plainly or as SSE, with or without usage, with configurable latency and
length, and can misbehave on purpose (fail, stall, cut the stream) so tests and benchmarks have a real
server to talk to; it also speaks the Responses API (gateway/mock/responses.py). Replies are made of
common English words that are one token each, so a reply of N words is N tokens; usage is counted with the
real tokenizer over the whole reply.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from gateway.mock import counting
from gateway.mock.options import MockOptions
from gateway.mock.reply import Reply, dumps
from gateway.mock.responses import add_responses_routes


@dataclass
class MockState:
    """What the mock saw: tests read it to check what the gateway sent upstream."""

    requests: list[dict[str, object]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    aborted_streams: int = 0
    finished_streams: int = 0


MOCK_OPTIONS = web.AppKey("mock_options", MockOptions)
MOCK_STATE = web.AppKey("mock_state", MockState)


def create_mock_app(options: MockOptions | None = None) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[MOCK_OPTIONS] = options or MockOptions()
    app[MOCK_STATE] = MockState()
    app.on_startup.append(_warm_tokenizers)
    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/chat/completions", chat_completions)
        app.router.add_get(f"{prefix}/models", list_models)
    add_responses_routes(app, app[MOCK_OPTIONS])
    return app


async def _warm_tokenizers(app: web.Application) -> None:
    """Load both vocabularies before the first request, so no reply pays for it."""
    await asyncio.to_thread(lambda: [counting.encoding(name) for name in ("o200k_base", "cl100k_base")])


def _error(status: int, message: str, code: str) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return web.json_response(body, status=status)


async def list_models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "mock-model", "object": "model", "owned_by": "mock"}]})


async def chat_completions(request: web.Request) -> web.StreamResponse:
    options = request.app[MOCK_OPTIONS]
    state = request.app[MOCK_STATE]
    state.headers.append({str(name): value for name, value in request.headers.items()})
    if options.api_key and request.headers.get("Authorization") != f"Bearer {options.api_key}":
        return _error(401, "Incorrect API key provided.", "invalid_api_key")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _error(400, "We could not parse the JSON body of your request.", "invalid_json")
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return _error(400, "'messages' is required.", "invalid_request")
    state.requests.append(body)
    if options.latency_ms:
        await asyncio.sleep(options.latency_ms / 1000)
    if options.fail_status:
        return _error(options.fail_status, f"Mock failure {options.fail_status}.", "mock_failure")
    if options.error_status:
        return web.Response(status=options.error_status, body=options.error_body, content_type="application/json")
    if options.redirect_to:
        return web.Response(status=307, headers={"Location": options.redirect_to})
    reply = Reply.for_request(body, options)
    if body.get("stream"):
        return await _stream(request, reply, body, options)
    return web.json_response(reply.completion(options.usage), dumps=lambda obj: dumps(obj).decode())


async def _stream(
    request: web.Request, reply: Reply, body: dict[str, object], options: MockOptions
) -> web.StreamResponse:
    state = request.app[MOCK_STATE]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "x-request-id": reply.id})
    await response.prepare(request)
    stream_options = body.get("stream_options")
    wants_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    if options.usage and wants_usage and options.usage_on_last_chunk:
        chunks = reply.chunks(usage_on_last=reply.usage())
    else:
        chunks = reply.chunks()
        if options.usage and wants_usage:
            chunks.append(reply.chunk([], reply.usage()))
    chunks.append(b"data: [DONE]\n\n")
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


def run_mock_upstream(host: str, port: int, options: MockOptions) -> None:
    web.run_app(create_mock_app(options), host=host, port=port, print=lambda text: print(text, flush=True))
