"""One delivery attempt: POST a signed body to a subscriber and say whether it landed and whether to retry.

Classification, after the Standard Webhooks guidance ("a 2xx is success, any other outcome a failure") and
Svix, which retries every non-2xx:

- 2xx: delivered.
- 410 Gone: a final failure. The receiver asks us to stop; the spec says to disable the endpoint. It is the
  only final outcome, so `not ok and not retryable` means exactly that.
- Everything else is retryable: 3xx (redirects are never followed: the tenant should update the URL), 408,
  429, 5xx, every other 4xx, timeouts, connection errors, and refused targets. A 401, 404 or 400 usually
  means a receiver being deployed or misconfigured, which its owner can fix within the retry schedule's
  ~28 hours; giving up at once would lose an alert nobody can ask for again. The schedule is bounded and a
  subscription failing for days is disabled, so a dead receiver costs a handful of requests.

The receiver's status line is its answer: a body cut short afterwards (a reset, the total timeout) does not
turn a 2xx into a failure. Error texts are short and never include the URL, which may carry a token.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import ThreadedResolver

from gateway.webhooks import signing
from gateway.webhooks.targets import GuardedResolver, TargetRefused, check_url, literal_guard

USER_AGENT = "llm-metering-gateway-webhooks/0.1"
EXCERPT_CHARS = 500
MAX_RETRY_AFTER_S = 24 * 3600.0
# Delay-seconds of RFC 9110 (decimals tolerated); the HTTP-date form is not honoured.
_RETRY_AFTER = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,6})?", re.ASCII)


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt came to. `error` is None when `ok`; `retry_after_s` is the receiver's Retry-After."""

    ok: bool
    retryable: bool
    status: int | None
    latency_ms: int
    error: str | None
    response_excerpt: str = ""
    retry_after_s: float | None = None


def delivery_session(
    *, allow_private: bool, timeout_s: float, resolver: AbstractResolver | None = None
) -> aiohttp.ClientSession:
    """A ClientSession for `attempt`: guarded addresses unless `allow_private`, `timeout_s` for a whole
    attempt, no cookies kept, no environment proxies. `resolver` replaces the system lookup (tests)."""
    lookup = resolver if resolver is not None else ThreadedResolver()
    connector = aiohttp.TCPConnector(resolver=lookup if allow_private else GuardedResolver(lookup))
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        # Receivers answer uncompressed and we keep the bytes as sent: a compressed reply cannot grow past
        # the read bound when inflated.
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        trace_configs=[] if allow_private else [literal_guard()],
        trust_env=False,
    )


async def attempt(
    session: aiohttp.ClientSession,
    url: str,
    *,
    secrets: list[str],
    msg_id: str,
    body: bytes,
    now_s: int,
    max_response_bytes: int = 64 * 1024,
) -> AttemptResult:
    """POST `body` (JSON) to `url`, signed with each of `secrets` at `now_s`, and classify the outcome.

    At most `max_response_bytes` of the answer are read; a longer one is cut, which is not an error.
    """
    request_headers = signing.headers(secrets, msg_id, now_s, body)
    request_headers["Content-Type"] = "application/json"
    started = time.monotonic()
    try:
        check_url(url)
        async with session.post(url, data=body, headers=request_headers, allow_redirects=False) as response:
            answer = await _read_bounded(response, max_response_bytes)
            status, retry_after = response.status, response.headers.get("Retry-After")
    except TargetRefused as exc:
        return _failed(started, f"target refused: {exc}")
    except TimeoutError:  # aiohttp's ServerTimeoutError and the total timeout are both TimeoutErrors
        total = session.timeout.total
        return _failed(started, "timeout" if total is None else f"timeout after {total:g} s")
    except aiohttp.ClientConnectorDNSError as exc:
        if isinstance(exc.os_error, TargetRefused):
            return _failed(started, f"target refused: {exc.os_error}")
        return _failed(started, "DNS lookup failed")
    except aiohttp.ClientConnectorError as exc:
        return _failed(started, _connect_error(exc))
    except aiohttp.ServerDisconnectedError:
        return _failed(started, "server disconnected without answering")
    except aiohttp.ClientResponseError:  # raised before any status: the answer was not HTTP
        return _failed(started, "invalid HTTP response")
    except (aiohttp.ClientError, OSError) as exc:
        return _failed(started, f"connection error ({type(exc).__name__})")
    return _answered(started, status, answer, retry_after)


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    answer = bytearray()
    try:
        while len(answer) < limit:
            chunk = await response.content.read(limit - len(answer))
            if not chunk:
                break
            answer += chunk
    except (aiohttp.ClientError, TimeoutError):
        return bytes(answer)  # the status line already answered; see the module docstring
    if not response.content.at_eof():
        response.close()  # cut: drop the connection rather than drain the rest into the pool
    return bytes(answer)


def _answered(started: float, status: int, answer: bytes, retry_after: str | None) -> AttemptResult:
    excerpt = answer.decode("utf-8", errors="replace")[:EXCERPT_CHARS]
    if 200 <= status < 300:
        return AttemptResult(True, False, status, _elapsed_ms(started), None, excerpt)
    if status == 410:
        error = "HTTP 410 (gone: the receiver asks to stop)"
    elif 300 <= status < 400:
        error = f"HTTP {status} (redirects are not followed)"
    else:
        error = f"HTTP {status}"
    return AttemptResult(False, status != 410, status, _elapsed_ms(started), error, excerpt, _seconds(retry_after))


def _failed(started: float, error: str) -> AttemptResult:
    return AttemptResult(False, True, None, _elapsed_ms(started), error)


def _connect_error(exc: aiohttp.ClientConnectorError) -> str:
    if isinstance(exc, aiohttp.ClientSSLError):
        return "TLS handshake failed"
    if isinstance(exc.os_error, ConnectionRefusedError):
        return "connection refused"
    return f"could not connect ({exc.os_error.strerror or type(exc.os_error).__name__})"


def _seconds(retry_after: str | None) -> float | None:
    if retry_after is None or not _RETRY_AFTER.fullmatch(retry_after.strip()):
        return None
    return min(float(retry_after), MAX_RETRY_AFTER_S)


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
