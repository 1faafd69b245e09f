"""/v1/webhooks: subscriptions scoped to the caller's account, every bad input a 400 in OpenAI's shape, the
secret shown only when made, and the private-address guard."""

from __future__ import annotations

from dataclasses import replace

import pytest
from standardwebhooks.webhooks import Webhook

from gateway.app_state import REDIS
from gateway.billing import keyspace
from gateway.webhooks.store import WebhookStore
from tests.common import ADMIN_TOKEN, FakeClock, StartGateway
from tests.webhooks.common import WEBHOOK_SETTINGS, Receiver, subscribe

URL = "https://hooks.example.com/gateway"


async def test_create_list_show_patch_delete(start_gateway: StartGateway, receiver: Receiver) -> None:
    gateway = await start_gateway(WEBHOOK_SETTINGS)
    account, key = await gateway.new_account()
    auth = {"Authorization": f"Bearer {key}"}
    created = await subscribe(
        gateway, key, receiver.url, ["usage.threshold", "credits.low"], credits_low_threshold=100000
    )
    assert str(created["secret"]).startswith("whsec_") and str(created["id"]).startswith("wh_")
    assert created["settings"] == {"usage_threshold_percent": 80, "credits_low_threshold": 100000}  # 80: default
    assert created["enabled"] is True and created["url"] == receiver.url
    listed = await (await gateway.client.get("/v1/webhooks", headers=auth)).json()
    assert [w["id"] for w in listed["data"]] == [created["id"]] and "secret" not in listed["data"][0]
    path = f"/v1/webhooks/{created['id']}"
    assert "secret" not in await (await gateway.client.get(path, headers=auth)).json()
    patched = await gateway.client.patch(path, json={"settings": {"usage_threshold_percent": 95}}, headers=auth)
    body = await patched.json()
    assert patched.status == 200 and body["settings"]["usage_threshold_percent"] == 95
    alerts = await gateway.app[REDIS].hgetall(keyspace.alerts(account))
    assert alerts == {f"u:{created['id']}": "95", f"l:{created['id']}": "100000000000"}
    deleted = await (await gateway.client.delete(path, headers=auth)).json()
    assert deleted == {"id": created["id"], "object": "webhook", "deleted": True}
    assert (await gateway.client.get(path, headers=auth)).status == 404
    assert not await gateway.app[REDIS].exists(keyspace.alerts(account))


async def test_a_rotated_secret_signs_beside_the_old_one_for_a_while(
    start_gateway: StartGateway, receiver: Receiver
) -> None:
    gateway = await start_gateway(WEBHOOK_SETTINGS)
    _, key = await gateway.new_account()
    auth = {"Authorization": f"Bearer {key}"}
    created = await subscribe(gateway, key, receiver.url, ["credits.exhausted"])
    rotated = await (await gateway.client.post(f"/v1/webhooks/{created['id']}/rotate-secret", headers=auth)).json()
    assert rotated["secret"] != created["secret"]
    await gateway.client.post(f"/v1/webhooks/{created['id']}/test", headers=auth)
    [delivery] = await receiver.wait_for(1)
    for secret in (rotated["secret"], created["secret"]):  # a receiver on either secret accepts it
        assert delivery.verified(str(secret))["type"] == "webhook.test"
    with pytest.raises(Exception, match="No matching signature"):
        Webhook("whsec_" + "A" * 43 + "=").verify(delivery.body, delivery.headers)


BAD_INPUTS = [
    ({"events": ["credits.low"], "settings": {"credits_low_threshold": 1}}, "url"),
    ({"url": "ftp://hooks.example.com/x", "events": ["credits.low"]}, "url"),
    ({"url": "javascript:alert(1)", "events": ["usage.threshold"]}, "url"),
    ({"url": "https://user:pw@hooks.example.com/x", "events": ["usage.threshold"]}, "url"),
    ({"url": URL, "events": []}, "events"),
    ({"url": URL, "events": ["credits.spent"]}, "events"),
    ({"url": URL, "events": "credits.low"}, "events"),
    (
        {"url": URL, "events": ["usage.threshold"], "settings": {"usage_threshold_percent": 0}},
        "settings.usage_threshold_percent",
    ),
    (
        {"url": URL, "events": ["usage.threshold"], "settings": {"usage_threshold_percent": 101}},
        "settings.usage_threshold_percent",
    ),
    (
        {"url": URL, "events": ["usage.threshold"], "settings": {"usage_threshold_percent": 50.5}},
        "settings.usage_threshold_percent",
    ),
    (
        {"url": URL, "events": ["credits.low"], "settings": {"credits_low_threshold": -1}},
        "settings.credits_low_threshold",
    ),
    (
        {"url": URL, "events": ["credits.low"], "settings": {"credits_low_threshold": "0.0000001"}},
        "settings.credits_low_threshold",
    ),
    ({"url": URL, "events": ["credits.low"]}, "settings"),
    ({"url": URL, "events": ["credits.low"], "settings": {"colour": "red"}}, "settings.colour"),
    ({"url": URL, "events": ["credits.low"], "settings": [1]}, "settings"),
    ({"url": URL, "events": ["credits.exhausted"], "enabled": "yes"}, "enabled"),
]


@pytest.mark.parametrize(("body", "param"), BAD_INPUTS)
async def test_bad_subscriptions_get_400_naming_the_field(
    start_gateway: StartGateway, body: object, param: str
) -> None:
    gateway = await start_gateway(WEBHOOK_SETTINGS)  # (private targets allowed: no DNS lookup offline)
    account, key = await gateway.new_account()
    response = await gateway.client.post("/v1/webhooks", json=body, headers={"Authorization": f"Bearer {key}"})
    error = (await response.json())["error"]
    assert response.status == 400 and error["type"] == "invalid_request_error" and error["param"] == param
    assert not await gateway.app[REDIS].exists(keyspace.webhooks(account))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.0.0.8/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ],
)
async def test_private_targets_are_refused_unless_allowed(start_gateway: StartGateway, url: str) -> None:
    gateway = await start_gateway()  # allow_private_targets off, as in production
    _, key = await gateway.new_account()
    body = {"url": url, "events": ["credits.exhausted"]}
    response = await gateway.client.post("/v1/webhooks", json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status == 400 and (await response.json())["error"]["param"] == "url"


async def test_more_than_the_maximum_per_account_is_refused(start_gateway: StartGateway) -> None:
    gateway = await start_gateway({"webhooks": {**WEBHOOK_SETTINGS["webhooks"], "max_per_account": 2}})
    _, key = await gateway.new_account()
    for _ in range(2):
        await subscribe(gateway, key, URL, ["credits.exhausted"])
    body = {"url": URL, "events": ["credits.exhausted"]}
    response = await gateway.client.post("/v1/webhooks", json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status == 400 and "at most 2" in (await response.json())["error"]["message"]


async def test_a_key_sees_and_changes_only_its_own_accounts_webhooks(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(WEBHOOK_SETTINGS)
    owner, owner_key = await gateway.new_account(name="owner")
    _, other_key = await gateway.new_account(name="other")
    created = await subscribe(gateway, owner_key, URL, ["credits.exhausted"])
    other = {"Authorization": f"Bearer {other_key}"}
    path = f"/v1/webhooks/{created['id']}"
    assert (await (await gateway.client.get("/v1/webhooks", headers=other)).json())["data"] == []
    for method in ("GET", "PATCH", "DELETE"):
        response = await gateway.client.request(method, path, json={"enabled": False}, headers=other)
        assert response.status == 404
    for method, url in (("GET", f"/v1/webhooks?account={owner}"), ("DELETE", f"{path}?account={owner}")):
        response = await gateway.client.request(method, url, headers=other)
        assert response.status == 403 and (await response.json())["error"]["code"] == "permission_denied"
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    seen = await (await gateway.client.get(f"/v1/webhooks?account={owner}", headers=admin)).json()
    assert [w["id"] for w in seen["data"]] == [created["id"]]


async def test_a_receiver_answering_410_disables_the_webhook(start_gateway: StartGateway, receiver: Receiver) -> None:
    receiver.statuses = [410]
    gateway = await start_gateway(WEBHOOK_SETTINGS)
    _, key = await gateway.new_account()
    auth = {"Authorization": f"Bearer {key}"}
    created = await subscribe(gateway, key, receiver.url, ["credits.exhausted"])
    await gateway.client.post(f"/v1/webhooks/{created['id']}/test", headers=auth)
    await receiver.wait_for(1)
    for _ in range(100):
        shown = await (await gateway.client.get(f"/v1/webhooks/{created['id']}", headers=auth)).json()
        if not shown["enabled"]:
            break
        await gateway.client.get("/healthz")
    assert shown["enabled"] is False and "410" in shown["disabled_reason"]


async def test_a_webhook_failing_for_days_is_disabled(start_gateway: StartGateway, receiver: Receiver) -> None:
    receiver.statuses = [500]
    gateway = await start_gateway(WEBHOOK_SETTINGS)
    account, key = await gateway.new_account()
    auth = {"Authorization": f"Bearer {key}"}
    created = await subscribe(gateway, key, receiver.url, ["credits.exhausted"])
    store = WebhookStore(gateway.app[REDIS], clock=FakeClock())
    subscription = await store.get(account, str(created["id"]))
    assert subscription is not None
    await store.save(replace(subscription, failing_since_ms=1), rearm=False)  # failing since 1970
    await gateway.client.post(f"/v1/webhooks/{created['id']}/test", headers=auth)
    await receiver.wait_for(1)
    for _ in range(100):
        shown = await (await gateway.client.get(f"/v1/webhooks/{created['id']}", headers=auth)).json()
        if not shown["enabled"]:
            break
        await gateway.client.get("/healthz")
    assert shown["enabled"] is False and "failed for 5 days" in shown["disabled_reason"]
    assert not await gateway.app[REDIS].exists(keyspace.alerts(account))  # a disabled webhook fires nothing
