"""Offline tiktoken encodings, built from the vocabularies shipped in `gateway/tokens/vocab/`.

tiktoken's own `get_encoding` downloads its BPE files on first use; gateways often run air-gapped,
so we never call it. Each encoding is built from the packaged file, checked against the same
sha256 tiktoken pins, and then kept for the life of the process.

    enc = get_encoding("o200k_base")
"""

from __future__ import annotations

import base64
import hashlib
import threading
from dataclasses import dataclass
from importlib import resources

import tiktoken

ENDOFTEXT = "<|endoftext|>"
FIM_PREFIX = "<|fim_prefix|>"
FIM_MIDDLE = "<|fim_middle|>"
FIM_SUFFIX = "<|fim_suffix|>"
ENDOFPROMPT = "<|endofprompt|>"

# pat_str and special tokens are copied from tiktoken 0.14 `tiktoken_ext/openai_public.py`.
_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|"""
    r"""\s+(?!\S)|\s"""
)
_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


@dataclass(frozen=True)
class EncodingSpec:
    """How to build one encoding: packaged vocabulary file, its pinned sha256, regex and special tokens."""

    name: str
    filename: str
    sha256: str
    pat_str: str
    special_tokens: dict[str, int]


SPECS: dict[str, EncodingSpec] = {
    "o200k_base": EncodingSpec(
        name="o200k_base",
        filename="o200k_base.tiktoken",
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str=_O200K_PAT,
        special_tokens={ENDOFTEXT: 199999, ENDOFPROMPT: 200018},
    ),
    "cl100k_base": EncodingSpec(
        name="cl100k_base",
        filename="cl100k_base.tiktoken",
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=_CL100K_PAT,
        special_tokens={
            ENDOFTEXT: 100257,
            FIM_PREFIX: 100258,
            FIM_MIDDLE: 100259,
            FIM_SUFFIX: 100260,
            ENDOFPROMPT: 100276,
        },
    ),
}
ENCODING_NAMES: frozenset[str] = frozenset(SPECS)

_lock = threading.Lock()
_loaded: dict[str, tiktoken.Encoding] = {}


def get_encoding(name: str) -> tiktoken.Encoding:
    """The process-wide `tiktoken.Encoding` for `name`, loaded from package data on first use.

    Raises KeyError for an encoding we do not ship, ValueError if a packaged file is corrupt.
    """
    encoding = _loaded.get(name)
    if encoding is not None:
        return encoding
    spec = SPECS[name]
    # Loading o200k takes ~1 s; the lock makes concurrent first callers wait for one load.
    with _lock:
        encoding = _loaded.get(name)
        if encoding is None:
            encoding = _build(spec)
            _loaded[name] = encoding
    return encoding


def _build(spec: EncodingSpec) -> tiktoken.Encoding:
    contents = resources.files("gateway.tokens").joinpath("vocab", spec.filename).read_bytes()
    return tiktoken.Encoding(
        spec.name, pat_str=spec.pat_str, mergeable_ranks=parse_ranks(contents, spec), special_tokens=spec.special_tokens
    )


def parse_ranks(contents: bytes, spec: EncodingSpec) -> dict[bytes, int]:
    """The BPE ranks of a `.tiktoken` file, checked against its pinned sha256.

    This is what `tiktoken.load.load_tiktoken_bpe` does, minus its side effect of copying the file into a
    cache directory (which fails on a read-only filesystem and is pointless for a packaged file).
    """
    if hashlib.sha256(contents).hexdigest() != spec.sha256:
        raise ValueError(f"packaged vocabulary {spec.filename} does not match its sha256; reinstall the gateway")
    ranks: dict[bytes, int] = {}
    for line in contents.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks
