"""Every published API-observed prompt count (tests/tokens/published_counts.json: hmarr/openai-chat-tokens,
pamelafox/openai-messages-token-helper and the OpenAI cookbook, each case citing its file and commit) sent
through the proxy to an upstream that reports no usage: the gateway's own count is the bill, and it must be
the API's number exactly, in the record and in the charge."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.config import ModelConfig
from tests.common import REFERENCE, TEST_PRICE, StartGateway

PUBLISHED = json.loads((Path(__file__).parent.parent / "tokens" / "published_counts.json").read_text("utf-8"))
CASES: list[dict[str, object]] = PUBLISHED["cases"]
COMPLETION_TOKENS = 4  # the mock's reply: four one-token words in every encoding


def _model(case: dict[str, object]) -> str:
    """The model the API counted with (an undated name stood for the snapshot of its day)."""
    return str(case.get("count_as_model", case["model"]))


async def test_every_published_count_is_billed_exactly_through_the_proxy(start_gateway: StartGateway) -> None:
    models = {
        name: ModelConfig(name=name, upstream="main", upstream_model=name, price=TEST_PRICE)
        for name in {_model(case) for case in CASES}
    }
    gateway = await start_gateway({"models": models}, main={"completion_tokens": COMPLETION_TOKENS, "usage": False})
    account, key = await gateway.new_account(credits=10_000)
    wrong = []
    for case in CASES:
        body = {**case["body"], "model": _model(case), "max_tokens": 10}  # type: ignore[dict-item]
        response = await gateway.chat(key, body)
        assert response.status == 200, (case["id"], await response.text())
        usage = (await response.json())["usage"]
        record = await gateway.last_record(account)
        published = case["prompt_tokens"]
        assert isinstance(published, int)
        seen = (usage["prompt_tokens"], int(record["prompt_tokens"]), int(record["credits_micros"]))
        if seen != (published, published, REFERENCE.cost_micros(published, COMPLETION_TOKENS)):
            wrong.append((case["id"], published, seen))
        assert usage["completion_tokens"] == COMPLETION_TOKENS
    assert not wrong, wrong
    assert len(CASES) >= 100
