"""The dashboard at /dashboard: a page the gateway serves itself, with its script, styles and the vendored
uPlot as package data (`static/`), so it works offline. The page reads the usage API from the browser with the
signed-in key or admin token; this package serves files only and holds no data.

Modules: `assets` (the files served, read once from the package, with their ETags), `handlers` (the routes and
their security headers, the Content-Security-Policy among them).

May import: `billing`, the shared modules, `admin.accounts`, `admin.auth`, `usage.ranges`, `usage.reader` and
`usage.views`. It uses only `errors`; the rest is there should it ever render data itself.
"""
