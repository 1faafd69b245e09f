"""Accounts and their API keys: the store, tenant and admin authentication, the admin service and API.

Modules: `accounts` (the account and API key store in Redis), `auth` (who is asking: an API key or the admin
token, and the `x-credits-remaining` header), `service` (admin operations shared by the HTTP API and the CLI),
`handlers` (/admin/* routes).

May import: `billing` and the shared modules; `handlers` also the app state. Other handler packages use
`accounts` and `auth`, never `handlers`.
"""
