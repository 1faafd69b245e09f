"""The scripts' calling conventions: the hold record reads the same in Lua and Python, and each script's
header documents exactly the KEYS and ARGV its Python call builds."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from importlib import resources

import pytest
from redis.asyncio import Redis

from gateway.billing import Hold, ReserveStatus, keyspace
from gateway.billing.scripts import GrantCall, ReserveCall, Retention, SettleCall, Settlement
from tests.billing.conftest import funded_ledger, settlement


async def test_python_reads_the_hold_reserve_lua_writes(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    outcome = await ledger.reserve(account, sha, "r1", hold_micros=300, min_hold_micros=300, ttl_s=60)
    assert outcome.status is ReserveStatus.HELD
    written = await redis_client.hget(keyspace.holds(account), "r1")
    assert written is not None
    assert Hold.parse(written) == Hold(300, ledger.now_ms() + 60_000, outcome.api_key_id, "")


async def test_settle_lua_reads_the_hold_python_writes(redis_client: Redis) -> None:
    ledger, account, _ = await funded_ledger(redis_client, 1_000)
    # A hold as reserve.lua would leave it: 500 out of the balance, for a model whose name has colons.
    await redis_client.hincrby(keyspace.account(account), "balance", -500)
    hold = Hold(500, ledger.now_ms() + 1000, api_key_id="key_abc", model="ft:gpt-4o:org::x1")
    await redis_client.hset(keyspace.holds(account), "r1", hold.encode())
    outcome = await ledger.settle(settlement(account, "r1", 120))
    assert (outcome.settled, outcome.balance_micros, outcome.charged_micros) == (True, 880, 120)
    day = await redis_client.hgetall(keyspace.usage_day(account, datetime.fromtimestamp(ledger.clock(), UTC)))
    assert day["k:key_abc:credits"] == "120"
    assert await ledger.reserved(account) == 0


def _numbered(header: str, section: str) -> list[int]:
    """The item numbers a script header lists after `-- KEYS:` or `-- ARGV:` (up to the next section)."""
    text = header.split(f"-- {section}:", 1)[1]
    text = re.split(r"-- (?:KEYS|ARGV|Reply)", text, maxsplit=1)[0]
    return [int(number) for number in re.findall(r"(?:^|,|--)\s*(\d+) ", text)]


def _header(name: str) -> str:
    source = resources.files("gateway.billing").joinpath("lua", name).read_text(encoding="utf-8")
    return "\n".join(line for line in source.splitlines() if line.startswith("--"))


RETENTION = Retention(request_log_maxlen=10, request_log_retention_ms=0, hour_ttl_s=60, settled_ids_ms=1000)
CALLS = {
    "reserve.lua": ReserveCall(
        "acct_1", "sha", "r1", hold_micros=2, min_hold_micros=1, deadline_ms=3, model="m", now_ms=4
    ),
    "settle.lua": SettleCall(Settlement("acct_1", "r1", "m", 1, 2, 3), now_ms=4, retention=RETENTION),
    "grant.lua": GrantCall("acct_1", amount_micros=5, now_ms=6, note="", grant_id="g1", settled_ids_ms=1),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_each_script_header_lists_what_its_call_sends(name: str) -> None:
    call = CALLS[name]
    header = _header(name)
    assert _numbered(header, "KEYS") == list(range(1, len(call.keys()) + 1))
    assert _numbered(header, "ARGV") == list(range(1, len(call.argv()) + 1))
    assert all(key.startswith(keyspace.account_tag("acct_1")) for key in call.keys())  # one cluster slot


def test_settle_call_appends_the_record_fields_as_pairs() -> None:
    call = SettleCall(Settlement("acct_1", "r1", "m", 1, 2, 3, record={"status": 200}), 4, RETENTION)
    assert call.argv()[-2:] == ["status", 200] and len(call.argv()) == 16
