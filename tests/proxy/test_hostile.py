"""Hostile clients and upstreams: nothing heavy before the key is known, nothing inflated, nothing followed,
nothing of a credential passed on, nothing priced differently slipped through."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import io
import logging
import socket
import statistics
import time

import orjson
import pytest

from gateway.billing import keyspace
from gateway.mock.server import MOCK_OPTIONS
from tests.common import ADMIN_TOKEN, Gateway, StartGateway, user_message

INITIAL_MICROS = 1000 * 10**6


async def _timed_health(gateway: Gateway) -> float:
    started = time.perf_counter()
    response = await gateway.client.get("/healthz")
    assert response.status == 200
    return time.perf_counter() - started


async def _ledger_untouched(gateway: Gateway, account: str) -> None:
    """Refused by the gateway: no hold taken, nothing recorded."""
    assert await gateway.balance_micros(account) == INITIAL_MICROS
    assert await gateway.redis.hlen(keyspace.holds(account)) == 0
    assert await gateway.redis.xlen(keyspace.request_log(account)) == 0


async def _charged_nothing(gateway: Gateway, account: str) -> None:
    """The upstream failed: the hold came back whole; the request is recorded, free."""
    assert await gateway.balance_micros(account) == INITIAL_MICROS
    assert await gateway.redis.hlen(keyspace.holds(account)) == 0
    assert (await gateway.last_record(account))["credits_micros"] == "0"


async def test_a_4mb_prompt_with_a_wrong_key_is_refused_before_it_is_read(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    account, key = await gateway.new_account()
    body = orjson.dumps({"model": "m-main", "messages": user_message("a" * 4_000_000)})
    wrong = key[:-4] + "xxxx"
    started = time.perf_counter()
    big = asyncio.ensure_future(
        gateway.client.post("/v1/chat/completions", data=io.BytesIO(body), headers={"Authorization": f"Bearer {wrong}"})
    )
    health = [await _timed_health(gateway) for _ in range(3)]
    response = await big
    assert response.status == 401 and (await response.json())["error"]["code"] == "invalid_api_key"
    assert time.perf_counter() - started < 1.0  # counting it would take about 2 s
    assert statistics.median(health) < 0.02 and max(health) < 0.5, health
    await _ledger_untouched(gateway, account)


async def test_counting_a_4mb_prompt_does_not_hold_up_other_requests(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    account, key = await gateway.new_account(credits=1)
    # "a" * 4M is tiktoken's slowest case: about 2 s of counting, on a thread.
    body = orjson.dumps({"model": "m-main", "messages": user_message("a" * 4_000_000)})
    big = asyncio.ensure_future(
        gateway.client.post("/v1/chat/completions", data=io.BytesIO(body), headers={"Authorization": f"Bearer {key}"})
    )
    await asyncio.sleep(0.2)
    health = []
    while not big.done():
        health.append(await _timed_health(gateway))
        await asyncio.sleep(0.05)
    response = await big
    assert response.status == 402  # hundreds of thousands of prompt tokens: far more than 1 credit pays for
    # Counted on the loop, this prompt would hold every other request for about 2 s. Timing bounds are loose
    # because a 2-core CI machine has neighbours; the typical probe takes about a millisecond.
    assert len(health) >= 3 and statistics.median(health) < 0.02 and max(health) < 0.5, health
    assert await gateway.balance_micros(account) == 10**6


async def test_a_compressed_body_is_refused_not_inflated(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    account, key = await gateway.new_account()
    bomb = gzip.compress(b'{"model": "m-main", "messages": [' + b" " * 50_000_000 + b"]}", compresslevel=9)
    assert len(bomb) < 100_000
    response = await gateway.client.post(
        "/v1/chat/completions",
        data=bomb,
        headers={"Authorization": f"Bearer {key}", "Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.status == 415 and (await response.json())["error"]["code"] == "unsupported_content_encoding"
    await _ledger_untouched(gateway, account)


async def test_a_stalled_body_gets_408(start_gateway: StartGateway) -> None:
    gateway = await start_gateway({"server": {"body_timeout": 0.5}})
    account, key = await gateway.new_account()
    answer = await _stalled(gateway, "/v1/chat/completions", key, b'{"model": "m-main"')
    assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer
    await _ledger_untouched(gateway, account)


@pytest.mark.parametrize("path", ["/admin/accounts", "/v1/webhooks"])
async def test_a_stalled_admin_or_webhook_body_gets_408_too(start_gateway: StartGateway, path: str) -> None:
    gateway = await start_gateway({"server": {"body_timeout": 0.5}})
    account, key = await gateway.new_account()
    answer = await _stalled(gateway, path, ADMIN_TOKEN if path.startswith("/admin") else key, b'{"name": "x"')
    assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer
    status, accounts = await gateway.admin("GET", "/admin/accounts")
    assert [a["id"] for a in accounts["data"]] == [account]  # type: ignore[index]


async def _stalled(gateway: Gateway, path: str, token: str, partial_body: bytes) -> bytes:
    """The answer to a POST whose body stops after `partial_body` of the 1,000 bytes it announced."""
    server = gateway.client.server
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )

    def stall() -> bytes:
        with socket.create_connection((server.host, server.port)) as sock:
            sock.sendall(head.encode() + partial_body)
            sock.settimeout(10)  # the gateway answers after its 0.5 s body timeout
            return sock.recv(65536)

    return await asyncio.to_thread(stall)


async def test_an_upstream_redirect_is_a_502_and_never_followed(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={}, elsewhere={})
    target = gateway.upstreams["elsewhere"].base_url + "/chat/completions"
    gateway.upstreams["main"].server.app[MOCK_OPTIONS].redirect_to = target
    account, key = await gateway.new_account()
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message()})
    assert response.status == 502 and (await response.json())["error"]["code"] == "upstream_error"
    assert gateway.upstreams["elsewhere"].state.requests == []
    assert gateway.upstreams["elsewhere"].state.headers == []  # neither the body nor the provider key went there
    await _charged_nothing(gateway, account)


async def test_upstream_error_bodies_are_scrubbed_of_credentials(start_gateway: StartGateway) -> None:
    echoed = {
        "error": {
            "message": "Incorrect API key provided: provider-key-main. Also sk-proj-Abc123def456ghi789 and "
            "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc and azure 0123456789abcdef0123456789abcdef.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
            "internal": {"key": "provider-key-main"},
        }
    }
    gateway = await start_gateway(main={"error_status": 400, "error_body": orjson.dumps(echoed)})
    account, key = await gateway.new_account()
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message()})
    assert response.status == 400
    text = await response.text()
    for secret in ("provider-key-main", "Abc123def456", "eyJhbGciOiJIUzI1NiJ9", "0123456789abcdef0123"):
        assert secret not in text
    error = orjson.loads(text)["error"]
    assert set(error) == {"message", "type", "param", "code"} and "[redacted]" in error["message"]
    assert error["message"].startswith("Incorrect API key provided: [redacted].")
    await _charged_nothing(gateway, account)


async def test_an_oversized_upstream_error_body_is_not_relayed(start_gateway: StartGateway) -> None:
    huge = orjson.dumps({"error": {"message": "x" * 100_000, "type": "server_error", "param": None, "code": None}})
    gateway = await start_gateway(main={"error_status": 500, "error_body": huge})
    account, key = await gateway.new_account()
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message()})
    assert response.status == 500 and len(await response.read()) < 1000
    assert (await response.json())["error"]["message"] == "The upstream answered with HTTP 500."


@pytest.mark.parametrize("status", [401, 403])
async def test_upstream_auth_failures_are_the_operators_not_the_tenants(
    start_gateway: StartGateway, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"error": {"message": "Incorrect API key provided: provider-key-main", "type": "x", "code": "y"}}
    gateway = await start_gateway(main={"error_status": status, "error_body": orjson.dumps(body)})
    account, key = await gateway.new_account()
    with caplog.at_level(logging.INFO):
        response = await gateway.chat(key, {"model": "m-main", "messages": user_message()})
    error = (await response.json())["error"]
    assert response.status == 502 and error["code"] == "upstream_authentication_failed"
    assert "provider-key-main" not in error["message"]
    assert f"refused the gateway's credentials (HTTP {status})" in caplog.text
    assert "provider-key-main" not in caplog.text
    await _charged_nothing(gateway, account)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("service_tier", "priority"),
        ("service_tier", "auto"),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("modalities", ["text", "audio"]),
        ("web_search_options", {}),
        ("store", True),
    ],
)
async def test_fields_that_change_the_price_are_refused_unless_priced(
    start_gateway: StartGateway, field: str, value: object
) -> None:
    gateway = await start_gateway()
    account, key = await gateway.new_account()
    body = {"model": "m-main", "messages": user_message(), field: value}
    response = await gateway.chat(key, body)
    error = (await response.json())["error"]
    assert response.status == 400 and error["param"] == field and "allowed_fields" in error["message"]
    await _ledger_untouched(gateway, account)

    priced = dataclasses.replace(gateway.settings.models["m-main"], allowed_fields=frozenset({field}))
    gateway.settings.models["m-main"] = priced  # type: ignore[index]
    assert (await gateway.chat(key, body)).status == 200
    assert gateway.upstreams["main"].state.requests[-1][field] == value


@pytest.mark.parametrize(
    ("field", "value"), [("service_tier", "default"), ("modalities", ["text"]), ("store", False), ("audio", None)]
)
async def test_fields_at_the_plain_price_pass(start_gateway: StartGateway, field: str, value: object) -> None:
    gateway = await start_gateway()
    _, key = await gateway.new_account()
    assert (await gateway.chat(key, {"model": "m-main", "messages": user_message(), field: value})).status == 200


async def test_an_over_long_header_is_refused_and_never_logged(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await start_gateway()
    server = gateway.client.server
    secret = "sk-gw-0123456789abcdef-" + "S3CR3T" * 2000

    def send() -> bytes:
        with socket.create_connection((server.host, server.port)) as sock:
            sock.sendall(f"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n\r\n".encode())
            sock.settimeout(5)
            return sock.recv(65536)

    with caplog.at_level(logging.DEBUG):
        answer = await asyncio.to_thread(send)
    assert answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400"))
    assert "S3CR3TS3CR3T" not in caplog.text and "0123456789abcdef" not in caplog.text
    assert "refused a malformed request" in caplog.text


@pytest.mark.parametrize(
    ("method", "path", "token"),
    [
        ("GET", "/admin/accounts", b"\xff\xfe"),
        ("GET", "/v1/usage", b"\xff\xfe"),
        ("GET", "/v1/models", b"sk-gw-0123456789abcdef-x\xff"),
        ("POST", "/v1/chat/completions", b"sk-gw-0123456789abcdef-x\xff"),
        ("GET", "/metrics", b"\xff"),
    ],
)
async def test_undecodable_authorization_bytes_are_a_401(
    start_gateway: StartGateway, method: str, path: str, token: bytes
) -> None:
    gateway = await start_gateway({"metrics": {"token": "scrape-me"}})
    server = gateway.client.server

    def send() -> bytes:
        with socket.create_connection((server.host, server.port)) as sock:
            head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n".encode()
            sock.sendall(head + b"Authorization: Bearer " + token + b"\r\n\r\n{}")
            sock.settimeout(5)
            return sock.recv(65536)

    answer = await asyncio.to_thread(send)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
