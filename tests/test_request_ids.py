"""Every response carries `x-request-id`: answers, errors and refusals, files and probes, each its own."""

from __future__ import annotations

import re

from tests.common import ADMIN_TOKEN, StartGateway, user_message

REQUEST_ID = re.compile(r"req_[0-9a-f]{32}")


async def test_every_response_has_its_own_request_id(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    account_id, key = await gateway.new_account(credits=10)
    tenant = {"Authorization": f"Bearer {key}"}
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    calls: list[tuple[str, str, dict[str, str], object, int]] = [
        ("GET", "/healthz", {}, None, 200),
        ("GET", "/readyz", {}, None, 200),
        ("GET", "/metrics", admin, None, 200),
        ("GET", "/openapi.json", {}, None, 200),
        ("GET", "/dashboard", {}, None, 200),
        ("GET", "/v1/models", tenant, None, 200),
        ("GET", "/v1/models/nope", tenant, None, 404),
        ("GET", "/v1/usage", tenant, None, 200),
        ("GET", "/v1/usage", {}, None, 401),
        ("GET", f"/v1/usage?account={account_id}&start=bad", admin, None, 400),
        ("GET", "/v1/usage/export?format=csv", tenant, None, 200),
        ("GET", "/v1/usage/insights", tenant, None, 200),
        ("GET", "/v1/webhooks", tenant, None, 200),
        ("GET", "/admin/accounts", admin, None, 200),
        ("GET", "/admin/accounts", tenant, None, 401),
        ("POST", "/admin/accounts", admin, {"name": "x", "credits": "5_000"}, 400),
        ("GET", "/no/such/path", {}, None, 404),
        ("DELETE", "/v1/models", tenant, None, 405),
        ("POST", "/v1/chat/completions", {}, {"model": "m-main", "messages": user_message()}, 401),
        ("POST", "/v1/chat/completions", tenant, {"model": "m-main"}, 400),
        ("POST", "/v1/chat/completions", tenant, {"model": "m-main", "messages": user_message()}, 200),
        (
            "POST",
            "/v1/chat/completions/count_tokens",
            tenant,
            {"model": "m-main", "messages": user_message()},
            200,
        ),
    ]
    seen: set[str] = set()
    for method, path, headers, body, status in calls:
        response = await gateway.client.request(method, path, headers=headers, json=body)
        await response.read()
        assert response.status == status, (method, path, response.status)
        request_id = response.headers.get("x-request-id", "")
        assert REQUEST_ID.fullmatch(request_id), (method, path, dict(response.headers))
        assert request_id not in seen
        seen.add(request_id)


async def test_a_chat_request_id_is_the_one_its_record_and_its_refusal_carry(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    account_id, key = await gateway.new_account(credits=10)
    served = await gateway.chat(key, {"model": "m-main", "messages": user_message()})
    assert served.status == 200
    assert (await gateway.last_record(account_id))["request_id"] == served.headers["x-request-id"]
    refused = await gateway.chat(key, {"model": "m-main", "messages": user_message(), "max_tokens": 10**9})
    assert refused.status == 402 and REQUEST_ID.fullmatch(refused.headers["x-request-id"])
    assert refused.headers["x-request-id"] != served.headers["x-request-id"]


async def test_a_streamed_answer_has_its_request_id(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    account_id, key = await gateway.new_account(credits=10)
    streamed = await gateway.chat(key, {"model": "m-main", "messages": user_message(), "stream": True})
    await streamed.read()
    assert streamed.status == 200
    await gateway.wait_settled(account_id)
    assert (await gateway.last_record(account_id))["request_id"] == streamed.headers["x-request-id"]
