"""The shape of the JSON we read: parsed objects from clients and upstreams, never trusted.

Counting code narrows every value with isinstance before use, so a wrong type or a null is
skipped instead of raising.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

JSONObject = Mapping[str, object]


def json_text(value: object) -> str:
    """A string as itself, null as "", anything else as compact JSON (the form a prompt would show)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    except (ValueError, RecursionError):
        return ""
