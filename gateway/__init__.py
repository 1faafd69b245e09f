"""An OpenAI-compatible gateway that meters tokens and debits credits atomically in Redis.

Packages, by concern:

    proxy/      /v1 handlers: authenticate -> hold credits -> forward -> relay and count -> bill
    usage/      aggregate reads, ranges, views, usage API handlers, export
    admin/      accounts and API keys, authentication, the admin service and API
    webhooks/   usage alerts: subscriptions, the outbox settlement fills, the sender task, signatures
    insights/   request fingerprints, the waste the detectors find and its tips, the insights API
    dashboard/  the page at /dashboard and its static assets, served offline
    openapi/    the OpenAPI document of every route, at /openapi.json
    billing/    prices, the ledger and its Lua scripts, the Redis keyspace: the only place money moves
    tokens/     tiktoken counting, no I/O
    mock/       the mock upstream

Top-level modules, by role:

    shared      `config` (settings), `config_checks` (what a configured value must be), `errors` (the error
                tree and its middleware), `metrics` (Prometheus), `bodies` (JSON request bodies), `numbers`
                (numbers from the API, bounded first), `request_ids` (every response's id), `bill_headers` (the
                bill's headers), `redis_server` (the embedded Redis)
    state       `app_state` (typed app keys), `storage` (the Redis connection)
    assembly    `app` (the app factory), `cli`, `__main__`, `serving` (one process, or workers),
                `http_server` (the listening sockets), `ops` (probes and metrics), `access_log`

Dependencies point down: handlers use services; services use `billing/` and `tokens/`; those two use
nothing else of the gateway. The packages above them use the shared modules; only handlers and the
assembly read the state; the assembly wires everything together and may import anything. Each package's
docstring says what it may import. `tests/test_architecture.py` holds the rule as tables, and checks the
imports, those sentences and the roles above against them.
"""
