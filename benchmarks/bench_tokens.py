"""Micro-benchmark of gateway.tokens: prompt tokens and requests counted per second.

    python benchmarks/bench_tokens.py [--seconds 1.0]

Each scenario counts the same request body repeatedly on one warm `TokenCounter` (vocabularies
already loaded), as the proxy does per request, and reports the best of three timed rounds.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.tokens import JSONObject, TokenCounter

PARAGRAPH = (
    "The gateway meters every request: it counts prompt tokens before forwarding, reserves credits for "
    "the prompt plus the maximum completion, and settles the exact amount when the response ends. "
)


def weather_tool(name: str) -> JSONObject:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["location"],
            },
        },
    }


def short_chat() -> JSONObject:
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France? Answer in one word."},
        ],
    }


def long_multi_turn() -> JSONObject:
    messages: list[JSONObject] = [{"role": "system", "content": "You are a meticulous technical writer. " * 10}]
    for turn in range(20):
        messages.append({"role": "user", "content": f"Question {turn}: " + PARAGRAPH * 3})
        messages.append({"role": "assistant", "content": f"Answer {turn}: " + PARAGRAPH * 4})
    return {"model": "gpt-4o", "messages": messages}


def tools_request() -> JSONObject:
    tools = [weather_tool(f"tool_{i}") for i in range(8)]
    messages: list[JSONObject] = [
        {"role": "system", "content": "You can call tools to answer questions about the weather."},
        {"role": "user", "content": "What's the weather like in Paris and in Tokyo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "tool_0", "arguments": '{"location": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 21, "conditions": "sunny"}'},
    ]
    return {"model": "gpt-4.1", "messages": messages, "tools": tools, "tool_choice": "auto"}


def stream_chunks() -> list[JSONObject]:
    """A 400-chunk streamed answer, a few characters per chunk as upstreams send them."""
    text = PARAGRAPH * 12
    return [{"choices": [{"index": 0, "delta": {"content": text[i : i + 6]}}]} for i in range(0, len(text), 6)]


def count_stream(counter: TokenCounter, chunks: list[JSONObject]) -> int:
    completion = counter.completion_counter("gpt-4o")
    for chunk in chunks:
        completion.add_chunk(chunk)
    return completion.count_completion_tokens()


def measure(count: Callable[[], int], seconds: float) -> tuple[float, int]:
    """Best requests/second over three rounds of about `seconds` each, and tokens per request."""
    tokens = count()
    best = 0.0
    for _ in range(3):
        calls = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            for _ in range(10):
                count()
            calls += 10
        best = max(best, calls / (time.perf_counter() - start))
    return best, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="duration of each timed round")
    args = parser.parse_args()

    counter = TokenCounter()
    scenarios = {"short chat": short_chat(), "long multi-turn": long_multi_turn(), "tools": tools_request()}
    print(f"{'scenario':<16} {'tokens/request':>15} {'requests/s':>12} {'prompt tokens/s':>16}")
    for name, body in scenarios.items():
        model = str(body["model"])
        counter.count_prompt_tokens(model, body)  # load the vocabulary outside the timing
        per_second, tokens = measure(lambda: counter.count_prompt_tokens(model, body), args.seconds)  # noqa: B023
        print(f"{name:<16} {tokens:>15,} {per_second:>12,.0f} {per_second * tokens:>16,.0f}")

    chunks = stream_chunks()
    per_second, tokens = measure(lambda: count_stream(counter, chunks), args.seconds)
    print(
        f"\ncompletion: {len(chunks)} chunks, {tokens:,} tokens per response: {per_second:,.0f} responses/s, "
        f"{per_second * len(chunks):,.0f} chunks/s, {per_second * tokens:,.0f} completion tokens/s"
    )


if __name__ == "__main__":
    main()
