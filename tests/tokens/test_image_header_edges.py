"""Image headers at their edges, built byte by byte here: JPEG segments the parser must hop over or stop at,
headers that end exactly where the size does, unpadded and line-wrapped base64, media types, sizes of zero,
and the patch and tile formulas on their boundaries (worked out by hand in the comments)."""

from __future__ import annotations

import base64
import struct

import pytest

from gateway.tokens.images import PatchProfile, image_tokens, patch_count
from gateway.tokens.imagesize import data_url_image_size


def url(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64," + base64.b64encode(data).decode()


def unpadded(data: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode().rstrip("=")


def png_header(width: int, height: int) -> bytes:
    return (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    )


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def sof(width: int, height: int) -> bytes:
    """A frame header: marker, length 11, precision 8, height, width (then components, if room is left)."""
    return b"\xff\xc0" + struct.pack(">HBHH", 11, 8, height, width)


def padded_to(data: bytes, size: int) -> bytes:
    return data + bytes(size - len(data))


def test_a_standalone_marker_before_the_frame_is_two_bytes_long() -> None:
    # SOI, TEM (0xFF01: a marker with no length), then the frame header
    data = b"\xff\xd8" + b"\xff\x01" + sof(640, 480) + b"\x01\x01\x11\x00" + bytes(16)
    assert data_url_image_size(url(data, "image/jpeg")) == (640, 480)


def test_an_empty_segment_is_hopped_over() -> None:
    # an APP0 segment of length 2 (no payload) before the frame header
    data = b"\xff\xd8" + b"\xff\xe0\x00\x02" + sof(640, 480) + bytes(20)
    assert data_url_image_size(url(data, "image/jpeg")) == (640, 480)


def test_an_image_that_ends_before_any_frame_header_has_no_size() -> None:
    # EOI right after SOI; the bytes after it look like a segment leading to a frame header, but the image ended
    data = b"\xff\xd8" + b"\xff\xd9" + b"\x00\x02" + sof(640, 480) + bytes(20)
    assert data_url_image_size(url(data, "image/jpeg")) is None


def test_a_segment_length_cut_off_by_the_end_of_the_data_has_no_size() -> None:
    # APP0 of length 24 leads to offset 28, where a marker's two bytes are the last of the data
    data = b"\xff\xd8" + segment(0xE0, bytes(22)) + b"\xff\xe1"
    assert len(data) == 30
    assert data_url_image_size(url(data, "image/jpeg")) is None


def test_a_frame_header_ending_exactly_at_the_end_of_the_data() -> None:
    data = b"\xff\xd8" + segment(0xE0, bytes(15)) + sof(640, 480)  # 2 + 19 + 9 = 30 bytes, width last
    assert len(data) == 30
    assert data_url_image_size(url(data, "image/jpeg")) == (640, 480)


def test_an_unpadded_payload_ending_inside_the_frame_header() -> None:
    # 32 bytes: 43 base64 characters without padding; the last read (width) ends at the payload's end
    data = b"\xff\xd8" + segment(0xE0, bytes(17)) + sof(1920, 1080)
    assert len(data) == 32 and len(unpadded(data).split(",")[1]) == 43
    assert data_url_image_size(unpadded(data)) == (1920, 1080)
    # 31 bytes: 42 characters, 2 short of a full group
    shorter = b"\xff\xd8" + segment(0xE0, bytes(16)) + sof(1920, 1080)
    assert data_url_image_size(unpadded(shorter)) == (1920, 1080)


def test_a_line_break_just_past_the_header_does_not_matter() -> None:
    encoded = base64.b64encode(png_header(300, 200) + bytes(5)).decode()
    assert len(encoded) == 48
    wrapped = "data:image/png;base64," + encoded[:40] + "\n" + encoded[40:]
    assert data_url_image_size(wrapped) == (300, 200)


def test_a_jpeg_carrying_the_bytes_ihdr_is_still_a_jpeg() -> None:
    data = b"\xff\xd8" + segment(0xE0, b"JFIF\x00\x00IHDR" + bytes(8)) + sof(640, 480) + bytes(8)
    assert data[12:16] == b"IHDR"
    assert data_url_image_size(url(data, "image/jpeg")) == (640, 480)


def test_gif87a_headers_are_read() -> None:
    data = b"GIF87a" + struct.pack("<HH", 321, 123) + bytes(30)
    assert data_url_image_size(url(data, "image/gif")) == (321, 123)


def test_a_png_width_past_16_million_pixels_is_read_whole() -> None:
    assert data_url_image_size(url(png_header(2**24 + 1, 7) + bytes(10))) == (16_777_217, 7)
    assert data_url_image_size(url(png_header(7, 2**24 + 1) + bytes(10))) == (7, 16_777_217)


@pytest.mark.parametrize("size", [(0, 10), (10, 0), (0, 0)])
def test_a_header_claiming_no_pixels_has_no_size(size: tuple[int, int]) -> None:
    assert data_url_image_size(url(png_header(*size) + bytes(10))) is None


def test_media_type_parameters_may_not_run_past_256_characters() -> None:
    data = png_header(300, 200) + bytes(10)
    payload = base64.b64encode(data).decode()
    short = "data:image/png;" + "a=b;" * 50 + "base64," + payload  # the comma at 222
    long = "data:image/png;" + "a=b;" * 70 + "base64," + payload  # the comma at 302
    assert data_url_image_size(short) == (300, 200)
    assert data_url_image_size(long) is None


def test_the_media_type_may_be_empty_but_not_the_base64_marker() -> None:
    data = png_header(300, 200) + bytes(10)
    payload = base64.b64encode(data).decode()
    assert data_url_image_size("data:;base64," + payload) == (300, 200)
    # "data:," starts plain text; ";base64,..." is that text, not a payload
    assert data_url_image_size("data:,;base64," + payload) is None
    # without ";base64" the payload is text, however base64-like it looks
    assert data_url_image_size("data:image/png," + payload) is None


def test_exactly_1536_patches_are_not_scaled() -> None:
    # 1000 x 1536: ceil(31.25) x 48 = 32 x 48 = 1536 patches, the cap itself; x 1.62 = 2488.32 -> 2489
    assert patch_count(1000, 1536) == 1536
    assert image_tokens(PatchProfile(162), 1000, 1536, "auto") == 2489


def test_a_narrow_tall_image_scales_to_one_patch_column() -> None:
    # 48 x 40000: 2 x 1250 = 2500 patches > 1536. r = sqrt(32*32*1536 / (48*40000)) = sqrt(0.8192) = 0.90510;
    # columns 48 x 0.90510 / 32 = 1.3577 (floor 1), rows 1131.4 (floor 1131): r x= min(1 / 1.3577, 1131 / 1131.4)
    # = 0.73654 -> r = 0.66667: 1 column of ceil(40000 x 0.66667 / 32) = ceil(833.33) = 834 rows
    assert patch_count(48, 40000) == 834
    assert patch_count(40000, 48) == 834  # the same turned on its side: one patch row
