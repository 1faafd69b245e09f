"""What a tenant or the operator reads about usage: aggregates over ranges, views, and the request export.

Modules: `ranges` (start/end/granularity as UTC instants), `reader` (the day and hour aggregates settlement
writes, one pipelined round trip per read), `views` (the JSON shapes), `export` (request records streamed
as CSV, JSON or NDJSON through `lua/export_page.lua`), `handlers` (/v1/usage* and /admin/usage/summary).

May import: `billing` (keyspace, prices, periods), the shared `config` and `errors`, and `admin.accounts` /
`admin.auth` to know the caller; `handlers` also the app state. Nothing here writes to Redis.
"""
