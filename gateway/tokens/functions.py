"""Prompt tokens of chat requests that carry function definitions, counted from the rendered prompt.

The API does not show the model JSON schemas: it renders each function as a TypeScript-like
declaration inside the system message, after a `# Tools` / `## functions` header:

    namespace functions {

    // Get the current weather
    type get_current_weather = (_: {
    // The city and state, e.g. San Francisco, CA
    location: string,
    unit?: "celsius" | "fahrenheit",
    }) => any;

    } // namespace functions

The rendering and every constant below follow two projects that checked them against API-reported
`prompt_tokens`: hmarr/openai-chat-tokens (src/functions.ts, src/index.ts; legacy `functions`) and
pamelafox/openai-messages-token-helper (src/openai_messages_token_helper/function_format.py,
model_helper.py; `tools`). Their test counts differ in how nested objects render, so there are two
styles, chosen by the request: legacy `functions` (hmarr's 2023 counts) indent nested properties by
two spaces and drop their descriptions; `tools` (pamelafox's 2024 counts) keep nested descriptions
without indenting, and write an object that holds no comment on one line, `{ a: string, b?: number }`.
That last rule is ours: without it five of pamelafox's counts (integer_enum, no_parameter_description,
inner_object and two variants) come out one token high, and no published count contradicts it. The
rest is the references' algorithm.

Published counts cover: definitions, `function_call` / `tool_choice` none, auto and a named function,
system-message merging, `role: "function"` messages and assistant `function_call`. The rest are
estimates, marked where they are made: `tool_choice: "required"`, `role: "tool"` messages, assistant
`tool_calls` (one or several), `default` comments, `oneOf` and type lists, `strict` (ignored),
non-function tools (skipped), `developer` messages, and `response_format` (`response_format_tokens`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from enum import Enum

from gateway.tokens.models import ChatFormat
from gateway.tokens.payload import JSONObject, json_text

Count = Callable[[str], int]
ContentCount = Callable[[object], int]

# JSON from clients can nest arbitrarily; deeper schemas render as `any` (same bound as `tools`).
MAX_SCHEMA_DEPTH = 16
# Tokens of the function block beyond its rendered text (header, its own system message).
BLOCK_OVERHEAD = 9
# Taken off when a system message exists: the block joins it instead of opening its own.
SYSTEM_MERGE = 4
# `function_call` / `tool_choice` "none"; "auto" adds nothing.
CHOICE_NONE = 1
# A forced function adds its name's tokens plus 4 (legacy `function_call`) or 7 (`tool_choice`).
CHOICE_NAMED_LEGACY = 4
CHOICE_NAMED_TOOL = 7
# An assistant `function_call` adds the tokens of its name and arguments plus 3.
FUNCTION_CALL_OVERHEAD = 3
_SYSTEM_ROLES = frozenset({"system", "developer"})


class RenderStyle(Enum):
    """How definitions render: `LEGACY` for the `functions` parameter, `TOOLS` for `tools`."""

    LEGACY = "functions"
    TOOLS = "tools"


def function_definitions(body: JSONObject) -> tuple[list[JSONObject], RenderStyle]:
    """The function objects of `tools` (type function) and legacy `functions`, and their style.

    Other tool types (custom, built-in) are skipped: nothing is published about their rendering.
    """
    found: list[JSONObject] = []
    tools = body.get("tools")
    if isinstance(tools, list):
        for tool in tools:
            if isinstance(tool, Mapping) and tool.get("type", "function") == "function":
                function = tool.get("function")
                if isinstance(function, Mapping):
                    found.append(function)
    style = RenderStyle.TOOLS if found else RenderStyle.LEGACY
    functions = body.get("functions")
    if isinstance(functions, list):
        found.extend(function for function in functions if isinstance(function, Mapping))
    return found, style


def render_function_definitions(functions: Sequence[JSONObject], style: RenderStyle) -> str:
    """The `namespace functions { ... }` block; functions without a string name are skipped."""
    lines = ["namespace functions {", ""]
    for function in functions:
        name = function.get("name")
        if not isinstance(name, str):
            continue
        description = function.get("description")
        if isinstance(description, str) and description:
            lines.append(f"// {description}")
        parameters = function.get("parameters")
        if not isinstance(parameters, Mapping) or not _properties(parameters):
            lines.append(f"type {name} = () => any;")
        elif style is RenderStyle.LEGACY:
            lines.extend((f"type {name} = (_: {{", _legacy_properties(parameters, 0, 0), "}) => any;"))
        else:
            lines.append(f"type {name} = (_: {_object_type(parameters, 0)}) => any;")
        lines.append("")
    lines.append("} // namespace functions")
    return "\n".join(lines)


def _properties(schema: JSONObject) -> JSONObject:
    properties = schema.get("properties")
    return properties if isinstance(properties, Mapping) else {}


def _required(schema: JSONObject) -> frozenset[str]:
    required = schema.get("required")
    if not isinstance(required, list):
        return frozenset()
    return frozenset(name for name in required if isinstance(name, str))


def _comment(schema: JSONObject, key: str) -> str:
    value = schema.get(key)
    return value if isinstance(value, str) else ""


def _literal(value: object) -> str:
    """An enum value as JavaScript's template literal shows it (hmarr renders `${v}`)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    return json_text(value)


def _scalar_type(schema: JSONObject, kind: object) -> str | None:
    """Types both styles share; None for object, array and unknown types."""
    enum = schema.get("enum")
    values = enum if isinstance(enum, list) and enum else None
    if kind == "string":
        return " | ".join(f'"{_literal(value)}"' for value in values) if values else "string"
    if kind in ("number", "integer"):
        return " | ".join(_literal(value) for value in values) if values else "number"
    if kind in ("boolean", "null"):
        return str(kind)
    return None


def _legacy_properties(schema: JSONObject, indent: int, depth: int) -> str:
    # hmarr's formatObjectProperties: descriptions only at the top level (indent < 2), and the indent
    # prefixes each property's first line only (a nested block keeps its own).
    lines: list[str] = []
    required = _required(schema)
    for name, spec in _properties(schema).items():
        spec = spec if isinstance(spec, Mapping) else {}
        description = _comment(spec, "description")
        if description and indent < 2:
            lines.append(f"// {description}")
        marker = "" if name in required else "?"
        lines.append(f"{name}{marker}: {_legacy_type(spec, indent, depth + 1)},")
    return "\n".join(" " * indent + line for line in lines)


def _legacy_type(schema: JSONObject, indent: int, depth: int) -> str:
    if depth > MAX_SCHEMA_DEPTH:
        return "any"
    any_of = schema.get("anyOf")
    if isinstance(any_of, list):
        return " | ".join(_legacy_type(v if isinstance(v, Mapping) else {}, indent, depth + 1) for v in any_of)
    kind = schema.get("type")
    scalar = _scalar_type(schema, kind)
    if scalar is not None:
        return scalar
    if kind == "object":
        return "\n".join(("{", _legacy_properties(schema, indent + 2, depth), "}"))
    if kind == "array":
        items = schema.get("items")
        return f"{_legacy_type(items, indent, depth + 1)}[]" if isinstance(items, Mapping) and items else "any[]"
    return "any"


def _object_type(schema: JSONObject, depth: int) -> str:
    """A `tools`-style object: one line when it holds no comment, else one property per line."""
    properties = _properties(schema)
    if not properties:
        # As the API's own multi_tool_use tool shows a schema-less object parameter.
        return "object"
    required = _required(schema)
    entries: list[str] = []
    lines: list[str] = []
    multiline = False
    for name, spec in properties.items():
        spec = spec if isinstance(spec, Mapping) else {}
        description = _comment(spec, "description")
        if description:
            lines.append(f"// {description}")
        entry = f"{name}{'' if name in required else '?'}: {_type(spec, depth + 1)}"
        entries.append(entry)
        # Estimate: `default` as the trailing comment OpenAI's own tools show (`n?: number, // default: 1`).
        default = _default_comment(spec)
        lines.append(f"{entry},{default}")
        # A comment, on its own line or trailing, or a multi-line member puts one member per line.
        multiline = multiline or bool(description or default) or "\n" in entry
    return "{\n" + "\n".join(lines) + "\n}" if multiline else "{ " + ", ".join(entries) + " }"


def _default_comment(schema: JSONObject) -> str:
    if "default" not in schema:
        return ""
    value = schema["default"]
    if isinstance(value, str):
        return f' // default: "{value}"' if "enum" not in schema else f" // default: {value}"
    return f" // default: {'null' if value is None else json_text(value)}"


def _type(schema: JSONObject, depth: int) -> str:
    if depth > MAX_SCHEMA_DEPTH:
        return "any"
    # anyOf is published (hmarr); oneOf and type lists are estimates rendered the same way.
    for key in ("anyOf", "oneOf"):
        variants = schema.get(key)
        if isinstance(variants, list):
            return " | ".join(_type(v if isinstance(v, Mapping) else {}, depth + 1) for v in variants)
    kind = schema.get("type")
    if isinstance(kind, list):
        names = [_scalar_type({}, item) or str(item) for item in kind if isinstance(item, str)]
        return " | ".join(names) if names else "any"
    scalar = _scalar_type(schema, kind)
    if scalar is not None:
        return scalar
    if kind == "object":
        return _object_type(schema, depth)
    if kind == "array":
        items = schema.get("items")
        return f"{_type(items, depth + 1)}[]" if isinstance(items, Mapping) and items else "any[]"
    return "any"


def count_prompt_tokens_with_functions(
    count: Count, fmt: ChatFormat, body: JSONObject, content_tokens: ContentCount | None = None
) -> int:
    """Prompt tokens of a whole chat request, with or without functions; never raises.

    `count` tokenizes plain text (`PromptPlan.count`); `content_tokens` counts a message's list
    content, images included (default: its text and refusal parts only).

        total = count_prompt_tokens_with_functions(plan.count, plan.fmt, body, image_aware_counter)
    """
    content = content_tokens or _text_parts_counter(count)
    functions, style = function_definitions(body)
    raw_messages = body.get("messages")
    messages = [m for m in raw_messages if isinstance(m, Mapping)] if isinstance(raw_messages, list) else []
    names = _tool_call_names(messages)
    total = fmt.reply_priming
    padded = not functions
    for message in messages:
        # The block is appended to the first system message, after a newline (hmarr, measured).
        pad = not padded and _is_system(message)
        padded = padded or pad
        total += _message_tokens(count, fmt, message, content, names, pad)
    if functions:
        total += count(render_function_definitions(functions, style)) + BLOCK_OVERHEAD
        if any(_is_system(message) for message in messages):
            total -= SYSTEM_MERGE
        total += _choice_tokens(count, body)
    return total + response_format_tokens(count, body)


def _is_system(message: JSONObject) -> bool:
    # Estimate: a developer message takes the block as a system message does (nothing published).
    role = message.get("role")
    return isinstance(role, str) and role in _SYSTEM_ROLES


def _text_parts_counter(count: Count) -> ContentCount:
    def text_parts(content: object) -> int:
        if not isinstance(content, list):
            return 0
        total = 0
        for part in content:
            if isinstance(part, str):
                total += count(part)
            elif isinstance(part, Mapping):
                total += sum(count(t) for t in (part.get("text"), part.get("refusal")) if isinstance(t, str))
        return total

    return text_parts


def _tool_call_names(messages: Sequence[JSONObject]) -> dict[str, str]:
    """Function names by tool-call id, from assistant `tool_calls`, for naming `tool` results."""
    names: dict[str, str] = {}
    for message in messages:
        for call in _tool_calls(message):
            call_id, function = call.get("id"), call.get("function")
            name = function.get("name") if isinstance(function, Mapping) else None
            if isinstance(call_id, str) and isinstance(name, str):
                names[call_id] = name
    return names


def _tool_calls(message: JSONObject) -> list[JSONObject]:
    calls = message.get("tool_calls")
    return [call for call in calls if isinstance(call, Mapping)] if isinstance(calls, list) else []


def _message_tokens(
    count: Count, fmt: ChatFormat, message: JSONObject, content: ContentCount, names: Mapping[str, str], pad: bool
) -> int:
    role = message.get("role")
    role_text = role if isinstance(role, str) else ""
    name = message.get("name")
    name_text = name if isinstance(name, str) else ""
    total = fmt.tokens_per_message + _content_tokens(count, content, message.get("content"), pad)
    # Estimates: an assistant's `refusal` replays as text; ids (`tool_call_id`) and unknown keys are
    # not rendered into the prompt, so they count nothing.
    refusal = message.get("refusal")
    total += count(refusal) if isinstance(refusal, str) else 0
    if role_text in ("function", "tool"):
        # A function result is headed by the function's name instead of its role (hmarr, measured:
        # role + name + 1 - 2). Estimate: a tool result is named after its call's function.
        tool_call_id = message.get("tool_call_id")
        if not name_text and isinstance(tool_call_id, str):
            name_text = names.get(tool_call_id, "")
        total += count(name_text) if name_text else count(role_text)
    else:
        total += count(role_text)
        if name_text:
            total += count(name_text) + fmt.tokens_per_name
    function_call = message.get("function_call")
    calls: list[object] = [function_call]
    # Estimate: each of several tool_calls costs what one function_call does (nothing published).
    calls.extend(call.get("function") for call in _tool_calls(message))
    for call in calls:
        # A call without a function name is malformed and skipped.
        if isinstance(call, Mapping) and isinstance(call.get("name"), str):
            arguments = call.get("arguments")
            total += FUNCTION_CALL_OVERHEAD + count(str(call["name"]))
            total += count(arguments) if isinstance(arguments, str) else 0
    return total


def _content_tokens(count: Count, content: ContentCount, value: object, pad: bool) -> int:
    if isinstance(value, str):
        return count(value + "\n" if pad else value)
    total = content(value)
    if pad:
        # Estimate for list content: the newline joins the last text part, as it joins a string.
        texts = [p.get("text") for p in value if isinstance(p, Mapping)] if isinstance(value, list) else []
        last = next((text for text in reversed(texts) if isinstance(text, str)), "")
        total += count(last + "\n") - count(last)
    return total


def _choice_tokens(count: Count, body: JSONObject) -> int:
    legacy = body.get("tool_choice") is None
    choice = body.get("function_call") if legacy else body.get("tool_choice")
    if choice == "none":
        return CHOICE_NONE
    if not isinstance(choice, Mapping):
        # "auto" is published as 0; "required" has no published count and is estimated as 0.
        return 0
    function = choice.get("function")
    name = function.get("name") if isinstance(function, Mapping) else choice.get("name")
    if not isinstance(name, str):
        return 0
    return (CHOICE_NAMED_LEGACY if legacy else CHOICE_NAMED_TOOL) + count(name)


def response_format_tokens(count: Count, body: JSONObject) -> int:
    """Estimate for `{"type": "json_schema"}`: its name, description and compact-JSON schema (nothing is
    published about how the API renders it; the drift histogram keeps measuring)."""
    response_format = body.get("response_format")
    if not isinstance(response_format, Mapping) or response_format.get("type") != "json_schema":
        return 0
    spec = response_format.get("json_schema")
    if not isinstance(spec, Mapping):
        return 0
    parts = (json_text(spec.get("name")), json_text(spec.get("description")), json_text(spec.get("schema")))
    return sum(count(part) for part in parts if part)
