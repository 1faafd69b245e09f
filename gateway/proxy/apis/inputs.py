"""The text inputs of /v1/embeddings (`input`) and /v1/completions (`prompt`), checked as OpenAI checks them.

Either takes a string, a list of strings, a token array (a list of token ids) or a list of token arrays. A list
is never empty and holds at most MAX_ITEMS items of one kind; a token array is never empty and its ids are
integers from 0 to MAX_TOKEN_ID. Whether an id is in the model's vocabulary is the upstream's business (the
gateway bills a token array by its length, whatever its ids).
"""

from __future__ import annotations

from gateway.errors import InvalidRequest
from gateway.insights.fingerprints import Fingerprint, take_fingerprint
from gateway.proxy.apis import JSON

MAX_ITEMS = 2048  # OpenAI's bound on the inputs of one embeddings request
MAX_TOKEN_ID = 2**31 - 1  # token ids are int32 in every tokenizer; beyond, a value is no token at all
SHAPES = "a string, an array of strings, an array of token ids, or an array of token arrays"
# One item of the list: a text, or a token array.
Item = str | list[int]


def parse_inputs(body: JSON, name: str, *, empty_text: bool) -> list[Item]:
    """The items of the field `name` (one for a string or a single token array); InvalidRequest naming the field
    otherwise. `empty_text`: whether an empty string is an input (a completions prompt) or refused (embeddings)."""
    value = body.get(name)
    if isinstance(value, str):
        return [_text(value, name, empty_text)]
    if not isinstance(value, list) or not value:
        raise InvalidRequest(f"'{name}' is required and must be {SHAPES}; arrays must not be empty.", param=name)
    first = value[0]
    if isinstance(first, int) and not isinstance(first, bool):
        return [_token_array(value, name)]
    if len(value) > MAX_ITEMS:
        raise InvalidRequest(f"'{name}' must have at most {MAX_ITEMS} items, not {len(value)}.", param=name)
    if isinstance(first, str):
        return [_text(item, f"{name}[{index}]", empty_text) for index, item in enumerate(value)]
    if isinstance(first, list):
        return [_token_array(item, f"{name}[{index}]") for index, item in enumerate(value)]
    raise InvalidRequest(f"'{name}' must be {SHAPES}.", param=name)


def _text(value: object, where: str, empty_text: bool) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"'{where}' must be a string, as every item of the array is.", param=where)
    if not value and not empty_text:
        raise InvalidRequest(f"'{where}' must not be an empty string.", param=where)
    return value


def _token_array(value: object, where: str) -> list[int]:
    if not isinstance(value, list) or not value:
        raise InvalidRequest(f"'{where}' must be a non-empty array of token ids.", param=where)
    for index, token in enumerate(value):
        if not _is_token(token):
            raise InvalidRequest(
                f"'{where}[{index}]' must be a token id: an integer from 0 to {MAX_TOKEN_ID}.",
                param=f"{where}[{index}]",
            )
    return value


def _is_token(value: object) -> bool:
    # bool is an int in Python; JSON true is no token id.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKEN_ID


def text_fingerprint(body: JSON) -> Fingerprint:
    """The fingerprint of a body without messages: its request hash covers every field but those that only change
    the delivery (`stream`, `stream_options`, `user`); it has no conversation."""
    return take_fingerprint({**body, "messages": []})


def item_count(value: object) -> int:
    """How many inputs a checked field holds: one for a string or a single token array, else its length."""
    if isinstance(value, list) and value and not isinstance(value[0], int):
        return len(value)
    return 1
