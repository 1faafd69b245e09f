"""Small builders for the OpenAPI document: schemas, parameters and operations, written once."""

from __future__ import annotations

from gateway.billing.pricing import AMOUNT_PATTERN
from gateway.numbers import MAX_CREDITS_MICROS

Schema = dict[str, object]

Security = list[dict[str, list[str]]]  # alternatives; `{}` among them: none needed

TENANT: Security = [{"apiKey": []}]
ADMIN: Security = [{"adminToken": []}]
TENANT_OR_ADMIN: Security = [{"apiKey": []}, {"adminToken": []}]
PUBLIC: Security = []

ERRORS = {
    "400": "Malformed input: bad JSON, a missing or invalid field or query parameter (`param` names it).",
    "401": "Missing, malformed, unknown or revoked credential.",
    "402": "Not enough credits for the request's hold (`insufficient_quota`).",
    "403": "An API key asking for another account (`permission_denied`).",
    "404": "Unknown model, account, key or path.",
    "408": "The request body did not arrive in time.",
    "413": "The request body is over `server.max_body_bytes`.",
    "415": "A compressed request body (`Content-Encoding`).",
    "502": "The upstream is unreachable or answered badly (free of charge).",
    "503": "Redis is unreachable: retry after `Retry-After` seconds.",
    "504": "The upstream timed out (free of charge).",
}
HEADERS = {
    "x-request-id": {"description": "The gateway's id of this request.", "schema": {"type": "string"}},
    "x-credits-remaining": {
        "description": "The account's balance in credits (exact decimal), on every answer to a known API key.",
        "schema": {"type": "string"},
    },
}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: dict[str, Schema], *, required: tuple[str, ...] | None = None, extra: bool = False) -> Schema:
    """An object; every property is required unless `required` says otherwise."""
    names = list(properties) if required is None else list(required)
    return {"type": "object", "properties": properties, "required": names, "additionalProperties": extra}


def array(items: Schema, **limits: int) -> Schema:
    return {"type": "array", "items": items, **limits}


def listing(items: Schema, *extra: str) -> Schema:
    """`{"object": "list", "data": [...]}`, with the range bounds when `extra` names them."""
    return obj({"object": {"const": "list"}, **{name: STRING for name in extra}, "data": array(items)})


STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}
MICROS: Schema = {"type": "integer", "description": "micro-credits (1 credit = 1,000,000)"}
ACCOUNT_ID: Schema = {"type": "string", "pattern": "^acct_[0-9a-f]{16}$"}
KEY_ID: Schema = {"type": "string", "pattern": "^key_[0-9a-f]{16}$"}
# Credits as a JSON number or decimal text, up to 6 decimals.
CREDITS_IN: Schema = {
    "anyOf": [
        {"type": "number", "minimum": -MAX_CREDITS_MICROS / 10**6, "maximum": MAX_CREDITS_MICROS / 10**6},
        {"type": "string", "pattern": AMOUNT_PATTERN},
    ]
}
MOMENT: Schema = {
    "anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}],
    "examples": ["2026-09-01", "2026-09-01T12:00:00+02:00"],
}


def record(*, strings: str = "", integers: str = "", credits: str = "", **others: Schema) -> Schema:
    """A response object whose fields are all present, named by type: `credits` are exact decimals in credits,
    each with a `*_micros` twin."""
    properties: dict[str, Schema] = {name: STRING for name in strings.split()}
    properties |= {name: INTEGER for name in integers.split()}
    for name in credits.split():
        properties |= {name: NUMBER, f"{name}_micros": MICROS}
    return obj(properties | others)


def one_of_fields(schema: Schema, fields: dict[str, Schema]) -> Schema:
    """`schema` with exactly one of `fields` added."""
    properties, required = schema["properties"], schema["required"]
    return schema | {
        "properties": properties | fields,  # type: ignore[operator]
        "oneOf": [{"required": [*required, name]} for name in fields],  # type: ignore[misc]
    }


def query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def path(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


BODY_ERRORS = (400, 408, 413, 415)
READ_ERRORS = (400, 403, 404)
Operation = tuple[str, str, Schema]  # method, path, operation object


class MediaTypes(dict[str, Schema]):
    """A success answered in several media types: the schema of each."""


def content(schema: Schema, description: str, media_type: str = "application/json") -> Schema:
    return {"description": description, "content": {media_type: {"schema": schema}}}


def op(
    route: str,
    summary: str,
    security: Security,
    answer: Schema | MediaTypes,
    parameters: list[Schema] | None = None,
    *,
    fails: tuple[int, ...] = (),
    body: Schema | None = None,
    status: int = 200,
    others: dict[str, Schema] | None = None,
    error: str = "Error",
) -> Operation:
    """`route` is "METHOD /path"; `answer` is the JSON schema of its success, or a schema per media type. Answers
    to an API key carry the request id and balance headers; the `fails` statuses answer with the `error` schema
    (OpenAI's shape unless the route's API has its own), `others` as they say."""
    media_types = answer if isinstance(answer, MediaTypes) else {"application/json": answer}
    success: Schema = {"description": "OK", "content": {name: {"schema": s} for name, s in media_types.items()}}
    needs_credential = bool(security) and {} not in security
    if needs_credential and security[0] == {"apiKey": []}:
        success["headers"] = HEADERS
    statuses = sorted({*fails, *((401, 503) if needs_credential else ())})
    result: Schema = {
        "summary": summary,
        "security": security,
        "parameters": parameters or [],
        "responses": {str(status): success}
        | {str(s): content(ref(error), ERRORS[str(s)]) for s in statuses}
        | (others or {}),
    }
    if body is not None:
        result["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    method, _, path_ = route.partition(" ")
    return method.lower(), path_, result
