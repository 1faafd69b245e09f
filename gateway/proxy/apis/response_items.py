"""Responses' request: its fields and items checked as far as the gateway relies on them
(`parse_responses_request`; the items alone, as a conversation's are: `check_input_items`), and the chat request
it amounts to, for counting (`chat_equivalent`).

The prompt is counted as the chat request it amounts to, with chat's rules (gateway/tokens: the cookbook's
per-message rule, function tools rendered as chat's): `instructions` is a system message first; a string `input`
a user message; a message item a message of its role, its input_text and output_text parts counted as text, its
input_image parts as chat's image parts; a function_call item an assistant tool call (its name and arguments); a
function_call_output a tool message with its output; `tool_choice` and `text.format` (json_schema) as chat's
tool_choice and response_format. Estimates, as no rule is published: input_file parts, reasoning items, item
references and built-in tool calls count 0 (the provider's usage bills them; the drift metric shows them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from gateway.errors import InvalidRequest
from gateway.proxy.apis import JSON, ApiRequest
from gateway.proxy.apis.chat import decode_body, optional_field, required_model
from gateway.proxy.priced_fields import builtin_tool_types

ROLES = frozenset({"user", "assistant", "system", "developer"})
# Fields the gateway cannot hold or bill for: the provider would bill context or an answer it never sees.
REFUSED = {
    "prompt": "'prompt' (a stored prompt template) is not supported by this gateway: send the prompt in 'input'.",
}


def parse_responses_request(raw: bytes) -> ApiRequest:
    """Decode and check the body as far as the gateway relies on it; InvalidRequest naming the field. Its built-in
    tools and `max_tool_calls` are kept apart (`ApiRequest.builtin_tools`, `max_tool_calls`)."""
    body = decode_body(raw)
    model = required_model(body)
    for name, message in REFUSED.items():
        if body.get(name) is not None:
            raise InvalidRequest(message, param=name)
    background = optional_field(body, "background", bool, False)
    if not optional_field(body, "store", bool, True) and background:
        raise InvalidRequest("A 'background' response must be stored: send it without 'store': false.", param="store")
    for name in ("instructions", "previous_response_id"):
        value = body.get(name)
        if value is not None and (not isinstance(value, str) or (name == "previous_response_id" and not value)):
            raise InvalidRequest(f"'{name}' must be a non-empty string.", param=name)
    _check_conversation(body)
    items = body.get("input")
    if items is not None and not isinstance(items, str | list):
        raise InvalidRequest("'input' must be a string or an array of input items.", param="input")
    check_input_items(items if isinstance(items, list) else [], "input")
    _check_tools(body.get("tools"))
    stream = optional_field(body, "stream", bool, False)
    limit = optional_field(body, "max_output_tokens", int, 0)
    if body.get("max_output_tokens") is not None and limit < 1:
        raise InvalidRequest("'max_output_tokens' must be a positive integer.", param="max_output_tokens")
    calls = optional_field(body, "max_tool_calls", int, 0)
    if calls < 0:
        raise InvalidRequest("'max_tool_calls' must be zero or a positive integer.", param="max_tool_calls")
    tools = tuple(str(kind) for kind in builtin_tool_types(body.get("tools")))
    max_tool_calls = calls if body.get("max_tool_calls") is not None else None
    return ApiRequest(body, model, stream, stream, limit or None, 1, builtin_tools=tools, max_tool_calls=max_tool_calls)


def conversation_id(body: Mapping[str, object]) -> str | None:
    """The id of the conversation the request is made in (`conversation`: the id, or `{"id": ...}`); None if none."""
    value = body.get("conversation")
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _check_conversation(body: Mapping[str, object]) -> None:
    if body.get("conversation") is None:
        return
    if conversation_id(body) is None:
        message = "'conversation' must be a conversation id, or an object with its 'id'."
        raise InvalidRequest(message, param="conversation")
    if body.get("previous_response_id") is not None:
        message = "'conversation' and 'previous_response_id' cannot be used together: send one of them."
        raise InvalidRequest(message, param="conversation")


def check_input_items(items: list[object], name: str) -> None:
    """Check input items (the request's `input`, or a conversation's `items`) as far as the gateway counts them;
    InvalidRequest naming the item (`name[index]...`) otherwise."""
    for index, item in enumerate(items):
        where = f"{name}[{index}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"'{where}' must be an object.", param=where)
        kind = item.get("type", "message")
        if not isinstance(kind, str):
            raise InvalidRequest(f"'{where}.type' must be a string.", param=f"{where}.type")
        if kind == "message":
            _check_message(item, where)
        elif kind == "function_call":
            for field in ("name", "arguments"):
                if not isinstance(item.get(field), str):
                    raise InvalidRequest(f"'{where}.{field}' must be a string.", param=f"{where}.{field}")
        elif kind == "function_call_output" and not isinstance(item.get("output"), str | list):
            raise InvalidRequest(f"'{where}.output' must be a string or an array.", param=f"{where}.output")


def _check_message(item: dict[str, object], where: str) -> None:
    role = item.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise InvalidRequest(f"'{where}.role' must be one of {', '.join(sorted(ROLES))}.", param=f"{where}.role")
    content = item.get("content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise InvalidRequest(f"'{where}.content' must be a string or an array.", param=f"{where}.content")
    for index, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            where_part = f"{where}.content[{index}]"
            raise InvalidRequest(f"'{where_part}' must be an object with a 'type'.", param=where_part)


def _check_tools(tools: object) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array.", param="tools")
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise InvalidRequest(f"'{where}' must be an object with a 'type'.", param=where)
        if tool["type"] != "function":
            continue
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"'{where}.name' must be a non-empty string.", param=f"{where}.name")
        for field, kind in (("parameters", dict), ("description", str)):
            if tool.get(field) is not None and not isinstance(tool[field], kind):
                raise InvalidRequest(f"'{where}.{field}' has the wrong type.", param=f"{where}.{field}")


def chat_equivalent(body: Mapping[str, object]) -> JSON:
    """The chat request a Responses request amounts to, for counting (see the module's docstring)."""
    messages: list[JSON] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        messages.append({"role": "system", "content": instructions})
    items = body.get("input")
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
    for item in items if isinstance(items, list) else []:
        message = _item_message(item) if isinstance(item, Mapping) else None
        if message is not None:
            messages.append(message)
    chat: JSON = {"model": body.get("model"), "messages": messages}
    tools = [_chat_tool(tool) for tool in _list(body.get("tools")) if _is_function(tool)]
    if tools:
        chat["tools"] = tools
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif isinstance(choice, str):
        chat["tool_choice"] = choice
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, Mapping) else None
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        spec = {key: fmt.get(key) for key in ("name", "description", "schema")}
        chat["response_format"] = {"type": "json_schema", "json_schema": spec}
    return chat


def _item_message(item: Mapping[str, object]) -> JSON | None:
    kind = item.get("type", "message")
    if kind == "message":
        return {"role": item.get("role"), "content": _content(item.get("content"))}
    if kind == "function_call":
        function = {"name": item.get("name"), "arguments": item.get("arguments")}
        call = {"id": item.get("call_id"), "type": "function", "function": function}
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    if kind == "function_call_output":
        return {"role": "tool", "tool_call_id": item.get("call_id"), "content": _content(item.get("output"))}
    return None  # reasoning, item references, built-in tool calls: see the module's docstring


def _content(content: object) -> object:
    """Message content in chat's shape: text parts as text, input_image parts as image_url parts."""
    if not isinstance(content, list):
        return content
    parts: list[JSON] = []
    for part in content:
        if not isinstance(part, Mapping):
            continue
        if part.get("type") == "input_image":
            image = {"url": part.get("image_url"), "detail": part.get("detail", "auto")}
            parts.append({"type": "image_url", "image_url": image})
        elif isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif isinstance(part.get("refusal"), str):
            parts.append({"type": "refusal", "refusal": part["refusal"]})
    return parts


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _is_function(tool: object) -> bool:
    return isinstance(tool, Mapping) and tool.get("type") == "function"


def _chat_tool(tool: object) -> JSON:
    tool = cast(Mapping[str, object], tool)
    function = {key: tool[key] for key in ("name", "description", "parameters") if tool.get(key) is not None}
    return {"type": "function", "function": function}
