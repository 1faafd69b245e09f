"""Tokens of the `input` of /v1/embeddings and the `prompt` of /v1/completions.

Both take one of four shapes: a string, a list of strings, a token array (a list of token ids) or a list of
token arrays. Each string is encoded whole, on its own, with no chat framing (special-token strings count as
ordinary text, as in chat prompts); a token array is its length. Anything else is skipped, never raised on:
the API plug-in has refused it before counting.
"""

from __future__ import annotations

import tiktoken


def count_input_tokens(encoding: tiktoken.Encoding, value: object) -> int:
    """Tokens of an embeddings `input` or a completions `prompt`, summed over its items."""
    if isinstance(value, str):
        return _text(encoding, value)
    if not isinstance(value, list):
        return 0
    total = 0
    for item in value:
        if isinstance(item, str):
            total += _text(encoding, item)
        elif isinstance(item, list):
            total += len(item)  # one token array of a list of them
        elif isinstance(item, int) and not isinstance(item, bool):
            total += 1  # one id of a single token array
    return total


def _text(encoding: tiktoken.Encoding, text: str) -> int:
    return len(encoding.encode_ordinary(text)) if text else 0
