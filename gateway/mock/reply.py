"""What the mock upstream answers: text or a tool call, whole or as stream chunks, with its usage.

Text replies are made of common English words that are one token each, so a reply of N words is N tokens.
Usage is counted independently of the gateway (`counting`): each generated string is encoded
whole, once, with the model's real tokenizer (tool calls: the function name plus its arguments).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

import orjson

from gateway.mock import counting
from gateway.mock.options import MockOptions

# Each is one token, with its leading space, in both o200k_base and cl100k_base.
WORDS = tuple(
    " " + word
    for word in (
        " the of and to in is that for it as with was on be at by this had not are but from or have an they which"
        " one you were her all she there would their we him been has when who will more no if out so said what up"
        " its about into than them can only other new some could time these two may then do first any my now such"
        " like our over man me even most made after also did many before must through back years where much your"
        " way well down should because each just those people how too little state good very make world still own"
        " see men work long get here between both life being under never day same another know while last"
    ).split()
)


@dataclass
class ToolCall:
    name: str
    pieces: list[str]  # the arguments, in the pieces a stream sends

    @property
    def arguments(self) -> str:
        return "".join(self.pieces)


@dataclass
class Reply:
    model: str
    pieces: list[list[str]]  # per choice, the text in the pieces a stream sends
    tool_call: ToolCall | None
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    reported_usage: object = None  # reported instead of the real counts
    id: str = field(default_factory=lambda: f"chatcmpl-mock{uuid.uuid4().hex[:20]}")
    created: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def for_request(cls, body: dict[str, object], options: MockOptions) -> Reply:
        model = str(body.get("model", "mock-model"))
        n = body.get("n")
        choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
        size = max(options.chunk_chars, 1)
        tool = _first_tool_name(body) if options.tool_call_arguments is not None else None
        tool_call = None
        if tool is not None and options.tool_call_arguments is not None:
            text = options.tool_call_arguments
            tool_call = ToolCall(tool, [text[i : i + size] for i in range(0, len(text), size)])
            pieces: list[list[str]] = [[] for _ in range(choices)]
        elif options.text is not None:
            pieces = [[options.text[i : i + size] for i in range(0, len(options.text), size)] for _ in range(choices)]
        else:
            limit = body.get("max_completion_tokens") or body.get("max_tokens") or options.completion_tokens
            length = min(options.completion_tokens, limit if isinstance(limit, int) else options.completion_tokens)
            words = [WORDS[i % len(WORDS)] for i in range(length)]
            if words:
                words[0] = words[0].lstrip()
            pieces = [list(words) for _ in range(choices)]
        completion = sum(counting.count_text(model, "".join(p)) for p in pieces)
        if tool_call is not None:
            name, arguments = (
                counting.count_text(model, tool_call.name),
                counting.count_text(model, tool_call.arguments),
            )
            completion += choices * (name + arguments)
        prompt = counting.count_prompt(body)
        return cls(
            model,
            pieces,
            tool_call,
            prompt,
            completion + options.reasoning_tokens,
            reasoning_tokens=options.reasoning_tokens,
            cached_tokens=min(options.cached_tokens, prompt),
            reported_usage=options.reported_usage,
        )

    def usage(self) -> object:
        if self.reported_usage is not None:
            return self.reported_usage
        usage: dict[str, object] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        if self.reasoning_tokens or self.cached_tokens:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
            usage["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return usage

    def _message(self, index: int) -> dict[str, object]:
        if self.tool_call is None:
            return {"role": "assistant", "content": "".join(self.pieces[index]), "refusal": None}
        call = {"id": f"call_{index}", "type": "function", "function": self._function(self.tool_call.arguments)}
        return {"role": "assistant", "content": None, "tool_calls": [call]}

    def _function(self, arguments: str) -> dict[str, str]:
        assert self.tool_call is not None
        return {"name": self.tool_call.name, "arguments": arguments}

    def _finish(self) -> str:
        return "stop" if self.tool_call is None else "tool_calls"

    def completion(self, with_usage: bool = True) -> dict[str, object]:
        choices = [
            {"index": i, "message": self._message(i), "logprobs": None, "finish_reason": self._finish()}
            for i in range(len(self.pieces))
        ]
        payload: dict[str, object] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if with_usage:
            payload["usage"] = self.usage()
        return payload

    def chunk(self, choices: list[dict[str, object]], usage: object = None) -> bytes:
        payload: dict[str, object] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if usage is not None:
            payload["usage"] = usage
        return b"data: " + dumps(payload) + b"\n\n"

    def _delta_chunk(
        self, index: int, delta: dict[str, object], finish: str | None = None, usage: object = None
    ) -> bytes:
        return self.chunk([{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}], usage)

    def chunks(self, usage_on_last: object = None) -> list[bytes]:
        """The stream's chunks, without the usage chunk and [DONE]; `usage_on_last` rides on the last one (as
        some providers send it, with no usage chunk of its own)."""
        count = len(self.pieces)
        out = [self._delta_chunk(i, {"role": "assistant", "content": ""}) for i in range(count)]
        if self.tool_call is not None:
            for i in range(count):
                first = {"index": 0, "id": f"call_{i}", "type": "function", "function": self._function("")}
                out.append(self._delta_chunk(i, {"tool_calls": [first]}))
                for piece in self.tool_call.pieces:
                    out.append(self._delta_chunk(i, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
        for position in range(max((len(p) for p in self.pieces), default=0)):
            out += [
                self._delta_chunk(i, {"content": p[position]}) for i, p in enumerate(self.pieces) if position < len(p)
            ]
        out += [self._delta_chunk(i, {}, self._finish()) for i in range(count)]
        if usage_on_last is not None and count:
            out[-1] = self._delta_chunk(count - 1, {}, self._finish(), usage_on_last)
        return out


def dumps(payload: object) -> bytes:
    """JSON; the standard library's when orjson refuses (a reported usage beyond 64 bits, on purpose)."""
    try:
        return orjson.dumps(payload)
    except TypeError:
        return json.dumps(payload).encode()


def _first_tool_name(body: dict[str, object]) -> str | None:
    tools = body.get("tools")
    if isinstance(tools, list) and tools and isinstance(tools[0], dict):
        function = tools[0].get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return str(function["name"])
    return None
