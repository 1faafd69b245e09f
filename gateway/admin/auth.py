"""Who is asking: a tenant's API key (checked against the account store) or the operator's admin token.

Every handler package authenticates through here, so a key is parsed, checked and answered the same way
everywhere: 401 for a missing, malformed, unknown or revoked key, before any other work.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from gateway.admin.accounts import AccountStore, ParsedApiKey, Tenant, parse_api_key
from gateway.billing.pricing import format_credits
from gateway.errors import AdminAuthError, AuthError, MissingApiKey

CREDITS_HEADER = "x-credits-remaining"


def credits_header(balance_micros: int) -> dict[str, str]:
    """`x-credits-remaining`, on every answer to a known key."""
    return {CREDITS_HEADER: format_credits(balance_micros)}


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of `Authorization: Bearer <token>`, or None. Tokens are ASCII: a header with other bytes
    (aiohttp keeps undecodable ones as surrogates) carries none."""
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or not token.isascii():
        return None
    return token


def token_matches(presented: str | None, expected: str | None) -> bool:
    """Constant-time comparison; never a match when either side is missing."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def bearer_api_key(headers: Mapping[str, str]) -> ParsedApiKey:
    """The API key from `Authorization: Bearer ...`; 401 when absent or not one of ours. No I/O."""
    token = bearer_token(headers)
    if token is None:
        raise AuthError() if headers.get("Authorization") else MissingApiKey()
    parsed = parse_api_key(token)
    if parsed is None:
        raise AuthError()
    return parsed


async def authenticate(accounts: AccountStore, api_key: ParsedApiKey) -> Tenant:
    """The tenant of a live API key; 401 when it is unknown or revoked."""
    tenant = await accounts.find_tenant(api_key)
    if tenant is None:
        raise AuthError()
    return tenant


def is_admin(headers: Mapping[str, str], admin_token: str | None) -> bool:
    """Whether the request carries the admin token (False when the admin API is disabled)."""
    return token_matches(bearer_token(headers), admin_token)


def require_admin(headers: Mapping[str, str], admin_token: str | None) -> None:
    """401 unless the request carries the admin token."""
    if not admin_token:
        raise AdminAuthError("The admin API is disabled: set GATEWAY_ADMIN_TOKEN (or server.admin_token).")
    if not is_admin(headers, admin_token):
        raise AdminAuthError()
