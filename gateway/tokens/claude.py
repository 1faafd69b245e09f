"""An upper estimate of the input tokens Anthropic's Messages API bills for a request, made offline.

Claude's tokenizer is not public, so no count here is exact: the gateway holds credits for this estimate and bills
the provider's own usage. The estimate is meant to be at least the provider's count in practice; the drift metric
(`gateway_token_count_drift_tokens`) shows by how much it was off on real traffic.

How each figure was chosen, from published measurements:

- **Text**: cl100k_base tokens x 9/5, rounded up once per request. Measured on the same texts, Claude 3.5
  Sonnet's tokenizer gives 16% (English articles), 21% (mathematics) and 30% (Python) more tokens than GPT-4o's
  o200k_base (Lavanya Gupta, "Hidden costs in AI deployment", VentureBeat, May 2025). Claude Opus 4.7's new
  tokenizer gives "roughly 1.0 to 1.35x as many tokens" as 4.6's (Anthropic's migration guide); count_tokens
  measurements published in April 2026 found 1.45-1.47x on English prose and technical documents, 1.13-1.36x on
  source code and 1.00x on CJK, Cyrillic and numbers (claudecodecamp.com, sol.ava.dev). The products are the
  worst cases against o200k_base: English 1.16 x 1.47 = 1.71, Python 1.30 x 1.20 = 1.56, TypeScript 1.30 x 1.36
  = 1.77; 1.8 is above each. cl100k_base counts as many tokens as o200k_base on English and code (within a few
  percent) and more on other scripts, where Claude's tokenizer is also the less efficient one (Anthropic's own
  Claude Code reference: tiktoken "undercounts Claude tokens by ~15-20% on typical text, and by much more on code
  or non-English input").
- **Images**: Anthropic's formula, width x height / 750 tokens, after the API scales the long edge down to the
  model's maximum: 1568 px up to Claude 4.6, 2576 px on Opus 4.7; the larger is taken. The size of a base64
  image is read from its header; a URL or file image (never fetched), or one whose header cannot be read,
  counts as the largest image, 2576 x 2576.
- **Tools**: the tool-use system prompt the API adds (Anthropic's table: 159 to 530 tokens by model and
  tool_choice, 346 / 313 on current models) as 600, 10 per tool, and each definition's JSON as text.
- **Documents**: a base64 PDF counts its pages (the page tree's `/Count`, else its `/Type /Page` objects)
  x 4,600: the top of Anthropic's 1,500-3,000 text tokens per page, plus the page as an image (about 1,600); a
  PDF it cannot read, by URL or by file id, counts as 100 pages, the API's limit per request. Text documents
  count their text.
- **Structure**: a request of one short message is billed its text + 3 tokens (javirandor/anthropic-tokenizer's
  measurement on Claude 3); here 8 per request, 8 for the system prompt, 5 per message and 3 per content block.
  A block of a type not known here counts its JSON as text.

    tokens = estimate_input_tokens(body)  # a Messages request body whose `messages` is a list
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from fractions import Fraction

import orjson

from gateway.tokens.encodings import get_encoding
from gateway.tokens.imagesize import base64_image_size

ENCODING = "cl100k_base"
TEXT_RATIO = Fraction(9, 5)
PER_REQUEST = 8
PER_SYSTEM = 8
PER_MESSAGE = 5
PER_BLOCK = 3
TOOL_SYSTEM_PROMPT = 600
PER_TOOL = 10
IMAGE_PIXELS_PER_TOKEN = 750
IMAGE_MAX_EDGE = 2576
PDF_PAGE_TOKENS = 4_600
PDF_MAX_PAGES = 100
_PDF_COUNT = re.compile(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)|/Count\s+(\d+)[^>]*?/Type\s*/Pages\b")
_PDF_PAGE = re.compile(rb"/Type\s*/Page\b(?!s)")


class _Tally:
    """What one request's estimate is made of: texts, encoded together once, and tokens counted apart."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.tokens = PER_REQUEST

    def text(self, value: object) -> None:
        if isinstance(value, str) and value:
            self.texts.append(value)

    def json(self, value: object) -> None:
        self.texts.append(orjson.dumps(value).decode())

    def total(self) -> int:
        encoded = len(get_encoding(ENCODING).encode_ordinary("\n".join(self.texts))) if self.texts else 0
        return self.tokens + math.ceil(encoded * TEXT_RATIO)


def estimate_input_tokens(body: Mapping[str, object]) -> int:
    """The input tokens of a Messages request body, estimated from above (see the module's docstring)."""
    tally = _Tally()
    system = body.get("system")
    if system is not None:
        tally.tokens += PER_SYSTEM
        _content(tally, system)
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        tally.tokens += PER_MESSAGE
        if isinstance(message, Mapping):
            _content(tally, message.get("content"))
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        tally.tokens += TOOL_SYSTEM_PROMPT + PER_TOOL * len(tools)
        for tool in tools:
            tally.json(tool)
    return tally.total()


def _content(tally: _Tally, content: object) -> None:
    """A message's (or the system prompt's) content: a string, or a list of content blocks."""
    if isinstance(content, str):
        tally.text(content)
        return
    for block in content if isinstance(content, list) else ():
        tally.tokens += PER_BLOCK
        if isinstance(block, Mapping):
            _block(tally, block)


def _block(tally: _Tally, block: Mapping[str, object]) -> None:
    kind = block.get("type")
    if kind == "text":
        tally.text(block.get("text"))
    elif kind == "image":
        tally.tokens += image_tokens(block.get("source"))
    elif kind == "document":
        _document(tally, block.get("source"))
    elif kind == "tool_use":
        tally.text(block.get("name"))
        tally.json(block.get("input"))
    elif kind == "tool_result":
        _content(tally, block.get("content"))
    elif kind == "thinking":
        tally.text(block.get("thinking"))
    elif kind == "redacted_thinking":
        tally.text(block.get("data"))
    else:
        tally.json(block)


def image_tokens(source: object) -> int:
    """Anthropic's width x height / 750, the long edge first brought down to IMAGE_MAX_EDGE."""
    size = None
    if isinstance(source, Mapping) and source.get("type") == "base64" and isinstance(source.get("data"), str):
        size = base64_image_size(str(source["data"]))
    width, height = size or (IMAGE_MAX_EDGE, IMAGE_MAX_EDGE)
    scale = min(1.0, IMAGE_MAX_EDGE / max(width, height))
    return math.ceil(round(width * scale) * round(height * scale) / IMAGE_PIXELS_PER_TOKEN)


def _document(tally: _Tally, source: object) -> None:
    if not isinstance(source, Mapping):
        tally.tokens += PDF_MAX_PAGES * PDF_PAGE_TOKENS
        return
    kind = source.get("type")
    if kind == "text":
        tally.text(source.get("data"))
    elif kind == "content":
        _content(tally, source.get("content"))
    else:
        tally.tokens += pdf_pages(source) * PDF_PAGE_TOKENS


def pdf_pages(source: Mapping[str, object]) -> int:
    """The pages of a base64 PDF, from its page tree; PDF_MAX_PAGES for one it cannot read (a URL, a file id)."""
    data = source.get("data")
    if source.get("type") != "base64" or not isinstance(data, str):
        return PDF_MAX_PAGES
    try:
        pdf = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return PDF_MAX_PAGES
    counts = [int(a or b) for a, b in _PDF_COUNT.findall(pdf)]
    pages = max(counts) if counts else len(_PDF_PAGE.findall(pdf))
    return min(pages, PDF_MAX_PAGES) if pages else PDF_MAX_PAGES
