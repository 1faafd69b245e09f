"""The mock upstream's own token counts: tiktoken itself, and OpenAI's published counting rules written out here.

Nothing comes from `gateway.tokens`, so every test that compares the gateway's count with the usage the mock
reports compares two implementations:
- encodings are tiktoken's own (`tiktoken_ext.openai_public`: its regex and special tokens), fed the
  vocabulary file the package ships instead of downloading it; the file's sha256 must match tiktoken's pin;
- a model's encoding is tiktoken's own table (`tiktoken.encoding_name_for_model`), o200k_base if unknown;
- prompt tokens follow the OpenAI cookbook "How to count tokens with tiktoken", as published:
  `num_tokens_from_messages` (every string value of a message, 3 per message and 1 per name, 3 priming the
  reply; gpt-3.5-turbo-0301: 4 and -1) and `num_tokens_for_tools` for function definitions.
The cookbook does not cover content parts and assistant tool calls; here a text part counts its text, and a
tool call its function's name and arguments.
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

# num_tokens_for_tools' constants, per model family, as the cookbook publishes them.
TOOL_CONSTANTS = {
    "gpt-4o": {"func_init": 7, "prop_init": 3, "prop_key": 3, "enum_init": -3, "enum_item": 3, "func_end": 12},
    "gpt-4": {"func_init": 10, "prop_init": 3, "prop_key": 3, "enum_init": -3, "enum_item": 3, "func_end": 12},
}


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


def count_prompt(body: Mapping[str, object]) -> int:
    """The cookbook's count of a chat request: messages, then function definitions."""
    model = str(body.get("model", ""))
    messages = body.get("messages")
    total = _messages(model, messages if isinstance(messages, list) else [])
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        functions = [tool.get("function") for tool in tools if isinstance(tool, Mapping)]
        total += _tools(model, [function for function in functions if isinstance(function, Mapping)])
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


def _tools(model: str, functions: list[Mapping[str, object]]) -> int:
    """The cookbook's `num_tokens_for_tools`, less its call to num_tokens_from_messages."""
    family = "gpt-4o" if encoding_for_model(model).name == "o200k_base" else "gpt-4"
    c = TOOL_CONSTANTS[family]
    total = 0
    for function in functions:
        total += c["func_init"]
        description = str(function.get("description", "")).removesuffix(".")
        total += count_text(model, f"{function.get('name')}:{description}")
        parameters = function.get("parameters")
        properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
        if isinstance(properties, Mapping) and properties:
            total += c["prop_init"]
            for name, spec in properties.items():
                total += c["prop_key"]
                if not isinstance(spec, Mapping):
                    continue
                if isinstance(spec.get("enum"), list):
                    total += c["enum_init"]
                    for item in spec["enum"]:
                        total += c["enum_item"] + count_text(model, str(item))
                description = str(spec.get("description", "")).removesuffix(".")
                total += count_text(model, f"{name}:{spec.get('type')}:{description}")
    return total + c["func_end"]
