"""`gateway mock-upstream`: a small OpenAI-compatible server to try the gateway without a provider key.

It answers /v1/chat/completions plainly or as SSE, with or without usage, with configurable latency and
length, and can misbehave on purpose (fail, stall, cut the stream) so tests and benchmarks have a real
server to talk to. Replies are made of common English words that are one token each, so a reply of N
words is N tokens; usage is counted with the real tokenizer over the whole reply.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from gateway.tokens import TokenCounter

# Each is one token, with its leading space, in both o200k_base and cl100k_base.
WORDS = tuple(
    " " + word
    for word in (
        " the of and to in is that for it as with was on be at by this had not are but from or have an they which"
        " one you were her all she there would their we him been has when who will more no if out so said what up"
        " its about into than them can only other new some could time these two may then do first any my now such"
        " like our over man me even most made after also did many before must through back years where much your"
        " way well down should because each just those people how too little state good very make world still own"
        " see men work long get here between both life being under never day same another know while last"
    ).split()
)


@dataclass
class MockOptions:
    completion_tokens: int = 16  # reply length in tokens, bounded by the request's max_tokens
    latency_ms: int = 0  # before the response starts
    chunk_delay_ms: int = 0  # between streamed chunks
    usage: bool = True  # report usage (plain responses; streams when include_usage is asked for)
    fail_status: int | None = None  # answer every chat request with this error status
    stall_after_chunks: int | None = None  # stream: go silent after this many chunks
    cut_after_chunks: int | None = None  # stream: drop the connection after this many chunks
    text: str | None = None  # a fixed reply instead of generated words, streamed `chunk_chars` at a time
    chunk_chars: int = 3
    api_key: str | None = None  # when set, requests must carry `Authorization: Bearer <api_key>`


@dataclass
class MockState:
    """What the mock saw: tests read it to check what the gateway sent upstream."""

    requests: list[dict[str, object]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    aborted_streams: int = 0
    finished_streams: int = 0


options_key = web.AppKey("mock_options", MockOptions)
state_key = web.AppKey("mock_state", MockState)
counter_key = web.AppKey("mock_counter", TokenCounter)


def create_mock_app(options: MockOptions | None = None) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[options_key] = options or MockOptions()
    app[state_key] = MockState()
    app[counter_key] = TokenCounter()
    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/chat/completions", chat_completions)
        app.router.add_get(f"{prefix}/models", list_models)
    return app


def _error(status: int, message: str, code: str) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return web.json_response(body, status=status)


async def list_models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "mock-model", "object": "model", "owned_by": "mock"}]})


async def chat_completions(request: web.Request) -> web.StreamResponse:
    options = request.app[options_key]
    state = request.app[state_key]
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
    reply = Reply.for_request(body, options, request.app[counter_key])
    if body.get("stream"):
        return await _stream(request, reply, body, options)
    return web.json_response(reply.completion(options.usage), dumps=lambda obj: orjson.dumps(obj).decode())


@dataclass
class Reply:
    model: str
    pieces: list[list[str]]  # per choice, the text in the pieces a stream sends
    prompt_tokens: int
    completion_tokens: int
    id: str = field(default_factory=lambda: f"chatcmpl-mock{uuid.uuid4().hex[:20]}")
    created: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def for_request(cls, body: dict[str, object], options: MockOptions, counter: TokenCounter) -> Reply:
        model = str(body.get("model", "mock-model"))
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or options.completion_tokens
        length = min(options.completion_tokens, limit if isinstance(limit, int) else options.completion_tokens)
        n = body.get("n") if isinstance(body.get("n"), int) else 1
        assert isinstance(n, int)
        if options.text is not None:
            size = max(options.chunk_chars, 1)
            choice = [options.text[i : i + size] for i in range(0, len(options.text), size)]
        else:
            choice = [WORDS[i % len(WORDS)] for i in range(length)]
            if choice:
                choice[0] = choice[0].lstrip()
        pieces = [list(choice) for _ in range(n)]
        encoding = counter.encoding_for(model)
        completion = sum(len(encoding.encode("".join(p), disallowed_special=())) for p in pieces)
        return cls(model, pieces, counter.count_prompt_tokens(model, body), completion)

    def usage(self) -> dict[str, int]:
        total = self.prompt_tokens + self.completion_tokens
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens, "total_tokens": total}

    def completion(self, with_usage: bool = True) -> dict[str, object]:
        choices = [
            {
                "index": index,
                "message": {"role": "assistant", "content": "".join(pieces), "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
            for index, pieces in enumerate(self.pieces)
        ]
        payload: dict[str, object] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if with_usage:
            payload["usage"] = self.usage()
        return payload

    def chunk(self, index: int, delta: dict[str, object], finish: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        payload = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }
        return b"data: " + orjson.dumps(payload) + b"\n\n"

    def chunks(self) -> list[bytes]:
        out = [self.chunk(i, {"role": "assistant", "content": ""}) for i in range(len(self.pieces))]
        for position in range(max(len(p) for p in self.pieces)):
            out += [self.chunk(i, {"content": p[position]}) for i, p in enumerate(self.pieces) if position < len(p)]
        out += [self.chunk(i, {}, "stop") for i in range(len(self.pieces))]
        return out


async def _stream(
    request: web.Request, reply: Reply, body: dict[str, object], options: MockOptions
) -> web.StreamResponse:
    state = request.app[state_key]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "x-request-id": reply.id})
    await response.prepare(request)
    stream_options = body.get("stream_options")
    wants_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    chunks = reply.chunks()
    if options.usage and wants_usage:
        usage_chunk = {
            "id": reply.id,
            "object": "chat.completion.chunk",
            "created": reply.created,
            "model": reply.model,
            "choices": [],
            "usage": reply.usage(),
        }
        chunks.append(b"data: " + orjson.dumps(usage_chunk) + b"\n\n")
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
