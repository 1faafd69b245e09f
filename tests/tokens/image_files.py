"""Complete, valid images of any size, built byte by byte (PNG, GIF, JPEG, WebP), and data: URLs of them."""

from __future__ import annotations

import base64
import math
import struct
import zlib


def png(width: int, height: int) -> bytes:
    """A complete, valid 8-bit grayscale PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj()
    row = bytes(width + 1)  # filter byte 0, then black pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def gif(width: int, height: int) -> bytes:
    """A complete, valid GIF89a; LZW codes stay 3 bits wide by emitting CLEAR before every pixel."""
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    descriptor = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    bits = 0
    nbits = 0
    out = bytearray()
    for code in [4, 0] * (width * height) + [5]:  # CLEAR, pixel 0, ..., END
        bits |= code << nbits
        nbits += 3
        while nbits >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            nbits -= 8
    if nbits:
        out.append(bits)
    blocks = b"".join(bytes([len(out[i : i + 255])]) + out[i : i + 255] for i in range(0, len(out), 255))
    return header + descriptor + b"\x02" + blocks + b"\x00\x3b"


def jpeg(width: int, height: int, *, exif_bytes: int = 0, sof: int = 0xC0, fill: bool = False) -> bytes:
    """A baseline grayscale JPEG of a flat grey image: one-code Huffman tables, 2 bits per 8x8 block.

    `exif_bytes` inserts an APP1 segment of that size before the frame header, as cameras do.
    """

    parts = [b"\xff\xd8", segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")]
    if exif_bytes:
        parts.append(segment(0xE1, b"Exif\x00\x00" + bytes(exif_bytes)))
    parts.append(segment(0xDB, b"\x00" + bytes([1] * 64)))
    if fill:
        parts.append(b"\xff")
    parts.append(segment(sof, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"))
    one_code = bytes([1] + [0] * 15)
    parts.append(segment(0xC4, b"\x00" + one_code + b"\x00"))  # DC: category 0 -> "0"
    parts.append(segment(0xC4, b"\x10" + one_code + b"\x00"))  # AC: EOB -> "0"
    parts.append(segment(0xDA, b"\x01\x01\x00\x00\x3f\x00"))
    blocks = math.ceil(width / 8) * math.ceil(height / 8)
    bitstring = "00" * blocks
    bitstring += "1" * (-len(bitstring) % 8)
    parts.append(int(bitstring, 2).to_bytes(len(bitstring) // 8, "big") if bitstring else b"")
    parts.append(b"\xff\xd9")
    return b"".join(parts)


def webp(width: int, height: int, kind: str) -> bytes:
    """A RIFF/WEBP container whose first chunk is a real VP8X, VP8L or VP8 header for the size."""
    if kind == "VP8X":
        payload = b"\x10\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    elif kind == "VP8L":
        payload = b"\x2f" + ((width - 1) | (height - 1) << 14).to_bytes(4, "little") + bytes(8)
    else:
        frame_tag = b"\x10\x02\x00"  # key frame, version 0, shown, first partition size 16
        payload = frame_tag + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + bytes(16)
    chunk = kind.encode().ljust(4) + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def segment(marker: int, payload: bytes) -> bytes:
    """A JPEG segment: marker, length (its own two bytes included), payload."""
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload
