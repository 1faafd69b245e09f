"""Usage insights: request fingerprints taken on the hot path and the waste detectors that read them.

Modules: `fingerprints` (the request and conversation hashes and the message count, taken from the parsed body
by the proxy), `signals` (what a finished request shows for the detectors that need prices or the tokenizer:
a long conversation's resent history, a cheaper model's price), `reader` (the day's insights hashes settle.lua
writes, summed over a range), `report` (the items, titles and tips), `handlers` (GET /v1/usage/insights).
The detectors themselves run inside settle.lua (gateway/billing/lua/insights.lua), once per request. Only
hashes and counts are stored, never message text.

May import: `billing`, `tokens`, the shared modules, `admin.auth` and `usage.ranges`; `handlers` also the app
state.
"""
