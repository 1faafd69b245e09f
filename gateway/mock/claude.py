"""The mock upstream's own token counts for Anthropic's Messages API: a stand-in for Claude's tokenizer.

Claude's tokenizer is not public, so the mock counts the way a Claude-like tokenizer would by its own rules, apart
from the gateway's estimate (nothing comes from `gateway.tokens`), so tests compare two implementations:

- text: tiktoken's o200k_base (`counting`), times 1.7, rounded up per string: the published measurements put
  Claude's tokenizer at 1.16-1.30x o200k_base (Claude 3.5 Sonnet) and Opus 4.7's at up to ~1.47x that;
- framing: 3 per request (the measured overhead of a one-message request on Claude 3), 3 per message;
- images: Anthropic's `width * height / 750` after fitting the long edge in 1568 px (its vision guide, Claude up
  to 4.6), a PNG's size read from its header; any other image counts 1,600 (the guide's largest);
- tools: 346 tokens of tool-use system prompt (Anthropic's table, current models, tool_choice auto), plus each
  tool's name, description and schema JSON as text; tool calls count their name and input JSON;
- documents: a text document its text; a PDF 3,000 tokens per `/Type /Page` object (Anthropic: 1,500-3,000 text
  tokens per page) plus 1,600 for the page's image;
- prompt caching: with `cache_control` on any tool, system block or content block, every token up to and
  including the last such block is the cached prefix (`Prefix`), written to the cache the first time the mock
  sees it and read from it afterwards.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

import orjson

from gateway.mock import counting

TEXT_FACTOR = Fraction(17, 10)
PER_REQUEST = 3
PER_MESSAGE = 3
TOOL_PROMPT = 346
IMAGE_EDGE = 1568
IMAGE_DEFAULT = 1600
PDF_PAGE = 3000 + 1600


def text_tokens(text: object) -> int:
    if not isinstance(text, str) or not text:
        return 0
    return math.ceil(len(counting.encoding("o200k_base").encode(text, disallowed_special=())) * TEXT_FACTOR)


@dataclass
class Prefix:
    """A request's input tokens, and how many of the first ones end at its last cache breakpoint."""

    tokens: int = PER_REQUEST
    cached: int = 0  # tokens up to the last `cache_control`, 0 without one
    digest: str = ""  # what that prefix was, to know it again
    _seen: list[bytes] = field(default_factory=list)

    def add(self, tokens: int, item: object) -> None:
        self.tokens += tokens
        self._seen.append(orjson.dumps(item, option=orjson.OPT_SORT_KEYS))
        if isinstance(item, Mapping) and item.get("cache_control") is not None:
            self.cached, self.digest = self.tokens, hashlib.sha256(b"\n".join(self._seen)).hexdigest()


def count_input(body: Mapping[str, object]) -> Prefix:
    """The input tokens of a Messages body, in the order the API reads it: tools, system, messages."""
    prefix = Prefix()
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        prefix.tokens += TOOL_PROMPT
        for tool in tools:
            prefix.add(_tool(tool), tool)
    system = body.get("system")
    if isinstance(system, str):
        prefix.add(text_tokens(system), system)
    elif isinstance(system, list):
        for block in system:
            prefix.add(_block(block), block)
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        prefix.tokens += PER_MESSAGE
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            prefix.add(text_tokens(content), content)
        for block in content if isinstance(content, list) else ():
            prefix.add(_block(block), block)
    return prefix


def _tool(tool: object) -> int:
    if not isinstance(tool, Mapping):
        return 0
    schema = orjson.dumps(tool.get("input_schema")).decode()
    return text_tokens(tool.get("name")) + text_tokens(tool.get("description")) + text_tokens(schema)


def _block(block: object) -> int:
    if not isinstance(block, Mapping):
        return 0
    kind = block.get("type")
    if kind in ("text", "thinking"):
        return text_tokens(block.get(str(kind)))
    if kind == "tool_use":
        return text_tokens(block.get("name")) + text_tokens(orjson.dumps(block.get("input")).decode())
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            return sum(_block(item) for item in content)
        return text_tokens(content)
    if kind == "image":
        return _image(block.get("source"))
    if kind == "document":
        return _document(block.get("source"))
    return 0


def _image(source: object) -> int:
    head = _decoded_head(source)
    if head is None or not head.startswith(b"\x89PNG\r\n\x1a\n"):
        return IMAGE_DEFAULT
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if not width or not height:
        return IMAGE_DEFAULT
    scale = min(1.0, IMAGE_EDGE / max(width, height))
    return math.ceil(int(width * scale) * int(height * scale) / 750)


def _decoded_head(source: object) -> bytes | None:
    if not isinstance(source, Mapping) or source.get("type") != "base64" or not isinstance(source.get("data"), str):
        return None
    try:
        return base64.b64decode(str(source["data"])[:44])
    except (binascii.Error, ValueError):
        return None


def _document(source: object) -> int:
    if not isinstance(source, Mapping):
        return 0
    if source.get("type") == "text":
        return text_tokens(source.get("data"))
    data = source.get("data")
    if source.get("type") != "base64" or not isinstance(data, str):
        return 0
    pages = len(re.findall(rb"/Type\s*/Page[^s]", base64.b64decode(data)))
    return pages * PDF_PAGE
