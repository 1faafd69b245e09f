"""What the benchmark sends: per API and mode, one request as an official client sends it.

Every load is the same small request again and again, so the rows of the table compare: a one-line prompt
("Hello!"), the mock's replies of --tokens words (legacy completions stop at their default `max_tokens`, 16),
streams with their usage (`stream_options.include_usage` where the API needs asking). Embeddings send a batch
of EMBEDDED strings and ask for base64 vectors, as the official Python client does by default.

The models are those of stack.CONFIG. An API whose route the gateway does not serve (404) is refused before
anything is measured (served.check_served), so a load can be listed here before its route exists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

HELLO = [{"role": "user", "content": "Hello!"}]
STREAM_USAGE = {"stream": True, "stream_options": {"include_usage": True}}
EMBEDDED = ["Hello!", "The quick brown fox jumps over the lazy dog.", "Where is the nearest train station?", "Thanks"]
ANTHROPIC_VERSION = "2023-06-01"


@dataclass(frozen=True)
class ApiLoad:
    """One request of one API in one mode ("plain" or "stream"), and the headers it goes with."""

    api: str
    mode: str
    path: str
    body: Mapping[str, object]
    # The header the gateway key goes in: "authorization" (`Bearer KEY`) or a raw-key header (Anthropic's x-api-key).
    auth_header: str = "authorization"
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.api} {self.mode}"

    def body_bytes(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":")).encode()

    def header_lines(self, key: str) -> list[str]:
        """`Name: value` lines: the content type, the load's own headers, and the key when there is one."""
        lines = ["Content-Type: application/json", *(f"{name}: {value}" for name, value in self.headers.items())]
        if key and self.auth_header == "authorization":
            lines.append(f"Authorization: Bearer {key}")
        elif key:
            lines.append(f"{self.auth_header}: {key}")
        return lines


CHAT, EMBEDDINGS, COMPLETIONS = "/v1/chat/completions", "/v1/embeddings", "/v1/completions"
CLAUDE = {"model": "mock-claude", "max_tokens": 1024, "messages": HELLO}


def _messages(mode: str, body: Mapping[str, object]) -> ApiLoad:
    """Anthropic's SDKs send the key as `x-api-key`, with the API's version."""
    return ApiLoad("messages", mode, "/v1/messages", body, "x-api-key", {"anthropic-version": ANTHROPIC_VERSION})


LOADS: tuple[ApiLoad, ...] = (
    ApiLoad("chat", "plain", CHAT, {"model": "mock-model", "messages": HELLO}),
    ApiLoad("chat", "stream", CHAT, {"model": "mock-model", "messages": HELLO, **STREAM_USAGE}),
    ApiLoad(
        "embeddings", "plain", EMBEDDINGS, {"model": "mock-embedding", "input": EMBEDDED, "encoding_format": "base64"}
    ),
    ApiLoad("completions", "plain", COMPLETIONS, {"model": "mock-instruct", "prompt": "Hello!"}),
    ApiLoad("completions", "stream", COMPLETIONS, {"model": "mock-instruct", "prompt": "Hello!", **STREAM_USAGE}),
    ApiLoad("responses", "plain", "/v1/responses", {"model": "mock-model", "input": "Hello!"}),
    ApiLoad("responses", "stream", "/v1/responses", {"model": "mock-model", "input": "Hello!", "stream": True}),
    _messages("plain", CLAUDE),
    _messages("stream", {**CLAUDE, "stream": True}),
)
APIS = tuple(dict.fromkeys(load.api for load in LOADS))
MODES = ("plain", "stream")
# What the README's table shows.
DEFAULT_APIS = ("chat", "embeddings", "completions", "responses", "messages")


def selected(apis: list[str], modes: list[str]) -> list[ApiLoad]:
    """The loads of `apis` in `modes`, in LOADS' order; ValueError naming what is unknown or selects nothing."""
    unknown = [name for name in apis if name not in APIS] + [mode for mode in modes if mode not in MODES]
    if unknown:
        raise ValueError(f"unknown: {', '.join(unknown)} (APIs: {', '.join(APIS)}; modes: {', '.join(MODES)})")
    loads = [load for load in LOADS if load.api in apis and load.mode in modes]
    if not loads:
        raise ValueError(f"no load is both one of {', '.join(apis)} and {' or '.join(modes)}")
    return loads
