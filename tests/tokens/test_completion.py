from __future__ import annotations

import json
import random
from collections.abc import Iterator

import pytest

from gateway.tokens import CompletionCounter, JSONObject, TokenCounter

MULTILINGUAL = (
    "Hello 👋🏽 world! 👨‍👩‍👧‍👦 family. お誕生日おめでとう。 机器学习很有趣。 "
    "Ünïcödé façade — naïve café. 🇯🇵🇫🇷 Флаги. مرحبا بالعالم. 1234567890 + 2 = 4\n"
) * 3


def text_chunks(text: str, sizes: Iterator[int], choice: int = 0) -> list[JSONObject]:
    chunks: list[JSONObject] = [
        {"object": "chat.completion.chunk", "choices": [{"index": choice, "delta": {"role": "assistant"}}]}
    ]
    position = 0
    while position < len(text):
        size = next(sizes)
        piece = text[position : position + size]
        position += size
        chunks.append({"choices": [{"index": choice, "delta": {"content": piece}, "finish_reason": None}]})
    chunks.append({"choices": [{"index": choice, "delta": {}, "finish_reason": "stop"}]})
    return chunks


def whole(counter: TokenCounter, model: str, text: str) -> int:
    return len(counter.encoding_for(model).encode_ordinary(text))


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4"])
@pytest.mark.parametrize("seed", range(5))
def test_split_text_counts_like_the_whole_text(counter: TokenCounter, model: str, seed: int) -> None:
    rng = random.Random(seed)
    completion = counter.completion_counter(model)
    for chunk in text_chunks(MULTILINGUAL, iter(lambda: rng.randint(1, 4), 0)):
        completion.add_chunk(chunk)
    assert completion.count_completion_tokens() == whole(counter, model, MULTILINGUAL)


def test_one_character_chunks_would_overcount_if_encoded_per_chunk(counter: TokenCounter) -> None:
    completion = counter.completion_counter("gpt-4o")
    chunks = text_chunks(MULTILINGUAL, iter(lambda: 1, 0))
    for chunk in chunks:
        completion.add_chunk(chunk)
    per_chunk = sum(whole(counter, "gpt-4o", character) for character in MULTILINGUAL)
    assert completion.count_completion_tokens() == whole(counter, "gpt-4o", MULTILINGUAL) < per_chunk


def test_surrogate_pair_split_across_json_chunks(counter: TokenCounter) -> None:
    # An upstream may escape an emoji as a UTF-16 pair and cut the stream between the halves.
    raw = [
        '{"choices":[{"index":0,"delta":{"content":"ok \\ud83d"}}]}',
        '{"choices":[{"index":0,"delta":{"content":"\\ude00!"}}]}',
    ]
    completion = counter.completion_counter("gpt-4o")
    for line in raw:
        completion.add_chunk(json.loads(line))
    assert completion.count_completion_tokens() == whole(counter, "gpt-4o", "ok 😀!")


def tool_call_stream(choice: int = 0) -> list[JSONObject]:
    """The shape OpenAI streams for two parallel tool calls."""
    calls = [
        ("call_1", "get_weather", '{"location": "Paris, France", "unit": "celsius"}'),
        ("call_2", "get_time", '{"tz": "Europe/Paris"}'),
    ]
    chunks: list[JSONObject] = [{"choices": [{"index": choice, "delta": {"role": "assistant", "content": None}}]}]
    for index, (call_id, name, arguments) in enumerate(calls):
        first = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        chunks.append({"choices": [{"index": choice, "delta": {"tool_calls": [first]}}]})
        for start in range(0, len(arguments), 3):
            fragment = {"index": index, "function": {"arguments": arguments[start : start + 3]}}
            chunks.append({"choices": [{"index": choice, "delta": {"tool_calls": [fragment]}}]})
    chunks.append({"choices": [{"index": choice, "delta": {}, "finish_reason": "tool_calls"}]})
    return chunks


def tool_call_tokens(counter: TokenCounter) -> int:
    texts = ["get_weather", '{"location": "Paris, France", "unit": "celsius"}', "get_time", '{"tz": "Europe/Paris"}']
    return sum(whole(counter, "gpt-4o", text) for text in texts)


def test_tool_call_streams_count_names_and_arguments(counter: TokenCounter) -> None:
    completion = counter.completion_counter("gpt-4o")
    for chunk in tool_call_stream():
        completion.add_chunk(chunk)
    assert completion.count_completion_tokens() == tool_call_tokens(counter)


def test_legacy_function_call_and_refusal_streams(counter: TokenCounter) -> None:
    completion = counter.completion_counter("gpt-4o")
    for delta in [
        {"function_call": {"name": "lookup", "arguments": ""}},
        {"function_call": {"arguments": '{"q": "tok'}},
        {"function_call": {"arguments": 'ens"}'}},
        {"refusal": "I can't "},
        {"refusal": "help with that."},
    ]:
        completion.add_chunk({"choices": [{"index": 0, "delta": delta}]})
    expected = sum(whole(counter, "gpt-4o", t) for t in ["lookup", '{"q": "tokens"}', "I can't help with that."])
    assert completion.count_completion_tokens() == expected


def test_n_choices_interleaved_are_summed(counter: TokenCounter) -> None:
    texts = ["The quick brown fox jumps over the lazy dog.", "素早い茶色の狐が怠け者の犬を飛び越える。", "🦊🐶" * 5]
    streams = [text_chunks(text, iter(lambda: 2, 0), choice=i) for i, text in enumerate(texts)]
    streams.append(tool_call_stream(choice=3))
    completion = counter.completion_counter("gpt-4o")
    for step in range(max(len(s) for s in streams)):
        for stream in streams:
            if step < len(stream):
                completion.add_chunk(stream[step])
    expected = sum(whole(counter, "gpt-4o", text) for text in texts) + tool_call_tokens(counter)
    assert completion.count_completion_tokens() == expected


def test_a_plain_response_counts_text_tool_calls_and_refusals(counter: TokenCounter) -> None:
    body = {
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Paris is sunny. ☀️"}, "finish_reason": "stop"},
            {
                "index": 1,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {
                                "name": "get_weather",
                                "arguments": '{"location": "Paris, France", "unit": "celsius"}',
                            },
                        },
                        {
                            "id": "call_2",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": '{"tz": "Europe/Paris"}'},
                        },
                    ],
                },
            },
            {"index": 2, "message": {"role": "assistant", "content": None, "refusal": "I can't help with that."}},
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 40, "total_tokens": 50},
    }
    completion = counter.completion_counter("gpt-4o")
    completion.add_response(body)
    expected = whole(counter, "gpt-4o", "Paris is sunny. ☀️") + tool_call_tokens(counter)
    expected += whole(counter, "gpt-4o", "I can't help with that.")
    assert completion.count_completion_tokens() == expected


class SpyEncoding:
    def __init__(self, counter: TokenCounter) -> None:
        self.calls = 0
        self._encoding = counter.encoding_for("gpt-4o")

    def encode_ordinary(self, text: str) -> list[int]:
        self.calls += 1
        return self._encoding.encode_ordinary(text)


def test_encodes_once_and_caches_until_new_data(counter: TokenCounter) -> None:
    spy = SpyEncoding(counter)
    completion = CompletionCounter(spy)  # type: ignore[arg-type]
    for chunk in text_chunks("Hello there, how are you today?", iter(lambda: 3, 0)):
        completion.add_chunk(chunk)
    assert spy.calls == 0
    first = completion.count_completion_tokens()
    assert completion.count_completion_tokens() == first
    assert spy.calls == 1  # one channel, encoded once, then cached
    completion.add_chunk({"choices": [{"index": 0, "delta": {"content": " Fine."}}]})
    assert completion.count_completion_tokens() == whole(counter, "gpt-4o", "Hello there, how are you today? Fine.")
    completion.add_chunk({"choices": [], "usage": {"completion_tokens": 9}})
    completion.count_completion_tokens()
    assert spy.calls == 2


MALFORMED_CHUNKS: list[object] = [
    {},
    {"choices": None},
    {"choices": "x"},
    {"choices": [None, 1, "a", []]},
    {"choices": [{"index": "zero", "delta": {"content": "a"}}]},
    {"choices": [{"index": True, "delta": {"content": "b"}}]},
    {"choices": [{"index": -3, "delta": {"content": "c"}}]},
    {"choices": [{"delta": None}, {"delta": "text"}, {"delta": {"content": 5, "refusal": [1]}}]},
    {"choices": [{"delta": {"tool_calls": "x"}}, {"delta": {"tool_calls": [None, {"function": "f"}]}}]},
    {"choices": [{"delta": {"tool_calls": [{"index": None, "function": {"name": None, "arguments": {}}}]}}]},
    {"choices": [{"delta": {"function_call": "auto"}}]},
    {"choices": [{"message": {"content": "not a delta"}}]},
]


def test_malformed_chunks_never_raise(counter: TokenCounter) -> None:
    completion = counter.completion_counter("gpt-4o")
    for chunk in MALFORMED_CHUNKS:
        completion.add_chunk(chunk)  # type: ignore[arg-type]
        completion.add_response(chunk)  # type: ignore[arg-type]
    # Only "a", "b", "c" and the response's "not a delta" count; invalid indexes fall back to the
    # list position, so all four land in choice 0's content, in arrival order.
    assert completion.count_completion_tokens() == whole(counter, "gpt-4o", "abcnot a delta")


def test_empty_counter_is_zero(counter: TokenCounter) -> None:
    assert counter.completion_counter("gpt-4o").count_completion_tokens() == 0


def test_legacy_choices_without_an_index_count_apart(counter: TokenCounter) -> None:
    """Two choices of one answer, neither with its index: their texts are not joined ("hel" + "lo" would make one
    token of "hello")."""
    completion = counter.completion_counter("gpt-4o")
    completion.add_text_completion({"choices": [{"text": "hel"}, {"text": "lo"}]})
    assert completion.count_completion_tokens() == whole(counter, "gpt-4o", "hel") + whole(counter, "gpt-4o", "lo")
    completion.add_text_completion([])  # not an answer: nothing to count
    assert completion.count_completion_tokens() == 2


def test_each_choice_leaves_out_its_own_prompts_echo(counter: TokenCounter) -> None:
    """One choice per prompt: choice 1 echoes prompt 1, not prompt 0."""
    completion = counter.completion_counter("gpt-4o")
    completion.expect_echo(["Say hi", "Name three colours please"], 1)
    assert completion.count_completion_tokens() == 0
    completion.add_text_completion({"choices": [{"index": 0, "text": "Say hi Hi!"}]})
    completion.add_text_completion({"choices": [{"index": 1, "text": "Name three colours please Red"}]})
    assert completion.count_completion_tokens() == whole(counter, "gpt-4o", " Hi!") + whole(counter, "gpt-4o", " Red")
