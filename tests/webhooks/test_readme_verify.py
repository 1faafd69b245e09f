"""The README's few lines of Python that verify a delivery's signature really do verify ours."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.webhooks import signing

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_verify() -> object:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    [code] = [block for block in blocks if "def verify(" in block]
    namespace: dict[str, object] = {}
    exec(code, namespace)  # the README's own code, as a reader would paste it
    return namespace["verify"]


def test_the_readme_snippet_verifies_a_signed_delivery_and_rejects_a_tampered_one() -> None:
    verify = _readme_verify()
    secret, rotated = signing.new_secret(), signing.new_secret()
    body = b'{"id":"evt_1","type":"credits.low"}'
    headers = signing.headers([rotated, secret], "evt_1", 1_790_000_000, body)
    assert verify(secret, headers, body) is True  # type: ignore[operator]
    assert verify(rotated, headers, body) is True  # type: ignore[operator]
    assert verify(secret, headers, body + b" ") is False  # type: ignore[operator]
    assert verify(signing.new_secret(), headers, body) is False  # type: ignore[operator]
