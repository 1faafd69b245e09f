"""/admin/* handlers, authenticated by the admin bearer token."""

from __future__ import annotations

import hmac

import orjson
from aiohttp import web

from gateway.admin_service import AdminService
from gateway.errors import AdminAuthError, InvalidRequest, json_response
from gateway.keys import accounts_key, ledger_key, settings_key


def is_admin(request: web.Request) -> bool:
    """Whether the request carries the admin token (False when the admin API is disabled)."""
    token = request.app[settings_key].admin_token
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


def require_admin(request: web.Request) -> None:
    """401 unless the request carries the admin token."""
    if not request.app[settings_key].admin_token:
        raise AdminAuthError("The admin API is disabled: set GATEWAY_ADMIN_TOKEN (or server.admin_token).")
    if not is_admin(request):
        raise AdminAuthError("Invalid or missing admin token.")


def _service(request: web.Request) -> AdminService:
    """Check the admin token, then hand out the service."""
    require_admin(request)
    return AdminService(request.app[accounts_key], request.app[ledger_key])


async def _json_object(request: web.Request) -> dict[str, object]:
    try:
        payload = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest("The body must be a valid JSON object.") from exc
    if not isinstance(payload, dict):
        raise InvalidRequest("The body must be a JSON object.")
    return payload


async def create_account(request: web.Request) -> web.Response:
    service = _service(request)
    return json_response(await service.create_account(await _json_object(request)), status=201)


async def list_accounts(request: web.Request) -> web.Response:
    return json_response(await _service(request).list_accounts())


async def get_account(request: web.Request) -> web.Response:
    return json_response(await _service(request).get_account(request.match_info["account_id"]))


async def create_key(request: web.Request) -> web.Response:
    service = _service(request)
    view = await service.create_key(request.match_info["account_id"], await _json_object(request))
    return json_response(view, status=201, headers={"Cache-Control": "no-store"})


async def list_keys(request: web.Request) -> web.Response:
    return json_response(await _service(request).list_keys(request.match_info["account_id"]))


async def grant_credits(request: web.Request) -> web.Response:
    service = _service(request)
    return json_response(await service.grant(request.match_info["account_id"], await _json_object(request)))


async def revoke_key(request: web.Request) -> web.Response:
    return json_response(await _service(request).revoke_key(request.match_info["key_id"]))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/admin/accounts", create_account)
    app.router.add_get("/admin/accounts", list_accounts)
    app.router.add_get("/admin/accounts/{account_id}", get_account)
    app.router.add_post("/admin/accounts/{account_id}/keys", create_key)
    app.router.add_get("/admin/accounts/{account_id}/keys", list_keys)
    app.router.add_post("/admin/accounts/{account_id}/credits", grant_credits)
    app.router.add_delete("/admin/keys/{key_id}", revoke_key)
