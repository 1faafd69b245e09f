"""Usage alerts by webhook (issue 10): subscriptions, the outbox that settlement fills, the sender task and
request signatures. Empty until then; its place in the layout is fixed now.

May import: `billing` (thresholds are crossed inside the settlement script), the shared `config`, `errors`
and `metrics`, and `admin.accounts` / `admin.auth`; `handlers` and the sender's cleanup context also the app
state.
"""
