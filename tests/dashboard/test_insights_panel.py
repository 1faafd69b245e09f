"""The dashboard's Insights panel in a real headless browser, after the scripted waste (tests/insights/waste.py):
the same findings as GET /v1/usage/insights, in its order, with its credit figures; none for a clean range."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser

from tests.common import StartGateway
from tests.dashboard.browser import Dashboard
from tests.dashboard.common import origin, read
from tests.insights.waste import scripted


async def test_the_panel_lists_what_the_insights_api_finds(
    start_gateway: StartGateway, browser: Browser, tmp_path: Path
) -> None:
    gateway, tenant, _, _ = await scripted(start_gateway)
    dashboard = await Dashboard.open(browser, origin(gateway))
    await dashboard.sign_in(tenant.key(0))

    report = await read(gateway, "/v1/usage/insights", tenant.auth())  # the page's default range: this period
    assert len(report["data"]) == 6
    assert await dashboard.column("insights", "data-type") == [item["type"] for item in report["data"]]
    figures = await dashboard.page.eval_on_selector_all(
        "#insights tbody tr",
        "rows => rows.map(row => [...row.querySelectorAll('td[data-value]')].map(td => td.dataset.value))",
    )
    assert figures == [[str(item["credits"]), str(item["estimated_savings_credits"])] for item in report["data"]]
    text = await dashboard.page.inner_text("#insights tbody")
    assert all(item["title"] in text and item["tip"] in text for item in report["data"])
    assert report["data"][0]["examples"][0] in text
    await dashboard.screenshot(tmp_path, "dashboard-insights.png")

    # A range without waste (or traffic): the panel says so.
    await dashboard.page.fill("#start", "2026-08-01")
    await dashboard.page.fill("#end", "2026-08-31")
    await dashboard.page.wait_for_selector("#insights td.none")
    assert "No waste found" in await dashboard.page.inner_text("#insights tbody")
    dashboard.check_hygiene(tenant.key(0))
