from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import pytest

from gateway.tokens.encodings import get_encoding
from gateway.tokens.functions import (
    MAX_SCHEMA_DEPTH,
    RenderStyle,
    count_prompt_tokens_with_functions,
    function_definitions,
    render_function_definitions,
)
from gateway.tokens.images import image_part_tokens, image_profile
from gateway.tokens.models import ModelResolver, chat_format
from gateway.tokens.payload import JSONObject
from gateway.tokens.prompt import PromptPlan, count_prompt_tokens

PUBLISHED = json.loads((Path(__file__).parent / "published_counts.json").read_text(encoding="utf-8"))
CASES: list[dict[str, object]] = PUBLISHED["cases"]


@cache
def _plan(model: str) -> PromptPlan:
    info = ModelResolver("o200k_base", {}).resolve(model)
    return PromptPlan(get_encoding(info.encoding_name), chat_format(info), image_profile(info.base), (1024, 1024))


def _count(model: str, body: JSONObject) -> int:
    plan = _plan(model)

    def content(value: object) -> int:
        # What prompt.py's content counting does: text parts plus image parts.
        total = 0
        for part in value if isinstance(value, list) else []:
            if isinstance(part, Mapping) and part.get("type") == "image_url":
                total += image_part_tokens(plan.image_profile, part.get("image_url"), plan.remote_image_size)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                total += plan.count(part["text"])
        return total

    return count_prompt_tokens_with_functions(plan.count, plan.fmt, body, content)


def _tools(*functions: JSONObject) -> list[JSONObject]:
    return [{"type": "function", "function": function} for function in functions]


@pytest.mark.parametrize("case", CASES, ids=[str(case["id"]) for case in CASES])
def test_published_count_is_matched_exactly(case: dict[str, object]) -> None:
    model = case.get("count_as_model", case["model"])
    assert isinstance(model, str) and isinstance(case["body"], dict)
    assert _count(model, case["body"]) == case["prompt_tokens"]


def test_published_cases_cite_their_sources() -> None:
    per_repository: dict[str, int] = {}
    for case in CASES:
        source = case["source"]
        assert isinstance(source, dict) and isinstance(case["prompt_tokens"], int)
        assert re.fullmatch(r"[0-9a-f]{40}", source["commit"]) and source["path"]
        per_repository[source["repository"]] = per_repository.get(source["repository"], 0) + 1
    assert per_repository == {
        "hmarr/openai-chat-tokens": 36,
        "pamelafox/openai-messages-token-helper": 54,
        "openai/openai-cookbook": 15,
    }
    assert len({case["id"] for case in CASES}) == len(CASES)


def _plain(message: JSONObject) -> bool:
    return message.keys() <= {"role", "content", "name"} and message.get("role") not in ("function", "tool")


def test_plain_messages_count_as_prompt_py_does() -> None:
    # Without functions, role/content/name messages follow the same cookbook rule as prompt.py.
    compared = 0
    for case in CASES:
        body = case["body"]
        assert isinstance(body, dict)
        if "functions" not in body and "tools" not in body and all(_plain(m) for m in body["messages"]):
            model = str(case.get("count_as_model", case["model"]))
            assert _count(model, body) == count_prompt_tokens(_plan(model), body)
            compared += 1
    assert compared == 58


# pamelafox/openai-messages-token-helper@b60075e3b4ec659b58fa06b2c27e7b0afc1587a2, tests/functions.py: the
# text its formatter renders for `inner_object`; hmarr's (legacy) layout gives the same text.
PAMELAFOX_INNER_OBJECT = """namespace functions {

// This is the main function description
type data_demonstration = (_: {
// The object data type as a property
object_1: {
  string1?: string,
},
}) => any;

} // namespace functions"""
PAMELAFOX_INNER_OBJECT_ENUM = """namespace functions {

// This is the main function description
type data_demonstration = (_: {
// The object data type as a property
object_1: {
  string_2a?: "Happy" | "Sad",
},
}) => any;

} // namespace functions"""


def _inner_object(nested: JSONObject) -> JSONObject:
    return {
        "name": "data_demonstration",
        "description": "This is the main function description",
        "parameters": {
            "type": "object",
            "properties": {
                "object_1": {
                    "type": "object",
                    "description": "The object data type as a property",
                    "properties": nested,
                }
            },
            "required": ["object_1"],
        },
    }


def test_legacy_rendering_matches_reference_text() -> None:
    plain = _inner_object({"string1": {"type": "string"}})
    enum = _inner_object({"string_2a": {"type": "string", "enum": ["Happy", "Sad"]}})
    assert render_function_definitions([plain], RenderStyle.LEGACY) == PAMELAFOX_INNER_OBJECT
    assert render_function_definitions([enum], RenderStyle.LEGACY) == PAMELAFOX_INNER_OBJECT_ENUM


# openai/harmony@ec7606df9e87e3d0a1fec9f50928c1e407f0c438, test-data/test_render_functions_with_parameters.txt
# (schemas from src/tests.rs): OpenAI's own renderer, for gpt-oss. It publishes no counts; used here for the
# layout of described properties and of `default`.
HARMONY_TEXT = """namespace functions {

// Gets the location of the user.
type get_location = () => any;

// Gets the current weather in the provided location.
type get_current_weather = (_: {
// The city and state, e.g. San Francisco, CA
location: string,
format?: "celsius" | "fahrenheit", // default: celsius
}) => any;

// Gets the current weather in the provided list of locations.
type get_multiple_weathers = (_: {
// List of city and state, e.g. ["San Francisco, CA", "New York, NY"]
locations: string[],
format?: "celsius" | "fahrenheit", // default: celsius
}) => any;

} // namespace functions"""


def test_tools_rendering_matches_openai_harmony_text() -> None:
    unit = {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"}
    functions: list[JSONObject] = [
        {"name": "get_location", "description": "Gets the location of the user."},
        {
            "name": "get_current_weather",
            "description": "Gets the current weather in the provided location.",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                    "format": unit,
                },
                "required": ["location"],
            },
        },
        {
            "name": "get_multiple_weathers",
            "description": "Gets the current weather in the provided list of locations.",
            "parameters": {
                "type": "object",
                "properties": {
                    "locations": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": 'List of city and state, e.g. ["San Francisco, CA", "New York, NY"]',
                    },
                    "format": unit,
                },
                "required": ["locations"],
            },
        },
    ]
    assert render_function_definitions(functions, RenderStyle.TOOLS) == HARMONY_TEXT


def test_tools_layout_keeps_nested_descriptions_flat_and_comment_free_objects_inline() -> None:
    # Our inference from pamelafox's API counts (integer_enum, no_parameter_description, inner_object):
    # an object with no comment inside is written on one line.
    nested = _inner_object({"a": {"type": "string", "description": "Kept"}, "b": {"type": "integer", "enum": [-1, 1]}})
    flat = {"name": "f", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}
    text = render_function_definitions([nested, flat], RenderStyle.TOOLS)
    assert "object_1: {\n// Kept\na?: string,\nb?: -1 | 1,\n}," in text
    assert "type f = (_: { q: string }) => any;" in text
    legacy = render_function_definitions([nested], RenderStyle.LEGACY)
    assert "object_1: {\n  a?: string,\n  b?: -1 | 1,\n}," in legacy


def test_shapes_without_parameters_and_unions() -> None:
    functions: list[JSONObject] = [
        {"name": "none"},
        {"name": "empty", "parameters": {"type": "object", "properties": {}}},
        {"name": "u", "parameters": {"type": "object", "properties": {"x": {"anyOf": [{"type": "null"}, {}]}}}},
        {"name": "t", "parameters": {"type": "object", "properties": {"y": {"type": ["integer", "null"]}}}},
        {
            "name": "o",
            "parameters": {"type": "object", "properties": {"z": {"type": "object"}, "w": {"type": "array"}}},
        },
    ]
    text = render_function_definitions(functions, RenderStyle.TOOLS)
    assert "type none = () => any;\n\ntype empty = () => any;" in text
    assert "type u = (_: { x?: null | any }) => any;" in text
    assert "type t = (_: { y?: number | null }) => any;" in text
    assert "type o = (_: { z?: object, w?: any[] }) => any;" in text


def test_style_follows_the_request_parameter() -> None:
    function = {"name": "f"}
    assert function_definitions({"functions": [function]}) == ([function], RenderStyle.LEGACY)
    assert function_definitions({"tools": _tools(function)}) == ([function], RenderStyle.TOOLS)
    assert function_definitions({"tools": [{"type": "web_search"}, {"type": "function"}]}) == ([], RenderStyle.LEGACY)


def test_estimates_for_tool_results_calls_and_required() -> None:
    # No published counts: a tool result counts as a function result named after its call, and each
    # tool call as one function_call; "required" as "auto"; a developer message merges like a system one.
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"x"}'}}
    as_tools = [
        {"role": "assistant", "content": None, "tool_calls": [call, call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "found"},
    ]
    as_functions = [
        {"role": "assistant", "content": None, "function_call": call["function"]},
        {"role": "assistant", "content": None, "function_call": call["function"]},
        {"role": "function", "name": "lookup", "content": "found"},
    ]
    tools = _tools({"name": "lookup"})
    one_message = _count("gpt-4o", {"messages": [{"role": "assistant"}]}) - _count("gpt-4o", {"messages": []})
    assert _count("gpt-4o", {"messages": as_tools}) == _count("gpt-4o", {"messages": as_functions}) - one_message
    auto = _count("gpt-4o", {"messages": as_tools, "tools": tools, "tool_choice": "auto"})
    assert _count("gpt-4o", {"messages": as_tools, "tools": tools, "tool_choice": "required"}) == auto
    system = {"messages": [{"role": "system", "content": "Be brief."}], "tools": tools}
    developer = {"messages": [{"role": "developer", "content": "Be brief."}], "tools": tools}
    assert _count("gpt-4o", developer) == _count("gpt-4o", system)


def test_forced_choice_accepts_either_shape() -> None:
    body: dict[str, object] = {"messages": [{"role": "user", "content": "hi"}], "tools": _tools({"name": "f"})}
    named = {"type": "function", "function": {"name": "f"}}
    base = _count("gpt-4o", body)
    assert _count("gpt-4o", {**body, "tool_choice": named}) == base + 7 + 1
    assert _count("gpt-4o", {**body, "tool_choice": None, "function_call": {"name": "f"}}) == base + 4 + 1
    assert _count("gpt-4o", {**body, "tool_choice": "none"}) == base + 1


def test_system_content_as_parts_is_padded_like_a_string() -> None:
    tools = _tools({"name": "f"})
    as_string = {"messages": [{"role": "system", "content": "Hello:"}], "tools": tools}
    as_parts = {"messages": [{"role": "system", "content": [{"type": "text", "text": "Hello:"}]}], "tools": tools}
    assert _count("gpt-3.5-turbo", as_parts) == _count("gpt-3.5-turbo", as_string)


def _nested(levels: int) -> JSONObject:
    schema: JSONObject = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}, "anyOf": None}
    return schema


@pytest.mark.parametrize("style", list(RenderStyle))
def test_schema_depth_is_bounded(style: RenderStyle) -> None:
    def render(levels: int) -> str:
        function = {"name": "deep", "parameters": {"type": "object", "properties": {"p": _nested(levels)}}}
        return render_function_definitions([function], style)

    # Past the bound the rest renders as `any`, so 10,000 levels cost what MAX_SCHEMA_DEPTH + 5 do.
    assert render(10_000) == render(MAX_SCHEMA_DEPTH + 5) != render(MAX_SCHEMA_DEPTH - 5)
    assert "any" in render(10_000)
    deep = {"messages": [], "tools": _tools({"name": "d", "parameters": _nested(10_000)})}
    assert _count("gpt-4o", deep) > 0


def _deep_list(levels: int) -> object:
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


MALFORMED: list[object] = [
    {},
    {"messages": "hi", "tools": "x", "functions": 3, "tool_choice": 5, "function_call": []},
    {"messages": [None, 1, "x", {"role": 7, "content": {"a": 1}, "name": 3}]},
    {"messages": [{"role": ["system"], "content": "x"}, {"role": {"a": 1}}], "tools": _tools({"name": "f"})},
    {"messages": [{"role": "tool", "tool_call_id": 9}, {"role": "function", "content": None}]},
    {"messages": [{"role": "assistant", "tool_calls": "x", "function_call": "y"}]},
    {"messages": [{"role": "assistant", "tool_calls": [1, {"function": 2}, {"id": 3, "function": {"name": 4}}]}]},
    {"messages": [{"role": "system", "content": [1, {"type": "text", "text": 2}]}], "functions": [{"name": "f"}]},
    {"tools": [1, {"type": "function"}, {"function": "f"}, {"function": {"name": 5}}], "tool_choice": {"function": 1}},
    {"functions": [{"name": "f", "description": 7, "parameters": []}], "function_call": {"name": None}},
    {"functions": [{"name": "f", "parameters": {"properties": [], "required": "a"}}]},
    {"functions": [{"name": "f", "parameters": {"properties": {"a": "string", "b": None, "c": {"type": 5}}}}]},
    {"functions": [{"name": "f", "parameters": {"properties": {"a": {"type": "string", "enum": "xy"}}}}]},
    {"functions": [{"name": "f", "parameters": {"properties": {"a": {"anyOf": [1, None], "items": []}}}}]},
    {"tools": _tools({"name": "f", "parameters": {"properties": {"a": {"type": "array", "items": [1]}}}})},
    {"tools": _tools({"name": "f", "parameters": {"properties": {"a": {"enum": [{"x": [1]}, 1.5, 2.0, True, None]}}}})},
    {"tools": _tools({"name": "f", "parameters": {"properties": {"a": {"type": "number", "enum": [1e300, -0.0]}}}})},
    {"tools": _tools({"name": "f", "parameters": {"properties": {"a": {"type": "string", "default": None}}}})},
    {"tools": _tools({"name": "f", "parameters": {"properties": {"a": {"default": _deep_list(10_000)}}}})},
    {"tools": _tools({"name": "f", "parameters": {"properties": {"a": {"type": ["string", 3], "oneOf": "x"}}}})},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": _deep_list(10_000)}}},
]


@pytest.mark.parametrize("body", MALFORMED)
def test_malformed_input_never_raises(body: JSONObject) -> None:
    assert _count("gpt-4o", body) >= 0
    assert _count("gpt-3.5-turbo-0301", body) >= 0


def test_enum_values_render_as_javascript_shows_them() -> None:
    values = ["a", True, None, 2.0, 1.5, {"k": [1]}]
    function = {"name": "f", "parameters": {"type": "object", "properties": {"e": {"type": "string", "enum": values}}}}
    text = render_function_definitions([function], RenderStyle.LEGACY)
    assert 'e?: "a" | "true" | "null" | "2" | "1.5" | "{"k":[1]}",' in text


def test_list_content_counts_text_and_refusal_parts_by_default() -> None:
    plan = _plan("gpt-4o")
    parts = ["plain", {"type": "text", "text": "Hi"}, {"type": "refusal", "refusal": "No"}, {"type": "image_url"}]
    body = {"messages": [{"role": "user", "content": parts}, {"role": "user", "content": 5}]}
    expected = plan.fmt.reply_priming + 2 * (plan.fmt.tokens_per_message + 1) + 3
    assert count_prompt_tokens_with_functions(plan.count, plan.fmt, body) == expected
