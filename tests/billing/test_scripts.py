"""The scripts' calling conventions, from both sides: each script's header documents exactly the KEYS and ARGV
its Python call builds, every ARGV list is as the headers say, numbers are checked before any call, the hold
record reads the same in Lua and Python, and day and hour keys are UTC."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources

import pytest
from redis.asyncio import Redis

from gateway.billing import Hold, ReserveStatus, keyspace
from gateway.billing.scripts import (
    MAX_SAFE_INTEGER,
    GrantCall,
    ReserveCall,
    Retention,
    SettleCall,
    Settlement,
    SettleMode,
    whole,
)
from tests.billing.common import funded_ledger, settlement

RETENTION = Retention(request_log_maxlen=50, request_log_retention_ms=0, hour_ttl_s=7200, settled_ids_ms=3_000)
NOW_MS = 1_790_000_000_000  # 2026-09-21T14:13:20Z


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
    assert day["a:chat.completions:k:key_abc:credits"] == "120"
    assert await ledger.reserved(account) == 0


def _numbered(header: str, section: str) -> list[int]:
    """The item numbers a script header lists after `-- KEYS:` or `-- ARGV:` (up to the next section)."""
    text = header.split(f"-- {section}:", 1)[1]
    text = re.split(r"-- (?:KEYS|ARGV|Reply)", text, maxsplit=1)[0]
    return [int(number) for number in re.findall(r"(?:^|,|--)\s*(\d+) ", text)]


def _header(name: str) -> str:
    source = resources.files("gateway.billing").joinpath("lua", name).read_text(encoding="utf-8")
    return "\n".join(line for line in source.splitlines() if line.startswith("--"))


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
    assert call.argv()[-2:] == ["status", 200] and len(call.argv()) == 17


def test_whole_takes_exactly_the_integers_from_0_to_2_53_minus_1() -> None:
    assert whole(0, "n") == 0
    assert whole(MAX_SAFE_INTEGER, "n") == 2**53 - 1
    for refused in (-1, 2**53, True, False, 1.0, "1"):
        with pytest.raises(ValueError, match=r"^n must be a whole number in \[0, 2\^53\)"):
            whole(refused, "n")  # type: ignore[arg-type]


def test_reserve_call_argv() -> None:
    call = ReserveCall("acct_1", "sha", "r1", 900, 300, deadline_ms=NOW_MS + 60_000, model="m", now_ms=NOW_MS)
    assert call.argv() == ["sha", "r1", 900, 300, NOW_MS + 60_000, "m", "acct_1", NOW_MS, "202609"]


def test_settle_call_argv_for_a_failed_request_with_record_fields() -> None:
    settlement = Settlement("acct_1", "r1", "m", 120, 10, 5, failed=True, record={"status": 500})
    argv = SettleCall(settlement, NOW_MS, RETENTION).argv()
    # ..., failed 1, no retention cutoff 0, mode, settled-ids cutoff now - 3,000 ms, period, account, API, record
    # fields
    assert argv == [
        *("r1", 120, 10, 5, "m", NOW_MS, 7200, 50, 1, 0, "charge", NOW_MS - 3_000, "202609", "acct_1"),
        "chat.completions",
        *("status", 500),
    ]


def test_settle_call_argv_for_a_request_that_did_not_fail() -> None:
    argv = SettleCall(Settlement("acct_1", "r1", "m", 120, 10, 5), NOW_MS, RETENTION).argv()
    assert argv[8] == 0


def test_settle_call_cutoffs_with_age_retention() -> None:
    retention = Retention(
        request_log_maxlen=50, request_log_retention_ms=86_400_000, hour_ttl_s=1, settled_ids_ms=3_000
    )
    argv = SettleCall(Settlement("acct_1", "r1", "m", 0, 0, 0), NOW_MS, retention).argv()
    assert argv[9] == NOW_MS - 86_400_000 and argv[11] == NOW_MS - 3_000
    # Early clocks (tests): the cutoffs stay at their floors, 1 (0 would mean "no age retention") and 0.
    early = SettleCall(Settlement("acct_1", "r1", "m", 0, 0, 0), 2_000, retention).argv()
    assert early[9] == 1 and early[11] == 0


def test_release_argv() -> None:
    argv = SettleCall(Settlement.release("acct_1", "r1"), NOW_MS, RETENTION).argv()
    assert argv == [
        *("r1", 0, 0, 0, "", NOW_MS, 7200, 50, 0, 0, "release", NOW_MS - 3_000, "202609", "acct_1"),
        "chat.completions",
    ]
    assert Settlement.release("acct_1", "r1").mode is SettleMode.RELEASE


def test_grant_call_argv_forgets_ids_older_than_the_settled_ids_window() -> None:
    call = GrantCall("acct_1", amount_micros=-5, now_ms=10_000, note="n", grant_id="g1", settled_ids_ms=3_000)
    assert call.argv() == [-5, 10_000, "n", "g1", 7_000, "acct_1", "197001"]
    early = GrantCall("acct_1", amount_micros=1, now_ms=1_000, note="", grant_id="g2", settled_ids_ms=3_000)
    assert early.argv() == [1, 1_000, "", "g2", 0, "acct_1", "197001"]


def test_a_grant_of_zero_is_refused_before_the_call() -> None:
    with pytest.raises(ValueError, match=r"^a grant of zero$"):
        GrantCall("acct_1", amount_micros=0, now_ms=1, note="", grant_id="g", settled_ids_ms=1).argv()


def _reserve(**changed: int) -> Callable[[], object]:
    values = {"hold_micros": 1, "min_hold_micros": 1, "deadline_ms": 1, "now_ms": 1} | changed
    return ReserveCall("acct_1", "sha", "r1", model="m", **values).argv


def _settle(
    cost: int = 1, prompt: int = 1, completion: int = 1, now_ms: int = NOW_MS, ttl: int = 1, maxlen: int = 50
) -> Callable[[], object]:
    retention = Retention(request_log_maxlen=maxlen, request_log_retention_ms=0, hour_ttl_s=ttl, settled_ids_ms=1)
    return SettleCall(Settlement("acct_1", "r1", "m", cost, prompt, completion), now_ms, retention).argv


def _grant(amount: int = 1, now_ms: int = 1) -> Callable[[], object]:
    return GrantCall("acct_1", amount_micros=amount, now_ms=now_ms, note="", grant_id="g", settled_ids_ms=1).argv


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (_reserve(hold_micros=-1), "hold"),
        (_reserve(min_hold_micros=2**53), "least hold"),
        (_reserve(deadline_ms=-1), "deadline"),
        (_reserve(now_ms=2**53), "now"),
        (_settle(cost=-1), "cost"),
        (_settle(prompt=2**53), "prompt tokens"),
        (_settle(completion=-1), "completion tokens"),
        (_settle(now_ms=2**53), "now"),
        (_settle(ttl=-1), "hour ttl"),
        (_settle(maxlen=2**53), "request log length"),
        (_grant(amount=-(2**53)), "amount"),
        (_grant(now_ms=-1), "now"),
    ],
)
def test_each_refused_number_is_named(argv: Callable[[], object], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be a whole number"):
        argv()


def test_the_hold_record_round_trips_with_colons_in_the_model() -> None:
    hold = Hold(amount_micros=500, deadline_ms=NOW_MS, api_key_id="key_abc", model="ft:gpt-4o:org::x1")
    assert hold.encode() == f"500:{NOW_MS}:key_abc:ft:gpt-4o:org::x1"
    assert Hold.parse(hold.encode()) == hold
    assert Hold.parse("7:8:key_1:") == Hold(7, 8, "key_1", "")


@pytest.mark.usefixtures("local_zone_tokyo")
def test_usage_keys_are_utc_days_and_hours_whatever_the_local_zone() -> None:
    late_evening_utc = 1_790_033_400_000  # 2026-09-21T23:30:00Z, already 2026-09-22 08:30 in Tokyo
    keys = SettleCall(Settlement("acct_1", "r1", "m", 0, 0, 0), late_evening_utc, RETENTION).keys()
    assert keys[2] == "gw:{acct:acct_1}:usage:d:20260921"
    assert keys[3] == "gw:{acct:acct_1}:usage:h:2026092123"
