"""The function block's rendering beyond the published cases, written out by hand from the rules
gateway/tokens/functions.py documents: scalar kinds, enum literals, `default` comments, oneOf and type lists,
arrays, the depth cap, skipped functions; and the message rules around it (refusals, tool results named after
their call, the newline that joins the block to a system message).

`T(text)` is tiktoken itself (through the mock upstream's counter); 3 per message and 3 priming the reply are
the cookbook's framing for gpt-4o.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.mock.counting import count_text
from gateway.tokens import TokenCounter
from gateway.tokens.functions import (
    RenderStyle,
    count_prompt_tokens_with_functions,
    function_definitions,
    render_function_definitions,
)
from gateway.tokens.models import ChatFormat

MODEL = "gpt-4o"
PER_MESSAGE, PRIMING = 3, 3


def T(text: str) -> int:
    return count_text(MODEL, text)


def block(*declarations: str) -> str:
    return "\n".join(
        ["namespace functions {", "", *(line for d in declarations for line in (d, "")), "} // namespace functions"]
    )


def tools_type(properties: Mapping[str, object], required: list[str] | None = None) -> str:
    """What the TOOLS style renders for `f`'s parameters, with the rest of the block stripped."""
    parameters = {"type": "object", "properties": properties, "required": required or []}
    text = render_function_definitions([{"name": "f", "parameters": parameters}], RenderStyle.TOOLS)
    return text.removeprefix("namespace functions {\n\ntype f = (_: ").removesuffix(
        ") => any;\n\n} // namespace functions"
    )


def test_scalar_kinds() -> None:
    properties = {"a": {"type": "number"}, "b": {"type": "boolean"}, "c": {"type": "null"}, "d": {"type": "integer"}}
    assert tools_type(properties, ["a"]) == "{ a: number, b?: boolean, c?: null, d?: number }"


def test_malformed_property_specs_render_as_plainly_as_they_can() -> None:
    properties = {
        "a": "not a schema",
        "b": {"type": "string", "description": 5},  # not text: no comment
        "c": {"type": "string", "enum": "ab"},  # not a list: no literals
        "d": {"type": "string", "enum": []},
    }
    assert tools_type(properties) == "{ a?: any, b?: string, c?: string, d?: string }"


def test_a_multi_line_member_puts_its_parent_on_several_lines() -> None:
    inner = {"type": "object", "properties": {"i": {"type": "string", "description": "d"}}}
    assert tools_type({"o": inner}) == "{\no?: {\n// d\ni?: string,\n},\n}"


def test_enum_literals() -> None:
    properties = {
        "s": {"type": "string", "enum": ["x", "y"]},
        "k": {"type": "number", "enum": [1, 2.0, 2.5, True, False, None, 1e21]},
        "t": {"type": "boolean", "enum": [True]},
    }
    # floats that are whole print as integers below 1e21 (as JavaScript does); booleans keep no enum
    assert tools_type(properties) == '{ s?: "x" | "y", k?: 1 | 2 | 2.5 | true | false | null | 1e+21, t?: boolean }'


def test_default_comments_put_one_member_per_line() -> None:
    assert tools_type({"n": {"type": "integer", "default": 1}}) == "{\nn?: number, // default: 1\n}"
    assert tools_type({"u": {"type": "string", "default": "celsius"}}) == '{\nu?: string, // default: "celsius"\n}'
    enum = {"u": {"type": "string", "enum": ["c", "f"], "default": "c"}}
    assert tools_type(enum) == '{\nu?: "c" | "f", // default: c\n}'
    assert tools_type({"z": {"type": "null", "default": None}}) == "{\nz?: null, // default: null\n}"
    assert (
        tools_type({"o": {"type": "object", "default": {"a": [1, 2]}}}) == '{\no?: object, // default: {"a":[1,2]}\n}'
    )


def test_variants_and_type_lists() -> None:
    properties = {
        "v": {"oneOf": [{"type": "string"}, {"type": "number"}]},
        "w": {"type": ["string", "null", "custom"]},
        "x": {"type": []},
        "y": {"anyOf": [{"type": "boolean"}, 5]},
    }
    assert tools_type(properties) == "{ v?: string | number, w?: string | null | custom, x?: any, y?: boolean | any }"


def test_arrays() -> None:
    properties = {
        "l": {"type": "array", "items": {"type": "string"}},
        "m": {"type": "array"},
        "q": {"type": "array", "items": {}},
    }
    assert tools_type(properties) == "{ l?: string[], m?: any[], q?: any[] }"


def _nested(depth: int, key: str) -> dict[str, object]:
    """`depth` levels of array items (key "items") or anyOf variants (key "anyOf") around a string."""
    schema: dict[str, object] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "array", "items": schema} if key == "items" else {"anyOf": [schema]}
    return schema


def test_types_deeper_than_16_levels_render_as_any() -> None:
    # The property is at depth 1; levels 1 to 16 render, the 17th is `any`.
    assert tools_type({"p": _nested(20, "items")}) == "{ p?: any" + "[]" * 16 + " }"
    assert tools_type({"p": _nested(20, "anyOf")}) == "{ p?: any }"
    assert tools_type({"p": _nested(15, "items")}) == "{ p?: string" + "[]" * 15 + " }"
    assert tools_type({"p": _nested(15, "anyOf")}) == "{ p?: string }"


def test_legacy_types_deeper_than_16_levels_render_as_any() -> None:
    def legacy(schema: dict[str, object]) -> str:
        function = {"name": "f", "parameters": {"type": "object", "properties": {"p": schema}, "required": ["p"]}}
        return render_function_definitions([function], RenderStyle.LEGACY)

    assert legacy(_nested(20, "items")) == block("type f = (_: {\np: any" + "[]" * 16 + ",\n}) => any;")
    assert legacy(_nested(20, "anyOf")) == block("type f = (_: {\np: any,\n}) => any;")
    assert legacy(_nested(15, "items")) == block("type f = (_: {\np: string" + "[]" * 15 + ",\n}) => any;")
    assert legacy(_nested(15, "anyOf")) == block("type f = (_: {\np: string,\n}) => any;")
    for no_items in ({"type": "array", "items": {}}, {"type": "array"}, {"type": "array", "items": "string"}):
        assert legacy(no_items) == block("type f = (_: {\np: any[],\n}) => any;")
    assert legacy({"type": "custom"}) == block("type f = (_: {\np: any,\n}) => any;")


def test_functions_without_a_name_are_skipped_and_empty_descriptions_dropped() -> None:
    functions = [{"description": "nameless"}, {"name": "g", "description": ""}, {"name": "h", "description": 5}]
    assert render_function_definitions(functions, RenderStyle.TOOLS) == block(
        "type g = () => any;", "type h = () => any;"
    )


def test_tools_without_a_type_are_functions_and_other_types_are_skipped() -> None:
    body = {"tools": [{"function": {"name": "f"}}, {"type": "custom", "function": {"name": "c"}}]}
    assert function_definitions(body) == ([{"name": "f"}], RenderStyle.TOOLS)


def prompt(**body: object) -> int:
    return TokenCounter().count_prompt_tokens(MODEL, body)


def test_an_assistant_refusal_is_counted() -> None:
    message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    assert prompt(messages=[message]) == PER_MESSAGE + T("assistant") + T("I can't help with that.") + PRIMING


def test_a_tool_result_is_named_after_its_calls_function() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    assistant = {"role": "assistant", "content": None, "tool_calls": [call]}
    # a call costs 3 + its name + its arguments; the result is headed by the function's name, not "tool"
    expected_assistant = PER_MESSAGE + T("assistant") + 3 + T("get_weather") + T("{}")
    answered = {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    assert (
        prompt(messages=[assistant, answered])
        == expected_assistant + PER_MESSAGE + T("get_weather") + T("sunny") + PRIMING
    )
    named = {"role": "tool", "tool_call_id": "call_1", "name": "lookup", "content": "sunny"}
    assert prompt(messages=[assistant, named]) == expected_assistant + PER_MESSAGE + T("lookup") + T("sunny") + PRIMING
    unknown = {"role": "tool", "tool_call_id": "call_9", "content": "sunny"}
    assert prompt(messages=[assistant, unknown]) == expected_assistant + PER_MESSAGE + T("tool") + T("sunny") + PRIMING


def test_a_call_without_text_arguments_counts_its_name() -> None:
    for call in ({"name": "ping"}, {"name": "ping", "arguments": {"host": "a"}}):
        assistant = {"role": "assistant", "tool_calls": [{"id": "c", "function": call}]}
        assert prompt(messages=[assistant]) == PER_MESSAGE + T("assistant") + 3 + T("ping") + PRIMING


def test_a_refusal_that_is_not_text_counts_nothing() -> None:
    message = {"role": "assistant", "content": "Sure.", "refusal": 5}
    assert prompt(messages=[message]) == PER_MESSAGE + T("assistant") + T("Sure.") + PRIMING


TOOLS = [{"type": "function", "function": {"name": "f"}}]


def test_the_block_joins_a_system_message_with_a_newline_whatever_its_content_shape() -> None:
    as_text = prompt(tools=TOOLS, messages=[{"role": "system", "content": "Hi"}])
    as_parts = prompt(tools=TOOLS, messages=[{"role": "system", "content": [{"type": "text", "text": "Hi"}]}])
    assert as_parts == as_text
    empty = prompt(tools=TOOLS, messages=[{"role": "system", "content": ""}])
    assert prompt(tools=TOOLS, messages=[{"role": "system"}]) == empty


def test_a_forced_function_without_a_string_name_adds_nothing() -> None:
    auto = prompt(tools=TOOLS, tool_choice="auto")
    assert prompt(tools=TOOLS, tool_choice={"type": "function", "function": {"name": 5}}) == auto


def test_the_default_content_counter_adds_every_part() -> None:
    body = {"messages": [{"role": "user", "content": ["Hello", "world", {"type": "text", "text": "again"}]}]}
    total = count_prompt_tokens_with_functions(lambda text: T(text) if text else 0, ChatFormat(), body)
    assert total == PER_MESSAGE + T("user") + T("Hello") + T("world") + T("again") + PRIMING


def test_a_part_that_is_neither_text_nor_an_object_is_skipped_not_the_end() -> None:
    body_parts = [5, {"type": "text", "text": "Hello"}]
    assert prompt(messages=[{"role": "user", "content": body_parts}]) == PER_MESSAGE + T("user") + T("Hello") + PRIMING
