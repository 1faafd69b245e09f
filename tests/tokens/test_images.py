"""Image tokens: each format's header read for the image's size without decoding the rest (PNG, GIF, JPEG and
WebP images from tests/tokens/image_files.py), headers at their edges, built byte by byte here (JPEG segments the
parser must hop over or stop at, headers that end exactly where the size does, unpadded and line-wrapped base64,
media types, sizes of zero), and the tile and patch formulas against OpenAI's published numbers and on their
boundaries (worked out by hand in the comments)."""

from __future__ import annotations

import base64
import struct

import pytest

from gateway.tokens import TokenCounter
from gateway.tokens.images import (
    PatchProfile,
    TileProfile,
    image_part_tokens,
    image_profile,
    image_tokens,
    patch_count,
    tile_count,
)
from gateway.tokens.imagesize import data_url_image_size
from tests.tokens.image_files import data_url, gif, jpeg, png, segment, webp

# Expected numbers: OpenAI "Images and vision" guide, "Calculating costs"
# (developers.openai.com/api/docs/guides/images-vision#calculating-costs), unless noted.


def unpadded(data: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode().rstrip("=")


def png_header(width: int, height: int) -> bytes:
    """A PNG's signature and IHDR chunk, nothing after."""
    return (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    )


def frame_header(width: int, height: int) -> bytes:
    """A frame header: marker, length 11, precision 8, height, width (then components, if room is left)."""
    return b"\xff\xc0" + struct.pack(">HBHH", 11, 8, height, width)


SIZES = [(1, 1), (7, 300), (512, 512), (513, 512), (640, 480), (1024, 1024), (1800, 2400)]


@pytest.mark.parametrize("size", SIZES)
def test_png_header(size: tuple[int, int]) -> None:
    assert data_url_image_size(data_url("image/png", png(*size))) == size


@pytest.mark.parametrize("size", [(1, 1), (7, 30), (300, 200), (513, 512)])
def test_gif_header(size: tuple[int, int]) -> None:
    assert data_url_image_size(data_url("image/gif", gif(*size))) == size


@pytest.mark.parametrize("size", [*SIZES, (4000, 1474)])
def test_jpeg_frame_header(size: tuple[int, int]) -> None:
    assert data_url_image_size(data_url("image/jpeg", jpeg(*size))) == size
    assert data_url_image_size(data_url("image/jpeg", jpeg(*size, exif_bytes=60_000, fill=True))) == size
    assert data_url_image_size(data_url("image/jpeg", jpeg(*size, sof=0xC2))) == size  # progressive


@pytest.mark.parametrize("kind", ["VP8X", "VP8L", "VP8 "])
@pytest.mark.parametrize("size", [(1, 1), (640, 480), (1800, 2400), (16383, 3)])
def test_webp_headers(kind: str, size: tuple[int, int]) -> None:
    assert data_url_image_size(data_url("image/webp", webp(*size, kind))) == size


def test_only_the_header_is_decoded() -> None:
    # Everything after the header is not even base64: a full decode would fail.
    head = base64.b64encode(png(640, 480)[:33]).decode()
    assert data_url_image_size("data:image/png;base64," + head + "!" * 5_000_000) == (640, 480)
    # JPEG: the 60 kB EXIF segment is hopped over via its length field, never decoded.
    encoded = base64.b64encode(jpeg(640, 480, exif_bytes=60_000)).decode()
    exif_start = 30  # SOI 2 + APP0 18 + APP1 marker and length 4 + "Exif\0\0" 6
    first, last = exif_start // 3 * 4 + 4, (exif_start + 60_000) // 3 * 4
    garbled = encoded[:first] + "!" * (last - first) + encoded[last:]
    assert data_url_image_size("data:image/jpeg;base64," + garbled) == (640, 480)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/cat.png",
        "data:image/png;base64,",
        "data:image/png;base64,!!!!",
        "data:image/png,rawbytes",
        "data:image/bmp;base64," + base64.b64encode(b"BM" + bytes(60)).decode(),
        "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(4) + b"IHDR" + bytes(8)).decode(),
        "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8\xff\xe0\x00\x01").decode(),
        "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8" + b"\xff\xfe\xff\xff" * 10).decode(),
        "data:" + "x" * 1000 + ";base64,AAAA",
    ],
)
def test_unreadable_images_are_none(url: str) -> None:
    assert data_url_image_size(url) is None


def test_unpadded_and_multiline_payloads() -> None:
    encoded = base64.b64encode(png(300, 200)).decode().rstrip("=")
    assert data_url_image_size("data:image/png;base64," + encoded) == (300, 200)
    # MIME line breaks inside the header shift the offsets; we give up and the caller assumes a size.
    wrapped = "\n".join(encoded[i : i + 20] for i in range(0, len(encoded), 20))
    assert data_url_image_size("data:image/png;base64," + wrapped) is None


def test_a_standalone_marker_before_the_frame_is_two_bytes_long() -> None:
    # SOI, TEM (0xFF01: a marker with no length), then the frame header
    data = b"\xff\xd8" + b"\xff\x01" + frame_header(640, 480) + b"\x01\x01\x11\x00" + bytes(16)
    assert data_url_image_size(data_url("image/jpeg", data)) == (640, 480)


def test_an_empty_segment_is_hopped_over() -> None:
    # an APP0 segment of length 2 (no payload) before the frame header
    data = b"\xff\xd8" + b"\xff\xe0\x00\x02" + frame_header(640, 480) + bytes(20)
    assert data_url_image_size(data_url("image/jpeg", data)) == (640, 480)


def test_an_image_that_ends_before_any_frame_header_has_no_size() -> None:
    # EOI right after SOI; the bytes after it look like a segment leading to a frame header, but the image ended
    data = b"\xff\xd8" + b"\xff\xd9" + b"\x00\x02" + frame_header(640, 480) + bytes(20)
    assert data_url_image_size(data_url("image/jpeg", data)) is None


def test_a_segment_length_cut_off_by_the_end_of_the_data_has_no_size() -> None:
    # APP0 of length 24 leads to offset 28, where a marker's two bytes are the last of the data
    data = b"\xff\xd8" + segment(0xE0, bytes(22)) + b"\xff\xe1"
    assert len(data) == 30
    assert data_url_image_size(data_url("image/jpeg", data)) is None


def test_a_frame_header_ending_exactly_at_the_end_of_the_data() -> None:
    data = b"\xff\xd8" + segment(0xE0, bytes(15)) + frame_header(640, 480)  # 2 + 19 + 9 = 30 bytes, width last
    assert len(data) == 30
    assert data_url_image_size(data_url("image/jpeg", data)) == (640, 480)


def test_an_unpadded_payload_ending_inside_the_frame_header() -> None:
    # 32 bytes: 43 base64 characters without padding; the last read (width) ends at the payload's end
    data = b"\xff\xd8" + segment(0xE0, bytes(17)) + frame_header(1920, 1080)
    assert len(data) == 32 and len(unpadded(data).split(",")[1]) == 43
    assert data_url_image_size(unpadded(data)) == (1920, 1080)
    # 31 bytes: 42 characters, 2 short of a full group
    shorter = b"\xff\xd8" + segment(0xE0, bytes(16)) + frame_header(1920, 1080)
    assert data_url_image_size(unpadded(shorter)) == (1920, 1080)


def test_a_line_break_just_past_the_header_does_not_matter() -> None:
    encoded = base64.b64encode(png_header(300, 200) + bytes(5)).decode()
    assert len(encoded) == 48
    wrapped = "data:image/png;base64," + encoded[:40] + "\n" + encoded[40:]
    assert data_url_image_size(wrapped) == (300, 200)


def test_a_jpeg_carrying_the_bytes_ihdr_is_still_a_jpeg() -> None:
    data = b"\xff\xd8" + segment(0xE0, b"JFIF\x00\x00IHDR" + bytes(8)) + frame_header(640, 480) + bytes(8)
    assert data[12:16] == b"IHDR"
    assert data_url_image_size(data_url("image/jpeg", data)) == (640, 480)


def test_gif87a_headers_are_read() -> None:
    data = b"GIF87a" + struct.pack("<HH", 321, 123) + bytes(30)
    assert data_url_image_size(data_url("image/gif", data)) == (321, 123)


def test_a_png_width_past_16_million_pixels_is_read_whole() -> None:
    assert data_url_image_size(data_url("image/png", png_header(2**24 + 1, 7) + bytes(10))) == (16_777_217, 7)
    assert data_url_image_size(data_url("image/png", png_header(7, 2**24 + 1) + bytes(10))) == (7, 16_777_217)


@pytest.mark.parametrize("size", [(0, 10), (10, 0), (0, 0)])
def test_a_header_claiming_no_pixels_has_no_size(size: tuple[int, int]) -> None:
    assert data_url_image_size(data_url("image/png", png_header(*size) + bytes(10))) is None


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


def test_published_tile_examples_for_gpt_4o() -> None:
    profile = image_profile("gpt-4o")
    assert image_tokens(profile, 1024, 1024, "high") == 765
    assert image_tokens(profile, 2048, 4096, "high") == 1105
    assert image_tokens(profile, 4096, 8192, "low") == 85


@pytest.mark.parametrize(
    ("model", "base", "tile"),
    [
        ("gpt-4o", 85, 170),
        ("gpt-4o-2024-11-20", 85, 170),
        ("gpt-4.1", 85, 170),
        ("gpt-4.5-preview", 85, 170),
        ("gpt-4o-mini", 2833, 5667),
        ("gpt-5", 70, 140),
        ("gpt-5-chat-latest", 70, 140),
        ("o1", 75, 150),
        ("o1-pro", 75, 150),
        ("o3", 75, 150),
        ("computer-use-preview", 65, 129),
    ],
)
def test_tile_models_cost_base_plus_tiles_at_1024(model: str, base: int, tile: int) -> None:
    profile = image_profile(model)
    assert profile == TileProfile(base, tile)
    assert image_tokens(profile, 1024, 1024, "low") == base
    assert image_tokens(profile, 1024, 1024, "high") == base + 4 * tile
    assert image_tokens(profile, 1024, 1024, "auto") == base + 4 * tile


@pytest.mark.parametrize(
    ("size", "tiles"),
    [
        ((1024, 1024), 4),  # guide: 768x768
        ((2048, 4096), 6),  # guide: 1024x2048 -> 768x1536
        ((128, 64), 1),  # small images are not scaled up
        ((512, 512), 1),
        ((513, 512), 2),
        ((768, 1600), 8),  # 2 x 4, no resize
        ((1920, 1080), 6),  # -> 1365x768: 3 x 2
        ((4000, 3000), 4),  # -> 2048x1536 -> 1024x768: 2 x 2
        ((1800, 2400), 4),  # -> 1536x2048 -> 768x1024: 2 x 2
    ],
)
def test_tile_counts_follow_the_scaling_rules(size: tuple[int, int], tiles: int) -> None:
    assert tile_count(*size) == tiles


def test_tile_rounding_matches_forum_measurements() -> None:
    # OpenAI developer forum, "Vision Pricing calculator: inaccurate resizing/rounding vs API costs":
    # gpt-4.1 billed 2049x513 as 8 tiles and 2050x513 as 4 tiles.
    assert tile_count(2049, 513) == 8
    assert tile_count(2050, 513) == 4


@pytest.mark.parametrize("size", [(1, 100_000), (100_000, 1), (3, 70_000)])
def test_extreme_aspect_ratios_still_cost_tokens(size: tuple[int, int]) -> None:
    assert 0 < patch_count(*size) <= 1536
    assert tile_count(*size) >= 1


def test_published_patch_examples() -> None:
    assert patch_count(1024, 1024) == 1024
    assert patch_count(1800, 2400) == 1452
    assert patch_count(5000, 5000) <= 1536


@pytest.mark.parametrize(
    ("model", "multiplier_x100", "expected_1024"),
    [
        ("gpt-4.1-mini", 162, 1659),  # 1024 x 1.62 = 1658.88
        ("gpt-4.1-nano", 246, 2520),  # 1024 x 2.46 = 2519.04
        ("gpt-5-mini", 162, 1659),
        ("gpt-5-nano", 246, 2520),
        ("o4-mini", 172, 1762),  # 1024 x 1.72 = 1761.28
    ],
)
def test_patch_models_cost_patches_times_multiplier(model: str, multiplier_x100: int, expected_1024: int) -> None:
    profile = image_profile(model)
    assert profile == PatchProfile(multiplier_x100)
    # The guide gives no detail variant for patch models: low and high cost the same.
    assert image_tokens(profile, 1024, 1024, "low") == image_tokens(profile, 1024, 1024, "high") == expected_1024
    # 320x480 is 150 patches, an exact product; in floats 150 * 1.62 = 243.00000000000003, which ceil makes 244.
    assert image_tokens(profile, 320, 480, "high") == 150 * multiplier_x100 // 100


def test_patch_rounding_matches_openai_calculator() -> None:
    # As quoted on the OpenAI developer forum: the pricing-page calculator gives 2348 for 4000x1474 on gpt-4.1-mini.
    assert image_tokens(image_profile("gpt-4.1-mini"), 4000, 1474, "high") == 2348


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


def test_image_parts_use_header_size_or_the_remote_assumption(counter: TokenCounter) -> None:
    profile = image_profile("gpt-4o")
    small = data_url("image/png", png(500, 500))
    assert image_part_tokens(profile, {"url": small, "detail": "high"}, (1024, 1024)) == 85 + 170
    assert image_part_tokens(profile, {"url": small}, (1024, 1024)) == 85 + 170
    assert image_part_tokens(profile, small, (1024, 1024)) == 85 + 170  # bare string form
    assert image_part_tokens(profile, {"url": "https://x/y.png"}, (1024, 1024)) == 765
    assert image_part_tokens(profile, {"url": "https://x/y.png"}, (512, 512)) == 255
    assert image_part_tokens(profile, {"url": "data:image/png;base64,????"}, (1024, 1024)) == 765
    assert image_part_tokens(profile, {"url": small, "detail": 3}, (1024, 1024)) == 255


def test_images_in_a_request_add_to_its_text(counter: TokenCounter) -> None:
    content = [
        {"type": "text", "text": "What is in these images?"},
        {"type": "image_url", "image_url": {"url": data_url("image/jpeg", jpeg(2048, 4096)), "detail": "high"}},
        {"type": "image_url", "image_url": {"url": data_url("image/webp", webp(1800, 2400, "VP8X"))}},
        {"type": "image_url", "image_url": {"url": "https://example.com/remote.png", "detail": "low"}},
    ]
    body = {"messages": [{"role": "user", "content": content}]}
    text = 3 + 1 + len(counter.encoding_for("gpt-4o").encode("What is in these images?")) + 3
    assert counter.count_prompt_tokens("gpt-4o", body) == text + 1105 + 765 + 85
    mini = text + image_tokens(image_profile("gpt-4.1-mini"), 2048, 4096, "high")
    mini += image_tokens(image_profile("gpt-4.1-mini"), 1800, 2400, "high")
    mini += image_tokens(image_profile("gpt-4.1-mini"), 1024, 1024, "low")
    assert counter.count_prompt_tokens("gpt-4.1-mini", body) == mini
