"""Prompt tokens added by `tools` / `functions` definitions, `tool_choice` and `response_format`.

Tool definitions follow the algorithm of OpenAI's cookbook notebook "How to count tokens with
tiktoken", section 7 (openai/openai-cookbook, examples/How_to_count_tokens_with_tiktoken.ipynb):
per function `func_init` + tokens of "name:description" (one trailing "." dropped); if it has
properties, `prop_init` once, then per property `prop_key` + tokens of "key:type:description", and
for an enum `enum_init` + per item `enum_item` + its tokens; `func_end` once per request.

Beyond the notebook, and therefore estimates: nested object properties (and `items` of arrays of
objects) are counted recursively with the same per-property constants; a non-string type or enum
item is rendered as compact JSON. `tool_choice` naming a function adds that name's tokens, and a
`json_schema` response_format adds the tokens of its name, description and compact-JSON schema;
OpenAI publishes no numbers for either, so no fixed overhead is added.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gateway.tokens.models import ChatFormat
from gateway.tokens.payload import JSONObject, json_text

Count = Callable[[str], int]

# JSON from clients can nest arbitrarily; real schemas stay far below this.
_MAX_SCHEMA_DEPTH = 16


def _strip_period(text: str) -> str:
    return text[:-1] if text.endswith(".") else text


def function_definitions(body: JSONObject) -> list[JSONObject]:
    """The function objects of `tools` (type function) and of legacy `functions`."""
    found: list[JSONObject] = []
    tools = body.get("tools")
    if isinstance(tools, list):
        for tool in tools:
            function = tool.get("function") if isinstance(tool, Mapping) else None
            if isinstance(function, Mapping):
                found.append(function)
    functions = body.get("functions")
    if isinstance(functions, list):
        found.extend(function for function in functions if isinstance(function, Mapping))
    return found


def tool_definition_tokens(count: Count, fmt: ChatFormat, body: JSONObject) -> int:
    """Tokens of all function definitions in the request; 0 when there are none."""
    functions = function_definitions(body)
    if not functions:
        return 0
    total = fmt.func_end
    for function in functions:
        name = json_text(function.get("name"))
        description = _strip_period(json_text(function.get("description")))
        total += fmt.func_init + count(f"{name}:{description}")
        parameters = function.get("parameters")
        if isinstance(parameters, Mapping):
            total += _properties_tokens(count, fmt, parameters.get("properties"), 0)
    return total


def _properties_tokens(count: Count, fmt: ChatFormat, properties: object, depth: int) -> int:
    if not isinstance(properties, Mapping) or not properties or depth > _MAX_SCHEMA_DEPTH:
        return 0
    total = fmt.prop_init
    for key, spec in properties.items():
        total += fmt.prop_key
        if not isinstance(spec, Mapping):
            total += count(f"{key}::")
            continue
        enum = spec.get("enum")
        if isinstance(enum, list):
            total += fmt.enum_init + sum(fmt.enum_item + count(json_text(item)) for item in enum)
        description = _strip_period(json_text(spec.get("description")))
        total += count(f"{key}:{json_text(spec.get('type'))}:{description}")
        total += _properties_tokens(count, fmt, spec.get("properties"), depth + 1)
        items = spec.get("items")
        if isinstance(items, Mapping):
            total += _properties_tokens(count, fmt, items.get("properties"), depth + 1)
    return total


def tool_choice_tokens(count: Count, body: JSONObject) -> int:
    """Estimate for a forced function: the tokens of its name ("auto"/"none"/"required" add none)."""
    choice = body.get("tool_choice") or body.get("function_call")
    if not isinstance(choice, Mapping):
        return 0
    function = choice.get("function")
    name = function.get("name") if isinstance(function, Mapping) else choice.get("name")
    return count(name) if isinstance(name, str) else 0


def response_format_tokens(count: Count, body: JSONObject) -> int:
    """Estimate for `{"type": "json_schema"}`: its name, description and compact-JSON schema."""
    response_format = body.get("response_format")
    if not isinstance(response_format, Mapping) or response_format.get("type") != "json_schema":
        return 0
    spec = response_format.get("json_schema")
    if not isinstance(spec, Mapping):
        return 0
    parts = (json_text(spec.get("name")), json_text(spec.get("description")), json_text(spec.get("schema")))
    return sum(count(part) for part in parts if part)
