"""Request fingerprints, taken on the hot path from the parsed body: hashes and counts, never text.

Each message is encoded once in a canonical form (keys sorted) and hashed with BLAKE2b; the message digests are
chained, so one pass gives the hash of every prefix the detectors need:

- the conversation hash: all messages but the last (the history this request resends), "" for one message;
- the previous turn's conversation hash: all but the last three, which is what the turn before had as its
  conversation hash when one answer and one new message came between (it links the turns of a conversation);
- the request hash: every message, then every other field but `stream`, `stream_options` and `user`, in any
  key order.

    fingerprint = take_fingerprint(chat.body)  # body as parse_chat_request checked it
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import blake2b

import orjson

from gateway.billing.record import CONVERSATION_HASH, MESSAGES, REQUEST_HASH

# Fields that change how an answer is delivered or attributed, not what it is.
IGNORED_FIELDS = frozenset({"messages", "stream", "stream_options", "user"})
DIGEST_BYTES = 16  # 128 bits: no two requests of an account collide by chance
CANONICAL = orjson.OPT_SORT_KEYS


@dataclass(frozen=True, slots=True)
class Fingerprint:
    request_hash: str
    conversation_hash: str  # "" when the request has one message
    previous_conversation_hash: str  # "" when it has fewer than four
    messages: int
    turns: int  # user messages: the turns of the conversation so far, this one included

    def record_fields(self) -> dict[str, str | int]:
        """What every request record keeps of it."""
        return {REQUEST_HASH: self.request_hash, CONVERSATION_HASH: self.conversation_hash, MESSAGES: self.messages}


def take_fingerprint(body: Mapping[str, object]) -> Fingerprint:
    """The fingerprint of a chat body whose `messages` is a non-empty list of objects (parse_chat_request)."""
    messages = body["messages"]
    assert isinstance(messages, list)
    count = len(messages)
    chain = blake2b(digest_size=DIGEST_BYTES)
    conversation = previous = ""
    turns = 0
    for index, message in enumerate(messages):
        if index == count - 3 and index:
            previous = chain.hexdigest()
        if index == count - 1 and index:
            conversation = chain.hexdigest()
        chain.update(blake2b(orjson.dumps(message, option=CANONICAL), digest_size=DIGEST_BYTES).digest())
        if message.get("role") == "user":
            turns += 1
    others = {name: value for name, value in body.items() if name not in IGNORED_FIELDS}
    chain.update(orjson.dumps(others, option=CANONICAL))
    return Fingerprint(chain.hexdigest(), conversation, previous, count, turns)
