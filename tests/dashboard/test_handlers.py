"""The page and its assets over HTTP: public, offline (nothing loaded from elsewhere), a strict CSP, no inline
script, only the named files served, and cached by ETag."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from gateway.dashboard.assets import STATIC_FILES
from gateway.dashboard.handlers import CONTENT_SECURITY_POLICY
from tests.common import StartGateway


class Page(HTMLParser):
    """What the page loads and runs: script and link URLs, inline script or style, event-handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script":
            self._in_script = True
            if not values.get("src"):
                self.inline.append("<script> without src")
        if tag == "style" or "style" in values:
            self.inline.append(f"<{tag}> with a style")
        self.inline += [f"<{tag} {name}>" for name in values if name.startswith("on")]
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("inline script text")


async def test_the_page_is_public_and_loads_only_the_gateways_files(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    response = await gateway.client.get("/dashboard")
    assert response.status == 200 and response.content_type == "text/html"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe" not in CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    page = Page()
    page.feed(await response.text())
    assert page.inline == []
    loaded = {url.removeprefix("/dashboard/static/") for url in page.urls}
    assert all(url.startswith("/dashboard/static/") for url in page.urls), page.urls  # no CDN, no other host
    assert loaded == set(STATIC_FILES)  # and every file served is one the page uses

    for name, media_type in STATIC_FILES.items():
        asset = await gateway.client.get(f"/dashboard/static/{name}")
        assert asset.status == 200 and asset.content_type == media_type, name
        assert asset.headers["X-Content-Type-Options"] == "nosniff"
        if media_type in ("text/javascript", "text/css"):
            # No URL of another host that a script or style would load (uPlot's SVG namespace is a name only).
            text = (await asset.text()).replace("http://www.w3.org/2000/svg", "")
            assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text.split("\n", 1)[-1]), name


async def test_the_script_logs_nothing_and_keeps_the_secret_for_the_tab_only(start_gateway: StartGateway) -> None:
    """The browser tests watch what the page does; this reads what it could do."""
    gateway = await start_gateway()
    script = await (await gateway.client.get("/dashboard/static/dashboard.js")).text()
    assert not re.search(r"\bconsole\.\w+\(", script) and "localStorage" not in script
    assert "innerHTML" not in script  # API data (key and model names) goes in as text only
    assert "sessionStorage.setItem(SECRET" in script and "Authorization: `Bearer ${state.secret}`" in script


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/static/index.html",  # the page has its own route
        "/dashboard/static/vendor/uplot.json",  # in the package, not for the browser
        "/dashboard/static/../handlers.py",
        "/dashboard/static/%2e%2e/handlers.py",
        "/dashboard/static/vendor/../../assets.py",
        "/dashboard/static/nothing.js",
        "/dashboard/static/",
    ],
)
async def test_nothing_else_is_served(start_gateway: StartGateway, path: str) -> None:
    gateway = await start_gateway()
    response = await gateway.client.get(path)
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


async def test_an_unchanged_file_is_not_sent_again(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    first = await gateway.client.get("/dashboard/static/vendor/uPlot.iife.min.js")
    etag = first.headers["ETag"]
    again = await gateway.client.get("/dashboard/static/vendor/uPlot.iife.min.js", headers={"If-None-Match": etag})
    assert again.status == 304 and await again.read() == b""
    page = await gateway.client.get("/dashboard", headers={"If-None-Match": etag})
    assert page.status == 200  # another file's tag
