"""Fingerprints: what makes two requests the same, how the turns of a conversation link, and that no text is kept."""

from __future__ import annotations

import hashlib

import orjson

from gateway.insights.fingerprints import take_fingerprint

SYSTEM = {"role": "system", "content": "You are terse."}


def turn(index: int) -> list[dict[str, object]]:
    """The messages of a conversation's turn `index` (1-based): a system message, then user/assistant pairs."""
    messages: list[dict[str, object]] = [SYSTEM]
    for n in range(1, index + 1):
        messages.append({"role": "user", "content": f"question {n}"})
        if n < index:
            messages.append({"role": "assistant", "content": f"answer {n}"})
    return messages


def test_delivery_fields_and_key_order_do_not_change_the_request_hash() -> None:
    body = {"model": "m", "messages": turn(2), "temperature": 0.5, "max_tokens": 10}
    same = [
        dict(reversed(body.items())),
        {**body, "stream": True, "stream_options": {"include_usage": True}, "user": "u-42"},
        {**body, "messages": [dict(reversed(m.items())) for m in turn(2)]},
    ]
    assert {take_fingerprint(b).request_hash for b in same} == {take_fingerprint(body).request_hash}
    different = [
        {**body, "temperature": 0.6},
        {**body, "model": "m2"},
        {**body, "messages": turn(2)[:-1] + [{"role": "user", "content": "question 2!"}]},
        {**body, "n": 2},
    ]
    assert len({take_fingerprint(b).request_hash for b in [body, *different]}) == 5


def test_the_previous_turns_conversation_hash_links_the_turns() -> None:
    prints = [take_fingerprint({"model": "m", "messages": turn(index)}) for index in range(1, 6)]
    assert [p.messages for p in prints] == [2, 4, 6, 8, 10]
    assert [p.turns for p in prints] == [1, 2, 3, 4, 5]
    for earlier, later in zip(prints, prints[1:], strict=False):
        assert later.previous_conversation_hash == earlier.conversation_hash != ""
        assert later.conversation_hash != earlier.conversation_hash
    # The same history with another last question is the same conversation so far, another request.
    other = take_fingerprint({"model": "m", "messages": [*turn(3)[:-1], {"role": "user", "content": "else"}]})
    assert other.conversation_hash == prints[2].conversation_hash and other.request_hash != prints[2].request_hash


def test_one_message_has_no_conversation_and_the_hashes_are_blake2b_of_canonical_bytes() -> None:
    message = {"role": "user", "content": "Hello!"}
    single = take_fingerprint({"model": "m", "messages": [message]})
    assert (single.conversation_hash, single.previous_conversation_hash, single.messages) == ("", "", 1)
    chain = hashlib.blake2b(digest_size=16)
    chain.update(hashlib.blake2b(b'{"content":"Hello!","role":"user"}', digest_size=16).digest())
    chain.update(b'{"model":"m"}')
    assert single.request_hash == chain.hexdigest()
    # The record keeps hashes and a count: none of the text.
    fields = single.record_fields()
    assert fields == {"req_hash": single.request_hash, "conv_hash": "", "messages": 1}
    assert b"Hello" not in orjson.dumps(fields)
