"""Who is asking: a tenant's API key (checked against the account store; sent as a bearer token or as
`x-api-key`) or the operator's admin token.

Every handler package authenticates through here, so a key is parsed, checked and answered the same way
everywhere: 401 for a missing, malformed, unknown or revoked key, before any other work.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.admin.accounts import AccountStore, ParsedApiKey, Tenant, parse_api_key
from gateway.bill_headers import balance_headers
from gateway.errors import AdminAuthError, AuthError, InvalidRequest, MissingApiKey, NotFound, PermissionDenied

API_KEY_HEADER = "x-api-key"  # Anthropic's SDKs send the key here


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
    """The tenant's API key, sent as `Authorization: Bearer KEY` (OpenAI's SDKs; Anthropic's with `auth_token`) or
    as `x-api-key: KEY` (Anthropic's SDKs by default), or both alike; 401 when absent, malformed, two different
    keys, or not one of ours. No I/O."""
    authorization, api_key = headers.get("Authorization"), headers.get(API_KEY_HEADER)
    token = bearer_token(headers)
    if authorization and token is None:
        raise AuthError()
    if api_key is not None:
        api_key = api_key.strip()
        if not api_key or not api_key.isascii() or (token is not None and token != api_key):
            raise AuthError()
    token = token or api_key
    if token is None:
        raise MissingApiKey()
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


@dataclass(frozen=True)
class AccountScope:
    """The account a tenant-facing request acts on, and the headers its answer carries."""

    account_id: str
    balance_micros: int
    headers: dict[str, str] = field(default_factory=dict)
    by_admin: bool = False


async def account_scope(
    accounts: AccountStore, headers: Mapping[str, str], query: Mapping[str, str], admin_token: str | None
) -> AccountScope:
    """The admin token acts on `?account=ID`; a tenant key on its own account and nothing else (401 / 403)."""
    requested = query.get("account")
    if is_admin(headers, admin_token):
        if not requested:
            raise InvalidRequest("'account' is required with the admin token.", param="account")
        account = await accounts.load_account(requested)
        if account is None:
            raise NotFound(f"No account with id '{requested[:40]}'.", param="account")
        return AccountScope(account.id, account.balance_micros, by_admin=True)
    tenant = await authenticate(accounts, bearer_api_key(headers))
    if requested is not None and requested != tenant.account_id:
        raise PermissionDenied("An API key can act only on its own account.", param="account")
    return AccountScope(tenant.account_id, tenant.balance_micros, balance_headers(tenant.balance_micros))
