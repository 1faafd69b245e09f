"""The HTTP API as an OpenAPI 3.1 document, served at `GET /openapi.json` (public).

It describes every route the app serves; `tests/test_openapi.py` fails when a route is missing, and fuzzes
every operation against it. Limits come from the modules that enforce them, so the two cannot disagree.

Modules: `builders` (schema and operation helpers), `document` (the routes of the proxy, usage, admin and
operator APIs, and the handler), `conversations` (/v1/conversations and its items), `text_apis` (embeddings and
legacy completions), `messages` (Anthropic's Messages), `webhooks` (the webhook API).

May import: anything, as the app assembly does. It describes the whole gateway and, like the assembly, nothing
imports it but `app`.
"""

from __future__ import annotations

from gateway.openapi.document import add_routes, build_document

__all__ = ["add_routes", "build_document"]
