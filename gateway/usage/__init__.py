"""What a tenant or the operator reads about usage: aggregates over ranges, views, and the request export.

Modules: `ranges` (start/end/granularity as UTC instants), `reader` (the day and hour aggregates settlement
writes, one pipelined round trip per read), `views` (the JSON shapes), `export` (request records streamed
as CSV, JSON or NDJSON through `lua/export_page.lua`), `handlers` (/v1/usage* and /admin/usage/summary).

May import: `billing`, the shared modules, `admin.accounts` and `admin.auth`; `handlers` also the app state.
From `billing` it reads the keyspace, prices and periods; `admin` tells it who is asking. Nothing here writes
to Redis.
"""
