"""The forward path: /v1/chat/completions, its price beforehand (/v1/chat/completions/count_tokens, `preview`)
and /v1/models with prices, one request at a time.

Modules, in the order a chat request meets them: `handlers` (authenticate, parse with `chat_request`, price
with `priced_fields`) -> `metering` (`metering.hold_credits`: reserve.lua) -> `exchange` (POST through
`upstream`, relay the answer with `relay`, split streams with `sse`, count tokens) -> `metering.bill`
(settle.lua), whose charge rides on the answer. `preview` prices a request without sending it.

May import: `billing`, `tokens`, the shared modules, `admin.accounts`, `admin.auth`, `insights.fingerprints`
and `insights.signals`; `exchange`, `handlers` and `upstream` also the app state. The caller comes from
`admin`, and each request's fingerprint and signals from `insights` (the usage insights' hot path). Its
services (`chat_request`, `sse`, `metering`, `preview`, `priced_fields`, `relay`) never import its handlers.
"""
