"""Usage per API: every figure of the usage API, the export and the summary can be read for one API, and the
APIs add up to the totals. Settlements of several APIs are applied through the gateway's own ledger (as the
metered path applies them), a chat request goes through the proxy, and usage written before it was kept per API
reads as chat's."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from gateway.admin.accounts import parse_api_key
from gateway.app_state import LEDGER
from gateway.billing import Settlement, keyspace
from gateway.billing.record import API_NAMES
from tests.common import ADMIN_TOKEN, Gateway, StartGateway, user_message

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# (request id, api, model, prompt tokens, completion tokens, cost in micro-credits), each chosen by hand.
SETTLED = [
    ("r-msg-1", "messages", "claude-x", 120, 30, 4_500),
    ("r-msg-2", "messages", "claude-x", 80, 10, 2_100),
    ("r-emb-1", "embeddings", "embed-x", 900, 0, 1_800),
    ("r-resp-1", "responses", "m-main", 50, 25, 3_333),
    ("r-comp-1", "completions", "m-main", 7, 16, 777),
]
# Written as a gateway that predates per-API usage wrote it: no `a:API:` scope. Its figures are chat's.
LEGACY = {"requests": 2, "prompt_tokens": 40, "completion_tokens": 20, "credits": 5_000, "errors": 0}


async def _settle_by_hand(gateway: Gateway, key: str, account_id: str) -> None:
    ledger = gateway.app[LEDGER]
    parsed = parse_api_key(key)
    assert parsed is not None
    for request_id, api, model, prompt, completion, cost in SETTLED:
        held = await ledger.reserve(
            account_id, parsed.sha256, request_id, hold_micros=10_000, min_hold_micros=10_000, ttl_s=60, api=api
        )
        assert held.status.name == "HELD"
        settlement = Settlement(
            account_id, request_id, model, cost, prompt, completion, record={"status": 200}, api=api
        )
        assert (await ledger.settle(settlement)).charged_micros == cost


async def _legacy_day(gateway: Gateway, account_id: str, key_id: str) -> None:
    day = keyspace.usage_day(account_id, datetime.fromtimestamp(gateway.clock.now, UTC))
    fields: dict[str, int] = {}
    for prefix in ("", "m:old-model:", f"k:{key_id}:"):
        fields |= {prefix + name: value for name, value in LEGACY.items()}
    await gateway.redis.hset(day, mapping=fields)  # type: ignore[misc]


async def _traffic(start_gateway: StartGateway) -> tuple[Gateway, str, str, str, dict[str, object]]:
    """A gateway whose one account has each kind of usage; returns it, the account, key, key id and the chat
    answer's usage."""
    gateway = await start_gateway()
    account_id, key = await gateway.new_account(credits=100)
    status, keys = await gateway.admin("GET", f"/admin/accounts/{account_id}/keys")
    assert status == 200
    key_id = str(keys["data"][0]["id"])  # type: ignore[index]
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message(), "max_tokens": 8})
    assert response.status == 200
    chat_usage = (await response.json())["usage"]
    await _settle_by_hand(gateway, key, account_id)
    await _legacy_day(gateway, account_id, key_id)
    return gateway, account_id, key, key_id, chat_usage


def _expected(api: str, chat_usage: dict[str, object]) -> tuple[int, int, int]:
    """(requests, tokens, micro-credits) of one API, from the table above and the chat answer the client saw."""
    rows = [row for row in SETTLED if row[1] == api]
    requests = len(rows)
    tokens = sum(row[3] + row[4] for row in rows)
    micros = sum(row[5] for row in rows)
    if api == "chat.completions":
        requests += 1 + LEGACY["requests"]
        tokens += int(chat_usage["total_tokens"]) + LEGACY["prompt_tokens"] + LEGACY["completion_tokens"]  # type: ignore[call-overload]
        micros += int(Decimal(str(chat_usage["cost"])) * 1_000_000) + LEGACY["credits"]
    return requests, tokens, micros


async def _get(gateway: Gateway, path: str, key: str) -> dict[str, object]:
    response = await gateway.client.get(path, headers={"Authorization": f"Bearer {key}"})
    assert response.status == 200, await response.text()
    body: dict[str, object] = await response.json()
    return body


async def test_each_api_reads_its_own_figures_and_they_add_up(start_gateway: StartGateway) -> None:
    gateway, _, key, _, chat_usage = await _traffic(start_gateway)
    everything = await _get(gateway, "/v1/usage", key)
    assert everything["api"] is None
    breakdown = {entry["api"]: entry for entry in everything["api_breakdown"]}  # type: ignore[attr-defined]
    assert set(breakdown) == {"chat.completions", "messages", "embeddings", "responses", "completions"}
    total_requests = total_tokens = total_micros = 0
    for api in API_NAMES:
        requests, tokens, micros = _expected(api, chat_usage)
        one = await _get(gateway, f"/v1/usage?api={api}", key)
        assert one["api"] == api
        assert (one["total_requests"], one["total_tokens"], one["total_credits_used_micros"]) == (
            requests,
            tokens,
            micros,
        )
        entry = breakdown[api]
        assert (entry["requests"], entry["total_tokens"], entry["credits_used_micros"]) == (requests, tokens, micros)
        total_requests, total_tokens, total_micros = (
            total_requests + requests,
            total_tokens + tokens,
            total_micros + micros,
        )
    assert (everything["total_requests"], everything["total_tokens"], everything["total_credits_used_micros"]) == (
        total_requests,
        total_tokens,
        total_micros,
    )


async def test_models_keys_and_summary_filter_on_the_api(start_gateway: StartGateway) -> None:
    gateway, _, key, key_id, chat_usage = await _traffic(start_gateway)
    models = await _get(gateway, "/v1/usage/models?api=messages", key)
    assert models["api"] == "messages"
    assert [(m["model"], m["requests"], m["credits_used_micros"]) for m in models["data"]] == [  # type: ignore[attr-defined]
        ("claude-x", 2, 6_600)
    ]
    legacy_models = await _get(gateway, "/v1/usage/models?api=chat.completions", key)
    assert {m["model"] for m in legacy_models["data"]} == {"m-main", "old-model"}  # type: ignore[attr-defined]
    everything = await _get(gateway, "/v1/usage/models", key)
    # m-main is used on three APIs: its row sums them.
    m_main = next(m for m in everything["data"] if m["model"] == "m-main")  # type: ignore[attr-defined]
    assert m_main["requests"] == 3
    keys = await _get(gateway, "/v1/usage/keys?api=embeddings", key)
    row = next(k for k in keys["data"] if k["key_id"] == key_id)  # type: ignore[attr-defined]
    assert (row["requests"], row["tokens"], row["credits_used_micros"]) == (1, 900, 1_800)
    response = await gateway.client.get("/admin/usage/summary?api=responses", headers=ADMIN)
    summary = await response.json()
    assert response.status == 200 and summary["api"] == "responses"
    assert (summary["total_requests"], summary["total_credits_used_micros"]) == (1, 3_333)
    assert [(m["model"], m["requests"]) for m in summary["top_models"]] == [("m-main", 1)]
    all_summary = await (await gateway.client.get("/admin/usage/summary", headers=ADMIN)).json()
    assert all_summary["total_credits_used_micros"] == sum(_expected(api, chat_usage)[2] for api in API_NAMES)


async def test_the_export_carries_and_filters_the_api(start_gateway: StartGateway) -> None:
    gateway, account_id, key, _, _ = await _traffic(start_gateway)
    rows = await _get_rows(gateway, "/v1/usage/export?format=json", key)
    assert [row["api"] for row in rows] == ["chat.completions"] + [row[1] for row in SETTLED]
    messages = await _get_rows(gateway, "/v1/usage/export?format=json&api=messages", key)
    assert [(row["request_id"], row["credits_micros"]) for row in messages] == [("r-msg-1", 4_500), ("r-msg-2", 2_100)]
    csv_text = await (await gateway.client.get("/v1/usage/export?format=csv&api=embeddings", headers=_auth(key))).text()
    lines = csv_text.strip().splitlines()
    header, row = (line.split(",") for line in lines)
    assert len(lines) == 2 and row[header.index("api")] == "embeddings"
    record = await gateway.last_record(account_id)
    assert record["api"] == "completions"


async def test_an_unknown_api_is_refused_on_every_usage_read(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    _, key = await gateway.new_account()
    for path in ("/v1/usage", "/v1/usage/models", "/v1/usage/keys", "/v1/usage/export"):
        response = await gateway.client.get(f"{path}?api=chat", headers=_auth(key))
        body = await response.json()
        assert response.status == 400 and body["error"]["param"] == "api", (path, body)
    response = await gateway.client.get("/admin/usage/summary?api=Messages", headers=ADMIN)
    assert response.status == 400


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _get_rows(gateway: Gateway, path: str, key: str) -> list[dict[str, object]]:
    response = await gateway.client.get(path, headers=_auth(key))
    assert response.status == 200
    rows: list[dict[str, object]] = await response.json()
    return rows
