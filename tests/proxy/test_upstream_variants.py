"""Upstreams that speak OpenAI's protocol with their own accent: CRLF streams, comments, per-chunk usage,
Azure's filter-only chunks, no [DONE], gzip bodies. Each is a small raw aiohttp server on 127.0.0.1."""

from __future__ import annotations

import gzip
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.app_state import REDIS
from tests.common import ADMIN_TOKEN, FakeClock, last_request_record, make_settings, user_message

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _chunk(content: str | None, usage: dict[str, int] | None = None, choices: bool = True) -> dict[str, object]:
    chunk: dict[str, object] = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "x"}
    chunk["choices"] = [{"index": 0, "delta": {"content": content}, "finish_reason": None}] if choices else []
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def _streaming(events: list[bytes]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
        return response

    return handler


async def _gateway(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    redis_url: str,
    handler: Handler,
) -> tuple[TestClient, str, str]:
    upstream = web.Application()
    upstream.router.add_post("/v1/chat/completions", handler)
    server = await aiohttp_server(upstream)
    settings = make_settings(redis_url, {"main": str(server.make_url("/v1"))})
    client = await aiohttp_client(create_app(settings, clock=FakeClock()))
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    account = await (await client.post("/admin/accounts", json={"name": "a", "credits": 100}, headers=admin)).json()
    created = await client.post(f"/admin/accounts/{account['id']}/keys", json={"name": "k"}, headers=admin)
    return client, account["id"], (await created.json())["key"]


async def _chat(client: TestClient, key: str, stream: bool) -> ClientResponse:
    body = {"model": "m-main", "messages": user_message(), "stream": stream}
    return await client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})


async def test_crlf_comments_per_chunk_usage_and_no_done(aiohttp_server, aiohttp_client, redis_url) -> None:  # type: ignore[no-untyped-def]
    # vLLM with continuous_usage_stats: cumulative usage on every chunk; this one also uses CRLF, `data:` with no
    # space, keep-alive comments, and closes without [DONE].
    usage = [{"prompt_tokens": 9, "completion_tokens": n, "total_tokens": 9 + n} for n in (1, 2, 3)]
    events = [b": ping\r\n\r\n"]
    for index, word in enumerate(["one", " two", " three"]):
        events.append(b"data:" + orjson.dumps(_chunk(word, usage[index])) + b"\r\n\r\n")
    client, account, key = await _gateway(aiohttp_server, aiohttp_client, redis_url, _streaming(events))
    response = await _chat(client, key, stream=True)
    body = await response.read()
    assert response.status == 200 and b": ping" in body and body.count(b'"content"') == 3
    assert b"error" not in body  # usage arrived, so the stream counts as complete
    record = await last_request_record(client.app[REDIS], account)
    assert record["usage_source"] == "upstream" and record["completion_tokens"] == "3"
    assert record["gateway_completion_tokens"] == "3" and record["status"] == "200"


async def test_azure_filter_chunks_without_choices_are_relayed(aiohttp_server, aiohttp_client, redis_url) -> None:  # type: ignore[no-untyped-def]
    filters = {"choices": [], "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}
    final_usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    events = [
        b"data: " + orjson.dumps({"id": "", "object": "", "created": 0, "model": "", **filters}) + b"\n\n",
        b"data: " + orjson.dumps(_chunk("Hi")) + b"\n\n",
        b"data: " + orjson.dumps(_chunk(" there")) + b"\n\n",
        b"data: " + orjson.dumps(_chunk(None, final_usage, choices=False)) + b"\n\n",
        b"data: [DONE]\n\n",
    ]
    client, account, key = await _gateway(aiohttp_server, aiohttp_client, redis_url, _streaming(events))
    response = await _chat(client, key, stream=True)
    body = await response.read()
    assert b"prompt_filter_results" in body  # no usage in it: passed on
    assert b'"usage"' not in body  # the usage chunk the gateway asked for on its own is not
    record = await last_request_record(client.app[REDIS], account)
    assert record["usage_source"] == "upstream" and record["completion_tokens"] == "2"


async def test_gzip_json_bodies_are_decoded(aiohttp_server, aiohttp_client, redis_url) -> None:  # type: ignore[no-untyped-def]
    completion = {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "x",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"}, "finish_reason": "stop"}],
    }

    async def handler(request: web.Request) -> web.Response:
        body = gzip.compress(orjson.dumps(completion))
        return web.Response(body=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})

    client, account, key = await _gateway(aiohttp_server, aiohttp_client, redis_url, handler)
    response = await _chat(client, key, stream=False)
    payload = await response.json()
    assert payload["choices"][0]["message"]["content"] == "Hello there"
    assert payload["usage"]["completion_tokens"] == 2
    assert (await last_request_record(client.app[REDIS], account))["usage_source"] == "gateway"
