"""The dashboard's per-API table and API filter in a real headless browser, after real traffic of three APIs sent
with the official openai client: the table's figures are the usage API's and the sums of the answers' own
`usage.cost`; the filter narrows the figures, the charts, the model, key and insights tables and the CSV to one
API."""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from openai import AsyncOpenAI
from openai.types import CompletionUsage
from openai.types.create_embedding_response import Usage as EmbeddingUsage
from playwright.async_api import Browser

from tests.common import REFERENCE, Gateway, StartGateway
from tests.dashboard.browser import Dashboard
from tests.dashboard.common import origin, read
from tests.usage.traffic import Tenant, new_tenant

MILLION = 10**6
CHAT, EMBEDDINGS, COMPLETIONS = "chat.completions", "embeddings", "completions"
LABELS = {CHAT: "Chat completions", EMBEDDINGS: "Embeddings", COMPLETIONS: "Completions (legacy)"}


@dataclass(frozen=True)
class Answer:
    """One request as its client saw it: which API, key and model, and the usage its answer reported."""

    api: str
    key_id: str
    model: str
    tokens: int
    micros: int  # the answer's `usage.cost`, in micro-credits


def answered(api: str, key_id: str, model: str, usage: CompletionUsage | EmbeddingUsage) -> Answer:
    """The answer's usage, its cost checked against the tokens at the suite's price (tests/oracle.py)."""
    prompt = usage.prompt_tokens
    completion = usage.completion_tokens if isinstance(usage, CompletionUsage) else 0  # embeddings have none
    micros = int(Decimal(str((usage.model_extra or {})["cost"])) * MILLION)
    assert micros == REFERENCE.cost_micros(prompt, completion) > 0
    return Answer(api, key_id, model, prompt + completion, micros)


async def mixed_traffic(start_gateway: StartGateway) -> tuple[Gateway, Tenant, list[Answer]]:
    """Chat, embeddings and legacy completions from two keys (a third stays idle), on models m-first and
    m-second; embeddings only on m-second, and key "search" mostly embeddings."""
    gateway = await start_gateway(first={}, second={})
    tenant = await new_tenant(gateway, keys=("chat", "search", "idle"))
    chat_key, search_key = tenant.key_id(0), tenant.key_id(1)
    chat = AsyncOpenAI(base_url=gateway.base_url, api_key=tenant.key(0), max_retries=0)
    search = AsyncOpenAI(base_url=gateway.base_url, api_key=tenant.key(1), max_retries=0)
    answers = []
    for client, key_id, model, text, max_tokens in (
        (chat, chat_key, "m-first", "Hello!", 16),
        (chat, chat_key, "m-second", "Write a haiku about meters.", 40),
        (search, search_key, "m-first", "Which index?", 8),
    ):
        reply = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": text}], max_tokens=max_tokens
        )
        assert reply.usage is not None
        answers.append(answered(CHAT, key_id, model, reply.usage))
    for given in ("The quick brown fox jumps over the lazy dog.", ["alpha beta", "gamma", "Grüße aus 東京"]):
        embedded = await search.embeddings.create(model="m-second", input=given, encoding_format="float")
        answers.append(answered(EMBEDDINGS, search_key, "m-second", embedded.usage))
    completed = await chat.completions.create(model="m-first", prompt="Once upon a time", max_tokens=12)
    assert completed.usage is not None
    answers.append(answered(COMPLETIONS, chat_key, "m-first", completed.usage))
    await chat.close()
    await search.close()
    await gateway.wait_settled(tenant.account_id)
    return gateway, tenant, answers


def sums(answers: list[Answer], by: str) -> dict[str, tuple[int, int, int]]:
    """(requests, tokens, micro-credits) per API, model or key, added up by hand."""
    table: dict[str, tuple[int, int, int]] = {}
    for answer in answers:
        requests, tokens, micros = table.get(getattr(answer, by), (0, 0, 0))
        table[getattr(answer, by)] = (requests + 1, tokens + answer.tokens, micros + answer.micros)
    return table


async def rows(dashboard: Dashboard, table: str, attribute: str) -> dict[str | None, list[str | None]]:
    """Each row of a table by its `attribute`, with the raw values (`data-value`) of its cells (None: none)."""
    found = await dashboard.page.eval_on_selector_all(
        f"#{table} tbody tr",
        f"rows => rows.map(row => [row.getAttribute('{attribute}'),"
        " [...row.cells].map(td => td.dataset.value ?? null)])",
    )
    return {name: values for name, values in found}


def as_micros(value: str | None) -> int:
    assert value is not None
    return int(Decimal(value) * MILLION)


async def test_the_api_table_shows_each_apis_figures(
    start_gateway: StartGateway, browser: Browser, tmp_path: Path
) -> None:
    gateway, tenant, answers = await mixed_traffic(start_gateway)
    per_api = sums(answers, "api")
    assert Counter(a.api for a in answers) == {CHAT: 3, EMBEDDINGS: 2, COMPLETIONS: 1}
    dashboard = await Dashboard.open(browser, origin(gateway))
    await dashboard.sign_in(tenant.key(0))

    usage = await read(gateway, "/v1/usage", tenant.auth())  # the page's default range: this period
    breakdown = usage["api_breakdown"]
    assert [entry["api"] for entry in breakdown] == sorted(per_api, key=lambda api: -per_api[api][2])
    assert await dashboard.column("apis", "data-api") == [entry["api"] for entry in breakdown]
    shown = await rows(dashboard, "apis", "data-api")
    total = sum(spent for _, _, spent in per_api.values())
    assert total == usage["total_credits_used_micros"] == as_micros((await dashboard.figures())["credits_period"])
    for entry in breakdown:
        requests, tokens, spent = per_api[entry["api"]]
        assert (entry["requests"], entry["total_tokens"], entry["credits_used_micros"]) == (requests, tokens, spent)
        name, *figures, share = shown[entry["api"]]
        assert name is None  # the name cell has no raw value
        readable = await dashboard.page.inner_text(f'#apis tr[data-api="{entry["api"]}"] td:first-child')
        assert readable == f"{LABELS[entry['api']]} {entry['api']}"
        assert (int(figures[0] or ""), int(figures[1] or ""), as_micros(figures[2])) == (requests, tokens, spent)
        assert float(share or "") == spent / total
    assert (await dashboard.page.inner_text("#apis tbody")).count("%") == 3
    assert await dashboard.page.locator("#apis tr[aria-current]").count() == 0  # no filter: no row is current
    await dashboard.screenshot(tmp_path, "dashboard-apis.png")
    dashboard.check_hygiene(*tenant.keys.values())


async def test_the_api_filter_narrows_figures_charts_tables_and_the_csv(
    start_gateway: StartGateway, browser: Browser, tmp_path: Path
) -> None:
    gateway, tenant, answers = await mixed_traffic(start_gateway)
    dashboard = await Dashboard.open(browser, origin(gateway))
    await dashboard.sign_in(tenant.key(0))
    page = dashboard.page
    options = await page.eval_on_selector_all("#api option", "options => options.map(o => [o.value, o.label])")
    assert options == [
        ["", "All APIs"],
        [CHAT, "Chat completions"],
        ["responses", "Responses"],
        [EMBEDDINGS, "Embeddings"],
        [COMPLETIONS, "Completions (legacy)"],
        ["messages", "Anthropic Messages"],
    ]
    assert await page.get_by_role("combobox", name="API").get_attribute("id") == "api"  # labelled, for screen readers
    assert sorted(await dashboard.column("models", "data-model")) == ["m-first", "m-second"]

    for api, label in ((EMBEDDINGS, "Embeddings"), (CHAT, "Chat completions")):
        mine = [answer for answer in answers if answer.api == api]
        await page.select_option("#api", api)
        await page.wait_for_selector(f"#api-note:not([hidden]):has-text('{label}')")
        await page.wait_for_selector("body[data-state=ready]")

        requests, tokens, spent = sums(mine, "api")[api]
        figures = await dashboard.figures()
        assert (int(figures["requests_period"]), int(figures["tokens_period"])) == (requests, tokens)
        assert as_micros(figures["credits_period"]) == spent and as_micros(figures["credits_today"]) == spent
        period = await read(gateway, "/v1/usage", tenant.auth(), api=api)
        assert (period["total_requests"], period["total_credits_used_micros"]) == (requests, spent)
        _, per_day, _ = await dashboard.chart_data("daily")
        _, per_hour, _ = await dashboard.chart_data("hourly")
        assert sum(v or 0 for v in per_day) == sum(v or 0 for v in per_hour) == requests

        # The model table: this API's models only, with this API's figures (the usage API's, and by hand).
        by_model = sums(mine, "model")
        listing = await read(gateway, "/v1/usage/models", tenant.auth(), api=api)
        assert await dashboard.column("models", "data-model") == [m["model"] for m in listing["data"]]
        assert set(by_model) == {m["model"] for m in listing["data"]}
        for model, (_, *cells) in (await rows(dashboard, "models", "data-model")).items():
            assert model is not None
            assert (int(cells[0] or ""), int(cells[3] or ""), as_micros(cells[4])) == by_model[model]
        # The key table: every key of the account, with this API's figures only (0 for a key that never used it).
        by_key = sums(mine, "key_id")
        listing = await read(gateway, "/v1/usage/keys", tenant.auth(), api=api)
        assert await dashboard.column("keys", "data-key-id") == [k["key_id"] for k in listing["data"]]
        for key_id, (_, _, *cells, _) in (await rows(dashboard, "keys", "data-key-id")).items():
            assert key_id is not None
            assert (int(cells[0] or ""), int(cells[1] or ""), as_micros(cells[2])) == by_key.get(key_id, (0, 0, 0))

        # The insights panel: this API's findings (here the prompt-cache measure, over this API's requests).
        report = await read(gateway, "/v1/usage/insights", tenant.auth(), api=api)
        assert await dashboard.column("insights", "data-type") == [item["type"] for item in report["data"]]
        counts = await page.eval_on_selector_all("#insights tbody tr", "rows => rows.map(r => r.cells[1].textContent)")
        assert counts == [str(item["requests"]) for item in report["data"]] == [str(requests)]

        # The per-API table still shows every API, this one marked as the current row.
        assert len(await dashboard.column("apis", "data-api")) == 3
        assert await page.get_attribute("#apis tr[aria-current]", "data-api") == api
        await dashboard.screenshot(tmp_path, f"dashboard-api-{api}.png")

    # The CSV is the export of the chosen API: the page asks for it with `api=` and gets that API's records.
    async with page.expect_request("**/v1/usage/export?*") as asked, page.expect_download() as started:
        await page.click("#export")
    assert "api=chat.completions" in (await asked.value).url
    download = await started.value
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    got = list(csv.DictReader(io.StringIO(saved.read_text())))
    response = await gateway.client.get(
        "/v1/usage/export", params={"format": "csv", "api": CHAT}, headers=tenant.auth()
    )
    assert got == list(csv.DictReader(io.StringIO(await response.text())))
    assert [row["api"] for row in got] == [CHAT] * 3
    assert sum(int(row["credits_micros"]) for row in got) == sums(answers, "api")[CHAT][2]

    # An API without traffic: the empty state names it; the per-API table still lists the others.
    await page.select_option("#api", "messages")
    await page.wait_for_selector("#empty-api:not([hidden]):has-text('Anthropic Messages')")
    assert await page.is_visible("#empty") and await page.is_hidden("#usage") and await page.is_hidden("#empty-all")
    assert len(await dashboard.column("apis", "data-api")) == 3
    assert (await dashboard.figures())["requests_period"] == "0"

    # Back to every API: the note goes, the tables and figures are the whole account's again.
    await page.select_option("#api", "")
    await page.wait_for_selector("#api-note[hidden]", state="attached")
    await page.wait_for_selector("#empty[hidden]", state="attached")
    assert (await dashboard.figures())["requests_period"] == str(len(answers))
    assert sorted(await dashboard.column("models", "data-model")) == ["m-first", "m-second"]

    # The filter is a view choice as the range is: a reload or a new sign-in starts from every API.
    await page.select_option("#api", EMBEDDINGS)
    await page.wait_for_selector("#api-note:not([hidden])")
    await page.reload()
    await page.wait_for_selector("body[data-state=ready]")
    assert await page.input_value("#api") == "" and await page.is_hidden("#api-note")
    assert (await dashboard.figures())["requests_period"] == str(len(answers))
    dashboard.check_hygiene(*tenant.keys.values())
