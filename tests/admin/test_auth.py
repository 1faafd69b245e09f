"""The tenant's key as either SDK family sends it: `Authorization: Bearer` (OpenAI's, Anthropic's `auth_token`) or
`x-api-key` (Anthropic's default), on every tenant route; two different keys at once are refused."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from gateway.admin.auth import bearer_api_key
from gateway.errors import AuthError, MissingApiKey
from tests.common import StartGateway, user_message

KEY = "sk-gw-0123456789abcdef-" + "s" * 32


def test_either_header_or_both_alike_give_the_key() -> None:
    for headers in (
        {"Authorization": f"Bearer {KEY}"},
        {"x-api-key": KEY},
        {"X-Api-Key": f" {KEY} ", "authorization": f"bearer {KEY}"},
    ):
        parsed = bearer_api_key(CIMultiDict(headers))
        assert parsed.account_id == "acct_0123456789abcdef"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {KEY}", "x-api-key": KEY[:-1] + "t"},  # two different keys
        {"Authorization": f"Basic {KEY}", "x-api-key": KEY},  # a malformed Authorization is not ignored
        {"x-api-key": ""},
        {"x-api-key": "sk-gw-ünicode"},
        {"x-api-key": "not-a-gateway-key"},
    ],
)
def test_refused_keys(headers: dict[str, str]) -> None:
    with pytest.raises(AuthError):
        bearer_api_key(CIMultiDict(headers))


def test_no_key_at_all_is_a_missing_key() -> None:
    with pytest.raises(MissingApiKey):
        bearer_api_key(CIMultiDict())


async def test_every_tenant_route_takes_the_key_as_x_api_key(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    account, key = await gateway.new_account()
    body = {"model": "m-main", "messages": user_message()}
    for method, path, json in (
        ("GET", "/v1/models", None),
        ("GET", "/v1/models/m-main", None),
        ("GET", "/v1/account", None),
        ("GET", "/v1/usage", None),
        ("GET", "/v1/usage/models", None),
        ("GET", "/v1/usage/keys", None),
        ("GET", "/v1/usage/insights", None),
        ("GET", "/v1/webhooks", None),
        ("POST", "/v1/chat/completions/count_tokens", body),
        ("POST", "/v1/chat/completions", body),
    ):
        for headers in ({"x-api-key": key}, {"x-api-key": key, "Authorization": f"Bearer {key}"}):
            response = await gateway.client.request(method, path, json=json, headers=headers)
            assert response.status == 200, (path, headers, await response.text())
        other = key[:-1] + ("0" if key[-1] != "0" else "1")
        response = await gateway.client.request(
            method, path, json=json, headers={"x-api-key": key, "Authorization": f"Bearer {other}"}
        )
        assert response.status == 401, path
    export = await gateway.client.get("/v1/usage/export?format=csv", headers={"x-api-key": key})
    assert export.status == 200 and account
