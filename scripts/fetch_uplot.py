"""Re-fetch the vendored uPlot from the npm registry and record its checksums.

    python scripts/fetch_uplot.py 1.6.32     # vendor that version: files + manifest
    python scripts/fetch_uplot.py 1.6        # the newest 1.6.x
    python scripts/fetch_uplot.py --check    # the manifest's version, compared with the vendored bytes; no writes

The tarball is checked against the registry's sha512 `integrity` before anything is extracted. The manifest
(`gateway/dashboard/static/vendor/uplot.json`) keeps the version, licence, tarball, integrity and each file's
sha256; `tests/dashboard/test_vendor.py` checks the vendored files against it, offline.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path

REGISTRY = "https://registry.npmjs.org/uplot"
VENDOR_DIR = Path(__file__).resolve().parents[1] / "gateway" / "dashboard" / "static" / "vendor"
MANIFEST = VENDOR_DIR / "uplot.json"
# vendored name -> member of the npm tarball
FILES = {
    "uPlot.iife.min.js": "package/dist/uPlot.iife.min.js",
    "uPlot.min.css": "package/dist/uPlot.min.css",
    "LICENSE": "package/LICENSE",
}


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()  # type: ignore[no-any-return]


def resolve_version(wanted: str) -> str:
    """An exact version as given; `1.6` (a prefix) means the newest 1.6.x the registry has."""
    if wanted.count(".") == 2:
        return wanted
    versions: dict[str, object] = json.loads(get(REGISTRY))["versions"]
    matching = [v for v in versions if v.startswith(wanted + ".") and v.replace(".", "").isdigit()]
    if not matching:
        sys.exit(f"no uplot {wanted}.x on the registry")
    return max(matching, key=lambda v: tuple(int(part) for part in v.split(".")))


def fetch(version: str) -> tuple[dict[str, object], dict[str, bytes]]:
    """The manifest and the files of `version`, after checking the tarball's sha512 integrity."""
    meta = json.loads(get(f"{REGISTRY}/{version}"))
    dist = meta["dist"]
    tarball = get(dist["tarball"])
    algorithm, _, expected = dist["integrity"].partition("-")
    if algorithm != "sha512" or base64.b64encode(hashlib.sha512(tarball).digest()).decode() != expected:
        sys.exit(f"{dist['tarball']} does not match the registry's integrity {dist['integrity']}")
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        files = {name: _member(archive, member) for name, member in FILES.items()}
    manifest: dict[str, object] = {
        "package": "uplot",
        "version": version,
        "license": meta["license"],
        "homepage": "https://github.com/leeoniya/uPlot",
        "tarball": dist["tarball"],
        "integrity": dist["integrity"],
        "sha256": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
    }
    return manifest, files


def _member(archive: tarfile.TarFile, name: str) -> bytes:
    extracted = archive.extractfile(name)
    if extracted is None:
        sys.exit(f"{name} is not a file in the tarball")
    return extracted.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("version", nargs="?", help="an exact version (1.6.32) or a prefix (1.6)")
    parser.add_argument("--check", action="store_true", help="compare the vendored files with the registry's")
    args = parser.parse_args()
    current = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
    version = resolve_version(args.version or current.get("version") or "1.6")
    manifest, files = fetch(version)
    if args.check:
        vendored = {name: hashlib.sha256((VENDOR_DIR / name).read_bytes()).hexdigest() for name in FILES}
        if vendored != manifest["sha256"] or current != manifest:
            sys.exit(f"the vendored uPlot differs from uplot@{version} on the registry")
        print(f"uplot@{version}: vendored files and manifest match the registry")
        return
    for name, data in files.items():
        (VENDOR_DIR / name).write_bytes(data)
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"vendored uplot@{version} into {VENDOR_DIR}")


if __name__ == "__main__":
    main()
