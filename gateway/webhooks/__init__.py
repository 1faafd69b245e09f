"""Usage alerts by webhook: subscriptions, the outbox that settlement fills, the sender task and
request signatures.

Modules: `store` (subscriptions and the thresholds the money scripts read), `events` (outbox entries and the
payload sent), `outbox` (new events, retries, failures and the delivery log in Redis), `sender` (the task that
delivers them, retries and claims what a dead process left), `delivery` (one signed POST and its outcome),
`signing` (Standard Webhooks signatures), `targets` (the addresses a webhook may not reach), `service` (the
subscription operations behind the API and the CLI), `handlers` (/v1/webhooks* and the sender's lifetime).

May import: `billing`, the shared modules, `admin.accounts` and `admin.auth`; `handlers` also the app state.
Thresholds are crossed inside the settlement script, so the alert state lives in `billing`'s keyspace.
"""
