"""`gateway mock-upstream`: a small OpenAI-compatible server to try the gateway without a provider key.

It answers /v1/chat/completions, the legacy /v1/completions and Anthropic's /v1/messages plainly or as SSE, and
/v1/embeddings (`embeddings`, `completions`, `messages`), with or without usage, with configurable latency and
length, and can misbehave on purpose (fail, stall, cut the stream: `exchange`) so tests and benchmarks have a real
server to talk to; it also speaks the Responses API (`responses`) and keeps conversations (`conversations`).
Replies are made of common English words that are one token each, so a reply of N words is N tokens; usage is
counted with the real tokenizer over the whole reply.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.mock import counting, messages
from gateway.mock.completions import completions
from gateway.mock.conversations import add_conversations_routes
from gateway.mock.embeddings import embeddings
from gateway.mock.exchange import MOCK_OPTIONS, MOCK_STATE, MockState, accepted_body, send_stream, wants_usage
from gateway.mock.options import MockOptions
from gateway.mock.reply import Reply, dumps
from gateway.mock.responses import add_responses_routes

# The app's keys and state live in `exchange`, beside the routes that use them; they are imported from here too.
__all__ = ["MOCK_OPTIONS", "MOCK_STATE", "MockState", "create_mock_app", "run_mock_upstream"]


def create_mock_app(options: MockOptions | None = None) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[MOCK_OPTIONS] = options or MockOptions()
    app[MOCK_STATE] = MockState()
    app.on_startup.append(_warm_tokenizers)
    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/chat/completions", chat_completions)
        app.router.add_post(f"{prefix}/embeddings", embeddings)
        app.router.add_post(f"{prefix}/completions", completions)
        app.router.add_get(f"{prefix}/models", list_models)
        app.router.add_post(f"{prefix}/messages", messages.messages)
    add_responses_routes(app, app[MOCK_OPTIONS])
    add_conversations_routes(app, app[MOCK_OPTIONS])
    return app


async def _warm_tokenizers(app: web.Application) -> None:
    """Load both vocabularies before the first request, so no reply pays for it."""
    await asyncio.to_thread(lambda: [counting.encoding(name) for name in ("o200k_base", "cl100k_base")])


async def list_models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "mock-model", "object": "model", "owned_by": "mock"}]})


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await accepted_body(request, lambda body: isinstance(body.get("messages"), list), "messages")
    if isinstance(body, web.Response):
        return body
    options = request.app[MOCK_OPTIONS]
    reply = Reply.for_request(body, options)
    if body.get("stream"):
        return await _stream(request, reply, body, options)
    return web.json_response(reply.completion(options.usage), dumps=lambda obj: dumps(obj).decode())


async def _stream(
    request: web.Request, reply: Reply, body: dict[str, object], options: MockOptions
) -> web.StreamResponse:
    if options.usage and wants_usage(body) and options.usage_on_last_chunk:
        chunks = reply.chunks(usage_on_last=reply.usage())
    else:
        chunks = reply.chunks()
        if options.usage and wants_usage(body):
            chunks.append(reply.chunk([], reply.usage()))
    return await send_stream(request, chunks, reply.id)


def run_mock_upstream(host: str, port: int, options: MockOptions) -> None:
    web.run_app(create_mock_app(options), host=host, port=port, print=lambda text: print(text, flush=True))
