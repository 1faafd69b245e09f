"""An OpenAI-compatible gateway that meters tokens and debits credits atomically in Redis.

The top level holds what everything shares: `app` (assembly), `config`, `errors`, `app_state` (typed app
keys), `cli`, `metrics`, `storage` (the Redis connection) and `redis_server` (the embedded server).
Packages, by concern:

    proxy/      /v1 handlers: authenticate -> hold credits -> forward -> relay and count -> bill
    usage/      aggregate reads, ranges, views, usage API handlers, export
    admin/      accounts and API keys, authentication, the admin service and API
    billing/    prices, the ledger and its Lua scripts, the Redis keyspace: the only place money moves
    tokens/     tiktoken counting, no I/O
    mock/       the mock upstream
    webhooks/, dashboard/, insights/   the features to come

Dependencies point down: handlers use services; services use `billing/` and `tokens/`; those two use
nothing else of the gateway. `tests/test_architecture.py` holds the rule.
"""
