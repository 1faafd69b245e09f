"""The vendored uPlot is the release its manifest names: every file's sha256 matches, offline.

`python scripts/fetch_uplot.py --check` compares the same files with the npm registry's tarball.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

VENDOR = resources.files("gateway.dashboard").joinpath("static", "vendor")
README = Path(__file__).resolve().parents[2] / "README.md"


def manifest() -> dict[str, object]:
    return json.loads(VENDOR.joinpath("uplot.json").read_text())  # type: ignore[no-any-return]


def test_every_vendored_file_matches_its_recorded_sha256() -> None:
    recorded = manifest()["sha256"]
    assert isinstance(recorded, dict) and set(recorded) == {"uPlot.iife.min.js", "uPlot.min.css", "LICENSE"}
    for name, sha256 in recorded.items():
        assert hashlib.sha256(VENDOR.joinpath(name).read_bytes()).hexdigest() == sha256, name


def test_the_manifest_names_the_release_the_files_are_from() -> None:
    recorded = manifest()
    version = str(recorded["version"])
    assert version.startswith("1.6.")
    header = f"/*! https://github.com/leeoniya/uPlot (v{version}) */"
    assert VENDOR.joinpath("uPlot.iife.min.js").read_text().startswith(header)
    assert recorded["tarball"] == f"https://registry.npmjs.org/uplot/-/uplot-{version}.tgz"
    assert str(recorded["integrity"]).startswith("sha512-")
    assert recorded["license"] == "MIT" and VENDOR.joinpath("LICENSE").read_text().startswith("The MIT License")
    assert f"uPlot {version}" in README.read_text()  # the README says which release ships
