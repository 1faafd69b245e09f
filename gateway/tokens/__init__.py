"""Token counting for metering: pure functions over parsed JSON, tiktoken vocabularies shipped offline.

    counter = TokenCounter()
    prompt_tokens = counter.count_prompt_tokens("gpt-4o", body)
    completion = counter.completion_counter("gpt-4o")
    completion.add_chunk(chunk)  # per streamed chunk
    completion_tokens = completion.count_completion_tokens()

Modules: `encodings` (offline vocabularies), `models` (model name -> encoding and prompt format),
`prompt` (chat request bodies), `inputs` (embeddings inputs and legacy completions prompts), `functions` (tool
and function definitions), `images` and `imagesize` (image parts), `completion` (responses), `payload` (the JSON
shapes read), `counter` (the facade above), `claude` (an upper estimate of Anthropic Messages input tokens,
Claude's tokenizer not being public).

May import: nothing else of the gateway. Only the standard library and tiktoken; no I/O but reading the
packaged vocabularies.
"""

from __future__ import annotations

from gateway.tokens.completion import CompletionCounter
from gateway.tokens.counter import TokenCounter
from gateway.tokens.encodings import ENCODING_NAMES, get_encoding
from gateway.tokens.payload import JSONObject

__all__ = ["ENCODING_NAMES", "CompletionCounter", "JSONObject", "TokenCounter", "get_encoding"]
