"""Legacy completions through the gateway with the official openai client: plain and streamed, n, best_of, lists
of prompts, token arrays and echo, each billed the mock's independent usage at the configured prices; the default
max_tokens of 16 held and forwarded; hostile bodies refused before any hold."""

from __future__ import annotations

import orjson
import pytest
from openai import AsyncOpenAI

from gateway.billing import keyspace
from gateway.mock.counting import encoding
from tests.common import REFERENCE, Gateway, StartGateway

O200K = encoding("o200k_base")  # tiktoken's own o200k_base (the gateway's models here are gpt-4o-mini upstream)
PROMPT = "Say this is a test"
MILLION = 10**6


def _client(gateway: Gateway, key: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)


def _tokens(text: str) -> int:
    return len(O200K.encode(text))


async def _books_agree(gateway: Gateway, account: str, key: str, spent: int) -> None:
    """The balance, the records and /v1/usage all say `spent` micro-credits left the account."""
    await gateway.wait_settled(account)
    assert 1000 * MILLION - await gateway.balance_micros(account) == spent
    records = await gateway.redis.xrange(keyspace.request_log(account))
    assert sum(int(fields["credits_micros"]) for _, fields in records) == spent
    assert await gateway.credits_used_micros(key) == spent


async def test_plain_completion_holds_and_forwards_the_default_16_tokens(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 40})
    account, key = await gateway.new_account(credits=1000)
    client = _client(gateway, key)
    raw = await client.completions.with_raw_response.create(model="m-main", prompt=PROMPT)
    completion = raw.parse()
    # No max_tokens: OpenAI's default of 16 is what the upstream was told, and what it wrote.
    assert gateway.upstreams["main"].state.requests[-1]["max_tokens"] == 16
    assert completion.usage is not None and _tokens(PROMPT) == 5
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 16)
    assert completion.object == "text_completion" and _tokens(completion.choices[0].text) == 16
    # 5 * 1,000.25 + 16 * 2,000.15 = 5,001.25 + 32,002.4 = 37,003.65, rounded up: the hold, and the bill.
    assert REFERENCE.cost_micros(5, 16) == 37_004
    assert (completion.usage.model_extra or {})["cost"] == 0.037004
    assert raw.headers["x-credits-used"] == "0.037004"
    record = await gateway.last_record(account)
    assert (record["hold_micros"], record["credits_micros"]) == ("37004", "37004")
    await _books_agree(gateway, account, key, 37_004)
    await client.close()


async def test_the_default_16_tokens_must_be_affordable(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 4})
    account, key = await gateway.new_account(credits="0.037003")  # one micro-credit short of 5 + 16 tokens
    response = await gateway.post("/v1/completions", key, {"model": "m-main", "prompt": PROMPT})
    assert response.status == 402 and not gateway.upstreams["main"].state.requests
    await gateway.admin("POST", f"/admin/accounts/{account}/credits", {"amount": "0.000001"})
    response = await gateway.post("/v1/completions", key, {"model": "m-main", "prompt": PROMPT})
    assert response.status == 200
    # 5 * 1,000.25 + 4 * 2,000.15 = 5,001.25 + 8,000.6 = 13,001.85 -> 13,002 charged, the rest released.
    assert await gateway.balance_micros(account) == 37_004 - 13_002


@pytest.mark.parametrize("include_usage", [True, False])
async def test_streamed_completion_is_billed_the_upstreams_usage(
    start_gateway: StartGateway, include_usage: bool
) -> None:
    gateway = await start_gateway(main={"completion_tokens": 7})
    account, key = await gateway.new_account(credits=1000)
    client = _client(gateway, key)
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = await client.completions.create(model="m-main", prompt=PROMPT, max_tokens=10, stream=True, **options)  # type: ignore[call-overload]
    chunks = [chunk async for chunk in stream]
    text = "".join(choice.text for chunk in chunks for choice in chunk.choices)
    assert _tokens(text) == 7
    # The gateway asks for the usage chunk on its own behalf; the client sees it only when it asked.
    assert gateway.upstreams["main"].state.requests[-1]["stream_options"] == {"include_usage": True}
    # 5 * 1,000.25 + 7 * 2,000.15 = 5,001.25 + 14,001.05 = 19,002.3, rounded up.
    cost = REFERENCE.cost_micros(5, 7)
    assert cost == 19_003
    usages = [chunk.usage for chunk in chunks if chunk.usage is not None]
    if include_usage:
        [usage] = usages
        assert chunks[-1].choices == [] and (usage.prompt_tokens, usage.completion_tokens) == (5, 7)
        assert (usage.model_extra or {})["cost"] == 0.019003
    else:
        assert usages == []
    record = await gateway.last_record(account)
    assert (record["usage_source"], record["stream"]) == ("upstream", "1")
    await _books_agree(gateway, account, key, cost)
    await client.close()


async def test_n_best_of_and_a_list_of_prompts_are_held_and_billed_whole(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 8})
    account, key = await gateway.new_account(credits=1000)
    client = _client(gateway, key)
    prompts = [PROMPT, "Once upon a time"]
    completion = await client.completions.create(model="m-main", prompt=prompts, n=2, best_of=3, max_tokens=5)
    # Two prompts, two choices returned each, indexed prompt by prompt.
    assert [choice.index for choice in completion.choices] == [0, 1, 2, 3]
    prompt_tokens = _tokens(PROMPT) + _tokens("Once upon a time")
    assert prompt_tokens == 9
    # The mock generated best_of = 3 candidates of 5 tokens per prompt: 30 completion tokens, as OpenAI bills them.
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (9, 30)
    # Held: 9 * 1,000.25 + 2 prompts * 3 candidates * 5 tokens * 2,000.15 = 9,002.25 + 60,004.5 = 69,006.75.
    record = await gateway.last_record(account)
    assert record["hold_micros"] == str(REFERENCE.cost_micros(9, 30)) == "69007"
    assert record["credits_micros"] == "69007"
    await _books_agree(gateway, account, key, 69_007)
    await client.close()


@pytest.mark.parametrize("stream", [False, True])
async def test_echo_is_not_billed_as_output(start_gateway: StartGateway, stream: bool) -> None:
    # No upstream usage: the gateway's own count is the bill, and it must leave the echoed prompt out.
    gateway = await start_gateway(main={"completion_tokens": 4, "usage": False})
    account, key = await gateway.new_account(credits=1000)
    body: dict[str, object] = {"model": "m-main", "prompt": [PROMPT, "Ünïcödé 東京"], "echo": True, "n": 2}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    response = await gateway.post("/v1/completions", key, body)
    assert response.status == 200
    if stream:
        events = [orjson.loads(e[6:]) for e in (await response.read()).split(b"\n\n") if e.startswith(b"data: {")]
        texts: dict[int, str] = {}
        for event in events:
            for choice in event["choices"]:
                texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
        usage = events[-1]["usage"]
        assert events[-1]["object"] == "text_completion" and events[-1]["choices"] == []
    else:
        payload = await response.json()
        texts = {choice["index"]: choice["text"] for choice in payload["choices"]}
        usage = payload["usage"]
    echoed = [PROMPT, "Ünïcödé 東京"]
    assert [texts[index].startswith(echoed[index // 2]) for index in range(4)] == [True] * 4
    prompt_tokens = _tokens(PROMPT) + _tokens("Ünïcödé 東京")
    # 2 prompts * 2 choices * 4 tokens, the echo left out.
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (prompt_tokens, 16)
    record = await gateway.last_record(account)
    assert (record["usage_source"], record["completion_tokens"]) == ("gateway", "16")
    await _books_agree(gateway, account, key, REFERENCE.cost_micros(prompt_tokens, 16))


async def test_echo_with_upstream_usage_bills_the_completion_only(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 3})
    account, key = await gateway.new_account(credits=1000)
    client = _client(gateway, key)
    completion = await client.completions.create(model="m-main", prompt=[1, 2, 3, 4], echo=True, max_tokens=3)
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (4, 3)
    record = await gateway.last_record(account)
    # The gateway's own count agrees with the upstream's: the echoed token array is no output.
    assert (record["gateway_prompt_tokens"], record["gateway_completion_tokens"]) == ("4", "3")
    await _books_agree(gateway, account, key, REFERENCE.cost_micros(4, 3))
    await client.close()


async def test_a_stream_without_upstream_usage_gets_the_gateways_closing_chunk(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(main={"completion_tokens": 6, "usage": False})
    account, key = await gateway.new_account(credits=1000)
    client = _client(gateway, key)
    stream = await client.completions.create(
        model="m-main", prompt=PROMPT, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    last = chunks[-1]
    assert last.object == "text_completion" and last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (5, 6)
    # 5 * 1,000.25 + 6 * 2,000.15 = 5,001.25 + 12,000.9 = 17,002.15, rounded up.
    assert (last.usage.model_extra or {})["cost"] == 0.017003
    await _books_agree(gateway, account, key, 17_003)
    await client.close()


async def test_count_tokens_holds_every_candidate(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    _, key = await gateway.new_account(credits=1000)
    body = {"model": "m-main", "prompt": [PROMPT, PROMPT], "n": 2, "best_of": 4, "suffix": " end"}
    preview = await (await gateway.post("/v1/completions/count_tokens", key, body)).json()
    # Two prompts of 5 tokens, the suffix (1 token) read with each; 2 prompts * 4 candidates * 16 tokens.
    assert (preview["prompt_tokens"], preview["max_completion_tokens"]) == (12, 128)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m-main"}, "prompt"),
        ({"model": "m-main", "prompt": []}, "prompt"),
        ({"model": "m-main", "prompt": [[]]}, "prompt[0]"),
        ({"model": "m-main", "prompt": ["a", ["b"]]}, "prompt[1]"),
        ({"model": "m-main", "prompt": [1, 2**35]}, "prompt[1]"),
        ({"model": "m-main", "prompt": [[[1]]]}, "prompt[0][0]"),
        ({"model": "m-main", "prompt": 12}, "prompt"),
        ({"model": "m-main", "prompt": "hi", "max_tokens": -1}, "max_tokens"),
        ({"model": "m-main", "prompt": "hi", "max_tokens": "16"}, "max_tokens"),
        ({"model": "m-main", "prompt": "hi", "n": 0}, "n"),
        ({"model": "m-main", "prompt": "hi", "n": 3, "best_of": 2}, "best_of"),
        ({"model": "m-main", "prompt": "hi", "best_of": 21}, "best_of"),
        ({"model": "m-main", "prompt": "hi", "best_of": 2, "stream": True}, "best_of"),
        ({"model": "m-main", "prompt": "hi", "echo": "yes"}, "echo"),
        ({"model": "m-main", "prompt": "hi", "suffix": 5}, "suffix"),
        ({"model": "m-main", "prompt": "hi", "stream": "true"}, "stream"),
        ({"model": "m-main", "prompt": "hi", "stream_options": {"include_usage": 1}}, "stream_options"),
    ],
)
async def test_hostile_bodies_are_refused_before_any_hold(
    start_gateway: StartGateway, body: dict[str, object], param: str
) -> None:
    gateway = await start_gateway()
    account, key = await gateway.new_account(credits=1000)
    response = await gateway.post("/v1/completions", key, body)
    assert response.status == 400
    error = (await response.json())["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param
    assert response.headers["x-credits-used"] == "0"
    assert await gateway.balance_micros(account) == 1000 * MILLION
    assert await gateway.redis.xlen(keyspace.request_log(account)) == 0
    assert not gateway.upstreams["main"].state.requests
