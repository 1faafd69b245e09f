"""The money boundaries README names, each through the real proxy, with prices that make rounding matter.

Prices here are 2.5 credits per million input tokens and 0.15 per million output: 2.5 and 0.15 micro-credits
per token. Every prompt is "Hello!" (9 tokens by the cookbook's rule), and every expected number is worked by
hand in a comment.
"""

from __future__ import annotations

import dataclasses

from gateway.billing import keyspace
from gateway.billing.pricing import Price
from tests.common import HELLO_PROMPT_TOKENS, Gateway, StartGateway, user_message


def _price(gateway: Gateway, input_micros_per_million: int, output_micros_per_million: int) -> None:
    models = gateway.settings.models
    price = Price(input_micros_per_million, output_micros_per_million)
    models["m-main"] = dataclasses.replace(models["m-main"], price=price)  # type: ignore[index]


async def _hello(gateway: Gateway, key: str, **fields: object) -> int:
    response = await gateway.chat(key, {"model": "m-main", "messages": user_message(), **fields})
    await response.read()
    return response.status


async def test_a_cost_exactly_on_a_micro_credit_is_not_rounded(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 10})
    _price(gateway, 2_500_000, 150_000)
    account, key = await gateway.new_account()
    assert await _hello(gateway, key) == 200
    # 9 * 2.5 + 10 * 0.15 = 22.5 + 1.5 = 24 exactly: no rounding at all.
    record = await gateway.last_record(account)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (str(HELLO_PROMPT_TOKENS), "10")
    assert record["credits_micros"] == "24"


async def test_a_cost_just_past_a_micro_credit_is_rounded_up(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 11})
    _price(gateway, 2_500_000, 150_000)
    account, key = await gateway.new_account()
    assert await _hello(gateway, key) == 200
    # 9 * 2.5 + 11 * 0.15 = 22.5 + 1.65 = 24.15: rounded up, once, to 25.
    assert (await gateway.last_record(account))["credits_micros"] == "25"
    assert await gateway.balance_micros(account) == 1000 * 10**6 - 25


async def test_rounding_up_is_the_whole_cost_of_a_tiny_request(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 3})
    _price(gateway, 100_000, 0)  # 0.1 credits per million input tokens, output free
    account, key = await gateway.new_account()
    assert await _hello(gateway, key) == 200
    # 9 * 0.1 = 0.9 micro-credits: rounding down would make it free; up, it costs 1.
    assert (await gateway.last_record(account))["credits_micros"] == "1"
    assert await gateway.balance_micros(account) == 1000 * 10**6 - 1


async def test_a_balance_exactly_equal_to_the_hold_is_served(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 10})
    _price(gateway, 2_500_000, 150_000)
    # The hold for max_tokens 10: 9 * 2.5 + 10 * 0.15 = 24 micro-credits.
    short, short_key = await gateway.new_account(credits="0.000023", name="short")
    exact, exact_key = await gateway.new_account(credits="0.000024", name="exact")
    assert await _hello(gateway, short_key, max_tokens=10) == 402
    assert await gateway.balance_micros(short) == 23
    assert await _hello(gateway, exact_key, max_tokens=10) == 200
    assert await gateway.balance_micros(exact) == 0  # the whole hold was the cost


async def test_n_choices_hold_n_times_max_tokens_and_bill_every_choice(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 6})
    _price(gateway, 2_500_000, 150_000)
    # The hold for n=3, max_tokens=10: 9 * 2.5 + 3 * 10 * 0.15 = 22.5 + 4.5 = 27 micro-credits.
    short, short_key = await gateway.new_account(credits="0.000026", name="short")
    account, key = await gateway.new_account(credits="0.000027", name="exact")
    assert await _hello(gateway, short_key, n=3, max_tokens=10) == 402
    assert await _hello(gateway, key, n=3, max_tokens=10) == 200
    # Three choices of 6 tokens: 9 * 2.5 + 18 * 0.15 = 22.5 + 2.7 = 25.2, rounded up to 26.
    record = await gateway.last_record(account)
    assert (record["completion_tokens"], record["credits_micros"]) == ("18", "26")
    assert await gateway.balance_micros(account) == 27 - 26
    assert await gateway.balance_micros(short) == 26


async def test_a_capped_charge_lands_identically_everywhere(start_gateway: StartGateway) -> None:
    # The upstream reports 292 prompt tokens: exactly the clamp's bound (9 * 4 + 256), so it is believed, and
    # the cost, 292 * 2.5 + 10 * 0.15 = 730 + 1.5 = 731.5 -> 732, is far above the hold (24) and the balance.
    usage = {"prompt_tokens": 292, "completion_tokens": 10, "total_tokens": 302}
    gateway = await start_gateway(main={"completion_tokens": 10, "reported_usage": usage})
    _price(gateway, 2_500_000, 150_000)
    account, key = await gateway.new_account(credits="0.000024")
    assert await _hello(gateway, key, max_tokens=10) == 200
    record = await gateway.last_record(account)
    assert record["clamped"] == "" and record["cost_micros"] == "732"
    # Charged what the hold and the balance hold together: 24 + 0.
    assert record["credits_micros"] == "24" and await gateway.balance_micros(account) == 0
    when = gateway.clock.utc()
    day = await gateway.redis.hgetall(keyspace.usage_day(account, when))
    hour = await gateway.redis.hgetall(keyspace.usage_hour(account, when))
    key_id = record["key_id"]
    assert (
        day["a:chat.completions:credits"]
        == day["a:chat.completions:m:m-main:credits"]
        == day[f"a:chat.completions:k:{key_id}:credits"]
        == hour["a:chat.completions:credits"]
        == "24"
    )
    auth = {"Authorization": f"Bearer {key}"}
    reported = await (await gateway.client.get("/v1/usage", headers=auth)).json()
    models = await (await gateway.client.get("/v1/usage/models", headers=auth)).json()
    keys = await (await gateway.client.get("/v1/usage/keys", headers=auth)).json()
    export = await (await gateway.client.get("/v1/usage/export?format=json", headers=auth)).json()
    assert reported["total_credits_used_micros"] == models["data"][0]["credits_used_micros"] == 24
    assert keys["data"][0]["credits_used_micros"] == export[0]["credits_micros"] == 24


async def test_prompt_tokens_one_past_the_clamp_bound_are_clamped(start_gateway: StartGateway) -> None:
    usage = {"prompt_tokens": 293, "completion_tokens": 10, "total_tokens": 303}
    gateway = await start_gateway(main={"completion_tokens": 10, "reported_usage": usage})
    _price(gateway, 2_500_000, 150_000)
    account, key = await gateway.new_account()
    assert await _hello(gateway, key, max_tokens=10) == 200
    record = await gateway.last_record(account)
    # Billed at the bound 292: 730 + 1.5 = 731.5 -> 732.
    assert (record["clamped"], record["prompt_tokens"], record["credits_micros"]) == ("prompt", "292", "732")


async def test_completion_tokens_at_max_tokens_times_n_are_believed_and_one_more_clamped(
    start_gateway: StartGateway,
) -> None:
    at_bound = {"prompt_tokens": 9, "completion_tokens": 30, "total_tokens": 39}
    gateway = await start_gateway(
        first={"reported_usage": at_bound}, second={"reported_usage": {**at_bound, "completion_tokens": 31}}
    )
    account, key = await gateway.new_account()
    for model in ("m-first", "m-second"):
        response = await gateway.chat(key, {"model": model, "messages": user_message(), "n": 3, "max_tokens": 10})
        assert response.status == 200
    records = [fields for _, fields in await gateway.redis.xrange(keyspace.request_log(account))]
    assert [(r["completion_tokens"], r["clamped"]) for r in records] == [("30", ""), ("30", "completion")]
