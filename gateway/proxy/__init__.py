"""The forward path: /v1/chat/completions, its price beforehand (/v1/chat/completions/count_tokens, `preview`)
and /v1/models with prices, one request at a time.

A chat request goes: `handlers` (authenticate, parse with `chat_request`, price with `priced_fields`) ->
`metering.hold_credits` (reserve.lua) -> `exchange` (POST through `upstream`, relay the answer with `relay`,
split streams with `sse`, count tokens) -> `metering.bill` (settle.lua), whose charge rides on the answer.

May import: `billing`, `tokens`, the shared `config`, `errors` and `metrics`, and `admin.accounts` /
`admin.auth` to know the caller; `handlers`, `exchange` and `upstream` also the app state. Its services
(`chat_request`, `sse`, `metering`, `preview`, `priced_fields`) never import its handlers.
"""
