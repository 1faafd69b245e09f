"""Metering at its boundaries, called directly: what is held for n choices with and without max_tokens, a
balance that pays exactly one token per choice, the 402 it names, the upstream usage that is believed or cut
to its bound, and the settlement `bill` hands over.

Prices are 2.5 micro-credits per input token and 10 per output token (1.25 per cached one), so every expected
amount below is worked out by hand in its comment.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from gateway.admin.accounts import ParsedApiKey
from gateway.billing import Hold, Ledger, Settlement, SettleOutcome, keyspace
from gateway.billing.pricing import Price
from gateway.billing.record import Usage
from gateway.billing.scripts import MAX_SAFE_INTEGER
from gateway.billing.settler import Settler
from gateway.billing.spool import Spool
from gateway.config import LimitsConfig, ModelConfig, Settings
from gateway.errors import AuthError, InsufficientCredits, ServiceUnavailable
from gateway.proxy.apis import ApiRequest
from gateway.proxy.apis.chat import usage_from_upstream
from gateway.proxy.metering import Reservation, bill, bounded_usage, hold_credits
from tests.billing.common import funded_ledger

PRICE = Price(
    input_micros_per_million=2_500_000, output_micros_per_million=10_000_000, cached_input_micros_per_million=1_250_000
)
MODEL = ModelConfig(name="m", upstream="main", upstream_model="gpt-4o-mini", price=PRICE)
SETTINGS = Settings(
    models={"m": MODEL}, limits=LimitsConfig(default_max_tokens=100, prompt_clamp_ratio=4, prompt_clamp_slack=256)
)
PROMPT = 4  # 4 x 2.5 = 10 micro-credits


def chat(max_tokens: int | None = None, n: int = 1) -> ApiRequest:
    return ApiRequest(body={}, model="m", stream=False, client_wants_usage=False, max_tokens=max_tokens, n=n)


class RecordingSettler:
    """Takes what the metering hands over instead of applying it."""

    def __init__(self) -> None:
        self.settled: list[Settlement] = []
        self.deferred: list[Settlement] = []

    async def settle(self, settlement: Settlement) -> None:
        self.settled.append(settlement)

    async def defer(self, settlement: Settlement) -> None:
        self.deferred.append(settlement)


async def _hold(
    redis: Redis, balance: int, request: ApiRequest, model: ModelConfig = MODEL, api: str = "chat.completions"
) -> tuple[Reservation, Ledger, str]:
    ledger, account, sha = await funded_ledger(redis, balance)
    reservation = await hold_credits(
        ledger,
        RecordingSettler(),
        SETTINGS,
        model,
        ParsedApiKey(account, sha),
        "r1",
        request,
        PROMPT,
        api=api,
    )  # type: ignore[arg-type]
    return reservation, ledger, account


async def test_a_client_max_tokens_is_held_for_every_choice(redis_client: Redis) -> None:
    reservation, ledger, account = await _hold(redis_client, 1_000, chat(max_tokens=5, n=3))
    # 10 + 3 x 5 x 10 = 160 held; the client's bound is kept, 15 completion tokens in all
    assert (reservation.hold_micros, reservation.balance_micros) == (160, 840)
    assert (reservation.forced_max_tokens, reservation.completion_limit) == (None, 15)
    written = await redis_client.hget(keyspace.holds(account), "r1")
    assert written is not None
    hold = Hold.parse(written)
    assert (hold.amount_micros, hold.model) == (160, "m")
    assert reservation.api_key_id == hold.api_key_id and reservation.api_key_id.startswith("key_")
    assert (reservation.account_id, reservation.request_id) == (account, "r1")
    assert await ledger.reserved(account) == 160


async def test_the_hold_names_its_api(redis_client: Redis) -> None:
    """The sweeper records a hold it releases under its API, and the hold record is all it has."""
    _, _, account = await _hold(redis_client, 1_000, chat(max_tokens=5), api="embeddings")
    written = await redis_client.hget(keyspace.holds(account), "r1")
    assert written is not None and Hold.parse(written).api == "embeddings"


async def test_without_max_tokens_the_default_cap_is_held_and_forced(redis_client: Redis) -> None:
    reservation, _, _ = await _hold(redis_client, 10_000, chat(n=2))
    # 10 + 2 x 100 x 10 = 2,010
    assert (reservation.hold_micros, reservation.balance_micros) == (2_010, 7_990)
    assert (reservation.forced_max_tokens, reservation.completion_limit) == (100, 200)


async def test_the_models_own_output_cap_comes_before_the_default(redis_client: Redis) -> None:
    capped = ModelConfig(name="m", upstream="main", upstream_model="gpt-4o-mini", price=PRICE, max_output_tokens=7)
    reservation, _, _ = await _hold(redis_client, 10_000, chat(), model=capped)
    assert (reservation.hold_micros, reservation.forced_max_tokens) == (80, 7)  # 10 + 7 x 10


async def test_a_balance_short_of_the_cap_holds_what_it_pays_for_and_forces_that(redis_client: Redis) -> None:
    reservation, _, _ = await _hold(redis_client, 105, chat())
    # (105 - 10) / 10 -> 9 output tokens, costing 10 + 90 = 100
    assert (reservation.hold_micros, reservation.balance_micros) == (100, 5)
    assert (reservation.forced_max_tokens, reservation.completion_limit) == (9, 9)


async def test_a_balance_paying_exactly_one_token_per_choice_holds_one_each(redis_client: Redis) -> None:
    reservation, _, _ = await _hold(redis_client, 30, chat(n=2))
    # 10 + 2 x 10 = 30: one token for each of 2 choices, nothing left
    assert (reservation.hold_micros, reservation.balance_micros) == (30, 0)
    assert (reservation.forced_max_tokens, reservation.completion_limit) == (1, 2)


async def test_too_little_for_one_token_is_a_402_naming_the_least_and_the_balance(redis_client: Redis) -> None:
    with pytest.raises(InsufficientCredits) as refused:
        await _hold(redis_client, 19, chat())  # the least is 10 + 10 = 20
    assert refused.value.message == (
        "Insufficient credits: this request needs at least 0.00002 credits and the balance is 0.000019."
    )
    assert refused.value.balance_micros == 19  # the handler puts it on the answer as x-credits-remaining


async def test_one_token_per_choice_short_is_a_402(redis_client: Redis) -> None:
    # n = 2: one token each would cost 30; 29 pays for 1.9 tokens, not one per choice.
    with pytest.raises(InsufficientCredits, match="needs at least 0.00003 credits and the balance is 0.000029"):
        await _hold(redis_client, 29, chat(n=2))


async def test_a_client_max_tokens_the_balance_cannot_pay_is_a_402(redis_client: Redis) -> None:
    with pytest.raises(InsufficientCredits, match="needs at least 0.00016 credits and the balance is 0.000159"):
        await _hold(redis_client, 159, chat(max_tokens=5, n=3))


async def test_a_refusal_that_fires_credits_exhausted_wakes_the_webhook_sender(redis_client: Redis) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 0)
    await redis_client.hset(keyspace.alerts(account), "x:sub_1", "1")  # a credits.exhausted subscription
    appended = asyncio.Event()
    ledger.on_alerts = appended.set  # as the app wires it: the ledger tells the webhook sender
    with pytest.raises(InsufficientCredits):
        await hold_credits(
            ledger,
            RecordingSettler(),
            SETTINGS,
            MODEL,
            ParsedApiKey(account, sha),
            "r1",
            chat(),
            PROMPT,
            api="chat.completions",
        )  # type: ignore[arg-type]
    assert appended.is_set()


async def test_an_unknown_key_is_a_401(redis_client: Redis) -> None:
    ledger, account, _ = await funded_ledger(redis_client, 1_000)
    with pytest.raises(AuthError):
        await hold_credits(
            ledger, RecordingSettler(), SETTINGS, MODEL, ParsedApiKey(account, "0" * 64), "r1", chat(), PROMPT,
            api="chat.completions",
        )  # type: ignore[arg-type]  # fmt: skip


class FrozenLedger:
    def now_ms(self) -> int:
        return 0

    async def reserve(self, *args: object, **kwargs: object) -> None:
        raise redis_errors.TimeoutError("Timeout reading from socket")


async def test_a_reserve_redis_did_not_answer_is_a_503_and_releases_that_request_later() -> None:
    settler = RecordingSettler()
    with pytest.raises(ServiceUnavailable):
        await hold_credits(
            FrozenLedger(), settler, SETTINGS, MODEL, ParsedApiKey("acct_1", "sha"), "r1", chat(), PROMPT,
            api="chat.completions",
        )  # type: ignore[arg-type]  # fmt: skip
    assert settler.deferred == [Settlement.release("acct_1", "r1")]


def test_zero_completion_tokens_from_the_upstream_are_believed() -> None:
    assert usage_from_upstream({"prompt_tokens": 5, "completion_tokens": 0}) == Usage(5, 0, source="upstream")
    assert usage_from_upstream({"prompt_tokens": 0, "completion_tokens": 0}) == Usage(0, 0, source="upstream")


@pytest.mark.parametrize(
    "usage",
    [
        None,
        [],
        {"prompt_tokens": 5},
        {"prompt_tokens": -1, "completion_tokens": 1},
        {"prompt_tokens": 5, "completion_tokens": True},
        {"prompt_tokens": 5.0, "completion_tokens": 1},
    ],
)
def test_unusable_upstream_usage_is_ignored(usage: object) -> None:
    assert usage_from_upstream(usage) is None


def test_cached_and_reasoning_details_are_read_when_they_are_counts() -> None:
    usage = usage_from_upstream(
        {
            "prompt_tokens": 50,
            "completion_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 30},
            "completion_tokens_details": {"reasoning_tokens": 12},
        }
    )
    assert usage == Usage(50, 20, cached_tokens=30, reasoning_tokens=12, source="upstream")
    for details in ({"cached_tokens": -3}, {"cached_tokens": True}, {"cached_tokens": 1.5}, {}, None, "x"):
        read = usage_from_upstream({"prompt_tokens": 50, "completion_tokens": 20, "prompt_tokens_details": details})
        assert read is not None and read.cached_tokens == 0 and read.reasoning_tokens == 0


def test_usage_exactly_at_its_bounds_is_not_clamped() -> None:
    # own count 10: at most 10 x 4 + 256 = 296 prompt tokens; the forwarded bound allows 50 completion tokens
    reported = Usage(296, 50, cached_tokens=296, reasoning_tokens=50, source="upstream")
    assert bounded_usage(reported, 10, 50, SETTINGS) is reported


def test_usage_past_its_bounds_is_cut_to_them_and_says_so() -> None:
    reported = Usage(297, 51, cached_tokens=297, reasoning_tokens=51, source="upstream")
    assert bounded_usage(reported, 10, 50, SETTINGS) == Usage(
        296, 50, cached_tokens=296, reasoning_tokens=50, source="upstream", clamped=("prompt", "completion")
    )
    only_completion = bounded_usage(Usage(5, 80, reasoning_tokens=3), 10, 50, SETTINGS)
    assert only_completion == Usage(5, 50, reasoning_tokens=3, clamped=("completion",))


def test_a_clamped_prompt_keeps_its_cache_writes_within_what_is_not_cached() -> None:
    """Cached reads and cache writes are parts of the prompt: cut to the bound (10 x 4 + 256 = 296), the prompt
    keeps its 290 cached tokens and at most 6 written."""
    reported = Usage(300, 1, cached_tokens=290, cache_write_tokens=50, source="upstream")
    bounded = bounded_usage(reported, 10, 50, SETTINGS)
    assert (bounded.prompt_tokens, bounded.cached_tokens, bounded.cache_write_tokens) == (296, 290, 6)


def test_the_bounds_never_pass_2_53() -> None:
    huge = Usage(2**60, 2**60)
    bounded = bounded_usage(huge, 2**60, 2**60, SETTINGS)
    assert (bounded.prompt_tokens, bounded.completion_tokens) == (MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)


RESERVATION = Reservation("acct_1", "key_1", "r1", 160, 840, None, 15)


async def test_bill_prices_the_usage_and_hands_over_the_whole_record() -> None:
    settler = RecordingSettler()
    usage = Usage(4, 1, cached_tokens=2, reasoning_tokens=1, source="upstream", clamped=("prompt",))
    estimate = Usage(5, 2)
    charged = await bill(
        settler, RESERVATION, MODEL, usage, estimate, status=200, latency_ms=42, stream=True, api="chat.completions"
    )  # type: ignore[arg-type]
    # 2 x 2.5 + 2 x 1.25 + 1 x 10 = 17.5 -> 18
    assert settler.settled == [
        Settlement(
            account_id="acct_1",
            request_id="r1",
            model="m",
            cost_micros=18,
            prompt_tokens=4,
            completion_tokens=1,
            failed=False,
            record={
                "status": 200,
                "latency_ms": 42,
                "stream": 1,
                "usage_source": "upstream",
                "cached_tokens": 2,
                "cache_write_tokens": 0,
                "reasoning_tokens": 1,
                "gateway_prompt_tokens": 5,
                "gateway_completion_tokens": 2,
                "hold_micros": 160,
                "clamped": "prompt",
            },
        )
    ]
    # Spooled (the recording settler applies nothing): projected from the hold, 1,000 - 18 = 982 left
    assert charged == SettleOutcome(True, 982, 18, spooled=True)


@pytest.mark.parametrize(("status", "failed"), [(200, False), (399, False), (400, True), (401, True), (502, True)])
async def test_a_request_failed_when_its_status_is_400_or_more(status: int, failed: bool) -> None:
    settler = RecordingSettler()
    await bill(
        settler,
        RESERVATION,
        MODEL,
        Usage(1, 0),
        Usage(1, 0),
        status=status,
        latency_ms=1,
        stream=False,
        api="chat.completions",
    )  # type: ignore[arg-type]
    assert settler.settled[0].failed is failed


async def test_a_cost_past_2_53_is_billed_at_2_53_minus_1() -> None:
    settler = RecordingSettler()
    charged = await bill(
        settler,
        RESERVATION,
        MODEL,
        Usage(0, 2**60),
        Usage(0, 0),
        status=200,
        latency_ms=1,
        stream=False,
        api="chat.completions",
    )  # type: ignore[arg-type]
    assert settler.settled[0].cost_micros == MAX_SAFE_INTEGER
    # projected like settle.lua charges it: at most the hold and the balance beside it, 160 + 840
    assert charged == SettleOutcome(True, 0, 1_000, spooled=True)


async def test_hold_and_bill_through_a_real_settler(redis_client: Redis, tmp_path: Path) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    spool = Spool(tmp_path)
    spool.open()
    try:
        settler = Settler(ledger, spool)
        reservation = await hold_credits(
            ledger, settler, SETTINGS, MODEL, ParsedApiKey(account, sha), "r1", chat(max_tokens=5, n=3), PROMPT,
            api="chat.completions",
        )  # fmt: skip
        outcome = await bill(
            settler,
            reservation,
            MODEL,
            Usage(4, 7),
            Usage(4, 7),
            status=200,
            latency_ms=1,
            stream=False,
            api="chat.completions",
        )
    finally:
        spool.close()
    # 10 + 70 = 80 charged out of the 160 held
    assert outcome == SettleOutcome(True, 920, 80)
    assert await ledger.balance(account) == 920


async def test_bill_reports_the_alerts_its_settlement_appended(redis_client: Redis, tmp_path: Path) -> None:
    ledger, account, sha = await funded_ledger(redis_client, 1_000)
    await redis_client.hset(keyspace.alerts(account), "u:sub_1", "50")  # an alert at 50% of the period's budget
    spool = Spool(tmp_path)
    spool.open()
    try:
        settler = Settler(ledger, spool)
        reservation = await hold_credits(
            ledger, settler, SETTINGS, MODEL, ParsedApiKey(account, sha), "r1", chat(max_tokens=60), PROMPT,
            api="chat.completions",
        )  # fmt: skip
        charged = await bill(
            settler,
            reservation,
            MODEL,
            Usage(4, 55),
            Usage(4, 55),
            status=200,
            latency_ms=1,
            stream=False,
            api="chat.completions",
        )
    finally:
        spool.close()
    # 10 + 550 = 560 of 1,000: past 50%, so the ledger wakes the webhook sender
    assert charged == SettleOutcome(True, 440, 560, alerts=1)
