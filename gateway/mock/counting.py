"""The mock upstream's own token counts: tiktoken itself, and OpenAI's published counting rules written out here.

Nothing comes from `gateway.tokens`, so every test that compares the gateway's count with the usage the mock
reports compares two implementations:
- encodings are tiktoken's own (`tiktoken_ext.openai_public`: its regex and special tokens), fed the
  vocabulary file the package ships instead of downloading it; the file's sha256 must match tiktoken's pin;
- a model's encoding is tiktoken's own table (`tiktoken.encoding_name_for_model`), o200k_base if unknown;
- prompt tokens follow the OpenAI cookbook "How to count tokens with tiktoken", as published:
  `num_tokens_from_messages` (every string value of a message, 3 per message and 1 per name, 3 priming the
  reply; gpt-3.5-turbo-0301: 4 and -1);
- `tools` follow pamelafox/openai-messages-token-helper (commit b60075e, function_format.py and
  model_helper.py's `count_tokens_for_system_and_tools`), as published: the definitions rendered as a
  TypeScript namespace and counted, plus 9, less 4 when a system message is present; `tool_choice` "none"
  adds 1, a named function 7 and its name.
Neither covers content parts and assistant tool calls; here a text part counts its text, and a tool call its
function's name and arguments. An embeddings `input` or a completions `prompt` counts each string's tokens and
each token array's length, with no framing.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Mapping
from pathlib import Path
from unittest import mock

import tiktoken
import tiktoken_ext.openai_public as openai_public

VOCABULARIES = Path(__file__).resolve().parent.parent / "tokens" / "vocab"
DEFAULT_ENCODING = "o200k_base"
_encodings: dict[str, tiktoken.Encoding] = {}
_lock = threading.Lock()


def _packaged_bpe(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
    """tiktoken's `load_tiktoken_bpe`, reading the packaged copy of the file at `url`."""
    contents = (VOCABULARIES / url.rsplit("/", 1)[-1]).read_bytes()
    if expected_hash is not None and hashlib.sha256(contents).hexdigest() != expected_hash:
        raise ValueError(f"the packaged {url.rsplit('/', 1)[-1]} does not match tiktoken's pinned sha256")
    return {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in contents.splitlines())}


def encoding(name: str) -> tiktoken.Encoding:
    """tiktoken's own encoding `name`, built once per process."""
    with _lock:
        if name not in _encodings:
            with mock.patch.object(openai_public, "load_tiktoken_bpe", _packaged_bpe):
                _encodings[name] = tiktoken.Encoding(**openai_public.ENCODING_CONSTRUCTORS[name]())
        return _encodings[name]


def encoding_for_model(model: str) -> tiktoken.Encoding:
    try:
        return encoding(tiktoken.encoding_name_for_model(model))
    except KeyError:
        return encoding(DEFAULT_ENCODING)


def count_text(model: str, text: str) -> int:
    return len(encoding_for_model(model).encode(text, disallowed_special=()))


def input_items(value: object) -> list[object]:
    """The inputs of an `input` (or a completions `prompt`): a string or a token array is one."""
    if isinstance(value, list) and value and isinstance(value[0], str | list):
        return list(value)
    return [value]


def count_input(model: str, items: list[object]) -> int:
    """Each string's tokens, each token array's length."""
    return sum(count_text(model, item) if isinstance(item, str) else _length(item) for item in items)


def _length(item: object) -> int:
    return len(item) if isinstance(item, list) else 0


def count_prompt(body: Mapping[str, object]) -> int:
    """A chat request's prompt: the cookbook's messages, then pamelafox's tools and tool_choice."""
    model = str(body.get("model", ""))
    raw = body.get("messages")
    messages = raw if isinstance(raw, list) else []
    total = _messages(model, messages)
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        total += count_text(model, _namespace([tool for tool in tools if isinstance(tool, Mapping)])) + 9
        if any(isinstance(m, Mapping) and m.get("role") == "system" for m in messages):
            total -= 4
        choice = body.get("tool_choice")
        if choice == "none":
            total += 1
        elif isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
            name = choice["function"].get("name")
            total += 7 + count_text(model, name) if isinstance(name, str) else 0
    return total


def _messages(model: str, messages: list[object]) -> int:
    per_message, per_name = (4, -1) if model.startswith("gpt-3.5-turbo-0301") else (3, 1)
    total = 0
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        total += per_message
        for key, value in message.items():
            total += _value(model, value)
            if key == "name":
                total += per_name
    return total + 3  # every reply is primed with <|start|>assistant<|message|>


def _value(model: str, value: object) -> int:
    if isinstance(value, str):
        return count_text(model, value)
    if not isinstance(value, list):
        return 0
    total = 0
    for item in value:
        if not isinstance(item, Mapping):
            continue
        if isinstance(item.get("text"), str):  # a text content part
            total += count_text(model, item["text"])
        function = item.get("function")  # an assistant tool call
        if isinstance(function, Mapping):
            total += sum(
                count_text(model, function[k]) for k in ("name", "arguments") if isinstance(function.get(k), str)
            )
    return total


def _namespace(tools: list[Mapping[str, object]]) -> str:
    """pamelafox's `format_function_definitions`."""
    lines = ["namespace functions {", ""]
    for tool in tools:
        function = tool.get("function")
        if not isinstance(function, Mapping):
            continue
        if function.get("description"):
            lines.append(f"// {function['description']}")
        parameters = function.get("parameters")
        parameters = parameters if isinstance(parameters, Mapping) else {}
        if parameters.get("properties"):
            lines += [f"type {function.get('name')} = (_: {{", _object(parameters, 0), "}) => any;"]
        else:
            lines.append(f"type {function.get('name')} = () => any;")
        lines.append("")
    lines.append("} // namespace functions")
    return "\n".join(lines)


def _object(parameters: Mapping[str, object], indent: int) -> str:
    """pamelafox's `format_object_parameters`."""
    properties = parameters.get("properties")
    if not isinstance(properties, Mapping) or not properties:
        return ""
    required = parameters.get("required")
    required = required if isinstance(required, list) else []
    lines = []
    for key, spec in properties.items():
        spec = spec if isinstance(spec, Mapping) else {}
        if spec.get("description"):
            lines.append(f"// {spec['description']}")
        lines.append(f"{key}{'' if key in required else '?'}: {_type(spec, indent)},")
    return "\n".join(" " * indent + line for line in lines)


def _type(spec: Mapping[str, object], indent: int) -> str:
    """pamelafox's `format_type`."""
    kind = spec.get("type")
    enum = spec.get("enum")
    if kind in ("string", "integer", "number") and isinstance(enum, list):
        return " | ".join(f'"{item}"' for item in enum)
    if kind == "string":
        return "string"
    if kind in ("integer", "number"):
        return "number"
    if kind in ("boolean", "null"):
        return str(kind)
    if kind == "array":
        items = spec.get("items")
        return f"{_type(items if isinstance(items, Mapping) else {}, indent)}[]"
    if kind == "object":
        return f"{{\n{_object(spec, indent + 2)}\n}}"
    return "any"
