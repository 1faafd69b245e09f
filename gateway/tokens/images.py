"""Prompt tokens of `image_url` content parts.

Formulas and constants are from OpenAI's "Images and vision" guide, section "Calculating costs"
(developers.openai.com/api/docs/guides/images-vision#calculating-costs):

- tile models: `detail: low` costs the base tokens; otherwise fit in 2048x2048, scale the shortest
  side down to 768, and add tile tokens per 512px tile. Its table: gpt-5 / gpt-5-chat-latest 70+140,
  4o / 4.1 / 4.5 85+170, 4o-mini 2833+5667, o1 / o1-pro / o3 75+150, computer-use-preview 65+129.
- patch models (gpt-4.1-mini/nano, gpt-5-mini/nano, o4-mini): 32px patches, at most 1536 (the image
  is scaled down to fit), times a per-model multiplier: 1.62 / 2.46 / 1.62 / 2.46 / 1.72. The guide
  gives no `detail` variant for these, so detail is ignored.

Not stated by the guide, so chosen here: `auto` or a missing detail counts as `high`; images only
scale down, never up (a 128x64 image is one tile); scaled sides are rounded to the nearest pixel (this
matches forum-measured gpt-4.1 bills: 2049x513 -> 8 tiles, 2050x513 -> 4 tiles; floor or ceil would
not); the patch-multiplied total is rounded up, as OpenAI's pricing-page calculator does (quoted on the
forum: 4000x1474 on gpt-4.1-mini -> 1449 patches -> 2348 = ceil(2347.38)).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.tokens.imagesize import data_url_image_size

PATCH_PX = 32
MAX_PATCHES = 1536
TILE_PX = 512
FIT_PX = 2048
SHORT_SIDE_PX = 768


@dataclass(frozen=True)
class TileProfile:
    """Tile-based pricing: `base_tokens` always, plus `tile_tokens` per 512px tile at high detail."""

    base_tokens: int
    tile_tokens: int


@dataclass(frozen=True)
class PatchProfile:
    """Patch-based pricing: 32px patches (capped at 1536) times a multiplier, kept in hundredths."""

    # Integer hundredths so 1000 patches x 1.62 is exactly 1620, not ceil(1620.0000000000002).
    multiplier_x100: int


ImageProfile = TileProfile | PatchProfile

_TILE_85 = TileProfile(85, 170)
_IMAGE_PROFILES: dict[str, ImageProfile] = {
    "gpt-4.1-mini": PatchProfile(162),
    "gpt-4.1-nano": PatchProfile(246),
    "gpt-5-mini": PatchProfile(162),
    "gpt-5-nano": PatchProfile(246),
    "o4-mini": PatchProfile(172),
    "gpt-4o-mini": TileProfile(2833, 5667),
    "gpt-5": TileProfile(70, 140),
    "gpt-4o": _TILE_85,
    "chatgpt-4o": _TILE_85,
    "gpt-4.1": _TILE_85,
    "gpt-4.5": _TILE_85,
    # Not in the current table; earlier versions of the guide priced GPT-4 Turbo vision like 4o.
    "gpt-4-turbo": _TILE_85,
    "gpt-4-vision": _TILE_85,
    "o1": TileProfile(75, 150),
    "o3": TileProfile(75, 150),
    "computer-use-preview": TileProfile(65, 129),
}
_PROFILES_LONGEST_FIRST = sorted(_IMAGE_PROFILES.items(), key=lambda item: -len(item[0]))
# Unknown and self-hosted vision models: the gpt-4o numbers, the most widely copied ones.
DEFAULT_IMAGE_PROFILE: ImageProfile = _TILE_85


def image_profile(base_model: str) -> ImageProfile:
    """The pricing profile of a lower-case base model name (longest matching prefix wins)."""
    for prefix, profile in _PROFILES_LONGEST_FIRST:
        if base_model.startswith(prefix):
            return profile
    return DEFAULT_IMAGE_PROFILE


def tile_count(width: int, height: int) -> int:
    """512px tiles covering the image after the 2048-fit and 768-shortest-side downscales."""
    w, h = float(width), float(height)
    if max(w, h) > FIT_PX:
        scale = FIT_PX / max(w, h)
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
    if min(w, h) > SHORT_SIDE_PX:
        scale = SHORT_SIDE_PX / min(w, h)
        w, h = round(w * scale), round(h * scale)
    return math.ceil(w / TILE_PX) * math.ceil(h / TILE_PX)


def patch_count(width: int, height: int) -> int:
    """32px patches covering the image, after the guide's downscale to at most 1536 patches."""
    raw = math.ceil(width / PATCH_PX) * math.ceil(height / PATCH_PX)
    if raw <= MAX_PATCHES:
        return raw
    r = math.sqrt(PATCH_PX * PATCH_PX * MAX_PATCHES / (width * height))
    cols, rows = width * r / PATCH_PX, height * r / PATCH_PX
    # max(1, ...): for extreme aspect ratios (1x100000) the guide's formula would reach 0 patches.
    r *= min(max(1, math.floor(cols)) / cols, max(1, math.floor(rows)) / rows)
    # The second scale lands one side on a whole patch count; absorb float error before ceil.
    cols, rows = width * r / PATCH_PX - 1e-9, height * r / PATCH_PX - 1e-9
    return min(math.ceil(cols) * math.ceil(rows), MAX_PATCHES)


def image_tokens(profile: ImageProfile, width: int, height: int, detail: str) -> int:
    """Tokens of one image of `width` x `height` pixels at `detail` ("low", "high" or "auto")."""
    if isinstance(profile, PatchProfile):
        return -(-patch_count(width, height) * profile.multiplier_x100 // 100)
    if detail == "low":
        return profile.base_tokens
    return profile.base_tokens + profile.tile_tokens * tile_count(width, height)


def image_part_tokens(profile: ImageProfile, image_url: object, remote_size: tuple[int, int]) -> int:
    """Tokens of an `image_url` part's payload: `{"url": ..., "detail": ...}` or a bare URL string.

    Remote URLs are never fetched: they, and data URLs whose header we cannot read, are assumed
    to be `remote_size`.
    """
    detail: object = "auto"
    url: object = image_url
    if isinstance(image_url, Mapping):
        url = image_url.get("url")
        detail = image_url.get("detail") or "auto"
    detail_name = detail if isinstance(detail, str) else "auto"
    if isinstance(profile, TileProfile) and detail_name == "low":
        return profile.base_tokens  # size is irrelevant; skip the header parse
    size = data_url_image_size(url) if isinstance(url, str) else None
    width, height = size or remote_size
    return image_tokens(profile, width, height, detail_name)
