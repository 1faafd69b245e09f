"""Prompt and completion counts against rules written out here, over tiktoken's own encoder; fresh vocabulary
loads; the counter's options.

`T(text)` is tiktoken itself (through the mock upstream's counter, which imports nothing of `gateway.tokens`);
the framing constants are the OpenAI cookbook's for gpt-4o: 3 per message and 3 priming the reply. The rules
beyond the cookbook (refusal parts, a json_schema response_format, completion channels) are the ones
gateway/tokens/prompt.py, functions.py and completion.py document, restated in each test.
"""

from __future__ import annotations

import json

import pytest

from gateway.mock.counting import count_text
from gateway.tokens import TokenCounter
from gateway.tokens import encodings as encodings_module

MODEL = "gpt-4o"
PER_MESSAGE, PRIMING = 3, 3


def T(text: str) -> int:
    return count_text(MODEL, text)


def prompt(counter: TokenCounter, **body: object) -> int:
    return counter.count_prompt_tokens(MODEL, body)


def test_every_text_refusal_and_string_part_counts(counter: TokenCounter) -> None:
    content = [
        {"type": "text", "text": "Hello"},
        {"type": "refusal", "refusal": "I can't help with that"},
        "plain",
        {"type": "text", "text": "world"},
        {"type": "input_audio", "input_audio": {"data": "AAAA"}},  # no published formula: counts zero
    ]
    expected = PER_MESSAGE + T("assistant") + T("Hello") + T("I can't help with that") + T("plain") + T("world")
    assert prompt(counter, messages=[{"role": "assistant", "content": content}]) == expected + PRIMING


def test_an_empty_content_counts_nothing(counter: TokenCounter) -> None:
    assert prompt(counter, messages=[{"role": "user", "content": ""}]) == PER_MESSAGE + T("user") + PRIMING


def test_malformed_calls_count_nothing(counter: TokenCounter) -> None:
    messages = [{"role": "assistant", "tool_calls": "oops", "function_call": ["not", "an", "object"]}]
    assert prompt(counter, messages=messages) == PER_MESSAGE + T("assistant") + PRIMING


def test_a_json_schema_response_format_counts_its_name_description_and_compact_schema(counter: TokenCounter) -> None:
    schema = {"type": "object", "properties": {"dish": {"type": "string", "description": "un café"}}}
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "menu", "description": "A menu", "schema": schema},
    }
    compact = json.dumps(schema, separators=(",", ":"), ensure_ascii=False)  # "café" as itself, not \u00e9
    assert prompt(counter, response_format=response_format) == T("menu") + T("A menu") + T(compact) + PRIMING
    bare = {"type": "json_schema", "json_schema": {"name": "menu", "schema": schema}}  # no description: nothing
    assert prompt(counter, response_format=bare) == T("menu") + T(compact) + PRIMING
    for unpriced in ({"type": "json_schema", "json_schema": "menu"}, {"type": "json_object"}, "json_schema"):
        assert prompt(counter, response_format=unpriced) == PRIMING


def completion(counter: TokenCounter, *chunks: object) -> int:
    counting = counter.completion_counter(MODEL)
    for chunk in chunks:
        counting.add_chunk(chunk)  # type: ignore[arg-type]
    return counting.count_completion_tokens()


def test_choices_streamed_out_of_order_are_told_apart_by_index(counter: TokenCounter) -> None:
    first = {"choices": [{"index": 1, "delta": {"content": "foo"}}, {"index": 0, "delta": {"content": "bar"}}]}
    second = {"choices": [{"index": 0, "delta": {"content": "baz"}}]}
    # choice 1 says "foo", choice 0 "barbaz" (3 tokens); "foobar" and "baz" would be 2
    assert completion(counter, first, second) == T("foo") + T("barbaz") == 3


def test_choices_without_an_index_are_told_apart_by_position(counter: TokenCounter) -> None:
    counting = counter.completion_counter(MODEL)
    counting.add_response({"choices": [{"message": {"content": "look"}}, {"message": {"content": "up"}}]})
    assert counting.count_completion_tokens() == T("look") + T("up") == 2  # "lookup" would be 1


def test_each_tool_call_of_each_choice_is_encoded_on_its_own(counter: TokenCounter) -> None:
    counting = counter.completion_counter(MODEL)
    look, up = {"name": "look", "arguments": "look"}, {"name": "up", "arguments": "up"}
    counting.add_response(
        {
            "choices": [
                {"index": 0, "message": {"tool_calls": [{"function": look}, {"function": up}], "function_call": look}},
                {"index": 1, "message": {"tool_calls": [{"function": up}], "function_call": up}},
            ]
        }
    )
    # 10 channels of one token each; any "look" and "up" joined ("lookup") would encode as one
    assert counting.count_completion_tokens() == 4 * T("look") + 6 * T("up") == 10


def test_a_payload_that_is_not_an_object_adds_nothing(counter: TokenCounter) -> None:
    assert completion(counter, [], "data", None, {"choices": "none"}) == 0


@pytest.mark.parametrize("name", sorted(encodings_module.SPECS))
def test_a_fresh_load_of_each_vocabulary_encodes_like_tiktoken(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encodings_module, "_loaded", {})  # as a new process would: read, check and parse the file
    fresh = encodings_module.get_encoding(name)
    assert encodings_module.get_encoding(name) is fresh  # loaded once
    text = "Tokenizers split 'café', naïve code(), and 12345 differently <|endoftext|>."
    reference = "cl100k_base" if name == "cl100k_base" else "o200k_base"
    assert fresh.name == name
    assert fresh.encode_ordinary(text) == _tiktoken(reference).encode_ordinary(text)
    assert fresh.encode(text, allowed_special="all") == _tiktoken(reference).encode(text, allowed_special="all")


def _tiktoken(name: str):  # type: ignore[no-untyped-def]
    from gateway.mock.counting import encoding

    return encoding(name)


def test_an_alias_to_an_encoding_keeps_the_models_own_prompt_and_image_rules() -> None:
    aliased = TokenCounter(model_encodings={"GPT-4o-Mini": "o200k_base"})
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    body = {"messages": [{"role": "user", "content": [image]}]}
    # gpt-4o-mini prices a 1024x1024 image at 2833 + 4 x 5667 tokens, not gpt-4o's 85 + 4 x 170
    assert aliased.count_prompt_tokens("GPT-4o-Mini", body) == PER_MESSAGE + T("user") + 2833 + 4 * 5667 + PRIMING


def test_remote_images_count_as_the_configured_size() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    body = {"messages": [{"role": "user", "content": [image]}]}
    # 512 x 512 on gpt-4o: 85 + 1 tile x 170
    assert TokenCounter(remote_image_size=(512, 512)).count_prompt_tokens(MODEL, body) == 3 + T("user") + 255 + 3


@pytest.mark.parametrize("size", [(0, 512), (512, 0), (-1, 5)])
def test_a_remote_image_size_must_be_positive(size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="remote_image_size must be positive"):
        TokenCounter(remote_image_size=size)


def test_the_smallest_remote_image_size_is_accepted() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/dot.png"}}
    body = {"messages": [{"role": "user", "content": [image]}]}
    assert TokenCounter(remote_image_size=(1, 1)).count_prompt_tokens(MODEL, body) == 3 + T("user") + 255 + 3


@pytest.mark.timeout(10)
def test_an_alias_cycle_behind_another_alias_is_refused() -> None:
    with pytest.raises(ValueError, match="alias cycle"):
        TokenCounter(model_encodings={"front": "a", "a": "b", "b": "a"})
