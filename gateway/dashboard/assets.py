"""The dashboard's files, shipped as package data: the page and the static assets it loads.

Only the files named here are served; everything else under `static/` (the vendored uPlot's manifest, for one)
stays private. Each file is read once per process, on first request, and keeps a content hash as its ETag.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources

PAGE = "index.html"
# Served at /dashboard/static/<name>, with their media types.
STATIC_FILES = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "icon.svg": "image/svg+xml",
    "vendor/uPlot.iife.min.js": "text/javascript",
    "vendor/uPlot.min.css": "text/css",
    "vendor/LICENSE": "text/plain",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


@functools.cache
def load_asset(name: str) -> Asset:
    """The page (`PAGE`) or one of `STATIC_FILES`; KeyError for any other name."""
    content_type = "text/html" if name == PAGE else STATIC_FILES[name]
    body = resources.files("gateway.dashboard").joinpath("static", *name.split("/")).read_bytes()
    return Asset(body, content_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
