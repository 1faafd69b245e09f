"""The dashboard at /dashboard (issue 11): the page and its pinned static assets, served by the gateway.
Empty until then; its place in the layout is fixed now.

May import: `usage` services (reader, ranges, views) for what it shows, `admin.auth` for sign-in, the shared
`config` and `errors`; `handlers` also the app state.
"""
