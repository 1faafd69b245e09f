"""Completion tokens of one response, streamed or not.

Every text channel of every choice (content, refusal, each tool call's name and arguments, the
legacy function_call, and the `reasoning_content` / `reasoning` text some self-hosted servers
stream) is collected as string fragments and encoded once, joined, when the count is asked for.
Encoding per chunk would both cost a tokenizer call per chunk and overcount, because BPE merges
across chunk boundaries. Choices are told apart by `index`, so `n > 1` sums over all of them.

Reasoning models also bill hidden reasoning tokens that no response text shows; for those the
upstream's own `usage` is the only exact figure.
"""

from __future__ import annotations

from collections.abc import Mapping

import tiktoken

from gateway.tokens.payload import JSONObject

_TEXT_FIELDS = ("content", "refusal", "reasoning_content", "reasoning")
# A channel: (choice index, field, tool-call index); fragments of one channel are joined before encoding.
_Channel = tuple[int, str, int]


def _index(item: JSONObject, position: int) -> int:
    index = item.get("index")
    if isinstance(index, int) and not isinstance(index, bool) and index >= 0:
        return index
    return position


class CompletionCounter:
    """Accumulates the generated text of one response and counts its tokens.

    counter = token_counter.completion_counter("gpt-4o")
    for chunk in chunks:
        counter.add_chunk(chunk)
    tokens = counter.count_completion_tokens()
    """

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self._encoding = encoding
        self._fragments: dict[_Channel, list[str]] = {}
        self._count: int | None = 0

    def add_chunk(self, chunk: JSONObject) -> None:
        """Record one parsed `chat.completion.chunk`; only appends strings."""
        self._add_choices(chunk, "delta")

    def add_response(self, body: JSONObject) -> None:
        """Record one parsed non-streamed `chat.completion`."""
        self._add_choices(body, "message")

    def add_text(self, text: object, *, part: int = 0, kind: str = "text") -> None:
        """Record a fragment of generated text of another API's answer (a content block's text, a tool call's
        input): fragments of one `part` and `kind` are joined before encoding, as a choice's are."""
        self._append((0, kind, part), text)

    def count_completion_tokens(self) -> int:
        """Tokens of everything recorded so far; encodes only when new text arrived since the last call."""
        if self._count is None:
            encode = self._encoding.encode_ordinary
            self._count = sum(len(encode("".join(parts))) for parts in self._fragments.values())
        return self._count

    def _add_choices(self, payload: JSONObject, field: str) -> None:
        choices = payload.get("choices") if isinstance(payload, Mapping) else None
        if not isinstance(choices, list):
            return
        for position, choice in enumerate(choices):
            if isinstance(choice, Mapping):
                message = choice.get(field)
                if isinstance(message, Mapping):
                    self._add_message(_index(choice, position), message)

    def _add_message(self, choice: int, message: JSONObject) -> None:
        for field in _TEXT_FIELDS:
            self._append((choice, field, 0), message.get(field))
        tool_calls = message.get("tool_calls")
        if isinstance(tool_calls, list):
            for position, call in enumerate(tool_calls):
                if isinstance(call, Mapping):
                    self._add_function(choice, "tool_calls", _index(call, position), call.get("function"))
        self._add_function(choice, "function_call", 0, message.get("function_call"))

    def _add_function(self, choice: int, kind: str, index: int, function: object) -> None:
        if isinstance(function, Mapping):
            self._append((choice, kind + ".name", index), function.get("name"))
            self._append((choice, kind + ".arguments", index), function.get("arguments"))

    def _append(self, channel: _Channel, value: object) -> None:
        if isinstance(value, str) and value:
            self._fragments.setdefault(channel, []).append(value)
            self._count = None
