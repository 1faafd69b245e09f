"""The webhook API's part of the document: /v1/webhooks and its deliveries."""

from __future__ import annotations

from gateway.openapi.builders import (
    ACCOUNT_ID,
    BODY_ERRORS,
    CREDITS_IN,
    INTEGER,
    READ_ERRORS,
    STRING,
    TENANT_OR_ADMIN,
    Operation,
    Schema,
    array,
    listing,
    nullable,
    obj,
    op,
    path,
    query,
    ref,
)
from gateway.webhooks.handlers import MAX_LOG_LIMIT
from gateway.webhooks.store import EVENT_TYPES, WEBHOOK_TEST

WEBHOOK_ID: Schema = {"type": "string", "pattern": "^wh_[0-9a-f]{16}$"}
SETTINGS = obj(
    {
        "usage_threshold_percent": {"type": "integer", "minimum": 1, "maximum": 100},
        "credits_low_threshold": CREDITS_IN | {"description": "Credits (not negative)."},
    },
    required=(),
)
EVENTS = array({"enum": list(EVENT_TYPES)}, minItems=1)
WEBHOOK_FIELDS: dict[str, Schema] = {
    "id": WEBHOOK_ID,
    "object": {"const": "webhook"},
    "url": STRING,
    "events": EVENTS,
    "settings": obj({"usage_threshold_percent": INTEGER, "credits_low_threshold": {"type": "number"}}, required=()),
    "enabled": {"type": "boolean"},
    "disabled_reason": nullable(STRING),
    "created_at": INTEGER,
}
WEBHOOK_SCHEMAS: dict[str, Schema] = {
    "WebhookCreate": obj(
        {"url": STRING, "events": EVENTS, "settings": SETTINGS, "enabled": {"type": "boolean"}},
        required=("url", "events"),
    ),
    "WebhookUpdate": obj(
        {"url": STRING, "events": EVENTS, "settings": SETTINGS, "enabled": {"type": "boolean"}}, required=()
    ),
    "Webhook": obj(WEBHOOK_FIELDS),
    "WebhookCreated": obj(WEBHOOK_FIELDS | {"secret": {"type": "string", "pattern": "^whsec_"}})
    | {"description": "The signing secret is shown here (and after a rotation) only."},
    "WebhookList": listing(ref("Webhook")),
    "WebhookDeleted": obj({"id": WEBHOOK_ID, "object": {"const": "webhook"}, "deleted": {"const": True}}),
    "WebhookEventSent": obj(
        {"id": STRING, "object": {"const": "webhook_event"}, "type": {"const": WEBHOOK_TEST}, "webhook_id": WEBHOOK_ID}
    ),
    "WebhookEventScheduled": obj(
        {"id": STRING, "object": {"const": "webhook_event"}, "status": {"const": "scheduled"}}
    ),
    "Delivery": obj(
        {
            "event_id": STRING,
            "type": STRING,
            "time_ms": INTEGER,
            "attempt": nullable(INTEGER),
            "status": {"enum": ["delivered", "failed", "failed_for_good", "skipped"]},
            "response_status": nullable(INTEGER),
            "latency_ms": nullable(INTEGER),
            "error": nullable(STRING),
            "next_retry_ms": nullable(INTEGER),
        }
    ),
    "DeliveryList": listing(ref("Delivery")),
}
ACCOUNT = query("account", ACCOUNT_ID, "The account to act on: required with the admin token; a key acts on its own.")
ID = path("id", WEBHOOK_ID, "The webhook's id.")
EVENT_ID = path("event_id", STRING, "The event's id (`webhook-id`).")
LIMIT = query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LOG_LIMIT, "default": 50}, "Newest first.")


def webhook_operations() -> list[Operation]:
    one = [ID, ACCOUNT]
    return [
        op(
            "POST /v1/webhooks",
            "Subscribe to usage alerts",
            TENANT_OR_ADMIN,
            ref("WebhookCreated"),
            [ACCOUNT],
            body=ref("WebhookCreate"),
            status=201,
            fails=(*BODY_ERRORS, 403, 404),
        ),
        op(
            "GET /v1/webhooks",
            "The account's webhooks",
            TENANT_OR_ADMIN,
            ref("WebhookList"),
            [ACCOUNT],
            fails=READ_ERRORS,
        ),
        op("GET /v1/webhooks/{id}", "One webhook", TENANT_OR_ADMIN, ref("Webhook"), one, fails=READ_ERRORS),
        op(
            "PATCH /v1/webhooks/{id}",
            "Change a webhook's url, events, settings or enabled",
            TENANT_OR_ADMIN,
            ref("Webhook"),
            one,
            body=ref("WebhookUpdate"),
            fails=(*BODY_ERRORS, 403, 404),
        ),
        op(
            "DELETE /v1/webhooks/{id}",
            "Delete a webhook",
            TENANT_OR_ADMIN,
            ref("WebhookDeleted"),
            one,
            fails=READ_ERRORS,
        ),
        op(
            "POST /v1/webhooks/{id}/rotate-secret",
            "A new signing secret (the old one still signs for 24 hours)",
            TENANT_OR_ADMIN,
            ref("WebhookCreated"),
            one,
            fails=READ_ERRORS,
        ),
        op(
            "POST /v1/webhooks/{id}/test",
            "Send a webhook.test event now",
            TENANT_OR_ADMIN,
            ref("WebhookEventSent"),
            one,
            status=202,
            fails=READ_ERRORS,
        ),
        op(
            "GET /v1/webhooks/{id}/deliveries",
            "Recent delivery attempts, newest first",
            TENANT_OR_ADMIN,
            ref("DeliveryList"),
            [ID, ACCOUNT, LIMIT],
            fails=READ_ERRORS,
        ),
        op(
            "POST /v1/webhooks/{id}/deliveries/{event_id}/retry",
            "Deliver a failed event again",
            TENANT_OR_ADMIN,
            ref("WebhookEventScheduled"),
            [ID, EVENT_ID, ACCOUNT],
            status=202,
            fails=READ_ERRORS,
        ),
    ]
