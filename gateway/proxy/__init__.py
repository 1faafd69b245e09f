"""The forward path: /v1/chat/completions and /v1/models, one request at a time.

A chat request goes: `handlers` (authenticate, parse with `chat_request`) -> `metering.hold_credits`
(reserve.lua) -> `exchange` (POST through `upstream`, relay the answer, split streams with `sse`, count
tokens) -> `metering.bill` (settle.lua).

May import: `billing`, `tokens`, the shared `config`, `errors` and `metrics`, and `admin.accounts` /
`admin.auth` to know the caller; `handlers`, `exchange` and `upstream` also the app state. Its services
(`chat_request`, `sse`, `metering`) never import its handlers.
"""
