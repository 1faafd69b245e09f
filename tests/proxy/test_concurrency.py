"""Many requests at once on one account: the balance never goes below zero and every micro-credit adds up."""

from __future__ import annotations

import asyncio

from gateway.app_state import REDIS
from gateway.billing import keyspace
from tests.common import StartGateway, user_message


async def test_200_concurrent_requests_on_a_balance_that_pays_for_some(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(
        settings_overrides={"limits": {"default_max_tokens": 40}}, main={"completion_tokens": 16}
    )
    initial = 3 * 10**6  # 3 credits: roughly 60 of these requests
    account, key = await gateway.new_account(credits=3)

    async def one(index: int) -> int:
        body: dict[str, object] = {"model": "m-main", "messages": user_message(f"request number {index}")}
        if index % 2:
            body["max_tokens"] = 20
        if index % 3 == 0:
            body["stream"] = True
        response = await gateway.chat(key, body)
        await response.read()
        return response.status

    statuses = await asyncio.gather(*(one(i) for i in range(200)))
    assert set(statuses) == {200, 402}
    served = statuses.count(200)
    assert 40 <= served <= 100

    final = await gateway.balance_micros(account)
    assert final >= 0
    records = await gateway.app[REDIS].xrange(keyspace.request_log(account))
    assert len(records) == served
    charged = sum(int(fields["credits_micros"]) for _, fields in records)
    assert charged == initial - final
    assert all(fields["cost_micros"] == fields["credits_micros"] for _, fields in records)
    status, view = await gateway.admin("GET", f"/admin/accounts/{account}")
    assert view["reserved_credits"] == 0
    day = await gateway.app[REDIS].hgetall(keyspace.usage_day(account, gateway.clock.utc()))
    assert int(day["a:chat.completions:credits"]) == charged and int(day["a:chat.completions:requests"]) == served
