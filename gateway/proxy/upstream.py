"""The one pooled ClientSession to the upstreams, and the call that maps its failures to gateway errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from gateway.app_state import SETTINGS, UPSTREAM_SESSION
from gateway.config import UpstreamConfig
from gateway.errors import UpstreamError, UpstreamTimeout

USER_AGENT = "llm-metering-gateway/0.1"
# Upstream headers passed on to the client; the rest (the provider account's rate limits, cookies, hop-by-hop)
# is the gateway's business, not the tenant's.
RELAYED_RESPONSE_HEADERS = ("openai-processing-ms", "openai-version")


async def upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the pooled upstream session for the app's lifetime."""
    settings = app[SETTINGS]
    timeout = aiohttp.ClientTimeout(
        total=settings.total_timeout, sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
    )
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=1000, ttl_dns_cache=300, enable_cleanup_closed=True)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, headers={"User-Agent": USER_AGENT}, raise_for_status=False
    ) as session:
        app[UPSTREAM_SESSION] = session
        yield


def upstream_headers(upstream: UpstreamConfig, *, stream: bool) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
    if upstream.api_key:
        if upstream.auth_header == "authorization":
            headers["Authorization"] = f"Bearer {upstream.api_key}"
        else:
            headers[upstream.auth_header] = upstream.api_key
    return headers


def relayed_headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    """The upstream headers worth passing on, with the upstream's own request id renamed."""
    headers = {name: response.headers[name] for name in RELAYED_RESPONSE_HEADERS if name in response.headers}
    if "x-request-id" in response.headers:
        headers["x-upstream-request-id"] = response.headers["x-request-id"]
    return headers


async def post_upstream(
    session: aiohttp.ClientSession, upstream: UpstreamConfig, path: str, body: bytes, *, stream: bool
) -> aiohttp.ClientResponse:
    """POST to the upstream and return the response once its headers are in; the caller reads and releases it."""
    url = f"{upstream.base_url}{path}"
    try:
        return await session.post(
            url, data=body, headers=upstream_headers(upstream, stream=stream), params=upstream.query or None
        )
    except TimeoutError as exc:
        raise UpstreamTimeout(f"Upstream {upstream.name!r} did not answer in time.") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"Upstream {upstream.name!r} is unreachable.") from exc
