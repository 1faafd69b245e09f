"""The document: every route's operation, the shared schemas, and the handler that serves it."""

from __future__ import annotations

import functools
from importlib import metadata

import orjson
from aiohttp import web

from gateway.admin.service import MAX_NAME_LENGTH
from gateway.billing.record import API_NAMES
from gateway.dashboard.assets import STATIC_FILES
from gateway.insights.report import KINDS
from gateway.openapi.builders import (
    ACCOUNT_ID,
    ADMIN,
    BODY_ERRORS,
    CREDITS_IN,
    INTEGER,
    KEY_ID,
    MOMENT,
    NUMBER,
    PUBLIC,
    READ_ERRORS,
    STRING,
    TENANT,
    TENANT_OR_ADMIN,
    MediaTypes,
    Operation,
    Schema,
    array,
    content,
    listing,
    nullable,
    obj,
    one_of_fields,
    op,
    path,
    query,
    record,
    ref,
)
from gateway.openapi.conversations import CONVERSATION_SCHEMAS, conversation_operations
from gateway.openapi.messages import MESSAGES_SCHEMAS, messages_operations
from gateway.openapi.text_apis import TEXT_API_SCHEMAS, text_api_operations
from gateway.openapi.webhooks import WEBHOOK_SCHEMAS, webhook_operations
from gateway.proxy.apis.chat import MAX_DEPTH, MAX_N, ROLES
from gateway.usage.export import COLUMNS, ExportFormat
from gateway.usage.handlers import MAX_SUMMARY_LIMIT
from gateway.usage.ranges import Granularity

CHAT_REQUEST = obj(
    {
        "model": {"type": "string", "minLength": 1, "description": "A model configured on the gateway."},
        "messages": array(
            obj(
                {"role": {"enum": sorted(ROLES)}, "content": nullable({"anyOf": [STRING, array({"type": "object"})]})},
                required=("role",),
                extra=True,
            ),
            minItems=1,
        ),
        "stream": nullable({"type": "boolean"}),
        "stream_options": nullable(obj({"include_usage": {"type": "boolean"}}, required=(), extra=True)),
        "n": nullable({"type": "integer", "minimum": 1, "maximum": MAX_N}),
        "max_tokens": nullable({"type": "integer", "minimum": 1}),
        "max_completion_tokens": nullable({"type": "integer", "minimum": 1}),
    },
    required=("model", "messages"),
    extra=True,
) | {
    "description": "OpenAI's chat request. The gateway checks the fields named here and forwards the rest; arrays "
    f"and objects may nest at most {MAX_DEPTH} levels. Without `max_tokens` / `max_completion_tokens` the gateway "
    "bounds the output itself. Fields that change the provider's price (`service_tier`, `audio`, `modalities`, "
    "`web_search_options`, `store`) are refused unless the model's config prices them."
}
RESPONSES_REQUEST = obj(
    {
        "model": {"type": "string", "minLength": 1, "description": "A model configured on the gateway."},
        "input": nullable({"anyOf": [STRING, array({"type": "object"})]}),
        "instructions": nullable(STRING),
        "tools": nullable(array(obj({"type": STRING}, extra=True))),
        "max_output_tokens": nullable({"type": "integer", "minimum": 1}),
        "max_tool_calls": nullable({"type": "integer", "minimum": 0}),
        "stream": nullable({"type": "boolean"}),
        "store": nullable({"type": "boolean"}),
        "background": nullable({"type": "boolean"}),
        "previous_response_id": nullable({"type": "string", "minLength": 1}),
        "conversation": nullable(
            {"anyOf": [{"type": "string", "minLength": 1}, obj({"id": {"type": "string", "minLength": 1}})]}
        ),
    },
    required=("model",),
    extra=True,
) | {
    "description": "OpenAI's Responses request. The gateway checks the fields named here (and the items of `input` "
    "and `tools`) and forwards the rest. Without `max_output_tokens` the gateway bounds the output itself. A "
    "`previous_response_id` must be one this account got through the gateway, and a `conversation` one this "
    "account created through it (else 404); its context is held and billed as input; both at once are refused. A "
    "`background: true` response is held at creation and billed once, when the gateway first sees it finished (a "
    "retrieval, cancel or delete, or its own look at the upstream). `prompt` is refused; built-in tools and "
    "`service_tier` unless the model's config prices them. Built-in tools the model prices per call are held for "
    "`max_tool_calls` calls (the gateway's default, forwarded, when absent; at most `limits.max_tool_calls`) and "
    "billed per call made."
}
RESPONSE_ID = path("id", STRING, "A response id this account got through the gateway (any other: 404).")
USAGE = "requests prompt_tokens completion_tokens"
API_NAME: Schema = {"enum": list(API_NAMES)}
API_FILTERED = nullable(API_NAME) | {"description": "The `api` the figures are filtered on; null: every API."}


def with_api(listing_schema: Schema) -> Schema:
    """A usage listing that names the `api` it is filtered on."""
    properties = listing_schema["properties"] | {"api": API_FILTERED}  # type: ignore[operator]
    return listing_schema | {"properties": properties, "required": list(properties)}


API_KEY_FIELDS: dict[str, Schema] = {
    "id": KEY_ID,
    "object": {"const": "api_key"},
    "account_id": ACCOUNT_ID,
    "name": STRING,
    "masked_key": STRING,
    "created_at": INTEGER,
    "revoked_at": nullable(INTEGER),
}
SCHEMAS: dict[str, Schema] = {
    "Error": obj(
        # extra: an upstream's error passes through, scrubbed, with whatever else it holds
        {
            "error": obj(
                {"message": STRING, "type": STRING, "param": nullable(STRING), "code": nullable(STRING)}, extra=True
            )
        }
    ),
    "ChatCompletionRequest": CHAT_REQUEST,
    "ChatCompletion": obj({"choices": array({"type": "object"}), "usage": ref("Usage")}, extra=True),
    "Usage": obj(
        {
            "prompt_tokens": INTEGER,
            "completion_tokens": INTEGER,
            "total_tokens": INTEGER,
            "cost": NUMBER | {"description": "Credits charged for this request (exact decimal)."},
            "credits_remaining": NUMBER | {"description": "The balance after this request, in credits."},
        },
        required=("prompt_tokens", "completion_tokens", "total_tokens"),
        extra=True,
    ),
    "ResponsesRequest": RESPONSES_REQUEST,
    "Response": obj(
        {"id": STRING, "object": {"const": "response"}, "output": array({"type": "object"}), "usage": {}},
        required=("id", "object"),
        extra=True,
    )
    | {"description": "OpenAI's response object; a created one's `usage` is a ResponseUsage with the bill."},
    "ResponseUsage": obj(
        {
            "input_tokens": INTEGER,
            "output_tokens": INTEGER,
            "total_tokens": INTEGER,
            "cost": NUMBER | {"description": "Credits charged for this request (exact decimal)."},
            "credits_remaining": NUMBER | {"description": "The balance after this request, in credits."},
        },
        required=("input_tokens", "output_tokens"),
        extra=True,
    ),
    "ResponseDeleted": obj(
        {"id": STRING, "object": {"const": "response.deleted"}, "deleted": {"type": "boolean"}}, extra=True
    ),
    "ResponseInputItems": obj({"object": {"const": "list"}, "data": array({"type": "object"})}, extra=True),
    "InputTokens": obj({"object": {"const": "response.input_tokens"}, "input_tokens": INTEGER}),
    "Model": record(
        strings="id owned_by",
        integers="created",
        object={"const": "model"},
        pricing=obj(
            {
                **{
                    name: NUMBER
                    for name in (
                        "input_credits_per_million",
                        "output_credits_per_million",
                        "cached_input_credits_per_million",
                        "cache_write_credits_per_million",
                    )
                },
                "tool_call_credits": {
                    "type": "object",
                    "additionalProperties": NUMBER,
                    "description": "Credits per call of each built-in tool type the model prices.",
                },
            }
        ),
    ),
    "TokenCount": record(
        strings="model",
        integers="prompt_tokens max_completion_tokens",
        object={"const": "chat.completion.token_count"},
        cost=record(credits="min_credits max_credits"),
    ),
    "ModelList": listing(ref("Model")),
    "Account": record(
        strings="name period_start period_end",
        integers="created_at",
        credits="credits",
        id=ACCOUNT_ID,
        object={"const": "account"},
        reserved_credits=NUMBER,
    ),
    "AccountList": listing(ref("Account")),
    "ApiKey": obj(API_KEY_FIELDS),
    "ApiKeyList": listing(ref("ApiKey")),
    "ApiKeyCreated": obj(API_KEY_FIELDS | {"key": STRING}),
    "UsageReport": one_of_fields(
        record(
            strings="period_start period_end",
            integers="total_requests total_tokens",
            credits="total_credits_used credits_remaining",
            api=API_FILTERED,
            api_breakdown=array(ref("ApiUsage")),
        ),
        {"daily_breakdown": array(ref("UsageBucket")), "hourly_breakdown": array(ref("UsageBucket"))},
    )
    | {"description": "`daily_breakdown` (`date`), or with `granularity=hour` `hourly_breakdown` (`hour`)."},
    "UsageBucket": one_of_fields(
        record(integers="requests tokens", credits="credits"), {"date": STRING, "hour": STRING}
    ),
    "ModelUsage": record(strings="model", integers=f"{USAGE} total_tokens", credits="credits_used"),
    "ModelUsageList": with_api(listing(ref("ModelUsage"), "period_start", "period_end")),
    "ApiUsage": record(integers=f"{USAGE} total_tokens", credits="credits_used", api=API_NAME),
    "KeyUsage": record(
        strings="key_id",
        integers=f"{USAGE} tokens",
        credits="credits_used",
        name=nullable(STRING),
        masked_key=nullable(STRING),
        revoked={"type": "boolean"},
        last_used_at=nullable(STRING),
    ),
    "KeyUsageList": with_api(listing(ref("KeyUsage"), "period_start", "period_end")),
    "Insight": record(
        strings="title tip",
        integers="requests",
        credits="credits estimated_savings_credits",
        type={"enum": [kind.type for kind in KINDS]},
        examples=array(STRING) | {"description": "A few of the requests (each day's first), each in the export."},
        details={"type": "object", "description": "Per type: loops and keys, conversations, models and shares."},
    ),
    "InsightList": with_api(listing(ref("Insight"), "period_start", "period_end")),
    "AccountUsage": record(
        strings="account_id name", integers="requests tokens", credits="credits_used", credits_remaining=NUMBER
    ),
    "UsageSummary": record(
        strings="period_start period_end",
        integers="accounts active_accounts total_requests total_tokens",
        credits="total_credits_used",
        object={"const": "usage_summary"},
        api=API_FILTERED,
        top_accounts=array(ref("AccountUsage")),
        top_models=array(ref("ModelUsage")),
    ),
    "Health": obj({"status": {"enum": ["ok", "degraded"]}, "redis": {"enum": ["up", "down"]}, "spooled": INTEGER}),
    "Readiness": obj({"status": {"enum": ["ready", "not ready"]}, "redis": {"const": "down"}}, required=("status",)),
}


START = query(
    "start",
    MOMENT,
    "First UTC day (YYYY-MM-DD) or instant (ISO 8601 date-time, `Z` or an offset), from 2000 to 9000. "
    "Default: the start of the billing period (hourly: of today).",
)
END = query(
    "end",
    MOMENT,
    "Last UTC day (inclusive) or instant (exclusive), from 2000 to 9000. Default: the end of the billing period "
    "(hourly: of today); with only `start`, the end of the current day (hourly: hour).",
)
ACCOUNT = query("account", ACCOUNT_ID, "The account to read: required with the admin token; a key reads its own.")
API_FILTER = query("api", API_NAME, "One API's usage only (default: every API's).")
GRANULARITY = query("granularity", {"enum": [g.value for g in Granularity]}, "Default: day.")
DAY_ONLY = query("granularity", {"enum": [Granularity.DAY.value]}, "These sums are kept per day only.")
KEY = query("key", KEY_ID, "One of the account's API keys: its insights only (default: the whole account).")
FORMAT = query("format", {"enum": [f.value for f in ExportFormat]}, "Default: csv.")
LIMIT_SCHEMA = {"type": "integer", "minimum": 1, "maximum": MAX_SUMMARY_LIMIT, "default": 10}
LIMIT = query("limit", LIMIT_SCHEMA, "How many top accounts and top models.")
MODEL = path("model", STRING, "The model's name; it may contain '/'.")
ACCOUNT_PATH = path("account_id", ACCOUNT_ID, "The account's id.")
KEY_PATH = path("key_id", KEY_ID, "The key's id.")
NAME = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH}


def operations() -> list[Operation]:
    """Every route the gateway serves, in the order of the README."""
    # For sequential media types (SSE, NDJSON) the schema describes one item, as OpenAPI 3.1 tools read it.
    event = obj(
        {"data": {"type": "string", "description": "A chat.completion.chunk as JSON, then [DONE]."}}, extra=True
    )
    chat = MediaTypes({"application/json": ref("ChatCompletion"), "text/event-stream": event})
    typed_event = obj(
        {"event": STRING, "data": {"type": "string", "description": "The event as JSON (its `type` is `event`)."}},
        extra=True,
    )
    row = obj({column: {} for column in COLUMNS})
    rows = MediaTypes({"text/csv": STRING, "application/json": array(row), "application/x-ndjson": row})
    passed_through = {"default": content(ref("Error"), "An upstream error, passed through with its status (free).")}
    not_ready = {"503": content(ref("Readiness"), "Redis does not answer: take the gateway out of the balancer.")}
    cached: dict[str, Schema] = {"304": {"description": "Not modified: `If-None-Match` names the current `ETag`."}}
    credits = obj({"amount": CREDITS_IN, "note": STRING}, required=("amount",))
    new_account = obj({"name": NAME, "credits": CREDITS_IN}, required=("name",))
    ranged = [START, END, DAY_ONLY, API_FILTER, ACCOUNT]
    both, one_account = TENANT_OR_ADMIN, [ACCOUNT_PATH]
    return [
        op(
            "POST /v1/chat/completions",
            "A metered chat completion (SSE with `stream: true`)",
            TENANT,
            chat,
            body=ref("ChatCompletionRequest"),
            fails=(*BODY_ERRORS, 402, 404, 502, 504),
            others=passed_through,
        ),
        op(
            "POST /v1/chat/completions/count_tokens",
            "A chat body's prompt tokens and price range, as the proxy would count and hold it (free, not sent)",
            TENANT,
            ref("TokenCount"),
            body=ref("ChatCompletionRequest"),
            fails=(*BODY_ERRORS, 404),
        ),
        op(
            "POST /v1/responses",
            "A metered response (typed SSE events with `stream: true`; the bill in the terminal event's usage)",
            TENANT,
            MediaTypes({"application/json": ref("Response"), "text/event-stream": typed_event}),
            body=ref("ResponsesRequest"),
            fails=(*BODY_ERRORS, 402, 404, 502, 504),
            others=passed_through,
        ),
        op(
            "POST /v1/responses/input_tokens",
            "A Responses body's input tokens, as the proxy would count and hold them (free, not sent)",
            TENANT,
            ref("InputTokens"),
            body=ref("ResponsesRequest"),
            fails=(*BODY_ERRORS, 404),
        ),
        op(
            "GET /v1/responses/{id}",
            "One of this account's responses, from the upstream (free; bills a background response it shows finished)",
            TENANT,
            ref("Response"),
            [RESPONSE_ID],
            fails=(400, 404, 502, 504),
            others=passed_through,
        ),
        op(
            "DELETE /v1/responses/{id}",
            "Delete one of this account's responses at the upstream (free; a running background one is billed first)",
            TENANT,
            ref("ResponseDeleted"),
            [RESPONSE_ID],
            fails=(400, 404, 502, 504),
            others=passed_through,
        ),
        op(
            "POST /v1/responses/{id}/cancel",
            "Cancel one of this account's background responses at the upstream (free; bills it as it stands)",
            TENANT,
            ref("Response"),
            [RESPONSE_ID],
            fails=(400, 404, 502, 504),
            others=passed_through,
        ),
        op(
            "GET /v1/responses/{id}/input_items",
            "The input items of one of this account's responses, from the upstream (free)",
            TENANT,
            ref("ResponseInputItems"),
            [RESPONSE_ID],
            fails=(400, 404, 502, 504),
            others=passed_through,
        ),
        *conversation_operations(),
        *text_api_operations(),
        *messages_operations(),
        op("GET /v1/models", "The configured models", TENANT, ref("ModelList")),
        op("GET /v1/models/{model}", "One configured model", TENANT, ref("Model"), [MODEL], fails=(404,)),
        op(
            "GET /v1/usage",
            "Usage totals per day or per hour",
            both,
            ref("UsageReport"),
            [START, END, GRANULARITY, API_FILTER, ACCOUNT],
            fails=READ_ERRORS,
        ),
        op(
            "GET /v1/account",
            "The key's own account: its id, name, credits and billing period (the admin token: `account=ID`)",
            both,
            ref("Account"),
            [ACCOUNT],
            fails=READ_ERRORS,
        ),
        op("GET /v1/usage/models", "Usage per model", both, ref("ModelUsageList"), ranged, fails=READ_ERRORS),
        op("GET /v1/usage/keys", "Usage per API key", both, ref("KeyUsageList"), ranged, fails=READ_ERRORS),
        op(
            "GET /v1/usage/insights",
            "Waste found in the range (duplicates, retry loops, unused answers, long conversations, model mix, "
            "cache use), most estimated savings first",
            both,
            ref("InsightList"),
            [START, END, DAY_ONLY, KEY, API_FILTER, ACCOUNT],
            fails=READ_ERRORS,
        ),
        op(
            "GET /v1/usage/export",
            "The request records, oldest first",
            both,
            rows,
            [START, END, FORMAT, API_FILTER, ACCOUNT],
            fails=READ_ERRORS,
        ),
        op(
            "GET /admin/usage/summary",
            "Totals, top accounts and top models",
            ADMIN,
            ref("UsageSummary"),
            [START, END, DAY_ONLY, API_FILTER, LIMIT],
            fails=(400,),
        ),
        op(
            "POST /admin/accounts",
            "Create an account",
            ADMIN,
            ref("Account"),
            body=new_account,
            status=201,
            fails=BODY_ERRORS,
        ),
        op("GET /admin/accounts", "Every account, oldest first", ADMIN, ref("AccountList")),
        op("GET /admin/accounts/{account_id}", "One account", ADMIN, ref("Account"), one_account, fails=(404,)),
        op(
            "POST /admin/accounts/{account_id}/keys",
            "Create an API key (the only time it is shown)",
            ADMIN,
            ref("ApiKeyCreated"),
            one_account,
            body=obj({"name": NAME}),
            status=201,
            fails=(*BODY_ERRORS, 404),
        ),
        op(
            "GET /admin/accounts/{account_id}/keys",
            "The account's keys",
            ADMIN,
            ref("ApiKeyList"),
            one_account,
            fails=(404,),
        ),
        op(
            "POST /admin/accounts/{account_id}/credits",
            "Grant credits (or take back)",
            ADMIN,
            ref("Account"),
            one_account,
            body=credits,
            fails=(*BODY_ERRORS, 404),
        ),
        op("DELETE /admin/keys/{key_id}", "Revoke an API key", ADMIN, ref("ApiKey"), [KEY_PATH], fails=(404,)),
        op("GET /healthz", "The process is up; whether Redis answers", PUBLIC, ref("Health")),
        op("GET /readyz", "Ready to serve: Redis answers", PUBLIC, ref("Readiness"), others=not_ready),
        # Public only on a loopback-bound gateway without `[metrics] token`; a 404 here with `[metrics] port`.
        op(
            "GET /metrics",
            "Prometheus metrics",
            [{}, {"metricsToken": []}, {"adminToken": []}],
            MediaTypes({"text/plain": STRING}),
            fails=(401, 404),
        ),
        *webhook_operations(),
        op("GET /openapi.json", "This document", PUBLIC, {"type": "object"}),
        # The dashboard: a page that signs in and reads the usage API from the browser, and the files it loads.
        op("GET /dashboard", "The usage dashboard (HTML)", PUBLIC, MediaTypes({"text/html": STRING}), others=cached),
        op(
            "GET /dashboard/static/{path}",
            "The dashboard's script, styles, icon and the vendored uPlot",
            PUBLIC,
            MediaTypes({media_type: STRING for media_type in sorted(set(STATIC_FILES.values()))}),
            [path("path", {"enum": sorted(STATIC_FILES)}, "A file the page loads; nothing else is served.")],
            fails=(404,),
            others=cached,
        ),
    ]


def paths() -> dict[str, dict[str, Schema]]:
    result: dict[str, dict[str, Schema]] = {}
    for method, route, operation in operations():
        result.setdefault(route, {})[method] = operation
    return result


def bearer(description: str, bearer_format: str | None = None) -> Schema:
    scheme: Schema = {"type": "http", "scheme": "bearer", "description": description}
    return scheme | ({"bearerFormat": bearer_format} if bearer_format else {})


def build_document() -> Schema:
    """The whole OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "LLM metering gateway",
            "version": _version(),
            "description": "An OpenAI-compatible gateway that meters chat requests and Anthropic Messages and debits "
            'credits. Every error has OpenAI\'s shape, `{"error": {"message", "type", "param", "code"}}`, except on '
            '/v1/messages*, where it has Anthropic\'s: `{"type": "error", "error": {"type", "message"}}`.',
        },
        "paths": paths(),
        "components": {
            "schemas": SCHEMAS | CONVERSATION_SCHEMAS | TEXT_API_SCHEMAS | MESSAGES_SCHEMAS | WEBHOOK_SCHEMAS,
            "securitySchemes": {
                "apiKey": bearer(
                    "A tenant's API key: `Authorization: Bearer sk-gw-...`, or `x-api-key: sk-gw-...` (as Anthropic's "
                    "SDKs send it); both at once must be the same key.",
                    "sk-gw-<account>-<secret>",
                ),
                "adminToken": bearer("The operator's `server.admin_token` (GATEWAY_ADMIN_TOKEN)."),
                "metricsToken": bearer("`[metrics] token`, when configured."),
            },
        },
    }


def _version() -> str:
    try:
        return metadata.version("llm-metering-gateway")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0.0.0"


@functools.cache
def document_bytes() -> bytes:
    """Built and encoded once per process: it never changes while the gateway runs."""
    return orjson.dumps(build_document())


async def get_openapi(request: web.Request) -> web.Response:
    return web.Response(body=document_bytes(), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/openapi.json", get_openapi)
