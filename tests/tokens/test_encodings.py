from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import tiktoken.load
import tiktoken_ext.openai_public as openai_public  # type: ignore[import-untyped]

from gateway.tokens import TokenCounter, encodings, get_encoding
from gateway.tokens.encodings import SPECS

REPO_ROOT = Path(__file__).resolve().parents[2]
# The sha256 values /work/shared/tiktoken/README.md lists (tiktoken 0.14's own expected_hash).
PINNED = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}
TIKTOKEN_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}


def _vocab_bytes(name: str) -> bytes:
    return resources.files("gateway.tokens").joinpath("vocab", f"{name}.tiktoken").read_bytes()


@pytest.mark.parametrize("name", sorted(PINNED))
def test_packaged_vocabularies_match_pinned_hashes(name: str) -> None:
    assert hashlib.sha256(_vocab_bytes(name)).hexdigest() == PINNED[name] == SPECS[name].sha256


@pytest.mark.parametrize("name", sorted(PINNED))
def test_specs_equal_tiktokens_own_constructors(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ours = get_encoding(name)
    # Seed tiktoken's download cache with our file so its constructor runs offline, then compare.
    (tmp_path / hashlib.sha1(TIKTOKEN_URLS[name].encode()).hexdigest()).write_bytes(_vocab_bytes(name))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))

    def no_network(blobpath: str) -> bytes:
        raise AssertionError(f"tried to fetch {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    reference = getattr(openai_public, name)()
    assert SPECS[name].pat_str == reference["pat_str"]
    assert SPECS[name].special_tokens == reference["special_tokens"]
    assert ours._mergeable_ranks == reference["mergeable_ranks"]


def test_cl100k_matches_cookbook_token_ids() -> None:
    # Outputs printed in openai/openai-cookbook examples/How_to_count_tokens_with_tiktoken.ipynb, sections 3 and 5.
    enc = get_encoding("cl100k_base")
    assert enc.encode("tiktoken is great!") == [83, 1609, 5963, 374, 2294, 0]
    assert enc.encode("antidisestablishmentarianism") == [519, 85342, 34500, 479, 8997, 2191]
    assert enc.encode("2 + 2 = 4") == [17, 489, 220, 17, 284, 220, 19]
    assert enc.encode("お誕生日おめでとう") == [33334, 45918, 243, 21990, 9080, 33334, 62004, 16556, 78699]


def test_each_encoding_is_loaded_once_per_process(counter: TokenCounter) -> None:
    assert get_encoding("o200k_base") is get_encoding("o200k_base")
    assert counter.encoding_for("gpt-4o") is TokenCounter().encoding_for("gpt-4o-mini")
    assert counter.encoding_for("gpt-4") is get_encoding("cl100k_base")


def test_unknown_encoding_name_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        get_encoding("p50k_base")


OFFLINE_SCRIPT = r"""
import json, socket, sys, threading
import tiktoken, tiktoken.load, tiktoken.registry

def forbidden(*args, **kwargs):
    raise AssertionError("network or tiktoken registry used")

socket.socket.connect = forbidden
socket.create_connection = forbidden
tiktoken.get_encoding = forbidden
tiktoken.registry.get_encoding = forbidden
tiktoken.load.read_file = lambda path: open(path, "rb").read() if "://" not in path else forbidden()

import gateway.tokens.encodings as encodings
real_parse = encodings.parse_ranks
loads = []
def counting_parse(contents, spec):
    loads.append(spec.name)
    return real_parse(contents, spec)
encodings.parse_ranks = counting_parse

from gateway.tokens import TokenCounter
counter = TokenCounter()
results = []
threads = [threading.Thread(target=lambda: results.append(counter.encoding_for("gpt-4o"))) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
body = {"messages": [{"role": "user", "content": "Hello!"}]}
print(json.dumps({
    "same_object": all(r is results[0] for r in results),
    "loads": len(loads),
    "o200k": counter.count_prompt_tokens("gpt-4o", body),
    "cl100k": counter.count_prompt_tokens("gpt-4", body),
    "loads_after": len(loads),
}))
"""


def test_vocabularies_load_offline_without_tiktoken_registry(tmp_path: Path) -> None:
    empty_cache = tmp_path / "empty-cache"
    empty_cache.mkdir()
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(empty_cache), "PYTHONPATH": str(REPO_ROOT)}
    env.pop("DATA_GYM_CACHE_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    # 8 threads raced for o200k: one load. cl100k loaded once more on first use; then no more loads.
    assert result == {"same_object": True, "loads": 1, "o200k": 9, "cl100k": 9, "loads_after": 2}
    # Nothing was written to tiktoken's cache either: loading works on a read-only filesystem.
    assert list(empty_cache.iterdir()) == []


def test_a_corrupt_vocabulary_is_refused() -> None:
    spec = SPECS["cl100k_base"]
    with pytest.raises(ValueError, match="sha256"):
        encodings.parse_ranks(_vocab_bytes("cl100k_base") + b"x", spec)
