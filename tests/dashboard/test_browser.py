"""The dashboard in a real headless browser, after real traffic: the figures equal the usage API's, the charts
and tables hold its data, the CSV downloads, and wrong keys, empty accounts, phones and admins are served.

The gateway's clock stands at 2026-09-21 13:30 UTC (tests/usage/traffic.py); the page takes "today" and "this
period" from the usage API's defaults, so the browser's own clock plays no part.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

from playwright.async_api import Browser, Route

from gateway.usage.export import COLUMNS
from tests.common import ADMIN_TOKEN, Gateway, StartGateway
from tests.dashboard.browser import PHONE, REFRESH_MS, Dashboard
from tests.dashboard.common import origin, read
from tests.usage.traffic import NOW, new_tenant, scheduled_traffic, send

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def expected_figures(gateway: Gateway, headers: dict[str, str], **params: str) -> dict[str, object]:
    """The headline figures as the usage API states them."""
    period = await read(gateway, "/v1/usage", headers, **params)
    today = await read(gateway, "/v1/usage", headers, granularity="hour", **params)
    return {
        "requests_today": today["total_requests"],
        "tokens_today": today["total_tokens"],
        "credits_today": today["total_credits_used"],
        "requests_period": period["total_requests"],
        "tokens_period": period["total_tokens"],
        "credits_period": period["total_credits_used"],
        "credits_remaining": period["credits_remaining"],
    }


def as_numbers(figures: dict[str, str]) -> dict[str, float]:
    return {name: float(value) for name, value in figures.items()}


async def test_signed_in_page_shows_what_the_usage_api_says(
    start_gateway: StartGateway, browser: Browser, tmp_path: Path
) -> None:
    gateway, tenant = await scheduled_traffic(start_gateway)
    dashboard = await Dashboard.open(browser, origin(gateway))
    await dashboard.sign_in(tenant.key(0))

    expected = await expected_figures(gateway, tenant.auth())
    figures = await dashboard.figures()
    assert as_numbers(figures) == expected
    assert figures["requests_today"] == "4" and figures["requests_period"] == "11"  # hand-counted from SCHEDULE

    # The default range is the billing period: every day of September, today's and earlier ones with the API's
    # numbers, later ones empty.
    period = await read(gateway, "/v1/usage", tenant.auth())
    days = {day["date"]: day["requests"] for day in period["daily_breakdown"]}
    assert await dashboard.page.get_attribute("#daily-chart", "data-points") == "30"
    xs, requests, _ = await dashboard.chart_data("daily")
    assert len(xs) == 30 and requests == [days.get(f"2026-09-{n:02}") for n in range(1, 31)]
    assert requests[20] == 4 and requests[21] is None  # the 21st is today
    # A hover shows the exact value in uPlot's legend; a click on a legend entry hides its series.
    plot = await dashboard.page.locator("#daily-chart .u-over").bounding_box()
    assert plot is not None
    await dashboard.page.mouse.move(plot["x"] + plot["width"] * 20.5 / 30, plot["y"] + plot["height"] / 2)
    legend = dashboard.page.locator("#daily-chart .u-legend .u-series")
    assert await legend.nth(0).locator(".u-value").inner_text() == "2026-09-21"
    assert await legend.nth(1).locator(".u-value").inner_text() == "4"
    await legend.nth(2).locator(".u-label").click()
    assert "u-off" in (await legend.nth(2).get_attribute("class") or "")
    hours, per_hour, _ = await dashboard.chart_data("hourly")
    assert len(hours) == 24 and sum(v or 0 for v in per_hour) == expected["requests_today"]

    models = await read(gateway, "/v1/usage/models", tenant.auth())
    model_names = [m["model"] for m in models["data"]]
    assert await dashboard.column("models", "data-model") == model_names and len(model_names) == 3
    assert (await dashboard.chart_data("models"))[0] == list(range(len(model_names)))
    keys = await read(gateway, "/v1/usage/keys", tenant.auth())
    key_ids = [k["key_id"] for k in keys["data"]]
    assert await dashboard.column("keys", "data-key-id") == key_ids and set(key_ids) == set(tenant.keys)
    masked = await dashboard.page.inner_text("#keys tbody")
    assert all(k["masked_key"] in masked for k in keys["data"])

    shot = await dashboard.screenshot(tmp_path, "dashboard.png")
    assert shot.stat().st_size > 10_000
    dashboard.check_hygiene(tenant.key(0))


async def test_a_key_sign_in_names_the_account_and_the_update_time_is_utc(
    start_gateway: StartGateway, browser: Browser
) -> None:
    gateway = await start_gateway()
    tenant = await new_tenant(gateway, keys=("web",), name="Rocket Science Ltd")
    dashboard = await Dashboard.open(browser, origin(gateway), timezone_id="Asia/Tokyo")
    assert await dashboard.page.evaluate("new Date().getTimezoneOffset()") == -9 * 60  # the browser is 9 h ahead
    await dashboard.sign_in(tenant.key(0))
    assert await dashboard.page.inner_text("#who") == f"Rocket Science Ltd ({tenant.account_id})"

    # "Updated" is the browser's time of the last refresh, in UTC and saying so (the test's clock and the
    # browser's are the machine's).
    shown = await dashboard.page.inner_text("#updated")
    now = datetime.now(UTC)
    assert shown.endswith(" UTC"), shown
    hours, minutes, seconds = (int(part) for part in shown.removesuffix(" UTC").split(":"))
    behind = (now.hour * 3600 + now.minute * 60 + now.second - (hours * 3600 + minutes * 60 + seconds)) % 86_400
    assert behind < 60, (shown, now)
    stamp = await dashboard.page.get_attribute("#updated", "datetime")
    assert stamp is not None and shown == f"{datetime.fromisoformat(stamp):%H:%M:%S} UTC"
    dashboard.check_hygiene(tenant.key(0))


async def test_figures_refresh_by_themselves(start_gateway: StartGateway, browser: Browser) -> None:
    gateway, tenant = await scheduled_traffic(start_gateway)
    dashboard = await Dashboard.open(browser, origin(gateway), clock=True)
    await dashboard.sign_in(tenant.key(1))
    assert (await dashboard.figures())["requests_today"] == "4"

    await send(gateway, tenant, 0, "m-first", NOW)  # another request, while the page is open
    await dashboard.page.clock.run_for(REFRESH_MS)  # the page's timer, without waiting for it
    await dashboard.page.wait_for_selector('[data-metric="requests_today"][data-value="5"]')
    assert as_numbers(await dashboard.figures()) == await expected_figures(gateway, tenant.auth())
    dashboard.check_hygiene(tenant.key(1))


async def test_a_chosen_range_redraws_the_chart_tables_and_csv(
    start_gateway: StartGateway, browser: Browser, tmp_path: Path
) -> None:
    gateway, tenant = await scheduled_traffic(start_gateway)
    dashboard = await Dashboard.open(browser, origin(gateway))
    await dashboard.sign_in(tenant.key(0))
    first, last = "2026-08-25", "2026-09-19"  # 26 days, across the month's edge
    await dashboard.page.fill("#start", first)
    await dashboard.page.fill("#end", last)
    await dashboard.page.wait_for_selector('#daily-chart[data-points="26"]')
    await dashboard.page.wait_for_selector("body[data-state=ready]")

    usage = await read(gateway, "/v1/usage", tenant.auth(), start=first, end=last)
    assert await dashboard.page.get_attribute("#daily-chart", "data-points") == "26"
    xs, requests, running = await dashboard.chart_data("daily")
    breakdown = list(reversed(usage["daily_breakdown"]))
    assert len(xs) == 26 and requests == [day["requests"] for day in breakdown]
    assert running[-1] == usage["total_requests"] == 6

    await dashboard.page.select_option("#metric", "credits")
    await dashboard.page.wait_for_selector('#daily-chart[data-shown="credits"]')
    _, credits, running = await dashboard.chart_data("daily")
    assert credits == [day["credits"] for day in breakdown] and running[-1] == usage["total_credits_used"]

    for table, path, column, attribute in (
        ("models", "/v1/usage/models", "model", "data-model"),
        ("keys", "/v1/usage/keys", "key_id", "data-key-id"),
    ):
        listing = await read(gateway, path, tenant.auth(), start=first, end=last)
        assert await dashboard.column(table, attribute) == [row[column] for row in listing["data"]]

    async with dashboard.page.expect_download() as started:
        await dashboard.page.click("#export")
    download = await started.value
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    assert download.suggested_filename == f"usage-{tenant.account_id}-20260825-20260919.csv"
    rows = list(csv.DictReader(io.StringIO(saved.read_text())))
    response = await gateway.client.get(
        "/v1/usage/export", params={"format": "csv", "start": first, "end": last}, headers=tenant.auth()
    )
    assert rows == list(csv.DictReader(io.StringIO(await response.text())))
    assert len(rows) == 6 and list(rows[0]) == list(COLUMNS)
    dashboard.check_hygiene(tenant.key(0))


async def test_a_wrong_revoked_or_foreign_key_gets_a_clear_message(
    start_gateway: StartGateway, browser: Browser
) -> None:
    gateway, tenant = await scheduled_traffic(start_gateway)
    dashboard = await Dashboard.open(browser, origin(gateway))
    wrong = tenant.key(0)[:-4] + "nope"
    await dashboard.sign_in(wrong, expect="error")
    message = await dashboard.page.inner_text("#sign-in-error")
    assert "wrong or has been revoked" in message
    assert await dashboard.page.is_hidden("#board")
    assert await dashboard.page.evaluate("sessionStorage.length") == 0

    status, _ = await gateway.admin("DELETE", f"/admin/keys/{tenant.key_id(1)}")
    assert status == 200
    await dashboard.sign_in(tenant.key(1), expect="error")
    assert "wrong or has been revoked" in await dashboard.page.inner_text("#sign-in-error")

    # A key revoked while its page is open: the next refresh signs the page out, saying why.
    await dashboard.sign_in(tenant.key(0))
    status, _ = await gateway.admin("DELETE", f"/admin/keys/{tenant.key_id(0)}")
    assert status == 200
    await dashboard.page.select_option("#metric", "tokens")
    await dashboard.page.wait_for_selector("#sign-in-error:not([hidden])")
    assert "wrong or has been revoked" in await dashboard.page.inner_text("#sign-in-error")
    assert await dashboard.page.evaluate("sessionStorage.length") == 0
    assert await dashboard.page.get_attribute('[data-metric="requests_period"]', "data-value") is None

    # The page never asks for another account with a key; made to (the browser rewrites its calls), the
    # gateway's 403 gets its own message.
    other = await new_tenant(gateway, keys=("theirs",), name="other")

    async def foreign(route: Route) -> None:
        await route.continue_(url=f"{route.request.url}&account={other.account_id}")

    await dashboard.page.route("**/v1/usage?*", foreign)
    await dashboard.sign_in(tenant.key(2), expect="error")
    assert "belongs to another account" in await dashboard.page.inner_text("#board-error")
    dashboard.check_hygiene(wrong, *tenant.keys.values(), errors_expected=True)  # the 401s and 403s are logged


async def test_an_account_without_usage_sees_the_empty_state(start_gateway: StartGateway, browser: Browser) -> None:
    gateway = await start_gateway()
    tenant = await new_tenant(gateway, keys=("fresh",), name="new")
    dashboard = await Dashboard.open(browser, origin(gateway))
    await dashboard.sign_in(tenant.key(0))
    assert await dashboard.page.is_visible("#empty") and await dashboard.page.is_hidden("#usage")
    figures = await dashboard.figures()
    assert figures == {name: "0" for name in figures} | {"credits_remaining": "1000"}
    assert await dashboard.column("keys", "data-key-id") == [tenant.key_id(0)]
    assert "never" in await dashboard.page.inner_text("#keys tbody")
    assert await dashboard.page.inner_text("#apis tbody") == "No API was used in this range."
    dashboard.check_hygiene(tenant.key(0))


async def test_the_page_fits_a_phone(start_gateway: StartGateway, browser: Browser, tmp_path: Path) -> None:
    gateway, tenant = await scheduled_traffic(start_gateway)
    dashboard = await Dashboard.open(browser, origin(gateway), PHONE)
    await dashboard.sign_in(tenant.key(0))
    widths = await dashboard.page.evaluate(
        "({page: document.documentElement.scrollWidth, body: document.body.scrollWidth,"
        " viewport: window.innerWidth, widest: Math.max(...[...document.querySelectorAll('#board *')]"
        ".filter(e => !e.closest('.table-wrap')).map(e => e.getBoundingClientRect().right))})"
    )
    assert widths["viewport"] == PHONE["width"]
    assert widths["page"] <= widths["viewport"] and widths["body"] <= widths["viewport"], widths
    assert widths["widest"] <= widths["viewport"], widths  # tables scroll inside their own box
    await dashboard.screenshot(tmp_path, "dashboard-phone.png")
    dashboard.check_hygiene(tenant.key(0))


async def test_the_admin_picks_an_account(start_gateway: StartGateway, browser: Browser) -> None:
    gateway, first = await scheduled_traffic(start_gateway)
    second = await new_tenant(gateway, keys=("other",), name="beta")
    await send(gateway, second, 0, "m-second", NOW)
    dashboard = await Dashboard.open(browser, origin(gateway))
    await dashboard.sign_in(ADMIN_TOKEN)
    options = await dashboard.page.eval_on_selector_all("#account option", "options => options.map(o => o.value)")
    accounts = await read(gateway, "/admin/accounts", ADMIN)
    assert options == [account["id"] for account in accounts["data"]]
    assert set(options) == {first.account_id, second.account_id}
    await dashboard.page.select_option("#account", first.account_id)
    await dashboard.page.wait_for_selector('[data-metric="requests_period"][data-value="11"]')
    assert as_numbers(await dashboard.figures()) == await expected_figures(gateway, ADMIN, account=first.account_id)

    await dashboard.page.select_option("#account", second.account_id)
    await dashboard.page.wait_for_selector('[data-metric="requests_period"][data-value="1"]')
    assert as_numbers(await dashboard.figures()) == await expected_figures(gateway, ADMIN, account=second.account_id)
    assert await dashboard.column("keys", "data-key-id") == [second.key_id(0)]
    assert await dashboard.column("models", "data-model") == ["m-second"]

    # An account without usage shows the empty state; back on one with usage, the charts fill their boxes again.
    empty = await new_tenant(gateway, keys=(), name="gamma")
    await dashboard.page.reload()  # the picker lists the accounts there are at sign-in
    await dashboard.page.wait_for_selector("body[data-state=ready]")
    await dashboard.page.select_option("#account", empty.account_id)
    await dashboard.page.wait_for_selector("#empty:not([hidden])")
    assert await dashboard.column("keys", "data-key-id") == [None]  # the "no keys" row
    await dashboard.page.select_option("#account", second.account_id)
    await dashboard.page.wait_for_selector("#empty[hidden]", state="attached")
    widths = await dashboard.page.eval_on_selector(
        "#daily-chart", "box => [box.clientWidth, box.querySelector('canvas').getBoundingClientRect().width]"
    )
    assert abs(widths[0] - widths[1]) < 2, widths

    # The session survives a reload (sessionStorage, this tab only) and ends with the sign-out button.
    await dashboard.page.reload()
    await dashboard.page.wait_for_selector("body[data-state=ready]")
    assert await dashboard.page.input_value("#account") == second.account_id
    await dashboard.page.click("#sign-out")
    assert await dashboard.page.is_visible("#sign-in") and await dashboard.page.evaluate("sessionStorage.length") == 0
    dashboard.check_hygiene(ADMIN_TOKEN, first.key(0), second.key(0))
