"""/admin/* handlers, authenticated by the admin bearer token, and `GET /v1/account`, where an API key reads its
own account (the admin token any account, with `?account=ID`) in the same shape."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway.admin.auth import account_scope, require_admin
from gateway.admin.service import AdminService
from gateway.app_state import ACCOUNTS, ADMIN_SERVICE, LEDGER, SETTINGS
from gateway.bodies import read_json_object
from gateway.errors import json_response


def _service(request: web.Request) -> AdminService:
    """Check the admin token, then hand out the service."""
    require_admin(request.headers, request.app[SETTINGS].server.admin_token)
    return request.app[ADMIN_SERVICE]


async def post_accounts(request: web.Request) -> web.Response:
    service = _service(request)
    return json_response(await service.create_account(await _payload(request)), status=201)


async def get_accounts(request: web.Request) -> web.Response:
    return json_response(await _service(request).list_accounts())


async def get_account(request: web.Request) -> web.Response:
    return json_response(await _service(request).show_account(request.match_info["account_id"]))


async def get_own_account(request: web.Request) -> web.Response:
    """GET /v1/account: the account the key belongs to (its name, for one), as `GET /admin/accounts/{id}` shows it."""
    accounts, settings = request.app[ACCOUNTS], request.app[SETTINGS]
    scope = await account_scope(accounts, request.headers, request.query, settings.server.admin_token)
    view = await request.app[ADMIN_SERVICE].show_account(scope.account_id)
    return json_response(view, headers=scope.headers)


async def post_account_keys(request: web.Request) -> web.Response:
    service = _service(request)
    view = await service.create_api_key(request.match_info["account_id"], await _payload(request))
    return json_response(view, status=201, headers={"Cache-Control": "no-store"})


async def get_account_keys(request: web.Request) -> web.Response:
    return json_response(await _service(request).list_api_keys(request.match_info["account_id"]))


async def post_account_credits(request: web.Request) -> web.Response:
    service = _service(request)
    return json_response(await service.adjust_credits(request.match_info["account_id"], await _payload(request)))


async def delete_key(request: web.Request) -> web.Response:
    return json_response(await _service(request).revoke_api_key(request.match_info["key_id"]))


async def admin_ctx(app: web.Application) -> AsyncIterator[None]:
    """Build the admin service once, after the account store and the ledger (storage.redis_ctx) exist."""
    app[ADMIN_SERVICE] = AdminService(app[ACCOUNTS], app[LEDGER])
    yield


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(admin_ctx)
    app.router.add_post("/admin/accounts", post_accounts)
    app.router.add_get("/admin/accounts", get_accounts)
    app.router.add_get("/admin/accounts/{account_id}", get_account)
    app.router.add_post("/admin/accounts/{account_id}/keys", post_account_keys)
    app.router.add_get("/admin/accounts/{account_id}/keys", get_account_keys)
    app.router.add_post("/admin/accounts/{account_id}/credits", post_account_credits)
    app.router.add_delete("/admin/keys/{key_id}", delete_key)
    app.router.add_get("/v1/account", get_own_account)


async def _payload(request: web.Request) -> dict[str, object]:
    """The JSON object the request carries, within the body timeout."""
    return await read_json_object(request, request.app[SETTINGS].server.body_timeout)
