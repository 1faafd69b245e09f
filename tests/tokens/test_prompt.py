from __future__ import annotations

import json

import pytest

from gateway.tokens import JSONObject, TokenCounter
from tests.tokens.cookbook import (
    COOKBOOK_API_COUNTS,
    COOKBOOK_MESSAGES,
    COOKBOOK_TOOL_API_COUNTS,
    COOKBOOK_TOOL_MESSAGES,
    COOKBOOK_TOOLS,
)


@pytest.mark.parametrize(("model", "expected"), sorted(COOKBOOK_API_COUNTS.items()))
def test_cookbook_messages_match_api_counts(counter: TokenCounter, model: str, expected: int) -> None:
    assert counter.count_prompt_tokens(model, {"model": model, "messages": COOKBOOK_MESSAGES}) == expected


@pytest.mark.parametrize(("model", "expected"), sorted(COOKBOOK_TOOL_API_COUNTS.items()))
def test_cookbook_tools_match_api_counts(counter: TokenCounter, model: str, expected: int) -> None:
    body = {"model": model, "messages": COOKBOOK_TOOL_MESSAGES, "tools": COOKBOOK_TOOLS, "temperature": 0}
    assert counter.count_prompt_tokens(model, body) == expected


def test_dated_snapshots_count_like_their_family(counter: TokenCounter) -> None:
    body = {"messages": COOKBOOK_MESSAGES}
    assert counter.count_prompt_tokens("gpt-4o-2024-08-06", body) == 124
    assert counter.count_prompt_tokens("gpt-4o-mini-2024-07-18", body) == 124
    assert counter.count_prompt_tokens("ft:gpt-4o-mini:acme::x1", body) == 124
    assert counter.count_prompt_tokens("gpt-3.5-turbo-0125", body) == 129


def test_legacy_functions_count_like_tools(counter: TokenCounter) -> None:
    functions = [tool["function"] for tool in COOKBOOK_TOOLS]
    body = {"messages": COOKBOOK_TOOL_MESSAGES, "functions": functions}
    assert counter.count_prompt_tokens("gpt-4o", body) == 101


def _tokens(counter: TokenCounter, model: str, text: str) -> int:
    return len(counter.encoding_for(model).encode_ordinary(text))


def test_name_adds_its_tokens_plus_one(counter: TokenCounter) -> None:
    plain = {"messages": [{"role": "user", "content": "hi"}]}
    named = {"messages": [{"role": "user", "name": "alice_smith", "content": "hi"}]}
    delta = counter.count_prompt_tokens("gpt-4o", named) - counter.count_prompt_tokens("gpt-4o", plain)
    assert delta == _tokens(counter, "gpt-4o", "alice_smith") + 1


def test_string_parts_and_null_content_count_alike(counter: TokenCounter) -> None:
    text = "Summarise the attached report in three bullet points."
    as_string = {"messages": [{"role": "user", "content": text}]}
    as_parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]}
    as_null = {"messages": [{"role": "assistant", "content": None}]}
    assert counter.count_prompt_tokens("gpt-4o", as_string) == 3 + 1 + _tokens(counter, "gpt-4o", text) + 3
    assert counter.count_prompt_tokens("gpt-4o", as_parts) == counter.count_prompt_tokens("gpt-4o", as_string)
    assert counter.count_prompt_tokens("gpt-4o", as_null) == 3 + 1 + 3


def test_refusal_parts_count_their_text(counter: TokenCounter) -> None:
    # An assistant turn replayed as parts: 3 + "assistant" 1 + "I" " can't" " help" " with" " that" "." 6 + 3.
    refused = {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't help with that."}]}
    assert counter.count_prompt_tokens("gpt-4o", {"messages": [refused]}) == 3 + 1 + 6 + 3


def test_tool_call_round_trip(counter: TokenCounter) -> None:
    arguments = json.dumps({"location": "Paris, France", "unit": "celsius"})
    result = json.dumps({"temperature": 21, "conditions": "sunny"})
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc123",
                    "type": "function",
                    "function": {"name": "get_current_weather", "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc123", "content": result},
    ]

    def t(text: str) -> int:
        return _tokens(counter, "gpt-4o", text)

    # A call costs 3 beyond its name and arguments (measured for legacy function_call, hmarr); a tool result is
    # headed by its function's name, never its id (estimates: nothing is published for tool_calls and tools).
    expected = (
        (3 + t("user") + t("Weather in Paris?"))
        + (3 + t("assistant") + 3 + t("get_current_weather") + t(arguments))
        + (3 + t("get_current_weather") + t(result))
        + 3
    )
    assert counter.count_prompt_tokens("gpt-4o", {"messages": messages}) == expected


def test_tool_choice_constants_and_the_response_format_estimate(counter: TokenCounter) -> None:
    base: dict[str, object] = {"messages": COOKBOOK_TOOL_MESSAGES, "tools": COOKBOOK_TOOLS}
    plain = counter.count_prompt_tokens("gpt-4o", base)
    assert counter.count_prompt_tokens("gpt-4o", {**base, "tool_choice": "auto"}) == plain
    forced = {**base, "tool_choice": {"type": "function", "function": {"name": "get_current_weather"}}}
    # pamelafox/openai-messages-token-helper (model_helper.py, measured): 7 plus the name; "none" adds 1.
    assert counter.count_prompt_tokens("gpt-4o", forced) == plain + 7 + _tokens(
        counter, "gpt-4o", "get_current_weather"
    )
    assert counter.count_prompt_tokens("gpt-4o", {**base, "tool_choice": "none"}) == plain + 1
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    response_format = {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": True}}
    rendered = json.dumps(schema, separators=(",", ":"))
    with_schema = counter.count_prompt_tokens("gpt-4o", {**base, "response_format": response_format})
    assert with_schema == plain + _tokens(counter, "gpt-4o", "reply") + _tokens(counter, "gpt-4o", rendered)
    json_mode = {**base, "response_format": {"type": "json_object"}}
    assert counter.count_prompt_tokens("gpt-4o", json_mode) == plain


def test_nested_tool_parameters_count_more_than_flat(counter: TokenCounter) -> None:
    flat = {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "object"}}}}
    nested = {
        "name": "f",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "object", "properties": {"b": {"type": "integer", "enum": [1, 2]}}}},
        },
    }
    flat_count = counter.count_prompt_tokens("gpt-4o", {"messages": [], "functions": [flat]})
    nested_count = counter.count_prompt_tokens("gpt-4o", {"messages": [], "functions": [nested]})
    assert nested_count > flat_count


def test_special_token_text_counts_as_ordinary_text(counter: TokenCounter) -> None:
    body = {"messages": [{"role": "user", "content": "<|endoftext|><|endofprompt|>"}]}
    assert counter.count_prompt_tokens("gpt-4o", body) > 3 + 1 + 2 + 3


MALFORMED: list[JSONObject] = [
    {},
    {"messages": None},
    {"messages": "hello"},
    {"messages": [None, 1, "x", [], {"role": None}, {"content": 5}]},
    {"messages": [{"role": "user", "content": [None, 3, {"type": None}, {"type": "text", "text": None}]}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url"}, {"type": "image_url", "image_url": 7}]}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": None, "detail": 9}}]}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:"}}]}]},
    {
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,"}}]}
        ]
    },
    {"messages": [{"role": "assistant", "tool_calls": [None, {"function": None}, {"function": {"name": 1}}]}]},
    {"messages": [{"role": "assistant", "tool_calls": "x", "function_call": [1]}]},
    {"messages": [], "tools": [None, {}, {"function": None}, {"function": {"parameters": None}}]},
    {"messages": [], "tools": [{"function": {"name": None, "parameters": {"properties": [1, 2]}}}]},
    {"messages": [], "tools": [{"function": {"parameters": {"properties": {"a": None, "b": {"enum": None}}}}}]},
    {"messages": [], "tools": [{"function": {"parameters": {"properties": {"a": {"type": ["string", "null"]}}}}}]},
    {"messages": [], "tools": "all", "functions": {"a": 1}, "tool_choice": {"function": 3}},
    {"messages": [], "tool_choice": {"type": "function"}, "response_format": {"type": "json_schema"}},
    {"messages": [], "response_format": {"type": "json_schema", "json_schema": {"schema": {"x": {1, 2}}}}},
]


@pytest.mark.parametrize("body", MALFORMED)
@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4", "gpt-4.1-mini", "self-hosted"])
def test_malformed_bodies_never_raise(counter: TokenCounter, model: str, body: JSONObject) -> None:
    assert isinstance(counter.count_prompt_tokens(model, body), int)


# gpt-4o (o200k_base), worked by hand: 3 primes the reply, 3 frame each message (a dict), "user"/"assistant" are
# one token each, parts that are not what they claim count nothing, and an image part whose size cannot be
# read is billed as the configured remote size (1024x1024, high detail: 85 + 4 tiles * 170 = 765).
MALFORMED_COUNTS = [
    (MALFORMED[0], 3),  # no messages: the priming only
    (MALFORMED[1], 3),
    (MALFORMED[2], 3),
    (MALFORMED[3], 3 + 3 + 3),  # two dicts among the junk frame a message each; None role, 5 content: nothing
    (MALFORMED[4], 3 + 1 + 3),  # "user", and no part that counts
    (MALFORMED[5], 3 + 1 + 765 + 765 + 3),  # two image parts without a readable size
    (MALFORMED[6], 3 + 1 + 765 + 3),  # a detail that is no string counts as "auto"
    (MALFORMED[7], 3 + 1 + 765 + 3),
    (MALFORMED[8], 3 + 1 + 765 + 3),
    (MALFORMED[9], 3 + 1 + 3),  # "assistant"; tool calls without a string name or arguments count nothing
    (MALFORMED[10], 3 + 1 + 3),
    (MALFORMED[15], 3),  # tools that are no list, a tool_choice naming no function
    (MALFORMED[16], 3),  # a json_schema response_format without its schema
]


@pytest.mark.parametrize(("body", "expected"), MALFORMED_COUNTS)
def test_malformed_parts_count_nothing_and_the_rest_counts_as_usual(
    counter: TokenCounter, body: JSONObject, expected: int
) -> None:
    assert counter.count_prompt_tokens("gpt-4o", body) == expected


def test_deeply_nested_schema_is_bounded(counter: TokenCounter) -> None:
    properties: dict[str, object] = {}
    spec: dict[str, object] = {"type": "object", "properties": properties}
    for _ in range(500):
        child: dict[str, object] = {}
        properties["x"] = {"type": "object", "properties": child}
        properties = child
    body = {"messages": [], "tools": [{"function": {"name": "deep", "parameters": spec}}]}
    assert counter.count_prompt_tokens("gpt-4o", body) > 0
