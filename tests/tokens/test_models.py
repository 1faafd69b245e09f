from __future__ import annotations

import pytest

from gateway.tokens import TokenCounter, get_encoding
from gateway.tokens.models import ModelResolver, chat_format, fine_tune_base

O200K = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4o-2024-08-06",
    "gpt-4o-mini-2024-07-18",
    "chatgpt-4o-latest",
    "gpt-4.1",
    "gpt-4.1-mini-2025-04-14",
    "gpt-4.5-preview",
    "o1",
    "o1-mini",
    "o3-mini",
    "o4-mini-2025-04-16",
    "gpt-5",
    "gpt-5-nano",
    "gpt-5.1",
    "gpt-oss-120b",
    "ft:gpt-4o-mini:my-org::abc123",
    "ft:gpt-4o-2024-08-06:my-org:custom:xyz",
    "GPT-4o",
    " gpt-4o ",
]
CL100K = [
    "gpt-4",
    "gpt-4-0613",
    "gpt-4-turbo",
    "gpt-4-turbo-2024-04-09",
    "gpt-4-32k",
    "gpt-3.5-turbo",
    "gpt-3.5-turbo-0125",
    "gpt-35-turbo",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
    "ft:gpt-3.5-turbo-0125:org::id",
    "ft:gpt-4-0613:org::id",
]


@pytest.mark.parametrize("model", O200K)
def test_o200k_models_resolve_to_o200k_base(counter: TokenCounter, model: str) -> None:
    assert counter.encoding_name_for(model) == "o200k_base"


@pytest.mark.parametrize("model", CL100K)
def test_cl100k_models_resolve_to_cl100k_base(counter: TokenCounter, model: str) -> None:
    assert counter.encoding_name_for(model) == "cl100k_base"


@pytest.mark.parametrize("model", ["llama-3.1-70b-instruct", "mistral-large", "", "ft:", "gpt-4.7", "ft::org::id"])
def test_unknown_models_use_the_default_encoding(model: str) -> None:
    assert TokenCounter().encoding_name_for(model) == "o200k_base"
    assert TokenCounter(default_encoding="cl100k_base").encoding_name_for(model) == "cl100k_base"


def test_fine_tune_names_resolve_to_their_base() -> None:
    assert fine_tune_base("ft:gpt-4o-mini:org::id") == "gpt-4o-mini"
    assert fine_tune_base("FT:gpt-4o:org::id") == "gpt-4o"
    assert fine_tune_base("gpt-4o") == "gpt-4o"
    assert fine_tune_base("ft:") == "ft:"


def test_an_alias_to_an_encoding_name_uses_that_encoding() -> None:
    counter = TokenCounter(model_encodings={"my-llama": "cl100k_base"})
    assert counter.encoding_name_for("my-llama") == "cl100k_base"
    assert counter.encoding_for("my-llama") is get_encoding("cl100k_base")


def test_alias_to_model_follows_the_chain_and_shares_the_models_format() -> None:
    counter = TokenCounter(
        default_encoding="cl100k_base",
        model_encodings={"prod-chat": "azure-4o-mini", "azure-4o-mini": "gpt-4o-mini", "base-x": "o200k_base"},
    )
    assert counter.encoding_name_for("prod-chat") == "o200k_base"
    # The alias also prices images as gpt-4o-mini: 2833 base tokens at low detail.
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}}
    body = {"messages": [{"role": "user", "content": [image]}]}
    assert counter.count_prompt_tokens("prod-chat", body) == counter.count_prompt_tokens("gpt-4o-mini", body)
    assert counter.count_prompt_tokens("prod-chat", body) == 3 + 1 + 2833 + 3
    # Overrides apply to a fine-tune's base name as well.
    assert counter.encoding_name_for("ft:base-x:org::id") == "o200k_base"


def test_alias_overrides_the_builtin_table() -> None:
    assert TokenCounter(model_encodings={"gpt-4": "o200k_base"}).encoding_name_for("gpt-4") == "o200k_base"


def test_bad_configuration_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="default encoding"):
        TokenCounter(default_encoding="p50k_base")
    with pytest.raises(ValueError, match="cycle"):
        TokenCounter(model_encodings={"a": "b", "b": "c", "c": "a"})
    with pytest.raises(ValueError, match="remote_image_size"):
        TokenCounter(remote_image_size=(0, 1024))


def test_alias_loop_through_fine_tune_names_terminates() -> None:
    resolver = ModelResolver("o200k_base", {"gpt-x": "ft:gpt-x:org::id"})
    assert resolver.resolve("gpt-x").encoding_name == "o200k_base"


def test_chat_format_constants_per_family() -> None:
    resolver = ModelResolver("o200k_base", {})
    assert chat_format(resolver.resolve("gpt-4o")) == chat_format(resolver.resolve("gpt-4-0613"))
    plain = chat_format(resolver.resolve("gpt-4o"))
    assert (plain.tokens_per_message, plain.tokens_per_name, plain.reply_priming) == (3, 1, 3)
    legacy = chat_format(resolver.resolve("gpt-3.5-turbo-0301"))
    assert (legacy.tokens_per_message, legacy.tokens_per_name) == (4, -1)


def test_gpt_35_turbo_0301_counts_4_per_message_and_minus_1_per_name(counter: TokenCounter) -> None:
    # Cookbook (pre-2024 revision): 4 tokens per message, a name replaces the role (-1).
    enc = counter.encoding_for("gpt-3.5-turbo-0301")
    message = {"role": "user", "name": "bob", "content": "hi there"}
    expected = 4 + len(enc.encode("user")) + len(enc.encode("bob")) - 1 + len(enc.encode("hi there")) + 3
    assert counter.count_prompt_tokens("gpt-3.5-turbo-0301", {"messages": [message]}) == expected


def test_per_model_cache_is_bounded() -> None:
    # Model names come from clients; a flood of distinct names must not grow memory without bound.
    counter = TokenCounter()
    for i in range(10_000):
        counter.count_prompt_tokens(f"client-model-{i}", {"messages": []})
    assert len(counter._plans) <= 4096
