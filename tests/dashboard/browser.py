"""A real headless Chromium (Debian's package, never a downloaded one) driven by Playwright, on the dashboard.

Every request the page makes and everything it logs is recorded, so each test can check at its end that the
page loaded nothing from elsewhere, broke no Content-Security-Policy rule and never put the secret in a URL or
in the console.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import Browser, ConsoleMessage, Page, Request

from gateway.dashboard.assets import load_asset

CHROMIUM = os.environ.get("GATEWAY_TEST_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium reaches out to the network on its own.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# The page's refresh interval, as dashboard.js sets it.
REFRESH_MS = int(re.search(r"const REFRESH_MS = (\d+);", load_asset("dashboard.js").body.decode())[1])  # type: ignore[index]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
FIGURES = (
    "requests_today",
    "tokens_today",
    "credits_today",
    "requests_period",
    "tokens_period",
    "credits_period",
    "credits_remaining",
)
# Set (to anything) to keep the screenshots in <repo>/test-artifacts/ as well as in the test's tmp_path.
ARTIFACTS_ENV = "GATEWAY_TEST_ARTIFACTS"
REPO = Path(__file__).resolve().parents[2]


def chromium_path() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        raise AssertionError(f"no Chromium at {CHROMIUM}: `apt-get install chromium` (or set GATEWAY_TEST_CHROMIUM)")
    return CHROMIUM


@dataclass
class Dashboard:
    """One browser tab on the gateway's dashboard, and what it did."""

    page: Page
    origin: str
    urls: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    @classmethod
    async def open(
        cls,
        browser: Browser,
        origin: str,
        viewport: dict[str, int] = DESKTOP,
        *,
        clock: bool = False,
        timezone_id: str | None = None,
    ) -> Dashboard:
        """A new tab on /dashboard; `clock` installs Playwright's clock, so tests move the page's timers;
        `timezone_id` is the browser's local time zone (default: the machine's)."""
        context = await browser.new_context(
            viewport=viewport,  # type: ignore[arg-type]
            accept_downloads=True,
            timezone_id=timezone_id,
        )
        context.set_default_timeout(10_000)  # a page that never gets there fails well within the test's timeout
        dashboard = cls(await context.new_page(), origin)
        if clock:
            await dashboard.page.clock.install()
        dashboard.page.on("request", dashboard._record_request)
        dashboard.page.on("console", dashboard._record_console)
        dashboard.page.on("pageerror", lambda error: dashboard.page_errors.append(str(error)))
        response = await dashboard.page.goto(f"{origin}/dashboard")
        assert response is not None and response.status == 200
        await dashboard.page.wait_for_selector("#sign-in:not([hidden])")
        return dashboard

    def _record_request(self, request: Request) -> None:
        self.urls.append(request.url)

    def _record_console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text}")

    async def sign_in(self, secret: str, *, expect: str = "ready") -> None:
        await self.page.fill("#secret", secret)
        await self.page.click("#sign-in button[type=submit]")
        await self.page.wait_for_selector(f"body[data-state={expect}]")

    async def figures(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for name in FIGURES:
            value = await self.page.get_attribute(f'[data-metric="{name}"]', "data-value")
            assert value is not None, name
            values[name] = value
        return values

    async def chart_data(self, name: str) -> list[list[float | None]]:
        data = await self.page.evaluate("name => window.dashboard.chartData(name)", name)
        assert data is not None, f"no {name} chart"
        return data  # type: ignore[no-any-return]

    async def column(self, table: str, attribute: str) -> list[str]:
        return await self.page.eval_on_selector_all(  # type: ignore[no-any-return]
            f"#{table} tbody tr", f"rows => rows.map(row => row.getAttribute('{attribute}'))"
        )

    async def screenshot(self, tmp_path: Path, name: str) -> Path:
        path = tmp_path / name
        await self.page.screenshot(path=str(path), full_page=True)
        if os.environ.get(ARTIFACTS_ENV):
            (REPO / "test-artifacts").mkdir(exist_ok=True)
            shutil.copy(path, REPO / "test-artifacts" / name)
        return path

    def check_hygiene(self, *secrets: str, errors_expected: bool = False) -> None:
        """Nothing loaded from elsewhere, no secret in a URL or the console, no CSP violation or script error."""
        for url in self.urls:
            assert url.startswith((self.origin + "/", "blob:" + self.origin + "/")), url
            assert not any(secret in url for secret in secrets), "a secret in a request URL"
        assert not any(secret in line for line in self.console for secret in secrets), "a secret in the console"
        assert self.page_errors == [], self.page_errors
        refused = [line for line in self.console if "Content Security Policy" in line or "Refused" in line]
        assert refused == [], refused
        if not errors_expected:
            assert [line for line in self.console if line.startswith("error")] == [], self.console
