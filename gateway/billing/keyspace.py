"""The Redis keyspace: the name of every Redis key the gateway uses, in one place.

Per-account keys share the hash tag `{acct:ID}`, so every script that moves an account's money touches one
cluster slot. Only the global indexes (account list, API key id lookup, the background answers awaiting their
bill) live outside an account's slot; they are written by admin operations, or (the last) when a background
answer is made or billed, never by a money script.
"""

from __future__ import annotations

from datetime import datetime

PREFIX = "gw"
ACCOUNT_INDEX = f"{PREFIX}:accounts"  # zset: account id -> created_at ms
API_KEY_INDEX = f"{PREFIX}:keys"  # hash: API key id -> account id
SWEEP_LOCK = f"{PREFIX}:sweeper"  # string with a TTL: one process sweeps expired holds per interval
# zset: "ACCOUNT_ID ANSWER_ID" of a background answer whose bill waits for it to finish -> when it is next due a
# look (ms). Its record is keyspace.stored_answer's; a string with a TTL is the lock of one process's look.
BACKGROUND_ANSWERS = f"{PREFIX}:background"
BACKGROUND_LOCK = f"{PREFIX}:background:lock"
WEBHOOK_ACCOUNTS = f"{PREFIX}:webhookaccounts"  # set: accounts with webhook subscriptions (the sender's round)
OUTBOX_GROUP = "senders"  # the consumer group of every outbox stream


def as_text(value: object) -> str:
    """A Redis reply as text, whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else str(value)


def account_tag(account_id: str) -> str:
    return f"{PREFIX}:{{acct:{account_id}}}"


def account(account_id: str) -> str:
    """Hash: name, created_at, balance (micro-credits available, holds already taken out), granted."""
    return f"{account_tag(account_id)}:account"


def live_api_keys(account_id: str) -> str:
    """Hash: sha256(API key) -> API key id. Only live keys are here; revoking deletes the field."""
    return f"{account_tag(account_id)}:apikeys"


def api_key_records(account_id: str) -> str:
    """Hash: API key id -> JSON record (name, masked key, created_at, revoked_at, sha256)."""
    return f"{account_tag(account_id)}:keyrecords"


def api_key_last_used(account_id: str) -> str:
    """Hash: API key id -> ms timestamp of its last settled request."""
    return f"{account_tag(account_id)}:keylastused"


def holds(account_id: str) -> str:
    """Hash: request id -> hold record (see `billing.scripts.Hold`), the reservations not yet settled."""
    return f"{account_tag(account_id)}:holds"


def settled_requests(account_id: str) -> str:
    """Sorted set: request id -> ms, for requests released (or settled without a hold): an id here is never held
    again, so a reserve that timed out in the gateway and ran late holds nothing. Trimmed to
    `Retention.settled_ids_ms`."""
    return f"{account_tag(account_id)}:settled"


def applied_grants(account_id: str) -> str:
    """Sorted set: grant id -> ms; a grant retried under the same id is applied once."""
    return f"{account_tag(account_id)}:grantids"


def usage_day(account_id: str, when: datetime) -> str:
    """Hash of one UTC day's aggregates: totals, `m:<model>:<field>` and `k:<API key id>:<field>`."""
    return f"{account_tag(account_id)}:usage:d:{when:%Y%m%d}"


def usage_hour(account_id: str, when: datetime) -> str:
    """Hash of one UTC hour's totals."""
    return f"{account_tag(account_id)}:usage:h:{when:%Y%m%d%H}"


def insights_day(account_id: str, when: datetime) -> str:
    """Hash of one UTC day's usage insights (gateway/insights), written by settle.lua: per waste type `<type>:<stat>`
    and `<type>:x` (the day's first few example request ids), the same under `k:<API key id>:`, and per model
    `mix:m:<model>:<stat>` and `cache:m:<model>:<stat>`. Kept like the day's usage hash."""
    return f"{account_tag(account_id)}:insights:d:{when:%Y%m%d}"


def insight_request(account_id: str, request_hash: str) -> str:
    """Hash with a TTL: when a request with this fingerprint was last seen, how it ended and the retry window it
    is in (see settle.lua); reserve.lua marks a 402 here. Only hashes and counts, never text."""
    return f"{account_tag(account_id)}:ins:r:{request_hash}"


def insight_conversation(account_id: str, conversation_hash: str) -> str:
    """String with a TTL: a long conversation reached this history (its hash), so its next turn is the same one."""
    return f"{account_tag(account_id)}:ins:c:{conversation_hash}"


def stored_answer(account_id: str, answer_id: str) -> str:
    """String with a TTL (`redis.response_retention_days`): JSON of an answer the provider keeps (a Responses
    response id) that a request of this account got: the model it was made with, the context size the provider
    billed for it (input + output tokens), when it was created (ms) and, for a background answer not yet seen
    finished, its pending bill (proxy/answers.PendingBill). Absent: not this account's answer."""
    return f"{account_tag(account_id)}:answer:{answer_id}"


def kept_conversation(account_id: str, conversation_id: str) -> str:
    """Hash with a TTL (`redis.response_retention_days` since its last write): a conversation the provider keeps that
    a request of this account created: `upstream` (the upstream's name), `created_ms`, and `context_tokens`, at
    least the tokens its items and turns hold (added to, never set). Absent, or without `upstream`: not this
    account's conversation."""
    return f"{account_tag(account_id)}:conversation:{conversation_id}"


def request_log(account_id: str) -> str:
    """Stream of request records, capped by length."""
    return f"{account_tag(account_id)}:requests"


def grant_log(account_id: str) -> str:
    """Stream of credit grants: who added what, when, and the balance after."""
    return f"{account_tag(account_id)}:grants"


def webhooks(account_id: str) -> str:
    """Hash: subscription id -> JSON record (url, events, settings, secrets, enabled, failure state)."""
    return f"{account_tag(account_id)}:webhooks"


def alerts(account_id: str) -> str:
    """Hash the money scripts read to detect crossings: `u:<sub>` usage percent and `uf:<sub>` the period it
    fired in; `l:<sub>` low-balance threshold (micros) and `lf:<sub>` set while fired; `x:<sub>` exhausted and
    `xf:<sub>` set while fired. Written with the subscriptions, in one transaction."""
    return f"{account_tag(account_id)}:alerts"


def outbox(account_id: str) -> str:
    """Stream of webhook events to deliver, appended by the money scripts; read by the `senders` group."""
    return f"{account_tag(account_id)}:outbox"


def webhook_events(account_id: str) -> str:
    """Hash: event id -> JSON of an event awaiting a retry, or failed for good (kept for a manual retry)."""
    return f"{account_tag(account_id)}:whevents"


def webhook_retries(account_id: str) -> str:
    """Sorted set: event id -> ms of its next delivery attempt."""
    return f"{account_tag(account_id)}:whretries"


def webhook_failed(account_id: str) -> str:
    """Sorted set: event id -> ms it failed for good (its schedule used up); kept a while for a manual retry."""
    return f"{account_tag(account_id)}:whfailed"


def webhook_deliveries(account_id: str, subscription_id: str) -> str:
    """Stream of one subscription's delivery attempts (capped): the delivery log."""
    return f"{account_tag(account_id)}:whlog:{subscription_id}"
