"""An upstream whose provider key variable is unset: a warning at start-up naming the variable and the models it
leaves unusable, and a 502 that says the key is missing, refused before any hold and never forwarded."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.billing import keyspace
from gateway.config import load_settings, missing_provider_keys
from tests.common import StartGateway, user_message

HELLO = {"model": "m-main", "messages": user_message()}
SHIPPED_CONFIG = Path(__file__).parents[2] / "config" / "gateway.toml"


async def test_a_model_without_its_provider_key_gets_502_saying_so(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    keyless = {"main": {"api_key": None, "api_key_env": "TEST_PROVIDER_KEY"}}
    gateway = await start_gateway({"upstream_fields": keyless})
    assert "upstream 'main': TEST_PROVIDER_KEY is not set, so its models (m-main) answer 502" in caplog.text
    account_id, key = await gateway.new_account(credits=10)
    response = await gateway.chat(key, HELLO)
    error = (await response.json())["error"]
    assert response.status == 502 and error["code"] == "provider_key_missing"
    assert "no provider key" in error["message"] and "nothing was charged" in error["message"]
    assert "TEST_PROVIDER_KEY" not in error["message"]  # the operator's business: in the log, not the answer
    assert response.headers["x-credits-used"] == "0" and response.headers["x-credits-remaining"] == "10"
    assert gateway.upstreams["main"].state.requests == []
    assert await gateway.balance_micros(account_id) == 10_000_000
    assert await gateway.redis.xlen(keyspace.request_log(account_id)) == 0
    assert (await gateway.chat("sk-gw-acct_0000000000000000-nope", HELLO)).status == 401  # the key first
    metrics = await (await gateway.client.get("/metrics")).text()
    assert 'gateway_requests_refused_total{status="502"} 1.0' in metrics


def test_the_shipped_config_names_what_a_missing_openai_key_leaves_unusable() -> None:
    assert missing_provider_keys(load_settings(SHIPPED_CONFIG, {})) == [
        "upstream 'openai': OPENAI_API_KEY is not set, so its models (gpt-4o, gpt-4o-mini) answer 502 "
        "provider_key_missing until it is"
    ]
    assert missing_provider_keys(load_settings(SHIPPED_CONFIG, {"OPENAI_API_KEY": "sk-test"})) == []
