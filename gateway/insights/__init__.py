"""Usage insights (issue 14): request fingerprints taken on the hot path and the waste detectors that read
them. Empty until then; its place in the layout is fixed now.

May import: `billing` and `tokens`, the shared `config` and `errors`, `usage` services for ranges, and
`admin.auth`; `handlers` also the app state.
"""
