"""GET /dashboard and GET /dashboard/static/{path}: the page and its assets, public and served offline.

The page holds no data and no secret: its script signs in and reads the usage API with a bearer header. The
Content-Security-Policy lets it load and call nothing but this gateway, and run no inline script.
"""

from __future__ import annotations

from aiohttp import web

from gateway.dashboard.assets import PAGE, STATIC_FILES, Asset, load_asset
from gateway.errors import NotFound

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidated on every load (a cheap 304), so an upgraded gateway's page is never mixed with stale assets.
    "Cache-Control": "no-cache",
}


async def get_page(request: web.Request) -> web.Response:
    return _answer(request, load_asset(PAGE))


async def get_static(request: web.Request) -> web.Response:
    name = request.match_info["path"]
    if name not in STATIC_FILES:
        raise NotFound(f"Unknown path: {request.method} {request.path}")
    return _answer(request, load_asset(name))


def _answer(request: web.Request, asset: Asset) -> web.Response:
    headers = {**HEADERS, "ETag": asset.etag}
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, content_type=asset.content_type, charset="utf-8", headers=headers)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/dashboard", get_page)
    app.router.add_get("/dashboard/static/{path:.+}", get_static)
