"""Standard Webhooks signatures (https://www.standardwebhooks.com): what lets a receiver trust a delivery.

A secret is `whsec_` + base64 of random bytes; the HMAC key is those bytes. A signature is `v1,` + base64 of
HMAC-SHA256 over `{id}.{timestamp}.{body}`, sent in `webhook-signature` next to `webhook-id` and
`webhook-timestamp` (unix seconds). During a secret rotation the body is signed with each secret and the
signatures go space-separated in the one header, so receivers holding either secret accept it.

    headers([new_secret, old_secret], "evt_123", 1_790_000_000, body)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec asks for 24 to 64


def new_secret() -> str:
    """A fresh signing secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,` signature of one message: `sign(secret, "evt_123", 1_790_000_000, b'{"id": ...}')`."""
    # A "." in the id would let one (id, timestamp, body) triple sign as another.
    if not msg_id or "." in msg_id:
        raise ValueError("a webhook message id must be non-empty and contain no '.'")
    signed = f"{msg_id}.{int(timestamp)}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers(secret_or_secrets: str | Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers; given several secrets (a rotation window), one signature each."""
    keys = [secret_or_secrets] if isinstance(secret_or_secrets, str) else list(secret_or_secrets)
    if not keys:
        raise ValueError("at least one webhook secret is needed to sign")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": " ".join(sign(key, msg_id, timestamp, body) for key in keys),
    }


def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is base64 after its prefix") from None
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key
