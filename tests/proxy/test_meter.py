"""The meter's settlement rules, without aiohttp: what a request is billed for, given how it ended, and that it is
settled exactly once. The biller is the real one (metrics, insight fields, pricing); its settler records the
settlement it is handed instead of applying it, so each test reads exactly what would reach settle.lua.

Prices: 2.5 micro-credits per prompt token and 10 per completion token; the hold is for 4 prompt and 50
completion tokens.
"""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.billing import Settlement
from gateway.billing.pricing import Price
from gateway.billing.record import Usage
from gateway.config import LimitsConfig, ModelConfig, Settings
from gateway.insights.fingerprints import take_fingerprint
from gateway.metrics import Metrics
from gateway.proxy.answers import AnswerStore, PendingBill, StoredAnswer
from gateway.proxy.apis import Api, ApiRequest
from gateway.proxy.apis.chat import CHAT
from gateway.proxy.apis.responses import RESPONSES
from gateway.proxy.meter import CLIENT_CLOSED, Meter
from gateway.proxy.metering import Biller, Reservation, Ticket
from gateway.redis_server import free_port
from gateway.tokens import TokenCounter

PRICE = Price(input_micros_per_million=2_500_000, output_micros_per_million=10_000_000)
MODEL = ModelConfig(name="m", upstream="main", upstream_model="gpt-4o-mini", price=PRICE)
SETTINGS = Settings(models={"m": MODEL}, limits=LimitsConfig(prompt_clamp_ratio=4, prompt_clamp_slack=256))
BODY: dict[str, object] = {"model": "m", "messages": [{"role": "user", "content": "Hello!"}]}
REQUEST = ApiRequest(BODY, "m", stream=True, client_wants_usage=True, max_tokens=50, n=1)
PROMPT = 4
# 4 x 2.5 + 50 x 10 = 510 held, 1,000 left beside it
RESERVATION = Reservation("acct_1", "key_1", "r1", 510, 1_000, None, 50)
COUNTER = TokenCounter()
SENT = {"choices": [{"index": 0, "delta": {"content": "Hello there, friend"}}]}  # 4 tokens on o200k_base


class RecordingSettler:
    """Takes the settlement instead of applying it (so it is "spooled": the outcome is the hold's projection)."""

    def __init__(self) -> None:
        self.settled: list[Settlement] = []

    async def settle(self, settlement: Settlement) -> None:
        await asyncio.sleep(0)  # a real settlement takes a turn of the loop at least
        self.settled.append(settlement)


def _meter(
    answers: AnswerStore | None = None, api: Api = CHAT, request: ApiRequest = REQUEST
) -> tuple[Meter, RecordingSettler]:
    settler = RecordingSettler()
    biller = Biller(settler, Metrics(), COUNTER, SETTINGS, time.monotonic)  # type: ignore[arg-type]
    ticket = Ticket(api, request, MODEL, RESERVATION, PROMPT, take_fingerprint(BODY), time.monotonic())
    return Meter(ticket, COUNTER.completion_counter("gpt-4o-mini"), biller, SETTINGS, answers), settler


def _billed(settler: RecordingSettler) -> tuple[int, int, str, int]:
    """(prompt tokens, completion tokens, who counted, status) of the one settlement handed over."""
    [settlement] = settler.settled
    return (
        settlement.prompt_tokens,
        settlement.completion_tokens,
        str(settlement.record["usage_source"]),
        int(settlement.record["status"]),
    )


async def test_an_answer_is_billed_the_upstreams_usage() -> None:
    meter, settler = _meter()
    meter.forwarded = meter.answered = True
    CHAT.stream_format(REQUEST, "r1").count(meter.counter, SENT)
    meter.take_usage(Usage(5, 7, source="upstream"))
    outcome = await meter.settle(200)
    assert _billed(settler) == (5, 7, "upstream", 200)
    assert outcome.charged_micros == 83  # 5 x 2.5 + 7 x 10 = 82.5 -> 83


async def test_a_later_usage_report_replaces_an_earlier_one() -> None:
    """Streams report running totals: the last one stands."""
    meter, settler = _meter()
    meter.forwarded = meter.answered = True
    meter.take_usage(Usage(5, 2, source="upstream"))
    meter.take_usage(Usage(5, 9, source="upstream"))
    await meter.settle(200)
    assert _billed(settler) == (5, 9, "upstream", 200)


async def test_an_answer_without_usage_is_billed_the_gateways_count_of_what_was_sent() -> None:
    meter, settler = _meter()
    meter.forwarded = meter.answered = True
    CHAT.stream_format(REQUEST, "r1").count(meter.counter, SENT)
    await meter.settle(200)
    assert _billed(settler) == (PROMPT, 4, "gateway", 200)


async def test_usage_beyond_belief_is_billed_at_its_bound() -> None:
    meter, settler = _meter()
    meter.forwarded = meter.answered = True
    meter.take_usage(Usage(4 * 4 + 256 + 1, 51, source="upstream"))  # one past each bound
    await meter.settle(200)
    assert _billed(settler) == (4 * 4 + 256, 50, "upstream", 200)
    assert settler.settled[0].record["clamped"] == "prompt,completion"


async def test_a_client_that_left_pays_for_the_prompt_and_what_it_was_sent() -> None:
    """Even when the upstream reported more output: the client was sent only what the gateway counted. The prompt
    is the upstream's count when it gave one (5), else the gateway's (4)."""
    meter, settler = _meter()
    meter.forwarded = meter.answered = True
    CHAT.stream_format(REQUEST, "r1").count(meter.counter, SENT)
    meter.take_usage(Usage(5, 40, cached_tokens=2, source="upstream"))
    await meter.settle(CLIENT_CLOSED)
    assert _billed(settler) == (5, 4, "gateway", CLIENT_CLOSED)
    assert settler.settled[0].record["cached_tokens"] == 2
    unreported, settler = _meter()
    unreported.forwarded = True
    CHAT.stream_format(REQUEST, "r1").count(unreported.counter, SENT)
    await unreported.settle(CLIENT_CLOSED)
    assert _billed(settler) == (PROMPT, 4, "gateway", CLIENT_CLOSED)


async def test_a_prompt_reported_early_is_what_a_client_that_left_pays_for_it_bounded() -> None:
    """Anthropic's message_start reports the prompt before any output: a client that leaves then pays the
    provider's prompt (not the gateway's estimate), never beyond belief, and the answer as far as it was sent."""
    early, settler = _meter()
    early.forwarded = early.answered = True
    CHAT.stream_format(REQUEST, "r1").count(early.counter, SENT)
    early.take_prompt_usage(Usage(9, 1, cache_write_tokens=3, source="upstream"))
    await early.settle(CLIENT_CLOSED)
    assert _billed(settler) == (9, 4, "gateway", CLIENT_CLOSED)
    assert settler.settled[0].record["clamped"] == ""
    assert settler.settled[0].record["cache_write_tokens"] == 3  # billed at the cache-write price
    absurd, settler = _meter()
    absurd.forwarded = True
    absurd.take_prompt_usage(Usage(10**9, 0, source="upstream"))
    await absurd.settle(CLIENT_CLOSED)
    assert _billed(settler) == (4 * 4 + 256, 0, "gateway", CLIENT_CLOSED)  # the clamp: 4 x the count + 256
    assert settler.settled[0].record["clamped"] == "prompt"


async def test_a_client_that_left_before_the_request_went_upstream_pays_nothing() -> None:
    meter, settler = _meter()
    await meter.settle(CLIENT_CLOSED)
    assert _billed(settler) == (0, 0, "gateway", CLIENT_CLOSED)


async def test_an_upstream_failure_or_refusal_costs_nothing() -> None:
    meter, settler = _meter()
    meter.forwarded = True  # it went upstream, which answered 500 before anything reached the client
    meter.take_usage(Usage(5, 7, source="upstream"))
    outcome = await meter.settle(500)
    assert _billed(settler) == (0, 0, "gateway", 500)
    assert outcome.charged_micros == 0 and outcome.balance_micros == 1_510  # the whole hold comes back


async def test_a_request_is_settled_once_however_often_it_is_asked() -> None:
    meter, settler = _meter()
    meter.forwarded = meter.answered = True
    first, second = await asyncio.gather(meter.settle(200), meter.settle(502))
    third = await meter.settle(CLIENT_CLOSED)
    assert len(settler.settled) == 1 and int(settler.settled[0].record["status"]) == 200  # the first call's status
    assert first == second == third


async def test_a_settlement_outlives_its_cancelled_caller() -> None:
    """A departing client cancels the handler mid-settlement: the settlement goes on, and the next call (the
    exchange's `finally`) gets its outcome."""
    meter, settler = _meter()
    meter.forwarded = meter.answered = True
    caller = asyncio.create_task(meter.settle(200))
    await asyncio.sleep(0)  # the settlement has started
    caller.cancel()
    outcome = await meter.settle(CLIENT_CLOSED)
    assert len(settler.settled) == 1 and int(settler.settled[0].record["status"]) == 200
    assert outcome.spooled and outcome.charged_micros == 10  # the prompt alone: 4 x 2.5


def _answers(redis: Redis) -> AnswerStore:
    return AnswerStore(redis, retention_s=3600, clock=lambda: 1_000.0)


async def test_an_answer_id_is_its_accounts_from_the_first_sight_with_the_most_context_it_can_have(
    redis_client: Redis,
) -> None:
    """Recorded before the client sees it: the prompt and the whole output bound (4 + 50), until the settlement
    records the context the provider billed (5 + 7)."""
    answers = _answers(redis_client)
    meter, _ = _meter(answers)
    await meter.answer_seen("resp_1")
    assert await answers.find("acct_1", "resp_1") == StoredAnswer("m", PROMPT + 50, 1_000_000)
    await meter.answer_seen("resp_2")  # one answer has one id: the first stands
    assert await answers.find("acct_1", "resp_2") is None
    meter.forwarded = meter.answered = True
    meter.take_usage(Usage(5, 7, source="upstream"))
    await meter.settle(200)
    assert await answers.find("acct_1", "resp_1") == StoredAnswer("m", 12, 1_000_000)


async def test_an_id_that_cannot_be_a_providers_is_never_recorded(redis_client: Redis) -> None:
    meter, _ = _meter(_answers(redis_client))
    await meter.answer_seen("resp 1/../x")
    assert meter.answer is None and await redis_client.dbsize() == 0
    unstored, _ = _meter()  # no store: nothing kept, nothing raised
    await unstored.answer_seen("resp_1")
    assert unstored.answer is None


async def test_a_background_answer_relayed_unfinished_waits_for_its_bill(redis_client: Redis) -> None:
    """Nothing reaches the settler; the hold stays, and the answer's record carries what its bill needs."""
    answers = _answers(redis_client)
    background = ApiRequest({"model": "m", "input": "Hello!", "background": True}, "m", False, False, 50, 1)
    meter, settler = _meter(answers, RESPONSES, background)
    meter.forwarded = meter.answered = True
    await meter.answer_seen("resp_1")
    outcome = await meter.settle(200)
    assert meter.deferred and settler.settled == []
    assert (outcome.settled, outcome.charged_micros, outcome.balance_micros) == (False, 0, 1_000)
    stored = await answers.find("acct_1", "resp_1")
    assert stored is not None and stored.pending is not None
    assert (stored.pending.request_id, stored.pending.hold_micros, stored.pending.prompt_tokens) == ("r1", 510, 4)
    assert stored.pending.completion_limit == 50 and stored.pending.api_key_id == "key_1"
    assert stored.pending.balance_micros == 1_000  # what the hold left: a spooled settlement's projection
    assert stored.pending.history_tokens == 0  # one input: no history resent
    assert await answers.due(1_000_000 + 10_000, 10) == [("acct_1", "resp_1")]  # due a look one interval on
    assert await answers.due(1_000_000 + 9_999, 10) == []
    finished, settler = _meter(answers, RESPONSES, background)  # it came finished: billed at once, as any answer
    finished.forwarded = finished.answered = True
    await finished.answer_seen("resp_2")
    finished.take_usage(Usage(5, 7, source="upstream"))
    await finished.settle(200)
    assert not finished.deferred and _billed(settler) == (5, 7, "upstream", 200)


async def test_the_record_carries_the_latency_and_the_fingerprint() -> None:
    settler = RecordingSettler()
    biller = Biller(settler, Metrics(), COUNTER, SETTINGS, lambda: 102.5)  # type: ignore[arg-type]
    fingerprint = take_fingerprint(BODY)
    ticket = Ticket(CHAT, REQUEST, MODEL, RESERVATION, PROMPT, fingerprint, 100.0)
    meter = Meter(ticket, COUNTER.completion_counter("gpt-4o-mini"), biller, SETTINGS)
    meter.forwarded = meter.answered = True
    await meter.settle(200)
    [settlement] = settler.settled
    assert settlement.record["latency_ms"] == 2_500  # 102.5 - 100.0 seconds
    assert settlement.record["req_hash"] == fingerprint.request_hash


async def test_a_background_answers_record_knows_when_its_request_began(redis_client: Redis) -> None:
    """Its latency runs from the request's start: 100 s before the answer store's clock read 1,000 s."""
    answers = _answers(redis_client)
    background = ApiRequest({**BODY, "background": True}, "m", False, False, 50, 1)
    settler = RecordingSettler()
    biller = Biller(settler, Metrics(), COUNTER, SETTINGS, time.monotonic)  # type: ignore[arg-type]
    ticket = Ticket(RESPONSES, background, MODEL, RESERVATION, PROMPT, take_fingerprint(BODY), time.monotonic() - 100)
    meter = Meter(ticket, COUNTER.completion_counter("gpt-4o-mini"), biller, SETTINGS, answers)
    meter.forwarded = meter.answered = True
    await meter.answer_seen("resp_1")
    await meter.settle(200)
    stored = await answers.find("acct_1", "resp_1")
    assert stored is not None and stored.pending is not None
    assert 899_950 < stored.pending.started_ms <= 900_000


async def test_a_background_answer_redis_cannot_record_is_billed_as_it_stands() -> None:
    """The pending bill cannot be kept, so it is settled now: the prompt, and what was sent (nothing)."""
    unreachable = Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    background = ApiRequest({**BODY, "background": True}, "m", False, False, 50, 1)
    meter, settler = _meter(_answers(unreachable), RESPONSES, background)
    meter.forwarded = meter.answered = True
    await meter.answer_seen("resp_1")  # not recorded either: logged, the answer still goes out
    outcome = await meter.settle(200)
    assert not meter.deferred and _billed(settler) == (PROMPT, 0, "gateway", 200)
    assert settler.settled[0].record["gateway_prompt_tokens"] == PROMPT
    assert outcome.charged_micros == 10  # 4 x 2.5
    await unreachable.aclose()


async def test_a_background_bill_is_settled_from_its_pending_record() -> None:
    settler = RecordingSettler()
    biller = Biller(settler, Metrics(), COUNTER, SETTINGS, time.monotonic)  # type: ignore[arg-type]
    pending = PendingBill(
        request_id="r9",
        api_key_id="key_1",
        hold_micros=510,
        balance_micros=1_000,
        prompt_tokens=4,
        completion_limit=50,
        deadline_ms=2_000_000,
        started_ms=1_000_000,
        stream=False,
        fingerprint=take_fingerprint(BODY),
        history_tokens=0,
    )
    outcome = await biller.bill_later(
        "acct_1", pending, MODEL, "responses", Usage(5, 7, source="upstream"), Usage(4, 6), 200, 1_234
    )
    [settlement] = settler.settled
    assert (settlement.account_id, settlement.request_id, settlement.api) == ("acct_1", "r9", "responses")
    assert settlement.cost_micros == 83  # 5 x 2.5 + 7 x 10 = 82.5 -> 83
    assert settlement.record["hold_micros"] == 510 and settlement.record["latency_ms"] == 1_234
    assert settlement.record["gateway_completion_tokens"] == 6
    # Spooled (this settler keeps it): the outcome is projected from the hold and the balance beside it.
    assert outcome.spooled and (outcome.charged_micros, outcome.balance_micros) == (83, 1_000 + 510 - 83)


def test_a_conversation_turn_leaves_its_context_as_billed() -> None:
    """Answered: the billed input and output. The client left after the request went upstream: the provider may
    finish the answer, so the input and the whole output bound (50). Nothing went upstream: no turn."""
    meter, _ = _meter()
    assert meter.turn_context(Usage(5, 7), 200) is None
    meter.forwarded = True
    assert meter.turn_context(Usage(5, 0), CLIENT_CLOSED) == 5 + 50
    assert meter.turn_context(Usage(5, 0), 500) is None  # the upstream refused: nothing answered
    meter.answered = True
    assert meter.turn_context(Usage(5, 7), 200) == 12
