"""Embeddings inputs and legacy completions prompts, in their four shapes, and the text of legacy completion
answers (echo included), counted against tiktoken itself and published counts."""

from __future__ import annotations

import pytest

from gateway.mock.counting import encoding
from gateway.tokens import TokenCounter

# tiktoken's own encodings (built by the mock from tiktoken_ext's constructors), an oracle apart from gateway.tokens.
O200K, CL100K = encoding("o200k_base"), encoding("cl100k_base")
TEXTS = ["The quick brown fox jumps over the lazy dog.", "Grüße 👋🏽 from 東京!", "<|endoftext|> is text here", " "]


def test_published_counts() -> None:
    """OpenAI's tokenizer page: the fox sentence is 10 tokens for GPT-4o and GPT-4 alike; "hello world" is 2."""
    counter = TokenCounter()
    assert counter.count_input_tokens("gpt-4o", TEXTS[0]) == 10
    assert counter.count_input_tokens("text-embedding-3-small", TEXTS[0]) == 10
    assert counter.count_input_tokens("gpt-4o", "hello world") == 2


@pytest.mark.parametrize(("model", "oracle"), [("gpt-4o-mini", O200K), ("text-embedding-3-large", CL100K)])
def test_every_shape_counts_as_tiktoken_does(counter: TokenCounter, model: str, oracle: object) -> None:
    def tokens(text: str) -> int:
        return len(oracle.encode(text, disallowed_special=()))  # type: ignore[attr-defined]

    assert counter.count_input_tokens(model, TEXTS[1]) == tokens(TEXTS[1])
    # Each string of a list is encoded on its own (BPE never merges across inputs).
    assert counter.count_input_tokens(model, TEXTS) == sum(tokens(text) for text in TEXTS)
    assert counter.count_input_tokens(model, [5, 6, 7]) == 3
    assert counter.count_input_tokens(model, [[5, 6, 7], [8], [9, 10]]) == 6
    assert counter.count_input_tokens(model, "") == 0
    assert counter.count_text_tokens(model, TEXTS[2]) == tokens(TEXTS[2])


def test_unexpected_values_count_nothing(counter: TokenCounter) -> None:
    assert counter.count_input_tokens("gpt-4o", None) == 0
    assert counter.count_input_tokens("gpt-4o", {"text": "hi"}) == 0
    assert counter.count_input_tokens("gpt-4o", [True, 1.5, None]) == 0


def _chunks(texts: dict[int, str], size: int) -> list[dict[str, object]]:
    """A text_completion stream of `texts` (choice index -> text), `size` characters at a time."""
    chunks: list[dict[str, object]] = []
    for index, text in texts.items():
        for start in range(0, len(text), size):
            piece = text[start : start + size]
            chunks.append({"object": "text_completion", "choices": [{"index": index, "text": piece}]})
    return chunks


def test_text_completions_count_each_choice_whole(counter: TokenCounter) -> None:
    texts = {0: TEXTS[0], 1: TEXTS[1], 2: " the of and"}
    plain = counter.completion_counter("gpt-4o")
    plain.add_text_completion(
        {"object": "text_completion", "choices": [{"index": i, "text": t} for i, t in texts.items()]}
    )
    streamed = counter.completion_counter("gpt-4o")
    for chunk in _chunks(texts, 2):
        streamed.add_text_completion(chunk)
    expected = sum(len(O200K.encode(text)) for text in texts.values())
    assert plain.count_completion_tokens() == streamed.count_completion_tokens() == expected


def test_echoed_prompts_are_left_out(counter: TokenCounter) -> None:
    """Choice i echoes prompt i // 2 (n = 2): a string prompt, and a token array as tiktoken decodes it."""
    prompts: list[str | list[int]] = ["Say this is a test", O200K.encode("Ünïcödé 東京")]
    completion = counter.completion_counter("gpt-4o")
    completion.expect_echo(prompts, 2)
    generated = [" the of and", " it was", " one", ""]
    texts = {i: ("Say this is a test" if i < 2 else "Ünïcödé 東京") + generated[i] for i in range(4)}
    for chunk in _chunks(texts, 3):
        completion.add_text_completion(chunk)
    assert completion.count_completion_tokens() == 3 + 2 + 1 + 0


def test_an_echo_that_is_not_there_is_subtracted_as_tokens(counter: TokenCounter) -> None:
    """An upstream that echoes otherwise (or ids this vocabulary lacks): the text less the prompt's tokens, at
    least 0."""
    completion = counter.completion_counter("gpt-4o")
    completion.expect_echo(["Hello there", [300_000, 1]], 1)
    completion.add_text_completion({"choices": [{"index": 0, "text": "HELLO THERE the of"}]})
    completion.add_text_completion({"choices": [{"index": 1, "text": "x"}]})
    whole = len(O200K.encode("HELLO THERE the of"))
    assert completion.count_completion_tokens() == whole - len(O200K.encode("Hello there")) + 0
