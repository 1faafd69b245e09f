"""One delivery attempt against real receivers on 127.0.0.1: what each outcome is classified as, the bounds on
time and response size, and that the receiver can verify what it got with the `standardwebhooks` package."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks.webhooks import Webhook

from gateway.webhooks import signing
from gateway.webhooks.delivery import AttemptResult, attempt, delivery_session
from tests.webhooks.stub_resolver import StubResolver

BODY = b'{"id":"evt_1","type":"credits.low","data":{"account_id":"acct_1"}}'
SECRET = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
HUGE = 10 * 1024 * 1024


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    server: TestServer
    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


def receiver_app(receiver: Receiver) -> web.Application:
    async def record(request: web.Request) -> None:
        receiver.seen.append(Seen(request.path, dict(request.headers), await request.read()))

    async def ok(request: web.Request) -> web.Response:
        await record(request)
        await asyncio.sleep(0.05)
        return web.Response(text="thanks", headers={"Retry-After": "60"})

    async def status(request: web.Request) -> web.Response:
        await record(request)
        headers = {"Retry-After": request.query["retry_after"]} if "retry_after" in request.query else {}
        return web.Response(status=int(request.match_info["code"]), text="answer body", headers=headers)

    async def redirect(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=302, headers={"Location": "/target"})

    async def slow(request: web.Request) -> web.Response:
        await record(request)
        await receiver.release.wait()
        return web.Response(text="too late")

    async def huge(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(body=b"x" * HUGE)

    async def hang_after(request: web.Request) -> web.StreamResponse:
        # Sends n bytes, then never finishes: only a bounded read can return before the timeout.
        await record(request)
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"y" * int(request.match_info["n"]))
        await receiver.release.wait()
        return response

    async def cut(request: web.Request) -> web.StreamResponse:
        await record(request)
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"partial")
        assert request.transport is not None
        request.transport.close()
        return response

    async def binary(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(body=b"\xff\xfe not utf-8 \xc3")

    async def cookie(request: web.Request) -> web.Response:
        await record(request)
        response = web.Response(text="cookie set")
        response.set_cookie("session", "tracked")
        return response

    app = web.Application()
    app.router.add_post("/ok", ok)
    app.router.add_post("/status/{code}", status)
    app.router.add_post("/redirect", redirect)
    app.router.add_post("/target", record)  # type: ignore[arg-type]  # must never be reached
    app.router.add_post("/slow", slow)
    app.router.add_post("/huge", huge)
    app.router.add_post("/hang-after/{n}", hang_after)
    app.router.add_post("/cut", cut)
    app.router.add_post("/binary", binary)
    app.router.add_post("/cookie", cookie)
    return app


@pytest.fixture
async def receiver(aiohttp_server: Callable[[web.Application], Awaitable[TestServer]]) -> AsyncIterator[Receiver]:
    made = Receiver(server=None)  # type: ignore[arg-type]
    made.server = await aiohttp_server(receiver_app(made))
    yield made
    made.release.set()  # lets held handlers finish so the server closes at once


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with delivery_session(allow_private=True, timeout_s=5) as made:
        yield made


async def send(session: aiohttp.ClientSession, url: str, **overrides: object) -> AttemptResult:
    options: dict[str, object] = {"secrets": [SECRET], "msg_id": "evt_1", "body": BODY, "now_s": int(time.time())}
    options.update(overrides)
    return await attempt(session, url, **options)  # type: ignore[arg-type]


async def test_a_200_is_delivered_with_its_answer_and_latency(
    session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    result = await send(session, receiver.url("/ok"))
    assert (result.ok, result.retryable, result.status, result.error) == (True, False, 200, None)
    assert result.response_excerpt == "thanks"
    assert result.retry_after_s is None  # only a failure's Retry-After matters
    assert 50 <= result.latency_ms < 5000  # the receiver waits 50 ms
    assert [seen.body for seen in receiver.seen] == [BODY]


async def test_the_receiver_verifies_the_standard_webhooks_headers(
    session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    now = int(time.time())
    await send(session, receiver.url("/ok"), msg_id="evt_2Kw", now_s=now)
    [seen] = receiver.seen
    assert (seen.headers["webhook-id"], seen.headers["webhook-timestamp"]) == ("evt_2Kw", str(now))
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["User-Agent"] == "llm-metering-gateway-webhooks/0.1"
    assert seen.headers["Accept-Encoding"] == "identity"
    assert Webhook(SECRET).verify(seen.body, seen.headers) == {
        "id": "evt_1",
        "type": "credits.low",
        "data": {"account_id": "acct_1"},
    }


async def test_during_a_rotation_the_receiver_verifies_with_the_old_secret(
    session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    new = signing.new_secret()
    await send(session, receiver.url("/ok"), secrets=[new, SECRET])
    [seen] = receiver.seen
    assert len(seen.headers["webhook-signature"].split(" ")) == 2
    Webhook(SECRET).verify(seen.body, seen.headers, json_parse=False)
    Webhook(new).verify(seen.body, seen.headers, json_parse=False)


async def test_a_500_is_a_retryable_failure_keeping_the_answer(
    session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    result = await send(session, receiver.url("/status/500"))
    assert (result.ok, result.retryable, result.status, result.error) == (False, True, 500, "HTTP 500")
    assert result.response_excerpt == "answer body"


async def test_a_429_with_retry_after_is_retryable_and_reports_the_delay(
    session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    result = await send(session, receiver.url("/status/429?retry_after=120"))
    assert (result.ok, result.retryable, result.status, result.error) == (False, True, 429, "HTTP 429")
    assert result.retry_after_s == 120.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0", 0.0),
        ("1.5", 1.5),
        (" 30 ", 30.0),
        ("86400", 86400.0),
        ("9999999", 86400.0),  # bounded to a day
        ("Wed, 21 Oct 2037 07:28:00 GMT", None),  # the date form is not honoured
        ("-5", None),
        ("soon", None),
        ("1e9", None),
        ("nan", None),
    ],
)
async def test_retry_after_is_read_in_seconds_and_bounded(
    session: aiohttp.ClientSession, receiver: Receiver, header: str, seconds: float | None
) -> None:
    result = await send(session, receiver.url(f"/status/503?retry_after={header}"))
    assert (result.status, result.retryable, result.retry_after_s) == (503, True, seconds)


@pytest.mark.parametrize("code", [400, 401, 403, 404, 408, 409, 413, 422, 425, 502, 504])
async def test_any_other_non_2xx_is_retryable(session: aiohttp.ClientSession, receiver: Receiver, code: int) -> None:
    result = await send(session, receiver.url(f"/status/{code}"))
    assert (result.ok, result.retryable, result.status, result.error) == (False, True, code, f"HTTP {code}")


async def test_a_410_gone_is_a_final_failure(session: aiohttp.ClientSession, receiver: Receiver) -> None:
    result = await send(session, receiver.url("/status/410"))
    assert (result.ok, result.retryable, result.status) == (False, False, 410)
    assert result.error is not None and result.error.startswith("HTTP 410")


@pytest.mark.parametrize("code", [201, 202, 204, 299])
async def test_every_2xx_is_delivered(session: aiohttp.ClientSession, receiver: Receiver, code: int) -> None:
    result = await send(session, receiver.url(f"/status/{code}"))
    assert (result.ok, result.retryable, result.status, result.error) == (True, False, code, None)


async def test_a_302_is_not_followed_and_is_a_retryable_failure(
    session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    result = await send(session, receiver.url("/redirect"))
    assert (result.ok, result.retryable, result.status) == (False, True, 302)
    assert result.error == "HTTP 302 (redirects are not followed)"
    assert [seen.path for seen in receiver.seen] == ["/redirect"]  # /target never received anything


async def test_a_slow_receiver_times_out_as_a_retryable_failure(
    receiver: Receiver,
) -> None:
    async with delivery_session(allow_private=True, timeout_s=0.3) as session:
        result = await send(session, receiver.url("/slow"))
    assert (result.ok, result.retryable, result.status) == (False, True, None)
    assert result.error == "timeout after 0.3 s"
    assert 300 <= result.latency_ms < 2000
    assert [seen.path for seen in receiver.seen] == ["/slow"]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_closed_port_is_a_retryable_connection_refused(session: aiohttp.ClientSession) -> None:
    result = await send(session, f"http://127.0.0.1:{closed_port()}/hook?token=s3cr3t")
    assert (result.ok, result.retryable, result.status, result.error) == (False, True, None, "connection refused")


async def raw_server(answer: bytes | None) -> asyncio.Server:
    """A TCP server on 127.0.0.1 that reads a request's head, writes `answer` (if any) and hangs up."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
        if answer is not None:
            writer.write(answer)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


@pytest.mark.parametrize(
    ("answer", "error"),
    [(None, "server disconnected without answering"), (b"NOT HTTP AT ALL\r\n\r\n", "invalid HTTP response")],
)
async def test_a_receiver_that_hangs_up_or_answers_garbage_is_a_retryable_failure(
    session: aiohttp.ClientSession, answer: bytes | None, error: str
) -> None:
    server = await raw_server(answer)
    async with server:
        port = server.sockets[0].getsockname()[1]
        result = await send(session, f"http://127.0.0.1:{port}/hook")
    assert (result.ok, result.retryable, result.status, result.error) == (False, True, None, error)


async def test_https_to_a_plain_http_receiver_is_a_retryable_tls_failure(
    session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    result = await send(session, f"https://127.0.0.1:{receiver.server.port}/ok")
    assert (result.ok, result.retryable, result.status, result.error) == (False, True, None, "TLS handshake failed")
    assert receiver.seen == []


async def test_a_huge_answer_is_cut_at_the_bound_and_still_delivered(
    session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    result = await send(session, receiver.url("/huge"), max_response_bytes=64 * 1024)
    assert (result.ok, result.status, result.error) == (True, 200, None)
    assert result.response_excerpt == "x" * 500


async def test_only_the_bound_is_read_from_an_answer_that_never_ends(receiver: Receiver) -> None:
    # 4 KiB arrive and the answer never finishes: reading up to 1 KiB returns at once, reading it all would
    # run into the 3 s timeout.
    async with delivery_session(allow_private=True, timeout_s=3) as session:
        result = await send(session, receiver.url("/hang-after/4096"), max_response_bytes=1024)
    assert (result.ok, result.status, result.error) == (True, 200, None)
    assert result.response_excerpt == "y" * 500
    assert result.latency_ms < 2000


async def test_a_2xx_whose_body_is_cut_short_is_still_delivered(
    session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    result = await send(session, receiver.url("/cut"))
    assert (result.ok, result.status, result.error) == (True, 200, None)
    assert result.response_excerpt == "partial"


async def test_an_answer_that_is_not_utf8_is_decoded_leniently(
    session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    result = await send(session, receiver.url("/binary"))
    assert result.ok
    assert result.response_excerpt == "\ufffd\ufffd not utf-8 \ufffd"


async def test_cookies_a_receiver_sets_are_not_sent_back(session: aiohttp.ClientSession, receiver: Receiver) -> None:
    # By name: aiohttp's default jar would ignore cookies from an IP address anyway.
    url = f"http://localhost:{receiver.server.port}/cookie"
    await send(session, url)
    await send(session, url)
    assert [seen.headers.get("Cookie") for seen in receiver.seen] == [None, None]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_private_target_is_a_retryable_refusal_when_not_allowed(receiver: Receiver, host: str) -> None:
    async with delivery_session(allow_private=False, timeout_s=5) as session:
        result = await send(session, f"http://{host}:{receiver.server.port}/ok")
    assert (result.ok, result.retryable, result.status) == (False, True, None)
    assert result.error is not None
    assert result.error.startswith("target refused: webhooks may not be sent to ")
    assert result.error.endswith("(loopback)")
    assert receiver.seen == []


async def test_a_name_that_does_not_resolve_is_a_retryable_failure() -> None:
    async with delivery_session(allow_private=True, timeout_s=5, resolver=StubResolver(None)) as session:
        result = await send(session, "https://hooks.example.invalid/hook")
    assert (result.ok, result.retryable, result.status, result.error) == (False, True, None, "DNS lookup failed")


async def test_a_url_that_is_not_http_is_a_refusal_without_a_request(session: aiohttp.ClientSession) -> None:
    result = await send(session, "ftp://127.0.0.1/hook")
    assert (result.ok, result.retryable, result.status) == (False, True, None)
    assert result.error == "target refused: the webhook URL must use http or https"
