"""Calls to the upstreams on the one pooled ClientSession (opened by proxy/handlers.upstream_ctx), their failures
mapped to gateway errors, and what of their answers may reach a client."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Sequence

import aiohttp
import orjson

from gateway.config import UpstreamConfig
from gateway.errors import UpstreamAuthFailed, UpstreamError, UpstreamTimeout

log = logging.getLogger(__name__)

USER_AGENT = "llm-metering-gateway/0.1"
# Upstream headers passed on to the client; the rest (the provider account's rate limits, cookies, hop-by-hop)
# is the gateway's business, not the tenant's.
RELAYED_RESPONSE_HEADERS = ("openai-processing-ms", "openai-version")
# What looks like a credential in an upstream's error text: OpenAI-style keys (also masked ones), bearer
# tokens, Azure's 32-hex keys, and any other long unbroken token.
CREDENTIAL_LIKE = re.compile(
    r"sk-[A-Za-z0-9_*.\-]{6,}|(?i:bearer)\s+[A-Za-z0-9._~+/=*\-]+|\b[0-9a-fA-F]{32}\b|[A-Za-z0-9_+/=\-]{40,}"
)
REDACTED = "[redacted]"
LARGE_BODY_BYTES = 1 << 20


def upstream_headers(upstream: UpstreamConfig, *, stream: bool) -> dict[str, str]:
    """The headers of a call upstream: only the gateway's own credential, never anything of the tenant's."""
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
    if upstream.api == "anthropic":
        headers["anthropic-version"] = upstream.anthropic_version
        if upstream.api_key:
            headers["x-api-key"] = upstream.api_key
    elif upstream.api_key:
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
            url,
            # aiohttp sends a large bytes body in one write that holds the loop; a stream goes in chunks.
            data=io.BytesIO(body) if len(body) > LARGE_BODY_BYTES else body,
            headers=upstream_headers(upstream, stream=stream),
            params=upstream.query or None,
            allow_redirects=False,  # a redirect is answered with 502, never followed with the body and key
        )
    except TimeoutError as exc:
        raise UpstreamTimeout(f"Upstream {upstream.name!r} did not answer in time.") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"Upstream {upstream.name!r} is unreachable.") from exc


async def call_upstream(
    session: aiohttp.ClientSession,
    upstream: UpstreamConfig,
    method: str,
    path: str,
    params: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
) -> aiohttp.ClientResponse:
    """A call that is not metered (GET, DELETE, a POST action or one with a small JSON `body`) to the upstream, as
    `post_upstream` makes its POSTs."""
    try:
        return await session.request(
            method,
            f"{upstream.base_url}{path}",
            data=body,
            headers=upstream_headers(upstream, stream=False),
            params=[*upstream.query.items(), *params] or None,
            allow_redirects=False,
        )
    except TimeoutError as exc:
        raise UpstreamTimeout(f"Upstream {upstream.name!r} did not answer in time.") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"Upstream {upstream.name!r} is unreachable.") from exc


async def read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """An upstream answer's whole body, up to `limit` bytes (read until EOF: `read(n)` returns what has arrived so
    far); UpstreamError past the limit or when the connection fails, UpstreamTimeout when it stalls."""
    parts: list[bytes] = []
    size = 0
    try:
        async for part in response.content.iter_any():
            size += len(part)
            if size > limit:
                raise UpstreamError("The upstream response is larger than the gateway accepts.")
            parts.append(part)
    except TimeoutError as exc:
        raise UpstreamTimeout("The upstream timed out while sending its response.") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamError("The upstream connection failed while sending its response.") from exc
    return b"".join(parts)


ERROR_BODY_LIMIT = 64 * 1024  # an upstream error body beyond this is not relayed


async def unmetered_answer(
    response: aiohttp.ClientResponse, upstream: UpstreamConfig, limit: int, headers: dict[str, str] | None = None
) -> bytes:
    """The body of an answer to a call that is never billed (stored responses, conversations), as it may reach
    the client: 502 when the upstream refuses the gateway's credentials (logged: the operator's business) or
    redirects; up to `limit` bytes, an error's up to ERROR_BODY_LIMIT and scrubbed (502 when it is not an
    error body the gateway can relay). `headers` go on those 502s."""
    if response.status in (401, 403):
        log.error("upstream %r refused the gateway's credentials (HTTP %d)", upstream.name, response.status)
        raise UpstreamAuthFailed(headers=headers)
    if 300 <= response.status < 400:
        raise UpstreamError(f"The upstream answered with a redirect (HTTP {response.status}).", headers=headers)
    body = await read_bounded(response, limit if response.status < 400 else ERROR_BODY_LIMIT)
    if response.status >= 400:
        body = scrubbed_error_body(body, upstream) or b""
        if not body:
            raise UpstreamError(f"The upstream answered with HTTP {response.status}.", headers=headers)
    return body


def scrub(text: str, upstream: UpstreamConfig) -> str:
    """`text` without the provider key or anything else that looks like a credential."""
    if upstream.api_key:
        text = text.replace(upstream.api_key, REDACTED)
    return CREDENTIAL_LIKE.sub(REDACTED, text)


def scrubbed_error_body(body: bytes, upstream: UpstreamConfig) -> bytes | None:
    """An OpenAI-shaped upstream error body with every string scrubbed, or None when it is not one. Anthropic's
    shape (the same object, under `{"type": "error"}`) keeps that outer `type`."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not (isinstance(parsed, dict) and isinstance(parsed.get("error"), dict)):
        return None
    error = parsed["error"]
    kept = {
        name: scrub(value, upstream) if isinstance(value, str) else value
        for name, value in error.items()
        if name in ("message", "type", "param", "code") and (value is None or isinstance(value, str | int))
    }
    scrubbed = {"error": {"message": "", "type": "upstream_error", "param": None, "code": None, **kept}}
    return orjson.dumps({"type": "error", **scrubbed} if parsed.get("type") == "error" else scrubbed)
