"""/v1/completions of the mock upstream: legacy text completions, plain and streamed, with their usage counted by
the mock's own rule.

Each choice's text is the mock's reply words (`reply.WORDS`, or the options' fixed text), at most `max_tokens`
of them (OpenAI's default: 16); `n` choices per prompt, indexed prompt by prompt; with `echo` each text starts with
its prompt (a token array decoded with tiktoken). Usage (tiktoken directly, `counting`): prompt tokens are each
prompt's tokens (a token array: its length), plus the suffix's once per prompt; completion tokens are the
generated text's tokens for every candidate generated (`best_of`, else `n`, per prompt), the echo left out.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from aiohttp import web

from gateway.mock import counting
from gateway.mock.exchange import MOCK_OPTIONS, accepted_body, send_stream, wants_usage
from gateway.mock.options import MockOptions
from gateway.mock.reply import WORDS, dumps

DEFAULT_MAX_TOKENS = 16  # OpenAI's


async def completions(request: web.Request) -> web.StreamResponse:
    body = await accepted_body(request, lambda body: body.get("prompt") is not None, "prompt")
    if isinstance(body, web.Response):
        return body
    options = request.app[MOCK_OPTIONS]
    reply = TextReply.for_request(body, options)
    if not body.get("stream"):
        return web.json_response(reply.completion(options.usage), dumps=lambda obj: dumps(obj).decode())
    usage_chunk = options.usage and wants_usage(body)
    chunks = reply.chunks(usage_on_last=usage_chunk and options.usage_on_last_chunk)
    if usage_chunk and not options.usage_on_last_chunk:
        chunks.append(reply.chunk([], reply.usage()))
    return await send_stream(request, chunks, reply.id)


@dataclass
class TextReply:
    model: str
    echoes: list[str]  # per choice: the prompt its text starts with ("" without echo)
    pieces: list[str]  # the generated text, in the pieces a stream sends (the same for every choice)
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    reported_usage: object = None
    id: str = field(default_factory=lambda: f"cmpl-mock{uuid.uuid4().hex[:20]}")
    created: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def for_request(cls, body: dict[str, object], options: MockOptions) -> TextReply:
        model = str(body.get("model", "mock-model"))
        prompts = counting.input_items(body["prompt"])
        n = _positive(body.get("n"), 1)
        limit = body.get("max_tokens")
        limit = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0 else DEFAULT_MAX_TOKENS
        pieces, finish = _generated(options, limit)
        echo = body.get("echo") is True
        echoes = [_text(model, prompt) if echo else "" for prompt in prompts for _ in range(n)]
        suffix = body.get("suffix")
        suffix_tokens = counting.count_text(model, suffix) if isinstance(suffix, str) else 0
        candidates = _positive(body.get("best_of"), n) * len(prompts)
        return cls(
            model,
            echoes,
            pieces,
            finish,
            counting.count_input(model, prompts) + suffix_tokens * len(prompts),
            candidates * counting.count_text(model, "".join(pieces)),
            reported_usage=options.reported_usage,
        )

    def usage(self) -> object:
        if self.reported_usage is not None:
            return self.reported_usage
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    def completion(self, with_usage: bool) -> dict[str, object]:
        text = "".join(self.pieces)
        choices = [self._choice(index, echo + text, self.finish_reason) for index, echo in enumerate(self.echoes)]
        payload = self._payload(choices)
        if with_usage:
            payload["usage"] = self.usage()
        return payload

    def chunk(self, choices: list[dict[str, object]], usage: object = None) -> bytes:
        payload = self._payload(choices)
        if usage is not None:
            payload["usage"] = usage
        return b"data: " + dumps(payload) + b"\n\n"

    def chunks(self, usage_on_last: bool = False) -> list[bytes]:
        """The stream's chunks, without the usage chunk and [DONE]: each choice's echo, then the generated text
        piece by piece, then each choice's finish; `usage_on_last` puts the usage on the last one."""
        count = len(self.echoes)
        out = [self.chunk([self._choice(i, echo, None)]) for i, echo in enumerate(self.echoes) if echo]
        for piece in self.pieces:
            out += [self.chunk([self._choice(i, piece, None)]) for i in range(count)]
        out += [self.chunk([self._choice(i, "", self.finish_reason)]) for i in range(count)]
        if usage_on_last and count:
            out[-1] = self.chunk([self._choice(count - 1, "", self.finish_reason)], self.usage())
        return out

    def _payload(self, choices: list[dict[str, object]]) -> dict[str, object]:
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    @staticmethod
    def _choice(index: int, text: str, finish: str | None) -> dict[str, object]:
        return {"text": text, "index": index, "logprobs": None, "finish_reason": finish}


def _generated(options: MockOptions, limit: int) -> tuple[list[str], str]:
    """The generated text's pieces and why it ended: the options' fixed text (whole), else reply words, at most
    `limit` of them (one token each)."""
    if options.text is not None:
        size = max(options.chunk_chars, 1)
        return [options.text[i : i + size] for i in range(0, len(options.text), size)], "stop"
    length = min(options.completion_tokens, limit)
    words = [WORDS[i % len(WORDS)] for i in range(length)]
    return words, "length" if length == limit else "stop"


def _text(model: str, prompt: object) -> str:
    """A prompt as the text the model read: itself, or a token array decoded."""
    if isinstance(prompt, str):
        return prompt
    tokens = [token for token in prompt if isinstance(token, int)] if isinstance(prompt, list) else []
    try:
        return counting.encoding_for_model(model).decode(tokens)
    except (KeyError, ValueError, OverflowError):
        return ""


def _positive(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default
