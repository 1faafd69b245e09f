"""The operations and schemas of conversations the provider keeps (/v1/conversations and its items): forwarded for
their owner only, never billed."""

from __future__ import annotations

from gateway.openapi.builders import (
    BODY_ERRORS,
    INTEGER,
    STRING,
    TENANT,
    Operation,
    Schema,
    array,
    content,
    nullable,
    obj,
    op,
    path,
    query,
    ref,
)
from gateway.proxy.conversations import MAX_ITEMS, MAX_METADATA_KEY, MAX_METADATA_PAIRS, MAX_METADATA_VALUE

ITEM: Schema = obj({"type": STRING}, required=(), extra=True) | {
    "description": "A Responses input item (a message: `role` and `content`; a function call or its output; ...)."
}
METADATA: Schema = nullable(
    {
        "type": "object",
        "maxProperties": MAX_METADATA_PAIRS,
        "propertyNames": {"maxLength": MAX_METADATA_KEY},
        "additionalProperties": {"type": "string", "maxLength": MAX_METADATA_VALUE},
    }
)
CONVERSATION_SCHEMAS: dict[str, Schema] = {
    "ConversationRequest": obj(
        {"items": nullable(array(ITEM, maxItems=MAX_ITEMS)), "metadata": METADATA}, required=(), extra=True
    )
    | {"description": "Its first items (counted into its context) and its metadata."},
    "ConversationItemsRequest": obj({"items": array(ITEM, minItems=1, maxItems=MAX_ITEMS)}, extra=True),
    "ConversationUpdate": obj({"metadata": METADATA}, required=(), extra=True),
    "Conversation": obj(
        {"id": STRING, "object": {"const": "conversation"}, "created_at": INTEGER, "metadata": {}},
        required=("id", "object"),
        extra=True,
    ),
    "ConversationDeleted": obj(
        {"id": STRING, "object": {"const": "conversation.deleted"}, "deleted": {"type": "boolean"}}, extra=True
    ),
    "ConversationItemList": obj(
        {"object": {"const": "list"}, "data": array({"type": "object"})}, required=("object", "data"), extra=True
    ),
    "ConversationItem": {"type": "object", "description": "One item, as the upstream keeps it."},
}
CONVERSATION_ID = path("id", STRING, "A conversation this account created through the gateway (any other: 404).")
ITEM_ID = path("item_id", STRING, "One of the conversation's items.")
INCLUDE = query("include", STRING, "Passed upstream: the item fields to include.")
LISTED = [
    query("after", STRING, "List the items after this one."),
    query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "At most this many items (upstream's default)."),
    query("order", {"enum": ["asc", "desc"]}, "Oldest or newest first (upstream's default)."),
    INCLUDE,
]


def conversation_operations() -> list[Operation]:
    passed_through = {"default": content(ref("Error"), "An upstream error, passed through with its status (free).")}
    forwarded = (400, 404, 502, 504)

    def on_conversation(route: str, summary: str, answer: str, *extra: Schema, body: str | None = None) -> Operation:
        fails = (*BODY_ERRORS, *forwarded) if body else forwarded
        parameters = [CONVERSATION_ID, *extra]
        return op(
            route,
            summary,
            TENANT,
            ref(answer),
            parameters,
            fails=fails,
            body=ref(body) if body else None,
            others=passed_through,
        )

    return [
        op(
            "POST /v1/conversations",
            "Create a conversation at the upstream that keeps them, this account's (free)",
            TENANT,
            ref("Conversation"),
            body=ref("ConversationRequest"),
            fails=(*BODY_ERRORS, *forwarded),
            others=passed_through,
        ),
        on_conversation("GET /v1/conversations/{id}", "One of this account's conversations (free)", "Conversation"),
        on_conversation(
            "POST /v1/conversations/{id}",
            "Update a conversation's metadata (free)",
            "Conversation",
            body="ConversationUpdate",
        ),
        on_conversation(
            "DELETE /v1/conversations/{id}", "Delete a conversation at the upstream (free)", "ConversationDeleted"
        ),
        on_conversation(
            "POST /v1/conversations/{id}/items",
            "Add items to a conversation; they count into its context (free)",
            "ConversationItemList",
            INCLUDE,
            body="ConversationItemsRequest",
        ),
        on_conversation(
            "GET /v1/conversations/{id}/items", "A conversation's items (free)", "ConversationItemList", *LISTED
        ),
        on_conversation(
            "GET /v1/conversations/{id}/items/{item_id}",
            "One item of a conversation (free)",
            "ConversationItem",
            ITEM_ID,
            INCLUDE,
        ),
        on_conversation(
            "DELETE /v1/conversations/{id}/items/{item_id}",
            "Delete an item; the conversation's context is not made smaller (free)",
            "Conversation",
            ITEM_ID,
        ),
    ]
