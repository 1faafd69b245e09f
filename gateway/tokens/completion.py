"""Completion tokens of one response, streamed or not.

Every text channel of every choice (content, refusal, each tool call's name and arguments, the
legacy function_call, and the `reasoning_content` / `reasoning` text some self-hosted servers
stream) is collected as string fragments and encoded once, joined, when the count is asked for.
Encoding per chunk would both cost a tokenizer call per chunk and overcount, because BPE merges
across chunk boundaries. Choices are told apart by `index`, so `n > 1` sums over all of them.

Legacy completions (`text_completion`) carry each choice's `text`, whole or streamed in pieces. With `echo`
the text starts with the choice's prompt, which is not completion: `expect_echo` says which prompt each choice
starts with, and that prefix is left out of the count.

Reasoning models also bill hidden reasoning tokens that no response text shows; for those the
upstream's own `usage` is the only exact figure.

Calls of built-in tools that the provider bills per call (a Responses answer's web_search_call items, ...) are no
tokens: they are tallied apart, by kind, each call once however often it shows (`add_builtin_call`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import tiktoken

from gateway.tokens.payload import JSONObject

_TEXT_FIELDS = ("content", "refusal", "reasoning_content", "reasoning")
# A channel: (choice index, field, tool-call index); fragments of one channel are joined before encoding.
_Channel = tuple[int, str, int]
_TEXT = "text"  # a legacy completion choice's text
# A prompt as the client sent it: text, or a token array.
Prompt = str | Sequence[int]


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
        self._echoed: tuple[Sequence[Prompt], int] = ((), 1)  # the prompts, and choices per prompt
        self._calls: dict[str, set[str]] = {}  # built-in tool calls: kind -> the keys of its calls

    def add_chunk(self, chunk: JSONObject) -> None:
        """Record one parsed `chat.completion.chunk`; only appends strings."""
        self._add_choices(chunk, "delta")

    def add_response(self, body: JSONObject) -> None:
        """Record one parsed non-streamed `chat.completion`."""
        self._add_choices(body, "message")

    def add_text_completion(self, payload: JSONObject) -> None:
        """Record one parsed legacy `text_completion`, whole or a stream chunk: each choice's `text`."""
        choices = payload.get("choices") if isinstance(payload, Mapping) else None
        if not isinstance(choices, list):
            return
        for position, choice in enumerate(choices):
            if isinstance(choice, Mapping):
                self._append((_index(choice, position), _TEXT, 0), choice.get("text"))

    def expect_echo(self, prompts: Sequence[Prompt], choices_per_prompt: int) -> None:
        """The texts echo their prompts (a completions request with `echo`): choice i starts with prompt
        i // choices_per_prompt, which is left out of the count."""
        self._echoed = (prompts, max(choices_per_prompt, 1))
        self._count = None

    def add_text(self, text: object, *, part: int = 0, kind: str = "text") -> None:
        """Record a fragment of generated text of another API's answer (a content block's text, a tool call's
        input): fragments of one `part` and `kind` are joined before encoding, as a choice's are."""
        self._append((0, kind, part), text)

    def add_builtin_call(self, kind: str, key: str) -> None:
        """Record a built-in tool call the answer shows (`kind`: its item type), once per `key` (its item id)."""
        self._calls.setdefault(kind, set()).add(key)

    def builtin_calls(self) -> tuple[tuple[str, int], ...]:
        """The built-in tool calls recorded: (kind, calls) pairs, sorted by kind."""
        return tuple(sorted((kind, len(keys)) for kind, keys in self._calls.items()))

    def count_completion_tokens(self) -> int:
        """Tokens of everything recorded so far; encodes only when new text arrived since the last call."""
        if self._count is None:
            self._count = sum(self._tokens(channel, "".join(parts)) for channel, parts in self._fragments.items())
        return self._count

    def _tokens(self, channel: _Channel, text: str) -> int:
        encode = self._encoding.encode_ordinary
        prompts, per_prompt = self._echoed
        slot = channel[0] // per_prompt
        if channel[1] != _TEXT or slot >= len(prompts):
            return len(encode(text))
        prompt = prompts[slot]
        prefix = prompt if isinstance(prompt, str) else self._decoded(prompt)
        if prefix is not None and text.startswith(prefix):
            return len(encode(text[len(prefix) :]))
        # Not echoed as expected: the whole text, less the prompt's own tokens.
        prompt_tokens = len(encode(prompt)) if isinstance(prompt, str) else len(prompt)
        return max(len(encode(text)) - prompt_tokens, 0)

    def _decoded(self, tokens: Sequence[int]) -> str | None:
        """A token array as the text the upstream echoes, None for ids this vocabulary does not have."""
        try:
            return self._encoding.decode(list(tokens))
        except (KeyError, ValueError, OverflowError):
            return None

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
