"""The Docker build context: .dockerignore keeps what the Dockerfile copies and leaves out local bulk.

There is no Docker engine here, so the test reads both files and applies .dockerignore's rules as Docker does
(moby's patternmatcher: Go `filepath.Match` globs plus `**`, `!` exceptions, the last matching line wins, and a
path is matched by its own pattern or any parent directory's).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, index = "", 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out, index = out + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            out, index = out + ".*", index + 2
        elif pattern[index] == "*":
            out, index = out + "[^/]*", index + 1
        elif pattern[index] == "?":
            out, index = out + "[^/]", index + 1
        else:
            out, index = out + re.escape(pattern[index]), index + 1
    return re.compile(out)


def _rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception, regex) per pattern line, in order."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        rules.append((exception, _pattern_regex(line.removeprefix("!").strip().strip("/"))))
    return rules


def excluded(rules: list[tuple[bool, re.Pattern[str]]], path: str) -> bool:
    """Whether Docker leaves `path` (relative, with /) out of the build context."""
    parts = path.split("/")
    candidates = ["/".join(parts[: end + 1]) for end in range(len(parts))]  # the path and its parents
    result = False
    for exception, regex in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            result = not exception
    return result


def copy_sources() -> list[str]:
    """The build-context sources of the Dockerfile's COPY lines (not `COPY --from`, which reads a stage)."""
    sources = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()  # the shell form, as this Dockerfile writes its COPY lines
        if words[:1] != ["COPY"] or any(word.startswith("--from") for word in words):
            continue
        sources += [word for word in words[1:-1] if not word.startswith("--")]
    return sources


def test_the_matcher_follows_dockers_rules() -> None:
    rules = _rules("*\n!keep\n**/*.tmp\n!keep/wanted.tmp\nsub/*/x")
    assert excluded(rules, "other.txt") and excluded(rules, "deep/in/other.txt")
    assert not excluded(rules, "keep/a/b.py") and excluded(rules, "keep/a/b.tmp")
    assert not excluded(rules, "keep/wanted.tmp")
    assert not excluded(_rules("sub/*/x"), "sub/a/b/x") and excluded(_rules("sub/*/x"), "sub/a/x/y")
    assert not excluded(_rules(""), ".venv/bin/python")


def test_dockerignore_keeps_every_copied_file_and_leaves_out_local_bulk() -> None:
    rules = _rules((ROOT / ".dockerignore").read_text())
    sources = copy_sources()
    assert sources == ["pyproject.toml", "README.md", "gateway", "config"]
    copied = []
    for source in sources:
        path = ROOT / source
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        copied += [p.relative_to(ROOT).as_posix() for p in files if "__pycache__" not in p.parts]
    assert "gateway/tokens/vocab/o200k_base.tiktoken" in copied and "config/gateway.toml" in copied
    assert [path for path in copied if excluded(rules, path)] == []
    local = [
        ".venv/lib/python3.11/site-packages/aiohttp/__init__.py",
        "data/redis/appendonly.aof",
        "data/spool/spool-123.jsonl",
        ".git/HEAD",
        "build/mutation/after/tree/gateway/app.py",
        "test-artifacts/dashboard.png",
        ".mypy_cache/3.11/gateway/app.meta.json",
        ".pytest_cache/v/cache/lastfailed",
        ".ruff_cache/content",
        "gateway/__pycache__/app.cpython-311.pyc",
        "gateway/proxy/__pycache__/exchange.cpython-311.pyc",
        "benchmarks/results/latest.json",
        "llm_metering_gateway.egg-info/PKG-INFO",
        "tests/conftest.py",
        ".env",
    ]
    assert [path for path in local if not excluded(rules, path)] == []
