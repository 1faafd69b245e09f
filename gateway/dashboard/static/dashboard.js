// The usage dashboard. It signs in with an API key (or the admin token, then an account), reads the usage API
// with a bearer header and draws the charts with uPlot. The secret lives in sessionStorage only: never in a URL,
// never in the console.

const REFRESH_MS = 5000;
const SECRET = "gateway.dashboard.secret";
const ACCOUNT = "gateway.dashboard.account";
const KEY_PREFIX = "sk-gw-";
const DAY = 86400;
const HOUR = 3600;
const COLORS = { bar: "#1f4e8c", barFill: "rgba(31, 78, 140, 0.55)", sum: "#d1731d", credits: "#2e8b57" };
const LABELS = { requests: "Requests", tokens: "Tokens", credits: "Credits" };
// The usage API's `api` names, as the filter's options read.
const API_LABELS = {
  "chat.completions": "Chat completions",
  responses: "Responses",
  embeddings: "Embeddings",
  completions: "Completions (legacy)",
  messages: "Anthropic Messages",
};

const $ = (id) => document.getElementById(id);
const state = { secret: null, admin: false, account: null, generation: 0, timer: null, charts: {} };

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, params = {}) {
  const url = new URL(path, location.origin);
  if (state.admin && state.account && !path.startsWith("/admin/")) url.searchParams.set("account", state.account);
  for (const [name, value] of Object.entries(params)) if (value) url.searchParams.set(name, value);
  let response;
  try {
    response = await fetch(url, { headers: { Authorization: `Bearer ${state.secret}` }, cache: "no-store" });
  } catch {
    throw new ApiError(0, "The gateway cannot be reached; retrying.");
  }
  if (!response.ok) {
    let message = `The gateway answered ${response.status}.`;
    try {
      message = (await response.json()).error.message || message;
    } catch {}
    throw new ApiError(response.status, message);
  }
  return response;
}

const json = async (path, params) => (await api(path, params)).json();

function chosenRange() {
  return { start: $("start").value, end: $("end").value };
}

// The API filter: one API's name, or "" for every API (then `api()` sends no parameter).
function chosenApi() {
  return $("api").value;
}

// Everything is the chosen API's but the per-API table, which is every API's.
async function readUsage() {
  const range = chosenRange();
  const only = chosenApi();
  const filtered = { ...range, api: only };
  const [period, today, chosen, models, keys, insights, everyApi] = await Promise.all([
    json("/v1/usage", { api: only }),
    json("/v1/usage", { granularity: "hour", api: only }),
    json("/v1/usage", filtered),
    json("/v1/usage/models", filtered),
    json("/v1/usage/keys", filtered),
    json("/v1/usage/insights", filtered),
    only ? json("/v1/usage", range) : null,
  ]);
  const apis = (everyApi ?? chosen).api_breakdown;
  return { period, today, chosen, models: models.data, keys: keys.data, insights: insights.data, apis };
}

async function signIn(secret, account) {
  state.secret = secret;
  state.admin = !secret.startsWith(KEY_PREFIX);
  state.account = null;
  const generation = ++state.generation;
  document.body.dataset.state = "loading";
  try {
    let who = "Admin";
    if (state.admin) {
      await chooseAccount(account);
    } else {
      // The key's own account, by its name (the id beside it, as the admin's picker shows accounts).
      const own = await json("/v1/account");
      state.account = own.id;
      who = `${own.name} (${own.id})`;
    }
    if (generation !== state.generation) return;
    sessionStorage.setItem(SECRET, secret);
    $("who").textContent = who;
    $("sign-in").hidden = true;
    $("board").hidden = $("session").hidden = false;
    await refresh();
  } catch (error) {
    if (generation === state.generation) failed(error);
  }
}

async function chooseAccount(wanted) {
  const accounts = (await json("/admin/accounts")).data;
  const picker = $("account");
  picker.replaceChildren(
    ...accounts.map((account) => new Option(`${account.name} (${account.id})`, account.id)),
  );
  $("account-picker").hidden = false;
  if (!accounts.length) throw new ApiError(0, "There are no accounts yet: create one with the admin API.");
  state.account = accounts.some((account) => account.id === wanted) ? wanted : accounts[0].id;
  picker.value = state.account;
  sessionStorage.setItem(ACCOUNT, state.account);
}

function signOut(message = "") {
  sessionStorage.removeItem(SECRET);
  sessionStorage.removeItem(ACCOUNT);
  Object.assign(state, { secret: null, admin: false, account: null, generation: state.generation + 1 });
  clearTimeout(state.timer);
  for (const chart of Object.values(state.charts)) chart.destroy();
  state.charts = {};
  for (const figure of document.querySelectorAll("[data-metric]")) {
    figure.textContent = "–";
    delete figure.dataset.value;
  }
  for (const id of ["models", "keys", "apis", "insights"]) $(id).tBodies[0].replaceChildren();
  $("start").value = $("end").value = $("api").value = "";
  $("board").hidden = $("session").hidden = $("account-picker").hidden = true;
  $("sign-in").hidden = false;
  $("secret").value = "";
  showError("sign-in-error", message);
  document.body.dataset.state = message ? "error" : "signed-out";
}

function failed(error) {
  if (error.status === 401) {
    signOut(
      state.admin
        ? "That admin token is not valid here (or the admin API is disabled)."
        : "That API key is wrong or has been revoked. Sign in with a live key.",
    );
  } else if (error.status === 403) {
    showError("board-error", "This key belongs to another account: it can read only its own usage.");
    document.body.dataset.state = "error";
  } else if (!state.account || $("board").hidden) {
    signOut(error.message);
  } else {
    showError("board-error", error.message);
    document.body.dataset.state = "error";
  }
}

function showError(id, message) {
  $(id).textContent = message;
  $(id).hidden = !message;
}

async function refresh() {
  clearTimeout(state.timer);
  const generation = state.generation;
  const { start, end } = chosenRange();
  if (start && end && start > end) {
    showError("board-error", "The range's first day is after its last.");
  } else {
    try {
      const usage = await readUsage();
      if (generation !== state.generation) return;
      render(usage);
      showError("board-error", "");
      document.body.dataset.state = "ready";
    } catch (error) {
      if (generation !== state.generation) return;
      failed(error);
      if (error.status === 401) return;
    }
  }
  if (generation === state.generation) state.timer = setTimeout(tick, REFRESH_MS);
}

function tick() {
  // A hidden tab waits; it refreshes as soon as it is shown again.
  if (document.visibilityState === "hidden") state.timer = setTimeout(tick, REFRESH_MS);
  else refresh();
}

function changed() {
  state.generation++;
  refresh();
}

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 6 });
const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 2 });
const formatter = (metric) => (metric === "credits" ? decimal : integer);

function render({ period, today, chosen, models, keys, insights, apis }) {
  const figures = {
    requests_today: today.total_requests,
    tokens_today: today.total_tokens,
    credits_today: today.total_credits_used,
    requests_period: period.total_requests,
    tokens_period: period.total_tokens,
    credits_period: period.total_credits_used,
    credits_remaining: period.credits_remaining,
  };
  for (const [name, value] of Object.entries(figures)) {
    const figure = document.querySelector(`[data-metric="${name}"]`);
    figure.dataset.value = String(value);
    figure.textContent = (name.startsWith("credits") ? decimal : integer).format(value);
  }
  if (!$("start").value) {
    $("start").value = chosen.period_start.slice(0, 10);
    $("end").value = chosen.period_end.slice(0, 10);
  }
  $("period").textContent = `${period.period_start.slice(0, 10)} to ${period.period_end.slice(0, 10)}`;
  $("range-label").textContent = `${chosen.period_start.slice(0, 10)} to ${chosen.period_end.slice(0, 10)}`;
  // In UTC, as every other time on the page.
  const updated = new Date().toISOString();
  $("updated").dateTime = updated;
  $("updated").textContent = `${updated.slice(11, 19)} UTC`;

  // The filter the answers were read with (the usage API echoes it), so the notes always match the figures.
  const only = chosen.api;
  for (const id of ["api-note", "empty-api"]) {
    $(id).hidden = !only;
    $(id).querySelector("strong").textContent = only ? apiLabel(only) : "";
  }
  $("empty-all").hidden = Boolean(only);

  const empty = period.total_requests === 0 && chosen.total_requests === 0;
  $("empty").hidden = !empty;
  $("usage").hidden = empty;
  const metric = $("metric").value;
  if (!empty) {
    drawSeries("daily", series(chosen, "daily_breakdown", "date", DAY, metric), metric, DAY);
    drawSeries("hourly", series(today, "hourly_breakdown", "hour", HOUR, metric), metric, HOUR);
    drawModels(models);
    fitCharts();
  }
  fillTable("models", models, "No model was used in this range.", modelRow);
  fillTable("keys", keys, "This account has no API keys.", keyRow);
  fillTable("apis", apis, "No API was used in this range.", apiRow(apis, only));
  fillTable("insights", insights, "No waste found in this range.", insightRow);
}

// One point per bucket of the range, oldest first: the value where the breakdown has one, else null (a bucket
// still to come). A running total goes beside it, summed in micro-credits so no float error builds up.
function series(report, field, label, step, metric) {
  const first = Math.floor(Date.parse(report.period_start) / 1000 / step) * step;
  const last = Math.floor(Date.parse(report.period_end) / 1000 / step) * step;
  const byStart = new Map(report[field].map((bucket) => [Date.parse(bucket[label]) / 1000, bucket]));
  const xs = [], values = [], sums = [];
  let sum = 0;
  for (let x = first; x <= last; x += step) {
    const bucket = byStart.get(x);
    xs.push(x);
    if (!bucket) {
      values.push(null);
      sums.push(null);
      continue;
    }
    sum += metric === "credits" ? bucket.credits_micros : bucket[metric];
    values.push(bucket[metric]);
    sums.push(metric === "credits" ? sum / 1e6 : sum);
  }
  return [xs, values, sums];
}

function chartWidth(element) {
  return Math.max(200, element.clientWidth);
}

// Charts follow their boxes' width: on resize, and after being hidden (an empty account) and shown again.
function fitCharts() {
  for (const [name, chart] of Object.entries(state.charts)) {
    const width = chartWidth($(`${name}-chart`));
    if (width !== chart.width) chart.setSize({ width, height: chart.height });
  }
}

// Room for the longest tick label (uPlot does not measure them).
function axisSize(u, values) {
  return values ? Math.max(...values.map((v) => String(v).length), 2) * 7 + 18 : 40;
}

const utcDate = (seconds) => uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC");
const dayTick = uPlot.fmtDate("{MMM} {D}");
const dayYearTick = uPlot.fmtDate("{MMM} {D}\n{YYYY}");
const hourTick = uPlot.fmtDate("{HH}:{mm}");

// Time ticks in UTC, as the usage API counts: days (with the year on the first tick and each 1 January) or hours.
function timeTicks(step) {
  if (step === HOUR) return (u, splits) => splits.map((s) => hourTick(utcDate(s)));
  return (u, splits) =>
    splits.map((s, i) => {
      const date = utcDate(s);
      return (i === 0 || (date.getMonth() === 0 && date.getDate() === 1) ? dayYearTick : dayTick)(date);
    });
}

function seriesOptions(metric, step) {
  const format = formatter(metric);
  const value = (u, v) => (v == null ? "–" : format.format(v));
  const per = step === DAY ? "per day" : "per hour";
  return [
    { label: step === DAY ? "Day" : "Hour (UTC)", value: step === DAY ? "{YYYY}-{MM}-{DD}" : "{HH}:00" },
    {
      label: `${LABELS[metric]} ${per}`,
      scale: "y",
      value,
      stroke: COLORS.bar,
      fill: COLORS.barFill,
      paths: uPlot.paths.bars({ size: [0.7, 40] }),
      points: { show: false },
    },
    { label: "Running total", scale: "sum", value, stroke: COLORS.sum, width: 2, points: { show: true, size: 4 } },
  ];
}

function drawSeries(name, data, metric, step) {
  const element = $(`${name}-chart`);
  const shape = `${metric}/${step}`;
  const chart = state.charts[name];
  element.dataset.points = String(data[0].length);
  element.dataset.shown = metric;
  if (chart && chart.shape === shape) {
    chart.setData(data);
    return;
  }
  chart?.destroy();
  const ticks = (u, values) => values.map((v) => compact.format(v));
  const options = {
    width: chartWidth(element),
    height: 220,
    tzDate: utcDate,
    scales: {
      // Half a bucket of room on either side, so the first and last bars are drawn whole.
      x: { time: true, range: (u, min, max) => [min - step / 2, max + step / 2] },
      y: { range: zeroBased },
      sum: { range: zeroBased },
    },
    series: seriesOptions(metric, step),
    axes: [
      { values: timeTicks(step), space: step === DAY ? 60 : 50 },
      { scale: "y", values: ticks, size: axisSize },
      { scale: "sum", side: 1, values: ticks, size: axisSize, grid: { show: false } },
    ],
  };
  state.charts[name] = Object.assign(new uPlot(options, data, element), { shape });
}

function zeroBased(u, min, max) {
  return [0, max > 0 ? max * 1.1 : 1];
}

function drawModels(models) {
  const element = $("models-chart");
  const names = models.map((model) => model.model);
  const data = [
    names.map((_, index) => index),
    models.map((model) => model.total_tokens),
    models.map((model) => model.credits_used),
  ];
  element.dataset.points = String(names.length);
  const shape = JSON.stringify(names);
  const chart = state.charts.models;
  if (chart && chart.shape === shape) {
    chart.setData(data);
    return;
  }
  chart?.destroy();
  delete state.charts.models;
  if (!names.length) return;
  const short = (text) => (text.length > 14 ? `${text.slice(0, 13)}…` : text);
  const ticks = (u, values) => values.map((v) => compact.format(v));
  const options = {
    width: chartWidth(element),
    height: 220,
    scales: {
      x: { time: false, range: () => [-0.5, names.length - 0.5] },
      tokens: { range: zeroBased },
      credits: { range: zeroBased },
    },
    series: [
      { label: "Model", value: (u, index) => names[index] ?? "–" },
      {
        label: "Tokens",
        scale: "tokens",
        value: (u, v) => (v == null ? "–" : integer.format(v)),
        stroke: COLORS.bar,
        fill: COLORS.barFill,
        paths: uPlot.paths.bars({ size: [0.35, 48], align: -1 }),
        points: { show: false },
      },
      {
        label: "Credits",
        scale: "credits",
        value: (u, v) => (v == null ? "–" : decimal.format(v)),
        stroke: COLORS.credits,
        fill: "rgba(46, 139, 87, 0.55)",
        paths: uPlot.paths.bars({ size: [0.35, 48], align: 1 }),
        points: { show: false },
      },
    ],
    axes: [
      {
        splits: () => names.map((_, index) => index),
        values: (u, splits) => splits.map((index) => short(names[index] ?? "")),
        grid: { show: false },
      },
      { scale: "tokens", values: ticks, size: axisSize },
      { scale: "credits", side: 1, values: ticks, size: axisSize, grid: { show: false } },
    ],
  };
  state.charts.models = Object.assign(new uPlot(options, data, element), { shape });
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

// A figure with its raw value (the usage API's number) for tests and monitors.
function figureCell(value, format = integer) {
  const td = cell(format.format(value));
  td.dataset.value = String(value);
  return td;
}

const creditsCell = (value) => figureCell(value, decimal);

function modelRow(model) {
  const row = document.createElement("tr");
  row.dataset.model = model.model;
  row.append(
    cell(model.model),
    figureCell(model.requests),
    figureCell(model.prompt_tokens),
    figureCell(model.completion_tokens),
    figureCell(model.total_tokens),
    creditsCell(model.credits_used),
  );
  return row;
}

const apiLabel = (name) => API_LABELS[name] ?? name;
const percent = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });

// One row per API of `api_breakdown`, with its share of the credits all of them used (summed in micro-credits;
// "–" when they used none); the filter's API is marked as the current row.
function apiRow(apis, chosen) {
  const total = apis.reduce((sum, entry) => sum + entry.credits_used_micros, 0);
  return (entry) => {
    const row = document.createElement("tr");
    row.dataset.api = entry.api;
    if (entry.api === chosen) row.setAttribute("aria-current", "true");
    const name = cell(apiLabel(entry.api));
    const raw = document.createElement("small");
    raw.textContent = entry.api; // as the export's `api` column has it
    name.append(" ", raw);
    row.append(
      name,
      figureCell(entry.requests),
      figureCell(entry.total_tokens),
      creditsCell(entry.credits_used),
      total ? figureCell(entry.credits_used_micros / total, percent) : cell("–"),
    );
    return row;
  };
}

function keyRow(key) {
  const row = document.createElement("tr");
  row.dataset.keyId = key.key_id;
  const name = cell(key.name ?? key.key_id);
  if (key.revoked) {
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = "revoked";
    name.append(" ", tag);
  }
  const lastUsed = key.last_used_at ? key.last_used_at.replace("T", " ").replace("Z", " UTC") : "never";
  row.append(
    name,
    cell(key.masked_key ?? "–"),
    figureCell(key.requests),
    figureCell(key.tokens),
    creditsCell(key.credits_used),
    cell(lastUsed),
  );
  return row;
}

// One finding of GET /v1/usage/insights: what it is (and an example request to look up in the export), its
// requests and credits, what avoiding it would have saved, and the tip.
function insightRow(item) {
  const row = document.createElement("tr");
  row.dataset.type = item.type;
  const finding = cell(item.title, "finding");
  if (item.examples.length) {
    const example = document.createElement("small");
    example.textContent = `e.g. ${item.examples[0]}`;
    finding.append(document.createElement("br"), example);
  }
  row.append(
    finding,
    cell(integer.format(item.requests)),
    creditsCell(item.credits),
    creditsCell(item.estimated_savings_credits),
    cell(item.tip, "tip"),
  );
  return row;
}

function fillTable(id, items, none, toRow) {
  const body = $(id).tBodies[0];
  if (items.length) {
    body.replaceChildren(...items.map(toRow));
    return;
  }
  const row = document.createElement("tr");
  const only = cell(none, "none");
  only.colSpan = $(id).tHead.rows[0].cells.length;
  row.append(only);
  body.replaceChildren(row);
}

// Fetched with the bearer header and handed to the browser as a Blob: a plain link would need the key in its URL.
async function downloadCsv() {
  const button = $("export");
  button.disabled = true;
  try {
    const response = await api("/v1/usage/export", { format: "csv", ...chosenRange(), api: chosenApi() });
    const disposition = response.headers.get("Content-Disposition") || "";
    const filename = /filename="([^"]+)"/.exec(disposition)?.[1] || "usage.csv";
    const url = URL.createObjectURL(await response.blob());
    const link = Object.assign(document.createElement("a"), { href: url, download: filename });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (error) {
    failed(error);
  } finally {
    button.disabled = false;
  }
}

function start() {
  $("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    const secret = $("secret").value.trim();
    // A header carries printable ASCII only; anything else cannot be a key or token (and fetch would refuse it).
    if (/^[\x21-\x7e]+$/.test(secret)) signIn(secret, null);
    else signOut("That is not an API key or admin token.");
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("account").addEventListener("change", () => {
    state.account = $("account").value;
    sessionStorage.setItem(ACCOUNT, state.account);
    changed();
  });
  for (const id of ["start", "end", "metric", "api"]) $(id).addEventListener("change", changed);
  $("controls").addEventListener("submit", (event) => event.preventDefault());
  $("export").addEventListener("click", downloadCsv);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && state.secret) refresh();
  });
  new ResizeObserver(fitCharts).observe($("board"));

  // What tests and users' own monitors may read: each chart's data as uPlot holds it.
  window.dashboard = Object.freeze({
    chartData: (name) => state.charts[name]?.data.map((values) => Array.from(values)) ?? null,
  });

  const secret = sessionStorage.getItem(SECRET);
  if (secret) signIn(secret, sessionStorage.getItem(ACCOUNT));
}

start();
