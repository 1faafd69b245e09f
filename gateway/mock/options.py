"""How the mock upstream behaves: reply length, latency, usage reporting and the faults it plays."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MockOptions:
    completion_tokens: int = 16  # reply length in tokens, bounded by the request's max_tokens
    latency_ms: int = 0  # before the response starts
    chunk_delay_ms: int = 0  # between streamed chunks
    usage: bool = True  # report usage (plain responses; streams when include_usage is asked for)
    usage_on_last_chunk: bool = False  # stream: usage on the last content chunk, no usage chunk of its own
    fail_status: int | None = None  # answer every chat request with this error status
    tool_call_arguments: str | None = None  # when the request has tools: call the first one with these arguments
    # Calls of the request's first built-in tool before the reply (Responses; Messages: web searches), at most its
    # max_tool_calls (max_uses) unless builtin_calls_past_limit: a misbehaving upstream.
    builtin_tool_calls: int = 0
    builtin_calls_past_limit: bool = False
    reasoning_tokens: int = 0  # hidden reasoning tokens to report (billed as completion tokens)
    cached_tokens: int = 0  # prompt tokens to report as cached
    stall_after_chunks: int | None = None  # stream: go silent after this many chunks
    cut_after_chunks: int | None = None  # stream: drop the connection after this many chunks
    text: str | None = None  # a fixed reply instead of generated words, streamed `chunk_chars` at a time
    chunk_chars: int = 3
    api_key: str | None = None  # when set, requests must carry `Authorization: Bearer <api_key>`
    reported_usage: object = None  # when set, reported as `usage` as is: a misbehaving upstream's figures
    # With error_body: answer every chat request, and every conversation call, with this status and body.
    error_status: int | None = None
    error_body: bytes = b""
    redirect_to: str | None = None  # answer every chat request with a 307 to this URL
    # Messages streams: message_delta reports "output" (output_tokens alone, as Anthropic long did) or "full"
    # (every usage figure, cumulative).
    message_delta_usage: str = "output"
    # Responses' background answers: retrievals that show one still in progress before it shows finished, and
    # whether one cancelled then has its output (and usage) or none.
    background_looks: int = 2
    cancel_with_output: bool = False
