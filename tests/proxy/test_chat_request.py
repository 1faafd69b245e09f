"""Chat's request checks and stream events, without HTTP: each refusal names its field and says what is wrong (the
messages written out here by hand: they are what a client reads), and the events the gateway writes itself."""

from __future__ import annotations

import orjson
import pytest

from gateway.billing.record import Usage
from gateway.billing.scripts import SettleOutcome
from gateway.config import ModelConfig
from gateway.errors import ContextLengthExceeded, InvalidRequest
from gateway.proxy.apis import ApiRequest
from gateway.proxy.apis.chat import CHAT
from gateway.proxy.apis.completions import COMPLETIONS
from gateway.proxy.metering import check_context
from gateway.tokens import TokenCounter
from tests.common import TEST_PRICE

HELLO = [{"role": "user", "content": "Hello!"}]
OPTIONS = {"model": "m", "messages": HELLO, "stream_options": 1}
ROLES = "assistant, developer, function, system, tool, user"


@pytest.mark.parametrize(
    ("raw", "param", "message"),
    [
        (b"{", None, "We could not parse the JSON body of your request. The body must be valid JSON."),
        (b"[]", None, "The request body must be a JSON object."),
        ({"messages": HELLO}, "model", "'model' is required and must be a non-empty string."),
        ({"model": "m"}, "messages", "'messages' is required and must be a non-empty array."),
        ({"model": "m", "messages": []}, "messages", "'messages' is required and must be a non-empty array."),
        ({"model": "m", "messages": [5]}, "messages[0]", "'messages[0]' must be an object."),
        (
            {"model": "m", "messages": [{"role": "x"}]},
            "messages[0].role",
            f"'messages[0].role' must be one of {ROLES}.",
        ),
        ({"model": "m", "messages": HELLO, "stream": "yes"}, "stream", "'stream' must be of type boolean."),
        ({"model": "m", "messages": HELLO, "n": True}, "n", "'n' must be of type integer."),
        (
            {"model": "m", "messages": HELLO, "stream_options": 1},
            "stream_options",
            "'stream_options' must be of type object.",
        ),
        (
            {"model": "m", "messages": HELLO, "stream_options": {"include_usage": 1}},
            "stream_options",
            "'stream_options.include_usage' must be a boolean.",
        ),
        ({"model": "m", "messages": HELLO, "n": 0}, "n", "'n' must be between 1 and 128."),
        ({"model": "m", "messages": HELLO, "n": 129}, "n", "'n' must be between 1 and 128."),
        ({"model": "m", "messages": HELLO, "max_tokens": 0}, "max_tokens", "'max_tokens' must be a positive integer."),
        (
            {"model": "m", "messages": HELLO, "max_completion_tokens": 0},
            "max_completion_tokens",
            "'max_completion_tokens' must be a positive integer.",
        ),
    ],
)
def test_each_refusal_names_its_field_and_says_what_is_wrong(
    raw: bytes | dict[str, object], param: str | None, message: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        CHAT.parse(raw if isinstance(raw, bytes) else orjson.dumps(raw))
    assert (refused.value.param, refused.value.message) == (param, message)


def test_what_a_plain_request_leaves_unset() -> None:
    request = CHAT.parse(orjson.dumps({"model": "m", "messages": HELLO}))
    assert (request.stream, request.client_wants_usage, request.max_tokens, request.n) == (False, False, None, 1)
    smallest = CHAT.parse(orjson.dumps({"model": "m", "messages": HELLO, "max_tokens": 1, "n": 128}))
    assert (smallest.max_tokens, smallest.n) == (1, 128)
    both = CHAT.parse(orjson.dumps({"model": "m", "messages": HELLO, "max_tokens": 7, "max_completion_tokens": 5}))
    assert both.max_tokens == 7  # the larger bound: the upstream may honour either


REQUEST = ApiRequest({"model": "m", "messages": HELLO}, "m", True, True, None, 1)
BILL = SettleOutcome(True, 1_000_000, 2_500)


def test_the_closing_chunk_falls_back_to_the_gateways_own_id_and_the_requests_model() -> None:
    """An upstream that sent no chunk with an id, model or time: the chunk is still a whole one."""
    closing = CHAT.stream_format(REQUEST, "req_1").closing_event(Usage(3, 2), BILL, {})
    assert closing["id"] == "req_1" and closing["model"] == "m" and closing["object"] == "chat.completion.chunk"
    assert isinstance(closing["created"], int) and closing["created"] > 1_700_000_000
    assert closing["choices"] == []
    kept = CHAT.stream_format(REQUEST, "req_1").closing_event(
        Usage(3, 2), BILL, {"id": "chatcmpl-9", "model": "gpt-4o-mini-2024", "created": 17}
    )
    assert (kept["id"], kept["model"], kept["created"]) == ("chatcmpl-9", "gpt-4o-mini-2024", 17)


def test_a_usage_chunk_shown_clamped_mid_stream_carries_no_bill() -> None:
    chunk = {"id": "c", "choices": [], "usage": {"prompt_tokens": 10**9, "completion_tokens": 2, "total_tokens": 0}}
    stamped = CHAT.stream_format(REQUEST, "req_1").stamp(chunk, Usage(272, 2, clamped=("prompt",)), None)
    usage = stamped["usage"]
    assert isinstance(usage, dict) and usage["prompt_tokens"] == 272 and "cost" not in usage


MODEL = ModelConfig(name="m", upstream="main", upstream_model="gpt-4o-mini", price=TEST_PRICE, context_window=100)


def test_a_prompt_that_fills_the_context_leaves_no_room_for_output() -> None:
    """An answer needs at least one output token; embeddings (no output) may fill the window."""
    check_context(REQUEST, MODEL, 99)
    with pytest.raises(ContextLengthExceeded):
        check_context(REQUEST, MODEL, 100)
    embedding = ApiRequest({"model": "m", "input": "x"}, "m", False, False, None, 1, produces_output=False)
    check_context(embedding, MODEL, 100)
    with pytest.raises(ContextLengthExceeded):
        check_context(embedding, MODEL, 101)


def test_the_history_is_the_prompt_less_the_last_message_alone() -> None:
    counter = TokenCounter()
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
    ]
    request = CHAT.parse(orjson.dumps({"model": "gpt-4o", "messages": messages}))
    prompt = counter.count_prompt_tokens("gpt-4o", request.body)
    last = counter.count_prompt_tokens("gpt-4o", {"model": "gpt-4o", "messages": messages[-1:]})
    assert CHAT.history_tokens(counter, request, prompt) == prompt - last > 0


def test_a_field_of_another_json_type_is_named_in_json_terms() -> None:
    with pytest.raises(InvalidRequest) as refused:
        COMPLETIONS.parse(orjson.dumps({"model": "m", "prompt": "Say hi", "suffix": 5}))
    assert (refused.value.param, refused.value.message) == ("suffix", "'suffix' must be of type string.")
