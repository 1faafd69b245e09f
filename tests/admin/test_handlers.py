"""The admin API: accounts, keys and credits, behind the admin token."""

from __future__ import annotations

import pytest

from gateway.app_state import REDIS
from gateway.billing import keyspace
from tests.common import ADMIN_TOKEN, StartGateway, user_message


async def test_account_key_and_credit_lifecycle(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    status, account = await gateway.admin("POST", "/admin/accounts", {"name": "Acme", "credits": 1500.25})
    assert status == 201
    assert account["name"] == "Acme" and account["credits"] == 1500.25 and account["credits_micros"] == 1_500_250_000
    assert account["period_start"] == "2026-09-01T00:00:00Z" and account["period_end"] == "2026-09-30T23:59:59Z"
    account_id = account["id"]
    assert (await gateway.admin("GET", f"/admin/accounts/{account_id}"))[1]["credits"] == 1500.25

    status, created = await gateway.admin("POST", f"/admin/accounts/{account_id}/keys", {"name": "backend"})
    assert status == 201 and created["key"].startswith("sk-gw-") and created["name"] == "backend"
    status, listed = await gateway.admin("GET", f"/admin/accounts/{account_id}/keys")
    assert status == 200 and [k["id"] for k in listed["data"]] == [created["id"]]
    # The key is shown once: never listed, never stored in the clear.
    assert "key" not in listed["data"][0] and "sha256" not in listed["data"][0]
    stored = await gateway.app[REDIS].hgetall(keyspace.api_key_records(account_id))
    assert created["key"] not in str(stored)
    assert listed["data"][0]["masked_key"].endswith(created["key"][-4:])

    status, granted = await gateway.admin("POST", f"/admin/accounts/{account_id}/credits", {"amount": 99.75})
    assert status == 200 and granted["credits"] == 1600
    status, taken = await gateway.admin("POST", f"/admin/accounts/{account_id}/credits", {"amount": "-100"})
    assert status == 200 and taken["credits"] == 1500
    status, error = await gateway.admin("POST", f"/admin/accounts/{account_id}/credits", {"amount": -5000})
    assert status == 400 and "below zero" in error["error"]["message"]

    status, accounts = await gateway.admin("GET", "/admin/accounts")
    assert [a["id"] for a in accounts["data"]] == [account_id]

    status, revoked = await gateway.admin("DELETE", f"/admin/keys/{created['id']}")
    assert status == 200 and revoked["revoked_at"] is not None
    assert (await gateway.chat(created["key"], {"model": "m-main", "messages": user_message()})).status == 401


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/admin/accounts", {"credits": 5}, 400),
        ("POST", "/admin/accounts", {"name": "x", "credits": -5}, 400),
        ("POST", "/admin/accounts", {"name": "x", "credits": "1.0000001"}, 400),
        ("POST", "/admin/accounts", {"name": "x", "credits": True}, 400),
        ("POST", "/admin/accounts", [1], 400),
        ("GET", "/admin/accounts/acct_0000000000000000", None, 404),
        ("GET", "/admin/accounts/not-an-id", None, 404),
        ("POST", "/admin/accounts/acct_0000000000000000/keys", {"name": "k"}, 404),
        ("POST", "/admin/accounts/acct_0000000000000000/credits", {"amount": 5}, 404),
        ("DELETE", "/admin/keys/key_nothing", None, 404),
    ],
)
async def test_admin_bad_input_gets_its_status_in_the_error_shape(
    start_gateway: StartGateway, method: str, path: str, body: object, status: int
) -> None:
    gateway = await start_gateway()
    got, payload = await gateway.admin(method, path, body)
    assert got == status and set(payload["error"]) >= {"message", "type", "code"}


async def test_admin_needs_the_admin_token(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    _, key = await gateway.new_account()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {key}"}):
        response = await gateway.client.get("/admin/accounts", headers=headers)
        assert response.status == 401 and (await response.json())["error"]["code"] == "invalid_admin_token"


async def test_admin_is_disabled_without_a_token(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(settings_overrides={"server": {"admin_token": None}})
    response = await gateway.client.get("/admin/accounts", headers={"Authorization": "Bearer "})
    assert response.status == 401 and "disabled" in (await response.json())["error"]["message"]


async def test_a_key_reads_its_own_account_by_name(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    status, account = await gateway.admin("POST", "/admin/accounts", {"name": "Acme Rockets", "credits": 12.5})
    assert status == 201
    status, created = await gateway.admin("POST", f"/admin/accounts/{account['id']}/keys", {"name": "web"})
    assert status == 201
    _, other_key = await gateway.new_account(name="Other")
    auth = {"Authorization": f"Bearer {created['key']}"}

    response = await gateway.client.get("/v1/account", headers=auth)
    assert response.status == 200 and response.headers["x-credits-remaining"] == "12.5"
    own = await response.json()
    assert own["id"] == account["id"] and own["name"] == "Acme Rockets" and own["object"] == "account"
    assert own["credits"] == 12.5 and own["credits_micros"] == 12_500_000 and own["reserved_credits"] == 0
    assert own["period_start"] == "2026-09-01T00:00:00Z" and own == account  # the admin API's view, the same
    admin = await gateway.client.get(
        "/v1/account", params={"account": account["id"]}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert admin.status == 200 and await admin.json() == own

    foreign = await gateway.client.get(
        "/v1/account", params={"account": account["id"]}, headers={"Authorization": f"Bearer {other_key}"}
    )
    assert foreign.status == 403 and (await foreign.json())["error"]["code"] == "permission_denied"
    for headers in ({}, {"Authorization": f"Bearer {created['key'][:-4]}nope"}):
        assert (await gateway.client.get("/v1/account", headers=headers)).status == 401
    unnamed = await gateway.client.get("/v1/account", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert unnamed.status == 400  # the admin token names the account
