"""Pixel size of an image in a `data:` URL, read from the image header alone.

Base64 maps every 3 payload bytes to 4 characters, so any byte range can be decoded from its own
aligned slice of the URL without touching the rest: a 20 MB image costs a few dozen bytes of work.
PNG, GIF and WebP keep their size in the first 30 bytes; JPEG keeps it in a SOF segment that we
reach by hopping over the preceding segments (EXIF, ICC...) using their length fields.
"""

from __future__ import annotations

import base64
import binascii

# Only the first bytes of the URL may hold the media type; a longer one is not an image we know.
_MAX_META_CHARS = 256
# JPEG files in the wild have a handful of segments before SOF; this bounds hostile inputs.
_MAX_JPEG_SEGMENTS = 512
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}


class _Base64Window:
    """Random-access reads of the bytes encoded in `text[start:]`, decoding only what is asked."""

    def __init__(self, text: str, start: int) -> None:
        self._text = text
        self._start = start

    def read(self, offset: int, length: int) -> bytes | None:
        first = offset // 3 * 4
        last = (offset + length + 2) // 3 * 4
        chunk = self._text[self._start + first : self._start + last]
        # Tolerate an unpadded payload that ends inside the window.
        chunk += "=" * (-len(chunk) % 4)
        try:
            data = base64.b64decode(chunk, validate=True)
        except (binascii.Error, ValueError):
            # Whitespace, URL-safe alphabet or non-ASCII: offsets would not map; give up on the size.
            return None
        skip = offset - offset // 3 * 3
        out = data[skip : skip + length]
        return out if len(out) == length else None


def data_url_image_size(url: str) -> tuple[int, int] | None:
    """(width, height) of a base64 `data:` URL image, or None if it is not one we can read."""
    if url[:5].lower() != "data:":
        return None
    comma = url.find(",", 5, _MAX_META_CHARS)
    if comma < 0 or not url[5:comma].lower().endswith(";base64"):
        return None
    return _header_size(_Base64Window(url, comma + 1))


def base64_image_size(data: str) -> tuple[int, int] | None:
    """(width, height) of a base64-encoded image (no `data:` prefix), or None if it is not one we can read."""
    return _header_size(_Base64Window(data, 0))


def _header_size(window: _Base64Window) -> tuple[int, int] | None:
    # Every header we read fits in 30 bytes, and every real PNG, GIF, WebP or JPEG file is longer.
    head = window.read(0, 30)
    if head is None:
        return None
    size = _sniff(head, window)
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    return size


def _sniff(head: bytes, window: _Base64Window) -> tuple[int, int] | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp_size(head)
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(window)
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        # Lossy: 14-bit sizes after the 3-byte frame tag and start code; top 2 bits are scaling.
        return int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _jpeg_size(window: _Base64Window) -> tuple[int, int] | None:
    offset = 2
    for _ in range(_MAX_JPEG_SEGMENTS):
        marker = window.read(offset, 2)
        if marker is None or marker[0] != 0xFF:
            return None
        kind = marker[1]
        if kind == 0xFF:  # fill byte before a marker
            offset += 1
        elif kind in _JPEG_STANDALONE:
            offset += 2
        elif kind in _JPEG_SOF:
            # SOF payload: length(2) precision(1) height(2) width(2).
            fields = window.read(offset + 5, 4)
            if fields is None:
                return None
            return int.from_bytes(fields[2:4], "big"), int.from_bytes(fields[0:2], "big")
        elif kind in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        else:
            length = window.read(offset + 2, 2)
            if length is None or int.from_bytes(length, "big") < 2:
                return None
            offset += 2 + int.from_bytes(length, "big")
    return None
