"""Every bad input and upstream failure: its status, OpenAI's error shape, and a ledger left whole."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import ClientResponse

from gateway.app import create_app
from gateway.config import UpstreamConfig
from gateway.redis_server import EmbeddedRedis, free_port
from tests.common import ADMIN_TOKEN, Gateway, StartGateway, make_settings, user_message


async def _error(response: ClientResponse, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status == status, await response.text()
    payload = await response.json()
    assert set(payload) == {"error"}
    error = payload["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and "code" in error
    assert "Traceback" not in error["message"]
    if code is not None:
        assert error["code"] == code
    return error


async def _ledger_is_whole(gateway: Gateway, account: str, balance: int) -> None:
    assert await gateway.balance_micros(account) == balance
    status, view = await gateway.admin("GET", f"/admin/accounts/{account}")
    assert view["reserved_credits"] == 0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "m-main"}', "messages"),
        (b'{"model": "m-main", "messages": []}', "messages"),
        (b'{"model": "m-main", "messages": ["hi"]}', "messages[0]"),
        (b'{"model": "m-main", "messages": [{"role": "wizard", "content": "x"}]}', "messages[0].role"),
        (b'{"model": "m-main", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "stream"),
        (b'{"model": "m-main", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', "max_tokens"),
        (b'{"model": "m-main", "messages": [{"role": "user", "content": "x"}], "max_tokens": true}', "max_tokens"),
        (b'{"model": "m-main", "messages": [{"role": "user", "content": "x"}], "n": 0}', "n"),
    ],
)
async def test_bad_requests_get_400(start_gateway: StartGateway, body: bytes, param: str | None) -> None:
    gateway = await start_gateway()
    account, key = await gateway.new_account()
    response = await gateway.client.post("/v1/chat/completions", data=body, headers={"Authorization": f"Bearer {key}"})
    error = await _error(response, 400, "invalid_request")
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert response.headers["x-credits-remaining"] == "1000"
    assert gateway.upstreams["main"].state.requests == []
    await _ledger_is_whole(gateway, account, 1000 * 10**6)


@pytest.mark.parametrize(
    "authorization", [None, "Bearer", "Basic abc", "Bearer sk-not-ours", "Bearer sk-gw-0123456789abcdef-secret"]
)
async def test_missing_or_unknown_keys_get_401(start_gateway: StartGateway, authorization: str | None) -> None:
    gateway = await start_gateway()
    headers = {"Authorization": authorization} if authorization else {}
    response = await gateway.client.post(
        "/v1/chat/completions", json={"model": "m-main", "messages": user_message()}, headers=headers
    )
    await _error(response, 401)
    assert "x-credits-remaining" not in response.headers
    # A bad key is refused before anything else is looked at, bad body or not.
    response = await gateway.client.post("/v1/chat/completions", data=b"{", headers=headers)
    await _error(response, 401)
    response = await gateway.client.get("/v1/models", headers=headers)
    await _error(response, 401)


async def test_a_revoked_key_stops_working_at_once(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    account, key = await gateway.new_account()
    assert (await gateway.chat(key, {"model": "m-main", "messages": user_message()})).status == 200
    _, keys = await gateway.admin("GET", f"/admin/accounts/{account}/keys")
    key_id = keys["data"][0]["id"]
    status, revoked = await gateway.admin("DELETE", f"/admin/keys/{key_id}")
    assert status == 200 and revoked["revoked_at"] is not None
    await _error(await gateway.chat(key, {"model": "m-main", "messages": user_message()}), 401, "invalid_api_key")


async def test_insufficient_credits_get_402_and_hold_nothing(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    account, key = await gateway.new_account(credits="0.001")  # 1,000 micros: not even the prompt
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message()})
    error = await _error(response, 402, "insufficient_quota")
    assert error["type"] == "insufficient_quota"
    assert response.headers["x-credits-remaining"] == "0.001"
    # With an explicit max_tokens the hold is all or nothing, even when a smaller one would fit.
    account2, key2 = await gateway.new_account(credits="0.1")
    response = await gateway.chat(key2, {"model": "m-main", "messages": user_message(), "max_tokens": 100_000})
    await _error(response, 402, "insufficient_quota")
    assert gateway.upstreams["main"].state.requests == []
    await _ledger_is_whole(gateway, account, 1_000)
    await _ledger_is_whole(gateway, account2, 100_000)


async def test_unknown_model_gets_404(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    account, key = await gateway.new_account()
    response = await gateway.chat(key, {"model": "gpt-nope", "messages": user_message()})
    error = await _error(response, 404, "model_not_found")
    assert error["param"] == "model"
    await _error(await gateway.client.get("/v1/models/gpt-nope", headers={"Authorization": f"Bearer {key}"}), 404)
    await _ledger_is_whole(gateway, account, 1000 * 10**6)


async def test_oversized_body_gets_413(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(settings_overrides={"server": {"max_body_bytes": 2048}})
    account, key = await gateway.new_account()
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message("x" * 5000)})
    await _error(response, 413, "request_too_large")

    async def chunked():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b" " * 1024

    response = await gateway.client.post(
        "/v1/chat/completions", data=chunked(), headers={"Authorization": f"Bearer {key}"}
    )
    await _error(response, 413, "request_too_large")
    await _ledger_is_whole(gateway, account, 1000 * 10**6)
    metrics = await (await gateway.client.get("/metrics")).text()
    assert 'gateway_requests_refused_total{status="413"} 2.0' in metrics  # the chunked one counted too


async def test_unreachable_upstream_gets_502_and_costs_nothing(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    dead = UpstreamConfig(name="main", base_url=f"http://127.0.0.1:{free_port()}/v1")
    gateway.settings.upstreams["main"] = dead  # type: ignore[index]
    account, key = await gateway.new_account()
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message()})
    await _error(response, 502, "upstream_error")
    assert response.headers["x-credits-remaining"] == "1000"
    await _ledger_is_whole(gateway, account, 1000 * 10**6)


async def test_upstream_timeout_gets_504_and_costs_nothing(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(settings_overrides={"timeouts": {"read": 0.3}}, main={"latency_ms": 2000})
    account, key = await gateway.new_account()
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message()})
    await _error(response, 504, "upstream_timeout")
    await _ledger_is_whole(gateway, account, 1000 * 10**6)


@pytest.mark.parametrize("status", [400, 429, 500, 503])
async def test_upstream_errors_pass_through_and_cost_nothing(start_gateway: StartGateway, status: int) -> None:
    gateway = await start_gateway(main={"fail_status": status})
    account, key = await gateway.new_account()
    for stream in (False, True):
        response = await gateway.chat(key, {"model": "m-main", "messages": user_message(), "stream": stream})
        error = await _error(response, status, "mock_failure")
        assert error["message"] == f"Mock failure {status}."
        assert response.headers["x-credits-remaining"] == "1000"
    await _ledger_is_whole(gateway, account, 1000 * 10**6)


async def test_unknown_paths_and_methods_get_openai_shaped_errors(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    await _error(await gateway.client.get("/v1/nothing-here"), 404)
    await _error(await gateway.client.get("/v1/chat/completions"), 405)


async def test_redis_going_away_gives_a_clean_503(
    start_upstream,
    aiohttp_client,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", port=free_port(), persistent=False)
    upstream = await start_upstream()
    settings = make_settings(server.start(), {"main": upstream.base_url})
    try:
        client = await aiohttp_client(create_app(settings))
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        account = await (await client.post("/admin/accounts", json={"name": "a", "credits": 5}, headers=admin)).json()
        created = await client.post(f"/admin/accounts/{account['id']}/keys", json={"name": "k"}, headers=admin)
        key = (await created.json())["key"]
    finally:
        server.stop()
    response = await client.post(
        "/v1/chat/completions",
        json={"model": "m-main", "messages": user_message()},
        headers={"Authorization": f"Bearer {key}"},
    )
    error = await _error(response, 503, "service_unavailable")
    assert response.headers["Retry-After"].isdigit()
    assert "redis" not in error["message"].lower() and "connection" not in error["message"].lower()
    # A body over 16 KiB has its key checked before it is read: that check finds Redis away too.
    large = await client.post(
        "/v1/chat/completions",
        json={"model": "m-main", "messages": user_message("x" * 20_000)},
        headers={"Authorization": f"Bearer {key}"},
    )
    await _error(large, 503, "service_unavailable")
    assert upstream.state.requests == []
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_requests_refused_total{status="503"} 2.0' in metrics  # both refusals counted
